//! Capture tests: load the real kernel programs (needs root), make known
//! syscalls from a probe process of our own, and assert the exact rows sysql
//! gives for them. Run as root: `cargo test -p sysql --test capture`.

mod common;

use clap::Parser;
use common::{compile_probe, query, session, TempDir};
use std::net::{TcpListener, UdpSocket};
use std::os::unix::net::UnixListener;
use std::process::Command;
use sysql::app::{self, Running};

fn start(rt: &tokio::runtime::Runtime, ring: u64) -> Running {
    let ring = ring.to_string();
    let args = sysql::cli::Args::parse_from(["sysql", "--history-memory", "256MiB", "--ring-size", &ring]);
    app::start(rt, &args).unwrap_or_else(|e| panic!("capture tests need root and a BTF kernel: {e}"))
}

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread().enable_all().build().unwrap()
}

#[test]
fn probe_syscalls_appear_with_exact_fields() {
    let rt = runtime();
    let running = start(&rt, 32 << 20);
    let dir = TempDir::new("capture");
    std::fs::write(dir.join("exists"), b"x").unwrap();
    let probe = compile_probe(&dir);

    let tcp = TcpListener::bind("127.0.0.1:0").unwrap();
    let tcp_port = tcp.local_addr().unwrap().port();
    let refused_port = {
        let l = TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap().port()
    };
    let tcp6 = TcpListener::bind("[::1]:0").unwrap();
    let tcp6_port = tcp6.local_addr().unwrap().port();
    let unix_path = dir.join("probe.sock");
    let _unix = UnixListener::bind(&unix_path).unwrap();
    let _dns = UdpSocket::bind("127.0.0.53:0").ok();

    // sysql ignores its own process: this open must not appear.
    let _ = std::fs::File::open(dir.join("self-open"));

    let t0 = app::now_ns();
    let status = Command::new(&probe)
        .arg(dir.path())
        .args([tcp_port.to_string(), refused_port.to_string(), tcp6_port.to_string()])
        .arg(&unix_path)
        .status()
        .unwrap();
    // the probe ends by exec'ing /bin/true
    assert!(status.success(), "probe failed: {status}");
    let t1 = app::now_ns();
    let me = std::process::id();
    rt.block_on(running.sync());

    let d = dir.path().display().to_string();
    let ctx = session(&running);

    // the probe's pid, from its own exec
    let rows =
        query(&rt, &ctx, &format!("SELECT pid FROM execs WHERE filename = '{}' AND ppid = {me}", probe.display()));
    assert_eq!(rows.len(), 1, "exactly one exec of the probe: {rows:?}");
    let pid: u32 = rows[0][0].parse().unwrap();

    let opens = query(
        &rt,
        &ctx,
        &format!(
            "SELECT syscall, dfd, path, flags, flags_text, mode, ret, errno, path_truncated, comm, uid, gid,
                    ppid, tid = pid, cgroup_id > 0, latency_ns > 0, ts >= to_timestamp_nanos({t0}) AND ts <= to_timestamp_nanos({t1})
             FROM opens WHERE pid = {pid} AND path LIKE '{d}/%' ORDER BY ts"
        ),
    );
    let ok = |s: &str| s.to_string();
    let tail = [
        ok("false"),
        ok("sysql-probe"),
        ok("0"),
        ok("0"),
        me.to_string(),
        ok("true"),
        ok("true"),
        ok("true"),
        ok("true"),
    ];
    let row =
        |cols: &[&str]| -> Vec<String> { cols.iter().map(|s| s.to_string()).chain(tail.iter().cloned()).collect() };
    assert_eq!(
        opens,
        vec![
            row(&["open", "-100", &format!("{d}/exists"), "0", "O_RDONLY", "0", "3", "NULL"]),
            row(&["openat", "-100", &format!("{d}/missing"), "524288", "O_RDONLY|O_CLOEXEC", "0", "-2", "ENOENT"]),
            row(&["openat2", "-100", &format!("{d}/exists"), "524288", "O_RDONLY|O_CLOEXEC", "0", "3", "NULL"]),
            row(&["creat", "-100", &format!("{d}/created"), "577", "O_WRONLY|O_CREAT|O_TRUNC", "416", "3", "NULL"]),
        ]
    );

    let connects = query(
        &rt,
        &ctx,
        &format!(
            "SELECT syscall, fd, family, sock_type, protocol, daddr, dport, unix_path, ret, errno, comm, ppid
             FROM connects WHERE pid = {pid} ORDER BY ts"
        ),
    );
    let c = |cols: &[&str]| -> Vec<String> {
        cols.iter().map(|s| s.to_string()).chain([ok("sysql-probe"), me.to_string()]).collect()
    };
    let (p4, pr, p6) = (tcp_port.to_string(), refused_port.to_string(), tcp6_port.to_string());
    let up = unix_path.display().to_string();
    assert_eq!(
        connects,
        vec![
            c(&["connect", "3", "inet", "stream", "tcp", "127.0.0.1", &p4, "NULL", "0", "NULL"]),
            c(&["connect", "3", "inet", "stream", "tcp", "127.0.0.1", &pr, "NULL", "-111", "ECONNREFUSED"]),
            c(&["connect", "3", "inet6", "stream", "tcp", "::1", &p6, "NULL", "0", "NULL"]),
            c(&["connect", "3", "unix", "stream", "NULL", "NULL", "NULL", &up, "0", "NULL"]),
            c(&["connect", "3", "inet", "dgram", "udp", "127.0.0.53", "53", "NULL", "0", "NULL"]),
        ]
    );

    let execs = query(
        &rt,
        &ctx,
        &format!(
            "SELECT syscall, filename, argv, argc, argv_truncated, ret, errno, comm, ppid, uid
             FROM execs WHERE pid = {pid} ORDER BY ts"
        ),
    );
    let probe_argv = format!("{} {d} {p4} {pr} {p6} {up}", probe.display());
    let me_s = me.to_string();
    let e = |cols: &[&str]| -> Vec<String> { cols.iter().map(|s| s.to_string()).collect() };
    assert_eq!(
        execs,
        vec![
            e(&[
                "execve",
                &probe.display().to_string(),
                &probe_argv,
                "6",
                "false",
                "0",
                "NULL",
                "sysql-probe",
                &me_s,
                "0"
            ]),
            e(&[
                "execve",
                &format!("{d}/missing-binary"),
                "missing-binary --sysql-probe=failed",
                "2",
                "false",
                "-2",
                "ENOENT",
                "sysql-probe",
                &me_s,
                "0"
            ]),
            e(&[
                "execve",
                "/bin/true",
                "/bin/true sysql-probe-exec two words",
                "3",
                "false",
                "0",
                "NULL",
                "true",
                &me_s,
                "0"
            ]),
        ]
    );

    // sysql never traces itself
    let own = query(&rt, &ctx, &format!("SELECT count(*) FROM opens WHERE path = '{d}/self-open'"));
    assert_eq!(own, vec![vec!["0".to_string()]]);
    let own = query(&rt, &ctx, &format!("SELECT count(*) FROM opens WHERE pid = {me}"));
    assert_eq!(own, vec![vec!["0".to_string()]]);

    // the questions run
    let q = query(
        &rt,
        &ctx,
        "SELECT comm, count(*) FROM connects WHERE protocol = 'tcp' AND ts > now() - INTERVAL '1 hour' \
         AND comm = 'sysql-probe' GROUP BY comm ORDER BY 2 DESC",
    );
    assert!(q.iter().any(|r| r[0] == "sysql-probe" && r[1].parse::<u64>().unwrap() >= 3), "{q:?}");
    let failed =
        query(&rt, &ctx, &format!("SELECT comm, filename, argv, errno FROM execs WHERE ret < 0 AND pid = {pid}"));
    assert_eq!(failed.len(), 1);

    let stats = query(
        &rt,
        &ctx,
        "SELECT table_name, captured > 0 FROM sysql_stats WHERE table_name IN ('connects', 'execs', 'opens')
         ORDER BY table_name",
    );
    assert_eq!(stats, vec![e(&["connects", "true"]), e(&["execs", "true"]), e(&["opens", "true"])]);
}

