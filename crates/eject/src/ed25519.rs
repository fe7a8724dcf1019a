//! ed25519 with `curve25519-dalek`: Lagrange interpolation at zero over the scalar field, the
//! public point and its RFC 8032 encoding (the Solana address). Portal writes public keys as
//! affine (x, y); curve25519-dalek exposes no x, so x is recovered from the *public* encoding
//! with arkworks' `ark-ed25519` (the secret never reaches arkworks).

use ark_ec::twisted_edwards::Affine as ArkAffine;
use ark_ed25519::{EdwardsConfig, Fq};
use ark_ff::{BigInt, BigInteger as _, PrimeField as _};
use curve25519_dalek::{EdwardsPoint, Scalar};
use zeroize::{Zeroize as _, Zeroizing};

use crate::error::{Error, Result};
use crate::shares::{Affine, Be32};

fn reduce(be: &[u8; 32]) -> Scalar {
    let mut le = *be;
    le.reverse();
    let scalar = Scalar::from_bytes_mod_order(le);
    le.zeroize();
    scalar
}

/// `d = λ1·s1 + λ2·s2` with `λ1 = x2/(x2−x1)`, `λ2 = x1/(x1−x2)`, all mod ℓ. Returns d as 32
/// **little-endian** bytes (Portal's ed25519 eject format: a scalar, not an RFC 8032 seed).
// Scalar arithmetic is modular (curve25519-dalek's `Scalar`): it neither overflows nor panics.
#[allow(clippy::arithmetic_side_effects)]
pub(crate) fn interpolate(s1: &Be32, x1: &Be32, s2: &Be32, x2: &Be32) -> Result<Be32> {
    let (x1, x2) = (reduce(x1), reduce(x2));
    if x1 == x2 {
        return Err(Error::SameX);
    }
    let l1 = x2 * (x2 - x1).invert();
    let l2 = x1 * (x1 - x2).invert();
    let mut d = l1 * reduce(s1) + l2 * reduce(s2);
    if d == Scalar::ZERO {
        return Err(Error::ZeroKey);
    }
    let out = Zeroizing::new(d.to_bytes());
    d.zeroize();
    Ok(out)
}

/// The affine public point (big-endian x, y) of a canonical little-endian scalar, and its 32-byte
/// RFC 8032 encoding.
pub(crate) fn public_point(secret_le: &[u8; 32]) -> Result<(Affine, Vec<u8>)> {
    let mut scalar =
        Option::<Scalar>::from(Scalar::from_canonical_bytes(*secret_le)).ok_or(Error::ZeroKey)?;
    let encoded = EdwardsPoint::mul_base(&scalar).compress().to_bytes();
    scalar.zeroize();
    let affine = affine_from_encoding(&encoded).ok_or(Error::LibrariesDisagree)?;
    Ok((affine, encoded.to_vec()))
}

/// Recovers (x, y) from an RFC 8032 encoding (y little-endian, x's parity in the top bit).
fn affine_from_encoding(encoded: &[u8; 32]) -> Option<Affine> {
    let mut y_le = *encoded;
    let sign = y_le.last().map(|b| b >> 7)?;
    if let Some(last) = y_le.last_mut() {
        *last &= 0x7f;
    }
    let y = Fq::from_bigint(BigInt::new(limbs(&y_le)))?;
    let (a, b) = ArkAffine::<EdwardsConfig>::get_xs_from_y_unchecked(y)?;
    let x = if u8::from(a.into_bigint().is_odd()) == sign {
        a
    } else {
        b
    };
    let point = ArkAffine::<EdwardsConfig>::new_unchecked(x, y);
    if !point.is_on_curve() || u8::from(x.into_bigint().is_odd()) != sign {
        return None;
    }
    Some(Affine {
        x: be_bytes(&x.into_bigint()),
        y: be_bytes(&y.into_bigint()),
    })
}

fn limbs(le: &[u8; 32]) -> [u64; 4] {
    let mut out = [0u64; 4];
    for (limb, chunk) in out.iter_mut().zip(le.chunks_exact(8)) {
        let mut word = [0u8; 8];
        word.copy_from_slice(chunk);
        *limb = u64::from_le_bytes(word);
    }
    out
}

fn be_bytes(v: &BigInt<4>) -> [u8; 32] {
    let mut out = [0u8; 32];
    for (chunk, limb) in out.chunks_exact_mut(8).zip(v.0.iter().rev()) {
        chunk.copy_from_slice(&limb.to_be_bytes());
    }
    out
}

/// The Solana address: base58 of the 32-byte encoding.
pub(crate) fn solana_address(encoded: &[u8]) -> String {
    bs58::encode(encoded).into_string()
}

/// Deals `secret` (little-endian, reduced mod ℓ) into two shares at random x values:
/// `f(x) = d + a·x`. Returns `(d, s1, x1, s2, x2)`, d canonical little-endian, the others
/// big-endian like every number in a share.
#[allow(clippy::arithmetic_side_effects)]
pub(crate) fn deal(secret_le: &[u8; 32], random: &mut dyn FnMut(&mut [u8])) -> Result<[Be32; 5]> {
    let mut draw = || {
        let mut bytes = Zeroizing::new([0u8; 64]);
        random(bytes.as_mut_slice());
        Scalar::from_bytes_mod_order_wide(&bytes)
    };
    let d = Scalar::from_bytes_mod_order(*secret_le);
    if d == Scalar::ZERO {
        return Err(Error::ZeroKey);
    }
    let a = draw();
    let (x1, x2) = loop {
        let (x1, x2) = (draw(), draw());
        if x1 != x2 && x1 != Scalar::ZERO && x2 != Scalar::ZERO {
            break (x1, x2);
        }
    };
    let be = |s: Scalar| {
        let mut out = Zeroizing::new(s.to_bytes());
        out.reverse();
        out
    };
    Ok([
        Zeroizing::new(d.to_bytes()),
        be(d + a * x1),
        be(x1),
        be(d + a * x2),
        be(x2),
    ])
}
