//! `sysql bench-pipeline` (hidden): the user-space pipeline alone, ring
//! record -> decoded -> Arrow batch in a history table, on one thread.
//!
//! Records are built byte for byte as the kernel writes them (the
//! `sysql-events` structs, full size, 8-byte aligned, packed one after the
//! other as in the ring) with varied processes, paths, flags and results, in
//! a pool of about 16 MiB per table (larger than the caches, like a ring
//! being drained). Each is pushed through the real [`Ingest`] with the
//! default engine settings (argv redaction on, 4096-row batches, history
//! compaction), and `tick` is called after every 65536 records as the reader
//! does after a full read. Only the kernel's ring itself (the consumer
//! position in shared memory) is not exercised. CPU time is the thread's own
//! (`CLOCK_THREAD_CPUTIME_ID`); no kernel programs are loaded, so no
//! privileges are needed.

use nix::time::{clock_gettime, ClockId};
use std::fmt::Write as _;
use std::mem::offset_of;
use std::process::ExitCode;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};
use sysql_engine::{Engine, EngineConfig};
use sysql_events::*;

/// Arguments of `sysql bench-pipeline`.
#[derive(Debug, clap::Args)]
pub struct BenchArgs {
    /// Events pushed per table.
    #[arg(long, value_name = "N", default_value_t = 2_000_000)]
    pub events: u64,

    /// Which table's records to push (all: each in turn, on a fresh engine).
    #[arg(long, value_name = "TABLE", default_value = "all")]
    pub table: Which,

    /// Print the figures as one JSON object instead of a table.
    #[arg(long)]
    pub json: bool,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Which {
    All,
    Opens,
    Connects,
    Execs,
}

/// Records pushed between two calls of `tick` (the reader's READ_BATCH).
const TICK_EVERY: u64 = 65536;
/// Bytes of records in each table's pool.
const POOL_BYTES: usize = 16 << 20;

/// One table's figures.
struct Figures {
    table: Table,
    events: u64,
    wall: Duration,
    cpu: Duration,
    rows: u64,
    evicted: u64,
    batches: usize,
    history_bytes: u64,
}

impl Figures {
    fn cpu_ns_per_event(&self) -> f64 {
        self.cpu.as_nanos() as f64 / self.events.max(1) as f64
    }

    fn wall_ns_per_event(&self) -> f64 {
        self.wall.as_nanos() as f64 / self.events.max(1) as f64
    }
}

pub fn run(args: &BenchArgs) -> ExitCode {
    let tables = match args.table {
        Which::All => vec![Table::Opens, Table::Connects, Table::Execs],
        Which::Opens => vec![Table::Opens],
        Which::Connects => vec![Table::Connects],
        Which::Execs => vec![Table::Execs],
    };
    let mut results = Vec::new();
    for table in tables {
        let f = bench(table, args.events);
        if f.rows + f.evicted != f.events {
            eprintln!(
                "sysql: bench-pipeline: {} events pushed but {} in history and {} evicted",
                f.events, f.rows, f.evicted
            );
            return ExitCode::from(1);
        }
        results.push(f);
    }
    if args.json {
        println!("{}", json(&results));
    } else {
        print_table(&results);
    }
    ExitCode::SUCCESS
}

fn thread_cpu() -> Duration {
    clock_gettime(ClockId::CLOCK_THREAD_CPUTIME_ID).map(Duration::from).unwrap_or_default()
}

fn now_ns() -> i64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_nanos() as i64).unwrap_or(0)
}

