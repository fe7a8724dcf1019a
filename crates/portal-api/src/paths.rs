//! Route templates of every endpoint this crate covers.
//!
//! Parameters are written `{name}`, the syntax axum 0.8 uses, so a server (such as a simulator)
//! can register these constants directly and stay in step with the client, which builds its
//! URLs from the same templates with [`fill`].
//!
//! The Enclave MPC API paths are relative to the MPC host (`https://mpc-client.portalhq.io`);
//! the others to the API host (`https://api.portalhq.io`).

/// `POST` on the MPC host: create a wallet (new signing shares).
pub const MPC_GENERATE: &str = "/v1/generate";
/// `POST` on the MPC host: create client backup shares.
pub const MPC_BACKUP: &str = "/v1/backup";
/// `POST` on the MPC host: new signing shares from backup shares.
pub const MPC_RECOVER: &str = "/v1/recover";

/// `GET`: the calling client with wallets and share pairs.
pub const CLIENT_ME: &str = "/api/v3/clients/me";
/// `PATCH`: status update of backup share pairs (204).
pub const BACKUP_SHARE_PAIRS: &str = "/api/v3/clients/me/backup-share-pairs";
/// `PATCH`: store the client backup ciphertext of one pair.
pub const BACKUP_SHARE_PAIR: &str = "/api/v3/clients/me/backup-share-pairs/{backupSharePairId}";
/// `GET`: read back the client backup ciphertext of one pair.
pub const BACKUP_SHARE_PAIR_CIPHER_TEXT: &str =
    "/api/v3/clients/me/backup-share-pairs/{backupSharePairId}/cipher-text";
/// `PATCH`: status update of signing share pairs (204).
pub const SIGNING_SHARE_PAIRS: &str = "/api/v3/clients/me/signing-share-pairs";
/// `GET`: the backup share pairs of one wallet.
pub const WALLET_BACKUP_SHARE_PAIRS: &str =
    "/api/v3/clients/me/wallets/{walletId}/backup-share-pairs";
/// `GET`: the signing share pairs of one wallet.
pub const WALLET_SIGNING_SHARE_PAIRS: &str =
    "/api/v3/clients/me/wallets/{walletId}/signing-share-pairs";
/// `POST`: get the custodian backup share for a client-side eject (Portal-managed backups).
pub const WALLET_PREPARE_EJECT: &str = "/api/v3/clients/me/wallets/{walletId}/prepare-eject";
/// `GET`: both backup shares of an ejectable wallet; clears `ejectableUntil`.
pub const WALLET_EJECTABLE_BACKUP_SHARES: &str =
    "/api/v3/clients/me/wallets/{walletId}/ejectable-backup-shares";
/// `PATCH`: finish an eject of one wallet (semantics not confirmed by Portal's docs).
pub const WALLET_COMPLETE_EJECT: &str = "/api/v3/clients/me/wallets/{walletId}/complete-eject";
/// `POST`: mark the client and its wallets ejected (irreversible).
pub const CLIENT_EJECT: &str = "/api/v3/clients/me/eject";

/// `POST`: create a client; `GET`: list clients (`?cursor=&take=`).
pub const CUSTODIAN_CLIENTS: &str = "/api/v3/custodians/me/clients";
/// `GET`: one client of the custodian.
pub const CUSTODIAN_CLIENT: &str = "/api/v3/custodians/me/clients/{clientId}";
/// `POST`: a new Client Session Token.
pub const CUSTODIAN_CLIENT_SESSIONS: &str = "/api/v3/custodians/me/clients/{clientId}/sessions";
/// `PATCH`: open an eject window for a wallet.
pub const CUSTODIAN_ENABLE_EJECT: &str = "/api/v3/custodians/me/clients/{clientId}/enable-eject";
/// `GET`: both backup shares of an ejectable wallet.
pub const CUSTODIAN_EJECTABLE_BACKUP_SHARES: &str =
    "/api/v3/custodians/me/clients/{clientId}/wallets/{walletId}/ejectable-backup-shares";

/// Every template above, for tests that check a server serves them all.
pub const ALL: &[&str] = &[
    MPC_GENERATE,
    MPC_BACKUP,
    MPC_RECOVER,
    CLIENT_ME,
    BACKUP_SHARE_PAIRS,
    BACKUP_SHARE_PAIR,
    BACKUP_SHARE_PAIR_CIPHER_TEXT,
    SIGNING_SHARE_PAIRS,
    WALLET_BACKUP_SHARE_PAIRS,
    WALLET_SIGNING_SHARE_PAIRS,
    WALLET_PREPARE_EJECT,
    WALLET_EJECTABLE_BACKUP_SHARES,
    WALLET_COMPLETE_EJECT,
    CLIENT_EJECT,
    CUSTODIAN_CLIENTS,
    CUSTODIAN_CLIENT,
    CUSTODIAN_CLIENT_SESSIONS,
    CUSTODIAN_ENABLE_EJECT,
    CUSTODIAN_EJECTABLE_BACKUP_SHARES,
];

/// Splits a template into its segments, substituting `{param}` segments in order from
/// `params`. The substituted values are returned raw (not percent-encoded); the caller encodes
/// each segment.
///
/// Returns `None` when the number of parameters does not match the template.
#[must_use]
pub fn fill<'a>(template: &'a str, params: &[&'a str]) -> Option<Vec<&'a str>> {
    let mut params = params.iter();
    let mut out = Vec::new();
    for segment in template.split('/').filter(|s| !s.is_empty()) {
        if segment.starts_with('{') && segment.ends_with('}') {
            out.push(*params.next()?);
        } else {
            out.push(segment);
        }
    }
    params.next().is_none().then_some(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fill_substitutes_in_order() {
        assert_eq!(
            fill(CUSTODIAN_EJECTABLE_BACKUP_SHARES, &["c1", "w/2"]).unwrap(),
            [
                "api",
                "v3",
                "custodians",
                "me",
                "clients",
                "c1",
                "wallets",
                "w/2",
                "ejectable-backup-shares"
            ]
        );
        assert_eq!(fill(MPC_BACKUP, &[]).unwrap(), ["v1", "backup"]);
        assert!(fill(BACKUP_SHARE_PAIR, &[]).is_none());
        assert!(fill(CLIENT_ME, &["extra"]).is_none());
    }

    #[test]
    fn templates_are_absolute_and_unique() {
        let mut seen = std::collections::HashSet::new();
        for t in ALL {
            assert!(t.starts_with('/'), "{t}");
            assert!(seen.insert(*t), "{t}");
        }
    }
}
