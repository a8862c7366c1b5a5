//! The agent's Postgres endpoint as its users reach it: psql on the unix
//! socket (catalog commands, errors with their SQLSTATE, a live query
//! streamed row by row, Ctrl-C and a killed client), psycopg over TCP with
//! TLS and SCRAM (parameters, binary results, the SQL Grafana sends, fifty
//! clients during a storm), and an address off loopback in a network
//! namespace of the test's own. Needs root, psql, openssl, iproute2 and
//! psycopg (`pip install "psycopg[binary]"`).

mod common;

use common::agent::{text, Agent, BIN};
use common::{compile_probe, TempDir};
use serde_json::Value;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

/// psql on the agent's unix socket in `dir` (unaligned, tuples only), with
/// `-v VERBOSITY=verbose` so that errors carry their SQLSTATE.
fn psql(dir: &Path, args: &[&str]) -> Output {
    Command::new("psql")
        .args(["-X", "-A", "-t", "-v", "VERBOSITY=verbose", "-h"])
        .arg(dir)
        .args(["-U", "root", "-d", "sysql"])
        .args(args)
        .output()
        .expect("psql runs (apt-get install postgresql-client)")
}

/// One statement in psql; its output, which must be a success.
fn ask(dir: &Path, sql: &str) -> String {
    let out = psql(dir, &["-c", sql]);
    assert!(out.status.success(), "{sql}: {}", text(&out.stderr));
    text(&out.stdout).trim_end().to_string()
}

/// Asks until the answer is `want` (at most 30 s). A bounded statement
/// sees every event made before it, but a row can wait for a later record
/// (a connect for its outcome), and a live query subscribes after psql
/// started; each ask is a psql round trip, which paces the loop.
fn ask_until(dir: &Path, sql: &str, want: &str) -> String {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let got = ask(dir, sql);
        if got == want || Instant::now() > deadline {
            return got;
        }
    }
}

/// A statement psql must fail on; its stderr.
fn refused(dir: &Path, sql: &str) -> String {
    let out = psql(dir, &["-c", sql]);
    assert!(!out.status.success(), "{sql} ran: {}", text(&out.stdout));
    text(&out.stderr)
}

/// Runs tests/pg/client.py; its JSON answer.
fn client(args: &[&str]) -> Value {
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../tests/pg/client.py");
    let out = Command::new("python3").arg(script).args(args).output().unwrap();
    assert!(out.status.success(), "client.py {args:?}: {}", text(&out.stderr));
    serde_json::from_slice(&out.stdout).unwrap()
}

/// The comm of the calling thread (a test thread is named after its test,
/// cut to 15 bytes), as the kernel reports it for the syscalls it makes.
fn my_comm() -> String {
    std::fs::read_to_string("/proc/thread-self/comm").unwrap().trim_end().to_string()
}

