//! SQL golden files (`tests/slt/*.slt`, in the manner of DataFusion's
//! sqllogictest): each record is a statement and what it must give, run
//! through the one statement path over an engine fed a fixed set of
//! synthetic events. The format:
//!
//! ```text
//! # a comment
//! policy shell|server|files     (the policy of what follows; shell at start)
//!
//! statement ok
//! CREATE VIEW v AS SELECT 1
//!
//! statement error <the exact one-line message, or its start followed by ...>
//! COPY (SELECT 1) TO '/tmp/x'
//!
//! query                          (bounded: planned to end)
//! SELECT comm, count(*) FROM opens GROUP BY comm ORDER BY comm
//! ----
//! cat | 2
//! ls | 1
//!
//! query window
//! SELECT window_start, count(*) FROM live.opens GROUP BY tumble(ts, INTERVAL '1 second')
//! ----
//! +0s | 3
//! ```
//!
//! History holds, at T (ten minutes ago, a whole second): opens by `cat`
//! (pid 10, /etc/passwd ok, /etc/shadow EACCES), `ls` (pid 11, /tmp ok),
//! connects by `curl` (pid 12, tcp 93.184.216.34:443 ok, 127.0.0.1:1
//! ECONNREFUSED), an exec of `/usr/bin/curl`. A `query window` statement is
//! started, then fed live opens: `a` three times in second +0, `b` twice
//! and `a` once in +1, `b` once in +3, second +0 being a multiple of ten
//! seconds; timestamps in its rows are shown as `+Ns` from it.

use datafusion::arrow::util::display::{ArrayFormatter, FormatOptions};
use futures::StreamExt;
use std::path::Path;
use std::time::Duration;
use sysql_engine::query::{Kind, Policy, QuerySession};
use sysql_engine::{Engine, EngineConfig};
use sysql_events::*;

const S: i64 = 1_000_000_000;

fn now_ns() -> i64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_nanos() as i64
}

fn header(kind: u32, ts: i64, pid: u32, comm: &str, ret: i64) -> Header {
    let mut h: Header = zeroed();
    h.kind = kind;
    h.ts_boot_ns = ts as u64;
    h.latency_ns = 1500;
    h.pid = pid;
    h.tid = pid;
    h.ppid = 1;
    h.uid = 1000;
    h.gid = 1000;
    h.ret = ret;
    h.comm[..comm.len()].copy_from_slice(comm.as_bytes());
    h
}

fn open(ts: i64, pid: u32, comm: &str, path: &str, ret: i64) -> OpenEvent {
    let mut e: OpenEvent = zeroed();
    e.h = header(KIND_OPEN, ts, pid, comm, ret);
    e.h.syscall = SYS_OPENAT;
    e.dfd = -100;
    e.path[..path.len()].copy_from_slice(path.as_bytes());
    e.path_len = path.len() as u32;
    e
}

fn connect(ts: i64, pid: u32, ip: [u8; 4], port: u16, ret: i64) -> ConnectEvent {
    let mut e: ConnectEvent = zeroed();
    e.h = header(KIND_CONNECT, ts, pid, "curl", ret);
    e.fd = 5;
    e.addrlen = 16;
    (e.sk_family, e.sk_type, e.sk_protocol) = (2, 1, 6);
    e.addr[..2].copy_from_slice(&2u16.to_ne_bytes());
    e.addr[2..4].copy_from_slice(&port.to_be_bytes());
    e.addr[4..8].copy_from_slice(&ip);
    e
}

fn exec(ts: i64, pid: u32, filename: &str) -> ExecEvent {
    let mut e: ExecEvent = zeroed();
    e.h = header(KIND_EXEC, ts, pid, "curl", 0);
    e.filename[..filename.len()].copy_from_slice(filename.as_bytes());
    e.filename_len = filename.len() as u32;
    e.argv[..5].copy_from_slice(b"curl\0");
    (e.argv_len, e.argc) = (5, 1);
    e
}

