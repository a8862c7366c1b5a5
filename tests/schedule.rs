//! Saved queries on a schedule: every file in sql-examples/ parses and plans
//! (live ones without a capture), history queries run on their schedule
//! (tokio's paused clock, no real sleeping) and emit differences or
//! snapshots, live queries stream into a sink, a bad file fails alone and a
//! reload applies changes. The last test runs the `sysql schedule` binary
//! over the real capture, so it needs root.

mod common;

use common::TempDir;
use datafusion::arrow::util::display::{ArrayFormatter, FormatOptions};
use std::path::{Path, PathBuf};
use std::sync::atomic::Ordering::Relaxed;
use std::sync::Arc;
use std::time::Duration;
use sysql::schedule::library::{self, Results, Schedule};
use sysql::schedule::runner::{self, Job, Plan, QueryStats, Scheduler, Settings};
use sysql::schedule::sink::{Action, Actions, Output, SinkQueue, SinkReceiver, SinkSpec};
use sysql_engine::query::{Policy, QuerySession};
use sysql_engine::{Engine, EngineConfig};
use sysql_events::*;

const S: i64 = 1_000_000_000;

fn now_ns() -> i64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_nanos() as i64
}

/// An engine whose clock is UTC (offset 0): an event's `ts_boot_ns` is its time.
fn engine() -> Engine {
    Engine::new(EngineConfig { lateness: Duration::from_millis(200), ..EngineConfig::default() })
}

fn header(kind: u32, ts: i64, pid: u32, comm: &str, ret: i64) -> Header {
    let mut h: Header = zeroed();
    h.kind = kind;
    h.ts_boot_ns = ts as u64;
    h.pid = pid;
    h.tid = pid;
    h.uid = 1000;
    h.ret = ret;
    h.comm[..comm.len()].copy_from_slice(comm.as_bytes());
    h
}

fn open(ts: i64, pid: u32, comm: &str, path: &str, ret: i64) -> OpenEvent {
    let mut e: OpenEvent = zeroed();
    e.h = header(KIND_OPEN, ts, pid, comm, ret);
    e.path[..path.len()].copy_from_slice(path.as_bytes());
    e.path_len = path.len() as u32;
    e
}

fn connect(ts: i64, pid: u32, comm: &str) -> ConnectEvent {
    let mut e: ConnectEvent = zeroed();
    e.h = header(KIND_CONNECT, ts, pid, comm, 0);
    (e.sk_family, e.sk_type, e.sk_protocol, e.addrlen) = (2, 1, 6, 16);
    e.addr[..8].copy_from_slice(&[2, 0, 1, 187, 93, 184, 216, 34]);
    e
}

fn exec(ts: i64, pid: u32, comm: &str) -> ExecEvent {
    let mut e: ExecEvent = zeroed();
    e.h = header(KIND_EXEC, ts, pid, comm, 0);
    e.filename[..13].copy_from_slice(b"/usr/bin/curl");
    e.filename_len = 13;
    e.argv[..5].copy_from_slice(b"curl\0");
    (e.argv_len, e.argc) = (5, 1);
    e
}

fn push<T: Pod>(engine: &Engine, events: &[T]) {
    let mut ingest = engine.ingest();
    for e in events {
        ingest.push(as_bytes(e));
    }
    ingest.flush();
}

/// Renders an output's rows as `<action> v1|v2|...`.
fn rows(out: &Output) -> Vec<String> {
    let opts = FormatOptions::default().with_null("NULL");
    let b = &out.batch;
    let f: Vec<_> = b.columns().iter().map(|c| ArrayFormatter::try_new(c.as_ref(), &opts).unwrap()).collect();
    (0..b.num_rows())
        .map(|r| {
            let action = match &out.actions {
                Actions::All(a) => *a,
                Actions::PerRow(v) => v[r],
            };
            let values: Vec<String> = f.iter().map(|x| x.value(r).to_string()).collect();
            format!("{} {}", action.as_str(), values.join("|"))
        })
        .collect()
}

fn drain(rx: &mut SinkReceiver) -> Vec<String> {
    let mut all = Vec::new();
    while let Some(out) = rx.try_recv() {
        rx.done(&out);
        all.extend(rows(&out));
    }
    all
}

/// A session as `sysql schedule` gives each saved query.
fn session(engine: &Engine) -> QuerySession {
    QuerySession::new(engine, Policy::default()).unwrap()
}

fn job(engine: &Engine, sql: &str, queue: SinkQueue) -> (Job, Arc<QueryStats>) {
    let stats = Arc::new(QueryStats::default());
    let job = Job { session: session(engine), name: "q".into(), sql: sql.into(), queue, stats: stats.clone() };
    (job, stats)
}

