//! Socket payloads into rows of `http_requests`, `db_queries` and
//! `dns_queries`.
//!
//! The kernel sends the first bytes of each send or receive on a socket whose
//! traffic looks like a protocol sysql parses (see `ebpf/sysql.bpf.c`). Here,
//! per connection (the process and the kernel socket), each request is paired
//! with its response in FIFO order (HTTP/1.x keep-alive and pipelining,
//! PostgreSQL and MySQL one statement at a time, DNS by message id), and a row
//! is made once the exchange is complete, times out, or the connection goes
//! quiet. Parsing is done by parser crates (httparse, pgwire, simple-dns);
//! MySQL's few message shapes are read here, as no small crate parses them.
//!
//! State is bounded: at most [`MAX_CONNS`] connections (the quietest is
//! closed first) and [`MAX_PENDING`] requests waiting per connection. Nothing
//! is dropped silently: a request whose response never came is still a row,
//! with a NULL status.

pub mod dns;
pub mod http;
pub mod mysql;
pub mod pgsql;
pub mod redact;

use std::collections::HashMap;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use sysql_events::{Header, PayloadEvent, PROTO_DNS, PROTO_HTTP, PROTO_MYSQL, PROTO_PGSQL};

/// Connections followed at once; past it the quietest one is closed.
pub const MAX_CONNS: usize = 16384;
/// Requests waiting for their responses on one connection.
pub const MAX_PENDING: usize = 256;
/// A request with no response after this long becomes a row without one.
pub const REQUEST_TIMEOUT_NS: i64 = 10_000_000_000;
/// A response not known to be complete is closed after this much quiet.
pub const RESPONSE_QUIET_NS: i64 = 500_000_000;

const AF_INET: u16 = 2;
const AF_INET6: u16 = 10;

/// Options for what is kept of payloads.
#[derive(Debug, Clone, Copy, Default)]
pub struct PayloadConfig {
    /// Replace SQL literals with `?`, and HTTP header values and query-string
    /// values with `***`.
    pub redact: bool,
}

/// Which side of the exchange the traced process is on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Role {
    Server,
    Client,
}

impl Role {
    pub fn name(self) -> &'static str {
        match self {
            Role::Server => "server",
            Role::Client => "client",
        }
    }

    /// A process that receives a request serves it; one that sends it is the client.
    fn of_request(sent: bool) -> Role {
        if sent {
            Role::Client
        } else {
            Role::Server
        }
    }
}

/// Who made the exchange and over which socket: common to every row.
#[derive(Debug, Clone, Copy)]
pub struct Meta {
    /// The process; `ts_boot_ns` is the row's time on the kernel's boot clock.
    pub header: Header,
    pub fd: i32,
    pub local: Option<(IpAddr, u16)>,
    pub remote: Option<(IpAddr, u16)>,
}

/// One HTTP request and, when seen, its response.
#[derive(Debug, Clone)]
pub struct HttpRow {
    pub meta: Meta,
    pub role: Role,
    pub method: String,
    pub path: String,
    pub version: Option<u8>,
    pub host: Option<String>,
    pub user_agent: Option<String>,
    pub status: Option<u16>,
    pub latency_ns: Option<i64>,
    pub request_bytes: u64,
    pub response_bytes: Option<u64>,
    pub truncated: bool,
}

/// One database statement and its outcome.
#[derive(Debug, Clone)]
pub struct DbRow {
    pub meta: Meta,
    pub role: Role,
    pub protocol: &'static str,
    pub user: Option<String>,
    pub database: Option<String>,
    pub query: String,
    /// `ok` or `error`; NULL if no response was seen.
    pub outcome: Option<&'static str>,
    pub error: Option<String>,
    /// The server's command tag (`SELECT 3`, `INSERT 0 1`) or MySQL's affected rows.
    pub tag: Option<String>,
    pub latency_ns: Option<i64>,
    pub truncated: bool,
}

/// One DNS question and, when seen, its answer.
#[derive(Debug, Clone)]
pub struct DnsRow {
    pub meta: Meta,
    pub role: Role,
    pub id: u16,
    pub name: String,
    pub qtype: String,
    pub rcode: Option<String>,
    pub answers: Option<String>,
    pub latency_ns: Option<i64>,
}