#[test]
fn a_full_ring_buffer_is_counted_as_lost() {
    let rt = runtime();
    // one page: room for about ten open records
    let running = start(&rt, 4096);
    let dir = TempDir::new("lost");
    let probe = compile_probe(&dir);
    const N: u64 = 20_000;
    let status = Command::new(&probe).arg("burst").arg(dir.path()).arg(N.to_string()).status().unwrap();
    assert!(status.success());
    rt.block_on(running.sync());
    let ctx = session(&running);
    let d = dir.path().display();
    let seen: u64 =
        query(&rt, &ctx, &format!("SELECT count(*) FROM opens WHERE path LIKE '{d}/burst-%'"))[0][0].parse().unwrap();
    let lost: u64 =
        query(&rt, &ctx, "SELECT lost_kernel FROM sysql_stats WHERE table_name = 'opens'")[0][0].parse().unwrap();
    assert!(seen < N, "a 4 KiB ring cannot hold a burst of {N}: saw {seen}");
    // other processes may lose events too, so at least the burst's are counted
    assert!(lost >= N - seen, "{} burst events missing but only {lost} counted lost", N - seen);
}

#[test]
fn live_connects_join_the_exec_history_of_their_process() {
    use datafusion::arrow::array::{Array, StringArray, UInt16Array};
    use futures::StreamExt;

    let rt = runtime();
    let running = start(&rt, 32 << 20);
    let dir = TempDir::new("join");
    std::fs::write(dir.join("exists"), b"x").unwrap();
    let probe = compile_probe(&dir);
    let tcp = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = tcp.local_addr().unwrap().port();
    let unix_path = dir.join("j.sock");
    let _unix = UnixListener::bind(&unix_path).unwrap();
    // The shell is exec'd now (into history); once the live query has
    // subscribed, the test writes to a FIFO and the same pid execs the
    // probe, whose connects arrive live.
    let go = dir.join("go");
    assert!(Command::new("mkfifo").arg(&go).status().unwrap().success());
    let script = format!(
        "read line < {}; exec {} {} {port} {port} {port} {}",
        go.display(),
        probe.display(),
        dir.path().display(),
        unix_path.display()
    );
    let mut child = Command::new("/bin/sh").args(["-c", &script, "sysql-join-marker"]).spawn().unwrap();
    let pid = child.id();
    let ctx = session(&running);
    // Ready when the shell's exec is in history (the probe waits for the FIFO).
    let shell_exec = format!("SELECT count(*) FROM execs WHERE pid = {pid} AND filename = '/bin/sh'");
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    while query(&rt, &ctx, &shell_exec)[0][0] == "0" {
        assert!(std::time::Instant::now() < deadline, "the shell's exec never reached history");
    }
    let sql = format!(
        "SELECT c.dport, e.argv FROM live.connects c JOIN execs e ON e.pid = c.pid \
         WHERE c.pid = {pid} AND e.filename = '/bin/sh' AND c.family = 'inet' AND c.protocol = 'tcp'"
    );
    let rows = rt.block_on(async {
        let mut stream = ctx.run(&sql).await.unwrap();
        assert_eq!(stream.kind(), sysql_engine::query::Kind::Live, "a join with a live table is live");
        // once the live scan has subscribed (on the stream's first poll,
        // below), the probe goes
        let live = running.engine.live().clone();
        let go = go.clone();
        std::thread::spawn(move || {
            let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
            while live.subscribers(sysql_events::Table::Connects) == 0 {
                assert!(std::time::Instant::now() < deadline, "the live scan never subscribed");
                std::thread::yield_now();
            }
            std::fs::write(&go, "go\n").unwrap();
        });
        let mut rows = Vec::new();
        while rows.len() < 2 {
            let next = tokio::time::timeout(std::time::Duration::from_secs(10), stream.next()).await;
            let Ok(Some(batch)) = next else { break };
            let batch = batch.unwrap();
            let port = batch.column(0).as_any().downcast_ref::<UInt16Array>().unwrap();
            let argv = batch.column(1).as_any().downcast_ref::<StringArray>().unwrap();
            for i in 0..batch.num_rows() {
                rows.push((port.value(i), argv.value(i).to_string()));
            }
        }
        rows
    });
    assert!(child.wait().unwrap().success());
    let argv = format!("/bin/sh -c {script} sysql-join-marker");
    // two TCP connects to 127.0.0.1 (the listener, then the same port as "refused")
    assert_eq!(rows, vec![(port, argv.clone()), (port, argv)]);
}

