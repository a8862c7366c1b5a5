//! Durable history over synthetic events: what is written is read back as
//! the same rows, memory and disk together count every row once (whatever
//! left memory, whatever was written), a new engine over the same
//! directory (a restart) sees it all, retention and the disk cap remove
//! whole files and count their rows, and compaction keeps the rows.

use futures::StreamExt;
use std::path::PathBuf;
use std::sync::atomic::Ordering::Relaxed;
use std::sync::Arc;
use sysql_engine::query::{Policy, QuerySession};
use sysql_engine::store::{Store, StoreConfig};
use sysql_engine::{Engine, EngineConfig};
use sysql_events::*;

const S: i64 = 1_000_000_000;

fn now_ns() -> i64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_nanos() as i64
}

struct Dir(PathBuf);

impl Dir {
    fn new(tag: &str) -> Dir {
        let p = std::env::temp_dir().join(format!("sysql-store-{tag}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&p);
        Dir(p)
    }
}

impl Drop for Dir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

fn open(ts: i64, pid: u32, path: &str) -> OpenEvent {
    let mut e: OpenEvent = zeroed();
    e.h.kind = KIND_OPEN;
    e.h.ts_boot_ns = ts as u64;
    e.h.pid = pid;
    e.h.comm[..3].copy_from_slice(b"cat");
    e.path[..path.len()].copy_from_slice(path.as_bytes());
    e.path_len = path.len() as u32;
    e
}

fn engine(dir: &Dir, config: EngineConfig, store: StoreConfig) -> Engine {
    let store = Store::open(StoreConfig { dir: dir.0.clone(), ..store }).unwrap();
    Engine::with_store(config, store)
}

/// `n` opens at 1 ms steps from `t0`, flushed in batches of `per` rows.
fn push(engine: &Engine, t0: i64, first: u32, n: u32, per: u32) {
    let mut ingest = engine.ingest();
    for i in 0..n {
        ingest.push(as_bytes(&open(t0 + i as i64 * 1_000_000, first + i, "/p")));
        if (i + 1) % per == 0 {
            ingest.flush();
        }
    }
    ingest.flush();
}

async fn count(engine: &Engine, sql: &str) -> Vec<i64> {
    let session = QuerySession::new(engine, Policy::default()).unwrap();
    let mut stream = session.run(sql).await.unwrap();
    let mut out = Vec::new();
    while let Some(b) = stream.next().await {
        let b = b.unwrap();
        for row in 0..b.num_rows() {
            for c in b.columns() {
                let col = datafusion::arrow::compute::cast(c, &datafusion::arrow::datatypes::DataType::Int64).unwrap();
                out.push(col.as_any().downcast_ref::<datafusion::arrow::array::Int64Array>().unwrap().value(row));
            }
        }
    }
    out
}

const ROWS: &str = "SELECT count(*), count(DISTINCT pid) FROM opens";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn memory_and_disk_count_every_row_once() {
    let dir = Dir::new("once");
    let t0 = (now_ns() / S - 100) * S;
    // a small memory cap: most entries leave memory, some before they are written
    let config = EngineConfig { memory_cap_bytes: 256 << 10, ..EngineConfig::default() };
    let e = engine(&dir, config, StoreConfig::new(&dir.0));
    let store = e.store().unwrap().clone();
    push(&e, t0, 0, 20_000, 1000);
    // nothing written yet: memory and the spill hold everything
    assert_eq!(count(&e, ROWS).await, vec![20_000, 20_000]);
    assert!(e.stats().table(Table::Opens).evicted.load(Relaxed) > 0, "the cap evicted entries");
    store.flush(e.history(), e.stats(), now_ns());
    assert_eq!(count(&e, ROWS).await, vec![20_000, 20_000], "after the first write");
    // more rows, written in part
    push(&e, t0 + 30 * S, 20_000, 5_000, 700);
    store.flush(e.history(), e.stats(), now_ns());
    push(&e, t0 + 40 * S, 25_000, 3_000, 300);
    assert_eq!(count(&e, ROWS).await, vec![28_000, 28_000], "written, spilled and in memory");
    assert_eq!(store.disk_stats(Table::Opens).unwritten.load(Relaxed), 0);
    // a time range reads only what it needs, and right
    let sql = format!(
        "SELECT count(*) FROM opens WHERE ts >= to_timestamp_nanos({}) AND ts < to_timestamp_nanos({})",
        t0 + 30 * S,
        t0 + 35 * S
    );
    assert_eq!(count(&e, &sql).await, vec![5_000]);
    store.flush(e.history(), e.stats(), now_ns());

    // a restart: a new engine over the same directory sees every row
    drop(e);
    let e = engine(&dir, EngineConfig::default(), StoreConfig::new(&dir.0));
    assert_eq!(count(&e, ROWS).await, vec![28_000, 28_000]);
    push(&e, t0 + 50 * S, 28_000, 100, 100);
    assert_eq!(count(&e, ROWS).await, vec![28_100, 28_100], "new ids continue after the ones on disk");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn retention_and_the_disk_cap_remove_whole_files_and_count_them() {
    let dir = Dir::new("retain");
    let now = now_ns();
    let e = engine(&dir, EngineConfig::default(), StoreConfig::new(&dir.0));
    let store = e.store().unwrap().clone();
    // an old interval (3 days ago) and a recent one, written apart
    push(&e, now - 3 * 86400 * S, 0, 1000, 1000);
    store.flush(e.history(), e.stats(), now);
    push(&e, now - 10 * S, 1000, 1000, 1000);
    store.flush(e.history(), e.stats(), now);
    let (rows, bytes) = store.usage(Table::Opens);
    assert_eq!(rows, 2000);
    assert!(bytes > 0);
    drop(e);
    // retain 1 day: the old file goes, its rows are counted
    let config = StoreConfig { retain: std::time::Duration::from_secs(86400), ..StoreConfig::new(&dir.0) };
    let e = engine(&dir, EngineConfig::default(), config);
    let store = e.store().unwrap().clone();
    store.flush(e.history(), e.stats(), now);
    assert_eq!(store.usage(Table::Opens).0, 1000);
    assert_eq!(store.disk_stats(Table::Opens).removed.load(Relaxed), 1000);
    assert_eq!(count(&e, "SELECT count(*) FROM opens").await, vec![1000]);
    drop(e);
    // a cap below one file's bytes: that file goes too
    let config = StoreConfig { disk_cap: 1, ..StoreConfig::new(&dir.0) };
    let e = engine(&dir, EngineConfig::default(), config);
    let store = e.store().unwrap().clone();
    store.flush(e.history(), e.stats(), now);
    assert_eq!(store.usage(Table::Opens), (0, 0));
    assert_eq!(store.disk_stats(Table::Opens).removed.load(Relaxed), 1000);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn compaction_keeps_every_row() {
    let dir = Dir::new("compact");
    let t0 = (now_ns() / 3600 / S * 3600 + 60) * S;
    let config = EngineConfig { memory_cap_bytes: 64 << 10, ..EngineConfig::default() };
    let e = engine(&dir, config, StoreConfig::new(&dir.0));
    let store = e.store().unwrap().clone();
    // 20 files in one hour, all of which leave memory
    for i in 0..20u32 {
        push(&e, t0 + i as i64 * S, i * 500, 500, 500);
        store.flush(e.history(), e.stats(), now_ns());
    }
    push(&e, t0 + 30 * S, 10_000, 20_000, 1000);
    store.flush(e.history(), e.stats(), now_ns());
    let files = std::fs::read_dir(dir.0.join("opens")).unwrap().count();
    assert!(files >= 1);
    let parquet: Vec<_> = walk(&dir.0.join("opens"));
    assert!(parquet.len() < 20, "compacted into fewer files: {}", parquet.len());
    assert_eq!(count(&e, ROWS).await, vec![30_000, 30_000]);
    drop(e);
    let e = engine(&dir, EngineConfig::default(), StoreConfig::new(&dir.0));
    assert_eq!(count(&e, ROWS).await, vec![30_000, 30_000]);
    let _ = Arc::clone(e.store().unwrap());
}

fn walk(dir: &std::path::Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for entry in std::fs::read_dir(d).unwrap() {
            let p = entry.unwrap().path();
            if p.is_dir() {
                stack.push(p);
            } else if p.extension().is_some_and(|e| e == "parquet") {
                out.push(p);
            }
        }
    }
    out
}

/// One hour of history (10M opens), the same query over it in memory and
/// on disk, timed (not asserted):
/// `cargo test --release -p sysql-engine --test store one_hour -- --ignored --nocapture`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore]
async fn one_hour_in_memory_and_on_disk() {
    let dir = Dir::new("hour");
    let n: u32 = 10_000_000;
    let t0 = now_ns() - 3600 * S;
    let step = 3600 * S / n as i64;
    let memory = Engine::new(EngineConfig { memory_cap_bytes: 8 << 30, ..EngineConfig::default() });
    let disk =
        engine(&dir, EngineConfig { memory_cap_bytes: 8 << 30, ..EngineConfig::default() }, StoreConfig::new(&dir.0));
    let paths = ["/etc/passwd", "/etc/shadow", "/usr/lib/libc.so.6", "/proc/self/stat", "/tmp/x"];
    for e in [&memory, &disk] {
        let mut ingest = e.ingest();
        for i in 0..n {
            ingest.push(as_bytes(&open(t0 + i as i64 * step, 1000 + (i % 50), paths[i as usize % paths.len()])));
        }
        ingest.flush();
    }
    let store = disk.store().unwrap().clone();
    store.flush(disk.history(), disk.stats(), now_ns());
    drop(disk);
    // a new engine over the directory: everything is on disk, nothing in memory
    let disk = engine(&dir, EngineConfig::default(), StoreConfig::new(&dir.0));
    let (rows, bytes) = disk.store().unwrap().usage(Table::Opens);
    let mem = memory.history().usage(Table::Opens);
    println!(
        "one hour, {n} opens: memory {} bytes/event, Parquet on disk {} bytes/event",
        mem.bytes / mem.rows.max(1),
        bytes as f64 / rows.max(1) as f64
    );
    for sql in [
        "SELECT count(*) FROM opens WHERE ts > now() - INTERVAL '1 hour'",
        "SELECT pid, count(*) FROM opens WHERE ts > now() - INTERVAL '1 hour' GROUP BY pid ORDER BY 2 DESC LIMIT 5",
        "SELECT count(*) FROM opens WHERE path = '/etc/shadow'",
        "SELECT count(*) FROM opens WHERE ts > now() - INTERVAL '5 minutes'",
    ] {
        for (name, e) in [("memory", &memory), ("disk", &disk)] {
            let mut best = f64::MAX;
            for _ in 0..3 {
                let start = std::time::Instant::now();
                let _ = count(e, sql).await;
                best = best.min(start.elapsed().as_secs_f64() * 1e3);
            }
            println!("{name:>6}: {best:8.1} ms  {sql}");
        }
    }
}

/// Every row of `sql` as ` | `-joined text (NULL as `NULL`).
async fn text_rows(engine: &Engine, sql: &str) -> Vec<String> {
    use datafusion::arrow::util::display::{ArrayFormatter, FormatOptions};
    let session = QuerySession::new(engine, Policy::default()).unwrap();
    let mut stream = session.run(sql).await.unwrap();
    let opts = FormatOptions::default().with_null("NULL");
    let mut out = Vec::new();
    while let Some(b) = stream.next().await {
        let b = b.unwrap();
        let f: Vec<_> = b.columns().iter().map(|c| ArrayFormatter::try_new(c.as_ref(), &opts).unwrap()).collect();
        for r in 0..b.num_rows() {
            out.push(f.iter().map(|f| f.value(r).to_string()).collect::<Vec<_>>().join(" | "));
        }
    }
    out
}

/// A non-blocking TCP connect from a docker container's cgroup at `ts`
/// (boot clock = UTC), on socket `sock`.
fn tcp_connect(ts: i64, sock: u64, cgroup: u64) -> ConnectEvent {
    let mut e: ConnectEvent = zeroed();
    e.h.kind = KIND_CONNECT;
    e.h.ts_boot_ns = ts as u64;
    e.h.latency_ns = 20_000;
    e.h.ret = -115;
    e.h.pid = 42;
    e.h.tid = 42;
    e.h.cgroup_id = cgroup;
    e.h.comm[..3].copy_from_slice(b"app");
    e.fd = 5;
    e.sock_id = sock;
    (e.sk_family, e.sk_type, e.sk_protocol) = (2, 1, 6);
    e.sport = 40000 + sock as u16;
    e.saddr[..4].copy_from_slice(&[172, 17, 0, 2]);
    e.netns = 4026531840;
    e.addrlen = 16;
    e.addr[..8].copy_from_slice(&[2, 0, 0x15, 0x38, 10, 0, 0, 5]);
    e
}

fn connect_done(c: &ConnectEvent, ret: i64) -> ConnectDoneEvent {
    let mut d: ConnectDoneEvent = zeroed();
    d.h.kind = KIND_CONNECT_DONE;
    d.h.ts_boot_ns = c.h.ts_boot_ns;
    d.h.latency_ns = 2_000_000;
    d.h.ret = ret;
    d.h.pid = c.h.pid;
    d.h.tid = c.h.tid;
    d.sock_id = c.sock_id;
    d.sport = c.sport;
    d.saddr = c.saddr;
    d
}

/// Every table, the ones made late (a connect's row comes with its
/// outcome, after later rows) and every row's container_id included, reads
/// the same from memory, from the agent's files after a restart, and from
/// the directory as a recording.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_table_reads_back_the_same_from_disk() {
    use std::os::unix::fs::MetadataExt;
    let dir = Dir::new("tables");
    let cgroups = std::env::temp_dir().join(format!("sysql-store-cgroups-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&cgroups);
    let docker = cgroups.join(format!("system.slice/docker-{}.scope", "ab".repeat(32)));
    std::fs::create_dir_all(&docker).unwrap();
    let cgroup = std::fs::metadata(&docker).unwrap().ino();
    let containers = sysql_engine::containers::ContainersConfig { cgroup_root: Some(cgroups.clone()), proc_root: None };
    let config = EngineConfig { containers, ..EngineConfig::default() };
    let e = engine(&dir, config, StoreConfig::new(&dir.0));
    let t0 = (now_ns() / S - 100) * S;
    let mut ingest = e.ingest();
    let mut o = open(t0, 7, "/etc/hosts");
    o.h.cgroup_id = cgroup;
    ingest.push(as_bytes(&o));
    // held until its outcome, which comes after the next connect's row
    let late = tcp_connect(t0 + S, 1, cgroup);
    ingest.push(as_bytes(&late));
    let refused = tcp_connect(t0 + 2 * S, 2, cgroup);
    ingest.push(as_bytes(&connect_done(&refused, -111)));
    ingest.push(as_bytes(&refused));
    ingest.flush();
    ingest.push(as_bytes(&connect_done(&late, 0)));
    let mut a: AcceptEvent = zeroed();
    a.h.kind = KIND_ACCEPT;
    a.h.ts_boot_ns = (t0 + 3 * S) as u64;
    a.h.ret = 7;
    a.h.pid = 43;
    a.h.cgroup_id = cgroup;
    a.h.syscall = SYS_ACCEPT4;
    a.fd = 5;
    (a.sk_family, a.sk_type, a.sk_protocol) = (2, 1, 6);
    a.laddr[..4].copy_from_slice(&[10, 0, 0, 5]);
    a.lport = 5432;
    a.raddr[..4].copy_from_slice(&[172, 17, 0, 2]);
    a.rport = 40001;
    a.netns = 4026531840;
    ingest.push(as_bytes(&a));
    let mut x: ExitEvent = zeroed();
    x.h.kind = KIND_EXIT;
    x.h.ts_boot_ns = (t0 + 4 * S) as u64;
    x.h.pid = 44;
    x.h.cgroup_id = cgroup;
    x.start_boot_ns = x.h.ts_boot_ns - 2 * S as u64;
    x.exit_code = 11 | 0x80;
    ingest.push(as_bytes(&x));
    ingest.flush();
    drop(ingest);

    let all = |t: Table| format!("SELECT * FROM {} ORDER BY ts", t.name());
    let mut in_memory = Vec::new();
    for t in Table::ALL {
        in_memory.push(text_rows(&e, &all(t)).await);
    }
    assert_eq!(
        text_rows(&e, "SELECT outcome, container_id IS NOT NULL FROM connects ORDER BY ts").await,
        vec!["connected | true", "ECONNREFUSED | true"]
    );
    for t in [Table::Opens, Table::Connects, Table::Accepts, Table::Exits] {
        let n = if t == Table::Connects { 2 } else { 1 };
        assert_eq!(in_memory[t as usize].len(), n, "{}: {:?}", t.name(), in_memory[t as usize]);
    }
    let store = e.store().unwrap().clone();
    store.flush(e.history(), e.stats(), now_ns());
    for t in [Table::Connects, Table::Accepts, Table::Exits] {
        assert!(store.usage(t).0 > 0, "{} was written", t.name());
        assert!(dir.0.join(t.name()).is_dir());
    }
    drop((e, store));

    // a restart of the agent: nothing in memory, everything on disk
    let e = engine(&dir, EngineConfig::default(), StoreConfig::new(&dir.0));
    for t in Table::ALL {
        assert_eq!(text_rows(&e, &all(t)).await, in_memory[t as usize], "{} after a restart", t.name());
    }
    drop(e);
    // a recording: the same rows
    let recording = Engine::recording(EngineConfig::default(), Store::open_read_only(&dir.0).unwrap(), None);
    for t in Table::ALL {
        assert_eq!(text_rows(&recording, &all(t)).await, in_memory[t as usize], "{} as a recording", t.name());
    }
    let _ = std::fs::remove_dir_all(&cgroups);
}

/// Files written before a table had some of its columns (`container_id`,
/// the connect outcome's columns, `netns`): those columns read as NULL, and
/// the rest as written.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn files_of_an_older_sysql_read_newer_columns_as_null() {
    use datafusion::arrow::datatypes::Schema;
    let dir = Dir::new("older");
    let memory = Engine::new(EngineConfig::default());
    let t0 = (now_ns() / S - 100) * S;
    let mut ingest = memory.ingest();
    let c = tcp_connect(t0, 1, 0);
    ingest.push(as_bytes(&c));
    ingest.push(as_bytes(&connect_done(&c, 0)));
    ingest.flush();
    drop(ingest);
    let batch = memory.history().snapshot(Table::Connects, None, None).remove(0);
    // the columns of connects before the outcome, netns and container_id
    let newer = ["container_id", "outcome", "outcome_ns", "saddr", "sport", "netns"];
    let keep: Vec<usize> =
        (0..batch.num_columns()).filter(|&i| !newer.contains(&batch.schema().field(i).name().as_str())).collect();
    let old = batch.project(&keep).unwrap();
    assert_eq!(old.num_columns(), batch.num_columns() - newer.len());
    let hour = dir.0.join("connects/date=2026-01-01/hour=00");
    std::fs::create_dir_all(&hour).unwrap();
    let file = std::fs::File::create(hour.join(format!("{t0}-{t0}-0-0.parquet"))).unwrap();
    let schema: Arc<Schema> = old.schema();
    let mut writer = parquet::arrow::ArrowWriter::try_new(file, schema, None).unwrap();
    writer.write(&old).unwrap();
    writer.close().unwrap();

    let sql =
        "SELECT dport, ret, errno, count(*) OVER () AS n, container_id, outcome, outcome_ns, saddr, sport, netns \
               FROM connects";
    let want = vec!["5432 | -115 | EINPROGRESS | 1 | NULL | NULL | NULL | NULL | NULL | NULL"];
    let recording = Engine::recording(EngineConfig::default(), Store::open_read_only(&dir.0).unwrap(), None);
    assert_eq!(text_rows(&recording, sql).await, want, "as a recording");
    drop(recording);
    // an agent started over the directory, writing new rows next to it
    let e = engine(&dir, EngineConfig::default(), StoreConfig::new(&dir.0));
    let mut ingest = e.ingest();
    let c = tcp_connect(t0 + S, 2, 0);
    ingest.push(as_bytes(&c));
    ingest.push(as_bytes(&connect_done(&c, -111)));
    ingest.flush();
    drop(ingest);
    let sql = "SELECT dport, netns, outcome FROM connects ORDER BY ts";
    let want = vec!["5432 | NULL | NULL", "5432 | 4026531840 | ECONNREFUSED"];
    assert_eq!(text_rows(&e, sql).await, want, "the old file and memory");
    e.store().unwrap().flush(e.history(), e.stats(), now_ns());
    drop(e);
    let e = engine(&dir, EngineConfig::default(), StoreConfig::new(&dir.0));
    assert_eq!(text_rows(&e, sql).await, want, "both files after a restart");
}
