//! Connect outcomes over synthetic records, for what real syscalls cannot
//! give on demand: an outcome that comes seconds later (ETIMEDOUT), one that
//! never comes (a NULL outcome after the wait), and the live watermark of
//! `connects` held behind a connect waiting for its outcome.

use datafusion::arrow::array::TimestampNanosecondArray;
use datafusion::arrow::util::display::{ArrayFormatter, FormatOptions};
use futures::StreamExt;
use std::time::Duration;
use sysql_engine::event::connect_outcome::OUTCOME_WAIT_NS;
use sysql_engine::live::LiveItem;
use sysql_engine::query::{Policy, QuerySession};
use sysql_engine::{Engine, EngineConfig};
use sysql_events::*;

const S: i64 = 1_000_000_000;

fn now_ns() -> i64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_nanos() as i64
}

/// Clock offset 0 (boot time = UTC) and no flush delay, so `tick` acts on
/// the time it is given.
fn engine() -> Engine {
    Engine::new(EngineConfig {
        flush_interval: Duration::ZERO,
        live_flush_interval: Duration::ZERO,
        lateness: Duration::from_millis(200),
        ..EngineConfig::default()
    })
}

/// A non-blocking TCP connect from 10.0.0.2:40000 to 10.0.0.1:443 that
/// returned `ret` at `ts`.
fn connect(ts: i64, sock: u64, ret: i64) -> ConnectEvent {
    let mut e: ConnectEvent = zeroed();
    e.h.kind = KIND_CONNECT;
    e.h.ts_boot_ns = ts as u64;
    e.h.latency_ns = 20_000;
    e.h.ret = ret;
    e.h.pid = 42;
    e.h.tid = 42;
    e.h.comm[..4].copy_from_slice(b"curl");
    e.fd = 5;
    e.sock_id = sock;
    e.sk_family = 2;
    e.sk_type = 1;
    e.sk_protocol = 6;
    e.sport = 40000;
    e.saddr[..4].copy_from_slice(&[10, 0, 0, 2]);
    e.netns = 4026531840;
    e.addrlen = 16;
    e.addr[..8].copy_from_slice(&[2, 0, 1, 187, 10, 0, 0, 1]);
    e
}

/// Its socket left SYN_SENT `after` ns later, with `ret`.
fn done(ts: i64, sock: u64, ret: i64, after: i64) -> ConnectDoneEvent {
    let mut d: ConnectDoneEvent = zeroed();
    d.h.kind = KIND_CONNECT_DONE;
    d.h.ts_boot_ns = ts as u64;
    d.h.latency_ns = after as u64;
    d.h.ret = ret;
    d.h.pid = 42;
    d.h.tid = 42;
    d.sock_id = sock;
    d.sport = 40000;
    d.saddr[..4].copy_from_slice(&[10, 0, 0, 2]);
    d
}

fn rows(engine: &Engine, sql: &str) -> Vec<Vec<String>> {
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
    let session = QuerySession::new(engine, Policy::default()).unwrap();
    let batches = rt.block_on(async {
        let mut stream = session.run(sql).await.unwrap();
        let mut out = Vec::new();
        while let Some(b) = stream.next().await {
            out.push(b.unwrap());
        }
        out
    });
    let opts = FormatOptions::default().with_null("NULL");
    let mut out = Vec::new();
    for b in &batches {
        let f: Vec<_> = b.columns().iter().map(|c| ArrayFormatter::try_new(c.as_ref(), &opts).unwrap()).collect();
        for r in 0..b.num_rows() {
            out.push(f.iter().map(|f| f.value(r).to_string()).collect());
        }
    }
    out
}

fn strings(rows: &[&[&str]]) -> Vec<Vec<String>> {
    rows.iter().map(|r| r.iter().map(|s| s.to_string()).collect()).collect()
}

const COLUMNS: &str = "SELECT ret, errno, outcome, outcome_ns, saddr, sport, netns FROM connects ORDER BY ts";

#[test]
fn a_timeout_seconds_later_is_the_outcome() {
    let engine = engine();
    let mut ingest = engine.ingest();
    let t = now_ns() - 10 * S;
    ingest.push(as_bytes(&connect(t, 1, -115)));
    ingest.flush();
    assert!(rows(&engine, COLUMNS).is_empty(), "held until its outcome comes");
    ingest.push(as_bytes(&done(t, 1, -110, 3 * S)));
    ingest.flush();
    assert_eq!(
        rows(&engine, COLUMNS),
        strings(&[&["-115", "EINPROGRESS", "ETIMEDOUT", "3000000000", "10.0.0.2", "40000", "4026531840"]])
    );
    assert_eq!(rows(&engine, "SELECT captured FROM sysql_stats WHERE table_name = 'connects'"), strings(&[&["1"]]));
}

