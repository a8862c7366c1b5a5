//! SQL over synthetic events: records built byte for byte as the kernel
//! writes them go through the real decoder, builders and history, and the
//! queries users ask return exact rows.

use datafusion::arrow::util::display::{ArrayFormatter, FormatOptions};
use datafusion::prelude::SessionContext;
use std::time::Duration;
use sysql_engine::{Engine, EngineConfig};
use sysql_events::*;

/// 2023-11-14T22:13:20Z, as UTC nanoseconds.
const T0: i64 = 1_700_000_000_000_000_000;

fn header(kind: u32, syscall: u32, ts_s: i64, pid: u32, comm: &str, ret: i64) -> Header {
    let mut h: Header = zeroed();
    h.kind = kind;
    h.syscall = syscall;
    h.ts_boot_ns = (ts_s * 1_000_000_000) as u64;
    h.latency_ns = 1500;
    h.cgroup_id = 77;
    h.ret = ret;
    h.pid = pid;
    h.tid = pid;
    h.ppid = 1;
    h.uid = 1000;
    h.gid = 1000;
    h.comm[..comm.len()].copy_from_slice(comm.as_bytes());
    h
}

fn open(ts_s: i64, pid: u32, comm: &str, path: &str, flags: u64, ret: i64) -> OpenEvent {
    let mut e: OpenEvent = zeroed();
    e.h = header(KIND_OPEN, SYS_OPENAT, ts_s, pid, comm, ret);
    e.dfd = -100;
    e.flags = flags;
    e.path[..path.len()].copy_from_slice(path.as_bytes());
    e.path_len = path.len() as u32;
    e
}

fn connect_v4(ts_s: i64, pid: u32, comm: &str, ip: [u8; 4], port: u16, proto: u16, ret: i64) -> ConnectEvent {
    let mut e: ConnectEvent = zeroed();
    e.h = header(KIND_CONNECT, SYS_CONNECT, ts_s, pid, comm, ret);
    e.fd = 5;
    e.addrlen = 16;
    e.sk_family = 2;
    e.sk_type = if proto == 6 { 1 } else { 2 };
    e.sk_protocol = proto;
    e.addr[..2].copy_from_slice(&2u16.to_ne_bytes());
    e.addr[2..4].copy_from_slice(&port.to_be_bytes());
    e.addr[4..8].copy_from_slice(&ip);
    e
}

fn exec(ts_s: i64, pid: u32, comm: &str, filename: &str, args: &[&str], ret: i64) -> ExecEvent {
    let mut e: ExecEvent = zeroed();
    e.h = header(KIND_EXEC, SYS_EXECVE, ts_s, pid, comm, ret);
    e.dfd = -100;
    e.filename[..filename.len()].copy_from_slice(filename.as_bytes());
    e.filename_len = filename.len() as u32;
    let mut off = 0;
    for a in args {
        e.argv[off..off + a.len()].copy_from_slice(a.as_bytes());
        off += a.len() + 1;
    }
    e.argv_len = off as u32;
    e.argc = args.len() as u32;
    e
}

fn engine(offset: i64) -> Engine {
    Engine::new(EngineConfig { clock_offset_ns: offset, ..EngineConfig::default() })
}

fn rows(ctx: &SessionContext, sql: &str) -> Vec<Vec<String>> {
    let rt = tokio::runtime::Builder::new_current_thread().build().unwrap();
    let batches = rt.block_on(async { ctx.sql(sql).await?.collect().await }).unwrap_or_else(|e| panic!("{sql}: {e}"));
    let opts = FormatOptions::default().with_null("NULL");
    let mut out = Vec::new();
    for b in &batches {
        let f: Vec<_> = b.columns().iter().map(|c| ArrayFormatter::try_new(c.as_ref(), &opts).unwrap()).collect();
        for r in 0..b.num_rows() {
            out.push(f.iter().map(|x| x.value(r).to_string()).collect());
        }
    }
    out
}

fn r(v: &[&str]) -> Vec<String> {
    v.iter().map(|s| s.to_string()).collect()
}

