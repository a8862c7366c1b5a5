//! Start-up and limits of the `sysql` binary under stress, in a binary of
//! their own so that the load they make (many start-ups, statements that
//! try to build gigabytes) does not overlap the timing-sensitive live tests
//! of `cli.rs`. Needs root.

use std::process::{Command, Stdio};

fn sysql() -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_sysql"));
    c.env_remove("SYSQL_BTF_PATH");
    c
}

fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

/// stderr without the line that says capture is complete.
fn errors(b: &[u8]) -> String {
    text(b).lines().filter(|l| !l.starts_with("sysql: capturing since ")).map(|l| format!("{l}\n")).collect()
}

fn run(args: &[&str]) -> std::process::Output {
    sysql().args(args).output().unwrap()
}

/// Whether `pid` has SIGINT blocked in its main thread (sysql's first step).
fn blocks_sigint(pid: u32) -> bool {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    let mask = status.lines().find_map(|l| l.strip_prefix("SigBlk:")).map(str::trim).unwrap_or("0");
    u64::from_str_radix(mask, 16).unwrap_or(0) & (1 << (2 - 1)) != 0
}

/// A SIGINT is never lost, wherever in start-up it comes after sysql's
/// first step (blocking it): loading the programs, attaching them, starting
/// the runtime. `-c` with `--for 1h` then ends its capture at once and
/// answers.
#[test]
fn sigint_at_any_point_of_start_up_ends_the_capture() {
    for delay_ms in [0u64, 2, 10, 30, 60, 120, 250, 500, 1000, 2000] {
        let mut child = sysql()
            .args(["-c", "SELECT 1 AS one", "--for", "1h", "--format", "csv"])
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let started = std::time::Instant::now();
        while !blocks_sigint(child.id()) {
            assert!(started.elapsed() < std::time::Duration::from_secs(30), "sysql never blocked SIGINT");
            std::thread::yield_now();
        }
        // the point of start-up the signal lands on
        std::thread::sleep(std::time::Duration::from_millis(delay_ms));
        nix::sys::signal::kill(nix::unistd::Pid::from_raw(child.id() as i32), nix::sys::signal::Signal::SIGINT)
            .unwrap();
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
        while child.try_wait().unwrap().is_none() {
            if std::time::Instant::now() > deadline {
                let _ = child.kill();
                panic!("a SIGINT {delay_ms} ms into start-up was lost: sysql still runs after 60 s");
            }
            std::thread::sleep(std::time::Duration::from_millis(20));
        }
        let out = child.wait_with_output().unwrap();
        assert_eq!(out.status.code(), Some(0), "SIGINT {delay_ms} ms into start-up: {}", text(&out.stderr));
        assert_eq!(text(&out.stdout), "one\n1\n", "SIGINT {delay_ms} ms into start-up");
    }
}

/// A statement that builds huge values fails under the query's memory cap
/// with one line, long before it could take the machine's memory.
#[test]
fn a_statement_that_builds_huge_values_fails_under_the_cap() {
    for sql in [
        "SELECT length(repeat('x', 2147483647))",
        "SELECT length(lpad('x', 2000000000))",
        "SELECT length(string_agg(repeat('x', 100000000), ',')) FROM generate_series(1, 100)",
        "SELECT cardinality(array_repeat(1, 1000000000))",
        "SELECT count(*) FROM (SELECT repeat('x', 1000000) AS s FROM generate_series(1, 100000)) WHERE s <> ''",
    ] {
        let out = run(&["-c", sql, "--query-memory", "512MiB"]);
        let err = errors(&out.stderr);
        assert_eq!(out.status.code(), Some(1), "{sql}: {err}");
        assert_eq!(err.lines().count(), 1, "{sql}: {err}");
        assert!(err.contains("memory"), "{sql}: {err}");
    }
    // The children's peak resident memory stayed far from what the values
    // would need (2 GiB and more each).
    let usage = nix::sys::resource::getrusage(nix::sys::resource::UsageWho::RUSAGE_CHILDREN).unwrap();
    let peak_mib = usage.max_rss() / 1024;
    println!("peak RSS of the runs: {peak_mib} MiB");
    assert!(peak_mib < 1536, "a child reached {peak_mib} MiB");
}
