//! Who may use the Postgres endpoint.
//!
//! - On the unix socket, whoever can open it: its mode (0660) and group say
//!   who, and every peer's credentials are checked again on accept.
//! - Over TCP, a user of the password file, by SCRAM-SHA-256 (the file holds
//!   verifiers, never passwords); from anywhere but loopback only over TLS.
//!   Nothing else is accepted: no password file, no TCP user.
//!
//! A user missing from the file goes through the same exchange as a known
//! one (with a verifier nobody can match), so a client cannot tell which
//! users exist. The file is read at each attempt: a change needs no restart,
//! and a file that becomes unreadable refuses everyone.

use super::{fatal, Peer};
use async_trait::async_trait;
use base64::engine::general_purpose::STANDARD;
use base64::Engine as _;
use futures::Sink;
use pgwire_server::api::auth::mechanism::{AuthMechanism, AuthMechanismFactory, AuthState};
use pgwire_server::api::auth::sasl::scram::{gen_salted_password, ScramAuth, ScramSecret};
use pgwire_server::api::auth::sasl::SaslMechanisms;
use pgwire_server::api::auth::{
    protocol_negotiation, save_startup_parameters_to_metadata, AuthDriver, AuthOutcome, AuthSource,
    DefaultServerParameterProvider, LoginInfo, Password, StartupHandler,
};
use pgwire_server::api::{ClientInfo, ConnectionManager, METADATA_USER};
use pgwire_server::error::{PgWireError, PgWireResult};
use pgwire_server::messages::startup::PasswordMessageFamily;
use pgwire_server::messages::{PgWireBackendMessage, PgWireFrontendMessage};
use std::collections::HashMap;
use std::fmt::Debug;
use std::hash::{BuildHasher, Hasher};
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;

/// Iterations of new verifiers (Postgres's default).
pub const ITERATIONS: usize = 4096;

/// A SCRAM-SHA-256 verifier, as Postgres stores one:
/// `SCRAM-SHA-256$<iterations>:<salt>$<StoredKey>:<ServerKey>` (base64).
#[derive(Clone, PartialEq, Eq)]
pub struct Verifier {
    iterations: usize,
    salt: Vec<u8>,
    stored_key: Vec<u8>,
    server_key: Vec<u8>,
}

impl Debug for Verifier {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Verifier").field("iterations", &self.iterations).finish_non_exhaustive()
    }
}

impl Verifier {
    /// The verifier of `password` with `salt`.
    pub fn new(password: &str, salt: &[u8], iterations: usize) -> Verifier {
        let salted = gen_salted_password(password, salt, iterations);
        match ScramSecret::verifier_from_salted_password(salt.to_vec(), salted, iterations) {
            ScramSecret::Verifier { salt, iterations, stored_key, server_key } => {
                Verifier { iterations, salt, stored_key, server_key }
            }
            ScramSecret::SaltedPassword { .. } => unreachable!("verifier_from_salted_password makes a verifier"),
        }
    }

    pub fn parse(text: &str) -> Result<Verifier, String> {
        let bad =
            || "not a SCRAM-SHA-256 verifier (SCRAM-SHA-256$<iterations>:<salt>$<StoredKey>:<ServerKey>)".to_string();
        let rest = text.trim().strip_prefix("SCRAM-SHA-256$").ok_or_else(bad)?;
        let (params, keys) = rest.split_once('$').ok_or_else(bad)?;
        let (iterations, salt) = params.split_once(':').ok_or_else(bad)?;
        let (stored, server) = keys.split_once(':').ok_or_else(bad)?;
        let iterations: usize = iterations.parse().map_err(|_| bad())?;
        let decode = |s: &str| STANDARD.decode(s).map_err(|_| bad());
        let v = Verifier { iterations, salt: decode(salt)?, stored_key: decode(stored)?, server_key: decode(server)? };
        if v.iterations == 0 || v.salt.is_empty() || v.stored_key.len() != 32 || v.server_key.len() != 32 {
            return Err(bad());
        }
        Ok(v)
    }

    fn secret(&self) -> ScramSecret {
        ScramSecret::Verifier {
            salt: self.salt.clone(),
            iterations: self.iterations,
            stored_key: self.stored_key.clone(),
            server_key: self.server_key.clone(),
        }
    }
}

impl std::fmt::Display for Verifier {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "SCRAM-SHA-256${}:{}${}:{}",
            self.iterations,
            STANDARD.encode(&self.salt),
            STANDARD.encode(&self.stored_key),
            STANDARD.encode(&self.server_key)
        )
    }
}

/// The password file's line for `user` with `password` (a fresh salt).
pub fn password_line(user: &str, password: &str) -> Result<String, String> {
    if user.is_empty() || user.contains(':') || user.contains(char::is_whitespace) {
        return Err(format!("user name {user:?}: it must be non-empty, without ':' or spaces"));
    }
    let mut salt = [0u8; 16];
    std::fs::File::open("/dev/urandom")
        .and_then(|mut f| std::io::Read::read_exact(&mut f, &mut salt))
        .map_err(|e| format!("cannot read /dev/urandom: {e}"))?;
    Ok(format!("{user}:{}", Verifier::new(password, &salt, ITERATIONS)))
}