#[test]
fn psql_asks_the_agent_on_its_unix_socket() {
    let dir = TempDir::new("pg-psql");
    let agent = Agent::start(dir.path(), &["--no-payload"]);
    assert!(agent.started.contains(".s.PGSQL.5432 (root"), "{}", agent.started);
    // five outbound connections the test makes itself, to a port of its own
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    let connections: Vec<TcpStream> = (0..5).map(|_| TcpStream::connect(("127.0.0.1", port)).unwrap()).collect();
    drop(connections);
    let d = dir.path();
    let count =
        format!("SELECT count(*) FROM connects WHERE dport = {port} AND ret = 0 AND ts > now() - INTERVAL '1 hour'");
    assert_eq!(ask_until(d, &count, "5"), "5");
    // by program, as the README asks it
    let by_comm =
        ask(d, &format!("SELECT comm, count(*) FROM connects WHERE dport = {port} GROUP BY comm ORDER BY 2 DESC"));
    assert_eq!(by_comm, format!("{}|5", my_comm()));

    // the README's tour, typed into psql
    for sql in common::readme_tour() {
        ask(d, &sql);
    }

    // psql's catalog commands
    let dt = ask(d, "\\dt");
    for table in ["opens", "connects", "execs", "accepts", "exits", "sysql_columns"] {
        assert!(dt.lines().any(|l| l.starts_with(&format!("public|{table}|"))), "\\dt lacks {table}:\n{dt}");
    }
    // every column of every table has a Postgres type its rows encode to
    for table in ["containers", "sysql_stats", "sysql_gaps"] {
        ask(d, &format!("SELECT * FROM {table} LIMIT 20"));
    }
    for line in dt.lines() {
        let mut cells = line.split('|');
        let (schema, table) = (cells.next().unwrap(), cells.next().unwrap());
        if schema == "public" {
            ask(d, &format!("SELECT * FROM {table} LIMIT 20"));
        }
    }
    let described = ask(d, "\\d connects");
    assert!(described.lines().any(|l| l.starts_with("ts|timestamp with time zone")), "{described}");

    // read-only, with the SQLSTATE a Postgres client expects
    let target = dir.join("written.csv");
    let e = refused(d, &format!("COPY (SELECT 1) TO '{}'", target.display()));
    assert!(e.contains("42501") || e.contains("25006"), "{e}");
    assert!(!target.exists(), "COPY wrote {}", target.display());
    let e = refused(d, "CREATE TABLE t (x int)");
    assert!(e.contains("ERROR:  25006"), "{e}");
    let e = refused(d, "DROP TABLE opens");
    assert!(e.contains("ERROR:  25006"), "{e}");
    // psql opens the file itself, and gets no row for it
    let copied = dir.join("copied.csv");
    let e = refused(d, &format!("\\copy (SELECT 1) TO '{}'", copied.display()));
    assert!(e.contains("42501"), "{e}");
    assert_eq!(std::fs::read(&copied).unwrap_or_default(), b"");
    let e = refused(d, "SELECT * FROM no_such_table");
    assert!(e.contains("ERROR:  42P01"), "{e}");
    let e = refused(d, "SELEC 1");
    assert!(e.contains("ERROR:  42601"), "{e}");
    let e = refused(d, "SELECT length(repeat('x', 2147483647))");
    assert!(e.contains("ERROR:  53200"), "{e}");

    // settings belong to a connection
    assert_eq!(
        ask(d, "SET datafusion.execution.batch_size = 7; SHOW datafusion.execution.batch_size"),
        "SET\ndatafusion.execution.batch_size|7"
    );
    assert_eq!(ask(d, "SHOW datafusion.execution.batch_size"), "datafusion.execution.batch_size|8192");
    // and after every refusal the agent still answers, and lost nothing
    assert_eq!(ask(d, &count), "5");
    assert_eq!(ask(d, "SELECT sum(lost_user) FROM sysql_stats"), "0");
    assert_eq!(agent.stop().code(), Some(0));
    assert!(!dir.join(".s.PGSQL.5432").exists(), "the agent left its Postgres socket behind");
}

/// psql with FETCH_COUNT streams a live query's rows as they happen;
/// Ctrl-C cancels the statement on the agent, and a client killed with
/// SIGKILL frees its subscription too.
#[test]
fn a_live_query_streams_to_psql_and_ctrl_c_cancels_it() {
    let dir = TempDir::new("pg-live");
    let agent = Agent::start(dir.path(), &["--no-payload"]);
    let d = dir.path();
    let live_queries = "SELECT live_queries FROM sysql_stats WHERE table_name = 'opens'";
    for how in ["ctrl-c", "kill -9"] {
        let tag = format!("pg-live-{}", how.replace(' ', ""));
        // stdbuf: psql's stdout line-buffered, as on a terminal
        let mut psql = Command::new("stdbuf")
            .args(["-oL", "psql", "-X", "-A", "-t", "-v", "FETCH_COUNT=1", "-h"])
            .arg(d)
            .args(["-U", "root", "-d", "sysql", "-c"])
            .arg(format!("SELECT path FROM live.opens WHERE path LIKE '%{tag}%'"))
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        assert_eq!(ask_until(d, live_queries, "1"), "1", "the live query never subscribed");
        let mut stdout = psql.stdout.take().unwrap();
        let (tx, chunks) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            let mut buf = [0u8; 4096];
            while let Ok(n @ 1..) = stdout.read(&mut buf) {
                if tx.send(text(&buf[..n])).is_err() {
                    break;
                }
            }
        });
        let mut seen = String::new();
        let mut latencies = Vec::new();
        for i in 0..3 {
            let path = dir.join(&format!("{tag}-{i}")).display().to_string();
            let t = Instant::now();
            assert!(std::fs::File::open(&path).is_err());
            // psql ends a row's line when the next row comes: wait for the path
            while !seen.contains(&path) {
                match chunks.recv_timeout(Duration::from_secs(30)) {
                    Ok(chunk) => seen.push_str(&chunk),
                    Err(_) => panic!("psql never showed {path}; it showed {seen:?}"),
                }
            }
            latencies.push(t.elapsed());
        }
        let shown: Vec<&str> = seen.lines().collect();
        let want: Vec<String> = (0..3).map(|i| dir.join(&format!("{tag}-{i}")).display().to_string()).collect();
        assert_eq!(shown, want);
        println!("{how}: an open reached psql in {latencies:?}");
        if how == "ctrl-c" {
            nix::sys::signal::kill(nix::unistd::Pid::from_raw(psql.id() as i32), nix::sys::signal::Signal::SIGINT)
                .unwrap();
            let out = psql.wait_with_output().unwrap();
            // Ctrl-C during a FETCH makes psql send a cancel request: the
            // agent cancels the statement and psql fails with its error.
            // Landing in the instant between two FETCHes, it makes psql
            // stop fetching by itself and close the cursor (exit 0), and
            // the cancel request it may still have sent ("Cancel request
            // sent") finds nothing running. Either way the live query ends
            // on the agent (below).
            let err = text(&out.stderr);
            if !out.status.success() {
                assert!(err.contains("canceling statement due to user request"), "{err}");
            } else {
                assert!(err.trim().is_empty() || err.trim() == "Cancel request sent", "{err}");
            }
        } else {
            psql.kill().unwrap();
            psql.wait().unwrap();
        }
        assert_eq!(ask_until(d, live_queries, "0"), "0", "{how} left the live query running");
    }
    assert_eq!(agent.stop().code(), Some(0));
}

