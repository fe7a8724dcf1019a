//! Azurite (written next).
