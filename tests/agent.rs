//! `sysql agent` as users run it: a real agent process with a state
//! directory and a socket of the test's own, asked by `sysql --agent`.
//! The seed question across a restart, what `kill -9` loses and how the
//! gap is reported, the disk cap under a storm, a full disk, two shells at
//! once on one agent, and a recording read with `--data` by a non-root user
//! and by DuckDB. Needs root.

mod common;

use common::agent::{text, Agent, BIN};
use common::{compile_probe, TempDir};
use std::io::{BufRead, BufReader, Write};
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

/// The question sysql exists for, across a restart: connections made,
/// the agent stopped with SIGTERM and started again, a new client counts
/// them all in the past hour, and the gap is in sysql_gaps.
#[test]
fn the_past_hour_survives_a_restart() {
    let dir = TempDir::new("agent-restart");
    let agent = Agent::start(dir.path(), &["--flush-interval", "1s"]);
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    for _ in 0..25 {
        std::net::TcpStream::connect(("127.0.0.1", port)).unwrap();
    }
    let seed = format!(
        "SELECT count(*) FROM connects WHERE ts > now() - INTERVAL '1 hour' AND dport = {port} AND protocol = 'tcp' AND ret = 0"
    );
    assert_eq!(agent.ask_until(&seed, "25"), "25");
    let status = agent.stop();
    assert_eq!(status.code(), Some(0));
    let files = parquet_files(&dir.join("state").join("connects"));
    assert!(!files.is_empty(), "the connects were written");

    let agent = Agent::start(dir.path(), &["--flush-interval", "1s"]);
    assert!(
        agent.said.iter().any(|l| l.contains("no capture from") && l.contains("the agent was stopped")),
        "{:?}",
        agent.said
    );
    assert_eq!(agent.ask(&seed), "25", "a new client after a restart counts them all");
    let gaps = agent.ask("SELECT reason, \"end\" > start FROM sysql_gaps");
    assert_eq!(gaps, "the agent was stopped,true");
    let stats =
        agent.ask("SELECT gap_start IS NOT NULL, gap_end IS NOT NULL FROM sysql_stats WHERE table_name = 'connects'");
    assert_eq!(stats, "true,true");
}

/// A connect still waiting for its outcome when the agent is stopped (its
/// SYN dropped by a listener whose accept queue is full) is held, not in
/// history; the clean stop makes its row, with a NULL outcome, and writes
/// it: the next start finds it.
#[test]
fn a_connect_pending_at_a_clean_stop_is_written() {
    let dir = TempDir::new("agent-pending");
    let agent = Agent::start(dir.path(), &["--flush-interval", "1s"]);
    let script = "import socket, sys\n\
                  full = socket.socket(); full.bind(('127.0.0.1', 0)); full.listen(0)\n\
                  filler = socket.create_connection(full.getsockname())\n\
                  s = socket.socket(); s.setblocking(False)\n\
                  print(s.connect_ex(full.getsockname()), full.getsockname()[1], flush=True)\n\
                  sys.stdin.read()\n";
    let mut child =
        Command::new("python3").args(["-c", script]).stdin(Stdio::piped()).stdout(Stdio::piped()).spawn().unwrap();
    let mut line = String::new();
    BufReader::new(child.stdout.take().unwrap()).read_line(&mut line).unwrap();
    let words: Vec<&str> = line.split_whitespace().collect();
    assert_eq!(words[0], "115", "EINPROGRESS: {line}");
    let port = words[1];
    // the queue filler's row comes at once; the pending one is held
    let filler = format!("SELECT count(*) FROM connects WHERE dport = {port} AND ret = 0");
    assert_eq!(agent.ask_until(&filler, "1"), "1");
    let pending =
        format!("SELECT errno, outcome IS NULL, outcome_ns IS NULL FROM connects WHERE dport = {port} AND ret = -115");
    assert_eq!(agent.ask(&pending), "", "held until its outcome");
    assert_eq!(agent.stop().code(), Some(0));
    // the socket closes only now, after the stop
    drop(child.stdin.take());
    child.wait().unwrap();

    let agent = Agent::start(dir.path(), &["--flush-interval", "1s"]);
    assert_eq!(agent.ask(&pending), "EINPROGRESS,true,true");
    assert_eq!(agent.stop().code(), Some(0));
}

