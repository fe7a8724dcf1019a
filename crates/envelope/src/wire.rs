//! A bounds-checked reader over untrusted bytes. Every read either returns the bytes it
//! promised or a [`FormatError`]; nothing here can panic or overflow.

use crate::error::FormatError;

pub(crate) struct Reader<'a> {
    rest: &'a [u8],
}

impl<'a> Reader<'a> {
    pub(crate) fn new(bytes: &'a [u8]) -> Self {
        Self { rest: bytes }
    }

    pub(crate) fn remaining(&self) -> usize {
        self.rest.len()
    }

    pub(crate) fn take(&mut self, n: usize, field: &'static str) -> Result<&'a [u8], FormatError> {
        let (head, tail) = self
            .rest
            .split_at_checked(n)
            .ok_or(FormatError::Truncated(field))?;
        self.rest = tail;
        Ok(head)
    }

    pub(crate) fn array<const N: usize>(
        &mut self,
        field: &'static str,
    ) -> Result<[u8; N], FormatError> {
        let bytes = self.take(N, field)?;
        bytes.try_into().map_err(|_| FormatError::Truncated(field))
    }

    pub(crate) fn u8(&mut self, field: &'static str) -> Result<u8, FormatError> {
        Ok(u8::from_be_bytes(self.array(field)?))
    }

    pub(crate) fn u16(&mut self, field: &'static str) -> Result<u16, FormatError> {
        Ok(u16::from_be_bytes(self.array(field)?))
    }

    pub(crate) fn u32(&mut self, field: &'static str) -> Result<u32, FormatError> {
        Ok(u32::from_be_bytes(self.array(field)?))
    }

    /// A `u16`-length-prefixed byte string of at most `limit` bytes.
    pub(crate) fn bytes_u16(
        &mut self,
        field: &'static str,
        limit: usize,
    ) -> Result<&'a [u8], FormatError> {
        let len = usize::from(self.u16(field)?);
        if len > limit {
            return Err(FormatError::LimitExceeded {
                field,
                actual: len,
                limit,
            });
        }
        self.take(len, field)
    }

    /// A `u16`-length-prefixed UTF-8 string of at most `limit` bytes.
    pub(crate) fn str_u16(
        &mut self,
        field: &'static str,
        limit: usize,
    ) -> Result<&'a str, FormatError> {
        let bytes = self.bytes_u16(field, limit)?;
        std::str::from_utf8(bytes).map_err(|_| FormatError::Invalid {
            field,
            reason: "not UTF-8",
        })
    }

    pub(crate) fn finish(self) -> Result<(), FormatError> {
        match self.rest.len() {
            0 => Ok(()),
            n => Err(FormatError::TrailingBytes(n)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_are_checked() {
        let mut r = Reader::new(&[0, 3, b'a', b'b']);
        assert_eq!(r.bytes_u16("f", 10), Err(FormatError::Truncated("f")));
        let mut r = Reader::new(&[0, 3, b'a', b'b', b'c']);
        assert_eq!(
            r.bytes_u16("f", 2),
            Err(FormatError::LimitExceeded {
                field: "f",
                actual: 3,
                limit: 2
            })
        );
        let mut r = Reader::new(&[0xFF, 0xFF]);
        assert!(r.u32("f").is_err());
        let r = Reader::new(&[1]);
        assert_eq!(r.finish(), Err(FormatError::TrailingBytes(1)));
    }
}
