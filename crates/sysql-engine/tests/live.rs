//! Live streams over synthetic events: the reorder buffer restores `ts`
//! order from shuffled input and counts late rows; windows hold exactly the
//! events of a generated workload (N per second for M seconds); joins of
//! two live tables return exact rows whatever order the sides arrive in, at
//! once, and keep bounded state.

use datafusion::arrow::array::{Array, TimestampNanosecondArray};
use datafusion::arrow::util::display::{ArrayFormatter, FormatOptions};
use futures::StreamExt;
use std::time::Duration;
use sysql_engine::live::LiveItem;
use sysql_engine::query::{Kind, Policy, QuerySession};
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

/// Waits until `table` has `n` live subscribers (a statement's scans have
/// started).
async fn subscribed(engine: &Engine, table: Table, n: usize) {
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    while engine.live().subscribers(table) < n {
        assert!(std::time::Instant::now() < deadline, "no live subscription to {}", table.name());
        tokio::task::yield_now().await;
    }
}

/// Parses one statement.
fn statement(sql: &str) -> datafusion::sql::parser::Statement {
    datafusion::sql::parser::DFParser::parse_sql(sql).unwrap().pop_front().unwrap()
}

/// Runs a live window query through the statement path, feeds it with
/// `feed` (which returns the time to advance the watermark to), and
/// collects every row it gives.
async fn run_window(engine: &Engine, sql: &str, feed: impl FnOnce(&Engine) -> i64) -> Vec<Vec<String>> {
    let session = QuerySession::new(engine, Policy::shell(false)).unwrap();
    let mut stream = session.run(sql).await.unwrap();
    assert_eq!(stream.kind(), Kind::Window, "{sql}");
    subscribed(engine, Table::Opens, 1).await;
    let until = feed(engine);
    engine.live().advance(until);
    let mut rows = Vec::new();
    let opts = FormatOptions::default().with_null("NULL");
    while let Ok(Some(batch)) = tokio::time::timeout(Duration::from_millis(500), stream.next()).await {
        let batch = batch.unwrap();
        let f: Vec<_> = batch.columns().iter().map(|c| ArrayFormatter::try_new(c.as_ref(), &opts).unwrap()).collect();
        for r in 0..batch.num_rows() {
            rows.push(f.iter().map(|x| x.value(r).to_string()).collect());
        }
    }
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
        assert!(window::plan(&ctx, &statement(sql)).await.unwrap().is_none(), "{sql}");
    }
    let sql = "SELECT count(*) FROM live.opens GROUP BY tumble(ts, INTERVAL '1 month')";
    let err = window::plan(&ctx, &statement(sql)).await;
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

// ---- Joins of two live streams (sysql's IntervalJoinExec) ----

const MS: i64 = 1_000_000;

/// An exec in a join workload: ts, pid.
type Exec = (i64, u32);
/// A connect in a join workload: ts, pid, port.
type Connect = (i64, u32, u16);
/// Hands a join workload to the engines (execs side, connects side).
/// Delivers a workload to the execs and connects engines; `held` tells how
/// many rows the join holds (to wait until one side is in before the other
/// comes).
type Deliver = fn(&Engine, &Engine, &[Exec], &[Connect], &dyn Fn() -> usize);

/// Waits (at most 10 s) until the join holds `n` rows.
fn wait_held(held: &dyn Fn() -> usize, n: usize) {
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    while held() != n {
        assert!(std::time::Instant::now() < deadline, "the join holds {} rows, not {n}", held());
        std::thread::yield_now();
    }
}

/// An exec of `pid` at UTC time `ts`.
fn exec_at(ts: i64, pid: u32) -> ExecEvent {
    let mut e: ExecEvent = zeroed();
    e.h.kind = KIND_EXEC;
    e.h.syscall = SYS_EXECVE;
    e.h.ts_boot_ns = ts as u64;
    e.h.pid = pid;
    e.h.tid = pid;
    e.h.comm[..4].copy_from_slice(b"prog");
    e.filename[..9].copy_from_slice(b"/bin/prog");
    e.filename_len = 9;
    e
}

