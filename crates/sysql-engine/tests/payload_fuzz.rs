//! Fuzzing the payload parsers (bounded for CI; more cases with
//! PROPTEST_CASES=100000): any bytes, in any order, on any protocol and
//! direction, through the decoder, connection tracking and parsers: no
//! panic, and state stays bounded.

use proptest::prelude::*;
use sysql_engine::payload::{PayloadConfig, Payloads, MAX_CONNS};
use sysql_events::*;

/// Message starts the parsers look for, so that random tails reach deep
/// into each parser rather than being rejected on their first byte.
const SEEDS: &[&[u8]] = &[
    b"GET / HTTP/1.1\r\n",
    b"HTTP/1.1 200 OK\r\nContent-Length: ",
    b"POST /x HTTP/1.0\r\nContent-Length: 3\r\n\r\n",
    b"\x00\x00\x00\x08\x04\xd2\x16\x2f",
    b"\x00\x00\x00\x10\x00\x03\x00\x00user\x00",
    b"Q\x00\x00\x00\x09",
    b"P\x00\x00\x00\x20s\x00",
    b"B\x00\x00\x00\x0c",
    b"E\x00\x00\x00\x05",
    b"C\x00\x00\x00\x0d",
    b"Z\x00\x00\x00\x05I",
    b"\x05\x00\x00\x00\x03",
    b"\x07\x00\x00\x01\xff",
    b"\x4a\x00\x00\x00\x0a",
    b"\x12\x34\x01\x00\x00\x01\x00\x00",
    b"\x12\x34\x81\x80\x00\x01\x00\x01",
];

fn event(pid: u32, sock: u64, proto: u8, syscall: u32, ret: i64, at: u64, len: usize) -> PayloadEvent {
    let mut e: PayloadEvent = zeroed();
    e.h.kind = KIND_PAYLOAD;
    e.h.syscall = syscall;
    e.h.ts_boot_ns = at;
    e.h.ret = ret;
    e.h.pid = pid;
    e.sock_id = sock;
    e.protocol = proto;
    e.sk_family = [1u16, 2, 10][(sock % 3) as usize];
    e.data_len = len as u32;
    e
}

fn chunk() -> impl Strategy<Value = (u32, u64, u8, u32, i64, u64, Vec<u8>)> {
    (
        0u32..4,
        0u64..6,
        0u8..6,
        0u32..9,
        any::<i64>(),
        any::<u64>(),
        (0..SEEDS.len() + 1, proptest::collection::vec(any::<u8>(), 0..300)),
    )
        .prop_map(|(pid, sock, proto, sys, ret, at, (seed, tail))| {
            let mut data = SEEDS.get(seed).map(|s| s.to_vec()).unwrap_or_default();
            data.extend(tail);
            (pid, sock, proto, sys, ret, at, data)
        })
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 2000, ..ProptestConfig::default() })]

    #[test]
    fn parsers_never_panic(chunks in proptest::collection::vec(chunk(), 1..40), redact in any::<bool>()) {
        let mut p = Payloads::new(PayloadConfig { redact });
        for (pid, sock, proto, sys, ret, at, data) in &chunks {
            let e = event(*pid, *sock, *proto, *sys, *ret, *at, data.len());
            p.push(&e, data);
        }
        let made = p.rows.http.len() + p.rows.db.len() + p.rows.dns.len();
        prop_assert!(made <= chunks.len() * 64, "rows bounded by the messages pushed");
        prop_assert!(p.connections() <= MAX_CONNS);
        p.expire(i64::MAX);
        p.finish();
        prop_assert_eq!(p.connections(), 0);
    }

    /// Whole records through the decoder: any length, any data_len.
    #[test]
    fn records_never_panic(data in proptest::collection::vec(any::<u8>(), 0..600), data_len in any::<u32>(), proto in 0u8..6) {
        let e = engine();
        let mut ingest = e.ingest();
        let mut ev = event(1, 1, proto, 1, data.len() as i64, 1, 0);
        ev.data_len = data_len;
        let mut rec = as_bytes(&ev).to_vec();
        rec.extend_from_slice(&data);
        let mut buf = vec![0u8; rec.len() + 8];
        let off = buf.as_ptr().align_offset(8);
        buf[off..off + rec.len()].copy_from_slice(&rec);
        ingest.push(&buf[off..off + rec.len()]);
        ingest.finish_payloads();
    }
}

fn engine() -> sysql_engine::Engine {
    sysql_engine::Engine::new(sysql_engine::EngineConfig::default())
}