/// Waits until `table` has `n` live subscribers.
async fn subscribed(engine: &Engine, table: Table, n: usize) {
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    while engine.live().subscribers(table) < n {
        assert!(std::time::Instant::now() < deadline, "no live subscription to {}", table.name());
        tokio::task::yield_now().await;
    }
}

fn examples() -> Vec<PathBuf> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../sql-examples");
    library::files(&dir).unwrap()
}

#[tokio::test]
async fn every_saved_query_parses_and_plans() {
    let engine = engine();
    let files = examples();
    assert!(files.len() >= 12, "sql-examples/ lost files: {files:?}");
    let mut live = 0;
    for file in files {
        let text = std::fs::read_to_string(&file).unwrap();
        let query = library::parse(&file, &text).unwrap_or_else(|e| panic!("{}: {e}", file.display()));
        let plan = runner::check(&session(&engine), &query).await.unwrap_or_else(|e| panic!("{}: {e}", file.display()));
        match (query.schedule, plan) {
            (Schedule::Every(_), Plan::History { .. }) => {}
            (Schedule::Live, Plan::Live) => live += 1,
            (schedule, plan) => panic!("{}: {schedule} planned as {plan:?}", file.display()),
        }
    }
    assert!(live >= 2, "the library has live queries");
    // Names are unique across the library.
    let library = library::load(&[Path::new(env!("CARGO_MANIFEST_DIR")).join("../../sql-examples")]);
    assert!(library.errors.is_empty(), "{:?}", library.errors);
}

#[tokio::test(start_paused = true)]
async fn history_queries_run_on_schedule_and_emit_differences() {
    let engine = engine();
    let t = now_ns() - 60 * S;
    push(&engine, &[open(t, 1, "cat", "/a", 3), open(t, 2, "ls", "/b", 3)]);
    let (queue, mut rx) = SinkQueue::new(1000, usize::MAX);
    let sql = "SELECT comm, count(*) AS n FROM opens GROUP BY comm ORDER BY comm";
    let (job, stats) = job(&engine, sql, queue);
    let task = tokio::spawn(runner::run_history(job, Duration::from_secs(60), Duration::from_secs(30), Results::Diff));

    tokio::time::sleep(Duration::from_secs(29)).await;
    assert_eq!(drain(&mut rx), Vec::<String>::new(), "nothing before the first run");
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert_eq!(drain(&mut rx), ["added cat|1", "added ls|1"], "the first run adds every row");

    push(&engine, &[open(t + S, 3, "cat", "/c", 3), open(t + S, 4, "vim", "/d", 3)]);
    tokio::time::sleep(Duration::from_secs(59)).await;
    assert_eq!(drain(&mut rx), Vec::<String>::new(), "the next run is a minute later");
    tokio::time::sleep(Duration::from_secs(1)).await;
    assert_eq!(drain(&mut rx), ["removed cat|1", "added cat|2", "added vim|1"]);

    tokio::time::sleep(Duration::from_secs(60)).await;
    assert_eq!(drain(&mut rx), Vec::<String>::new(), "no change, no rows");
    assert_eq!(stats.runs.load(Relaxed), 3);
    assert_eq!(stats.rows.load(Relaxed), 5);
    task.abort();
}

#[tokio::test(start_paused = true)]
async fn snapshots_and_diffs_a_full_sink_dropped_come_again() {
    let engine = engine();
    let t = now_ns() - 60 * S;
    push(&engine, &[open(t, 1, "cat", "/a", 3)]);
    let (queue, mut rx) = SinkQueue::new(1, usize::MAX);
    let (job1, _) = job(&engine, "SELECT comm FROM opens ORDER BY comm", queue.clone());
    let snapshot = tokio::spawn(runner::run_history(job1, Duration::from_secs(10), Duration::ZERO, Results::Snapshot));
    tokio::time::sleep(Duration::from_millis(1)).await;
    assert_eq!(drain(&mut rx), ["snapshot cat"]);
    snapshot.abort();

    // The queue holds one row, unread: the diff's two rows do not fit.
    let (job2, stats) = job(&engine, "SELECT comm, pid FROM opens ORDER BY pid", queue.clone());
    let filler = Output {
        query: "other".into(),
        time_ns: 0,
        actions: Actions::All(Action::Added),
        batch: datafusion::arrow::array::RecordBatch::try_from_iter([(
            "x",
            Arc::new(datafusion::arrow::array::Int64Array::from(vec![1])) as _,
        )])
        .unwrap(),
    };
    assert!(queue.send(filler));
    push(&engine, &[open(t, 2, "ls", "/b", 3)]);
    let diff = tokio::spawn(runner::run_history(job2, Duration::from_secs(10), Duration::ZERO, Results::Diff));
    tokio::time::sleep(Duration::from_millis(1)).await;
    assert_eq!(stats.dropped.load(Relaxed), 2);
    assert_eq!(drain(&mut rx), ["added 1"], "only the filler got through");
    assert_eq!(rx.take_dropped().into_iter().collect::<Vec<_>>(), vec![("q".into(), 2)]);
    // The next run reports what was dropped, folded into its own changes.
    push(&engine, &[open(t, 3, "vim", "/c", 3)]);
    tokio::time::sleep(Duration::from_secs(10)).await;
    assert_eq!(drain(&mut rx), ["added cat|1", "added ls|2", "added vim|3"]);
    diff.abort();
}