/// An engine with the fixed history; its clock is UTC (offset 0).
fn engine() -> Engine {
    let engine = Engine::new(EngineConfig { lateness: Duration::from_millis(200), ..EngineConfig::default() });
    let t = (now_ns() / S - 600) * S;
    let mut ingest = engine.ingest();
    for record in [
        as_bytes(&open(t, 10, "cat", "/etc/passwd", 3)).to_vec(),
        as_bytes(&open(t + S, 10, "cat", "/etc/shadow", -13)).to_vec(),
        as_bytes(&open(t + 2 * S, 11, "ls", "/tmp", 3)).to_vec(),
        as_bytes(&connect(t, 12, [93, 184, 216, 34], 443, 0)).to_vec(),
        as_bytes(&connect(t + S, 12, [127, 0, 0, 1], 1, -111)).to_vec(),
        as_bytes(&exec(t, 12, "/usr/bin/curl")).to_vec(),
    ] {
        ingest.push(&record);
    }
    ingest.flush();
    engine
}

#[derive(Debug)]
enum Expect {
    Ok,
    Error(String),
    Rows(Vec<String>),
}

#[derive(Debug)]
struct Record {
    line: usize,
    sql: String,
    window: bool,
    expect: Expect,
}

/// Reads a file into its policy switches and records.
fn parse(text: &str) -> Vec<(Policy, Record)> {
    let mut out = Vec::new();
    let mut policy = Policy::shell(false);
    let lines: Vec<&str> = text.lines().collect();
    let mut i = 0;
    while i < lines.len() {
        let line = lines[i].trim_end();
        i += 1;
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        if let Some(p) = line.strip_prefix("policy ") {
            policy = match p.trim() {
                "shell" => Policy::shell(false),
                "files" => Policy::shell(true),
                "server" => Policy::default(),
                other => panic!("line {i}: unknown policy {other}"),
            };
            continue;
        }
        let start = i;
        let mut body = Vec::new();
        while i < lines.len() && !lines[i].trim().is_empty() && lines[i].trim() != "----" {
            body.push(lines[i]);
            i += 1;
        }
        let sql = body.join("\n");
        let (window, expect) = if line == "statement ok" {
            (false, Expect::Ok)
        } else if let Some(message) = line.strip_prefix("statement error ") {
            (false, Expect::Error(message.to_string()))
        } else if line == "query" || line == "query window" {
            assert_eq!(lines.get(i).map(|l| l.trim()), Some("----"), "line {start}: a query needs ----");
            i += 1;
            let mut rows = Vec::new();
            while i < lines.len() && !lines[i].trim().is_empty() {
                rows.push(lines[i].trim().to_string());
                i += 1;
            }
            (line == "query window", Expect::Rows(rows))
        } else {
            panic!("line {start}: expected statement or query, found {line}");
        };
        out.push((policy.clone(), Record { line: start, sql, window, expect }));
    }
    out
}

fn render(batches: &[datafusion::arrow::record_batch::RecordBatch], base: Option<i64>) -> Vec<String> {
    let opts = FormatOptions::default().with_null("NULL");
    let mut rows = Vec::new();
    for b in batches {
        let cols: Vec<Vec<String>> = b
            .columns()
            .iter()
            .map(|c| {
                let ts = c.as_any().downcast_ref::<datafusion::arrow::array::TimestampNanosecondArray>();
                match (ts, base) {
                    (Some(ts), Some(base)) => {
                        (0..ts.len()).map(|r| format!("{:+}s", (ts.value(r) - base).div_euclid(S))).collect()
                    }
                    _ => {
                        let f = ArrayFormatter::try_new(c.as_ref(), &opts).unwrap();
                        (0..c.len()).map(|r| f.value(r).to_string()).collect()
                    }
                }
            })
            .collect();
        for r in 0..b.num_rows() {
            rows.push(cols.iter().map(|c| c[r].as_str()).collect::<Vec<_>>().join(" | "));
        }
    }
    rows
}