/// A static program that opens each of its arguments: no dynamic loader, so
/// these are all the opens it makes; its comm is the name it is copied to.
fn compile_opener(dir: &TempDir, name: &str) -> std::path::PathBuf {
    let src = dir.join("opener.c");
    std::fs::write(
        &src,
        "#include <fcntl.h>\n#include <unistd.h>\nint main(int c, char **v) {\n\
         for (int i = 1; i < c; i++) { int fd = open(v[i], O_RDONLY); if (fd >= 0) close(fd); }\n\
         return 0; }\n",
    )
    .unwrap();
    let exe = dir.join(name);
    let status = Command::new("cc").args(["-static", "-O1", "-o"]).arg(&exe).arg(&src).status().expect("cc runs");
    assert!(status.success(), "compiling the opener failed (a static libc is in libc6-dev)");
    exe
}

fn start_filtered(rt: &tokio::runtime::Runtime, filter: &[&str]) -> Running {
    let mut argv = vec!["sysql", "--history-memory", "256MiB"];
    argv.extend(filter);
    let args = sysql::cli::Args::parse_from(argv);
    app::start(rt, &args).unwrap_or_else(|e| panic!("capture tests need root and a BTF kernel: {e}"))
}

#[test]
fn the_kernel_skips_what_the_capture_filter_excludes_and_counts_it() {
    let rt = runtime();
    let dir = TempDir::new("exclude");
    let d = dir.path().display().to_string();
    let skip = format!("path={d}/skip");
    let kept = compile_opener(&dir, "sq-kept");
    let excluded = compile_opener(&dir, "sq-excluded");
    let running = start_filtered(&rt, &["--capture-exclude", "comm=sq-excluded", "--capture-exclude", &skip]);
    std::fs::write(dir.join("keep"), b"x").unwrap();

    // sq-kept: one open kept, two skipped by path (whether or not the file exists)
    let status = Command::new(&kept).args([dir.join("keep"), dir.join("skip-1"), dir.join("skip-2")]).status();
    assert!(status.unwrap().success());
    // sq-excluded: skipped by comm, both opens and its exit
    assert!(Command::new(&excluded).args([dir.join("keep"), dir.join("other")]).status().unwrap().success());
    rt.block_on(running.sync());

    let ctx = session(&running);
    let opens = query(&rt, &ctx, &format!("SELECT comm, path FROM opens WHERE path LIKE '{d}/%' ORDER BY ts"));
    assert_eq!(opens, vec![vec!["sq-kept".to_string(), format!("{d}/keep")]]);
    let exits = query(&rt, &ctx, "SELECT comm FROM exits WHERE comm IN ('sq-kept', 'sq-excluded') ORDER BY ts");
    assert_eq!(exits, vec![vec!["sq-kept".to_string()]]);
    let stats = query(
        &rt,
        &ctx,
        "SELECT table_name, filtered_kernel, kernel_filter FROM sysql_stats
         WHERE table_name IN ('opens', 'exits', 'connects') ORDER BY table_name",
    );
    let row = |t: &str, n: &str, f: &str| vec![t.to_string(), n.to_string(), f.to_string()];
    assert_eq!(
        stats,
        vec![
            row("connects", "0", "exclude comm=sq-excluded"),
            row("exits", "1", "exclude comm=sq-excluded"),
            row("opens", "4", &format!("exclude comm=sq-excluded, {skip}")),
        ]
    );
    // a history query over a filtered table says so; EXPLAIN shows the filter
    let prepared = rt.block_on(ctx.prepare_sql("SELECT count(*) FROM opens")).unwrap();
    assert_eq!(prepared.notices().len(), 1, "{:?}", prepared.notices());
    assert!(prepared.notices()[0].starts_with("opens: its capture is filtered in the kernel (exclude comm=sq-excluded"));
    let explain = query(&rt, &ctx, "EXPLAIN SELECT count(*) FROM live.opens WHERE comm = 'x'");
    let last = explain.last().unwrap();
    assert_eq!(last, &vec!["kernel_filter".to_string(), format!("opens: exclude comm=sq-excluded, {skip}")]);
}