#[test]
fn an_outcome_that_never_comes_is_null_after_the_wait() {
    let engine = engine();
    let mut ingest = engine.ingest();
    let t = now_ns() - 60 * S;
    ingest.push(as_bytes(&connect(t, 1, -115)));
    // still within the wait: nothing
    ingest.tick(t + OUTCOME_WAIT_NS - S);
    assert!(rows(&engine, COLUMNS).is_empty());
    ingest.tick(t + OUTCOME_WAIT_NS + S);
    assert_eq!(
        rows(&engine, COLUMNS),
        strings(&[&["-115", "EINPROGRESS", "NULL", "NULL", "10.0.0.2", "40000", "4026531840"]])
    );
    // the outcome, too late, makes no second row
    ingest.push(as_bytes(&done(t, 1, 0, OUTCOME_WAIT_NS + 2 * S)));
    ingest.flush();
    assert_eq!(rows(&engine, "SELECT count(*) FROM connects"), strings(&[&["1"]]));
    // an ended capture gives up what is still held
    ingest.push(as_bytes(&connect(t + S, 2, -115)));
    ingest.finish_payloads();
    assert_eq!(rows(&engine, "SELECT count(*), count(outcome) FROM connects"), strings(&[&["2", "0"]]));
}

#[test]
fn an_outcome_before_its_connect_and_a_blocking_failure() {
    let engine = engine();
    let mut ingest = engine.ingest();
    let t = now_ns() - 10 * S;
    // over loopback the handshake ends inside the syscall: its record first
    ingest.push(as_bytes(&done(t, 1, 0, 50_000)));
    ingest.push(as_bytes(&connect(t, 1, -115)));
    // a blocking connect refused: the syscall's result, the port from the handshake
    ingest.push(as_bytes(&done(t + S, 2, -111, 70_000)));
    let mut refused = connect(t + S, 2, -111);
    refused.sport = 0;
    ingest.push(as_bytes(&refused));
    ingest.flush();
    assert_eq!(
        rows(&engine, COLUMNS),
        strings(&[
            &["-115", "EINPROGRESS", "connected", "50000", "10.0.0.2", "40000", "4026531840"],
            &["-111", "ECONNREFUSED", "ECONNREFUSED", "70000", "10.0.0.2", "40000", "4026531840"],
        ])
    );
}

#[tokio::test]
async fn the_live_watermark_waits_for_a_held_connect() {
    let engine = engine();
    let now = now_ns();
    let (mut rx, _) = engine.live().subscribe(Table::Connects, true, now);
    let mut ingest = engine.ingest();
    let t = now + S;
    ingest.push(as_bytes(&connect(t, 1, -115)));
    ingest.push(as_bytes(&connect(t + S, 2, 0)));
    // later than both, but the first is still waiting for its outcome
    ingest.tick(t + 5 * S);
    let mut watermark = i64::MIN;
    let mut released = Vec::new();
    while let Ok(Some(item)) = tokio::time::timeout(Duration::from_millis(100), rx.recv()).await {
        match item {
            LiveItem::Watermark(wm) => watermark = wm,
            LiveItem::Rows(b) => released.push(b.num_rows()),
        }
    }
    assert!(watermark < t, "the watermark {watermark} passed the held connect at {t}");
    assert!(released.is_empty(), "the later connect waits too (rows are released in ts order)");
    // the outcome comes: both rows go out, in order
    ingest.push(as_bytes(&done(t, 1, 0, S)));
    ingest.tick(t + 5 * S);
    let mut ts = Vec::new();
    while let Ok(Some(item)) = tokio::time::timeout(Duration::from_millis(100), rx.recv()).await {
        match item {
            LiveItem::Watermark(wm) => watermark = wm,
            LiveItem::Rows(b) => {
                let col = b.column(0).as_any().downcast_ref::<TimestampNanosecondArray>().unwrap();
                ts.extend(col.values().iter().copied());
            }
        }
    }
    assert_eq!(ts, vec![t, t + S]);
    assert!(watermark >= t + S);
    assert_eq!(engine.stats().table(Table::Connects).late.load(std::sync::atomic::Ordering::Relaxed), 0);
}
