//! Live streams over synthetic events: the reorder buffer restores `ts`
//! order from shuffled input and counts late rows; windows hold exactly the
//! events of a generated workload (N per second for M seconds).

use datafusion::arrow::array::{Array, TimestampNanosecondArray};
use datafusion::arrow::util::display::{ArrayFormatter, FormatOptions};
use std::time::Duration;
use sysql_engine::live::LiveItem;
use sysql_engine::{window, Engine, EngineConfig};
use sysql_events::*;

const S: i64 = 1_000_000_000;

fn now_ns() -> i64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_nanos() as i64
}

/// An open event at UTC time `ts` (the engine's clock offset is 0).
fn open_at(ts: i64, comm: &str) -> OpenEvent {
    let mut e: OpenEvent = zeroed();
    e.h.kind = KIND_OPEN;
    e.h.ts_boot_ns = ts as u64;
    e.h.pid = 7;
    e.h.comm[..comm.len()].copy_from_slice(comm.as_bytes());
    e.path[..2].copy_from_slice(b"/x");
    e.path_len = 2;
    e
}

/// A deterministic shuffle (no rand dependency): an LCG permutation.
fn shuffle<T>(v: &mut [T], seed: u64) {
    let mut x = seed;
    for i in (1..v.len()).rev() {
        x = x.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
        v.swap(i, (x >> 33) as usize % (i + 1));
    }
}

fn engine() -> Engine {
    Engine::new(EngineConfig { lateness: Duration::from_millis(200), ..EngineConfig::default() })
}

/// base: a whole second at least 2 s after now.
fn base() -> i64 {
    (now_ns() / S + 2) * S
}

/// N events per second for M seconds from `base`, pushed in shuffled chunks
/// of 50 ms (as several CPUs would deliver them).
fn workload(engine: &Engine, base: i64, n: i64, m: i64, comms: &[&str]) {
    let mut ingest = engine.ingest();
    let mut all: Vec<(i64, &str)> = (0..n * m).map(|i| (base + i * (S / n), comms[i as usize % comms.len()])).collect();
    for (k, chunk) in all.chunks_mut((n / 20).max(1) as usize).enumerate() {
        shuffle(chunk, k as u64 + 1);
        for (ts, comm) in chunk.iter() {
            ingest.push(as_bytes(&open_at(*ts, comm)));
        }
        ingest.flush();
    }
}

#[tokio::test]
async fn reorder_buffer_sorts_shuffled_input_and_counts_late_rows() {
    let engine = engine();
    let (mut rx, wm0) = engine.live().subscribe(Table::Opens, true, now_ns());
    let b = base();
    workload(&engine, b, 1000, 2, &["a"]);
    engine.live().advance(b + 2 * S + 200_000_000 + 1);
    // a row older than the watermark now is late
    let mut ingest = engine.ingest();
    ingest.push(as_bytes(&open_at(b + S, "late")));
    ingest.flush();
    let mut ts = Vec::new();
    let mut last_wm = wm0;
    while let Ok(Some(item)) = tokio::time::timeout(Duration::from_millis(200), rx.recv()).await {
        match item {
            LiveItem::Rows(batch) => {
                let col = batch.column(0).as_any().downcast_ref::<TimestampNanosecondArray>().unwrap();
                ts.extend(col.values().iter().copied());
            }
            LiveItem::Watermark(wm) => last_wm = wm,
        }
    }
    assert_eq!(ts.len(), 2000, "every event, once");
    assert!(ts.windows(2).all(|w| w[0] <= w[1]), "released in ts order");
    assert!(ts.iter().all(|t| *t <= last_wm));
    assert_eq!(engine.stats().table(Table::Opens).late.load(std::sync::atomic::Ordering::Relaxed), 1);
}

/// Runs a live window query, feeds it with `feed` (which returns the time to
/// advance the watermark to), and collects every row it prints.
async fn run_window(engine: &Engine, sql: &str, feed: impl FnOnce(&Engine) -> i64) -> Vec<Vec<String>> {
    let ctx = engine.session().unwrap();
    let q = window::plan(&ctx, sql).await.unwrap().expect("a live window query");
    let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel();
    let (e2, c2) = (engine.clone(), ctx.clone());
    let task = tokio::spawn(async move {
        window::run(&e2, &c2, &q, |batch| {
            let _ = tx.send(batch);
            Ok(())
        })
        .await
    });
    tokio::time::sleep(Duration::from_millis(50)).await; // subscribed
    let until = feed(engine);
    engine.live().advance(until);
    let mut rows = Vec::new();
    let opts = FormatOptions::default().with_null("NULL");
    while let Ok(Some(batch)) = tokio::time::timeout(Duration::from_millis(500), rx.recv()).await {
        let f: Vec<_> = batch.columns().iter().map(|c| ArrayFormatter::try_new(c.as_ref(), &opts).unwrap()).collect();
        for r in 0..batch.num_rows() {
            rows.push(f.iter().map(|x| x.value(r).to_string()).collect());
        }
    }
    task.abort();
    rows
}