#[tokio::test]
async fn live_queries_stream_rows_and_windows() {
    let engine = engine();
    let check = |sql: &str| {
        let q = library::parse(Path::new("t.sql"), &format!("-- name: q\n-- description: d\n-- schedule: live\n{sql}"));
        (q.unwrap(), session(&engine))
    };
    let (queue, mut rx) = SinkQueue::new(10_000, usize::MAX);

    let (stream, ctx) = check("SELECT comm, path FROM live.opens WHERE ret < 0");
    assert!(matches!(runner::check(&ctx, &stream).await.unwrap(), Plan::Live));
    let (job1, stats1) = job(&engine, &stream.sql, queue.clone());
    let t1 = tokio::spawn(runner::run_live(job1));

    let (windowed, ctx) = check(
        "SELECT window_start, comm, count(*) AS n FROM live.opens GROUP BY tumble(ts, INTERVAL '1 second'), comm",
    );
    assert!(matches!(runner::check(&ctx, &windowed).await.unwrap(), Plan::Live));
    let (job2, _) = job(&engine, &windowed.sql, queue.clone());
    let t2 = tokio::spawn(runner::run_live(job2));
    // The library's own live join, from its file.
    let file = examples().into_iter().find(|p| p.ends_with("exec-then-connect.sql")).unwrap();
    let join = library::parse(&file, &std::fs::read_to_string(&file).unwrap()).unwrap();
    assert!(matches!(runner::check(&session(&engine), &join).await.unwrap(), Plan::Live));
    let (queue3, mut rx3) = SinkQueue::new(10_000, usize::MAX);
    let (job3, _) = job(&engine, &join.sql, queue3);
    let t3 = tokio::spawn(runner::run_live(job3));
    // the stream, the window and both sides of the join are listening
    subscribed(&engine, Table::Opens, 2).await;
    subscribed(&engine, Table::Execs, 1).await;
    subscribed(&engine, Table::Connects, 1).await;

    let b = (now_ns() / S + 2) * S;
    push(&engine, &[open(b, 1, "cat", "/a", 3), open(b + S / 2, 2, "cat", "/nope", -2), open(b + S, 3, "ls", "/b", 3)]);
    engine.live().advance(b + 3 * S);
    let mut got = Vec::new();
    while let Ok(Some(out)) = tokio::time::timeout(Duration::from_millis(500), rx.recv()).await {
        rx.done(&out);
        got.extend(rows(&out));
    }
    got.sort();
    let second = |s: i64| {
        let opts = FormatOptions::default();
        let a = datafusion::arrow::array::TimestampNanosecondArray::from(vec![b + s * S]).with_timezone("UTC");
        let text = ArrayFormatter::try_new(&a, &opts).unwrap().value(0).to_string();
        text
    };
    assert_eq!(
        got,
        [format!("added {}|cat|2", second(0)), format!("added {}|ls|1", second(1)), "added cat|/nope".to_string()]
    );
    assert_eq!(stats1.rows.load(Relaxed), 1);
    t1.abort();
    t2.abort();

    // An exec, its connect a second later, and a later exec and connect
    // that do not match it; heartbeats move the join along.
    // (after the watermark the windows above moved)
    let b = b + 10 * S;
    push(&engine, &[exec(b, 10, "curl"), exec(b + 3 * S, 11, "wget")]);
    push(&engine, &[connect(b + S, 10, "curl"), connect(b + 4 * S, 12, "nc")]);
    let mut got = Vec::new();
    for i in 0..20 {
        engine.live().advance(b + (i + 2) * S);
        if let Ok(Some(out)) = tokio::time::timeout(Duration::from_millis(50), rx3.recv()).await {
            rx3.done(&out);
            got.extend(rows(&out));
        }
    }
    assert_eq!(got.len(), 1, "{got:?}");
    assert!(got[0].contains("|10|1000|curl|curl|") && got[0].ends_with("|tcp|93.184.216.34|443|NULL"), "{got:?}");
    t3.abort();
}