/// A TCP connect of `pid` to 10.0.0.1:`port` at UTC time `ts`.
fn connect_at(ts: i64, pid: u32, port: u16) -> ConnectEvent {
    let mut e: ConnectEvent = zeroed();
    e.h.kind = KIND_CONNECT;
    e.h.syscall = SYS_CONNECT;
    e.h.ts_boot_ns = ts as u64;
    e.h.pid = pid;
    e.h.tid = pid;
    e.h.comm[..4].copy_from_slice(b"prog");
    e.addrlen = 16;
    e.sk_family = 2;
    e.sk_type = 1;
    e.sk_protocol = 6;
    e.addr[..2].copy_from_slice(&2u16.to_ne_bytes());
    e.addr[2..4].copy_from_slice(&port.to_be_bytes());
    e.addr[4..8].copy_from_slice(&[10, 0, 0, 1]);
    e
}

/// A running live query over a live-live join.
struct LiveJoin {
    rows: tokio::sync::mpsc::UnboundedReceiver<(std::time::Instant, Vec<String>)>,
    join: std::sync::Arc<dyn datafusion::physical_plan::ExecutionPlan>,
    task: tokio::task::JoinHandle<()>,
}

impl LiveJoin {
    /// Plans `sql` as the shell does (one partition, batch size 1), readies
    /// it for a live run and starts it: both live scans are subscribed when
    /// this returns.
    async fn start(ctx: &datafusion::prelude::SessionContext, sql: &str) -> LiveJoin {
        use futures::StreamExt;
        let (mut state, logical) = ctx.sql(sql).await.unwrap().into_parts();
        state.config_mut().options_mut().execution.target_partitions = 1;
        state.config_mut().options_mut().set("datafusion.execution.batch_size", "1").unwrap();
        let plan = datafusion::dataframe::DataFrame::new(state, logical).create_physical_plan().await.unwrap();
        let (plan, task) = sysql_engine::live_table::prepare_live(plan, ctx.task_ctx()).unwrap();
        let join = find_join(&plan).expect("the live join runs as IntervalJoinExec");
        let mut stream = datafusion::physical_plan::execute_stream(plan, task).unwrap();
        let (tx, rows) = tokio::sync::mpsc::unbounded_channel();
        let task = tokio::spawn(async move {
            let opts = FormatOptions::default().with_null("NULL");
            while let Some(batch) = stream.next().await {
                let batch = batch.unwrap();
                let now = std::time::Instant::now();
                let f: Vec<_> =
                    batch.columns().iter().map(|c| ArrayFormatter::try_new(c.as_ref(), &opts).unwrap()).collect();
                for r in 0..batch.num_rows() {
                    let _ = tx.send((now, f.iter().map(|x| x.value(r).to_string()).collect()));
                }
            }
        });
        LiveJoin { rows, join, task }
    }

    fn op(&self) -> &sysql_engine::join::IntervalJoinExec {
        self.join.as_ref().downcast_ref().unwrap()
    }

    /// Rows until `n` have come, or none came for `quiet`.
    async fn take(&mut self, n: usize, quiet: Duration) -> Vec<Vec<String>> {
        let mut out = Vec::new();
        while out.len() < n {
            match tokio::time::timeout(quiet, self.rows.recv()).await {
                Ok(Some((_, row))) => out.push(row),
                _ => break,
            }
        }
        out
    }

    /// Waits until the join holds `n` rows (or `limit` passes); returns what it holds.
    async fn held(&self, n: usize, limit: Duration) -> usize {
        let end = std::time::Instant::now() + limit;
        while self.op().held_rows() != n && std::time::Instant::now() < end {
            tokio::time::sleep(Duration::from_millis(2)).await;
        }
        self.op().held_rows()
    }
}

impl Drop for LiveJoin {
    fn drop(&mut self) {
        self.task.abort();
    }
}

