//! The outcome of each connect: pairs connect records with the records of
//! TCP sockets leaving SYN_SENT (`sysql_connect_done_event`).
//!
//! The kernel sends an outcome record for every TCP connect that reached
//! SYN_SENT, when the socket leaves it, with the connect's entry time and
//! socket as the key. For a blocking connect, or a non-blocking one over
//! loopback (the handshake completes inside the syscall), that record comes
//! *before* the connect's own record: it waits here (`early`) for the
//! connect. A non-blocking connect that returned `EINPROGRESS` with no
//! outcome yet is *held*: its row is made when the outcome comes, or after
//! [`OUTCOME_WAIT_NS`] with a NULL outcome. Held rows keep the live
//! watermark of `connects` behind the oldest of them (`Ingest::tick`), since
//! a row carries its connect's time but is made later.
//!
//! The kernel side stays simple this way (no atomics to decide which side
//! reports), at the cost of one 112-byte record more per TCP connect.

use std::collections::{BTreeMap, HashMap};
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use sysql_events::{ConnectDoneEvent, ConnectEvent};

/// A connect still pending after this long is given up: its row is made with
/// a NULL outcome (and an outcome that comes later is not recorded).
pub const OUTCOME_WAIT_NS: i64 = 30_000_000_000;
/// Connects held at most; past it the oldest is given up.
pub const MAX_HELD: usize = 65536;
/// Outcomes waiting for their connect at most.
const MAX_EARLY: usize = 65536;

const AF_INET: u16 = 2;
const AF_INET6: u16 = 10;
const IPPROTO_TCP: u16 = 6;
const EINTR: i64 = 4;
const EINPROGRESS: i64 = 115;
/// The kernel's restart code, seen by the exit tracepoint before it becomes EINTR.
const ERESTARTSYS: i64 = 512;

/// How a connect ended, as its row shows it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Outcome {
    /// 0 (connected) or -errno; `None` while unknown (given up).
    pub ret: Option<i64>,
    /// From the syscall's entry to the outcome.
    pub ns: Option<i64>,
    /// The socket's local address and port.
    pub local: Option<(IpAddr, u16)>,
}

/// A local endpoint from an address (IPv4 in the first 4 bytes) and a port;
/// none if both are zero (an unbound socket).
pub fn endpoint(family: u16, addr: &[u8; 16], port: u16) -> Option<(IpAddr, u16)> {
    if port == 0 && addr.iter().all(|&b| b == 0) {
        return None;
    }
    match family {
        AF_INET => Some((IpAddr::V4(Ipv4Addr::new(addr[0], addr[1], addr[2], addr[3])), port)),
        AF_INET6 => {
            let v6 = Ipv6Addr::from(*addr);
            Some((v6.to_ipv4_mapped().map(IpAddr::V4).unwrap_or(IpAddr::V6(v6)), port))
        }
        _ => None,
    }
}

/// A TCP socket: its connect's outcome comes from the socket's state.
fn is_tcp(e: &ConnectEvent) -> bool {
    e.sock_id != 0 && matches!(e.sk_family, AF_INET | AF_INET6) && e.sk_protocol == IPPROTO_TCP
}

/// A connect result after which the kernel goes on connecting.
fn still_connecting(ret: i64) -> bool {
    matches!(-ret, EINPROGRESS | EINTR | ERESTARTSYS)
}

type Key = (u64, u64);

fn key(ts: u64, sock: u64) -> Key {
    (ts, sock)
}

fn from_done(e: &ConnectEvent, d: &ConnectDoneEvent) -> Outcome {
    Outcome {
        ret: Some(d.h.ret),
        ns: Some(d.h.latency_ns as i64),
        local: endpoint(e.sk_family, &d.saddr, d.sport).or_else(|| endpoint(e.sk_family, &e.saddr, e.sport)),
    }
}

/// Connects waiting for their outcome, and outcomes waiting for their connect.
#[derive(Default)]
pub struct Pairing {
    /// By (connect entry time, socket): the first key is the oldest.
    held: BTreeMap<Key, ConnectEvent>,
    /// Outcomes whose connect record has not come yet: it normally comes
    /// right after, so this is almost always empty.
    early: HashMap<Key, ConnectDoneEvent>,
}

