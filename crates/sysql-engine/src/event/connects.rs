//! The `connects` table: connect(2), with the address decoded from the
//! sockaddr the caller passed, the protocol read from the socket itself, and
//! the connect's outcome (see [`super::connect_outcome`]): a row whose
//! outcome comes after the syscall is made when it comes.

use super::connect_outcome::{Outcome, Pairing};
use super::{append_endpoint, append_errno, text, Batch, Common};
use crate::names::{family_name, ip_protocol_name, sock_type_name};
use datafusion::arrow::array::StringViewBuilder;
use datafusion::arrow::datatypes::SchemaRef;
use std::fmt::Write;
use std::net::{Ipv4Addr, Ipv6Addr};
use sysql_events::{ConnectDoneEvent, ConnectEvent, Table};

const AF_UNIX: u16 = 1;
const AF_INET: u16 = 2;
const AF_INET6: u16 = 10;

columns! {
    /// The columns of `connects` after the common ones.
    pub struct ConnectsColumns {
        syscall: Utf8View, not null, "`connect`";
        fd: Int32, not null, "the socket fd";
        family: Utf8View, null, "address family of the destination: `inet`, `inet6`, `unix`, `unspec`, `netlink`, `packet`, `vsock`, or `af_<n>`";
        sock_type: Utf8View, null, "socket type: `stream`, `dgram`, `seqpacket`, `raw`, ...; `NULL` if the fd is not a socket";
        protocol: Utf8View, null, "IP protocol for `inet`/`inet6` sockets: `tcp`, `udp`, `icmp`, `icmpv6`, `sctp`, `mptcp`, ...; `NULL` for other families";
        daddr: Utf8, null, "destination IP address as text (`127.0.0.1`, `::1`); `NULL` for non-IP";
        dport: UInt16, null, "destination port; `NULL` for non-IP";
        unix_path: Utf8, null, "unix socket path; abstract names start with `@`";
        ret: Int64, not null, "`0` or `-errno`";
        errno: Utf8View, null, "error name of `ret`, `NULL` on success. A non-blocking connect gives `EINPROGRESS`: its result is in `outcome`";
        latency_ns: Int64, not null, "nanoseconds from syscall entry to exit";
        outcome: Utf8View, null, "how the connect ended: `connected`, or the error (`ECONNREFUSED`, `ETIMEDOUT`, `EHOSTUNREACH`, `ENETUNREACH`, `ECONNRESET`, ...); for TCP, the handshake's end even when the syscall returned `EINPROGRESS`; `NULL` if still pending after 30 s (see [Outcomes](#outcomes))";
        outcome_ns: Int64, null, "nanoseconds from syscall entry to the outcome; `NULL` with it";
        saddr: Utf8, null, "the local IP address the socket got; `NULL` if it got none (non-IP, or it failed before binding)";
        sport: UInt16, null, "the local port the socket got; `NULL` with `saddr`";
        netns: UInt32, null, "network namespace of the socket (the inode number of `/proc/<pid>/ns/net`); the task's if the fd is no socket; `NULL` only in the agent's files written by a sysql older than this column";
    }
}

/// What a sockaddr says, borrowed from the event.
#[derive(Debug, PartialEq)]
pub enum Dest<'a> {
    Inet(Ipv4Addr, u16),
    Inet6(Ipv6Addr, u16),
    /// A path, or an abstract name (shown with a leading `@`).
    Unix {
        path: &'a [u8],
        abstract_name: bool,
    },
    None,
}

/// Decodes a sockaddr as passed to connect (family in native byte order, port
/// in network order). Too short an address yields `Dest::None`.
pub fn parse_sockaddr(addr: &[u8]) -> (Option<u16>, Dest<'_>) {
    if addr.len() < 2 {
        return (None, Dest::None);
    }
    let family = u16::from_ne_bytes([addr[0], addr[1]]);
    let dest = match family {
        AF_INET if addr.len() >= 8 => {
            Dest::Inet(Ipv4Addr::new(addr[4], addr[5], addr[6], addr[7]), u16::from_be_bytes([addr[2], addr[3]]))
        }
        AF_INET6 if addr.len() >= 24 => {
            let mut ip = [0u8; 16];
            ip.copy_from_slice(&addr[8..24]);
            Dest::Inet6(Ipv6Addr::from(ip), u16::from_be_bytes([addr[2], addr[3]]))
        }
        AF_UNIX if addr.len() > 2 => {
            let path = &addr[2..];
            if path[0] == 0 {
                Dest::Unix { path: &path[1..], abstract_name: true }
            } else {
                let end = path.iter().position(|&b| b == 0).unwrap_or(path.len());
                Dest::Unix { path: &path[..end], abstract_name: false }
            }
        }
        _ => Dest::None,
    };
    (Some(family), dest)
}

