//! The sysql agent's endpoints. `flight` serves Arrow Flight SQL on a unix
//! socket only root can open, running every statement through the engine's
//! statement path (`sysql_engine::query`) and its policy; `client` is what
//! the shell and `-c` use to ask it. They speak Flight SQL's statement
//! commands, plus:
//!
//! - a session per client, named by the `x-sysql-session` header the client
//!   picks (views and settings live in it);
//! - the statement's kind (`bounded`, `live`, `window`, `command`) in the
//!   FlightInfo's app metadata, so the shell prints a live statement as a
//!   stream;
//! - a one-line error whose kind rides in the `x-sysql-error-kind` header;
//! - the action `sysql.info`, which says the agent's version, since when it
//!   holds history, and its pid.

pub mod client;
pub mod fleet;
pub mod flight;
pub mod pg;
pub mod uds;

use sysql_engine::query::{ErrorKind, Kind};

/// The header naming a client's session.
pub const SESSION_HEADER: &str = "x-sysql-session";
/// The header carrying an error's kind.
pub const ERROR_KIND_HEADER: &str = "x-sysql-error-kind";
/// The action that describes the agent.
pub const INFO_ACTION: &str = "sysql.info";
/// sysql's version: clients and agents of different versions refuse each other.
pub const VERSION: &str = env!("CARGO_PKG_VERSION");

fn kind_name(kind: Kind) -> &'static str {
    match kind {
        Kind::Bounded => "bounded",
        Kind::Live => "live",
        Kind::Window => "window",
        Kind::Command => "command",
    }
}

fn kind_from(name: &[u8]) -> Option<Kind> {
    Some(match name {
        b"bounded" => Kind::Bounded,
        b"live" => Kind::Live,
        b"window" => Kind::Window,
        b"command" => Kind::Command,
        _ => return None,
    })
}

fn error_kind_name(kind: ErrorKind) -> &'static str {
    match kind {
        ErrorKind::Syntax => "syntax",
        ErrorKind::ReadOnly => "read-only",
        ErrorKind::Privilege => "privilege",
        ErrorKind::Plan => "plan",
        ErrorKind::Resources => "resources",
        ErrorKind::Cancelled => "cancelled",
        ErrorKind::Execution => "execution",
    }
}

fn error_kind_from(name: &str) -> ErrorKind {
    match name {
        "syntax" => ErrorKind::Syntax,
        "read-only" => ErrorKind::ReadOnly,
        "privilege" => ErrorKind::Privilege,
        "plan" => ErrorKind::Plan,
        "resources" => ErrorKind::Resources,
        "cancelled" => ErrorKind::Cancelled,
        _ => ErrorKind::Execution,
    }
}

/// What `sysql.info` says of an agent.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AgentInfo {
    pub version: String,
    /// UTC nanoseconds of the oldest event held (memory or disk), if any.
    pub history_since: Option<i64>,
    pub pid: u32,
}

impl AgentInfo {
    fn encode(&self) -> String {
        format!(
            "version={}\nhistory_since={}\npid={}\n",
            self.version,
            self.history_since.map(|t| t.to_string()).unwrap_or_default(),
            self.pid
        )
    }

    fn decode(text: &str) -> AgentInfo {
        let field = |k: &str| text.lines().find_map(|l| l.strip_prefix(k).and_then(|v| v.strip_prefix('=')));
        AgentInfo {
            version: field("version").unwrap_or_default().to_string(),
            history_since: field("history_since").and_then(|v| v.parse().ok()),
            pid: field("pid").and_then(|v| v.parse().ok()).unwrap_or(0),
        }
    }
}

/// A value unlikely to repeat, for session ids.
fn flight_nonce() -> u64 {
    use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
    static N: AtomicU64 = AtomicU64::new(0);
    let t =
        std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_nanos() as u64).unwrap_or(0);
    t ^ N.fetch_add(1, Relaxed).rotate_left(48)
}