async fn window_rows(engine: &Engine, sql: &str, b: i64, n: i64, m: i64, comms: &[&str]) -> Vec<Vec<String>> {
    run_window(engine, sql, |e| {
        workload(e, b, n, m, comms);
        b + (m + 2) * S + 200_000_000
    })
    .await
}

fn at(b: i64, secs: i64) -> String {
    chrono_like(b + secs * S)
}

/// RFC 3339 of a whole second, as the formatter prints it.
fn chrono_like(ts: i64) -> String {
    let a = TimestampNanosecondArray::from(vec![ts]).with_timezone("UTC");
    let s = ArrayFormatter::try_new(&a, &FormatOptions::default()).unwrap().value(0).to_string();
    s
}

#[tokio::test]
async fn tumbling_windows_hold_exactly_each_seconds_events() {
    let engine = engine();
    let b = base();
    let rows = window_rows(
        &engine,
        "SELECT window_start, window_end, count(*) AS n, window_lost FROM live.opens \
         GROUP BY tumble(ts, INTERVAL '1 second')",
        b,
        200,
        4,
        &["x"],
    )
    .await;
    let expect: Vec<Vec<String>> =
        (0..4).map(|s| vec![at(b, s), at(b, s + 1), "200".to_string(), "0".to_string()]).collect();
    assert_eq!(rows, expect);
}

#[tokio::test]
async fn extra_keys_having_and_order_apply_within_each_window() {
    let engine = engine();
    let b = base();
    let rows = window_rows(
        &engine,
        "SELECT window_start, comm, count(*) AS n FROM live.opens \
         GROUP BY date_bin(INTERVAL '2 seconds', ts), comm HAVING count(*) > 60 ORDER BY n DESC, comm",
        b - b % (2 * S) + 2 * S,
        100,
        4,
        &["aa", "aa", "aa", "bb"],
    )
    .await;
    let b2 = b - b % (2 * S) + 2 * S;
    // per 2 s window: 200 events, 150 from aa and 50 from bb (left out by HAVING)
    assert_eq!(rows, vec![vec![at(b2, 0), "aa".into(), "150".into()], vec![at(b2, 2), "aa".into(), "150".into()]]);
}

#[tokio::test]
async fn hopping_windows_overlap() {
    let engine = engine();
    let b = base();
    let rows = window_rows(
        &engine,
        "SELECT window_start, count(*) FROM live.opens GROUP BY hop(ts, INTERVAL '1 second', INTERVAL '2 seconds')",
        b,
        100,
        3,
        &["h"],
    )
    .await;
    let counts: Vec<(String, String)> = rows.into_iter().map(|r| (r[0].clone(), r[1].clone())).collect();
    assert_eq!(
        counts,
        vec![(at(b, -1), "100".into()), (at(b, 0), "200".into()), (at(b, 1), "200".into()), (at(b, 2), "100".into()),]
    );
}

#[tokio::test]
async fn non_window_queries_are_not_taken_for_windows() {
    let engine = engine();
    let ctx = engine.session().unwrap();
    for sql in [
        "SELECT comm, count(*) FROM opens GROUP BY tumble(ts, INTERVAL '1 second'), comm",
        "SELECT ts, path FROM live.opens WHERE ret < 0",
        "SELECT comm, count(*) FROM live.opens GROUP BY comm",
    ] {
        assert!(window::plan(&ctx, sql).await.unwrap().is_none(), "{sql}");
    }
    let err = window::plan(&ctx, "SELECT count(*) FROM live.opens GROUP BY tumble(ts, INTERVAL '1 month')").await;
    assert!(err.unwrap_err().to_string().contains("positive interval"));
}

#[tokio::test]
async fn session_windows_split_per_key_on_gaps() {
    let engine = engine();
    let sql = "SELECT comm, window_start, window_end, count(*) AS n FROM live.opens \
               GROUP BY session(ts, INTERVAL '500 milliseconds'), comm ORDER BY comm, window_start";
    let b = base();
    let ms = 1_000_000;
    let mut rows = run_window(&engine, sql, |engine| {
        let mut events: Vec<(i64, &str)> = Vec::new();
        events.extend((0..10).map(|i| (b + i * 100 * ms, "a"))); // a: 0.0 .. 0.9 s
        events.extend((0..6).map(|i| (b + 3000 * ms + i * 100 * ms, "a"))); // a again: 3.0 .. 3.5 s
        events.extend((0..40).map(|i| (b + i * 100 * ms, "b"))); // b: 0.0 .. 3.9 s, no gap
        events.sort();
        let mut ingest = engine.ingest();
        for (ts, comm) in &events {
            ingest.push(as_bytes(&open_at(*ts, comm)));
        }
        ingest.flush();
        b + 6 * S
    })
    .await;
    let t = |n: i64| chrono_like(b + n * ms);
    rows.sort();
    assert_eq!(
        rows,
        vec![
            vec!["a".to_string(), t(0), t(1400), "10".into()],
            vec!["a".to_string(), t(3000), t(4000), "6".into()],
            vec!["b".to_string(), t(0), t(4400), "40".into()],
        ]
    );
}