fn parquet_files(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        let Ok(entries) = std::fs::read_dir(&d) else { continue };
        for e in entries {
            let p = e.unwrap().path();
            if p.is_dir() {
                stack.push(p);
            } else if p.extension().is_some_and(|e| e == "parquet") {
                out.push(p);
            }
        }
    }
    out
}

fn dir_bytes(dir: &Path) -> u64 {
    parquet_files(dir).iter().map(|p| std::fs::metadata(p).map(|m| m.len()).unwrap_or(0)).sum()
}

/// `kill -9` during a steady workload loses at most about one flush
/// interval of its events, and the next start reports the gap.
#[test]
fn kill_9_loses_at_most_a_flush_interval_and_the_gap_is_reported() {
    let dir = TempDir::new("agent-kill");
    let work = TempDir::new("agent-kill-work");
    let probe = compile_probe(&work);
    let agent = Agent::start(dir.path(), &["--flush-interval", "1s"]);
    // 100 opens a second for 6 s
    let (n, rate) = (600u64, 100u64);
    let d = work.path().display().to_string();
    let mut gen = Command::new(&probe).args(["rate", &d, &n.to_string(), &rate.to_string()]).spawn().unwrap();
    // the workload is well under way: 300 of its events are in history
    let count = format!("SELECT count(*) FROM opens WHERE path LIKE '{d}/rate-%'");
    let deadline = Instant::now() + Duration::from_secs(30);
    let mut seen = 0;
    while seen < 300 {
        assert!(Instant::now() < deadline, "the workload never reached history");
        seen = agent.ask(&count).parse::<u64>().unwrap_or(0);
    }
    agent.kill();
    assert!(gen.wait().unwrap().success());
    let agent = Agent::start(dir.path(), &["--flush-interval", "1s"]);
    let gap = agent.said.iter().find(|l| l.contains("no capture from")).cloned().unwrap_or_default();
    assert!(gap.contains("the agent ended without stopping (killed?)"), "{:?}", agent.said);
    let kept: u64 = agent.ask(&count).parse().unwrap();
    // The agent held `seen` events of the workload just before the kill;
    // what it had not written yet is lost: at most its 1 s flush interval
    // of the workload (100 events) plus the reader's poll and the time of
    // the last query (half a second more).
    let lost = seen.saturating_sub(kept);
    println!(
        "kill -9 during 100 opens/s, flush interval 1 s: {seen} in history before the kill, {kept} kept, {lost} lost"
    );
    assert!(kept > 0 && lost <= 150, "kill -9 lost {lost} of the {seen} events held");
    let reason = agent.ask("SELECT reason FROM sysql_gaps");
    assert!(reason.starts_with("the agent ended without stopping (killed?)"), "{reason}");
}

/// A small disk cap under a storm: the directory stays under the cap
/// (measured on disk) and what was removed is counted.
#[test]
fn the_disk_cap_holds_under_a_storm() {
    let dir = TempDir::new("agent-cap");
    let work = TempDir::new("agent-cap-work");
    let probe = compile_probe(&work);
    let cap: u64 = 256 << 10;
    let agent = Agent::start(dir.path(), &["--flush-interval", "500ms", "--disk-cap", "256KiB", "--no-payload"]);
    let d = work.path().display().to_string();
    // 60,000 opens as fast as the machine goes, in several bursts
    for _ in 0..3 {
        assert!(Command::new(&probe).args(["rate", &d, "20000", "1000000"]).status().unwrap().success());
    }
    let removed = "SELECT disk_removed > 0 FROM sysql_stats WHERE table_name = 'opens'";
    assert_eq!(agent.ask_until(removed, "true"), "true", "files were removed");
    let status = agent.stop();
    assert_eq!(status.code(), Some(0));
    let bytes = dir_bytes(&dir.join("state"));
    println!("disk cap 256 KiB: {bytes} bytes of Parquet on disk after the storm");
    assert!(bytes <= cap, "{bytes} bytes on disk, over the cap of {cap}");
}