fn write(dir: &Path, file: &str, name: &str, schedule: &str, extra: &str, sql: &str) {
    let text = format!("-- name: {name}\n-- description: a test\n-- schedule: {schedule}\n{extra}{sql}\n");
    std::fs::write(dir.join(file), text).unwrap();
}

/// Reads the NDJSON lines of a file until at least `n` are there (the sink's
/// thread writes them).
async fn lines(path: &Path, n: usize) -> Vec<String> {
    for _ in 0..100 {
        let text = std::fs::read_to_string(path).unwrap_or_default();
        if text.lines().count() >= n {
            return text.lines().map(str::to_string).collect();
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    panic!("{} has fewer than {n} lines", path.display());
}

#[tokio::test]
async fn a_bad_file_fails_alone_and_a_reload_applies_changes() {
    let engine = engine();
    push(&engine, &[open(now_ns() - S, 1, "cat", "/etc/shadow", 3)]);
    let dir = TempDir::new("schedule");
    let out = dir.join("out");
    std::fs::create_dir(&out).unwrap();
    write(dir.path(), "good.sql", "good", "every 1h", "", "SELECT comm, path FROM opens");
    write(dir.path(), "bad.sql", "bad", "every 1h", "", "SELECT nope FROM opens");
    write(dir.path(), "notlive.sql", "notlive", "live", "", "SELECT comm FROM opens");
    write(dir.path(), "endless.sql", "endless", "every 1m", "", "SELECT comm FROM live.opens");
    write(dir.path(), "nosink.sql", "nosink", "every 1m", "-- sink: file:/nonexistent/x.ndjson\n", "SELECT 1");
    let shared = dir.join("shared.csv");
    let csv_sink = format!("-- sink: file:{}\n", shared.display());
    write(dir.path(), "csv1.sql", "csv1", "every 1h", &csv_sink, "SELECT 1 AS a");
    write(dir.path(), "csv2.sql", "csv2", "every 1h", &csv_sink, "SELECT 2 AS b");

    let sessions: runner::Sessions = {
        let engine = engine.clone();
        Arc::new(move || QuerySession::new(&engine, Policy::default()))
    };
    let settings = Settings {
        sink: format!("file:{}/{{name}}.ndjson", out.display()).parse::<SinkSpec>().unwrap(),
        results: Results::Diff,
        first_run: Some(Duration::ZERO),
        queue_rows: 1000,
        keep_latest: false,
    };
    let mut scheduler = Scheduler::new(sessions, settings, Arc::new(tokio::sync::Notify::new()));
    let mut errors = scheduler.apply(&library::load(&[dir.path().to_path_buf()])).await;
    errors.sort();
    let expected = [
        ("bad.sql", "No field named nope"),
        ("csv2.sql", "already holds the CSV results of csv1"),
        ("endless.sql", "it reads a live table, which never ends"),
        ("nosink.sql", "cannot open the sink /nonexistent/x.ndjson: No such file or directory"),
        ("notlive.sql", "'-- schedule: live', but it reads no live table"),
    ];
    assert_eq!(errors.len(), expected.len(), "{errors:#?}");
    for (error, (file, needle)) in errors.iter().zip(expected) {
        assert!(error.contains(file) && error.contains(needle), "{error}");
        assert!(!error.contains('\n'));
    }
    let names = |s: &Scheduler| s.queries().map(|(q, _)| q.name.clone()).collect::<Vec<_>>();
    assert_eq!(names(&scheduler), ["csv1", "good"]);

    let good = lines(&out.join("good.ndjson"), 1).await;
    assert!(good[0].starts_with("{\"name\":\"good\",\"time\":\""), "{}", good[0]);
    assert!(good[0].ends_with("\"action\":\"added\",\"columns\":{\"comm\":\"cat\",\"path\":\"/etc/shadow\"}}"));
    assert_eq!(lines(&shared, 2).await[0], "name,time,action,a");

    // Fix one file, drop another, leave the rest: a reload applies just that.
    write(dir.path(), "bad.sql", "bad", "every 1h", "-- results: snapshot\n", "SELECT 'fixed' AS nope");
    std::fs::remove_file(dir.join("good.sql")).unwrap();
    let errors = scheduler.apply(&library::load(&[dir.path().to_path_buf()])).await;
    assert_eq!(errors.len(), 4, "{errors:#?}");
    assert_eq!(names(&scheduler), ["bad", "csv1"]);
    let bad = lines(&out.join("bad.ndjson"), 1).await;
    assert!(bad[0].contains("\"action\":\"snapshot\",\"columns\":{\"nope\":\"fixed\"}"), "{}", bad[0]);

    let stats = scheduler.shutdown().await;
    assert!(stats.iter().all(|(_, s)| s.runs.load(Relaxed) == 1 && s.errors.load(Relaxed) == 0));
}

/// `sysql schedule` as users run it, over the real capture (root): results
/// on stdout, a bad file reported alone, SIGHUP reloading.
#[test]
fn the_binary_runs_a_library_and_reloads_on_sighup() {
    use std::io::{BufRead, BufReader};
    use std::process::{Command, Stdio};
    let dir = TempDir::new("schedule-bin");
    let marker = dir.join("marker-file");
    std::fs::write(&marker, "x").unwrap();
    let sql = format!("SELECT comm, path FROM opens WHERE path = '{}'", marker.display());
    write(dir.path(), "a.sql", "marker-opens", "every 1s", "", &sql);
    write(dir.path(), "b.sql", "broken", "every 1s", "", "SELEC 1");
    let mut child = Command::new(env!("CARGO_BIN_EXE_sysql"))
        .args(["schedule", "--for", "30s", "--first-run", "1s"])
        .arg(dir.path())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut err = BufReader::new(child.stderr.take().unwrap())
        .lines()
        .filter(|l| !l.as_ref().unwrap().starts_with("sysql: capturing since "));
    let mut out = BufReader::new(child.stdout.take().unwrap()).lines();
    let first = err.next().unwrap().unwrap();
    assert!(first.starts_with("sysql: schedule: ") && first.contains("b.sql: syntax error"), "{first}");
    let second = err.next().unwrap().unwrap();
    assert_eq!(second, "sysql: schedule: 1 saved queries running (0 live); SIGHUP reloads the files, Ctrl-C stops");

    std::fs::read(&marker).unwrap();
    let line = out.next().unwrap().unwrap();
    assert!(line.starts_with("{\"name\":\"marker-opens\",\"time\":\""), "{line}");
    let path = format!("\"path\":\"{}\"}}}}", marker.display());
    assert!(line.contains("\"action\":\"added\",\"columns\":{\"comm\":") && line.ends_with(&path), "{line}");

    write(dir.path(), "b.sql", "fixed", "every 1s", "-- results: snapshot\n", "SELECT 42 AS answer");
    let pid = nix::unistd::Pid::from_raw(child.id() as i32);
    nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGHUP).unwrap();
    assert_eq!(err.next().unwrap().unwrap(), "sysql: schedule: reloaded: 2 saved queries running (0 live)");
    let fixed = out.find(|l| l.as_ref().unwrap().contains("\"name\":\"fixed\"")).unwrap().unwrap();
    assert!(fixed.ends_with("\"action\":\"snapshot\",\"columns\":{\"answer\":42}}"), "{fixed}");

    nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGTERM).unwrap();
    let status = child.wait().unwrap();
    assert_eq!(status.code(), Some(0));
    let summary: Vec<String> = err.map(Result::unwrap).collect();
    assert!(summary.iter().any(|l| l.starts_with("sysql: schedule: marker-opens: ")), "{summary:?}");
}