/// A self-signed certificate for `cn`, and its key, in `dir`.
fn certificate(dir: &TempDir, cn: &str) -> (PathBuf, PathBuf) {
    let (cert, key) = (dir.join("cert.pem"), dir.join("key.pem"));
    let out = Command::new("openssl")
        .args(["req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes", "-days", "2"])
        .args(["-subj", &format!("/CN={cn}"), "-keyout"])
        .arg(&key)
        .arg("-out")
        .arg(&cert)
        .output()
        .expect("openssl runs");
    assert!(out.status.success(), "openssl: {}", text(&out.stderr));
    (cert, key)
}

/// A password file with `user`'s verifier, made by `sysql pg-password`.
fn password_file(dir: &TempDir, user: &str, password: &str) -> PathBuf {
    let mut made = Command::new(BIN)
        .args(["pg-password", user])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    writeln!(made.stdin.take().unwrap(), "{password}").unwrap();
    let out = made.wait_with_output().unwrap();
    assert!(out.status.success(), "pg-password: {}", text(&out.stderr));
    let line = text(&out.stdout);
    assert!(line.starts_with(&format!("{user}:SCRAM-SHA-256$4096:")), "{line}");
    // (base64 of random salt and keys holds any two letters now and then:
    // the tests' passwords are long enough not to be found by chance)
    assert!(!line.contains(password), "the verifier holds the password");
    let path = dir.join("passwords");
    std::fs::write(&path, line).unwrap();
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600)).unwrap();
    path
}

/// The TCP port the agent said it listens on for Postgres.
fn pg_port(agent: &Agent) -> u16 {
    let (_, after) = agent.started.split_once("127.0.0.1:").expect("a TCP listener");
    after.split(|c: char| !c.is_ascii_digit()).next().unwrap().parse().unwrap()
}