fn bench(table: Table, events: u64) -> Figures {
    let mut pool = Pool::build(table);
    // The kernel's clock is boot time; the offset makes ts recent wall time,
    // so history neither expires nor compacts differently than when live.
    let start_wall = now_ns();
    let config = EngineConfig { clock_offset_ns: start_wall, ..EngineConfig::default() };
    let engine = Engine::new(config);
    let mut ingest = engine.ingest();
    let n = pool.offsets.len();
    let cpu0 = thread_cpu();
    let wall0 = Instant::now();
    for i in 0..events {
        let k = (i % n as u64) as usize;
        // Syscalls 150 ns apart: the time stamp is the one field that changes
        // from lap to lap of the pool (the kernel writes the whole record).
        let rec = pool.record_mut(k, i * 150);
        ingest.push(rec);
        if (i + 1) % TICK_EVERY == 0 {
            ingest.tick(start_wall + (i * 150) as i64);
        }
    }
    ingest.flush();
    let cpu = thread_cpu().saturating_sub(cpu0);
    let wall = wall0.elapsed();
    let usage = engine.history().usage(table);
    let evicted = engine.stats().table(table).evicted.load(std::sync::atomic::Ordering::Relaxed);
    let batches = engine.history().snapshot(table, None, None).len();
    Figures { table, events, wall, cpu, rows: usage.rows, evicted, batches, history_bytes: usage.bytes }
}

/// Records laid out as in the ring: each starts 8-byte aligned.
struct Pool {
    bytes: Vec<u8>,
    /// (offset in bytes, length in bytes) of each record.
    offsets: Vec<(usize, usize)>,
}

impl Pool {
    fn build(table: Table) -> Pool {
        let mut records: Vec<Vec<u8>> = Vec::new();
        let mut total = 0;
        let mut i = 0u32;
        while total < POOL_BYTES {
            // at the length the kernel sends each kind
            let rec = match table {
                Table::Opens => {
                    let e = open(i);
                    as_bytes(&e)[..offset_of!(OpenEvent, path) + e.path_len as usize + 1].to_vec()
                }
                Table::Connects => as_bytes(&connect(i)).to_vec(),
                _ => {
                    let e = exec(i);
                    as_bytes(&e)[..offset_of!(ExecEvent, argv) + e.argv_len as usize].to_vec()
                }
            };
            total += rec.len().next_multiple_of(8);
            records.push(rec);
            i += 1;
        }
        let mut bytes = vec![0u8; total + 8];
        // The allocation does not move from here on: start at its first
        // 8-byte boundary.
        let mut at = bytes.as_ptr().align_offset(8);
        let mut offsets = Vec::with_capacity(records.len());
        for rec in records {
            bytes[at..at + rec.len()].copy_from_slice(&rec);
            offsets.push((at, rec.len()));
            at += rec.len().next_multiple_of(8);
        }
        Pool { bytes, offsets }
    }

    /// Record `k`, with its time stamp set to `ts_boot_ns`.
    fn record_mut(&mut self, k: usize, ts_boot_ns: u64) -> &[u8] {
        let (at, len) = self.offsets[k];
        // Header.ts_boot_ns is bytes 8..16 (checked against the C header in sysql-events).
        self.bytes[at + 8..at + 16].copy_from_slice(&ts_boot_ns.to_ne_bytes());
        &self.bytes[at..at + len]
    }
}

const COMMS: [&str; 24] = [
    "bash",
    "sshd",
    "systemd",
    "cron",
    "nginx",
    "postgres",
    "python3",
    "node",
    "java",
    "cargo",
    "rustc",
    "cc1",
    "ld",
    "git",
    "make",
    "containerd",
    "dockerd",
    "kubelet",
    "journald",
    "rsyslogd",
    "chronyd",
    "tmux",
    "vim",
    "sysql-bench",
];

const O_RDONLY_CLOEXEC: u64 = 0o2000000;
const OPEN_FLAGS: [u64; 6] =
    [O_RDONLY_CLOEXEC, O_RDONLY_CLOEXEC, 0o1101 | O_RDONLY_CLOEXEC, 0o200000 | 0o4000 | O_RDONLY_CLOEXEC, 0o2, 0];

