//! Payload tests with real servers on loopback: an HTTP server hit by curl,
//! PostgreSQL queried by psql (simple protocol) and pgbench (extended
//! protocol), MariaDB queried by its client (over TCP and its unix socket)
//! and by Perl's DBD::MariaDB with server-side prepared statements (the
//! binary protocol), and a DNS question over UDP to port 53. Each asserts the
//! exact rows of http_requests, db_queries and dns_queries, on both the
//! server's and the client's side. Needs root, python3, curl, PostgreSQL,
//! MariaDB and DBD::MariaDB (installed by scripts/test):
//! `cargo test -p sysql --test payload`.

mod common;

use clap::Parser;
use common::{query, TempDir};
use std::net::TcpListener;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};
use sysql::app::{self, Running};

fn start(rt: &tokio::runtime::Runtime, extra: &[&str]) -> Running {
    let mut argv = vec!["sysql", "--history-memory", "256MiB"];
    argv.extend_from_slice(extra);
    app::start(rt, &sysql::cli::Args::parse_from(argv))
        .unwrap_or_else(|e| panic!("payload tests need root and a BTF kernel: {e}"))
}

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread().enable_all().build().unwrap()
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

/// Kills the child when dropped.
struct Guard(Child);

impl Drop for Guard {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn wait_for_port(port: u16) {
    let deadline = Instant::now() + Duration::from_secs(20);
    while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
        assert!(Instant::now() < deadline, "server on port {port} did not start");
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// Python's http.server serving `dir` on a free loopback port, once it accepts.
fn http_server(dir: &std::path::Path) -> (Guard, u16) {
    let port = free_port();
    let server = Guard(
        Command::new("python3")
            .args(["-m", "http.server", &port.to_string(), "--bind", "127.0.0.1"])
            .current_dir(dir)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("python3 runs"),
    );
    wait_for_port(port);
    (server, port)
}

fn run(cmd: &mut Command) -> String {
    let out = cmd.output().unwrap_or_else(|e| panic!("{cmd:?}: {e}"));
    assert!(out.status.success(), "{cmd:?} failed: {}", String::from_utf8_lossy(&out.stderr));
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// Rows of a query, after waiting (up to 15 s) for at least `want` of them:
/// an exchange becomes a row when its response is seen.
fn rows_eventually(rt: &tokio::runtime::Runtime, running: &Running, sql: &str, want: usize) -> Vec<Vec<String>> {
    let deadline = Instant::now() + Duration::from_secs(15);
    loop {
        rt.block_on(running.sync());
        let ctx = common::session(running);
        let rows = query(rt, &ctx, sql);
        if rows.len() >= want || Instant::now() > deadline {
            return rows;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
}

#[test]
fn http_requests_from_python_server_and_curl() {
    let rt = runtime();
    let running = start(&rt, &[]);
    let dir = TempDir::new("http");
    std::fs::write(dir.join("hello.txt"), b"hello from sysql\n").unwrap();
    let (server, port) = http_server(dir.path());
    let server_pid = server.0.id();
    let mut curl_pids = Vec::new();
    for path in ["/hello.txt", "/missing?q=1"] {
        let mut child = Command::new("curl")
            .args(["-s", "-o", "/dev/null", "-A", "sysql-test/1.0"])
            .arg(format!("http://127.0.0.1:{port}{path}"))
            .spawn()
            .expect("curl runs");
        curl_pids.push(child.id());
        assert!(child.wait().unwrap().success());
    }

    let sql = format!(
        "SELECT role, method, path, status, host, user_agent, local_port, remote_port, request_bytes > 0,
                response_bytes, latency_ns > 0, truncated, version
         FROM http_requests WHERE (pid = {server_pid} AND role = 'server') OR pid IN ({}, {})
         ORDER BY role DESC, ts",
        curl_pids[0], curl_pids[1]
    );
    let rows = rows_eventually(&rt, &running, &sql, 4);
    let host = format!("127.0.0.1:{port}");
    let p = port.to_string();
    // python's http.server answers HTTP/1.0 with Content-Length.
    let ok_len = (std::fs::metadata(dir.join("hello.txt")).unwrap().len()).to_string();
    assert_eq!(rows.len(), 4, "{rows:#?}");
    for (i, (path, status)) in [("/hello.txt", "200"), ("/missing?q=1", "404")].iter().enumerate() {
        let s = &rows[i];
        assert_eq!(&s[..5], ["server", "GET", path, status, &host], "server row {i}: {s:?}");
        assert_eq!(s[5], "sysql-test/1.0");
        assert_eq!(s[6], p, "server's local port");
        assert_eq!(&s[8..], ["true", s[9].as_str(), "true", "false", "HTTP/1.1"]);
        let c = &rows[2 + i];
        assert_eq!(&c[..6], ["client", "GET", path, status, &host, "sysql-test/1.0"], "client row {i}: {c:?}");
        assert_eq!(c[7], p, "client's remote port");
        // both sides count the same response bytes
        assert_eq!(c[9], s[9], "response bytes seen by both ends");
    }
    let body: u64 = ok_len.parse().unwrap();
    let resp: u64 = rows[0][9].parse().unwrap();
    assert!(resp > body, "the 200 response counts head and body: {resp} > {body}");

    // The issue's query runs.
    let ctx = common::session(&running);
    let top = query(
        &rt,
        &ctx,
        &format!(
            "SELECT method, path, count(*) AS hits, avg(latency_ns)/1e6 > 0 AS avg_ms
             FROM http_requests WHERE ts > now() - INTERVAL '10 minutes' AND pid = {server_pid}
             GROUP BY method, path ORDER BY hits DESC, path LIMIT 10"
        ),
    );
    assert_eq!(
        top,
        vec![vec!["GET", "/hello.txt", "1", "true"], vec!["GET", "/missing?q=1", "1", "true"]]
            .into_iter()
            .map(|r| r.into_iter().map(String::from).collect::<Vec<_>>())
            .collect::<Vec<_>>()
    );
}

/// A throwaway PostgreSQL cluster owned by the `postgres` user.
struct Postgres {
    dir: PathBuf,
    bin: PathBuf,
    port: u16,
}

impl Postgres {
    fn start() -> Postgres {
        let bin = std::fs::read_dir("/usr/lib/postgresql")
            .expect("PostgreSQL is installed (apt-get install postgresql)")
            .filter_map(|e| e.ok().map(|e| e.path().join("bin")))
            .find(|b| b.join("initdb").exists())
            .expect("initdb found");
        let dir = std::env::temp_dir().join(format!("sysql-test-pg-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        run(Command::new("chown").args(["postgres:postgres"]).arg(&dir));
        let port = free_port();
        let as_pg = |cmd: String| {
            run(Command::new("su").args(["postgres", "-s", "/bin/sh", "-c", &cmd]));
        };
        let d = dir.display();
        as_pg(format!("{} -D {d}/data -A trust -U postgres >/dev/null", bin.join("initdb").display()));
        as_pg(format!(
            "{} -D {d}/data -l {d}/log -w -o '-p {port} -k {d} -c listen_addresses=127.0.0.1' start >/dev/null",
            bin.join("pg_ctl").display()
        ));
        wait_for_port(port);
        Postgres { dir, bin, port }
    }

    fn psql(&self, sql: &str) -> (u32, bool) {
        let child = Command::new(self.bin.join("psql"))
            .args(["-h", "127.0.0.1", "-p", &self.port.to_string(), "-U", "postgres", "-d", "postgres", "-X", "-q"])
            .args(["-c", sql])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let pid = child.id();
        let out = child.wait_with_output().unwrap();
        (pid, out.status.success())
    }
}

impl Drop for Postgres {
    fn drop(&mut self) {
        let _ = Command::new("su")
            .args(["postgres", "-s", "/bin/sh", "-c"])
            .arg(format!("{} -D {}/data -m immediate stop", self.bin.join("pg_ctl").display(), self.dir.display()))
            .output();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

#[test]
fn db_queries_from_postgres_simple_and_extended() {
    let rt = runtime();
    let running = start(&rt, &[]);
    let pg = Postgres::start();
    let (psql_ok, ok) = pg.psql("SELECT 1 AS one");
    assert!(ok);
    let injection = "SELECT usename FROM pg_user WHERE usename = '' or 1=1 --'";
    let (psql_inj, ok) = pg.psql(injection);
    assert!(ok);
    let (psql_err, ok) = pg.psql("SELECT * FROM no_such_table");
    assert!(!ok, "the failing query fails");
    // pgbench sends its script with Parse/Bind/Execute/Sync.
    let script = pg.dir.join("q.sql");
    std::fs::write(&script, "SELECT 42 AS answer;\n").unwrap();
    let bench = Command::new(pg.bin.join("pgbench"))
        .args(["-n", "-M", "extended", "-t", "2", "-h", "127.0.0.1", "-p", &pg.port.to_string(), "-U", "postgres"])
        .arg("-f")
        .arg(&script)
        .arg("postgres")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let bench_pid = bench.id();
    assert!(bench.wait_with_output().unwrap().status.success());

    // Client side: exact rows per client process.
    let sql = format!(
        "SELECT pid, role, protocol, query, outcome, error, tag, user, database, server_addr, server_port,
                client_addr, latency_ns > 0
         FROM db_queries WHERE pid IN ({psql_ok}, {psql_inj}, {psql_err}, {bench_pid}) ORDER BY ts"
    );
    let rows = rows_eventually(&rt, &running, &sql, 5);
    let port = pg.port.to_string();
    let expect = |pid: u32, q: &str, outcome: &str, error: &str, tag: &str| -> Vec<String> {
        [
            &pid.to_string(),
            "client",
            "postgres",
            q,
            outcome,
            error,
            tag,
            "postgres",
            "postgres",
            "127.0.0.1",
            &port,
            "127.0.0.1",
            "true",
        ]
        .iter()
        .map(|s| s.to_string())
        .collect()
    };
    assert_eq!(
        rows,
        vec![
            expect(psql_ok, "SELECT 1 AS one", "ok", "NULL", "SELECT 1"),
            expect(psql_inj, injection, "ok", "NULL", "SELECT 1"),
            expect(
                psql_err,
                "SELECT * FROM no_such_table",
                "error",
                "relation \"no_such_table\" does not exist",
                "NULL"
            ),
            expect(bench_pid, "SELECT 42 AS answer;", "ok", "NULL", "SELECT 1"),
            expect(bench_pid, "SELECT 42 AS answer;", "ok", "NULL", "SELECT 1"),
        ],
        "{rows:#?}"
    );

    // Server side: the issue's question, answered from the database's sockets.
    let ctx = common::session(&running);
    let hits = query(
        &rt,
        &ctx,
        "SELECT comm, role, client_addr, query FROM db_queries
         WHERE role = 'server' AND (query ILIKE '%or 1=1%' OR query ILIKE '%union select%')",
    );
    assert_eq!(hits, vec![vec!["postgres".to_string(), "server".into(), "127.0.0.1".into(), injection.into()]]);
    let server = query(
        &rt,
        &ctx,
        "SELECT query, outcome, count(*) FROM db_queries WHERE role = 'server' AND comm = 'postgres'
         AND query IN ('SELECT 1 AS one', 'SELECT * FROM no_such_table', 'SELECT 42 AS answer;')
         GROUP BY query, outcome ORDER BY query",
    );
    assert_eq!(
        server,
        [
            ["SELECT * FROM no_such_table", "error", "1"],
            ["SELECT 1 AS one", "ok", "1"],
            ["SELECT 42 AS answer;", "ok", "2"]
        ]
        .iter()
        .map(|r| r.iter().map(|s| s.to_string()).collect::<Vec<_>>())
        .collect::<Vec<_>>()
    );
}

const DNS_SCRIPT: &str = r#"
import socket, struct, sys
role = sys.argv[1]
if role == "server":
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    s.bind(("127.0.0.1", 53))
    print("ready", flush=True)
    q, peer = s.recvfrom(512)
    qid = q[:2]
    question = q[12:]
    answer = b"\xc0\x0c" + struct.pack(">HHIH", 1, 1, 60, 4) + bytes([10, 1, 2, 3])
    s.sendto(qid + struct.pack(">HHHHH", 0x8180, 1, 1, 0, 0) + question + answer, peer)
else:
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    name = b"".join(bytes([len(p)]) + p for p in b"sysql.example.test".split(b".")) + b"\0"
    s.sendto(struct.pack(">HHHHHH", 0x1234, 0x0100, 1, 0, 0, 0) + name + struct.pack(">HH", 1, 1), ("127.0.0.1", 53))
    s.settimeout(5)
    s.recvfrom(512)
"#;

#[test]
fn dns_queries_over_udp_port_53() {
    let rt = runtime();
    let running = start(&rt, &[]);
    let dir = TempDir::new("dns");
    let script = dir.join("dns.py");
    std::fs::write(&script, DNS_SCRIPT).unwrap();
    let mut server =
        Guard(Command::new("python3").arg(&script).arg("server").stdout(Stdio::piped()).spawn().expect("python3 runs"));
    let mut line = String::new();
    std::io::BufRead::read_line(&mut std::io::BufReader::new(server.0.stdout.as_mut().unwrap()), &mut line).unwrap();
    assert_eq!(line.trim(), "ready", "the DNS server binds 127.0.0.1:53");
    let client = Command::new("python3").arg(&script).arg("client").spawn().unwrap();
    let client_pid = client.id();
    assert!(client.wait_with_output().unwrap().status.success());
    let server_pid = server.0.id();

    let sql = format!(
        "SELECT role, name, type, rcode, answers, id, server_addr, server_port, latency_ns >= 0
         FROM dns_queries WHERE pid IN ({client_pid}, {server_pid}) ORDER BY role"
    );
    let rows = rows_eventually(&rt, &running, &sql, 2);
    let row = |role: &str| -> Vec<String> {
        [role, "sysql.example.test", "A", "NOERROR", "10.1.2.3", "4660", "127.0.0.1", "53", "true"]
            .iter()
            .map(|s| s.to_string())
            .collect()
    };
    assert_eq!(rows, vec![row("client"), row("server")], "{rows:#?}");
    let ctx = common::session(&running);
    let top = query(
        &rt,
        &ctx,
        "SELECT name, count(*) FROM dns_queries WHERE name = 'sysql.example.test' GROUP BY name ORDER BY 2 DESC",
    );
    assert_eq!(top, vec![vec!["sysql.example.test".to_string(), "2".into()]]);
}

#[test]
fn no_payload_captures_nothing_and_redaction_masks_literals() {
    let rt = runtime();
    // --redact-payload: literals and header values masked.
    let running = start(&rt, &["--redact-payload"]);
    let dir = TempDir::new("redact");
    std::fs::write(dir.join("f"), b"x").unwrap();
    let (_server, port) = http_server(dir.path());
    let curl = Command::new("curl")
        .args(["-s", "-o", "/dev/null", "-A", "secret-agent"])
        .arg(format!("http://127.0.0.1:{port}/f?token=hunter2"))
        .spawn()
        .unwrap();
    let curl_pid = curl.id();
    assert!(curl.wait_with_output().unwrap().status.success());
    let rows = rows_eventually(
        &rt,
        &running,
        &format!("SELECT path, user_agent, host, status FROM http_requests WHERE pid = {curl_pid}"),
        1,
    );
    assert_eq!(rows, vec![vec!["/f?token=***".to_string(), "***".into(), "***".into(), "200".into()]]);
    drop(running);

    // --no-payload: the socket programs are not even attached.
    let running = start(&rt, &["--no-payload"]);
    let curl =
        Command::new("curl").args(["-s", "-o", "/dev/null"]).arg(format!("http://127.0.0.1:{port}/f")).spawn().unwrap();
    let curl_pid = curl.id();
    assert!(curl.wait_with_output().unwrap().status.success());
    rt.block_on(running.sync());
    let ctx = common::session(&running);
    assert_eq!(
        query(&rt, &ctx, &format!("SELECT count(*) FROM http_requests WHERE pid = {curl_pid}")),
        vec![vec!["0"]]
    );
    let connects = format!("SELECT count(*) FROM connects WHERE pid = {curl_pid} AND dport = {port}");
    assert_eq!(query(&rt, &ctx, &connects), vec![vec!["1"]], "other tables are still captured");
}

/// A throwaway MariaDB server on a unix socket and a loopback port of its
/// own, under a temporary datadir (made by mariadb-install-db, root with no
/// password), killed when dropped.
struct Mariadb {
    dir: PathBuf,
    port: u16,
    server: Guard,
}

impl Mariadb {
    fn start() -> Mariadb {
        let dir = std::env::temp_dir().join(format!("sysql-test-mariadb-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        run(Command::new("chown").args(["mysql:mysql"]).arg(&dir));
        run(Command::new("mariadb-install-db")
            .args(["--no-defaults", "--user=mysql", "--auth-root-authentication-method=normal", "--skip-test-db"])
            .arg(format!("--datadir={}/data", dir.display())));
        let port = free_port();
        let d = dir.display();
        let server = Guard(
            Command::new("mariadbd")
                .args(["--no-defaults", "--user=mysql", "--skip-log-bin", "--innodb-buffer-pool-size=16M"])
                .args(["--bind-address=127.0.0.1", &format!("--port={port}")])
                .args([format!("--datadir={d}/data"), format!("--socket={d}/sock"), format!("--pid-file={d}/pid")])
                .arg(format!("--log-error={d}/err"))
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .spawn()
                .expect("mariadbd runs (apt-get install mariadb-server)"),
        );
        wait_for_port(port);
        let db = Mariadb { dir, port, server };
        db.client(&["-e", "CREATE DATABASE shop; CREATE TABLE shop.users (id INT PRIMARY KEY, name TEXT); INSERT INTO shop.users VALUES (1, 'ada'), (2, 'bob')"]);
        db
    }

    fn socket(&self) -> PathBuf {
        self.dir.join("sock")
    }

    /// The `mariadb` client over TCP (`args` after the connection options);
    /// returns its pid once it ended, and whether it succeeded.
    fn client(&self, args: &[&str]) -> (u32, bool) {
        let child = Command::new("mariadb")
            .args(["-h", "127.0.0.1", "-P", &self.port.to_string(), "-u", "root", "--skip-ssl"])
            .args(args)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("the mariadb client runs");
        let pid = child.id();
        let ok = child.wait_with_output().unwrap().status.success();
        (pid, ok)
    }
}

impl Drop for Mariadb {
    fn drop(&mut self) {
        let _ = self.server.0.kill();
        let _ = self.server.0.wait();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// A prepared statement over MySQL's binary protocol (COM_STMT_PREPARE,
/// COM_STMT_EXECUTE twice, COM_STMT_CLOSE), from Perl's DBD::MariaDB with
/// server-side prepares.
const PERL_PREPARED: &str = r#"
use DBI;
my ($port) = @ARGV;
my $d = DBI->connect("DBI:MariaDB:database=shop;host=127.0.0.1;port=$port;mariadb_server_prepare=1", "root", "",
    {RaiseError => 1, PrintError => 0});
my $s = $d->prepare("SELECT name FROM users WHERE id = ?");
for my $id (1, 2) { $s->execute($id); my @r = $s->fetchrow_array; print "@r\n"; }
$s->finish;
undef $s;
eval { $d->prepare("SELECT nope FROM users WHERE id = ?")->execute(1) };
$d->disconnect;
"#;

#[test]
fn db_queries_from_mariadb_text_and_binary_protocols() {
    let rt = runtime();
    let running = start(&rt, &[]);
    let db = Mariadb::start();
    let (tcp_ok, ok) = db.client(&["-D", "shop", "-e", "SELECT name FROM users WHERE id = 1"]);
    assert!(ok);
    let (tcp_err, ok) = db.client(&["-e", "SELECT * FROM shop.no_such_table"]);
    assert!(!ok, "the failing query fails");
    // over the unix socket
    let child = Command::new("mariadb")
        .args([
            "-S",
            &db.socket().display().to_string(),
            "-u",
            "root",
            "-e",
            "UPDATE shop.users SET name = 'eve' WHERE id = 2",
        ])
        .spawn()
        .unwrap();
    let unix = child.id();
    assert!(child.wait_with_output().unwrap().status.success());
    // PREPARE / EXECUTE in SQL: COM_QUERY statements
    let (sql_ps, ok) = db.client(&["-D", "shop", "-e", "PREPARE s FROM 'SELECT count(*) FROM users WHERE id > ?'; SET @a = 0; EXECUTE s USING @a; DEALLOCATE PREPARE s"]);
    assert!(ok);
    let dir = TempDir::new("mariadb-perl");
    let script = dir.join("prepared.pl");
    std::fs::write(&script, PERL_PREPARED).unwrap();
    let perl = Command::new("perl").arg(&script).arg(db.port.to_string()).stderr(Stdio::piped()).spawn().unwrap();
    let perl_pid = perl.id();
    let out = perl.wait_with_output().unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));

    // Client side: every statement of each client, exactly.
    let sql = format!(
        "SELECT pid, query, outcome, error, tag, user, database, server_port, truncated
         FROM db_queries WHERE role = 'client' AND protocol = 'mysql'
         AND (pid IN ({tcp_ok}, {tcp_err}, {unix}, {sql_ps}) OR (pid = {perl_pid} AND query LIKE 'SELECT%'))
         ORDER BY ts"
    );
    let rows = rows_eventually(&rt, &running, &sql, 10);
    let port = db.port.to_string();
    let row = |pid: u32, q: &str, outcome: &str, error: &str, tag: &str, database: &str, port: &str| -> Vec<String> {
        [&pid.to_string(), q, outcome, error, tag, "root", database, port, "false"]
            .iter()
            .map(|s| s.to_string())
            .collect()
    };
    let ps_query = "PREPARE s FROM 'SELECT count(*) FROM users WHERE id > ?'";
    let prepared = "SELECT name FROM users WHERE id = ?";
    // the third statement fails to prepare: its error text is the server's own
    let nope_error = rows.last().map(|r| r[3].clone()).unwrap_or_default();
    assert!(nope_error.starts_with("Unknown column 'nope'"), "{rows:#?}");
    let want = vec![
        row(tcp_ok, "SELECT name FROM users WHERE id = 1", "ok", "NULL", "RESULTSET", "shop", &port),
        row(
            tcp_err,
            "SELECT * FROM shop.no_such_table",
            "error",
            "Table 'shop.no_such_table' doesn't exist",
            "NULL",
            "NULL",
            &port,
        ),
        row(unix, "UPDATE shop.users SET name = 'eve' WHERE id = 2", "ok", "NULL", "OK 1", "NULL", "NULL"),
        row(sql_ps, ps_query, "ok", "NULL", "OK 0", "shop", &port),
        row(sql_ps, "SET @a = 0", "ok", "NULL", "OK 0", "shop", &port),
        row(sql_ps, "EXECUTE s USING @a", "ok", "NULL", "RESULTSET", "shop", &port),
        row(sql_ps, "DEALLOCATE PREPARE s", "ok", "NULL", "OK 0", "shop", &port),
        // COM_STMT_PREPARE, then COM_STMT_EXECUTE twice: one row per execution
        row(perl_pid, prepared, "ok", "NULL", "RESULTSET", "shop", &port),
        row(perl_pid, prepared, "ok", "NULL", "RESULTSET", "shop", &port),
        row(perl_pid, "SELECT nope FROM users WHERE id = ?", "error", &nope_error, "NULL", "shop", &port),
    ];
    assert_eq!(rows, want, "{rows:#?}");

    // Server side: MariaDB reads each packet's header and payload apart; the
    // same statements, from the server's sockets (TCP and unix).
    let server = rows_eventually(
        &rt,
        &running,
        &format!(
            "SELECT query, outcome, count(*), min(user) FROM db_queries WHERE role = 'server' AND comm = 'mariadbd'
             AND (query LIKE '%shop.%' OR query = '{prepared}' OR query LIKE '%nope%' OR query LIKE 'EXECUTE%')
             AND query NOT LIKE 'CREATE%' AND query NOT LIKE 'INSERT%'
             GROUP BY query, outcome ORDER BY query"
        ),
        5,
    );
    let s = |q: &str, outcome: &str, n: &str| -> Vec<String> {
        [q, outcome, n, "root"].iter().map(|s| s.to_string()).collect()
    };
    assert_eq!(
        server,
        vec![
            s("EXECUTE s USING @a", "ok", "1"),
            s("SELECT * FROM shop.no_such_table", "error", "1"),
            s(prepared, "ok", "2"),
            s("SELECT nope FROM users WHERE id = ?", "error", "1"),
            s("UPDATE shop.users SET name = 'eve' WHERE id = 2", "ok", "1"),
        ]
    );
}