impl Pairing {
    /// A connect record. Returns its outcome if the row can be made now;
    /// `None` if it is held. Rows given up to make room go to `released`.
    pub fn connect(&mut self, e: &ConnectEvent, released: &mut Vec<(ConnectEvent, Outcome)>) -> Option<Outcome> {
        let k = key(e.h.ts_boot_ns, e.sock_id);
        let done = if is_tcp(e) && !self.early.is_empty() { self.early.remove(&k) } else { None };
        if is_tcp(e) && still_connecting(e.h.ret) {
            if let Some(d) = done {
                return Some(from_done(e, &d));
            }
            if self.held.len() >= MAX_HELD {
                if let Some((_, old)) = self.held.pop_first() {
                    released.push((old, given_up(&old)));
                }
            }
            self.held.insert(k, *e);
            return None;
        }
        // The syscall's own result is the outcome; a blocking TCP connect's
        // handshake (its outcome record) says when, and from where.
        Some(Outcome {
            ret: Some(e.h.ret.min(0)),
            ns: Some(done.map_or(e.h.latency_ns, |d| d.h.latency_ns) as i64),
            local: done
                .and_then(|d| endpoint(e.sk_family, &d.saddr, d.sport))
                .or_else(|| endpoint(e.sk_family, &e.saddr, e.sport)),
        })
    }

    /// An outcome record: the held connect's row, if it was held.
    pub fn done(&mut self, d: &ConnectDoneEvent) -> Option<(ConnectEvent, Outcome)> {
        let k = key(d.h.ts_boot_ns, d.sock_id);
        if let Some(e) = self.held.remove(&k) {
            let outcome = from_done(&e, d);
            return Some((e, outcome));
        }
        // (full only if connect records were lost: this outcome is then
        // dropped, and its row, if it comes, is given up after the wait)
        if self.early.len() < MAX_EARLY {
            self.early.insert(k, *d);
        }
        None
    }

    /// Gives up the connects pending for longer than [`OUTCOME_WAIT_NS`] at
    /// `now_boot_ns`, and forgets outcomes whose connect never came.
    pub fn expire(&mut self, now_boot_ns: i64, out: &mut Vec<(ConnectEvent, Outcome)>) {
        let cut = now_boot_ns.saturating_sub(OUTCOME_WAIT_NS);
        while let Some(entry) = self.held.first_entry() {
            if entry.key().0 as i64 >= cut {
                break;
            }
            let e = entry.remove();
            out.push((e, given_up(&e)));
        }
        if !self.early.is_empty() {
            self.early.retain(|_, d| (d.h.ts_boot_ns as i64).saturating_add(d.h.latency_ns as i64) >= cut);
        }
    }

    /// Gives up every held connect (shutdown, or the end of a recording).
    pub fn finish(&mut self, out: &mut Vec<(ConnectEvent, Outcome)>) {
        while let Some((_, e)) = self.held.pop_first() {
            out.push((e, given_up(&e)));
        }
        self.early.clear();
    }

    /// The entry time (boot clock) of the oldest held connect.
    pub fn oldest(&self) -> Option<i64> {
        self.held.first_key_value().map(|(k, _)| k.0 as i64)
    }

    /// Connects held now.
    pub fn held(&self) -> usize {
        self.held.len()
    }
}

fn given_up(e: &ConnectEvent) -> Outcome {
    Outcome { ret: None, ns: None, local: endpoint(e.sk_family, &e.saddr, e.sport) }
}

#[cfg(test)]
mod tests {
    use super::*;
    use sysql_events::{zeroed, KIND_CONNECT, KIND_CONNECT_DONE};

    fn connect(ts: u64, sock: u64, ret: i64) -> ConnectEvent {
        let mut e: ConnectEvent = zeroed();
        e.h.kind = KIND_CONNECT;
        e.h.ts_boot_ns = ts;
        e.h.ret = ret;
        e.h.latency_ns = 5;
        e.sock_id = sock;
        e.sk_family = AF_INET;
        e.sk_protocol = IPPROTO_TCP;
        e.saddr[..4].copy_from_slice(&[127, 0, 0, 1]);
        e.sport = 40000;
        e
    }