fn header(kind: u32, syscall: u32, i: u32, ret: i64) -> Header {
    let mut h: Header = zeroed();
    let comm = COMMS[(i as usize * 7) % COMMS.len()];
    h.kind = kind;
    h.syscall = syscall;
    h.latency_ns = 800 + (i as u64 * 37) % 5000;
    h.cgroup_id = 4000 + (i as u64 % 13);
    h.ret = ret;
    h.pid = 1000 + (i * 7) % 4000;
    h.tid = h.pid + i % 3;
    h.ppid = 1 + (i % 50);
    h.uid = if i.is_multiple_of(4) { 0 } else { 1000 };
    h.gid = h.uid;
    h.comm[..comm.len()].copy_from_slice(comm.as_bytes());
    h
}

fn open(i: u32) -> OpenEvent {
    let mut path = String::new();
    let ret = match i % 8 {
        0 => {
            let _ = write!(path, "/tmp/sb-{}-r0.missing/0-{i}", 4000 + i % 3);
            -2
        }
        1 => {
            let _ = write!(path, "/proc/{}/stat", 1000 + i % 4000);
            3
        }
        2 => {
            path.push_str("/usr/lib/x86_64-linux-gnu/libc.so.6");
            3
        }
        3 => {
            let _ = write!(path, "/home/dev/project/target/release/deps/libdatafusion_expr-{i:x}.rmeta");
            (4 + i % 20) as i64
        }
        4 => {
            path.push_str("/etc/ld.so.cache");
            3
        }
        5 => {
            let _ = write!(path, "/var/lib/postgresql/15/main/base/16384/{}", 2600 + i % 400);
            if i % 40 == 5 {
                -13
            } else {
                7
            }
        }
        6 => {
            path.push_str("/sys/fs/cgroup/system.slice/cron.service/memory.current");
            5
        }
        _ => {
            let _ = write!(path, "src/module_{}.rs", i % 300);
            if i % 16 == 7 {
                -2
            } else {
                9
            }
        }
    };
    let mut e: OpenEvent = zeroed();
    e.h = header(KIND_OPEN, if i % 10 == 9 { SYS_OPEN } else { SYS_OPENAT }, i, ret);
    e.dfd = -100;
    e.flags = OPEN_FLAGS[(i as usize / 8) % OPEN_FLAGS.len()];
    e.mode = if e.flags & 0o100 != 0 { 0o644 } else { 0 };
    e.path[..path.len()].copy_from_slice(path.as_bytes());
    e.path_len = path.len() as u32;
    e
}

fn connect(i: u32) -> ConnectEvent {
    let mut e: ConnectEvent = zeroed();
    let ret = match i % 5 {
        0 => -111,
        1 => -115,
        _ => 0,
    };
    e.h = header(KIND_CONNECT, SYS_CONNECT, i, ret);
    e.fd = 3 + (i % 30) as i32;
    match i % 6 {
        0..=2 => {
            let ip = [10, (i >> 16) as u8, (i >> 8) as u8, i as u8];
            let port: u16 = [443, 80, 5432, 6379, 8080][(i as usize / 6) % 5];
            e.addrlen = 16;
            e.sk_family = 2;
            e.sk_type = 1;
            e.sk_protocol = 6;
            e.addr[..2].copy_from_slice(&2u16.to_ne_bytes());
            e.addr[2..4].copy_from_slice(&port.to_be_bytes());
            e.addr[4..8].copy_from_slice(&ip);
        }
        3 => {
            e.addrlen = 16;
            e.sk_family = 2;
            e.sk_type = 2;
            e.sk_protocol = 17;
            e.addr[..2].copy_from_slice(&2u16.to_ne_bytes());
            e.addr[2..4].copy_from_slice(&53u16.to_be_bytes());
            e.addr[4..8].copy_from_slice(&[127, 0, 0, 53]);
        }
        4 => {
            e.addrlen = 28;
            e.sk_family = 10;
            e.sk_type = 1;
            e.sk_protocol = 6;
            e.addr[..2].copy_from_slice(&10u16.to_ne_bytes());
            e.addr[2..4].copy_from_slice(&443u16.to_be_bytes());
            let ip = [0x2a, 0x00, 0x14, 0x50, 0x40, 0x07, 0x08, 0x19, 0, 0, 0, 0, 0, 0, (i >> 8) as u8, i as u8];
            e.addr[8..24].copy_from_slice(&ip);
        }
        _ => {
            let path = b"/run/systemd/journal/socket";
            e.addrlen = (2 + path.len() + 1) as u32;
            e.sk_family = 1;
            e.sk_type = 2;
            e.addr[..2].copy_from_slice(&1u16.to_ne_bytes());
            e.addr[2..2 + path.len()].copy_from_slice(path);
        }
    }
    e
}

