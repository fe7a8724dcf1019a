//! [`ClientSessions`]: the client credentials `status` reads Portal-held ciphertexts with,
//! found by client id.

use std::collections::HashMap;
use std::fmt;
use std::io::BufRead;

use portal_api::{ClientApi, Portal};
use serde::Serialize;

use crate::client_lines::{LineEvent, LineRun};
use crate::error::{Error, cause_chain};

/// Client sessions by client id: what lets [`CustodianFlow::status`](crate::CustodianFlow::status)
/// read ciphertexts that Portal keeps behind each client's own routes (Portal-Managed
/// Backups). Holds one [`ClientApi`] per credential given (no secret in `Debug`).
#[derive(Clone, Default)]
pub struct ClientSessions {
    by_client: HashMap<String, ClientApi>,
    lookups: u64,
}

impl fmt::Debug for ClientSessions {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ClientSessions")
            .field("clients", &self.by_client.len())
            .field("lookups", &self.lookups)
            .finish()
    }
}

/// A credential line that gave no session.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
#[non_exhaustive]
pub struct UnusableLine {
    /// The line number, from 1.
    pub line: u64,
    /// Why (never quoting the line).
    pub reason: String,
}

impl ClientSessions {
    /// No session: every Portal-held ciphertext is reported as not checked.
    #[must_use]
    pub fn new() -> Self {
        Self::default()
    }

    /// Adds the session of `client_id`.
    pub fn insert(&mut self, client_id: impl Into<String>, client: ClientApi) {
        self.by_client.insert(client_id.into(), client);
    }

    /// Reads client credentials in the [`client_lines`](crate::client_lines) grammar (one
    /// client a line; `generateResponse` is ignored) and finds whose each is with
    /// `GET /api/v3/clients/me`, `concurrency` lines at once, over `portal`'s transport.
    /// Lines that cannot be used are returned with why; the others are kept.
    ///
    /// ```
    /// use backup_flow::fleet::ClientSessions;
    /// use backup_flow::portal_api::Portal;
    ///
    /// # tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap().block_on(async {
    /// let portal = Portal::builder().build()?;
    /// // Neither line is usable, so nothing is asked of Portal.
    /// let input = &b"not json\n{\"clientApiKey\":\"k\",\"clientSessionToken\":\"t\"}\n"[..];
    /// let (sessions, unusable) = ClientSessions::from_lines(&portal, input, 4).await?;
    /// assert!(sessions.is_empty() && sessions.lookups() == 0);
    /// assert_eq!(unusable.iter().map(|u| u.line).collect::<Vec<_>>(), [1, 2]);
    /// assert!(unusable.iter().all(|u| !u.reason.contains("\"k\"")));
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// # }).unwrap();
    /// ```
    ///
    /// # Errors
    /// Reading `input`.
    pub async fn from_lines<R: BufRead + Send + 'static>(
        portal: &Portal,
        input: R,
        concurrency: usize,
    ) -> std::io::Result<(Self, Vec<UnusableLine>)> {
        let mut sessions = Self::new();
        let mut unusable = Vec::new();
        LineRun::new(concurrency)
            .run(
                input,
                |numbered| {
                    let portal = portal.clone();
                    async move {
                        let line = numbered.line;
                        let client = numbered.parsed.and_then(|parsed| {
                            parsed
                                .credential
                                .client(&portal)
                                .map_err(|e| cause_chain(&e))
                        });
                        let client = match client {
                            Ok(client) => client,
                            Err(reason) => return (line, false, Err(reason)),
                        };
                        let found =
                            client
                                .client_me()
                                .await
                                .map(|me| (me.id, client))
                                .map_err(|e| {
                                    cause_chain(
                                        &Error::portal("GET", portal_api::paths::CLIENT_ME)(e),
                                    )
                                });
                        (line, true, found)
                    }
                },
                |event| {
                    if let LineEvent::Finished((line, asked, found)) = event {
                        if asked {
                            sessions.lookups = sessions.lookups.saturating_add(1);
                        }
                        match found {
                            Ok((id, client)) => sessions.insert(id, client),
                            Err(reason) => unusable.push(UnusableLine { line, reason }),
                        }
                    }
                    Ok(())
                },
            )
            .await?;
        unusable.sort_by_key(|u| u.line);
        Ok((sessions, unusable))
    }

    /// The session of `client_id`, if one was given.
    #[must_use]
    pub fn get(&self, client_id: &str) -> Option<&ClientApi> {
        self.by_client.get(client_id)
    }

    /// How many clients have a session.
    #[must_use]
    pub fn len(&self) -> usize {
        self.by_client.len()
    }

    /// Whether no client has a session.
    #[must_use]
    pub fn is_empty(&self) -> bool {
        self.by_client.is_empty()
    }

    /// The Portal requests made to find whose each credential is (`GET /clients/me`).
    #[must_use]
    pub fn lookups(&self) -> u64 {
        self.lookups
    }
}