#[test]
fn psycopg_over_tls_with_scram_and_what_grafana_sends() {
    let dir = TempDir::new("pg-tls");
    let (cert, key) = certificate(&dir, "localhost");
    let passwords = password_file(&dir, "alice", "correct horse");
    let (cert, key, passwords) =
        (cert.display().to_string(), key.display().to_string(), passwords.display().to_string());
    let sock_dir = dir.path().display().to_string();
    let agent = Agent::start(
        dir.path(),
        &[
            "--no-payload",
            "--pg-listen",
            &sock_dir,
            "--pg-listen",
            "127.0.0.1:0",
            "--pg-passwords",
            &passwords,
            "--pg-tls-cert",
            &cert,
            "--pg-tls-key",
            &key,
        ],
    );
    assert!(agent.started.contains("(TLS, SCRAM)"), "{}", agent.started);
    let port = pg_port(&agent).to_string();
    let conninfo = |extra: &str| format!("host=127.0.0.1 port={port} dbname=sysql {extra}");
    let alice = conninfo("user=alice password='correct horse' sslmode=require");

    // refusals: a wrong password, an unknown user (the same words), no password
    for who in ["user=alice password=wrong sslmode=require", "user=mallory password=wrong sslmode=require"] {
        let said = client(&["refused", &conninfo(who)]);
        let said = said["refused"].as_str().expect("refused");
        assert!(said.contains("password authentication failed for user"), "{said}");
    }
    let said = client(&["refused", &conninfo("user=alice sslmode=require")]);
    assert!(said["refused"].is_string(), "{said}");

    // parameters and binary results: opens the test makes, by its comm
    let comm = my_comm();
    for i in 0..4 {
        assert!(std::fs::File::open(dir.join(&format!("pg-param-{i}"))).is_err());
    }
    let d = dir.path();
    let wait = format!("SELECT count(*) FROM opens WHERE path LIKE '%/pg-param-%' AND comm = '{comm}'");
    assert_eq!(ask_until(d, &wait, "4"), "4");
    let got = client(&["params", &alice, &comm, "%/pg-param-%"]);
    // int8 (20) and timestamptz (1184), decoded from binary by psycopg
    assert_eq!(got["columns"], serde_json::json!([["n", 20], ["first", 1184]]), "{got}");
    assert_eq!(got["rows"][0][0], 4, "{got}");
    assert!(got["rows"][0][1].as_str().unwrap().ends_with("+00:00"), "{got}");
    assert!(got["binary_param"][0][0].as_i64().unwrap() >= 4, "{got}");

    // what Grafana's PostgreSQL data source sends, for connections the test makes
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let target = listener.local_addr().unwrap().port();
    for _ in 0..3 {
        drop(TcpStream::connect(("127.0.0.1", target)).unwrap());
    }
    let wait = format!("SELECT count(*) FROM connects WHERE dport = {target} AND ret = 0");
    assert_eq!(ask_until(d, &wait, "3"), "3");
    // the range as Grafana writes it (RFC 3339, in UTC), the past hour
    let now = ask(d, "SELECT to_char(now(), '%Y-%m-%dT%H:%M:%S%.3fZ')");
    let from = ask(d, "SELECT to_char(now() - INTERVAL '1 hour', '%Y-%m-%dT%H:%M:%S%.3fZ')");
    let g = client(&["grafana", &alice, &from, &now, &target.to_string()]);
    assert_eq!(g["version"]["rows"], serde_json::json!([[1600]]), "{g}");
    let tables: Vec<&str> = g["tables"]["rows"].as_array().unwrap().iter().map(|r| r[0].as_str().unwrap()).collect();
    assert!(tables.contains(&"connects") || tables.contains(&"public.connects"), "{tables:?}");
    assert!(tables.iter().any(|t| t.ends_with("live.connects") || *t == "live.connects"), "{tables:?}");
    let columns = &g["columns"]["rows"];
    assert!(columns.as_array().unwrap().contains(&serde_json::json!(["ts", "timestamp with time zone"])), "{g}");
    // a time series panel: time as float8 (701), metric text (25), value int8 (20)
    let panel = &g["connections"];
    assert_eq!(panel["columns"], serde_json::json!([["time", 701], ["metric", 25], ["value", 20]]), "{g}");
    let total: i64 = panel["rows"].as_array().unwrap().iter().map(|r| r[2].as_i64().unwrap()).sum();
    assert_eq!(total, 3, "{g}");
    assert!(panel["rows"].as_array().unwrap().iter().all(|r| r[1] == comm.as_str()), "{g}");
    // the panels of docs/grafana-dashboard.json, as shipped
    let series = serde_json::json!([["time", 701], ["metric", 25], ["value", 20]]);
    assert_eq!(g["panel: Outbound TCP connections per program"]["columns"], series, "{g}");
    let ours = g["panel: Outbound TCP connections per program"]["rows"].as_array().unwrap();
    assert!(ours.iter().any(|r| r[1] == comm.as_str() && r[2].as_i64().unwrap() >= 3), "{g}");
    assert_eq!(
        g["panel: Failed opens by errno"]["columns"],
        serde_json::json!([["time", 701], ["metric", 25], ["value", 20]]),
        "{g}"
    );
    let failed = g["panel: Failed opens by errno"]["rows"].as_array().unwrap();
    assert!(failed.iter().any(|r| r[1] == "ENOENT" && r[2].as_i64().unwrap() >= 4), "{g}");
    let http = &g["panel: Top HTTP requests"]["columns"];
    assert_eq!(http[3], serde_json::json!(["requests", 20]), "{g}");
    assert_eq!(http[4], serde_json::json!(["avg_ms", 701]), "{g}");

    // connection set-up, printed for the record
    let setup = client(&["setup", &alice]);
    println!("TLS + SCRAM connection and SELECT 1: median {} s, max {} s", setup["median_s"], setup["max_s"]);
    assert_eq!(agent.stop().code(), Some(0));
}

