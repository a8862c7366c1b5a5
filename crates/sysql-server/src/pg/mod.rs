//! The agent's Postgres endpoint: psql, Grafana and any Postgres driver ask
//! the agent in SQL over the Postgres wire protocol (pgwire).
//!
//! - Listeners ([`PgOptions`]): a unix socket (mode 0660, a group of
//!   readers) and optionally TCP, which off loopback requires TLS; the
//!   certificate failing to load is a set-up error, never plaintext.
//! - Who may connect: [`auth`].
//! - Every statement goes down the engine's statement path
//!   (`sysql_engine::query`) in a session of the connection's own, under
//!   the server policy (read-only, no files, no views): what it refuses
//!   comes back as a Postgres error with its SQLSTATE.
//! - Rows stream as they come, flushed per batch, so a live query's rows
//!   reach psql (with `\set FETCH_COUNT 1`, through a cursor) as they
//!   happen. A CancelRequest (psql's Ctrl-C), the statement timeout (for
//!   bounded statements) or the client going away stops the statement, and
//!   with it its live subscriptions.
//!
//! The connection loop is sysql's own (`conn`): pgwire's handlers run
//! start-up, authentication and the extended protocol's Parse, Bind and
//! Describe, while queries and Execute run here, where the socket can be
//! watched while rows are awaited.

pub mod auth;
mod catalog;
mod conn;
mod statement;
mod types;

use pgwire_server::api::ConnectionManager;
use pgwire_server::error::{ErrorInfo, PgWireError};
use pgwire_server::tokio::tokio_rustls::rustls;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;
use sysql_engine::query::{ErrorKind, Policy, QueryError};
use sysql_engine::Engine;

pub use auth::{load_passwords, password_line};

/// The unix socket's name, as Postgres names it (so `psql -h DIR` finds it).
pub const SOCKET_NAME: &str = ".s.PGSQL.5432";

/// How a client reached the endpoint.
#[derive(Debug, Clone, Copy)]
pub(crate) enum Peer {
    Unix,
    Tcp { addr: SocketAddr, tls: bool },
}

/// How the Postgres endpoint listens and whom it admits.
#[derive(Debug, Clone, Default)]
pub struct PgOptions {
    /// The unix socket's path.
    pub unix: Option<PathBuf>,
    /// The group that may open the unix socket (besides root and the agent).
    pub group: Option<String>,
    /// TCP addresses.
    pub tcp: Vec<SocketAddr>,
    /// TLS certificate chain and key (PEM), for TCP.
    pub tls_cert: Option<PathBuf>,
    pub tls_key: Option<PathBuf>,
    /// SCRAM verifiers of TCP users (see [`auth`]).
    pub passwords: Option<PathBuf>,
    pub max_connections: usize,
    /// Bounded statements stop after this long.
    pub statement_timeout: Option<Duration>,
}

/// The endpoint's listeners, bound.
pub struct PgListeners {
    unix: Option<(std::os::unix::net::UnixListener, PathBuf, Option<u32>)>,
    tcp: Vec<(std::net::TcpListener, SocketAddr)>,
    tls: Option<pgwire_server::tokio::TlsAcceptor>,
    options: PgOptions,
}

fn load_tls(cert: &Path, key: &Path) -> Result<pgwire_server::tokio::TlsAcceptor, String> {
    let read = |p: &Path| std::fs::read(p).map_err(|e| format!("cannot read {}: {e}", p.display()));
    let certs = rustls_pemfile::certs(&mut read(cert)?.as_slice())
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| format!("{}: not a PEM certificate chain: {e}", cert.display()))?;
    if certs.is_empty() {
        return Err(format!("{}: no certificate in it", cert.display()));
    }
    let key = rustls_pemfile::private_key(&mut read(key)?.as_slice())
        .map_err(|e| format!("{}: not a PEM private key: {e}", key.display()))?
        .ok_or_else(|| format!("{}: no private key in it", key.display()))?;
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut config = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .and_then(|b| b.with_no_client_auth().with_single_cert(certs, key))
        .map_err(|e| format!("the TLS certificate and key do not make a server: {e}"))?;
    config.alpn_protocols = vec![b"postgresql".to_vec()];
    Ok(pgwire_server::tokio::TlsAcceptor::from(Arc::new(config)))
}

