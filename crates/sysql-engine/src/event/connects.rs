//! The `connects` table: connect(2), with the address decoded from the
//! sockaddr the caller passed and the protocol read from the socket itself.

use super::{append_errno, common_fields, finish_prim, finish_str, finish_view, text, Batch, Common};
use crate::names::{family_name, ip_protocol_name, sock_type_name};
use datafusion::arrow::array::{ArrayRef, Int32Builder, Int64Builder, StringBuilder, StringViewBuilder, UInt16Builder};
use datafusion::arrow::datatypes::{DataType, Field, Schema, SchemaRef};
use datafusion::arrow::record_batch::RecordBatch;
use std::fmt::Write;
use std::net::{Ipv4Addr, Ipv6Addr};
use std::sync::Arc;
use sysql_events::ConnectEvent;

const AF_UNIX: u16 = 1;
const AF_INET: u16 = 2;
const AF_INET6: u16 = 10;

pub fn schema() -> SchemaRef {
    let mut fields = common_fields();
    fields.extend([
        Field::new("syscall", DataType::Utf8View, false),
        Field::new("fd", DataType::Int32, false),
        Field::new("family", DataType::Utf8View, true),
        Field::new("sock_type", DataType::Utf8View, true),
        Field::new("protocol", DataType::Utf8View, true),
        Field::new("daddr", DataType::Utf8, true),
        Field::new("dport", DataType::UInt16, true),
        Field::new("unix_path", DataType::Utf8, true),
        Field::new("ret", DataType::Int64, false),
        Field::new("errno", DataType::Utf8View, true),
        Field::new("latency_ns", DataType::Int64, false),
    ]);
    Arc::new(Schema::new(fields))
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
    syscall: StringViewBuilder,
    fd: Int32Builder,
    family: StringViewBuilder,
    sock_type: StringViewBuilder,
    protocol: StringViewBuilder,
    daddr: StringBuilder,
    dport: UInt16Builder,
    unix_path: StringBuilder,
    ret: Int64Builder,
    errno: StringViewBuilder,
    errno_text: String,
    latency_ns: Int64Builder,
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
            schema: schema(),
            common: Common::with_capacity(rows),
            syscall: StringViewBuilder::with_capacity(rows),
            fd: Int32Builder::with_capacity(rows),
            family: StringViewBuilder::with_capacity(rows),
            sock_type: StringViewBuilder::with_capacity(rows),
            protocol: StringViewBuilder::with_capacity(rows),
            daddr: StringBuilder::with_capacity(rows, rows * 12),
            dport: UInt16Builder::with_capacity(rows),
            unix_path: StringBuilder::with_capacity(rows, rows * 8),
            ret: Int64Builder::with_capacity(rows),
            errno: StringViewBuilder::with_capacity(rows),
            errno_text: String::new(),
            latency_ns: Int64Builder::with_capacity(rows),
        }
    }

    /// Appends one event. Returns true if the address was truncated.
    pub fn append(&mut self, e: &ConnectEvent, clock_offset_ns: i64) -> bool {
        self.common.append(&e.h, clock_offset_ns);
        self.syscall.append_value("connect");
        self.fd.append_value(e.fd);
        let (family, dest) = parse_sockaddr(e.addr());
        let family = family.unwrap_or(e.sk_family);
        match family_name(family) {
            Some(name) => self.family.append_value(name),
            None if family == 0 && e.sk_family == 0 => self.family.append_null(),
            None => self.family.append_value(format!("af_{family}")),
        }
        let has_socket = e.sk_family != 0;
        append_name(&mut self.sock_type, if has_socket { sock_type_name(e.sk_type) } else { None });
        let is_ip = matches!(e.sk_family, AF_INET | AF_INET6);
        append_name(&mut self.protocol, if is_ip { ip_protocol_name(e.sk_protocol) } else { None });
        match dest {
            Dest::Inet(ip, port) => {
                let mut buf = [0u8; 15];
                self.daddr.append_value(ipv4_text(ip, &mut buf));
                self.dport.append_value(port);
                self.unix_path.append_null();
            }
            Dest::Inet6(ip, port) => {
                let _ = write!(self.daddr, "{ip}");
                self.daddr.append_value("");
                self.dport.append_value(port);
                self.unix_path.append_null();
            }
            Dest::Unix { path, abstract_name } => {
                self.daddr.append_null();
                self.dport.append_null();
                if abstract_name {
                    let _ = self.unix_path.write_char('@');
                }
                self.unix_path.append_value(text(path));
            }
            Dest::None => {
                self.daddr.append_null();
                self.dport.append_null();
                self.unix_path.append_null();
            }
        }
        self.ret.append_value(e.h.ret);
        append_errno(&mut self.errno, e.h.ret, &mut self.errno_text);
        self.latency_ns.append_value(e.h.latency_ns as i64);
        e.h.flags & sysql_events::F_ADDR_TRUNCATED != 0
    }

    pub fn len(&self) -> usize {
        self.common.len()
    }

    pub fn is_empty(&self) -> bool {
        self.common.is_empty()
    }

    pub fn finish(&mut self) -> Batch {
        let rows = self.len();
        let (mut arrays, min_ts, max_ts) = self.common.finish();
        arrays.extend::<[ArrayRef; 11]>([
            finish_view(&mut self.syscall, rows),
            finish_prim(&mut self.fd, rows),
            finish_view(&mut self.family, rows),
            finish_view(&mut self.sock_type, rows),
            finish_view(&mut self.protocol, rows),
            finish_str(&mut self.daddr, rows),
            finish_prim(&mut self.dport, rows),
            finish_str(&mut self.unix_path, rows),
            finish_prim(&mut self.ret, rows),
            finish_view(&mut self.errno, rows),
            finish_prim(&mut self.latency_ns, rows),
        ]);
        let batch = RecordBatch::try_new(self.schema.clone(), arrays).expect("connects schema matches its builder");
        Batch { batch, min_ts, max_ts }
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