/// Rows made by the last calls, waiting to be appended to their tables.
#[derive(Debug, Default)]
pub struct Rows {
    pub http: Vec<HttpRow>,
    pub db: Vec<DbRow>,
    pub dns: Vec<DnsRow>,
}

/// One send or receive, as the protocol parsers see it.
#[derive(Debug, Clone, Copy)]
pub struct Chunk<'a> {
    pub meta: Meta,
    /// When the bytes crossed the syscall boundary (boot clock): the start of
    /// a send, the end of a receive.
    pub at: i64,
    pub sent: bool,
    /// Bytes the syscall moved (may exceed `data`).
    pub bytes: u64,
    /// The captured bytes.
    pub data: &'a [u8],
    pub truncated: bool,
}

enum State {
    Http(http::Conn),
    Pgsql(pgsql::Conn),
    Mysql(mysql::Conn),
    Dns(dns::Conn),
}

struct Conn {
    last_seen: i64,
    state: State,
}

impl Conn {
    /// The time of the oldest request still waiting, if any.
    fn oldest(&self) -> Option<i64> {
        match &self.state {
            State::Http(c) => c.oldest(),
            State::Pgsql(c) => c.oldest(),
            State::Mysql(c) => c.oldest(),
            State::Dns(c) => c.oldest(),
        }
    }

    /// Turns whatever is complete or overdue at `now` into rows.
    fn expire(&mut self, now: i64, force: bool, rows: &mut Rows) {
        match &mut self.state {
            State::Http(c) => c.expire(now, force, &mut rows.http),
            State::Pgsql(c) => c.expire(now, force, &mut rows.db),
            State::Mysql(c) => c.expire(now, force, &mut rows.db),
            State::Dns(c) => c.expire(now, force, &mut rows.dns),
        }
    }
}

/// A cheap hash for (pid, kernel socket) keys: they come from the kernel,
/// not from a peer, so no flooding resistance is needed.
#[derive(Default, Clone, Copy)]
struct KeyHasher(u64);

impl std::hash::Hasher for KeyHasher {
    fn write(&mut self, bytes: &[u8]) {
        for &b in bytes {
            self.write_u64(b as u64);
        }
    }
    fn write_u32(&mut self, v: u32) {
        self.write_u64(v as u64);
    }
    fn write_u64(&mut self, v: u64) {
        self.0 = (self.0.rotate_left(5) ^ v).wrapping_mul(0x51_7c_c1_b7_27_22_0a_95);
    }
    fn finish(&self) -> u64 {
        self.0 ^ (self.0 >> 29)
    }
}

type ConnMap = HashMap<(u32, u64), Conn, std::hash::BuildHasherDefault<KeyHasher>>;

/// Connection tracking for every payload protocol.
pub struct Payloads {
    config: PayloadConfig,
    conns: ConnMap,
    pub rows: Rows,
    /// Database messages that could not be decoded since last taken.
    pub malformed: u64,
}

fn endpoint(family: u16, addr: &[u8; 16], port: u16) -> Option<(IpAddr, u16)> {
    match family {
        AF_INET => Some((IpAddr::V4(Ipv4Addr::new(addr[0], addr[1], addr[2], addr[3])), port)),
        AF_INET6 => {
            let v6 = Ipv6Addr::from(*addr);
            // IPv4 traffic on an IPv6 socket: show the IPv4 address.
            let ip = v6.to_ipv4_mapped().map(IpAddr::V4).unwrap_or(IpAddr::V6(v6));
            Some((ip, port))
        }
        _ => None,
    }
}

impl Payloads {
    pub fn new(config: PayloadConfig) -> Self {
        Payloads { config, conns: ConnMap::default(), rows: Rows::default(), malformed: 0 }
    }

    /// Connections followed now.
    pub fn connections(&self) -> usize {
        self.conns.len()
    }