/// Dotted-quad text of an IPv4 address, as `Ipv4Addr`'s Display writes it
/// but without the formatting machinery (a fifth of the connects writer's time).
fn ipv4_text(ip: Ipv4Addr, buf: &mut [u8; 15]) -> &str {
    let mut n = 0;
    for (i, octet) in ip.octets().into_iter().enumerate() {
        if i > 0 {
            buf[n] = b'.';
            n += 1;
        }
        if octet >= 100 {
            buf[n] = b'0' + octet / 100;
            n += 1;
        }
        if octet >= 10 {
            buf[n] = b'0' + octet / 10 % 10;
            n += 1;
        }
        buf[n] = b'0' + octet % 10;
        n += 1;
    }
    std::str::from_utf8(&buf[..n]).unwrap_or_default()
}

pub struct ConnectsBuilder {
    schema: SchemaRef,
    common: Common,
    cols: ConnectsColumns,
    errno_text: String,
    /// Connects waiting for their outcome, and outcomes for their connect.
    pairing: Pairing,
    released: Vec<(ConnectEvent, Outcome)>,
}

fn append_name(b: &mut StringViewBuilder, name: Option<&str>) {
    match name {
        Some(n) => b.append_value(n),
        None => b.append_null(),
    }
}

impl ConnectsBuilder {
    pub fn with_capacity(rows: usize) -> Self {
        ConnectsBuilder {
            schema: super::schema(Table::Connects),
            common: Common::with_capacity(rows),
            cols: ConnectsColumns::new(rows),
            errno_text: String::new(),
            pairing: Pairing::default(),
            released: Vec::new(),
        }
    }

    /// A connect record: its row now, or once its outcome comes. Returns the
    /// rows appended and how many of them had a truncated address.
    pub fn push(&mut self, e: &ConnectEvent, clock_offset_ns: i64) -> (u64, u64) {
        let mut rows = (0, 0);
        if let Some(outcome) = self.pairing.connect(e, &mut self.released) {
            rows = (1, self.append(e, &outcome, clock_offset_ns) as u64);
        }
        let (n, t) = self.append_released(clock_offset_ns);
        (rows.0 + n, rows.1 + t)
    }

    /// An outcome record: the row of the connect it ends, if that was held.
    pub fn push_done(&mut self, d: &ConnectDoneEvent, clock_offset_ns: i64) -> (u64, u64) {
        match self.pairing.done(d) {
            Some((e, outcome)) => (1, self.append(&e, &outcome, clock_offset_ns) as u64),
            None => (0, 0),
        }
    }

    /// Makes the rows of connects pending for longer than the wait at
    /// `now_boot_ns`, with a NULL outcome.
    pub fn expire(&mut self, now_boot_ns: i64, clock_offset_ns: i64) -> (u64, u64) {
        self.pairing.expire(now_boot_ns, &mut self.released);
        self.append_released(clock_offset_ns)
    }

    /// Makes the rows of every held connect (shutdown, end of a recording).
    pub fn finish_held(&mut self, clock_offset_ns: i64) -> (u64, u64) {
        self.pairing.finish(&mut self.released);
        self.append_released(clock_offset_ns)
    }

    /// The entry time (boot clock) of the oldest connect waiting for its
    /// outcome: rows that old may still be made.
    pub fn oldest_held(&self) -> Option<i64> {
        self.pairing.oldest()
    }

    fn append_released(&mut self, clock_offset_ns: i64) -> (u64, u64) {
        let mut rows = (0, 0);
        for (e, outcome) in std::mem::take(&mut self.released) {
            rows.0 += 1;
            rows.1 += self.append(&e, &outcome, clock_offset_ns) as u64;
        }
        rows
    }