/// Two shells at once on one agent both answer; the kernel programs are
/// the agent's alone (the shells hold no BPF object).
#[test]
fn two_shells_at_once_on_one_agent() {
    let dir = TempDir::new("agent-shells");
    let agent = Agent::start(dir.path(), &[]);
    let shell = || {
        Command::new(BIN)
            .arg("--agent")
            .arg(&agent.socket)
            .args(["--history-file", "/dev/null", "--format", "csv"])
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap()
    };
    let (mut a, mut b) = (shell(), shell());
    // both connected: each has said so (the rest of their stderr is
    // drained, so that they never write to a closed pipe)
    let mut drains = Vec::new();
    for s in [&mut a, &mut b] {
        let mut err = BufReader::new(s.stderr.take().unwrap());
        let mut line = String::new();
        err.read_line(&mut line).unwrap();
        assert!(line.starts_with("sysql: connected to the sysql agent at"), "{line}");
        drains.push(std::thread::spawn(move || std::io::copy(&mut err, &mut std::io::sink())));
    }
    for s in [&a, &b] {
        let fds = std::fs::read_dir(format!("/proc/{}/fd", s.id())).unwrap();
        let bpf = fds
            .filter_map(|f| std::fs::read_link(f.unwrap().path()).ok())
            .filter(|l| l.to_string_lossy().contains("bpf"))
            .count();
        assert_eq!(bpf, 0, "a shell holds BPF objects");
    }
    let agent_bpf = std::fs::read_dir(format!("/proc/{}/fd", agent.child.id()))
        .unwrap()
        .filter_map(|f| std::fs::read_link(f.unwrap().path()).ok())
        .filter(|l| l.to_string_lossy().contains("bpf-prog"))
        .count();
    assert!(agent_bpf > 0, "the agent holds the programs");
    for (s, n) in [(&mut a, 1), (&mut b, 2)] {
        writeln!(s.stdin.as_mut().unwrap(), "SELECT {n} AS n;").unwrap();
    }
    for (s, n) in [(a, 1), (b, 2)] {
        let mut s = s;
        writeln!(s.stdin.as_mut().unwrap(), "\\q").unwrap();
        let out = s.wait_with_output().unwrap();
        assert_eq!(text(&out.stdout), format!("n\n{n}\n"));
    }
}

/// A full disk: the agent keeps capturing into memory, says it cannot
/// write on stderr and in sysql_stats (disk_waiting), and writes again once
/// space returns.
#[test]
fn a_full_disk_is_said_and_survived() {
    let dir = TempDir::new("agent-full");
    let state = dir.join("state");
    std::fs::create_dir_all(&state).unwrap();
    assert!(Command::new("mount")
        .args(["-t", "tmpfs", "-o", "size=8m", "tmpfs"])
        .arg(&state)
        .status()
        .unwrap()
        .success());
    struct Unmount(PathBuf);
    impl Drop for Unmount {
        fn drop(&mut self) {
            let _ = Command::new("umount").arg(&self.0).status();
        }
    }
    let _unmount = Unmount(state.clone());
    // almost all of the 8 MiB taken
    let filler = state.join("filler");
    std::fs::write(&filler, vec![0u8; (8 << 20) - (24 << 10)]).unwrap();
    let mut agent = Agent::start(dir.path(), &["--flush-interval", "500ms", "--no-payload"]);
    let work = TempDir::new("agent-full-work");
    let probe = compile_probe(&work);
    let d = work.path().display().to_string();
    assert!(Command::new(&probe).args(["rate", &d, "5000", "1000000"]).status().unwrap().success());
    agent.wait_for("No space left on device");
    let waiting = "SELECT disk_waiting > 0 FROM sysql_stats WHERE table_name = 'opens'";
    assert_eq!(agent.ask_until(waiting, "true"), "true");
    // queries still see everything
    let count = format!("SELECT count(*) FROM opens WHERE path LIKE '{d}/rate-%'");
    assert_eq!(agent.ask_until(&count, "5000"), "5000");
    // space returns: the agent writes again
    std::fs::remove_file(&filler).unwrap();
    // (what waits never reaches 0 for good: each client's own opens are
    // new events; the workload's 5,000 being on disk is the sign)
    let written = "SELECT disk_rows >= 5000 FROM sysql_stats WHERE table_name = 'opens'";
    assert_eq!(agent.ask_until(written, "true"), "true");
    assert!(!parquet_files(&state.join("opens")).is_empty());
    assert_eq!(agent.ask(&count), "5000");
    assert_eq!(agent.stop().code(), Some(0));
}

