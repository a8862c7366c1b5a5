//! The `accepts` table: accept(2) and accept4(2), failed ones too, with the
//! new connection's addresses read from its socket.

use super::connect_outcome::endpoint;
use super::{append_endpoint, append_errno, Batch, Common};
use crate::names::{family_name, ip_protocol_name, sock_type_name};
use datafusion::arrow::datatypes::SchemaRef;
use sysql_events::{AcceptEvent, Table, SYS_ACCEPT, SYS_ACCEPT4};

const AF_INET: u16 = 2;
const AF_INET6: u16 = 10;

columns! {
    /// The columns of `accepts` after the common ones.
    pub struct AcceptsColumns {
        syscall: Utf8View, not null, "`accept` or `accept4`";
        fd: Int32, not null, "the listening socket's fd";
        family: Utf8View, null, "the listening socket's address family: `inet`, `inet6`, `unix`, ...; `NULL` if the fd is not a socket";
        sock_type: Utf8View, null, "its type: `stream`, `seqpacket`, ...";
        protocol: Utf8View, null, "its IP protocol (`tcp`, `mptcp`, `sctp`) for `inet`/`inet6` sockets; `NULL` for other families";
        local_addr: Utf8, null, "the new connection's local IP address (IPv4-mapped IPv6 shown as IPv4); `NULL` if the accept failed or for non-IP";
        local_port: UInt16, null, "its local port: the listening port";
        remote_addr: Utf8, null, "the peer's IP address";
        remote_port: UInt16, null, "the peer's port";
        ret: Int64, not null, "the new connection's fd, or `-errno`";
        errno: Utf8View, null, "error name (`EAGAIN` on a non-blocking listener with nothing waiting, `EMFILE`, ...), `NULL` on success";
        latency_ns: Int64, not null, "nanoseconds from syscall entry to exit (a blocking accept waits for a client)";
        netns: UInt32, not null, "network namespace of the listening socket (the inode number of `/proc/<pid>/ns/net`)";
    }
}

pub struct AcceptsBuilder {
    schema: SchemaRef,
    common: Common,
    cols: AcceptsColumns,
    errno_text: String,
}

impl AcceptsBuilder {
    pub fn with_capacity(rows: usize) -> Self {
        AcceptsBuilder {
            schema: super::schema(Table::Accepts),
            common: Common::with_capacity(rows),
            cols: AcceptsColumns::new(rows),
            errno_text: String::new(),
        }
    }

    /// Appends one event. Returns false (nothing is truncated in an accept).
    pub fn append(&mut self, e: &AcceptEvent, clock_offset_ns: i64) -> bool {
        self.common.append(&e.h, clock_offset_ns);
        let c = &mut self.cols;
        c.syscall.append_value(match e.h.syscall {
            SYS_ACCEPT => "accept",
            SYS_ACCEPT4 => "accept4",
            _ => "unknown",
        });
        c.fd.append_value(e.fd);
        let socket = e.sk_family != 0;
        let is_ip = matches!(e.sk_family, AF_INET | AF_INET6);
        match family_name(e.sk_family) {
            Some(name) if socket => c.family.append_value(name),
            None if socket => c.family.append_value(format!("af_{}", e.sk_family)),
            _ => c.family.append_null(),
        }
        c.sock_type.append_option(if socket { sock_type_name(e.sk_type) } else { None });
        c.protocol.append_option(if is_ip { ip_protocol_name(e.sk_protocol) } else { None });
        let ok = e.h.ret >= 0 && is_ip;
        append_endpoint(
            &mut c.local_addr,
            &mut c.local_port,
            if ok { endpoint(e.sk_family, &e.laddr, e.lport) } else { None },
        );
        append_endpoint(
            &mut c.remote_addr,
            &mut c.remote_port,
            if ok { endpoint(e.sk_family, &e.raddr, e.rport) } else { None },
        );
        c.ret.append_value(e.h.ret);
        append_errno(&mut c.errno, e.h.ret, &mut self.errno_text);
        c.latency_ns.append_value(e.h.latency_ns as i64);
        c.netns.append_value(e.netns);
        false
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
    use datafusion::arrow::util::pretty::pretty_format_batches;
    use sysql_events::{zeroed, KIND_ACCEPT};

    #[test]
    fn a_batch_has_every_column() {
        let mut b = AcceptsBuilder::with_capacity(4);
        let mut e: AcceptEvent = zeroed();
        e.h.kind = KIND_ACCEPT;
        e.h.syscall = SYS_ACCEPT4;
        e.h.ret = 5;
        e.fd = 3;
        e.sk_family = AF_INET;
        e.sk_type = 1;
        e.sk_protocol = 6;
        e.laddr[..4].copy_from_slice(&[127, 0, 0, 1]);
        e.lport = 8080;
        e.raddr[..4].copy_from_slice(&[127, 0, 0, 2]);
        e.rport = 40000;
        e.netns = 4026531840;
        b.append(&e, 0);
        e.h.ret = -11;
        b.append(&e, 0);
        let text = pretty_format_batches(&[b.finish().batch]).unwrap().to_string();
        assert!(text.contains("| accept4 | 3  | inet   | stream    | tcp      | 127.0.0.1  | 8080       | 127.0.0.2   | 40000       | 5   |"), "{text}");
        assert!(text.contains("EAGAIN"), "{text}");
    }
}