#[test]
fn which_process_opened_etc_shadow() {
    let engine = engine(T0);
    let mut ingest = engine.ingest();
    ingest.push(as_bytes(&open(1, 100, "cat", "/etc/passwd", 0, 3)));
    ingest.push(as_bytes(&open(2, 200, "sshd", "/etc/shadow", 0o2000000, 4)));
    ingest.push(as_bytes(&open(3, 300, "evil", "/etc/shadow", 0, -13)));
    ingest.flush();
    let ctx = engine.session().unwrap();
    assert_eq!(
        rows(
            &ctx,
            "SELECT ts, pid, comm, uid, ret, errno, flags_text FROM opens WHERE path = '/etc/shadow' ORDER BY ts"
        ),
        vec![
            r(&["2023-11-14T22:13:22Z", "200", "sshd", "1000", "4", "NULL", "O_RDONLY|O_CLOEXEC"]),
            r(&["2023-11-14T22:13:23Z", "300", "evil", "1000", "-13", "EACCES", "O_RDONLY"]),
        ]
    );
}

#[test]
fn outbound_tcp_connections_in_the_past_hour_by_program() {
    // events stamped relative to now, so `now() - INTERVAL '1 hour'` applies
    let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_nanos() as i64;
    let engine = engine(now - 10_000 * 1_000_000_000);
    let mut ingest = engine.ingest();
    // 2 hours before "now": outside the window
    ingest.push(as_bytes(&connect_v4(10_000 - 7200, 1, "curl", [1, 1, 1, 1], 443, 6, 0)));
    for i in 0..3 {
        ingest.push(as_bytes(&connect_v4(10_000 - 60 + i, 2, "curl", [93, 184, 216, 34], 443, 6, -115)));
    }
    ingest.push(as_bytes(&connect_v4(10_000 - 30, 3, "wget", [10, 0, 0, 1], 80, 6, 0)));
    ingest.push(as_bytes(&connect_v4(10_000 - 20, 4, "dig", [127, 0, 0, 53], 53, 17, 0)));
    ingest.flush();
    let ctx = engine.session().unwrap();
    assert_eq!(
        rows(
            &ctx,
            "SELECT comm, count(*) FROM connects WHERE protocol = 'tcp' AND ts > now() - INTERVAL '1 hour' \
             GROUP BY comm ORDER BY 2 DESC"
        ),
        vec![r(&["curl", "3"]), r(&["wget", "1"])]
    );
    assert_eq!(
        rows(&ctx, "SELECT daddr, dport, family, sock_type, errno FROM connects WHERE pid = 2 LIMIT 1"),
        vec![r(&["93.184.216.34", "443", "inet", "stream", "EINPROGRESS"])]
    );
}

#[test]
fn what_failed_to_exec() {
    let engine = engine(T0);
    let mut ingest = engine.ingest();
    ingest.push(as_bytes(&exec(1, 10, "bash", "/usr/bin/ls", &["ls", "-l"], 0)));
    ingest.push(as_bytes(&exec(2, 11, "bash", "/nope", &["nope", "--x=1"], -2)));
    ingest.flush();
    let ctx = engine.session().unwrap();
    assert_eq!(
        rows(&ctx, "SELECT ts, comm, filename, argv, errno FROM execs WHERE ret < 0"),
        vec![r(&["2023-11-14T22:13:22Z", "bash", "/nope", "nope --x=1", "ENOENT"])]
    );
}

#[test]
fn garbled_records_are_counted_not_fatal() {
    let engine = engine(T0);
    let mut ingest = engine.ingest();
    let good = open(1, 1, "a", "/x", 0, 3);
    let bytes = as_bytes(&good);
    ingest.push(&bytes[..100]); // truncated open
    ingest.push(&bytes[..2]); // too short for a kind
    let mut bad = good;
    bad.h.kind = 9;
    ingest.push(as_bytes(&bad)); // unknown kind
    let mut long = good;
    long.h.flags = F_PATH_TRUNCATED;
    ingest.push(as_bytes(&long));
    ingest.push(bytes);
    ingest.flush();
    let ctx = engine.session().unwrap();
    assert_eq!(
        rows(&ctx, "SELECT table_name, captured, decode_errors, truncated FROM sysql_stats ORDER BY table_name"),
        vec![
            r(&["(unknown)", "0", "2", "0"]),
            r(&["accepts", "0", "0", "0"]),
            r(&["connects", "0", "0", "0"]),
            r(&["db_queries", "0", "0", "0"]),
            r(&["dns_queries", "0", "0", "0"]),
            r(&["execs", "0", "0", "0"]),
            r(&["exits", "0", "0", "0"]),
            r(&["http_requests", "0", "0", "0"]),
            r(&["opens", "2", "1", "1"]),
        ]
    );
    assert_eq!(
        rows(&ctx, "SELECT path_truncated FROM opens ORDER BY path_truncated"),
        vec![r(&["false"]), r(&["true"])]
    );
}

