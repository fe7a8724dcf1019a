//! Decimal big integers (Portal writes every share, coordinate and Birkhoff x in decimal) to and
//! from 32 big-endian bytes. This is number formatting, not field arithmetic: the values are
//! reduced by the curve crates afterwards.

use zeroize::Zeroizing;

/// The longest decimal accepted: 2^256 has 78 digits; leading zeros beyond that are refused too.
const MAX_DIGITS: usize = 80;

/// Why a decimal string was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum DecimalError {
    /// Empty, or a character other than `0`-`9`.
    NotDecimal,
    /// 2^256 or more.
    TooLarge,
}

impl DecimalError {
    pub(crate) fn describe(self, field: &str) -> String {
        match self {
            Self::NotDecimal => format!("`{field}` is not a decimal integer"),
            Self::TooLarge => format!("`{field}` does not fit in 256 bits"),
        }
    }
}

/// Parses an unsigned decimal integer below 2^256 into big-endian bytes, wiped on drop.
pub(crate) fn parse_be32(text: &str) -> Result<Zeroizing<[u8; 32]>, DecimalError> {
    if text.is_empty() || text.len() > MAX_DIGITS {
        return Err(if text.is_empty() {
            DecimalError::NotDecimal
        } else {
            DecimalError::TooLarge
        });
    }
    let mut out = Zeroizing::new([0u8; 32]);
    for c in text.bytes() {
        if !c.is_ascii_digit() {
            return Err(DecimalError::NotDecimal);
        }
        // out = out * 10 + digit, byte by byte from the least significant end.
        let mut carry = u16::from(c.wrapping_sub(b'0'));
        for byte in out.iter_mut().rev() {
            let v = u16::from(*byte).wrapping_mul(10).wrapping_add(carry);
            let [lo, hi] = v.to_le_bytes();
            *byte = lo;
            carry = u16::from(hi);
        }
        if carry != 0 {
            return Err(DecimalError::TooLarge);
        }
    }
    Ok(out)
}

/// Formats big-endian bytes as a decimal integer without leading zeros, wiped on drop.
pub(crate) fn format_be32(value: &[u8; 32]) -> Zeroizing<String> {
    let mut n = Zeroizing::new(*value);
    // 2^256 has 78 digits.
    let mut digits = Zeroizing::new(Vec::with_capacity(78));
    loop {
        // n, remainder = n / 10, n % 10, from the most significant byte.
        let mut rem: u16 = 0;
        let mut all_zero = true;
        for byte in n.iter_mut() {
            let cur = rem.wrapping_mul(256).wrapping_add(u16::from(*byte));
            let [q, _] = cur.wrapping_div(10).to_le_bytes();
            *byte = q;
            rem = cur.wrapping_rem(10);
            all_zero &= q == 0;
        }
        let [r, _] = rem.to_le_bytes();
        digits.push(b'0'.wrapping_add(r));
        if all_zero {
            break;
        }
    }
    let mut text = Zeroizing::new(String::with_capacity(digits.len()));
    for d in digits.iter().rev() {
        text.push(char::from(*d));
    }
    text
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn round_trips_and_limits() {
        for text in ["0", "1", "255", "256", "65535", "1000000007"] {
            assert_eq!(format_be32(&parse_be32(text).unwrap()).as_str(), text);
        }
        let max = "115792089237316195423570985008687907853269984665640564039457584007913129639935";
        assert_eq!(*parse_be32(max).unwrap(), [0xff; 32]);
        assert_eq!(format_be32(&[0xff; 32]).as_str(), max);
        let over = "115792089237316195423570985008687907853269984665640564039457584007913129639936";
        assert_eq!(parse_be32(over).unwrap_err(), DecimalError::TooLarge);
        assert_eq!(parse_be32("").unwrap_err(), DecimalError::NotDecimal);
        assert_eq!(parse_be32("12a").unwrap_err(), DecimalError::NotDecimal);
        assert_eq!(parse_be32("-1").unwrap_err(), DecimalError::NotDecimal);
        assert_eq!(parse_be32(" 1").unwrap_err(), DecimalError::NotDecimal);
        assert_eq!(format_be32(&parse_be32("007").unwrap()).as_str(), "7");
    }
}