    fn done(ts: u64, sock: u64, ret: i64, latency: u64) -> ConnectDoneEvent {
        let mut d: ConnectDoneEvent = zeroed();
        d.h.kind = KIND_CONNECT_DONE;
        d.h.ts_boot_ns = ts;
        d.h.ret = ret;
        d.h.latency_ns = latency;
        d.sock_id = sock;
        d.saddr[..4].copy_from_slice(&[10, 0, 0, 2]);
        d.sport = 50000;
        d
    }

    fn local(a: [u8; 4], port: u16) -> Option<(IpAddr, u16)> {
        Some((IpAddr::V4(Ipv4Addr::from(a)), port))
    }

    #[test]
    fn a_late_outcome_completes_the_held_row() {
        let mut p = Pairing::default();
        let mut out = Vec::new();
        assert_eq!(p.connect(&connect(100, 7, -115), &mut out), None);
        assert_eq!((p.held(), p.oldest()), (1, Some(100)));
        let (e, o) = p.done(&done(100, 7, -110, 30)).unwrap();
        assert_eq!(e.h.ts_boot_ns, 100);
        assert_eq!(o, Outcome { ret: Some(-110), ns: Some(30), local: local([10, 0, 0, 2], 50000) });
        assert_eq!((p.held(), p.oldest()), (0, None));
    }

    #[test]
    fn an_outcome_before_its_connect_waits_for_it() {
        let mut p = Pairing::default();
        let mut out = Vec::new();
        // loopback: established inside the syscall, which still says EINPROGRESS
        assert!(p.done(&done(100, 7, 0, 3)).is_none());
        let o = p.connect(&connect(100, 7, -115), &mut out).unwrap();
        assert_eq!(o, Outcome { ret: Some(0), ns: Some(3), local: local([10, 0, 0, 2], 50000) });
        // a blocking connect: the syscall's result, the handshake's time and address
        assert!(p.done(&done(200, 8, -111, 4)).is_none());
        let o = p.connect(&connect(200, 8, -111), &mut out).unwrap();
        assert_eq!(o, Outcome { ret: Some(-111), ns: Some(4), local: local([10, 0, 0, 2], 50000) });
        assert_eq!(p.held(), 0);
        assert!(out.is_empty());
    }

    #[test]
    fn other_sockets_and_immediate_failures_take_the_syscall_result() {
        let mut p = Pairing::default();
        let mut out = Vec::new();
        let mut udp = connect(100, 9, 0);
        udp.sk_protocol = 17;
        assert_eq!(
            p.connect(&udp, &mut out).unwrap(),
            Outcome { ret: Some(0), ns: Some(5), local: local([127, 0, 0, 1], 40000) }
        );
        let mut unreachable = connect(100, 10, -101);
        unreachable.saddr = [0; 16];
        unreachable.sport = 0;
        assert_eq!(p.connect(&unreachable, &mut out).unwrap(), Outcome { ret: Some(-101), ns: Some(5), local: None });
    }

    #[test]
    fn a_connect_with_no_outcome_is_given_up_after_the_wait() {
        let mut p = Pairing::default();
        let mut out = Vec::new();
        assert!(p.connect(&connect(1_000, 7, -115), &mut out).is_none());
        p.expire(1_000 + OUTCOME_WAIT_NS - 1, &mut out);
        assert!(out.is_empty());
        p.expire(1_001 + OUTCOME_WAIT_NS, &mut out);
        assert_eq!(out.len(), 1);
        assert_eq!(out[0].1, Outcome { ret: None, ns: None, local: local([127, 0, 0, 1], 40000) });
        // its outcome, too late, is not paired with anything
        assert!(p.done(&done(1_000, 7, 0, 1)).is_none());
        p.expire(i64::MAX, &mut out);
        assert!(p.early.is_empty());
    }
}