/// Runs a record in `session`; the failure to report, if any.
async fn check(engine: &Engine, session: &QuerySession, r: &Record) -> Result<(), String> {
    if r.window {
        // The previous window statement's task is aborted when its stream is
        // dropped, but ends at the runtime's leisure: until it has, its
        // subscription would count as this statement's, and keep the live
        // watermark where the previous feed left it.
        let deadline = std::time::Instant::now() + Duration::from_secs(10);
        while engine.live().subscribers(Table::Opens) > 0 {
            assert!(std::time::Instant::now() < deadline, "the previous window statement never ended");
            tokio::task::yield_now().await;
        }
    }
    let result = async {
        let mut stream = session.run(&r.sql).await?;
        let mut batches = Vec::new();
        if r.window {
            if stream.kind() != Kind::Window {
                return Ok((Vec::new(), Some(0), format!("{:?}", stream.kind())));
            }
            let deadline = std::time::Instant::now() + Duration::from_secs(10);
            while engine.live().subscribers(Table::Opens) == 0 {
                assert!(std::time::Instant::now() < deadline, "the window never subscribed");
                tokio::task::yield_now().await;
            }
            // On a whole ten seconds, so that every window kind aligns the
            // same way, and a minute ahead: a window statement takes the rows
            // of its first, still open windows from history (up to now), and
            // must not find an earlier statement's feed there.
            let b = (now_ns() / (10 * S) + 7) * 10 * S;
            let mut ingest = engine.ingest();
            for (at, comm) in [(0, "a"), (100, "a"), (200, "a"), (1000, "b"), (1100, "b"), (1200, "a"), (3000, "b")] {
                ingest.push(as_bytes(&open(b + at * 1_000_000, 20, comm, "/w", 3)));
            }
            ingest.flush();
            engine.live().advance(b + 5 * S + 200_000_000);
            while let Ok(Some(batch)) = tokio::time::timeout(Duration::from_millis(500), stream.next()).await {
                batches.push(batch?);
            }
            return Ok((batches, Some(b), "Window".into()));
        }
        let kind = format!("{:?}", stream.kind());
        while let Some(batch) = stream.next().await {
            batches.push(batch?);
        }
        Ok::<_, sysql_engine::query::QueryError>((batches, None, kind))
    }
    .await;
    match (&r.expect, result) {
        (Expect::Ok, Ok(_)) => Ok(()),
        (Expect::Error(want), Err(e)) => {
            let matches = match want.strip_suffix("...") {
                Some(prefix) => e.message.starts_with(prefix),
                None => e.message == *want,
            };
            if matches {
                Ok(())
            } else {
                Err(format!("expected error\n  {want}\ngot\n  {}", e.message))
            }
        }
        (Expect::Rows(want), Ok((batches, base, kind))) => {
            if r.window && kind != "Window" {
                return Err(format!("expected a window query, planned as {kind}"));
            }
            if !r.window && kind != "Bounded" {
                return Err(format!("expected a bounded query, planned as {kind}"));
            }
            let got = render(&batches, base);
            if got == *want {
                Ok(())
            } else {
                Err(format!("expected rows\n  {}\ngot\n  {}", want.join("\n  "), got.join("\n  ")))
            }
        }
        (_, Err(e)) => Err(format!("unexpected error: {}", e.message)),
        (Expect::Error(want), Ok(_)) => Err(format!("expected error {want}, but it ran")),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn golden_files() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/slt");
    let mut files: Vec<_> = std::fs::read_dir(&dir).unwrap().map(|e| e.unwrap().path()).collect();
    files.sort();
    assert!(files.len() >= 3, "{files:?}");
    let mut failures = Vec::new();
    let mut count = 0;
    for file in files {
        let text = std::fs::read_to_string(&file).unwrap();
        // A fresh engine and session per file; records share the session
        // (views and settings carry over), a new one when the policy changes.
        let engine = engine();
        let mut current: Option<(String, QuerySession)> = None;
        for (policy, record) in parse(&text) {
            let key = format!("{policy:?}");
            if current.as_ref().is_none_or(|(k, _)| *k != key) {
                current = Some((key.clone(), QuerySession::new(&engine, policy).unwrap()));
            }
            let session = &current.as_ref().unwrap().1;
            count += 1;
            if let Err(e) = check(&engine, session, &record).await {
                failures.push(format!("{}:{}: {}\n{}", file.display(), record.line, record.sql, e));
            }
        }
    }
    assert!(failures.is_empty(), "{} of {count} records failed:\n\n{}", failures.len(), failures.join("\n\n"));
    println!("{count} golden records");
}
