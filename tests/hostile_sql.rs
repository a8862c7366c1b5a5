//! Hostile SQL: well over a thousand malformed, huge, deeply nested or
//! pathological statements through the same statement runner the shell and
//! `-c` use. None may panic or hang the process; each failure is one line;
//! a runaway query is cancelled by a deadline and memory per query is capped.

use std::time::Duration;
use sysql::backend::Backend;
use sysql::exec::{run_sql, ExecError, RunOptions};
use sysql::print::Printer;
use sysql::signals::{Sig, Signals};
use sysql_engine::query::{ErrorKind, Policy, QuerySession};
use sysql_engine::{Engine, EngineConfig};

fn backend(engine: &Engine) -> Backend {
    Backend::Embedded(QuerySession::new(engine, Policy::shell(false)).unwrap())
}

/// [`run_limited`] on a runtime worker (deep trees need their big stack).
fn run_on(rt: &tokio::runtime::Runtime, engine: &Engine, sql: &str, limit: Duration) -> Result<usize, ExecError> {
    let (engine, sql) = (engine.clone(), sql.to_string());
    rt.block_on(async move { tokio::spawn(async move { run_limited(&engine, &sql, limit).await }).await.unwrap() })
}

/// Runs text as the shell would, with a Ctrl-C after `limit`.
async fn run_limited(engine: &Engine, sql: &str, limit: Duration) -> Result<usize, ExecError> {
    let backend = backend(engine);
    let signals = Signals::none();
    let ctrl_c = {
        let signals = signals.clone();
        tokio::spawn(async move {
            tokio::time::sleep(limit).await;
            signals.raise(Sig::Interrupt);
        })
    };
    let mut out = Vec::new();
    let r = run_sql(&backend, sql, &Printer::default(), &mut out, &RunOptions::interactive(&signals)).await;
    ctrl_c.abort();
    r
}

/// A deterministic generator (no rand dependency).
struct Lcg(u64);

impl Lcg {
    fn next(&mut self) -> usize {
        self.0 = self.0.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
        (self.0 >> 33) as usize
    }
    fn pick<'a>(&mut self, v: &[&'a str]) -> &'a str {
        v[self.next() % v.len()]
    }
}

fn corpus() -> Vec<String> {
    let mut c: Vec<String> = Vec::new();
    // token soup: random sequences of SQL-ish tokens
    let tokens = [
        "SELECT",
        "FROM",
        "WHERE",
        "GROUP",
        "BY",
        "ORDER",
        "HAVING",
        "JOIN",
        "ON",
        "(",
        ")",
        ",",
        "*",
        "opens",
        "live.opens",
        "execs",
        "sysql_stats",
        "comm",
        "path",
        "ts",
        "'x'",
        "'",
        "\"",
        "1",
        "-1",
        "1e309",
        "NULL",
        "AND",
        "OR",
        "NOT",
        "=",
        "<",
        "||",
        "--",
        "/*",
        "*/",
        ";",
        "CASE",
        "WHEN",
        "END",
        "INTERVAL",
        "'1 hour'",
        "now()",
        "count(",
        "LIMIT",
        "UNION",
        "WITH",
        "AS",
        "\u{0}",
        "é",
        "🔥",
        "$1",
        "?",
        "::",
        "[",
        "]",
        "{",
    ];
    let mut rng = Lcg(42);
    for _ in 0..800 {
        let n = 1 + rng.next() % 30;
        let s: Vec<&str> = (0..n).map(|_| rng.pick(&tokens)).collect();
        c.push(s.join(" "));
    }
    // almost-valid statements with one thing wrong
    let columns = ["comm", "path", "nope", "ts", "pid + 'a'", "count(*)", "sum(path)", "avg(ts)"];
    let tables = ["opens", "connects", "execs", "nowhere", "live.nowhere", "sysql_stats"];
    for _ in 0..300 {
        let col = rng.pick(&columns);
        let table = rng.pick(&tables);
        c.push(format!("SELECT {col} FROM {table} WHERE {} GROUP BY {col}", rng.pick(&columns)));
    }
    // deep nesting
    for depth in [10, 100, 1_000, 10_000, 100_000] {
        c.push(format!("SELECT {}1{}", "(".repeat(depth), ")".repeat(depth)));
        c.push(format!("SELECT {}1", "-".repeat(depth)));
        c.push(format!("SELECT 1 WHERE {}", vec!["1=1"; depth.min(20_000)].join(" AND ")));
        c.push(format!("SELECT {}", vec!["upper("; depth.min(5_000)].join("") + "'a'" + &")".repeat(depth.min(5_000))));
    }
    // huge literals and lists
    c.push(format!("SELECT '{}'", "a".repeat(4 << 20))); // over the 1 MiB text limit
    c.push(format!("SELECT length('{}')", "a".repeat(500 << 10)));
    c.push(format!("SELECT 1 WHERE {}", vec!["1=1"; 120_000].join(" AND "))); // ~1 MiB of one chain
    c.push(format!("SELECT {}", "9".repeat(10_000)));
    c.push(format!(
        "SELECT * FROM opens WHERE pid IN ({})",
        (0..2_000).map(|i| i.to_string()).collect::<Vec<_>>().join(",")
    ));
    c.push(format!("SELECT {}", (0..500).map(|i| format!("{i} AS c{i}")).collect::<Vec<_>>().join(", ")));
    // errors at run time
    c.push("SELECT 1/0".into());
    c.push("SELECT CAST('x' AS INT)".into());
    c.push("SELECT regexp_like(repeat('a', 10000), '(a+)+$')".into());
    c.push("SELECT length(repeat('x', 10000000))".into());
    c.push("SELECT to_timestamp('not a time')".into());
    c.push("SELECT * FROM generate_series(1, 5) AS t(x) WHERE x = 'a'".into());
    c
}

