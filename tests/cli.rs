//! The `sysql` binary as users run it: one-shot output and exit statuses,
//! set-up errors, and the shell driven through its standard input. Needs
//! root (the binary loads its kernel programs).

mod common;

use common::TempDir;
use std::io::Write;
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
        let err = text(&out.stderr);
        assert!(err.starts_with("sysql: ") && err.trim_end().lines().count() == 1, "{sql}: {err:?}");
    }
}

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
        "sysql: permission denied: sysql needs root (or CAP_BPF and CAP_PERFMON) to load its eBPF programs; run it with sudo"
    );

    let out = sysql().env("SYSQL_BTF_PATH", "/nonexistent/vmlinux").args(["-c", "SELECT 1"]).output().unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert_eq!(
        text(&out.stderr).trim(),
        "sysql: kernel BTF not found at /nonexistent/vmlinux: sysql needs a kernel built with CONFIG_DEBUG_INFO_BTF=y"
    );

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
    let child = sysql().args(["-c", &q, "--for", "4s", "--format", "csv"]).stdout(Stdio::piped()).spawn().unwrap();
    std::thread::sleep(std::time::Duration::from_millis(2000));
    let status = Command::new("cat").arg(&target).stderr(Stdio::null()).status().unwrap();
    assert!(!status.success());
    let out = child.wait_with_output().unwrap();
    assert_eq!(out.status.code(), Some(0));
    assert_eq!(text(&out.stdout), format!("comm,path,errno\ncat,{},ENOENT\n", target.display()));
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
    let mut child = sysql()
        .args(["--history-file", hist.to_str().unwrap()])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let input = "SELECT 40 + 2\n  AS answer;\nSELECT nope FROM nowhere;\n\\d opens\n\\format csv\nSELECT 'still here' AS s;\n\\q\n";
    child.stdin.take().unwrap().write_all(input.as_bytes()).unwrap();
    let out = child.wait_with_output().unwrap();
    let stdout = text(&out.stdout);
    let stderr = text(&out.stderr);
    assert_eq!(out.status.code(), Some(0), "{stderr}");
    assert!(stdout.contains("| answer |") && stdout.contains("| 42     |"), "{stdout}");
    assert!(stdout.contains("1 row(s) fetched."), "{stdout}");
    assert!(stdout.contains("flags_text"), "\\d opens lists columns: {stdout}");
    assert!(stdout.contains("s\nstill here\n"), "{stdout}");
    assert_eq!(stderr.lines().filter(|l| l.starts_with("sysql: ")).count(), 1, "{stderr}");
    let mode = std::fs::metadata(&hist).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode, 0o600, "history file mode");
}