/// A recording: what the agent wrote, read with `--data` by a non-root
/// user, gives the same rows as the agent did; DuckDB reads the files as
/// they are and counts the same; and live tables replay it in event time
/// (a window over the replay gives what the same window over history does).
#[test]
fn a_recording_reads_the_same_everywhere() {
    let dir = TempDir::new("agent-recording");
    let work = TempDir::new("agent-recording-work");
    let probe = compile_probe(&work);
    let agent = Agent::start(dir.path(), &["--flush-interval", "500ms"]);
    let d = work.path().display().to_string();
    assert!(Command::new(&probe).args(["rate", &d, "3000", "1000"]).status().unwrap().success());
    let count = format!("SELECT count(*), count(DISTINCT path) FROM opens WHERE path LIKE '{d}/rate-%'");
    assert_eq!(agent.ask_until(&count, "3000,3000"), "3000,3000");
    let by_second = format!(
        "SELECT date_bin(INTERVAL '1 second', ts) AS w, count(*) AS n FROM opens WHERE path LIKE '{d}/rate-%' GROUP BY 1 ORDER BY 1"
    );
    let from_agent = agent.ask(&by_second);
    assert_eq!(agent.stop().code(), Some(0));

    // a copy, readable by nobody
    let copy = TempDir::new("agent-recording-copy");
    assert!(Command::new("cp").arg("-r").arg(dir.join("state")).arg(copy.join("rec")).status().unwrap().success());
    assert!(Command::new("chmod").args(["-R", "a+rX"]).arg(copy.path()).status().unwrap().success());
    let rec = copy.join("rec");
    let as_nobody = |sql: &str| {
        let out = Command::new("setpriv")
            .args(["--reuid=65534", "--regid=65534", "--clear-groups"])
            .arg(BIN)
            .arg("--data")
            .arg(&rec)
            .args(["--history-file", "/dev/null", "-c", sql, "--format", "csv"])
            .current_dir("/")
            .output()
            .unwrap();
        assert_eq!(out.status.code(), Some(0), "{sql}: {}", text(&out.stderr));
        text(&out.stdout).lines().skip(1).collect::<Vec<_>>().join("\n")
    };
    assert_eq!(as_nobody(&count), "3000,3000");
    assert_eq!(as_nobody(&by_second), from_agent);
    // the live form replays the recording: the same windows
    let live = format!(
        "SELECT window_start, count(*) AS n FROM live.opens WHERE path LIKE '{d}/rate-%' GROUP BY tumble(ts, INTERVAL '1 second')"
    );
    assert_eq!(as_nobody(&live), from_agent, "a window over the replay gives the rows of the history");

    // DuckDB reads the files as they are
    let duck = format!(
        "import duckdb\nprint(duckdb.sql(\"SELECT count(*) FROM read_parquet('{}/opens/**/*.parquet', hive_partitioning = true) WHERE path LIKE '{d}/rate-%'\").fetchall()[0][0])",
        rec.display()
    );
    let out = Command::new("python3").args(["-c", &duck]).output().unwrap();
    assert!(out.status.success(), "duckdb (pip install duckdb): {}", text(&out.stderr));
    assert_eq!(text(&out.stdout).trim(), "3000");
}

