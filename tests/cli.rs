//! The `sysql` binary as users run it: one-shot output and exit statuses,
//! set-up errors, and the shell driven through its standard input. Needs
//! root (the binary loads its kernel programs).

mod common;

use common::TempDir;
use std::os::unix::fs::PermissionsExt;
use std::process::{Command, Output, Stdio};

fn sysql() -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_sysql"));
    c.env_remove("SYSQL_BTF_PATH");
    c
}

fn run(args: &[&str]) -> Output {
    sysql().args(args).output().unwrap()
}

fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

/// What sysql says on stderr once every program is attached.
const CAPTURING: &str = "sysql: capturing since ";

/// stderr without the line that says capture is complete.
fn errors(b: &[u8]) -> String {
    text(b).lines().filter(|l| !l.starts_with(CAPTURING)).map(|l| format!("{l}\n")).collect()
}

/// A running sysql whose stderr lines arrive on a channel.
struct Running {
    child: std::process::Child,
    stderr: std::sync::mpsc::Receiver<String>,
    seen: Vec<String>,
}

impl Running {
    fn spawn(args: &[&str]) -> Running {
        let mut child = sysql().args(args).stdout(Stdio::piped()).stderr(Stdio::piped()).spawn().unwrap();
        let err = child.stderr.take().unwrap();
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            use std::io::BufRead;
            for line in std::io::BufReader::new(err).lines() {
                let Ok(line) = line else { break };
                if tx.send(line).is_err() {
                    break;
                }
            }
        });
        Running { child, stderr: rx, seen: Vec::new() }
    }

    /// Waits (at most 60 s) for the line that says capture is complete.
    fn capturing(&mut self) {
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
        loop {
            let left = deadline.saturating_duration_since(std::time::Instant::now());
            match self.stderr.recv_timeout(left) {
                Ok(line) if line.starts_with(CAPTURING) => return,
                Ok(line) => self.seen.push(line),
                Err(_) => panic!("sysql never said it was capturing; stderr: {:?}", self.seen),
            }
        }
    }

    /// Waits for the end; returns the status, stdout, and the rest of stderr.
    fn finish(mut self) -> (std::process::ExitStatus, String, String) {
        let mut stdout = String::new();
        use std::io::Read;
        self.child.stdout.take().unwrap().read_to_string(&mut stdout).unwrap();
        let status = self.child.wait().unwrap();
        let mut err = self.seen.join("\n");
        for line in self.stderr.iter() {
            if !line.starts_with(CAPTURING) {
                err.push_str(&line);
                err.push('\n');
            }
        }
        (status, stdout, err)
    }
}

#[test]
fn one_shot_csv_and_exit_zero() {
    let out = run(&["-c", "SELECT 40 + 2 AS answer, 'x' AS s", "--format", "csv"]);
    assert_eq!(text(&out.stdout), "answer,s\n42,x\n", "stderr: {}", text(&out.stderr));
    assert_eq!(out.status.code(), Some(0));
}

#[test]
fn one_shot_json_formats() {
    let out = run(&["-c", "SELECT 1 AS a, 'b' AS b", "--format", "ndjson"]);
    assert_eq!(text(&out.stdout), "{\"a\":1,\"b\":\"b\"}\n");
    let out = run(&["-c", "SELECT 1 AS a UNION ALL SELECT 2 ORDER BY a", "--format", "json"]);
    assert_eq!(text(&out.stdout).split_whitespace().collect::<String>(), "[{\"a\":1},{\"a\":2}]");
}

#[test]
fn sql_errors_exit_one_with_one_line() {
    for sql in ["SELEC 1", "SELECT * FROM no_such_table", "SELECT nope FROM opens"] {
        let out = run(&["-c", sql]);
        assert_eq!(out.status.code(), Some(1), "{sql}");
        let err = errors(&out.stderr);
        assert!(err.starts_with("sysql: ") && err.trim_end().lines().count() == 1, "{sql}: {err:?}");
    }
}

/// The globals and maps sysql's loader expects, and one program that reads
/// through a NULL pointer: the verifier must refuse it.
const BAD_PROGRAM: &str = r#"
#include <linux/bpf.h>
#include <bpf/bpf_helpers.h>
char LICENSE[] SEC("license") = "GPL";
const volatile __u32 sysql_self_tgid = 0;
const volatile __u64 sysql_wakeup_bytes = 0;
const volatile __u32 sysql_snap_len = 0;
struct { __uint(type, BPF_MAP_TYPE_RINGBUF); __uint(max_entries, 4096); } sysql_events SEC(".maps");
struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, 6);
	__type(key, __u32);
	__type(value, __u64);
} sysql_lost SEC(".maps");
SEC("tracepoint/sched/sched_process_exec")
int sched_process_exec(void *ctx)
{
	volatile int *p = 0;
	return *p;
}
"#;