#[test]
fn history_is_capped_and_evictions_are_counted() {
    let engine = Engine::new(EngineConfig {
        clock_offset_ns: T0,
        memory_cap_bytes: 1 << 20,
        flush_rows: 1000,
        ..EngineConfig::default()
    });
    let mut ingest = engine.ingest();
    for i in 0..50_000 {
        ingest.push(as_bytes(&open(i, 1, "load", "/tmp/some/long/path/name", 0, 3)));
    }
    ingest.flush();
    assert!(engine.history().used_bytes() <= 1 << 20);
    let ctx = engine.session().unwrap();
    let got = rows(&ctx, "SELECT captured, evicted, history_rows FROM sysql_stats WHERE table_name = 'opens'");
    let n: Vec<u64> = got[0].iter().map(|s| s.parse().unwrap()).collect();
    assert_eq!(n[0], 50_000);
    assert!(n[1] > 0, "nothing evicted under a 1 MiB cap");
    assert_eq!(n[1] + n[2], 50_000, "every row is either kept or counted as evicted");
    // the oldest went first: what is left is the newest
    let left = rows(&ctx, "SELECT max(ts) = to_timestamp_nanos(1700000000000000000 + 49999000000000) FROM opens");
    assert_eq!(left, vec![r(&["true"])]);
}

#[test]
fn a_storm_in_one_table_does_not_evict_the_others() {
    let engine = Engine::new(EngineConfig {
        clock_offset_ns: T0,
        memory_cap_bytes: 1 << 20,
        flush_rows: 1000,
        ..EngineConfig::default()
    });
    let mut ingest = engine.ingest();
    // a few connects and execs first (the oldest rows), then a storm of opens
    for i in 0..20 {
        ingest.push(as_bytes(&connect_v4(i, 7, "curl", [10, 0, 0, 1], 443, 6, 0)));
        ingest.push(as_bytes(&exec(i, 8, "sh", "/bin/sh", &["sh", "-c", "true"], 0)));
    }
    ingest.flush();
    for i in 0..50_000 {
        ingest.push(as_bytes(&open(100 + i, 1, "load", "/tmp/some/long/path/name", 0, 3)));
    }
    ingest.flush();
    assert!(engine.history().used_bytes() <= 1 << 20);
    let ctx = engine.session().unwrap();
    let got = rows(
        &ctx,
        "SELECT table_name, evicted > 0, history_rows FROM sysql_stats
         WHERE table_name IN ('connects', 'execs', 'opens') ORDER BY table_name",
    );
    assert_eq!(got[0], r(&["connects", "false", "20"]), "the storm took the connects' history");
    assert_eq!(got[1], r(&["execs", "false", "20"]));
    assert_eq!(got[2][..2], r(&["opens", "true"]), "the storm's own oldest rows went instead");
}

#[test]
fn old_events_expire_and_time_predicates_skip_batches() {
    let engine = Engine::new(EngineConfig {
        clock_offset_ns: T0,
        retention: Duration::from_secs(100),
        flush_rows: 10,
        ..EngineConfig::default()
    });
    let mut ingest = engine.ingest();
    for i in 0..1000 {
        ingest.push(as_bytes(&open(i, 1, "x", "/p", 0, 3)));
    }
    ingest.flush();
    let h = engine.history();
    // batches are merged up to 8192 rows; ask for a narrow range anyway
    let all = h.snapshot(Table::Opens, None, None).iter().map(|b| b.num_rows()).sum::<usize>();
    assert_eq!(all, 1000);
    h.expire(T0 + 1000 * 1_000_000_000);
    let ctx = engine.session().unwrap();
    // expiry drops whole batches, each spanning at most 1/16 of the retention
    let left = rows(
        &ctx,
        "SELECT count(*), min(ts) >= to_timestamp_nanos(1700000000000000000 + 893000000000), \
         count(*) FILTER (WHERE ts >= to_timestamp_nanos(1700000000000000000 + 900000000000)) FROM opens",
    );
    assert_eq!(left[0][1], "true", "{left:?}");
    assert_eq!(left[0][2], "100", "everything inside the retention period is kept");
    let expired = rows(&ctx, "SELECT expired FROM sysql_stats WHERE table_name = 'opens'");
    let kept: u64 = left[0][0].parse().unwrap();
    assert_eq!(expired[0][0].parse::<u64>().unwrap() + kept, 1000);
    // a ts predicate returns exact rows
    let q = rows(&ctx, "SELECT count(*) FROM opens WHERE ts >= to_timestamp_nanos(1700000000000000000 + 990000000000)");
    assert_eq!(q, vec![r(&["10"])]);
}