    /// Appends one row. Returns true if the address was truncated.
    pub fn append(&mut self, e: &ConnectEvent, outcome: &Outcome, clock_offset_ns: i64) -> bool {
        self.common.append(&e.h, clock_offset_ns);
        let c = &mut self.cols;
        c.syscall.append_value("connect");
        c.fd.append_value(e.fd);
        let (family, dest) = parse_sockaddr(e.addr());
        let family = family.unwrap_or(e.sk_family);
        match family_name(family) {
            Some(name) => c.family.append_value(name),
            None if family == 0 && e.sk_family == 0 => c.family.append_null(),
            None => c.family.append_value(format!("af_{family}")),
        }
        let has_socket = e.sk_family != 0;
        append_name(&mut c.sock_type, if has_socket { sock_type_name(e.sk_type) } else { None });
        let is_ip = matches!(e.sk_family, AF_INET | AF_INET6);
        append_name(&mut c.protocol, if is_ip { ip_protocol_name(e.sk_protocol) } else { None });
        match dest {
            Dest::Inet(ip, port) => {
                let mut buf = [0u8; 15];
                c.daddr.append_value(ipv4_text(ip, &mut buf));
                c.dport.append_value(port);
                c.unix_path.append_null();
            }
            Dest::Inet6(ip, port) => {
                let _ = write!(c.daddr, "{ip}");
                c.daddr.append_value("");
                c.dport.append_value(port);
                c.unix_path.append_null();
            }
            Dest::Unix { path, abstract_name } => {
                c.daddr.append_null();
                c.dport.append_null();
                if abstract_name {
                    let _ = c.unix_path.write_char('@');
                }
                c.unix_path.append_value(text(path));
            }
            Dest::None => {
                c.daddr.append_null();
                c.dport.append_null();
                c.unix_path.append_null();
            }
        }
        c.ret.append_value(e.h.ret);
        append_errno(&mut c.errno, e.h.ret, &mut self.errno_text);
        c.latency_ns.append_value(e.h.latency_ns as i64);
        match outcome.ret {
            Some(0) => c.outcome.append_value("connected"),
            Some(ret) => append_errno(&mut c.outcome, ret, &mut self.errno_text),
            None => c.outcome.append_null(),
        }
        c.outcome_ns.append_option(outcome.ns);
        append_endpoint(&mut c.saddr, &mut c.sport, outcome.local);
        c.netns.append_value(e.netns);
        e.h.flags & sysql_events::F_ADDR_TRUNCATED != 0
    }

    /// Fills `container_id` from these cgroups.
    pub fn attribute(&mut self, containers: std::sync::Arc<crate::containers::Containers>) {
        self.common.attribute(containers);
    }

    pub fn len(&self) -> usize {
        self.common.len()
    }

    pub fn is_empty(&self) -> bool {
        self.common.is_empty()
    }

    pub fn finish(&mut self) -> Batch {
        let own = self.cols.finish(self.len());
        self.common.batch(&self.schema, own)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sockaddrs() {
        let mut v4 = vec![2u8, 0, 0x1f, 0x90, 127, 0, 0, 1, 0, 0, 0, 0, 0, 0, 0, 0];
        assert_eq!(parse_sockaddr(&v4), (Some(2), Dest::Inet(Ipv4Addr::LOCALHOST, 8080)));
        v4.truncate(6);
        assert_eq!(parse_sockaddr(&v4), (Some(2), Dest::None));
        let mut v6 = vec![10u8, 0, 0, 80, 0, 0, 0, 0];
        v6.extend_from_slice(&Ipv6Addr::LOCALHOST.octets());
        v6.extend_from_slice(&[0, 0, 0, 0]);
        assert_eq!(parse_sockaddr(&v6), (Some(10), Dest::Inet6(Ipv6Addr::LOCALHOST, 80)));
        let un = b"\x01\x00/run/x.sock\0\0\0";
        assert_eq!(parse_sockaddr(un), (Some(1), Dest::Unix { path: b"/run/x.sock", abstract_name: false }));
        let abs = b"\x01\x00\0name";
        assert_eq!(parse_sockaddr(abs), (Some(1), Dest::Unix { path: b"name", abstract_name: true }));
        assert_eq!(parse_sockaddr(&[1]), (None, Dest::None));
    }

    #[test]
    fn ipv4_text_reads_like_display() {
        let mut buf = [0u8; 15];
        for ip in [[0, 0, 0, 0], [127, 0, 0, 1], [10, 9, 99, 100], [255, 255, 255, 255], [1, 20, 200, 5]] {
            let ip = Ipv4Addr::from(ip);
            assert_eq!(ipv4_text(ip, &mut buf), ip.to_string());
        }
    }
}
