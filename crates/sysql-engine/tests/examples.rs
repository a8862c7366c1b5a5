//! Every saved query in sql-examples/ has a name and description header, and
//! runs, through the statement path and the policy saved queries have, over
//! a synthetic capture that holds an answer for each, and gives exactly
//! the rows written for it in `tests/examples.expected`. A new file fails
//! until its answer is written there (the failure shows what it gave).

use datafusion::arrow::array::TimestampNanosecondArray;
use datafusion::arrow::util::display::{ArrayFormatter, FormatOptions};
use futures::StreamExt;
use std::collections::BTreeMap;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use sysql_engine::query::{Policy, QuerySession};
use sysql_engine::{Engine, EngineConfig};
use sysql_events::*;

/// The synthetic boot time: a whole second, 100 s ago. Events are at boot
/// + 1..60 s; timestamps in results are shown as `boot+Ns`.
fn boot() -> i64 {
    let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_nanos() as i64;
    (now / 1_000_000_000 - 100) * 1_000_000_000
}

/// A docker container's id and a Kubernetes pod's container's, in the
/// synthetic cgroup tree.
const DOCKER_ID: &str = "d0c4e5c0ffee0123456789abcdef0123456789abcdef0123456789abcdef0001";
const POD_ID: &str = "c0a7a1e5c0ffee0123456789abcdef0123456789abcdef0123456789abcd0002";

/// A cgroup tree in a temporary directory (the host's root, a docker
/// container, a pod's container), removed when dropped; the cgroup ids are
/// its directories' inode numbers.
struct Cgroups {
    root: PathBuf,
    host: u64,
    docker: u64,
    pod: u64,
}

impl Cgroups {
    fn new() -> Cgroups {
        let root = std::env::temp_dir().join(format!("sysql-examples-cgroups-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&root);
        let docker = root.join(format!("system.slice/docker-{DOCKER_ID}.scope"));
        let pod = root.join(format!(
            "kubepods.slice/kubepods-burstable.slice/kubepods-burstable-pod4bd0ac6c_4fd3_4b8a_9b5c_0a1f2e3d4c5b.slice/cri-containerd-{POD_ID}.scope"
        ));
        std::fs::create_dir_all(&docker).unwrap();
        std::fs::create_dir_all(&pod).unwrap();
        let ino = |p: &Path| std::fs::metadata(p).unwrap().ino();
        Cgroups { host: ino(&root), docker: ino(&docker), pod: ino(&pod), root }
    }
}

impl Drop for Cgroups {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.root);
    }
}