/// The gid of group `name`, if it exists.
fn group_id(name: &str) -> Option<u32> {
    nix::unistd::Group::from_name(name).ok().flatten().map(|g| g.gid.as_raw())
}

impl PgListeners {
    /// Checks the options and binds every listener (before privileges are
    /// dropped). Each refusal is a set-up error.
    pub fn bind(options: PgOptions) -> Result<PgListeners, String> {
        let tls = match (&options.tls_cert, &options.tls_key) {
            (Some(cert), Some(key)) => Some(load_tls(cert, key)?),
            (None, None) => None,
            _ => return Err("--pg-tls-cert and --pg-tls-key go together".into()),
        };
        for addr in &options.tcp {
            if !addr.ip().is_loopback() && tls.is_none() {
                return Err(format!("Postgres on {addr} needs TLS off loopback: give --pg-tls-cert and --pg-tls-key"));
            }
        }
        if !options.tcp.is_empty() {
            match &options.passwords {
                Some(path) => {
                    load_passwords(path)?;
                }
                None => {
                    return Err("Postgres over TCP needs --pg-passwords (SCRAM-SHA-256 verifiers, made by \
                                `sysql pg-password USER`)"
                        .into())
                }
            }
        }
        if options.max_connections == 0 {
            return Err("--pg-max-connections must be at least 1".into());
        }
        let unix = match &options.unix {
            Some(path) => {
                let listener = crate::uds::bind_std(path, 0o660).map_err(|e| e.to_string())?;
                let gid = options.group.as_deref().and_then(group_id);
                if let Some(gid) = gid {
                    nix::unistd::chown(path, None, Some(nix::unistd::Gid::from_raw(gid)))
                        .map_err(|e| format!("cannot give {} to its group: {e}", path.display()))?;
                }
                Some((listener, path.clone(), gid))
            }
            None => None,
        };
        let mut tcp = Vec::new();
        for addr in &options.tcp {
            let listener =
                std::net::TcpListener::bind(addr).map_err(|e| format!("cannot listen for Postgres on {addr}: {e}"))?;
            let local = listener.local_addr().map_err(|e| e.to_string())?;
            tcp.push((listener, local));
        }
        Ok(PgListeners { unix, tcp, tls, options })
    }

    /// Where it listens, for the agent's start-up line.
    pub fn describe(&self) -> String {
        let mut places = Vec::new();
        if let Some((_, path, gid)) = &self.unix {
            let who = match (gid, &self.options.group) {
                (Some(_), Some(g)) => format!("root and group {g}"),
                (None, Some(g)) => format!("root only: no group {g}"),
                _ => "root only".into(),
            };
            places.push(format!("{} ({who})", path.display()));
        }
        for (_, addr) in &self.tcp {
            let tls = if self.tls.is_some() { "TLS, SCRAM" } else { "SCRAM" };
            places.push(format!("{addr} ({tls})"));
        }
        places.join(" and ")
    }

    /// The TCP addresses bound (a port of 0 is chosen by the system).
    pub fn tcp_addrs(&self) -> Vec<SocketAddr> {
        self.tcp.iter().map(|(_, a)| *a).collect()
    }

    /// Serves clients until `shutdown` resolves; then every connection is closed.
    pub async fn serve(self, engine: Engine, policy: Policy, shutdown: impl std::future::Future<Output = ()>) {
        let manager = Arc::new(ConnectionManager::new());
        let shared = Arc::new(conn::Shared::new(engine, policy, &self.options, manager));
        let mut tasks = tokio::task::JoinSet::new();
        if let Some((listener, _, gid)) = self.unix {
            match listener.set_nonblocking(true).and_then(|()| tokio::net::UnixListener::from_std(listener)) {
                Ok(listener) => {
                    tasks.spawn(accept_unix(listener, gid, shared.clone()));
                }
                Err(e) => eprintln!("sysql: agent: postgres: cannot listen on the unix socket: {e}"),
            }
        }
        for (listener, addr) in self.tcp {
            match listener.set_nonblocking(true).and_then(|()| tokio::net::TcpListener::from_std(listener)) {
                Ok(listener) => {
                    tasks.spawn(accept_tcp(listener, self.tls.clone(), shared.clone()));
                }
                Err(e) => eprintln!("sysql: agent: postgres: cannot listen on {addr}: {e}"),
            }
        }
        shutdown.await;
        // dropping the accept loops drops their connections
        tasks.shutdown().await;
    }
}