fn exec(i: u32) -> ExecEvent {
    let (filename, args): (&str, Vec<String>) = match i % 5 {
        0 => ("/usr/bin/ls", vec!["ls".into(), "-la".into(), format!("/home/dev/{i}")]),
        1 => ("/usr/bin/git", vec!["git".into(), "status".into(), "--porcelain".into()]),
        2 => (
            "/usr/bin/psql",
            vec!["psql".into(), "-h".into(), "db".into(), "--password=hunter2".into(), "-c".into(), "select 1".into()],
        ),
        3 => ("/bin/sh", vec!["sh".into(), "-c".into(), format!("sleep {}; echo done-{i}", i % 10)]),
        _ => ("/usr/local/bin/missing", vec!["missing".into(), format!("--run={i}")]),
    };
    let ret = if i % 5 == 4 { -2 } else { 0 };
    let mut e: ExecEvent = zeroed();
    e.h = header(KIND_EXEC, SYS_EXECVE, i, ret);
    e.dfd = -100;
    e.filename[..filename.len()].copy_from_slice(filename.as_bytes());
    e.filename_len = filename.len() as u32;
    let mut off = 0;
    for a in &args {
        e.argv[off..off + a.len()].copy_from_slice(a.as_bytes());
        off += a.len() + 1;
    }
    e.argv_len = off as u32;
    e.argc = args.len() as u32;
    e
}

fn print_table(results: &[Figures]) {
    println!(
        "{:<9} {:>10} {:>8} {:>8} {:>12} {:>10} {:>10} {:>8} {:>10}",
        "table", "events", "wall s", "cpu s", "events/s", "ns/event", "wall ns", "batches", "history MB"
    );
    for f in results {
        println!(
            "{:<9} {:>10} {:>8.3} {:>8.3} {:>12.0} {:>10.1} {:>10.1} {:>8} {:>10.1}",
            f.table.name(),
            f.events,
            f.wall.as_secs_f64(),
            f.cpu.as_secs_f64(),
            1e9 / f.cpu_ns_per_event(),
            f.cpu_ns_per_event(),
            f.wall_ns_per_event(),
            f.batches,
            f.history_bytes as f64 / (1 << 20) as f64
        );
    }
    println!("events/s and ns/event: the thread's CPU time; wall ns: elapsed time per event");
}

fn json(results: &[Figures]) -> String {
    let tables: Vec<String> = results
        .iter()
        .map(|f| {
            format!(
                "\"{}\": {{\"events\": {}, \"wall_s\": {:.6}, \"cpu_s\": {:.6}, \"events_per_s\": {:.0}, \
                 \"cpu_ns_per_event\": {:.1}, \"wall_ns_per_event\": {:.1}, \"batches\": {}, \"history_bytes\": {}, \
                 \"evicted\": {}}}",
                f.table.name(),
                f.events,
                f.wall.as_secs_f64(),
                f.cpu.as_secs_f64(),
                1e9 / f.cpu_ns_per_event(),
                f.cpu_ns_per_event(),
                f.wall_ns_per_event(),
                f.batches,
                f.history_bytes,
                f.evicted
            )
        })
        .collect();
    format!("{{{}}}", tables.join(", "))
}