/// A live query streams through the agent, and Ctrl-C in the client stops
/// it on the agent: its subscription is freed.
#[test]
fn ctrl_c_in_a_client_stops_its_live_query_on_the_agent() {
    let dir = TempDir::new("agent-live");
    let work = TempDir::new("agent-live-work");
    let agent = Agent::start(dir.path(), &[]);
    let d = work.path().display().to_string();
    let subscribed = "SELECT live_queries FROM sysql_stats WHERE table_name = 'opens'";
    assert_eq!(agent.ask(subscribed), "0");
    let mut client = Command::new(BIN)
        .arg("--agent")
        .arg(&agent.socket)
        .args(["-c", &format!("SELECT path FROM live.opens WHERE path LIKE '{d}/%'"), "--format", "csv"])
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let mut out = BufReader::new(client.stdout.take().unwrap());
    let mut header = String::new();
    // the header comes with the first row: ping until one is printed
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        let mut line = String::new();
        while out.read_line(&mut line).is_ok_and(|n| n > 0) {
            let _ = tx.send(std::mem::take(&mut line));
        }
    });
    let deadline = Instant::now() + Duration::from_secs(30);
    while !header.contains("/ping") {
        assert!(Instant::now() < deadline, "no live row came through the agent");
        let _ = std::fs::File::open(work.join("ping"));
        if let Ok(line) = rx.recv_timeout(Duration::from_millis(100)) {
            header.push_str(&line);
        }
    }
    assert_eq!(agent.ask(subscribed), "1");
    nix::sys::signal::kill(nix::unistd::Pid::from_raw(client.id() as i32), nix::sys::signal::Signal::SIGINT).unwrap();
    assert_eq!(client.wait().unwrap().code(), Some(130));
    assert_eq!(agent.ask_until(subscribed, "0"), "0", "the agent freed the subscription");
}

/// `sysql agent --schedule DIR`: one process captures, answers and runs
/// saved queries into their sink.
#[test]
fn the_agent_runs_saved_queries_too() {
    let dir = TempDir::new("agent-schedule");
    let library = dir.join("library");
    std::fs::create_dir_all(&library).unwrap();
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    std::fs::write(
        library.join("q.sql"),
        format!(
            "-- name: to-port\n-- description: connects to the test's port\n-- schedule: every 1s\n-- results: snapshot\n\
             SELECT count(*) AS n FROM connects WHERE dport = {port}\n"
        ),
    )
    .unwrap();
    let sink = dir.join("out.ndjson");
    let agent = Agent::start(
        dir.path(),
        &["--schedule", library.to_str().unwrap(), "--sink", &format!("file:{}", sink.display())],
    );
    for _ in 0..3 {
        std::net::TcpStream::connect(("127.0.0.1", port)).unwrap();
    }
    assert_eq!(agent.ask_until(&format!("SELECT count(*) FROM connects WHERE dport = {port}"), "3"), "3");
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let written = std::fs::read_to_string(&sink).unwrap_or_default();
        if written.contains("\"columns\":{\"n\":3}") {
            break;
        }
        assert!(Instant::now() < deadline, "the saved query never wrote 3: {written}");
        std::thread::sleep(Duration::from_millis(100));
    }
    assert_eq!(agent.stop().code(), Some(0));
}

/// The README's tour answers over the agent's history, each statement as
/// the README writes it.
#[test]
fn the_readme_tour_runs_on_the_agent() {
    let statements = common::readme_tour();
    let dir = TempDir::new("agent-tour");
    let agent = Agent::start(dir.path(), &[]);
    for sql in statements {
        agent.ask(&sql);
    }
}
