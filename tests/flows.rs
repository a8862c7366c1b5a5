//! Network flows, processes and containers with real syscalls (needs root):
//! the outcome of connects (blocking, non-blocking, late, refused, timed out,
//! unreachable), accepts in a network namespace of the test's own, exits of
//! killed and failing children, and cgroups made by hand to look like a
//! docker container and a Kubernetes pod. Every process asserted on is a
//! child of the test (sysql never traces itself), filtered by its pid.
//! Run as root: `cargo test -p sysql --test flows`.

mod common;

use clap::Parser;
use common::{query, TempDir};
use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdout, Command, Stdio};
use std::time::{Duration, Instant};
use sysql::app::{self, Running};

fn start(rt: &tokio::runtime::Runtime) -> Running {
    let args = sysql::cli::Args::parse_from(["sysql", "--history-memory", "256MiB"]);
    app::start(rt, &args).unwrap_or_else(|e| panic!("flow tests need root and a BTF kernel: {e}"))
}

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread().enable_all().build().unwrap()
}

fn strings(rows: &[&[&str]]) -> Vec<Vec<String>> {
    rows.iter().map(|r| r.iter().map(|s| s.to_string()).collect()).collect()
}

/// Rows of a query once at least `want` are there (up to 20 s): a connect's
/// row waits for its outcome.
fn rows_eventually(rt: &tokio::runtime::Runtime, running: &Running, sql: &str, want: usize) -> Vec<Vec<String>> {
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        rt.block_on(running.sync());
        let rows = query(rt, &common::session(running), sql);
        if rows.len() >= want || Instant::now() > deadline {
            return rows;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// Kills the child when dropped.
struct Guard(Child);

impl Drop for Guard {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// A network namespace of the test's own with only loopback up; deleted
/// when dropped.
struct Netns(String);

impl Netns {
    fn new(tag: &str) -> Netns {
        let name = format!("sysql-{tag}-{}", std::process::id());
        let _ = Command::new("ip").args(["netns", "del", &name]).output();
        run(Command::new("ip").args(["netns", "add", &name]));
        let ns = Netns(name);
        run(&mut ns.exec(&["ip", "link", "set", "lo", "up"]));
        ns
    }

    fn exec(&self, argv: &[&str]) -> Command {
        let mut cmd = Command::new("ip");
        cmd.args(["netns", "exec", &self.0]).args(argv);
        cmd
    }

    /// The namespace's id: the inode number of its nsfs file.
    fn inode(&self) -> u64 {
        use std::os::unix::fs::MetadataExt;
        std::fs::metadata(format!("/run/netns/{}", self.0)).unwrap().ino()
    }
}

impl Drop for Netns {
    fn drop(&mut self) {
        let _ = Command::new("ip").args(["netns", "del", &self.0]).output();
    }
}

fn run(cmd: &mut Command) -> String {
    let out = cmd.output().unwrap_or_else(|e| panic!("{cmd:?}: {e}"));
    assert!(out.status.success(), "{cmd:?} failed: {}", String::from_utf8_lossy(&out.stderr));
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// The lines a script printed, as words.
fn words(out: &str) -> Vec<Vec<String>> {
    out.lines().map(|l| l.split_whitespace().map(String::from).collect()).collect()
}

/// The line of `words` that starts with `tag`.
fn line<'a>(lines: &'a [Vec<String>], tag: &str) -> &'a [String] {
    lines.iter().find(|l| l[0] == tag).unwrap_or_else(|| panic!("no {tag} line in {lines:?}"))
}

fn read_line(out: &mut BufReader<ChildStdout>) -> String {
    let mut line = String::new();
    out.read_line(&mut line).unwrap();
    line.trim().to_string()
}

const CONNECTS: &str = r#"
import errno, os, select, socket, sys

def wait(s, seconds):
    _, w, _ = select.select([], [s], [], seconds)
    return s.getsockopt(socket.SOL_SOCKET, socket.SO_ERROR) if w else -1

mode = sys.argv[1]
print("pid", os.getpid(), flush=True)
if mode == "local":
    port_open, port_refused = int(sys.argv[2]), int(sys.argv[3])
    # non-blocking, unbound: connected
    s = socket.socket(); s.setblocking(False)
    r = s.connect_ex(("127.0.0.1", port_open)); e = wait(s, 10)
    print("open", r, e, s.getsockname()[1], flush=True)
    # non-blocking, bound first (so its port is known): refused
    s = socket.socket(); s.bind(("127.0.0.1", 0)); port = s.getsockname()[1]; s.setblocking(False)
    r = s.connect_ex(("127.0.0.1", port_refused)); e = wait(s, 10)
    print("refused", r, e, port, flush=True)
    # blocking, bound first: refused
    s = socket.socket(); s.bind(("127.0.0.1", 0)); port = s.getsockname()[1]
    print("blocking", s.connect_ex(("127.0.0.1", port_refused)), port, flush=True)
    # a listener whose accept queue is full drops SYNs: a non-blocking
    # connect to it is answered only by the retransmitted SYN, once the
    # queue has room (the outcome comes a second after the syscall)
    full = socket.socket(); full.bind(("127.0.0.1", 0)); full.listen(0)
    addr = full.getsockname()
    filler = socket.create_connection(addr)
    late = socket.socket(); late.setblocking(False)
    r = late.connect_ex(addr)
    print("late-started", r, flush=True)
    conn, _ = full.accept()
    e = wait(late, 10)
    print("late", r, e, late.getsockname()[1], flush=True)
    # ... and with one SYN retry allowed, and no room ever: timed out
    full2 = socket.socket(); full2.bind(("127.0.0.1", 0)); full2.listen(0)
    addr2 = full2.getsockname()
    filler2 = socket.create_connection(addr2)
    t = socket.socket(); t.bind(("127.0.0.1", 0)); port = t.getsockname()[1]
    t.setsockopt(socket.IPPROTO_TCP, socket.TCP_SYNCNT, 1); t.setblocking(False)
    r = t.connect_ex(addr2); e = wait(t, 20)
    print("timeout", r, e, port, flush=True)
else:
    # inside a namespace with only loopback: no route at all, and a route
    # that says unreachable; both fail inside connect, no packet is sent
    s = socket.socket(); s.setblocking(False)
    print("nonet", s.connect_ex(("10.255.255.1", 80)), flush=True)
    s = socket.socket(); s.setblocking(False)
    print("unreachable", s.connect_ex(("10.255.255.2", 80)), flush=True)
"#;

fn write_script(dir: &TempDir, name: &str, text: &str) -> PathBuf {
    let path = dir.join(name);
    std::fs::write(&path, text).unwrap();
    path
}

#[test]
fn connect_outcomes_blocking_non_blocking_late_and_failed() {
    let rt = runtime();
    let running = start(&rt);
    let dir = TempDir::new("flows-connect");
    let script = write_script(&dir, "connects.py", CONNECTS);
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let open = listener.local_addr().unwrap().port();
    let refused = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();

    let out = run(Command::new("python3").arg(&script).args(["local", &open.to_string(), &refused.to_string()]));
    let lines = words(&out);
    let pid = &line(&lines, "pid")[1];
    let open_line = line(&lines, "open");
    assert_eq!((open_line[1].as_str(), open_line[2].as_str()), ("115", "0"), "EINPROGRESS, then connected");
    let refused_line = line(&lines, "refused");
    assert_eq!(refused_line[2], "111", "refused");
    let blocking = line(&lines, "blocking");
    assert_eq!(blocking[1], "111");
    let late = line(&lines, "late");
    assert_eq!((late[1].as_str(), late[2].as_str()), ("115", "0"), "the late connect connected");
    let timeout = line(&lines, "timeout");
    assert_eq!((timeout[1].as_str(), timeout[2].as_str()), ("115", "110"), "timed out");

    let ns = Netns::new("connect");
    run(&mut ns.exec(&["ip", "route", "add", "unreachable", "10.255.255.2/32"]));
    let out = run(&mut ns.exec(&["python3", &script.display().to_string(), "netns"]));
    let ns_lines = words(&out);
    let ns_pid = &line(&ns_lines, "pid")[1];
    assert_eq!(line(&ns_lines, "nonet")[1], "101", "ENETUNREACH");
    assert_eq!(line(&ns_lines, "unreachable")[1], "113", "EHOSTUNREACH");

    let sql = format!(
        "SELECT dport, ret, errno, outcome, saddr, sport, outcome_ns >= 0, outcome_ns IS NULL, netns
         FROM connects WHERE pid IN ({pid}, {ns_pid}) AND family = 'inet' ORDER BY ts"
    );
    let rows = rows_eventually(&rt, &running, &sql, 9);
    let host_ns = std::fs::read_link("/proc/self/ns/net").unwrap().display().to_string();
    let host_ns = host_ns.trim_start_matches("net:[").trim_end_matches(']').to_string();
    let nsid = ns.inode().to_string();
    let (o, r) = (open.to_string(), refused.to_string());
    // the late and timed-out listeners' ports, from the rows themselves
    let full_port = &rows[3][0];
    let full2_port = &rows[5][0];
    let ret = |n: &str| format!("-{n}");
    let name = |n: &str| match n {
        "115" => "EINPROGRESS",
        "111" => "ECONNREFUSED",
        other => panic!("connect_ex gave {other}"),
    };
    let want = strings(&[
        &[
            &o,
            &ret(&open_line[1]),
            name(&open_line[1]),
            "connected",
            "127.0.0.1",
            &open_line[3],
            "true",
            "false",
            &host_ns,
        ],
        &[
            &r,
            &ret(&refused_line[1]),
            name(&refused_line[1]),
            "ECONNREFUSED",
            "127.0.0.1",
            &refused_line[3],
            "true",
            "false",
            &host_ns,
        ],
        &[&r, "-111", "ECONNREFUSED", "ECONNREFUSED", "127.0.0.1", &blocking[2], "true", "false", &host_ns],
        // the queue filler (blocking), then the late one
        &[full_port, "0", "NULL", "connected", "127.0.0.1", "NULL", "true", "false", &host_ns],
        &[full_port, "-115", "EINPROGRESS", "connected", "127.0.0.1", &late[3], "true", "false", &host_ns],
        &[full2_port, "0", "NULL", "connected", "127.0.0.1", "NULL", "true", "false", &host_ns],
        &[full2_port, "-115", "EINPROGRESS", "ETIMEDOUT", "127.0.0.1", &timeout[3], "true", "false", &host_ns],
        &["80", "-101", "ENETUNREACH", "ENETUNREACH", "NULL", "NULL", "true", "false", &nsid],
        &["80", "-113", "EHOSTUNREACH", "EHOSTUNREACH", "NULL", "NULL", "true", "false", &nsid],
    ]);
    // the fillers' local ports are not printed: take them from the rows
    let mut got = rows.clone();
    for i in [3, 5] {
        assert!(got[i][5].parse::<u16>().is_ok(), "filler's sport: {:?}", got[i]);
        got[i][5] = "NULL".into();
    }
    assert_eq!(got, want, "{rows:#?}");
    // The late outcome came about a second after the syscall returned; the
    // timeout after the SYN and its one retry (1 s + 2 s).
    let times = query(
        &rt,
        &common::session(&running),
        &format!(
            "SELECT outcome_ns > 500000000, latency_ns < 500000000 FROM connects WHERE pid = {pid} AND ret = -115
             AND outcome IN ('connected', 'ETIMEDOUT') AND dport <> {o} ORDER BY ts"
        ),
    );
    assert_eq!(times, strings(&[&["true", "true"], &["true", "true"]]));
}

#[test]
fn curl_connects_and_accepts_in_a_network_namespace() {
    let rt = runtime();
    let running = start(&rt);
    let dir = TempDir::new("flows-accept");
    std::fs::write(dir.join("hello.txt"), b"hello\n").unwrap();

    // curl against a local server: connected
    let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    let mut server = Guard(
        Command::new("python3")
            .args(["-m", "http.server", &port.to_string(), "--bind", "127.0.0.1"])
            .current_dir(dir.path())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap(),
    );
    let deadline = Instant::now() + Duration::from_secs(20);
    while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
        assert!(Instant::now() < deadline, "http.server did not start");
        std::thread::sleep(Duration::from_millis(20));
    }
    let mut curl = Command::new("curl");
    curl.args(["-s", "-o", "/dev/null"]).arg(format!("http://127.0.0.1:{port}/hello.txt"));
    let curl = curl_pid(curl);
    let rows = rows_eventually(
        &rt,
        &running,
        &format!("SELECT dport, outcome, saddr FROM connects WHERE pid = {curl} AND protocol = 'tcp'"),
        1,
    );
    assert_eq!(rows, strings(&[&[&port.to_string(), "connected", "127.0.0.1"]]));
    // the server side: one accept of curl's connection
    let server_pid = server.0.id();
    let accepted = rows_eventually(
        &rt,
        &running,
        &format!(
            "SELECT a.local_port, a.remote_port = c.sport, a.ret > 0 FROM accepts a JOIN connects c
             ON a.remote_port = c.sport AND c.pid = {curl} WHERE a.pid = {server_pid}"
        ),
        1,
    );
    assert_eq!(accepted, strings(&[&[&port.to_string(), "true", "true"]]));
    let _ = server.0.kill();

    // a server in a namespace of its own
    let ns = Netns::new("accept");
    let script = write_script(&dir, "accepts.py", ACCEPTS);
    let mut server =
        Guard(ns.exec(&["python3", &script.display().to_string(), "server"]).stdout(Stdio::piped()).spawn().unwrap());
    let mut out = BufReader::new(server.0.stdout.take().unwrap());
    let ready = read_line(&mut out);
    let port = ready.strip_prefix("ready ").unwrap_or_else(|| panic!("server said {ready:?}")).to_string();
    let client = run(&mut ns.exec(&["python3", &script.display().to_string(), "client", &port]));
    let client_ports: Vec<String> = client.split_whitespace().map(String::from).collect();
    assert_eq!(client_ports.len(), 2, "{client}");
    assert_eq!(read_line(&mut out), "done");
    let server_pid = server.0.id();
    assert!(server.0.wait().unwrap().success());
    let rows = rows_eventually(
        &rt,
        &running,
        &format!(
            "SELECT syscall, family, sock_type, protocol, local_addr, local_port, remote_addr, remote_port, ret > 0,
                    errno, netns FROM accepts WHERE pid = {server_pid} ORDER BY ts"
        ),
        3,
    );
    let nsid = ns.inode().to_string();
    let ok = |remote: &str| -> Vec<String> {
        ["accept4", "inet", "stream", "tcp", "127.0.0.1", &port, "127.0.0.1", remote, "true", "NULL", &nsid]
            .iter()
            .map(|s| s.to_string())
            .collect()
    };
    let mut want = vec![
        // a non-blocking accept before any client came
        ["accept4", "inet", "stream", "tcp", "NULL", "NULL", "NULL", "NULL", "false", "EAGAIN", &nsid]
            .iter()
            .map(|s| s.to_string())
            .collect(),
    ];
    want.push(ok(&client_ports[0]));
    want.push(ok(&client_ports[1]));
    assert_eq!(rows, want);
}

/// Runs a command to completion and returns its pid.
fn curl_pid(mut cmd: Command) -> u32 {
    let mut child = cmd.spawn().expect("curl runs");
    let pid = child.id();
    assert!(child.wait().unwrap().success());
    pid
}

const ACCEPTS: &str = r#"
import socket, sys
if sys.argv[1] == "server":
    s = socket.socket(); s.bind(("127.0.0.1", 0)); s.listen(8)
    s.setblocking(False)
    try:
        s.accept()
    except BlockingIOError:
        pass
    s.setblocking(True)
    print("ready", s.getsockname()[1], flush=True)
    for _ in range(2):
        c, _ = s.accept()
        c.close()
    print("done", flush=True)
else:
    ports = []
    for _ in range(2):
        c = socket.create_connection(("127.0.0.1", int(sys.argv[2])))
        ports.append(c.getsockname()[1])
        c.close()
    print(*ports)
"#;

#[test]
fn exits_of_killed_failing_and_threaded_children() {
    let rt = runtime();
    let running = start(&rt);
    let mut sleeper = Command::new("sleep").arg("60").spawn().unwrap();
    let killed = sleeper.id();
    sleeper.kill().unwrap();
    assert!(!sleeper.wait().unwrap().success());
    let mut three = Command::new("sh").args(["-c", "exit 3"]).spawn().unwrap();
    let three_pid = three.id();
    assert_eq!(three.wait().unwrap().code(), Some(3));
    // threads that end before the process are not rows of their own
    let mut threaded = Command::new("python3")
        .args(["-c", "import threading\nfor _ in range(3):\n t = threading.Thread(target=lambda: None); t.start(); t.join()\nraise SystemExit(4)"])
        .spawn()
        .unwrap();
    let threaded_pid = threaded.id();
    assert_eq!(threaded.wait().unwrap().code(), Some(4));
    let me = std::process::id();

    let rows = rows_eventually(
        &rt,
        &running,
        &format!(
            "SELECT pid, comm, exit_code, signal, core_dumped, lifetime_ns > 0, tid = pid, ppid FROM exits
             WHERE pid IN ({killed}, {three_pid}, {threaded_pid}) ORDER BY ts"
        ),
        3,
    );
    let (k, t, p, m) = (killed.to_string(), three_pid.to_string(), threaded_pid.to_string(), me.to_string());
    assert_eq!(
        rows,
        strings(&[
            &[&k, "sleep", "NULL", "SIGKILL", "false", "true", "true", &m],
            &[&t, "sh", "3", "NULL", "false", "true", "true", &m],
            &[&p, "python3", "4", "NULL", "false", "true", "true", &m],
        ])
    );
    let ctx = common::session(&running);
    let by_signal = query(
        &rt,
        &ctx,
        &format!("SELECT comm, signal FROM exits WHERE signal IS NOT NULL AND pid = {killed} AND ts > now() - INTERVAL '1 hour'"),
    );
    assert_eq!(by_signal, strings(&[&["sleep", "SIGKILL"]]));
}

/// Cgroup directories made by the test under the cgroup2 mount; removed
/// (deepest first) when dropped.
struct Cgroups {
    dirs: Vec<PathBuf>,
}

impl Cgroups {
    fn make(root: &Path, rel: &str) -> (Cgroups, PathBuf) {
        let mut dirs = Vec::new();
        let mut path = root.to_path_buf();
        for part in rel.split('/').filter(|p| !p.is_empty()) {
            path = path.join(part);
            if !path.exists() {
                std::fs::create_dir(&path).unwrap_or_else(|e| panic!("mkdir {}: {e}", path.display()));
                dirs.push(path.clone());
            }
        }
        (Cgroups { dirs }, path)
    }
}

impl Drop for Cgroups {
    fn drop(&mut self) {
        for dir in self.dirs.iter().rev() {
            let _ = std::fs::remove_dir(dir);
        }
    }
}

/// Runs `argv` inside the cgroup `dir`: a shell moves itself in, then execs.
fn in_cgroup(dir: &Path, argv: &str) -> u32 {
    let script = format!("echo $$ > {}/cgroup.procs && exec {argv}", dir.display());
    let mut child = Command::new("sh").args(["-c", &script]).stdout(Stdio::null()).spawn().unwrap();
    let pid = child.id();
    assert!(child.wait().unwrap().success(), "{script}");
    pid
}

#[test]
fn containers_from_hand_made_docker_and_kubepods_cgroups() {
    let mounts = std::fs::read_to_string("/proc/self/mounts").unwrap();
    let cg2 = sysql_engine::containers::cgroup2_mount(&mounts).expect("a cgroup2 mount");
    let rt = runtime();
    let running = start(&rt);
    let docker_id = "d0c4e5c0ffee0123456789abcdef0123456789abcdef0123456789abcdef0001";
    let pod_id = "c0a7a1e5c0ffee0123456789abcdef0123456789abcdef0123456789abcd0002";
    let uid = "1b2c3d4e-5f60-4718-9a2b-3c4d5e6f7a8b";
    // under a directory of the test's own (removed last), so nothing of
    // the host's is touched
    let (_top_dir, top) = Cgroups::make(&cg2, &format!("sysql-test-{}", std::process::id()));
    let (docker_dirs, docker) = Cgroups::make(&top, &format!("system.slice/docker-{docker_id}.scope"));
    let (_pod_dirs, pod) = Cgroups::make(
        &top,
        &format!(
            "kubepods.slice/kubepods-besteffort.slice/kubepods-besteffort-pod{}.slice/cri-containerd-{pod_id}.scope",
            uid.replace('-', "_")
        ),
    );
    let dir = TempDir::new("flows-cgroups");
    let file = dir.join("marker");
    std::fs::write(&file, b"x").unwrap();
    let f = file.display().to_string();
    let in_docker = in_cgroup(&docker, &format!("cat {f}"));
    let in_pod = in_cgroup(&pod, &format!("cat {f}"));

    let sql = format!(
        "SELECT o.pid, k.runtime, k.container_id, k.container_id_short, k.pod_uid, k.qos, o.container_id = k.container_id,
                k.cgroup_path LIKE '%.scope', k.removed IS NULL
         FROM opens o JOIN containers k ON o.cgroup_id = k.cgroup_id
         WHERE o.pid IN ({in_docker}, {in_pod}) AND o.path = '{f}' ORDER BY o.ts"
    );
    let rows = rows_eventually(&rt, &running, &sql, 2);
    assert_eq!(
        rows,
        strings(&[
            &[&in_docker.to_string(), "docker", docker_id, &docker_id[..12], "NULL", "NULL", "true", "true", "true"],
            &[&in_pod.to_string(), "containerd", pod_id, &pod_id[..12], uid, "besteffort", "true", "true", "true"],
        ])
    );

    // The seed question: successful outbound TCP connections by container,
    // with curl in the docker cgroup against a local server.
    std::fs::write(dir.join("hello.txt"), b"hello\n").unwrap();
    let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    let _server = Guard(
        Command::new("python3")
            .args(["-m", "http.server", &port.to_string(), "--bind", "127.0.0.1"])
            .current_dir(dir.path())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap(),
    );
    let deadline = Instant::now() + Duration::from_secs(20);
    while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
        assert!(Instant::now() < deadline, "http.server did not start");
        std::thread::sleep(Duration::from_millis(20));
    }
    let curl = in_cgroup(&docker, &format!("curl -s -o /dev/null http://127.0.0.1:{port}/hello.txt"));
    let seed = std::fs::read_to_string(
        Path::new(env!("CARGO_MANIFEST_DIR")).join("../../sql-examples/outbound-tcp-by-container.sql"),
    )
    .unwrap();
    // the saved query, narrowed to this test's server port
    let narrowed = seed.replace("WHERE ", &format!("WHERE dport = {port} AND "));
    assert_ne!(narrowed, seed);
    let rows = rows_eventually(&rt, &running, &narrowed, 1);
    assert_eq!(rows, strings(&[&[docker_id, "docker", "1"]]));
    let who = query(
        &rt,
        &common::session(&running),
        &format!("SELECT container_id FROM connects WHERE pid = {curl} AND protocol = 'tcp'"),
    );
    assert_eq!(who, strings(&[&[docker_id]]));

    // Removed directories are marked as such by the next walk.
    let docker_id_sql = format!(
        "SELECT removed IS NOT NULL FROM containers WHERE container_id = '{docker_id}' AND cgroup_path LIKE '%.scope'"
    );
    drop(docker_dirs);
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let rows = query(&rt, &common::session(&running), &docker_id_sql);
        if rows == strings(&[&["true"]]) {
            break;
        }
        assert!(Instant::now() < deadline, "the removed cgroup is still shown as present: {rows:?}");
        std::thread::sleep(Duration::from_millis(100));
    }
}