#[test]
fn ts_bounds_are_read_from_pushed_filters() {
    use datafusion::logical_expr::{col, lit};
    use datafusion::scalar::ScalarValue;
    use sysql_engine::provider::ts_bounds;
    let t = || lit(ScalarValue::TimestampNanosecond(Some(5), Some("+00:00".into())));
    assert_eq!(ts_bounds(&col("ts").gt(t())), Some((Some(5), None)));
    assert_eq!(ts_bounds(&t().gt(col("ts"))), Some((None, Some(5))));
    assert_eq!(ts_bounds(&col("ts").lt_eq(t())), Some((None, Some(5))));
    assert_eq!(ts_bounds(&col("pid").gt(lit(5))), None);
}

#[test]
fn percent_only_like_patterns_match_segment_by_segment() {
    let engine = engine(T0);
    let mut ingest = engine.ingest();
    let paths = ["/home/ann/.ssh/id_rsa", "/home/bob/.ssh", "/home/.ssh/x", "/tmp/.ssh/home/a", "/home/ann/ssh/x"];
    for (i, p) in paths.iter().enumerate() {
        ingest.push(as_bytes(&open(1 + i as i64, 100 + i as u32, "cat", p, 0, 3)));
    }
    // a path the user pointer could not be read for is NULL
    let mut unreadable = open(9, 999, "cat", "", 0, -14);
    unreadable.h.flags |= F_USER_FAULT;
    ingest.push(as_bytes(&unreadable));
    ingest.flush();
    let ctx = engine.session().unwrap();

    let q = "SELECT pid FROM opens WHERE path LIKE '/home/%/.ssh/%' ORDER BY pid";
    let plan = rows(&ctx, &format!("EXPLAIN {q}")).concat().join(" ");
    assert!(plan.contains("sysql_like(opens.path"), "{plan}");
    assert_eq!(rows(&ctx, q), vec![r(&["100"])]);
    assert_eq!(
        rows(&ctx, "SELECT pid FROM opens WHERE path NOT LIKE '/home/%/.ssh/%' ORDER BY pid"),
        vec![r(&["101"]), r(&["102"]), r(&["103"]), r(&["104"])],
        "NOT LIKE: the NULL path is neither"
    );
    assert_eq!(
        rows(&ctx, "SELECT pid FROM opens WHERE path LIKE '%.ssh%a' OR comm LIKE 'c%t%' AND pid > 103 ORDER BY pid"),
        vec![r(&["100"]), r(&["103"]), r(&["104"]), r(&["999"])]
    );
    // what Arrow matches fast itself, and patterns with `_`, are left alone
    let plan = rows(&ctx, "EXPLAIN SELECT pid FROM opens WHERE path LIKE '%.ssh%' AND path LIKE '/home/_%/x'")
        .concat()
        .join(" ");
    assert!(!plan.contains("sysql_like"), "{plan}");
    assert_eq!(
        rows(&ctx, "SELECT pid FROM opens WHERE path LIKE '%.ssh%' AND path LIKE '/home/_%/x' ORDER BY pid"),
        vec![r(&["102"])]
    );
    // in a SELECT list the LIKE keeps its name and its meaning
    assert_eq!(
        rows(&ctx, "SELECT path LIKE '/home/%/.ssh/%' AS m FROM opens ORDER BY pid"),
        vec![r(&["true"]), r(&["false"]), r(&["false"]), r(&["false"]), r(&["false"]), r(&["NULL"])]
    );
}