#[test]
fn the_kernel_captures_only_what_the_capture_filter_names() {
    let rt = runtime();
    let dir = TempDir::new("only");
    let d = dir.path().display().to_string();
    let only = compile_opener(&dir, "sq-only");
    let other = compile_opener(&dir, "sq-other");
    let running = start_filtered(&rt, &["--capture-only", "comm=sq-only", "--capture-only", "syscall=openat"]);
    assert!(Command::new(&only).args([dir.join("a"), dir.join("b")]).status().unwrap().success());
    assert!(Command::new(&other).arg(dir.join("c")).status().unwrap().success());
    let tcp = TcpListener::bind("127.0.0.1:0").unwrap();
    let _ = std::net::TcpStream::connect(tcp.local_addr().unwrap());
    rt.block_on(running.sync());

    let ctx = session(&running);
    let opens = query(&rt, &ctx, &format!("SELECT comm, path FROM opens WHERE path LIKE '{d}/%' ORDER BY ts"));
    let e = |c: &str, p: &str| vec![c.to_string(), format!("{d}/{p}")];
    assert_eq!(opens, vec![e("sq-only", "a"), e("sq-only", "b")]);
    // nothing but sq-only's openat calls: no connect, no exit of sq-other
    let others = query(
        &rt,
        &ctx,
        "SELECT (SELECT count(*) FROM connects) + (SELECT count(*) FROM accepts) + (SELECT count(*) FROM execs)
              + (SELECT count(*) FROM opens WHERE comm <> 'sq-only' OR syscall <> 'openat')",
    );
    assert_eq!(others, vec![vec!["0".to_string()]]);
}

