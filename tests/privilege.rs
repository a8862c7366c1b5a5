//! Least privilege and exposure, on the `sysql` binary over the real capture
//! (root): once attached, sysql holds no capability it does not need in any
//! thread, has no_new_privs and a 077 umask, still captures and counts
//! losses, writes its files 0600, cannot write where root without
//! CAP_DAC_OVERRIDE could not, and stores argv with secrets masked.

mod common;

use common::TempDir;
use std::os::unix::fs::PermissionsExt;
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

fn sysql() -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_sysql"));
    c.env_remove("SYSQL_BTF_PATH");
    c
}

fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

/// The capability masks sysql keeps: none, but CAP_BPF (39) where the
/// kernel checks it on every bpf() call (before 6.5, with unprivileged BPF
/// disabled), as crates/sysql/src/privilege.rs decides.
fn expected_caps() -> u64 {
    let release = std::fs::read_to_string("/proc/sys/kernel/osrelease").unwrap();
    let mut v = release.split(|c: char| !c.is_ascii_digit()).filter(|p| !p.is_empty()).map(|p| p.parse::<u32>());
    let (major, minor) = (v.next().unwrap().unwrap(), v.next().unwrap().unwrap());
    let disabled = std::fs::read_to_string("/proc/sys/kernel/unprivileged_bpf_disabled").unwrap().trim() != "0";
    if disabled && (major, minor) < (6, 5) {
        1 << 39
    } else {
        0
    }
}

/// `field: value` lines of a /proc status file.
fn status_field(status: &str, field: &str) -> String {
    let line = status.lines().find(|l| l.starts_with(&format!("{field}:"))).unwrap_or_else(|| panic!("no {field}"));
    line[field.len() + 1..].trim().to_string()
}