/// A saved query is held to the same policy as the shell: one that would
/// write a file is refused at load time with one line, nothing runs, and
/// the exit status is 1.
#[test]
fn the_binary_refuses_a_saved_query_that_writes_a_file() {
    use std::process::Command;
    let dir = TempDir::new("schedule-copy");
    let target = dir.join("pwned.csv");
    let sql = format!("COPY (SELECT 'x') TO '{}' STORED AS CSV", target.display());
    write(dir.path(), "copy.sql", "copy", "every 1s", "", &sql);
    let out = Command::new(env!("CARGO_BIN_EXE_sysql"))
        .args(["schedule", "--for", "5s", "--first-run", "1s"])
        .arg(dir.path())
        .output()
        .unwrap();
    let err: Vec<String> = String::from_utf8_lossy(&out.stderr)
        .lines()
        .filter(|l| !l.starts_with("sysql: capturing since "))
        .map(str::to_string)
        .collect();
    assert_eq!(out.status.code(), Some(1), "{err:?}");
    assert_eq!(err.len(), 1, "{err:?}");
    assert!(
        err[0].starts_with("sysql: schedule: ")
            && err[0].ends_with("copy.sql: COPY TO reads or writes files, which sysql refuses by default since it runs as root; start sysql with --allow-file-access to permit it"),
        "{err:?}"
    );
    assert!(!target.exists(), "the file was written");
}