#[test]
fn with_history_off_live_queries_narrow_the_kernel_filter_to_what_they_read() {
    use futures::StreamExt;
    use sysql_events::Table;

    let rt = runtime();
    let dir = TempDir::new("narrow");
    let d = dir.path().display().to_string();
    let wanted = compile_opener(&dir, "sq-wanted");
    let other = compile_opener(&dir, "sq-unwanted");
    let running = start_filtered(&rt, &["--history", "0"]);
    let ctx = session(&running);
    let stats = running.engine.stats().clone();
    let filter_now = move || stats.kernel_filter_now(Table::Opens).map(|f| f.to_string());
    let narrowed = format!("only comm=sq-wanted, path={d}/");
    let sql = format!("SELECT path FROM live.opens WHERE comm = 'sq-wanted' AND path LIKE '{d}/%'");

    // EXPLAIN says what the kernel will capture while the query runs
    let explain = query(&rt, &ctx, &format!("EXPLAIN {sql}"));
    let syscalls = "syscall in (creat, open, openat, openat2)";
    let explained = format!("live.opens: {narrowed}, {syscalls}, while the query runs (history is off)");
    let row = vec!["kernel_filter".to_string(), explained];
    assert!(explain.contains(&row), "{explain:?}");
    assert_eq!(filter_now(), None, "nothing runs: the capture is whole");

    let filtered = |ctx: &sysql_engine::query::QuerySession| -> u64 {
        query(&rt, ctx, "SELECT filtered_kernel FROM sysql_stats WHERE table_name = 'opens'")[0][0].parse().unwrap()
    };
    let before = filtered(&ctx);
    let stream = rt.block_on(ctx.run(&sql)).unwrap();
    let (tx, rx) = std::sync::mpsc::channel();
    let reader = rt.spawn(async move {
        let mut stream = stream;
        while let Some(batch) = stream.next().await {
            for row in common::rows(&[batch.unwrap()]) {
                tx.send(row[0].clone()).unwrap();
            }
        }
    });
    // Ready when the kernel applies the query's narrowing (it subscribes then).
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    while filter_now().as_deref() != Some(narrowed.as_str()) {
        assert!(std::time::Instant::now() < deadline, "the kernel filter never narrowed: {:?}", filter_now());
        std::thread::yield_now();
    }
    // no syscall but the opens' is traced for it: connects are skipped whole
    let connects = running.engine.stats().kernel_filter_now(Table::Connects).map(|f| f.to_string());
    let only_opens = "only comm=sq-wanted, syscall=creat, syscall=open, syscall=openat, syscall=openat2";
    assert_eq!(connects.as_deref(), Some(only_opens));
    // two opens the query reads; one of another program and one outside the
    // directory, which the kernel skips
    assert!(Command::new(&other).arg(dir.join("a")).status().unwrap().success());
    assert!(Command::new(&wanted)
        .args([dir.join("a"), "/etc/hostname".into(), dir.join("b")])
        .status()
        .unwrap()
        .success());
    let timeout = std::time::Duration::from_secs(10);
    let got: Vec<String> = (0..2).map(|_| rx.recv_timeout(timeout).expect("a live row")).collect();
    assert_eq!(got, vec![format!("{d}/a"), format!("{d}/b")]);
    rt.block_on(running.sync());
    let skipped = filtered(&ctx) - before;
    assert!(skipped >= 2, "the kernel skipped {skipped} opens, the test made 2 it should skip");

    // the query ends: the filter is lifted before the next statement runs
    reader.abort();
    let _ = rt.block_on(reader);
    rt.block_on(running.sync());
    assert_eq!(filter_now(), None);
    assert_eq!(
        query(&rt, &ctx, "SELECT kernel_filter FROM sysql_stats WHERE table_name = 'opens'"),
        vec![vec!["NULL"]]
    );
}