/// Waits until `pid` has set no_new_privs (the last step of dropping
/// privileges), then returns the status of every one of its threads.
fn dropped_status(pid: u32) -> Vec<(String, String)> {
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let status = std::fs::read_to_string(format!("/proc/{pid}/status")).expect("sysql is running");
        if status_field(&status, "NoNewPrivs") == "1" {
            break;
        }
        assert!(Instant::now() < deadline, "sysql never set no_new_privs: {status}");
        std::thread::sleep(Duration::from_millis(50));
    }
    // Ready when the threads started after the drop exist: the reader and
    // the runtime's workers.
    loop {
        let mut threads = Vec::new();
        for task in std::fs::read_dir(format!("/proc/{pid}/task")).unwrap() {
            let task = task.unwrap().path();
            if let (Ok(comm), Ok(status)) =
                (std::fs::read_to_string(task.join("comm")), std::fs::read_to_string(task.join("status")))
            {
                threads.push((comm.trim().to_string(), status));
            }
        }
        let named = |prefix: &str| threads.iter().any(|(comm, _)| comm.starts_with(prefix));
        if named("sysql-reader") && named("sysql-worker") && named("sysql-signals") {
            return threads;
        }
        assert!(
            Instant::now() < deadline,
            "sysql's threads never all started: {:?}",
            threads.iter().map(|t| &t.0).collect::<Vec<_>>()
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// Asserts every thread of `pid` kept exactly the expected capabilities.
fn assert_least_privilege(pid: u32) {
    let caps = format!("{:016x}", expected_caps());
    let threads = dropped_status(pid);
    assert!(threads.len() >= 3, "the main, reader and runtime threads: {}", threads.len());
    for (comm, status) in &threads {
        for field in ["CapInh", "CapPrm", "CapEff", "CapBnd", "CapAmb"] {
            let want = if field == "CapInh" || field == "CapAmb" { "0000000000000000" } else { caps.as_str() };
            assert_eq!(status_field(status, field), want, "thread {comm}: {field}");
        }
        assert_eq!(status_field(status, "NoNewPrivs"), "1", "thread {comm}");
        assert_eq!(status_field(status, "Umask"), "0077", "thread {comm}");
    }
    let leader = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    assert_eq!(status_field(&leader, "CapEff"), caps);
}

fn finish(child: Child) -> Output {
    let out = child.wait_with_output().unwrap();
    assert_eq!(out.status.code(), Some(0), "stderr: {}", text(&out.stderr));
    out
}

#[test]
fn one_shot_drops_every_capability_and_still_captures() {
    let dir = TempDir::new("priv-oneshot");
    let target = dir.join("after-the-drop");
    let q = format!(
        "SELECT comm, path, errno FROM opens WHERE path = '{}'; \
         SELECT count(*) AS tables FROM sysql_stats WHERE lost_kernel >= 0",
        target.display()
    );
    let child = sysql()
        .args(["-c", &q, "--for", "5s", "--format", "csv"])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    assert_least_privilege(child.id());
    // An event after the drop is captured, and the loss counters (a bpf()
    // lookup on an open map fd) are still read.
    assert!(!Command::new("cat").arg(&target).stderr(Stdio::null()).status().unwrap().success());
    let out = finish(child);
    let stdout = text(&out.stdout);
    assert!(stdout.starts_with(&format!("comm,path,errno\ncat,{},ENOENT\ntables\n", target.display())), "{stdout}");
    let said: Vec<_> =
        text(&out.stderr).lines().filter(|l| !l.starts_with("sysql: capturing since ")).map(str::to_string).collect();
    assert!(!said.iter().any(|l| l.contains("sysql:")), "no error: {said:?}");
}

#[test]
fn schedule_drops_privileges_and_writes_its_sink_0600() {
    let dir = TempDir::new("priv-schedule");
    let query = dir.join("q.sql");
    std::fs::write(&query, "-- name: one\n-- description: d\n-- schedule: every 1s\nSELECT 1 AS one\n").unwrap();
    let sink = dir.join("out.ndjson");
    let child = sysql()
        .args(["schedule", query.to_str().unwrap(), "--sink", &format!("file:{}", sink.display())])
        .args(["--results", "snapshot", "--first-run", "1s", "--for", "5s"])
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    assert_least_privilege(child.id());
    finish(child);
    let written = std::fs::read_to_string(&sink).unwrap();
    assert!(written.lines().count() >= 2 && written.contains("\"columns\":{\"one\":1}"), "{written}");
    assert_eq!(std::fs::metadata(&sink).unwrap().permissions().mode() & 0o777, 0o600);
}

#[test]
fn history_file_is_written_0600_but_not_where_only_dac_override_could() {
    let dir = TempDir::new("priv-history");
    // typed at a terminal: the shell keeps history only then
    let shell = |history: &std::path::Path| {
        let mut cmd = sysql();
        cmd.args(["--history-file", history.to_str().unwrap()]);
        let mut t = common::Typist::spawn(cmd);
        t.line("SELECT 'kept' AS s;");
        t.quit()
    };
    // In a directory root owns: created 0600 and saved after the drop.
    let history = dir.join("history");
    let (status, _, stderr) = shell(&history);
    assert_eq!(status.code(), Some(0), "{stderr}");
    assert!(std::fs::read_to_string(&history).unwrap().contains("SELECT 'kept' AS s;"));
    assert_eq!(std::fs::metadata(&history).unwrap().permissions().mode() & 0o777, 0o600);

    // In another user's private directory root could write with
    // CAP_DAC_OVERRIDE; sysql has dropped it, so it says it cannot.
    let private = dir.join("nobody");
    std::fs::create_dir(&private).unwrap();
    nix::unistd::chown(&private, Some(nix::unistd::Uid::from_raw(65534)), None).unwrap();
    std::fs::set_permissions(&private, std::fs::Permissions::from_mode(0o700)).unwrap();
    let denied = private.join("history");
    let (status, stdout, stderr) = shell(&denied);
    assert_eq!(status.code(), Some(0), "the shell runs without its history");
    let denied = denied.display();
    let said: Vec<_> =
        stderr.lines().filter(|l| !l.starts_with("sysql: capturing since ")).map(str::to_string).collect();
    assert_eq!(
        said.join("\n"),
        format!(
            "sysql: cannot read history {denied}: Permission denied (os error 13)\n\
             sysql: cannot save history {denied}: Permission denied (os error 13)"
        )
    );
    assert!(!private.join("history").exists());
    assert!(stdout.contains("kept"));
}

/// Runs /bin/true with `args` while sysql captures with `flags`, and returns
/// the argv sysql stored for it.
fn stored_argv(flags: &[&str], marker: &str, args: &[&str]) -> String {
    let q = format!("SELECT argv FROM execs WHERE filename = '/bin/true' AND argv LIKE '%{marker}%'");
    let child = sysql()
        .args(flags)
        .args(["-c", &q, "--for", "4s", "--format", "csv"])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    dropped_status(child.id());
    assert!(Command::new("/bin/true").arg(marker).args(args).status().unwrap().success());
    let out = finish(child);
    let stdout = text(&out.stdout);
    let mut lines = stdout.lines();
    assert_eq!(lines.next(), Some("argv"), "{stdout}");
    let argv = lines.next().unwrap_or_else(|| panic!("no exec of /bin/true {marker}: {stdout}"));
    assert_eq!(lines.next(), None, "{stdout}");
    argv.to_string()
}

#[test]
fn argv_of_a_real_exec_is_redacted() {
    let secret = ["--password=hunter2", "--auth-token", "t0k3n", "-phunter2"];
    assert_eq!(
        stored_argv(&[], "sysql-redact-1", &secret),
        "/bin/true sysql-redact-1 --password=*** --auth-token *** -phunter2"
    );
    assert_eq!(
        stored_argv(&["--redact-argv", r"\s-p(\S+)"], "sysql-redact-2", &secret),
        "/bin/true sysql-redact-2 --password=*** --auth-token *** -p***"
    );
    assert_eq!(
        stored_argv(&["--no-redact-argv"], "sysql-redact-3", &secret),
        "/bin/true sysql-redact-3 --password=hunter2 --auth-token t0k3n -phunter2"
    );
}

#[test]
fn a_bad_redaction_pattern_is_a_set_up_error() {
    let out = sysql().args(["--redact-argv", "(unclosed", "-c", "SELECT 1"]).output().unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert_eq!(text(&out.stderr).trim_end(), "sysql: invalid --redact-argv pattern '(unclosed': unclosed group");
}

/// Without root, sysql runs with exactly CAP_BPF, CAP_PERFMON and
/// CAP_DAC_READ_SEARCH (ambient, as a service manager would give them) as
/// uid 65534, and captures; with the first two alone it says which one is
/// missing.
#[test]
fn capabilities_instead_of_root() {
    // tracefs must be mounted already (mounting takes CAP_SYS_ADMIN): a
    // root run mounts it if needed.
    let out = sysql().args(["-c", "SELECT 1"]).output().unwrap();
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    let as_nobody = |caps: &str| {
        let mut c = Command::new("setpriv");
        c.args(["--reuid=65534", "--regid=65534", "--clear-groups"])
            .arg(format!("--inh-caps={caps}"))
            .arg(format!("--ambient-caps={caps}"))
            .arg(env!("CARGO_BIN_EXE_sysql"))
            .current_dir("/");
        c
    };
    let out = as_nobody("+bpf,+perfmon").args(["-c", "SELECT 1"]).output().unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert_eq!(
        text(&out.stderr).trim_end(),
        "sysql: tracefs is mounted at /sys/kernel/tracing but sysql cannot read it: without root, sysql needs \
         CAP_DAC_READ_SEARCH (besides CAP_BPF and CAP_PERFMON) to read the tracepoint ids there"
    );

    let dir = TempDir::new("priv-caps");
    std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
    let target = dir.join("opened-while-nobody-watched");
    let q = format!("SELECT comm, errno FROM opens WHERE path = '{}'", target.display());
    let mut child = as_nobody("+bpf,+perfmon,+dac_read_search")
        .args(["-c", &q, "--for", "5s", "--format", "csv"])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    // ready once it says it captures
    let mut err = std::io::BufReader::new(child.stderr.take().unwrap());
    let mut line = String::new();
    std::io::BufRead::read_line(&mut err, &mut line).unwrap();
    assert!(line.starts_with("sysql: capturing since "), "{line}");
    assert!(!Command::new("cat").arg(&target).stderr(Stdio::null()).status().unwrap().success());
    let out = child.wait_with_output().unwrap();
    assert_eq!(out.status.code(), Some(0));
    assert_eq!(text(&out.stdout), "comm,errno\ncat,ENOENT\n");
}