#[test]
fn setup_errors_exit_two_and_say_what_to_do() {
    // not root: drop to nobody with no capabilities
    let out = Command::new("setpriv")
        .args(["--reuid=65534", "--regid=65534", "--clear-groups", "--inh-caps=-all", "--bounding-set=-all"])
        .arg(env!("CARGO_BIN_EXE_sysql"))
        .args(["-c", "SELECT 1"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2), "{}", text(&out.stderr));
    assert_eq!(
        text(&out.stderr).trim(),
        "sysql: permission denied: sysql needs root (or CAP_BPF, CAP_PERFMON and CAP_DAC_READ_SEARCH) to load its eBPF programs; run it with sudo"
    );

    let out = sysql().env("SYSQL_BTF_PATH", "/nonexistent/vmlinux").args(["-c", "SELECT 1"]).output().unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert_eq!(
        text(&out.stderr).trim(),
        "sysql: kernel BTF not found at /nonexistent/vmlinux: sysql needs a kernel built with CONFIG_DEBUG_INFO_BTF=y"
    );

    // tracefs missing and impossible to mount: in a private mount namespace,
    // /sys/kernel is covered by an empty read-only tmpfs (BTF is read from a copy).
    let dir = TempDir::new("tracefs");
    let btf = dir.join("vmlinux");
    std::fs::copy("/sys/kernel/btf/vmlinux", &btf).unwrap();
    let script = format!(
        "mount -t tmpfs -o ro tmpfs /sys/kernel && SYSQL_BTF_PATH={} exec {} -c 'SELECT 1'",
        btf.display(),
        env!("CARGO_BIN_EXE_sysql")
    );
    let out =
        Command::new("unshare").args(["--mount", "--propagation", "private", "sh", "-c", &script]).output().unwrap();
    assert_eq!(out.status.code(), Some(2), "{}", text(&out.stderr));
    let err = text(&out.stderr);
    assert_eq!(err.lines().count(), 1, "{err}");
    assert!(
        err.starts_with("sysql: tracefs is not mounted and mounting it failed (")
            && err.trim_end().ends_with("mount it with: mount -t tracefs nodev /sys/kernel/tracing"),
        "{err}"
    );

    // a program the verifier rejects (a NULL dereference), loaded in place of sysql's
    let src = dir.join("bad.bpf.c");
    std::fs::write(&src, BAD_PROGRAM).unwrap();
    let obj = dir.join("bad.bpf.o");
    let arch_include = format!("-I/usr/include/{}-linux-gnu", std::env::consts::ARCH);
    let built = Command::new("clang")
        .args(["-target", "bpf", "-O2", "-g", &arch_include, "-c"])
        .arg(&src)
        .arg("-o")
        .arg(&obj)
        .status()
        .unwrap();
    assert!(built.success(), "clang builds the test program");
    let out = sysql().env("SYSQL_BPF_OBJECT", &obj).args(["-c", "SELECT 1"]).output().unwrap();
    assert_eq!(out.status.code(), Some(2), "{}", text(&out.stderr));
    let err = text(&out.stderr);
    assert_eq!(err.lines().count(), 1, "{err}");
    assert!(
        err.starts_with("sysql: the kernel verifier rejected program sched_process_exec: R1 invalid mem access"),
        "{err}"
    );
    assert!(err.trim_end().ends_with("please report this with your kernel version (uname -r)"), "{err}");

    let out = run(&["--ring-size", "1000", "-c", "SELECT 1"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(text(&out.stderr).contains("not a power of two"), "{}", text(&out.stderr));

    let out = run(&["-f", "/nonexistent.sql"]);
    assert_eq!(out.status.code(), Some(2));
}

#[test]
fn capture_for_a_while_then_query() {
    let dir = TempDir::new("cli-for");
    let target = dir.join("only-this-open");
    let q = format!("SELECT comm, path, errno FROM opens WHERE path = '{}'", target.display());
    let mut sysql = Running::spawn(&["-c", &q, "--for", "4s", "--format", "csv"]);
    sysql.capturing();
    let status = Command::new("cat").arg(&target).stderr(Stdio::null()).status().unwrap();
    assert!(!status.success());
    let (status, stdout, _) = sysql.finish();
    assert_eq!(status.code(), Some(0));
    assert_eq!(stdout, format!("comm,path,errno\ncat,{},ENOENT\n", target.display()));
}

/// Whether a statement is live comes from its plan, not its text: a
/// history query that mentions `live.` in a literal still waits out the
/// whole `--for` and counts what happened in it.
#[test]
fn a_history_query_that_mentions_live_in_a_literal_captures_for_the_whole_time() {
    let dir = TempDir::new("cli-alive");
    let q = format!("SELECT count(*) AS n FROM opens WHERE path LIKE '{}/%alive.log'", dir.path().display());
    let mut sysql = Running::spawn(&["-c", &q, "--for", "4s", "--format", "csv"]);
    sysql.capturing();
    let ready = std::time::Instant::now();
    // two opens during the capture
    for name in ["a-alive.log", "b-alive.log"] {
        let _ = std::fs::File::open(dir.join(name));
    }
    let (status, stdout, err) = sysql.finish();
    assert_eq!(status.code(), Some(0), "{err}");
    assert_eq!(stdout, "n\n2\n");
    assert!(ready.elapsed() >= std::time::Duration::from_secs(3), "answered before --for ended");
}

#[test]
fn file_of_statements() {
    let dir = TempDir::new("cli-file");
    let f = dir.join("q.sql");
    std::fs::write(&f, "-- two statements\nSELECT 1 AS one;\nSELECT 'two' AS two;\n").unwrap();
    let out = run(&["-f", f.to_str().unwrap(), "--format", "csv"]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    assert_eq!(text(&out.stdout), "one\n1\ntwo\ntwo\n");
}

#[test]
fn shell_keeps_going_after_errors() {
    let dir = TempDir::new("cli-repl");
    let hist = dir.join("history");
    let mut cmd = sysql();
    cmd.args(["--history-file", hist.to_str().unwrap()]);
    let mut shell = common::Typist::spawn(cmd);
    for line in [
        "SELECT 40 + 2",
        "  AS answer;",
        "SELECT nope FROM nowhere;",
        "\\d opens",
        "\\format csv",
        "SELECT 'still here' AS s;",
    ] {
        shell.line(line);
    }
    let (status, stdout, stderr) = shell.quit();
    assert_eq!(status.code(), Some(0), "{stderr}");
    assert!(stdout.contains("| answer |") && stdout.contains("| 42     |"), "{stdout}");
    assert!(stdout.contains("1 row(s) fetched."), "{stdout}");
    assert!(stdout.contains("flags_text"), "\\d opens lists columns: {stdout}");
    assert!(stdout.contains("s\nstill here\n"), "{stdout}");
    let said = stderr.lines().filter(|l| l.starts_with("sysql: ") && !l.starts_with(CAPTURING)).count();
    assert_eq!(said, 1, "{stderr}");
    let mode = std::fs::metadata(&hist).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode, 0o600, "history file mode");
    assert!(std::fs::read_to_string(&hist).unwrap().contains("SELECT 'still here' AS s;"));
}

const UNBOUNDED: &str = "sysql: this query needs all of a live stream before it can answer (a GROUP BY without a \
window, ORDER BY, DISTINCT, or a join without a time bound), and a live stream never ends: group by a window, e.g. \
GROUP BY tumble(ts, INTERVAL '10 seconds'), bound the join by time (ON ... AND b.ts BETWEEN a.ts AND a.ts + INTERVAL \
'5 seconds'), or query the history table (opens instead of live.opens)";

#[test]
fn what_cannot_run_on_a_live_stream_says_why_in_one_line() {
    for sql in [
        "SELECT comm, count(*) FROM live.opens GROUP BY comm",
        "SELECT count(*) FROM live.opens",
        "SELECT DISTINCT comm FROM live.opens",
        "SELECT ts, path FROM live.opens ORDER BY path",
    ] {
        let out = run(&["-c", sql, "--for", "1s"]);
        assert_eq!(out.status.code(), Some(1), "{sql}");
        assert_eq!(errors(&out.stderr).trim_end(), UNBOUNDED, "{sql}");
    }
    let out = run(&["-c", "SELECT e.comm FROM live.execs e JOIN live.connects c ON c.pid = e.pid", "--for", "1s"]);
    assert_eq!(out.status.code(), Some(1));
    assert_eq!(
        errors(&out.stderr).trim_end(),
        "sysql: a join of two live tables needs a time bound, or it would keep every event of both forever: add \
         one to ON, e.g. AND c.ts BETWEEN e.ts AND e.ts + INTERVAL '5 seconds'"
    );
}

/// Starts sysql with `args`, waits until it is capturing, runs the probe in
/// rate mode (`n` opens at `rate`/s in `dir`), and returns sysql's status,
/// stdout and stderr.
fn live_run(args: &[&str], dir: &TempDir, n: u64, rate: u64) -> (std::process::ExitStatus, String, String) {
    let probe = common::compile_probe(dir);
    let mut sysql = Running::spawn(args);
    // The first window takes its earlier rows from history, so the probe only
    // has to start after the capture is attached.
    sysql.capturing();
    let d = dir.path().to_str().unwrap().to_string();
    let status = Command::new(probe).args(["rate", &d, &n.to_string(), &rate.to_string()]).status().unwrap();
    assert!(status.success());
    sysql.finish()
}

#[test]
fn live_filter_streams_every_matching_event() {
    use std::io::BufRead;
    let dir = TempDir::new("cli-live");
    let d = dir.path().display().to_string();
    let probe = common::compile_probe(&dir);
    let q = format!("SELECT path, errno FROM live.opens WHERE path LIKE '{d}/%'");
    let mut child = sysql().args(["-c", &q, "--for", "15s", "--format", "csv"]).stdout(Stdio::piped()).spawn().unwrap();
    // Read sysql's output on a thread; ping with opens of `ready` until the
    // live query shows one, so the probe starts only once it is listening.
    let stdout = child.stdout.take().unwrap();
    let (tx, rx) = std::sync::mpsc::channel();
    let reader = std::thread::spawn(move || {
        for line in std::io::BufReader::new(stdout).lines() {
            let _ = tx.send(line.unwrap());
        }
    });
    let mut lines = Vec::new();
    let ready = format!("{d}/ready,ENOENT");
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
    while !lines.contains(&ready) {
        assert!(std::time::Instant::now() < deadline, "the live query never showed an open: {lines:?}");
        let _ = std::fs::File::open(dir.join("ready"));
        if let Ok(line) = rx.recv_timeout(std::time::Duration::from_millis(100)) {
            lines.push(line);
        }
    }
    let status = Command::new(probe).args(["rate", &d, "50", "100"]).status().unwrap();
    assert!(status.success());
    let out = child.wait().unwrap();
    reader.join().unwrap();
    lines.extend(rx.try_iter());
    assert!(out.success());
    assert_eq!(lines[0], "path,errno");
    let rate: Vec<String> = lines.into_iter().filter(|l| l.contains("/rate-")).collect();
    let expect: Vec<String> = (0..50).map(|i| format!("{d}/rate-{i},ENOENT")).collect();
    assert_eq!(rate, expect, "every open, once, in order");
}

#[test]
fn live_tumbling_window_counts_every_event_once() {
    let dir = TempDir::new("cli-window");
    let d = dir.path().display().to_string();
    let q = format!(
        "SELECT window_start, window_end, count(*) AS n, window_lost FROM live.opens \
         WHERE path LIKE '{d}/rate-%' GROUP BY tumble(ts, INTERVAL '1 second')"
    );
    let (status, stdout, err) = live_run(&["-c", &q, "--for", "7s", "--format", "csv"], &dir, 300, 200);
    assert_eq!(status.code(), Some(0), "{err}");
    let rows: Vec<Vec<&str>> = stdout.lines().skip(1).map(|l| l.split(',').collect()).collect();
    assert!(rows.len() >= 2 && rows.len() <= 3, "300 events at 200/s span 2 or 3 windows: {stdout}");
    let total: u64 = rows.iter().map(|r| r[2].parse::<u64>().unwrap()).sum();
    assert_eq!(total, 300, "{stdout}");
    // window_lost counts the whole table's losses and late events (another
    // process's open that took longer than the lateness is late): it is a
    // number here; its exact accounting is tested over synthetic events
    // (crates/sysql-engine/tests/live.rs, window_lost_counts_...).
    assert!(rows.iter().all(|r| r[3].parse::<u64>().is_ok()), "{stdout}");
    for w in rows.windows(2) {
        assert_eq!(w[0][1], w[1][0], "consecutive 1 s windows: {stdout}");
    }
}

#[test]
fn statements_that_touch_files_are_refused() {
    let dir = TempDir::new("cli-files");
    let target = dir.join("out.csv");
    for sql in [
        format!("COPY (SELECT 1) TO '{}'", target.display()),
        "CREATE EXTERNAL TABLE shadow STORED AS CSV LOCATION '/etc/shadow'".to_string(),
    ] {
        let out = run(&["-c", &sql]);
        assert_eq!(out.status.code(), Some(1), "{sql}");
        let err = errors(&out.stderr);
        assert!(err.contains("refuses by default since it runs as root") && err.lines().count() == 1, "{err}");
    }
    assert!(!target.exists());
}
