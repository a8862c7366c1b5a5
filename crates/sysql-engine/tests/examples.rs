//! Every saved query in sql-examples/ has a name and description header, and
//! plans and runs over a synthetic capture that holds an answer for each. A
//! new file is covered without editing this test.

use datafusion::arrow::util::pretty::pretty_format_batches;
use std::path::Path;
use sysql_engine::{Engine, EngineConfig};
use sysql_events::*;

fn synthetic_engine() -> Engine {
    let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_nanos() as i64;
    // boot time 100 s ago; events at boot + 1..60 s
    let engine = Engine::new(EngineConfig { clock_offset_ns: now - 100_000_000_000, ..EngineConfig::default() });
    let mut ingest = engine.ingest();
    let header = |kind, i: u64, comm: &str, ret: i64| {
        let mut h: Header = zeroed();
        h.kind = kind;
        h.ts_boot_ns = (i + 1) * 1_000_000_000;
        h.pid = 100 + i as u32;
        h.tid = h.pid;
        h.uid = (i % 2) as u32 * 1000;
        h.ret = ret;
        h.comm[..comm.len()].copy_from_slice(comm.as_bytes());
        h
    };
    let paths = ["/etc/shadow", "/etc/passwd", "/root/.ssh/id_ed25519", "/nope", "/etc/sudoers"];
    for (i, p) in paths.iter().enumerate() {
        let mut e: OpenEvent = zeroed();
        e.h = header(KIND_OPEN, i as u64, if i % 2 == 0 { "cat" } else { "sshd" }, if *p == "/nope" { -2 } else { 3 });
        e.path[..p.len()].copy_from_slice(p.as_bytes());
        e.path_len = p.len() as u32;
        ingest.push(as_bytes(&e));
    }
    for i in 0..3u64 {
        let mut e: ConnectEvent = zeroed();
        e.h = header(KIND_CONNECT, 10 + i, "curl", 0);
        e.sk_family = 2;
        e.sk_type = 1;
        e.sk_protocol = 6;
        e.addrlen = 16;
        e.addr[..8].copy_from_slice(&[2, 0, 1, 187, 10, 0, 0, 1]);
        ingest.push(as_bytes(&e));
    }
    for (i, ret) in [0i64, -2].iter().enumerate() {
        let mut e: ExecEvent = zeroed();
        e.h = header(KIND_EXEC, 20 + i as u64, "bash", *ret);
        e.filename[..7].copy_from_slice(b"/bin/ls");
        e.filename_len = 7;
        e.argv[..6].copy_from_slice(b"ls\0-l\0");
        e.argv_len = 6;
        e.argc = 2;
        ingest.push(as_bytes(&e));
    }
    ingest.flush();
    engine
}

#[test]
fn every_saved_query_plans_runs_and_answers() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../sql-examples");
    let mut files: Vec<_> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "sql"))
        .collect();
    files.sort();
    assert!(files.len() >= 3, "sql-examples/ is nearly empty");
    let engine = synthetic_engine();
    let rt = tokio::runtime::Builder::new_current_thread().build().unwrap();
    for file in files {
        let sql = std::fs::read_to_string(&file).unwrap();
        let header = |key: &str| sql.lines().find_map(|l| l.strip_prefix(&format!("-- {key}:")).map(str::trim));
        // Live queries never end: tests/schedule.rs plans them.
        if header("schedule").is_some_and(|s| s.eq_ignore_ascii_case("live")) {
            continue;
        }
        assert!(header("name").is_some_and(|n| !n.is_empty()), "{}: no '-- name:' line", file.display());
        assert!(header("description").is_some_and(|n| !n.is_empty()), "{}: no '-- description:' line", file.display());
        let ctx = engine.session().unwrap();
        let batches = rt
            .block_on(async { ctx.sql(&sql).await?.collect().await })
            .unwrap_or_else(|e| panic!("{}: {e}", file.display()));
        let rows: usize = batches.iter().map(|b| b.num_rows()).sum();
        assert!(
            rows > 0,
            "{} answered nothing over the synthetic capture:\n{}",
            file.display(),
            pretty_format_batches(&batches).unwrap()
        );
    }
}