/// Reads a password file: lines `user:verifier`, `#` comments. It must not
/// be writable or readable by others than its owner and group.
pub fn load_passwords(path: &Path) -> Result<HashMap<String, Verifier>, String> {
    let meta = std::fs::metadata(path).map_err(|e| format!("cannot read the password file {}: {e}", path.display()))?;
    if meta.mode() & 0o027 != 0 {
        return Err(format!(
            "the password file {} may be read or written by others (mode {:o}); chmod 600 or 640 it",
            path.display(),
            meta.mode() & 0o777
        ));
    }
    let text =
        std::fs::read_to_string(path).map_err(|e| format!("cannot read the password file {}: {e}", path.display()))?;
    let mut users = HashMap::new();
    for (n, line) in text.lines().enumerate() {
        let line = line.trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let at = || format!("{}:{}", path.display(), n + 1);
        let (user, verifier) =
            line.split_once(':').ok_or_else(|| format!("{}: expected user:SCRAM-SHA-256$...", at()))?;
        let verifier = Verifier::parse(verifier).map_err(|e| format!("{}: {e}", at()))?;
        users.insert(user.trim().to_string(), verifier);
    }
    Ok(users)
}

/// The password file as pgwire's source of SCRAM secrets.
#[derive(Debug)]
struct Passwords {
    path: PathBuf,
    /// Keys the made-up verifiers of unknown users.
    mock: std::collections::hash_map::RandomState,
}

impl Passwords {
    /// A verifier for a user that does not exist: stable for the user (a
    /// client sees the same salt each time), matched by no password.
    fn mock(&self, user: &str) -> Verifier {
        let word = |n: u64| {
            let mut h = self.mock.build_hasher();
            h.write(user.as_bytes());
            h.write_u64(n);
            h.finish().to_le_bytes()
        };
        let bytes = |from: u64, words: u64| (from..from + words).flat_map(word).collect::<Vec<u8>>();
        Verifier { iterations: ITERATIONS, salt: bytes(0, 2), stored_key: bytes(2, 4), server_key: bytes(6, 4) }
    }
}

#[async_trait]
impl AuthSource for Passwords {
    async fn get_password(&self, login: &LoginInfo) -> PgWireResult<Password> {
        Err(PgWireError::InvalidPassword(login.user().unwrap_or_default().to_string()))
    }

    async fn get_scram_secret(&self, login: &LoginInfo) -> PgWireResult<(ScramSecret, Option<()>)> {
        let user = login.user().ok_or(PgWireError::UserNameRequired)?;
        let path = self.path.clone();
        let users = tokio::task::spawn_blocking(move || load_passwords(&path))
            .await
            .map_err(|e| PgWireError::ApiError(Box::new(e)))?;
        match users {
            Ok(users) => Ok((users.get(user).cloned().unwrap_or_else(|| self.mock(user)).secret(), None)),
            Err(e) => {
                log::error!("postgres: {e}; refusing {user}");
                eprintln!("sysql: agent: postgres: {e}; refusing {user}");
                Err(PgWireError::InvalidPassword(user.to_string()))
            }
        }
    }
}

/// Admits a peer without a password (the unix socket's, checked on accept).
struct Trust;

#[async_trait]
impl AuthMechanism for Trust {
    async fn begin(&mut self, _client: &(dyn ClientInfo + Send + Sync)) -> PgWireResult<AuthState> {
        Ok(AuthState::Ok { final_message: None, identity: None })
    }

    async fn next(
        &mut self,
        _client: &(dyn ClientInfo + Send + Sync),
        _message: PasswordMessageFamily,
    ) -> PgWireResult<AuthState> {
        Err(PgWireError::InvalidSASLState)
    }
}

/// Set in a connection's extensions when the connection limit is reached:
/// its start-up is answered with an error.
pub(super) struct OverLimit(pub usize);

/// The start-up of every connection: protocol, transport rules, then trust
/// (unix socket) or SCRAM (TCP).
pub(super) struct Startup {
    driver: AuthDriver<Arc<DefaultServerParameterProvider>>,
    scram: Option<SaslMechanisms>,
}

impl Startup {
    pub fn new(passwords: Option<PathBuf>, manager: Arc<ConnectionManager>) -> Startup {
        let mut params = DefaultServerParameterProvider::default();
        params.server_version = format!("16.6 (sysql {})", crate::VERSION);
        params.is_superuser = false;
        params.default_transaction_read_only = true;
        params.time_zone = "UTC".into();
        params.search_path = "public".into();
        let driver = AuthDriver::new(Arc::new(params)).with_connection_manager(manager);
        let scram = passwords.map(|path| {
            let source = Passwords { path, mock: Default::default() };
            let scram: Arc<dyn pgwire_server::api::auth::sasl::SaslMechanismFactory> =
                Arc::new(ScramAuth::new(Arc::new(source)));
            SaslMechanisms::new(vec![scram])
        });
        Startup { driver, scram }
    }

