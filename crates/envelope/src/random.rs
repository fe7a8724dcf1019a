//! Randomness from the operating system. Every seal draws all of its per-message randomness
//! in one call, because the system call costs more than the rest of a small seal.

pub(crate) fn fill(buf: &mut [u8]) -> Result<(), crate::Error> {
    getrandom::fill(buf).map_err(|e| crate::Error::Random(e.to_string().into()))
}