/// The agent's peak resident memory (VmHWM), in bytes.
fn peak_rss(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    let line = status.lines().find(|l| l.starts_with("VmHWM:")).unwrap();
    line.split_whitespace().nth(1).unwrap().parse::<u64>().unwrap() * 1024
}

#[test]
fn fifty_clients_during_a_storm_lose_no_event() {
    let dir = TempDir::new("pg-many");
    let work = TempDir::new("pg-many-work");
    let probe = compile_probe(&work);
    let passwords = password_file(&dir, "bob", "s3cret");
    let passwords = passwords.display().to_string();
    let agent = Agent::start(
        dir.path(),
        &[
            "--no-payload",
            "--history-memory",
            "256MiB",
            "--query-memory",
            "256MiB",
            "--pg-listen",
            "127.0.0.1:0",
            "--pg-passwords",
            &passwords,
        ],
    );
    let port = pg_port(&agent);
    // plain TCP on loopback: SCRAM without TLS
    let conninfo = format!("host=127.0.0.1 port={port} dbname=sysql user=bob password=s3cret sslmode=disable");
    let w = work.path().display().to_string();
    let mut storm = Command::new(&probe).args(["rate", &w, "100000", "25000"]).spawn().unwrap();
    let got = client(&["many", &conninfo, "50", "SELECT count(*) >= 0 FROM opens"]);
    assert!(storm.wait().unwrap().success());
    assert_eq!(got["errors"], serde_json::json!([]), "{got}");
    let answers = got["answers"].as_array().unwrap();
    assert_eq!(answers.len(), 50);
    assert!(answers.iter().all(|a| *a == serde_json::json!([[true]])), "{got}");
    // every open of the storm is in history, none lost to the clients
    let sql = format!("SELECT count(*) FROM opens WHERE path LIKE '{w}/rate-%'");
    let counted =
        Command::new(BIN).arg("--agent").arg(&agent.socket).args(["-c", &sql, "--format", "csv"]).output().unwrap();
    let stats = agent.ask("SELECT sum(lost_kernel), sum(lost_user) FROM sysql_stats");
    let counted = text(&counted.stdout);
    println!("storm of 100000 opens with 50 Postgres clients: {counted:?} counted, lost kernel,user = {stats}");
    assert_eq!(agent.ask_until(&sql, "100000"), "100000", "lost: {stats}");
    let peak = peak_rss(agent.child.id());
    println!("agent peak RSS {} MiB", peak >> 20);
    // history + two statements' memory + 256 MiB for the rest
    assert!(peak <= (256 << 20) + 2 * (256 << 20) + (256 << 20), "peak RSS {peak}");
    assert_eq!(agent.stop().code(), Some(0));
}

/// A network namespace of the test's own, removed when dropped.
struct Netns(String);

impl Netns {
    fn new(name: &str, addr: &str) -> Netns {
        let _ = Command::new("ip").args(["netns", "del", name]).stderr(Stdio::null()).status();
        let ok = |args: &[&str]| {
            let out = Command::new("ip").args(args).output().expect("ip runs (apt-get install iproute2)");
            assert!(out.status.success(), "ip {args:?}: {}", text(&out.stderr));
        };
        ok(&["netns", "add", name]);
        ok(&["-n", name, "link", "set", "lo", "up"]);
        ok(&["-n", name, "addr", "add", addr, "dev", "lo"]);
        Netns(name.into())
    }

    fn exec(&self) -> Command {
        let mut c = Command::new("ip");
        c.args(["netns", "exec", &self.0]);
        c
    }
}