#[test]
fn a_thousand_hostile_statements_never_kill_the_runner() {
    let engine = Engine::new(EngineConfig { query_memory_bytes: 256 << 20, ..EngineConfig::default() });
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .thread_stack_size(sysql::exec::STACK_BYTES)
        .build()
        .unwrap();
    let corpus = corpus();
    assert!(corpus.len() >= 1000);
    let (mut ok, mut failed, mut cancelled) = (0, 0, 0);
    for sql in &corpus {
        // a statement may run for 5 s at most: then a Ctrl-C stops it
        let (sql2, engine2) = (sql.clone(), engine.clone());
        let outcome = rt.block_on(async move {
            let task = tokio::spawn(async move { run_limited(&engine2, &sql2, Duration::from_secs(5)).await });
            tokio::time::timeout(Duration::from_secs(60), task).await
        });
        let short: String = sql.chars().take(80).collect();
        let result =
            outcome.unwrap_or_else(|_| panic!("hung: {short}")).unwrap_or_else(|e| panic!("panicked on {short}: {e}"));
        match result {
            Ok(_) => ok += 1,
            Err(ExecError::Sql(e)) => {
                let msg = &e.message;
                assert!(!msg.contains('\n') && !msg.is_empty(), "not one line for {short}: {msg}");
                failed += 1;
            }
            // a runaway query stopped at its deadline, as Ctrl-C would
            Err(ExecError::Cancelled) => cancelled += 1,
            Err(other) => panic!("{short}: unexpected {other}"),
        }
    }
    println!(
        "{} statements: {ok} ran, {failed} refused with one line, {cancelled} stopped at their deadline",
        corpus.len()
    );
    assert!(failed > 900);
}

/// The limits say which one was hit: without them these statements would
/// plan for minutes or hold megabytes of text.
#[test]
fn text_and_depth_limits_refuse_with_their_own_message() {
    let engine = Engine::new(EngineConfig::default());
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .thread_stack_size(sysql::exec::STACK_BYTES)
        .build()
        .unwrap();
    let cases = [
        (
            format!("SELECT '{}'", "a".repeat(2 << 20)),
            "statement text is 2097161 bytes; sysql accepts at most 1024 KiB at a time",
        ),
        (
            format!("SELECT 1 WHERE {}", vec!["1=1"; 5_000].join(" AND ")),
            "expression nested more than 1000 deep; sysql refuses it rather than spend minutes planning it",
        ),
        (format!("SELECT 1 WHERE {}", vec!["pid = 1"; 1_500].join(" OR ")), "expression nested more than 1000 deep"),
    ];
    for (sql, want) in cases {
        let r = run_on(&rt, &engine, &sql, Duration::from_secs(30));
        match r {
            Err(ExecError::Sql(e)) => {
                assert!(e.message.starts_with(want), "{}: {}", &sql[..40], e.message);
                assert_eq!(e.kind, ErrorKind::Privilege);
            }
            other => panic!("{}: expected a refusal, got {other:?}", &sql[..40]),
        }
    }
    // just under the limits, the same shapes run
    let r = run_on(&rt, &engine, &format!("SELECT length('{}')", "a".repeat(1000 << 10)), Duration::from_secs(30));
    assert_eq!(r.unwrap(), 1);
    let r =
        run_on(&rt, &engine, &format!("SELECT 1 WHERE {}", vec!["1=1"; 900].join(" AND ")), Duration::from_secs(30));
    assert_eq!(r.unwrap(), 1);
}

#[test]
fn a_query_past_its_memory_cap_fails_alone() {
    let engine = Engine::new(EngineConfig { query_memory_bytes: 8 << 20, ..EngineConfig::default() });
    let rt = tokio::runtime::Builder::new_multi_thread().enable_all().build().unwrap();
    let sql = "SELECT max(r) FROM (SELECT row_number() OVER (ORDER BY x % 1000003 DESC) AS r FROM generate_series(1, 3000000) AS t(x))";
    match rt.block_on(run_limited(&engine, sql, Duration::from_secs(60))) {
        Err(ExecError::Sql(e)) => {
            assert_eq!(e.kind, ErrorKind::Resources, "{}", e.message);
            assert!(e.message.contains("resources exhausted"), "{}", e.message);
        }
        other => panic!("expected a memory error, got {other:?}"),
    }
    // the next statement runs fine
    assert_eq!(rt.block_on(run_limited(&engine, "SELECT 1", Duration::from_secs(10))).unwrap(), 1);
}