fn find_join(
    plan: &std::sync::Arc<dyn datafusion::physical_plan::ExecutionPlan>,
) -> Option<std::sync::Arc<dyn datafusion::physical_plan::ExecutionPlan>> {
    if plan.as_ref().is::<sysql_engine::join::IntervalJoinExec>() {
        return Some(plan.clone());
    }
    plan.children().into_iter().find_map(find_join)
}

/// A session whose `live.connects` is fed by a second engine, so a test
/// moves each side's watermark on its own: rows of one side can arrive long
/// before the other's.
fn split_session(execs: &Engine, connects: &Engine) -> datafusion::prelude::SessionContext {
    let ctx = execs.session().unwrap();
    let schema = sysql_engine::event_tables().into_iter().find(|(t, _)| *t == Table::Connects).unwrap().1;
    let live = sysql_engine::live_table::LiveTable::new(
        Table::Connects,
        schema,
        connects.live().clone(),
        connects.capture_needs().clone(),
    );
    ctx.deregister_table("live.connects").unwrap();
    ctx.register_table("live.connects", std::sync::Arc::new(live)).unwrap();
    ctx
}

const JOIN: &str = "SELECT e.pid, e.ts, c.ts, c.dport FROM live.execs e JOIN live.connects c \
                    ON c.pid = e.pid AND c.ts BETWEEN e.ts AND e.ts + INTERVAL '5 seconds'";

/// Execs and connects with pairs inside and outside the 5 s bound: 60 execs
/// 150 ms apart whose pids repeat every 40 (two execs of one pid, 6 s
/// apart), each followed by connects at an offset that is inside (0, 2.5 s,
/// exactly 5 s) or outside (1 ms before, 5 s + 1 ns, 7 s) the bound, and
/// connects of pids that never exec.
fn join_workload(b: i64) -> (Vec<Exec>, Vec<Connect>) {
    let execs: Vec<Exec> = (0..60).map(|k| (b + k * 150 * MS, 1000 + (k % 40) as u32)).collect();
    let offsets = [0, 2500 * MS, 5 * S, -MS, 5 * S + 1, 7 * S];
    let mut connects = Vec::new();
    for (k, &(ts, pid)) in execs.iter().enumerate() {
        connects.push((ts + offsets[k % 6], pid, 100 + k as u16));
        if k % 4 == 0 {
            connects.push((ts + 4 * S, pid, 300 + k as u16));
        }
        connects.push((ts + 3 * S, 5000 + k as u32, 500 + k as u16));
    }
    (execs, connects)
}

/// What the join must return, worked out pair by pair.
fn expected_join(execs: &[Exec], connects: &[Connect], left: bool) -> Vec<Vec<String>> {
    let mut out = Vec::new();
    for &(et, ep) in execs {
        let mut any = false;
        for &(ct, cp, port) in connects {
            if cp == ep && et <= ct && ct <= et + 5 * S {
                out.push(vec![ep.to_string(), chrono_like(et), chrono_like(ct), port.to_string()]);
                any = true;
            }
        }
        if left && !any {
            out.push(vec![ep.to_string(), chrono_like(et), "NULL".into(), "NULL".into()]);
        }
    }
    out.sort();
    out
}

fn push_execs(engine: &Engine, execs: &[Exec]) {
    let mut ingest = engine.ingest();
    for &(ts, pid) in execs {
        ingest.push(as_bytes(&exec_at(ts, pid)));
    }
    ingest.flush();
}

fn push_connects(engine: &Engine, connects: &[Connect]) {
    let mut ingest = engine.ingest();
    for &(ts, pid, port) in connects {
        ingest.push(as_bytes(&connect_at(ts, pid, port)));
    }
    ingest.flush();
}