impl Drop for Netns {
    fn drop(&mut self) {
        let _ = Command::new("ip").args(["netns", "del", &self.0]).status();
    }
}

/// Off loopback, the agent refuses to start without TLS or with a bad
/// certificate, refuses clients without TLS, and answers with it.
#[test]
fn off_loopback_only_tls_gets_in() {
    let ns = Netns::new(&format!("sysql-pg-{}", std::process::id()), "10.213.0.1/32");
    let dir = TempDir::new("pg-netns");
    let passwords = password_file(&dir, "carol", "carol-pw-0").display().to_string();
    let state = dir.join("state").display().to_string();
    let socket = dir.join("sock").display().to_string();
    // An agent that must refuse to start: its exit status 2 and its one
    // line; one that starts anyway is stopped and fails the test.
    let refuses = |passwords: &str, extra: &[&str]| -> String {
        let mut child = ns
            .exec()
            .arg(BIN)
            .args(["agent", "--no-payload", "--state-dir", &state, "--socket", &socket])
            .args(["--pg-listen", "10.213.0.1:5432", "--pg-passwords", passwords])
            .args(extra)
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let mut said = Vec::new();
        for line in BufReader::new(child.stderr.take().unwrap()).lines() {
            let line = line.unwrap();
            if line.contains("answering on") {
                child.kill().unwrap();
                child.wait().unwrap();
                panic!("the agent started: {line}");
            }
            said.push(line);
        }
        assert_eq!(child.wait().unwrap().code(), Some(2), "{said:?}");
        assert_eq!(said.len(), 1, "{said:?}");
        said.remove(0)
    };
    let err = refuses(&passwords, &[]);
    assert!(err.contains("needs TLS off loopback"), "{err}");

    let garbage = dir.join("garbage.pem");
    std::fs::write(&garbage, "not a certificate\n").unwrap();
    let garbage = garbage.display().to_string();
    refuses(&passwords, &["--pg-tls-cert", &garbage, "--pg-tls-key", &garbage]);

    // a password file others can read is refused too
    let open = dir.join("open-passwords");
    std::fs::copy(&passwords, &open).unwrap();
    std::fs::set_permissions(&open, std::fs::Permissions::from_mode(0o644)).unwrap();
    let (cert, key) = certificate(&dir, "10.213.0.1");
    let (cert, key) = (cert.display().to_string(), key.display().to_string());
    let err = refuses(&open.display().to_string(), &["--pg-tls-cert", &cert, "--pg-tls-key", &key]);
    assert!(err.contains("password file"), "{err}");

    // with TLS it starts, in the namespace
    let mut child = ns
        .exec()
        .arg(BIN)
        .args(["agent", "--no-payload", "--state-dir", &state, "--socket", &socket])
        .args(["--pg-listen", "10.213.0.1:5432", "--pg-passwords", &passwords])
        .args(["--pg-tls-cert", &cert, "--pg-tls-key", &key])
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let stderr = child.stderr.take().unwrap();
    let mut child = KillOnDrop(child);
    let mut said = BufReader::new(stderr).lines();
    let started = said.find(|l| l.as_ref().map_or(true, |l| l.contains("answering on"))).unwrap().unwrap();
    assert!(started.contains("10.213.0.1:5432 (TLS, SCRAM)"), "{started}");
    let psql = |sslmode: &str| {
        ns.exec()
            .args(["psql", "-X", "-A", "-t", "-c", "SELECT 40 + 2"])
            .arg(format!("host=10.213.0.1 port=5432 dbname=sysql user=carol sslmode={sslmode}"))
            .env("PGPASSWORD", "carol-pw-0")
            .output()
            .unwrap()
    };
    let plain = psql("disable");
    assert!(!plain.status.success());
    assert!(text(&plain.stderr).contains("TLS"), "{}", text(&plain.stderr));
    let tls = psql("require");
    assert!(tls.status.success(), "{}", text(&tls.stderr));
    assert_eq!(text(&tls.stdout).trim(), "42");
    nix::sys::signal::kill(nix::unistd::Pid::from_raw(child.0.id() as i32), nix::sys::signal::Signal::SIGTERM).unwrap();
    assert_eq!(child.0.wait().unwrap().code(), Some(0));
}

/// A process killed if the test fails before it has stopped it.
struct KillOnDrop(std::process::Child);

impl Drop for KillOnDrop {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}