    async fn outcome<C>(&self, client: &mut C, outcome: AuthOutcome) -> PgWireResult<()>
    where
        C: ClientInfo + Sink<PgWireBackendMessage> + Unpin + Send + Sync,
        C::Error: Debug,
        PgWireError: From<<C as Sink<PgWireBackendMessage>>::Error>,
    {
        match outcome {
            AuthOutcome::InProgress => Ok(()),
            AuthOutcome::Authenticated { final_message, .. } => {
                self.driver.complete_authentication(client, final_message).await
            }
        }
    }
}

#[async_trait]
impl StartupHandler for Startup {
    async fn on_startup<C>(&self, client: &mut C, message: PgWireFrontendMessage) -> PgWireResult<()>
    where
        C: ClientInfo + Sink<PgWireBackendMessage> + Unpin + Send + Sync,
        C::Error: Debug,
        PgWireError: From<<C as Sink<PgWireBackendMessage>>::Error>,
    {
        match message {
            PgWireFrontendMessage::Startup(ref startup) => {
                protocol_negotiation(client, startup).await?;
                save_startup_parameters_to_metadata(client, startup);
                if let Some(limit) = client.session_extensions().get::<OverLimit>() {
                    return Err(fatal(
                        "53300",
                        format!("sorry, too many clients already: the sysql agent serves {} at once", limit.0),
                    ));
                }
                let peer = client.session_extensions().get::<Peer>().map(|p| *p);
                let mechanism: Box<dyn AuthMechanism> = match peer {
                    Some(Peer::Unix) => Box::new(Trust),
                    Some(Peer::Tcp { addr, tls }) => {
                        if !tls && !addr.ip().is_loopback() {
                            return Err(fatal(
                                "28000",
                                format!("sysql accepts connections from {} only over TLS (sslmode=require)", addr.ip()),
                            ));
                        }
                        match &self.scram {
                            Some(scram) => scram.create(),
                            None => return Err(fatal("28000", "no password file: sysql admits no TCP users".into())),
                        }
                    }
                    None => return Err(fatal("08P01", "connection of unknown origin".into())),
                };
                let outcome = self.driver.begin_authentication(client, mechanism).await?;
                self.outcome(client, outcome).await
            }
            PgWireFrontendMessage::PasswordMessageFamily(message) => {
                let user = client.metadata().get(METADATA_USER).cloned().unwrap_or_default();
                let outcome = match self.driver.advance_authentication(client, message).await {
                    Ok(outcome) => outcome,
                    // as Postgres says it, naming the user
                    Err(PgWireError::InvalidPassword(_)) | Err(PgWireError::InvalidScramMessage(_)) => {
                        return Err(fatal("28P01", format!("password authentication failed for user \"{user}\"")))
                    }
                    Err(e) => return Err(e),
                };
                self.outcome(client, outcome).await
            }
            _ => Ok(()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn verifiers_round_trip() {
        let line = password_line("grafana", "s3cret").unwrap();
        let (user, text) = line.split_once(':').unwrap();
        assert_eq!(user, "grafana");
        let v = Verifier::parse(text).unwrap();
        assert_eq!(v.to_string(), text);
        assert!(Verifier::parse("md5abcdef").is_err());
        assert!(password_line("a:b", "x").is_err());
    }

    #[test]
    fn the_verifier_postgres_makes() {
        // RFC 7677's password and salt; the keys as Python's hashlib makes
        // them (PBKDF2-HMAC-SHA-256, then RFC 5802's Client and Server Key),
        // which is what Postgres stores.
        let salt = STANDARD.decode("W22ZaJ0SNY7soEsUEjb6gQ==").unwrap();
        let v = Verifier::new("pencil", &salt, 4096);
        assert_eq!(
            v.to_string(),
            "SCRAM-SHA-256$4096:W22ZaJ0SNY7soEsUEjb6gQ==$WG5d8oPm3OtcPnkdi4Uo7BkeZkBFzpcXkuLmtbsT4qY=:wfPLwcE6nTWhTAmQ7tl2KeoiWGPlZqQxSrmfPwDl2dU="
        );
    }

    #[test]
    fn unknown_users_get_a_stable_verifier() {
        let p = Passwords { path: PathBuf::from("/nonexistent"), mock: Default::default() };
        assert_eq!(p.mock("eve"), p.mock("eve"));
        assert_ne!(p.mock("eve").salt, p.mock("mallory").salt);
        assert_eq!(p.mock("eve").stored_key.len(), 32);
    }
}