/// Whether a process with these ids may use the unix socket.
fn admitted(uid: u32, gid: u32, pid: Option<i32>, group: Option<u32>) -> bool {
    let me = nix::unistd::geteuid().as_raw();
    if uid == 0 || uid == me {
        return true;
    }
    let Some(group) = group else { return false };
    if gid == group {
        return true;
    }
    // supplementary groups, from the peer's status
    let Some(pid) = pid else { return false };
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    status
        .lines()
        .find_map(|l| l.strip_prefix("Groups:"))
        .is_some_and(|g| g.split_whitespace().any(|g| g.parse::<u32>() == Ok(group)))
}

async fn accept_unix(listener: tokio::net::UnixListener, group: Option<u32>, shared: Arc<conn::Shared>) {
    let mut connections = tokio::task::JoinSet::new();
    loop {
        tokio::select! {
            accepted = listener.accept() => {
                let Ok((stream, _)) = accepted else { continue };
                let Ok(cred) = stream.peer_cred() else { continue };
                if !admitted(cred.uid(), cred.gid(), cred.pid(), group) {
                    continue; // closed
                }
                let shared = shared.clone();
                connections.spawn(async move {
                    let socket = conn::unix_socket(stream);
                    conn::serve(socket, shared, Peer::Unix).await
                });
            }
            Some(_) = connections.join_next(), if !connections.is_empty() => {}
        }
    }
}

async fn accept_tcp(
    listener: tokio::net::TcpListener,
    tls: Option<pgwire_server::tokio::TlsAcceptor>,
    shared: Arc<conn::Shared>,
) {
    let mut connections = tokio::task::JoinSet::new();
    loop {
        tokio::select! {
            accepted = listener.accept() => {
                let Ok((stream, addr)) = accepted else { continue };
                let (shared, tls) = (shared.clone(), tls.clone());
                connections.spawn(async move {
                    let negotiated =
                        tokio::time::timeout(conn::STARTUP_TIMEOUT, pgwire_server::tokio::server::negotiate_tls(stream, tls)).await;
                    if let Ok(Ok(Some(socket))) = negotiated {
                        let secure = pgwire_server::api::ClientInfo::is_secure(&socket);
                        conn::serve(socket, shared, Peer::Tcp { addr, tls: secure }).await
                    }
                });
            }
            Some(_) = connections.join_next(), if !connections.is_empty() => {}
        }
    }
}

/// A FATAL error (the connection ends).
pub(crate) fn fatal(code: &str, message: String) -> PgWireError {
    PgWireError::UserError(Box::new(ErrorInfo::new("FATAL".into(), code.into(), message)))
}

/// An ERROR with its SQLSTATE.
pub(crate) fn error(code: &str, message: String) -> PgWireError {
    PgWireError::UserError(Box::new(ErrorInfo::new("ERROR".into(), code.into(), message)))
}

/// The SQLSTATE of a statement's error.
fn sqlstate(e: &QueryError) -> &'static str {
    let m = e.message.to_ascii_lowercase();
    match e.kind {
        ErrorKind::Syntax => "42601",
        ErrorKind::ReadOnly => "25006",
        ErrorKind::Privilege => "42501",
        ErrorKind::Resources => "53200",
        ErrorKind::Cancelled => "57014",
        ErrorKind::Plan if m.contains("table") && m.contains("not found") => "42P01",
        ErrorKind::Plan if m.contains("no field named") || (m.contains("column") && m.contains("not found")) => "42703",
        ErrorKind::Plan if m.contains("function") && (m.contains("invalid") || m.contains("not found")) => "42883",
        ErrorKind::Plan => "42000",
        ErrorKind::Execution => "XX000",
    }
}

/// A statement's error as the client gets it.
pub(crate) fn query_error(e: QueryError) -> PgWireError {
    error(sqlstate(&e), e.message)
}

/// Text on one line.
pub(crate) fn one_line(text: &str) -> String {
    sysql_engine::query::error::one_line(text)
}
