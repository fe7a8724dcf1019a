//! String enums shared by the APIs: curves, backup methods and share-pair statuses.
//!
//! Every enum here tolerates values it does not know: they parse into an `Other(String)`
//! variant that keeps the raw string and serializes back unchanged. Known values are matched
//! ignoring ASCII case (Portal's sources disagree on case, e.g. `SECP256K1` vs `secp256k1`) and
//! are always serialized in their canonical spelling.

use std::convert::Infallible;
use std::fmt;
use std::str::FromStr;

use serde::de::{self, Deserializer, Visitor};
use serde::{Deserialize, Serialize, Serializer};

macro_rules! wire_enum {
    (
        $(#[$meta:meta])*
        $name:ident {
            $( $(#[$vmeta:meta])* $variant:ident = $wire:literal, )*
        }
    ) => {
        $(#[$meta])*
        #[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
        #[non_exhaustive]
        pub enum $name {
            $( $(#[$vmeta])* $variant, )*
            /// A value this crate does not know, kept verbatim.
            ///
            /// Build values with [`from_wire`](Self::from_wire), which never puts a known value
            /// here.
            Other(String),
        }

        impl $name {
            /// Every known value, in declaration order.
            pub const KNOWN: &'static [Self] = &[ $( Self::$variant, )* ];

            /// The canonical wire spelling (or the raw string for `Other`).
            #[must_use]
            pub fn as_str(&self) -> &str {
                match self {
                    $( Self::$variant => $wire, )*
                    Self::Other(raw) => raw,
                }
            }

            /// Parses a wire value; known values match ignoring ASCII case, anything else is
            /// kept in `Other`.
            #[must_use]
            pub fn from_wire(value: &str) -> Self {
                $(
                    if value.eq_ignore_ascii_case($wire) {
                        return Self::$variant;
                    }
                )*
                Self::Other(value.to_owned())
            }

            /// Whether this is a value this crate knows (not `Other`).
            #[must_use]
            pub fn is_known(&self) -> bool {
                !matches!(self, Self::Other(_))
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(self.as_str())
            }
        }

        impl FromStr for $name {
            type Err = Infallible;

            fn from_str(s: &str) -> Result<Self, Self::Err> {
                Ok(Self::from_wire(s))
            }
        }

        impl Serialize for $name {
            fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
                serializer.serialize_str(self.as_str())
            }
        }

        impl<'de> Deserialize<'de> for $name {
            fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
                struct V;
                impl Visitor<'_> for V {
                    type Value = $name;
                    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                        f.write_str(concat!("a ", stringify!($name), " string"))
                    }
                    fn visit_str<E: de::Error>(self, v: &str) -> Result<$name, E> {
                        Ok($name::from_wire(v))
                    }
                }
                deserializer.deserialize_str(V)
            }
        }
    };
}

wire_enum!(
    /// An MPC curve. Portal keys its share envelopes and wallets by curve.
    Curve {
        /// `SECP256K1` (EVM, Bitcoin, Tron).
        Secp256k1 = "SECP256K1",
        /// `ED25519` (Solana, Stellar).
        Ed25519 = "ED25519",
    }
);

wire_enum!(
    /// The backup method of a backup share pair (`backupMethod`).
    ///
    /// Self-Managed Backup webhooks may also see per-curve strings such as
    /// `PASSWORD-SECP256K1`; those stay in [`BackupMethod::Other`].
    BackupMethod {
        /// Google Drive.
        Gdrive = "GDRIVE",
        /// iCloud key-value storage.
        Icloud = "ICLOUD",
        /// Password or PIN.
        Password = "PASSWORD",
        /// Passkey with Portal's passkey enclave.
        Passkey = "PASSKEY",
        /// Integrator-defined storage (the Swift SDK's `.local`).
        Custom = "CUSTOM",
        /// Firebase (Swift SDK).
        Firebase = "FIREBASE",
        /// Portal's own "unknown" value.
        Unknown = "UNKNOWN",
    }
);

wire_enum!(
    /// The status of a signing or backup share pair as Portal reports it.
    ///
    /// `/clients/me` normally shows `completed` / `incomplete`; the raw lifecycle states are
    /// listed too, because some sources show them.
    SharePairStatus {
        /// `completed`: the pair is usable (signing) or recoverable (backup).
        Completed = "completed",
        /// `incomplete`: the pair has not finished its lifecycle.
        Incomplete = "incomplete",
        /// Signing pair: the custodian share is saved by Portal.
        StoredDatabase = "STORED_DATABASE",
        /// Signing pair: the client confirmed it stored its share.
        StoredClient = "STORED_CLIENT",
        /// Backup pair: the custodian backup share is stored.
        StoredCustodianBackupShare = "STORED_CUSTODIAN_BACKUP_SHARE",
        /// Backup pair: the client stored its backup encryption key.
        StoredClientBackupShareKey = "STORED_CLIENT_BACKUP_SHARE_KEY",
        /// Backup pair: the client backup ciphertext is stored.
        StoredClientBackupShare = "STORED_CLIENT_BACKUP_SHARE",
        /// Portal's own "unknown" value.
        Unknown = "UNKNOWN",
    }
);

wire_enum!(
    /// A status the client may send in a share-pair status update.
    SharePairUpdateStatus {
        /// Signing pairs: the client stored its new signing share.
        StoredClient = "STORED_CLIENT",
        /// Backup pairs: the client stored the key of its backup.
        StoredClientBackupShareKey = "STORED_CLIENT_BACKUP_SHARE_KEY",
        /// Backup pairs: the client backup ciphertext is durably stored.
        StoredClientBackupShare = "STORED_CLIENT_BACKUP_SHARE",
    }
);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn known_values_match_ignoring_case_and_serialize_canonically() {
        for (raw, want) in [
            ("SECP256K1", Curve::Secp256k1),
            ("secp256k1", Curve::Secp256k1),
            ("Ed25519", Curve::Ed25519),
        ] {
            let got: Curve = serde_json::from_str(&format!("\"{raw}\"")).unwrap();
            assert_eq!(got, want);
            assert!(got.is_known());
        }
        assert_eq!(
            serde_json::to_string(&Curve::Ed25519).unwrap(),
            "\"ED25519\""
        );
        assert_eq!(
            serde_json::to_string(&SharePairStatus::Completed).unwrap(),
            "\"completed\""
        );
    }

    #[test]
    fn unknown_values_are_kept_verbatim() {
        let got: BackupMethod = serde_json::from_str("\"PASSWORD-SECP256K1\"").unwrap();
        assert_eq!(got, BackupMethod::Other("PASSWORD-SECP256K1".to_owned()));
        assert!(!got.is_known());
        assert_eq!(
            serde_json::to_string(&got).unwrap(),
            "\"PASSWORD-SECP256K1\""
        );
        assert_eq!(got.to_string(), "PASSWORD-SECP256K1");
        let status: SharePairStatus = "SOMETHING_NEW".parse().unwrap();
        assert_eq!(status.as_str(), "SOMETHING_NEW");
    }

    #[test]
    fn every_known_value_round_trips() {
        for v in Curve::KNOWN {
            assert_eq!(&Curve::from_wire(v.as_str()), v);
        }
        for v in BackupMethod::KNOWN {
            assert_eq!(&BackupMethod::from_wire(v.as_str()), v);
        }
        for v in SharePairStatus::KNOWN {
            assert_eq!(&SharePairStatus::from_wire(v.as_str()), v);
        }
        for v in SharePairUpdateStatus::KNOWN {
            assert_eq!(&SharePairUpdateStatus::from_wire(v.as_str()), v);
        }
    }
}