fn synthetic_engine(boot: i64, cgroups: &Cgroups) -> Engine {
    let containers =
        sysql_engine::containers::ContainersConfig { cgroup_root: Some(cgroups.root.clone()), proc_root: None };
    let engine = Engine::new(EngineConfig { clock_offset_ns: boot, containers, ..EngineConfig::default() });
    let mut ingest = engine.ingest();
    let host = cgroups.host;
    let header = |kind, i: u64, comm: &str, ret: i64| {
        let mut h: Header = zeroed();
        h.kind = kind;
        h.cgroup_id = host;
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
    // Payload tables: an HTTP exchange and an injected SQL statement as the
    // servers received them, and a DNS question with its answer.
    let mut payload = |i: u64, comm: &str, proto: u8, syscall: u32, data: &[u8]| {
        let mut e: PayloadEvent = zeroed();
        e.h = header(KIND_PAYLOAD, 30 + i, comm, data.len() as i64);
        e.h.syscall = syscall;
        e.h.pid = 300 + proto as u32;
        e.sock_id = proto as u64;
        e.sk_family = 2;
        e.protocol = proto;
        e.data_len = data.len() as u32;
        let mut rec = as_bytes(&e).to_vec();
        rec.extend_from_slice(data);
        let mut buf = vec![0u8; rec.len() + 8];
        let off = buf.as_ptr().align_offset(8);
        buf[off..off + rec.len()].copy_from_slice(&rec);
        ingest.push(&buf[off..off + rec.len()]);
    };
    payload(0, "nginx", PROTO_HTTP, SYS_READ, b"GET /login HTTP/1.1\r\nHost: shop\r\n\r\n");
    payload(1, "nginx", PROTO_HTTP, SYS_WRITE, b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n");
    let query = b"SELECT * FROM users WHERE name = '' or 1=1 --'\0";
    let mut q = vec![b'Q'];
    q.extend_from_slice(&(4 + query.len() as u32).to_be_bytes());
    q.extend_from_slice(query);
    payload(2, "postgres", PROTO_PGSQL, SYS_RECVFROM, &q);
    payload(3, "postgres", PROTO_PGSQL, SYS_SENDTO, b"C\0\0\0\x0dSELECT 1\0Z\0\0\0\x05I");
    let dns = |flags: u16, answers: u16| {
        let mut m = vec![0x12, 0x34];
        m.extend_from_slice(&flags.to_be_bytes());
        m.extend_from_slice(&[0, 1, 0, answers as u8, 0, 0, 0, 0, 4, b'h', b'o', b's', b't', 0, 0, 1, 0, 1]);
        if answers > 0 {
            m.extend_from_slice(&[0xc0, 0x0c, 0, 1, 0, 1, 0, 0, 0, 60, 0, 4, 10, 0, 0, 9]);
        }
        m
    };
    payload(4, "curl", PROTO_DNS, SYS_SENDTO, &dns(0x0100, 0));
    payload(5, "curl", PROTO_DNS, SYS_RECVFROM, &dns(0x8180, 1));
    // Connects from containers with their outcomes: a docker app reaching
    // PostgreSQL (non-blocking: one connected, one refused; outcome records
    // after their connects), a pod's worker (blocking, connected).
    let tcp = |i: u64, comm: &str, cgroup: u64, ret: i64, sock: u64, daddr: [u8; 4], dport: u16| {
        let mut e: ConnectEvent = zeroed();
        e.h = header(KIND_CONNECT, i, comm, ret);
        e.h.cgroup_id = cgroup;
        e.sk_family = 2;
        e.sk_type = 1;
        e.sk_protocol = 6;
        e.sock_id = sock;
        e.sport = 40000 + i as u16;
        e.saddr[..4].copy_from_slice(&[172, 17, 0, 2]);
        e.addrlen = 16;
        e.addr[..4].copy_from_slice(&[2, 0, (dport >> 8) as u8, dport as u8]);
        e.addr[4..8].copy_from_slice(&daddr);
        e
    };
    let outcome = |c: &ConnectEvent, ret: i64| {
        let mut d: ConnectDoneEvent = zeroed();
        d.h.kind = KIND_CONNECT_DONE;
        d.h.ts_boot_ns = c.h.ts_boot_ns;
        d.h.latency_ns = 2_000_000;
        d.h.ret = ret;
        d.h.pid = c.h.pid;
        d.sock_id = c.sock_id;
        d.sport = c.sport;
        d.saddr = c.saddr;
        d
    };
    let ok = tcp(40, "app", cgroups.docker, -115, 1, [10, 0, 0, 5], 5432);
    let refused = tcp(41, "app", cgroups.docker, -115, 2, [10, 0, 0, 5], 5432);
    ingest.push(as_bytes(&ok));
    ingest.push(as_bytes(&refused));
    ingest.push(as_bytes(&outcome(&ok, 0)));
    ingest.push(as_bytes(&outcome(&refused, -111)));
    ingest.push(as_bytes(&tcp(42, "worker", cgroups.pod, 0, 3, [10, 0, 0, 6], 443)));
    // PostgreSQL accepting the app's connection
    let mut a: AcceptEvent = zeroed();
    a.h = header(KIND_ACCEPT, 45, "postgres", 7);
    a.h.syscall = SYS_ACCEPT4;
    a.fd = 5;
    (a.sk_family, a.sk_type, a.sk_protocol) = (2, 1, 6);
    a.laddr[..4].copy_from_slice(&[10, 0, 0, 5]);
    a.lport = 5432;
    a.raddr[..4].copy_from_slice(&[172, 17, 0, 2]);
    a.rport = 40040;
    ingest.push(as_bytes(&a));
    // Exits: a crash with a core dump in the container, a kill, a clean exit.
    for (i, comm, code, cgroup) in
        [(50, "crashy", 11 | 0x80, cgroups.docker), (51, "sleep", 9, host), (52, "true", 0, host)]
    {
        let mut e: ExitEvent = zeroed();
        e.h = header(KIND_EXIT, i, comm, 0);
        e.h.cgroup_id = cgroup;
        e.start_boot_ns = e.h.ts_boot_ns - 2_000_000_000;
        e.exit_code = code;
        ingest.push(as_bytes(&e));
    }
    ingest.flush();
    engine
}

/// A result as lines of ` | `-joined values, timestamps relative to boot.
fn render(batches: &[datafusion::arrow::record_batch::RecordBatch], boot: i64) -> Vec<String> {
    let opts = FormatOptions::default().with_null("NULL");
    let mut rows = Vec::new();
    for b in batches {
        let cols: Vec<Vec<String>> = b
            .columns()
            .iter()
            .map(|c| match c.as_any().downcast_ref::<TimestampNanosecondArray>() {
                Some(ts) => (0..ts.len())
                    .map(|r| {
                        if ts.is_null(r) {
                            "NULL".into()
                        } else {
                            format!("boot+{}s", (ts.value(r) - boot) as f64 / 1e9)
                        }
                    })
                    .collect(),
                None => {
                    let f = ArrayFormatter::try_new(c.as_ref(), &opts).unwrap();
                    (0..c.len()).map(|r| f.value(r).to_string()).collect()
                }
            })
            .collect();
        for r in 0..b.num_rows() {
            rows.push(cols.iter().map(|c| c[r].as_str()).collect::<Vec<_>>().join(" | "));
        }
    }
    rows
}

/// `tests/examples.expected`: `== file.sql` lines, each followed by its rows.
fn expected() -> BTreeMap<String, Vec<String>> {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/examples.expected");
    let text = std::fs::read_to_string(&path).unwrap_or_default();
    let mut out: BTreeMap<String, Vec<String>> = BTreeMap::new();
    let mut current = None;
    for line in text.lines() {
        if let Some(name) = line.strip_prefix("== ") {
            current = Some(name.trim().to_string());
            out.entry(name.trim().to_string()).or_default();
        } else if let (Some(name), false) = (&current, line.trim().is_empty() || line.starts_with('#')) {
            out.get_mut(name).unwrap().push(line.trim().to_string());
        }
    }
    out
}

use datafusion::arrow::array::Array;

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
    let boot = boot();
    let cgroups = Cgroups::new();
    let engine = synthetic_engine(boot, &cgroups);
    let expected = expected();
    let rt = tokio::runtime::Builder::new_multi_thread().enable_all().build().unwrap();
    let mut failures = Vec::new();
    for file in files {
        let sql = std::fs::read_to_string(&file).unwrap();
        let header = |key: &str| sql.lines().find_map(|l| l.strip_prefix(&format!("-- {key}:")).map(str::trim));
        assert!(header("name").is_some_and(|n| !n.is_empty()), "{}: no '-- name:' line", file.display());
        assert!(header("description").is_some_and(|n| !n.is_empty()), "{}: no '-- description:' line", file.display());
        // Live queries never end: tests/schedule.rs runs them.
        if header("schedule").is_some_and(|s| s.eq_ignore_ascii_case("live")) {
            continue;
        }
        let session = QuerySession::new(&engine, Policy::default()).unwrap();
        let batches = rt
            .block_on(async {
                let mut stream = session.run(&sql).await?;
                let mut out = Vec::new();
                while let Some(b) = stream.next().await {
                    out.push(b?);
                }
                Ok::<_, sysql_engine::query::QueryError>(out)
            })
            .unwrap_or_else(|e| panic!("{}: {e}", file.display()));
        let name = file.file_name().unwrap().to_string_lossy().to_string();
        // in any order: a query's ORDER BY may leave ties
        let mut got = render(&batches, boot);
        got.sort();
        let want = expected.get(&name).map(|w| {
            let mut w = w.clone();
            w.sort();
            w
        });
        match want.as_ref() {
            Some(want) if *want == got => {}
            Some(want) => {
                failures.push(format!("{name}: expected\n  {}\ngot\n  {}", want.join("\n  "), got.join("\n  ")))
            }
            None => failures
                .push(format!("{name}: no answer in tests/examples.expected; it gave\n== {name}\n{}", got.join("\n"))),
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n\n"));
}