/// Opens are sent at their exact length (the path's bytes and a NUL): paths
/// of every size up to the buffer's come back whole, longer ones cut at 255
/// bytes and marked, and a short record after a long one carries nothing of it.
#[test]
fn paths_of_every_length_come_back_exactly() {
    let rt = runtime();
    let running = start(&rt, 32 << 20);
    let dir = TempDir::new("lengths");
    let opener = compile_opener(&dir, "sq-lengths");
    // relative paths that do not exist: the opens fail, their paths are as given
    let lengths = [1usize, 7, 8, 9, 254, 255, 256, 300, 2];
    let paths: Vec<String> = lengths
        .iter()
        .enumerate()
        .map(|(i, &n)| format!("{}{}", (b'a' + i as u8) as char, "x".repeat(n - 1)))
        .collect();
    assert!(Command::new(&opener).current_dir(dir.path()).args(&paths).status().unwrap().success());
    rt.block_on(running.sync());
    let ctx = session(&running);
    let got = query(&rt, &ctx, "SELECT path, path_truncated FROM opens WHERE comm = 'sq-lengths' ORDER BY ts");
    let expected: Vec<Vec<String>> =
        paths.iter().map(|p| vec![p[..p.len().min(255)].to_string(), (p.len() > 255).to_string()]).collect();
    assert_eq!(got, expected);
}

/// sysql maps the ring's data pages once, so a record that runs past the
/// ring's end is read in two parts: with a 64 KiB ring, 600 opens of every
/// path length wrap it several times, and each comes back whole.
#[test]
fn records_that_wrap_around_the_ring_come_back_whole() {
    let rt = runtime();
    // only the opener's events: the other tests' go to every capture's ring
    let running = start_filtered(&rt, &["--ring-size", "64KiB", "--capture-only", "comm=sq-wrap"]);
    let dir = TempDir::new("wrap");
    let opener = compile_opener(&dir, "sq-wrap");
    let paths: Vec<String> = (0..600usize).map(|i| format!("{i:03}{}", "w".repeat(i * 7 % 252))).collect();
    // batches of 30 (under 8 KiB of records), each read before the next
    for batch in paths.chunks(30) {
        assert!(Command::new(&opener).current_dir(dir.path()).args(batch).status().unwrap().success());
        rt.block_on(running.sync());
    }
    let ctx = session(&running);
    let got: Vec<String> = query(&rt, &ctx, "SELECT path FROM opens WHERE comm = 'sq-wrap' ORDER BY path")
        .into_iter()
        .map(|row| row[0].clone())
        .collect();
    let bytes: u64 = paths.iter().map(|p| 104 + p.len() as u64 + 1 + 8).sum();
    assert!(bytes > 2 * (64 << 10), "the opens alone wrap the ring twice ({bytes} bytes)");
    assert_eq!(got, paths);
}
