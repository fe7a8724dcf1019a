//! secp256k1 with `k256`: Lagrange interpolation at zero over the scalar field, the public point
//! and the Ethereum address.

use k256::elliptic_curve::ff::PrimeField as _;
use k256::elliptic_curve::ops::Reduce as _;
use k256::elliptic_curve::point::AffineCoordinates as _;
use k256::{FieldBytes, ProjectivePoint, Scalar};
use sha3::{Digest as _, Keccak256};
use zeroize::{Zeroize as _, Zeroizing};

use crate::error::{Error, Result};
use crate::shares::{Affine, Be32};

fn reduce(be: &[u8; 32]) -> Scalar {
    let mut bytes = FieldBytes::from(*be);
    let scalar = Scalar::reduce(&bytes);
    bytes.zeroize();
    scalar
}

/// `d = λ1·s1 + λ2·s2` with `λ1 = x2/(x2−x1)`, `λ2 = x1/(x1−x2)`, all mod n. Returns d as 32
/// big-endian bytes (an Ethereum private key).
// Scalar arithmetic is modular (k256's `Scalar`): it neither overflows nor panics.
#[allow(clippy::arithmetic_side_effects)]
pub(crate) fn interpolate(s1: &Be32, x1: &Be32, s2: &Be32, x2: &Be32) -> Result<Be32> {
    let (x1, x2) = (reduce(x1), reduce(x2));
    let inverse = |v: Scalar| Option::<Scalar>::from(v.invert()).ok_or(Error::SameX);
    let l1 = x2 * inverse(x2 - x1)?;
    let l2 = x1 * inverse(x1 - x2)?;
    let mut d = l1 * reduce(s1) + l2 * reduce(s2);
    if bool::from(d.is_zero()) {
        return Err(Error::ZeroKey);
    }
    let mut repr = d.to_repr();
    let mut out = Zeroizing::new([0u8; 32]);
    out.copy_from_slice(&repr);
    repr.zeroize();
    d.zeroize();
    Ok(out)
}

/// The affine public point of a canonical private key, and its SEC1 uncompressed encoding.
pub(crate) fn public_point(secret: &[u8; 32]) -> Result<(Affine, Vec<u8>)> {
    let mut bytes = FieldBytes::from(*secret);
    let scalar = Option::<Scalar>::from(Scalar::from_repr(bytes));
    bytes.zeroize();
    let mut scalar = scalar.ok_or(Error::ZeroKey)?;
    // Scalar multiplication of the generator; no integer arithmetic.
    #[allow(clippy::arithmetic_side_effects)]
    let point = (ProjectivePoint::GENERATOR * scalar).to_affine();
    scalar.zeroize();
    let mut affine = Affine {
        x: [0; 32],
        y: [0; 32],
    };
    affine.x.copy_from_slice(&point.x());
    affine.y.copy_from_slice(&point.y());
    let mut encoded = Vec::with_capacity(65);
    encoded.push(0x04);
    encoded.extend_from_slice(&affine.x);
    encoded.extend_from_slice(&affine.y);
    Ok((affine, encoded))
}

/// The EIP-55 checksummed Ethereum address of a public point.
pub(crate) fn eip55_address(public: &Affine) -> String {
    let mut hasher = Keccak256::new();
    hasher.update(public.x);
    hasher.update(public.y);
    let hash = hasher.finalize();
    let lower: String = hash
        .iter()
        .skip(12)
        .flat_map(|b| [b >> 4, b & 0x0f])
        .map(nibble_char)
        .collect();
    let check = Keccak256::digest(lower.as_bytes());
    let nibbles = check.iter().flat_map(|b| [b >> 4, b & 0x0f]);
    let mut out = String::with_capacity(42);
    out.push_str("0x");
    for (c, n) in lower.chars().zip(nibbles) {
        out.push(if n >= 8 { c.to_ascii_uppercase() } else { c });
    }
    out
}

fn nibble_char(n: u8) -> char {
    char::from_digit(u32::from(n), 16).unwrap_or('0')
}

/// Deals `secret` (reduced mod n) into two shares at random x values: `f(x) = d + a·x`.
/// Returns `(d, s1, x1, s2, x2)`, d canonical big-endian.
#[allow(clippy::arithmetic_side_effects)]
pub(crate) fn deal(secret: &[u8; 32], random: &mut dyn FnMut(&mut [u8])) -> Result<[Be32; 5]> {
    let mut draw = || {
        let mut bytes = Zeroizing::new([0u8; 32]);
        random(bytes.as_mut_slice());
        reduce(&bytes)
    };
    let d = reduce(secret);
    if bool::from(d.is_zero()) {
        return Err(Error::ZeroKey);
    }
    let a = draw();
    let (x1, x2) = loop {
        let (x1, x2) = (draw(), draw());
        if x1 != x2 && !bool::from(x1.is_zero()) && !bool::from(x2.is_zero()) {
            break (x1, x2);
        }
    };
    let be = |s: Scalar| {
        let mut out = Zeroizing::new([0u8; 32]);
        out.copy_from_slice(&s.to_repr());
        out
    };
    Ok([be(d), be(d + a * x1), be(x1), be(d + a * x2), be(x2)])
}
