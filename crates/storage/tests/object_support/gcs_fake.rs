//! GCS fake (written next).
