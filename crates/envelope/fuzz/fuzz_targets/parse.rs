//! Feeds arbitrary bytes to every entry point that reads an untrusted envelope: the text
//! decoder, `inspect`, and `open` with a real keyring. None may panic; none may open.

#![no_main]

use std::pin::pin;
use std::sync::Arc;
use std::task::{Context, Poll, Waker};

use envelope::{EncryptionContext, Keyring, local::LocalKek};
use libfuzzer_sys::fuzz_target;

/// The local KEK never waits, so one poll finishes `open`.
fn now<F: Future>(f: F) -> Option<F::Output> {
    match pin!(f)
        .as_mut()
        .poll(&mut Context::from_waker(Waker::noop()))
    {
        Poll::Ready(v) => Some(v),
        Poll::Pending => None,
    }
}

fuzz_target!(|data: &[u8]| {
    let keyring = Keyring::new().with(Arc::new(LocalKek::from_key(&[7; 32])));
    let context = EncryptionContext::new();

    if let Ok(text) = std::str::from_utf8(data) {
        if let Ok(bytes) = envelope::from_text(text) {
            let _ = envelope::inspect(&bytes);
        }
    }
    let _ = envelope::inspect(data);
    let _ = EncryptionContext::from_canonical_bytes(data);
    // A fuzzer cannot forge a tag under a key it does not know: nothing may open.
    if let Some(Ok(_)) = now(envelope::open(&keyring, &context, data)) {
        panic!("arbitrary bytes opened");
    }
});