fn lateness() -> i64 {
    200 * MS
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn live_join_emits_a_match_with_only_heartbeats_after_it() {
    let engine = engine();
    let ctx = engine.session().unwrap();
    // the saved query's shape: filters on both sides swallow the heartbeats
    // on their way to the join, so its watermarks come from the scans
    let mut q = LiveJoin::start(
        &ctx,
        "SELECT e.pid, c.dport FROM live.execs e JOIN live.connects c \
         ON c.pid = e.pid AND c.ts BETWEEN e.ts AND e.ts + INTERVAL '5 seconds' \
         WHERE e.ret = 0 AND c.family IN ('inet', 'inet6')",
    )
    .await;
    assert!(q.op().heartbeats(), "watermarks from the live scans' heartbeats");
    let b = base();
    push_execs(&engine, &[(b, 42)]);
    engine.live().advance(b + lateness() + MS);
    // connects of other processes first, released one at a time: a join
    // that pulls its inputs in turn now waits for the execs side, and would
    // hold the match below until the next exec
    for (i, pid) in [(3, 7), (6, 8)] {
        push_connects(&engine, &[(b + i * 100 * MS, pid, 80)]);
        engine.live().advance(b + i * 100 * MS + lateness() + MS);
        assert_eq!(q.take(1, Duration::from_millis(100)).await, Vec::<Vec<String>>::new());
    }
    push_connects(&engine, &[(b + S, 42, 443)]);
    // from here on only heartbeats: no other exec, no other connect
    let feeder = {
        let engine = engine.clone();
        tokio::spawn(async move {
            for i in 1..=100 {
                engine.live().advance(b + S + lateness() + i * 10 * MS);
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
        })
    };
    let rows = q.take(1, Duration::from_secs(2)).await;
    feeder.abort();
    assert_eq!(rows, vec![vec!["42".to_string(), "443".to_string()]]);
}

/// Runs [`JOIN`] (or its LEFT form) over the workload delivered by `deliver`
/// and checks the rows exactly; then, with both watermarks past the end,
/// the join must hold nothing.
async fn check_join_workload(left: bool, split: bool, deliver: Deliver) {
    let (execs_engine, connects_engine) = (engine(), engine());
    let ctx = if split { split_session(&execs_engine, &connects_engine) } else { execs_engine.session().unwrap() };
    let connects_engine = if split { connects_engine } else { execs_engine.clone() };
    let sql = if left { JOIN.replace("JOIN", "LEFT JOIN") } else { JOIN.to_string() };
    let mut q = LiveJoin::start(&ctx, &sql).await;
    let b = base();
    let (execs, connects) = join_workload(b);
    let want = expected_join(&execs, &connects, left);
    let op = q.join.clone();
    let held = move || op.as_ref().downcast_ref::<sysql_engine::join::IntervalJoinExec>().unwrap().held_rows();
    deliver(&execs_engine, &connects_engine, &execs, &connects, &held);
    let end = b + 30 * S;
    execs_engine.live().advance(end);
    connects_engine.live().advance(end);
    let mut rows = q.take(want.len(), Duration::from_secs(3)).await;
    rows.extend(q.take(usize::MAX, Duration::from_millis(300)).await); // nothing more
    rows.sort();
    assert_eq!(rows.len(), want.len());
    assert_eq!(rows, want);
    assert_eq!(q.held(0, Duration::from_secs(2)).await, 0, "nothing held once both watermarks passed");
}

/// In `ts` order, both tables released together every 100 ms of event time.
fn interleaved(e: &Engine, c: &Engine, execs: &[Exec], connects: &[Connect], _held: &dyn Fn() -> usize) {
    let b = execs[0].0;
    let mut t = b - 100 * MS;
    while t < b + 20 * S {
        let step = |x: i64| x > t && x <= t + 100 * MS;
        push_execs(e, &execs.iter().copied().filter(|x| step(x.0)).collect::<Vec<_>>());
        push_connects(c, &connects.iter().copied().filter(|x| step(x.0)).collect::<Vec<_>>());
        t += 100 * MS;
        e.live().advance(t + lateness());
        c.live().advance(t + lateness());
    }
}

/// Every connect is released (and the connects side heartbeats past them)
/// and held by the join before the first exec arrives.
fn connects_first(e: &Engine, c: &Engine, execs: &[Exec], connects: &[Connect], held: &dyn Fn() -> usize) {
    push_connects(c, connects);
    c.live().advance(execs[0].0 + 25 * S);
    wait_held(held, connects.len());
    push_execs(e, execs);
    e.live().advance(execs[0].0 + 25 * S);
}

/// The reverse: every exec first.
fn execs_first(e: &Engine, c: &Engine, execs: &[Exec], connects: &[Connect], held: &dyn Fn() -> usize) {
    push_execs(e, execs);
    e.live().advance(execs[0].0 + 25 * S);
    wait_held(held, execs.len());
    push_connects(c, connects);
    c.live().advance(execs[0].0 + 25 * S);
}

/// Both sides in steps of 500 ms, the connects side first 3 s of event
/// time ahead of the execs side, then 3 s behind it.
fn skewed(e: &Engine, c: &Engine, execs: &[Exec], connects: &[Connect], _held: &dyn Fn() -> usize) {
    let b = execs[0].0;
    let (mut te, mut tc) = (b - S, b - S);
    for step in 1..60 {
        let next_e = b - S + step * 500 * MS;
        let next_c = if step < 20 { next_e + 3 * S } else { tc.max(next_e - 3 * S) };
        push_execs(e, &execs.iter().copied().filter(|x| x.0 > te && x.0 <= next_e).collect::<Vec<_>>());
        push_connects(c, &connects.iter().copied().filter(|x| x.0 > tc && x.0 <= next_c).collect::<Vec<_>>());
        (te, tc) = (next_e, next_c);
        e.live().advance(te + lateness());
        c.live().advance(tc + lateness());
        std::thread::sleep(Duration::from_millis(2));
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn live_join_results_are_exact_in_ts_order() {
    check_join_workload(false, false, interleaved).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn live_join_results_are_exact_when_all_connects_come_first() {
    check_join_workload(false, true, connects_first).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn live_join_results_are_exact_when_all_execs_come_first() {
    check_join_workload(false, true, execs_first).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn live_join_results_are_exact_with_one_side_ahead() {
    check_join_workload(false, true, skewed).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn live_left_join_emits_unmatched_execs_with_nulls() {
    check_join_workload(true, false, interleaved).await;
    check_join_workload(true, true, connects_first).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn live_join_state_stays_bounded_as_the_watermarks_pass() {
    let engine = engine();
    let ctx = engine.session().unwrap();
    let mut q = LiveJoin::start(&ctx, JOIN).await;
    let b = base();
    // 60 s of event time in 100 ms steps: 100 execs and 100 connects per
    // second, each connect 1 s after the exec of its pid (pids repeat
    // after 50 s, far outside the bound)
    let pid = |n: i64| 10_000 + (n % 5000) as u32;
    let (mut max_held, mut received) = (0, 0);
    for step in 0..600 {
        let t0 = b + step * 100 * MS;
        let execs: Vec<_> = (0..10).map(|i| (t0 + i * 10 * MS, pid(step * 10 + i))).collect();
        let connects: Vec<_> =
            (0..10).filter(|_| step >= 10).map(|i| (t0 + i * 10 * MS, pid((step - 10) * 10 + i), 443)).collect();
        push_execs(&engine, &execs);
        push_connects(&engine, &connects);
        // the watermark stops short of the next step's first events
        engine.live().advance(t0 + 100 * MS - 1 + lateness());
        tokio::time::sleep(Duration::from_millis(1)).await;
        max_held = max_held.max(q.op().held_rows());
        while let Ok((_, _)) = q.rows.try_recv() {
            received += 1;
        }
    }
    // what it keeps: the execs of the last 5 s (a connect goes as soon as
    // the execs side's watermark passes it)
    let before_end = q.held(500, Duration::from_secs(2)).await;
    assert_eq!(before_end, 500, "held rows with 11,900 pushed");
    assert!(max_held <= 600, "held up to {max_held} rows");
    engine.live().advance(b + 70 * S);
    assert_eq!(q.held(0, Duration::from_secs(2)).await, 0, "the watermarks passed every row");
    received += q.take(5900 - received, Duration::from_secs(2)).await.len();
    assert_eq!(received, 5900, "each connect matched its exec");
    let shown = datafusion::physical_plan::displayable(q.join.as_ref()).one_line().to_string();
    assert!(shown.contains("bound=right.ts - left.ts in [0s, 5s]") && shown.contains("held_rows=0"), "{shown}");
    let metrics = q.join.metrics().unwrap();
    assert_eq!(metrics.sum_by_name("held_rows").map(|m| m.as_usize()), Some(0));
    assert_eq!(metrics.sum_by_name("dropped_rows").map(|m| m.as_usize()), Some(6000 + 5900));
    println!("live join state: at most {max_held} rows held, {before_end} before the end, 0 after");
}

fn percentiles(mut v: Vec<f64>) -> String {
    v.sort_by(f64::total_cmp);
    let at = |p: f64| v[((v.len() - 1) as f64 * p).round() as usize];
    format!("p50 {:.2} ms, p99 {:.2} ms, max {:.2} ms ({} joins)", at(0.5), at(0.99), v[v.len() - 1], v.len())
}

/// Emit latency of a live join, measured (not asserted): the time from
/// pushing the second event of a matching pair to the joined row coming
/// out. Printed with
/// `cargo test -p sysql-engine --test live live_join_emit_latency -- --nocapture`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn live_join_emit_latency() {
    // The operator alone: the test releases each event at once, as a
    // watermark that already passed it would.
    let engine = engine();
    let ctx = engine.session().unwrap();
    let mut q = LiveJoin::start(&ctx, JOIN).await;
    let b = base();
    let mut lat = Vec::new();
    for i in 0..300 {
        let t = b + i * 20 * MS;
        push_execs(&engine, &[(t, 20_000 + i as u32)]);
        engine.live().advance(t + lateness() + MS);
        tokio::time::sleep(Duration::from_millis(1)).await;
        let pushed = std::time::Instant::now();
        push_connects(&engine, &[(t + 10 * MS, 20_000 + i as u32, 443)]);
        engine.live().advance(t + 10 * MS + lateness() + MS);
        let (at, _) = tokio::time::timeout(Duration::from_secs(5), q.rows.recv()).await.unwrap().unwrap();
        lat.push(at.duration_since(pushed).as_secs_f64() * 1e3);
    }
    println!("live join emit latency, events released at once: {}", percentiles(lat));
    drop(q);

    // End to end as the reader runs it: events stamped now, and a heartbeat
    // every 10 ms moving the watermark to now - lateness (200 ms).
    let engine = self::engine();
    let ctx = engine.session().unwrap();
    let mut q = LiveJoin::start(&ctx, JOIN).await;
    let ticker = {
        let engine = engine.clone();
        tokio::spawn(async move {
            loop {
                engine.live().advance(now_ns());
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
        })
    };
    let mut lat = Vec::new();
    for i in 0..40 {
        push_execs(&engine, &[(now_ns(), 30_000 + i)]);
        tokio::time::sleep(Duration::from_millis(5)).await;
        let pushed = std::time::Instant::now();
        push_connects(&engine, &[(now_ns(), 30_000 + i, 443)]);
        let (at, _) = tokio::time::timeout(Duration::from_secs(5), q.rows.recv()).await.unwrap().unwrap();
        lat.push(at.duration_since(pushed).as_secs_f64() * 1e3);
    }
    ticker.abort();
    println!("live join emit latency, 200 ms lateness and 10 ms heartbeats: {}", percentiles(lat));
}

#[tokio::test]
async fn explain_shows_the_live_join_and_a_join_without_a_bound_is_refused() {
    let engine = engine();
    let ctx = engine.session().unwrap();
    let explain = |sql: String| {
        let ctx = ctx.clone();
        async move {
            // planned as the shell plans a statement that reads live tables
            let (mut state, logical) = ctx.sql(&sql).await.unwrap().into_parts();
            state.config_mut().options_mut().execution.target_partitions = 1;
            state.config_mut().options_mut().set("datafusion.execution.batch_size", "1").unwrap();
            let batches = datafusion::dataframe::DataFrame::new(state, logical).collect().await.unwrap();
            datafusion::arrow::util::pretty::pretty_format_batches(&batches).unwrap().to_string()
        }
    };
    let plan = explain(format!("EXPLAIN {JOIN} WHERE e.ret = 0")).await;
    assert!(
        plan.contains(
            "IntervalJoinExec: join_type=Inner, on=[(pid@1, pid@1)], bound=right.ts - left.ts in [0s, 5s], \
             filter=ts@1 >= ts@0 AND ts@1 <= ts@0 + IntervalMonthDayNano { months: 0, days: 0, nanoseconds: \
             5000000000 }, watermarks=heartbeats, held_rows=0"
        ),
        "{plan}"
    );
    assert!(!plan.contains("SymmetricHashJoinExec"), "{plan}");
    // strict bounds given the other way round, and a left join
    let plan = explain(
        "EXPLAIN SELECT * FROM live.connects c LEFT JOIN live.execs e ON c.pid = e.pid \
         AND e.ts > c.ts - INTERVAL '1 second' AND e.ts < c.ts + INTERVAL '2 seconds'"
            .to_string(),
    )
    .await;
    assert!(plan.contains("IntervalJoinExec: join_type=Left") && plan.contains("in [-1s, 2s]"), "{plan}");
    // a bound on one side only keeps DataFusion's join; none at all is refused
    let plan =
        explain("EXPLAIN SELECT * FROM live.execs e JOIN live.connects c ON c.pid = e.pid AND c.ts > e.ts".to_string())
            .await;
    assert!(plan.contains("SymmetricHashJoinExec"), "{plan}");
    let sql = "SELECT e.comm FROM live.execs e JOIN live.connects c ON c.pid = e.pid";
    let plan = ctx.sql(sql).await.unwrap().create_physical_plan().await.unwrap();
    let err = sysql_engine::live_table::prepare_live(plan, ctx.task_ctx()).unwrap_err();
    assert!(err.to_string().contains("a join of two live tables needs a time bound"), "{err}");
}

/// `window_lost` says how many events of the table were lost while each
/// window was open: kernel losses counted during the second window show in
/// that window's row and in no other.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn window_lost_counts_the_events_lost_while_the_window_was_open() {
    let engine = engine();
    let session = QuerySession::new(&engine, Policy::shell(false)).unwrap();
    let sql =
        "SELECT window_start, count(*) AS n, window_lost FROM live.opens GROUP BY tumble(ts, INTERVAL '1 second')";
    let mut stream = session.run(sql).await.unwrap();
    subscribed(&engine, Table::Opens, 1).await;
    let b = base();
    let late = 200 * 1_000_000;
    for at in [500, 1500, 2500] {
        let mut ingest = engine.ingest();
        ingest.push(as_bytes(&open_at(b + at * 1_000_000, "p")));
        ingest.flush();
    }
    async fn next_row(stream: &mut sysql_engine::query::QueryStream, b: i64) -> (i64, i64, u64) {
        let batch = tokio::time::timeout(Duration::from_secs(5), stream.next()).await.unwrap().unwrap().unwrap();
        let ts = batch.column(0).as_any().downcast_ref::<TimestampNanosecondArray>().unwrap().value(0);
        let n = batch.column(1).as_any().downcast_ref::<datafusion::arrow::array::Int64Array>().unwrap().value(0);
        let lost = batch.column(2).as_any().downcast_ref::<datafusion::arrow::array::UInt64Array>().unwrap().value(0);
        ((ts - b) / S, n, lost)
    }
    // the first window closes before anything is lost
    engine.live().advance(b + S + late);
    assert_eq!(next_row(&mut stream, b).await, (0, 1, 0));
    // 7 opens lost in the kernel while the second window is open
    engine.stats().set_kernel_lost([7, 0, 0, 0, 0, 0, 0, 0]);
    engine.live().advance(b + 2 * S + late);
    assert_eq!(next_row(&mut stream, b).await, (1, 1, 7));
    engine.live().advance(b + 4 * S + late);
    assert_eq!(next_row(&mut stream, b).await, (2, 1, 0));
}