    /// Feeds one payload record; finished exchanges land in `self.rows`.
    pub fn push(&mut self, e: &PayloadEvent, data: &[u8]) {
        let sent = e.is_send();
        let start = e.h.ts_boot_ns as i64;
        let at = if sent { start } else { start.saturating_add(e.h.latency_ns as i64) };
        let meta = Meta {
            header: e.h,
            fd: e.fd,
            local: endpoint(e.sk_family, &e.laddr, e.lport),
            remote: endpoint(e.sk_family, &e.raddr, e.rport),
        };
        let chunk = Chunk {
            meta,
            at,
            sent,
            bytes: e.h.ret.max(0) as u64,
            data,
            truncated: e.h.flags & sysql_events::F_DATA_TRUNCATED != 0,
        };
        let key = (e.h.pid, e.sock_id);
        if !self.conns.contains_key(&key) {
            if self.conns.len() >= MAX_CONNS {
                self.close_quietest();
            }
            let state = match e.protocol {
                PROTO_HTTP => State::Http(http::Conn::default()),
                PROTO_PGSQL => State::Pgsql(pgsql::Conn::default()),
                PROTO_MYSQL => State::Mysql(mysql::Conn::default()),
                PROTO_DNS => State::Dns(dns::Conn::default()),
                _ => return,
            };
            self.conns.insert(key, Conn { last_seen: at, state });
        }
        let conn = self.conns.get_mut(&key).expect("inserted above");
        conn.last_seen = conn.last_seen.max(at);
        let redact = self.config.redact;
        match &mut conn.state {
            State::Http(c) => c.push(&chunk, redact, &mut self.rows.http),
            State::Pgsql(c) => {
                c.push(&chunk, redact, &mut self.rows.db);
                self.malformed += std::mem::take(&mut c.malformed);
            }
            State::Mysql(c) => c.push(&chunk, redact, &mut self.rows.db),
            State::Dns(c) => c.push(&chunk, &mut self.rows.dns),
        }
    }

    fn close_quietest(&mut self) {
        if let Some(key) = self.conns.iter().min_by_key(|(_, c)| c.last_seen).map(|(k, _)| *k) {
            let mut conn = self.conns.remove(&key).expect("present");
            conn.expire(i64::MAX, true, &mut self.rows);
        }
    }

    /// Closes overdue requests and quiet responses as of `now_boot_ns`, and
    /// forgets connections idle for a minute.
    pub fn expire(&mut self, now_boot_ns: i64) {
        let rows = &mut self.rows;
        self.conns.retain(|_, conn| {
            let idle = now_boot_ns.saturating_sub(conn.last_seen) > 60_000_000_000;
            conn.expire(now_boot_ns, idle, rows);
            !idle
        });
    }

    /// Ends every exchange now (shutdown, or a final flush in tests).
    pub fn finish(&mut self) {
        for (_, mut conn) in self.conns.drain() {
            conn.expire(i64::MAX, true, &mut self.rows);
        }
    }

    /// The boot-clock time of the oldest request still waiting for its
    /// response, per protocol table: rows older than it may still come, so
    /// live streams of these tables hold their watermark behind it.
    pub fn oldest_pending(&self) -> [Option<i64>; 3] {
        let mut out = [None; 3];
        for conn in self.conns.values() {
            let i = match conn.state {
                State::Http(_) => 0,
                State::Pgsql(_) | State::Mysql(_) => 1,
                State::Dns(_) => 2,
            };
            if let Some(t) = conn.oldest() {
                out[i] = Some(out[i].map_or(t, |o: i64| o.min(t)));
            }
        }
        out
    }
}

thread_local! {
    static IN_PARSER: std::cell::Cell<bool> = const { std::cell::Cell::new(false) };
}

/// Runs a third-party decoder on untrusted bytes. A decoder that panics on
/// malformed input (pgwire does, on some) costs that message, counted by the
/// caller, never the process; its panic message is not printed.
pub(crate) fn guarded<T>(f: impl FnOnce() -> T) -> Option<T> {
    static HOOK: std::sync::Once = std::sync::Once::new();
    HOOK.call_once(|| {
        let previous = std::panic::take_hook();
        std::panic::set_hook(Box::new(move |info| {
            if !IN_PARSER.with(|p| p.get()) {
                previous(info);
            }
        }));
    });
    IN_PARSER.with(|p| p.set(true));
    let result = std::panic::catch_unwind(std::panic::AssertUnwindSafe(f));
    IN_PARSER.with(|p| p.set(false));
    result.ok()
}

/// Latency from a request's time to its response's, never negative.
pub(crate) fn latency(request_at: i64, response_at: i64) -> i64 {
    response_at.saturating_sub(request_at).max(0)
}

/// Text from payload bytes, invalid UTF-8 replaced.
pub(crate) fn lossy(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}
