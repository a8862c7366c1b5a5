//! The fleet as users run it, on loopback: three agents, each serving a
//! synthetic recording of its own (`sysql --data DIR agent --fleet-listen`),
//! asked by `sysql fleet` over mutual TLS with certificates from a CA the
//! test makes with openssl. Answers are checked against DuckDB reading the
//! same recordings' Parquet files. Also: EXPLAIN shows the partial
//! aggregate on the hosts, a stopped agent is left out and reported (or
//! fails the statement with --all-hosts), a coordinator with a certificate
//! of another CA is refused, and a worker refuses a crafted plan that
//! scans a file. `scale_curve` (ignored) measures the coordinator against
//! 1 to 50 workers (docs/fleet.md).

mod common;

use common::agent::{text, Agent, BIN};
use common::TempDir;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Instant;

fn run(cmd: &mut Command) {
    let out = cmd.output().unwrap();
    assert!(out.status.success(), "{cmd:?}: {}", text(&out.stderr));
}

/// A CA, a worker certificate for 127.0.0.1, a coordinator (client)
/// certificate, and a client certificate of another CA.
struct Certs {
    dir: PathBuf,
}

impl Certs {
    fn make(dir: &Path) -> Certs {
        let ossl = |args: &[&str]| run(Command::new("openssl").args(args).current_dir(dir));
        let key =
            |name: &str| ossl(&["genpkey", "-algorithm", "EC", "-pkeyopt", "ec_paramgen_curve:P-256", "-out", name]);
        for ca in ["ca", "rogue-ca"] {
            key(&format!("{ca}.key"));
            ossl(
                &["req", "-x509", "-new", "-key", &format!("{ca}.key"), "-out", &format!("{ca}.crt"), "-days", "2"]
                    .into_iter()
                    .chain(["-subj", &format!("/CN=sysql test {ca}")])
                    .collect::<Vec<_>>(),
            );
        }
        std::fs::write(
            dir.join("server.ext"),
            "subjectAltName=IP:127.0.0.1,DNS:localhost\nextendedKeyUsage=serverAuth\n",
        )
        .unwrap();
        std::fs::write(dir.join("client.ext"), "extendedKeyUsage=clientAuth\n").unwrap();
        for (name, ca, ext) in
            [("server", "ca", "server.ext"), ("client", "ca", "client.ext"), ("rogue", "rogue-ca", "client.ext")]
        {
            key(&format!("{name}.key"));
            let subj = format!("/CN=sysql test {name}");
            ossl(&["req", "-new", "-key", &format!("{name}.key"), "-out", &format!("{name}.csr"), "-subj", &subj]);
            ossl(&[
                "x509",
                "-req",
                "-in",
                &format!("{name}.csr"),
                "-CA",
                &format!("{ca}.crt"),
                "-CAkey",
                &format!("{ca}.key"),
                "-CAcreateserial",
                "-out",
                &format!("{name}.crt"),
                "-days",
                "2",
                "-extfile",
                ext,
            ]);
        }
        Certs { dir: dir.to_path_buf() }
    }

    fn path(&self, name: &str) -> String {
        self.dir.join(name).display().to_string()
    }
}

/// Writes a synthetic recording.
fn recording(dir: &Path, rows: usize, seed: u64) {
    run(Command::new(BIN)
        .args(["synth-recording", "--rows", &rows.to_string(), "--seed", &seed.to_string()])
        .arg("--dir")
        .arg(dir));
}

/// An agent serving a recording to the fleet.
struct Worker {
    agent: Agent,
    addr: String,
}

impl Worker {
    fn start(data: &Path, certs: &Certs) -> Worker {
        let mut cmd = Command::new(BIN);
        cmd.arg("--data")
            .arg(data)
            .args(["agent", "--fleet-listen", "127.0.0.1:0"])
            .args(["--fleet-cert", &certs.path("server.crt"), "--fleet-key", &certs.path("server.key")])
            .args(["--fleet-ca", &certs.path("ca.crt")]);
        // a recording's agent answers the fleet only: it has no socket
        let agent = Agent::spawn(cmd, PathBuf::new(), "fleet worker on ");
        let addr = agent.started.split("fleet worker on ").nth(1).and_then(|rest| rest.split(' ').next());
        let addr = addr.expect("the worker says where it listens").to_string();
        Worker { agent, addr }
    }

    /// SIGTERM, and wait until it is gone.
    fn stop(self) {
        assert!(self.agent.stop().success());
    }
}

/// `sysql fleet` over `hosts` with the coordinator's certificate `client`.
fn fleet(hosts: &[&str], certs: &Certs, client: &str, extra: &[&str], sql: &str) -> std::process::Output {
    let mut cmd = Command::new(BIN);
    cmd.arg("fleet");
    for h in hosts {
        cmd.args(["--host", h]);
    }
    cmd.args(["--cert", &certs.path(&format!("{client}.crt")), "--key", &certs.path(&format!("{client}.key"))])
        .args(["--ca", &certs.path("ca.crt")])
        .args(extra)
        .args(["--history-file", "/dev/null", "-c", sql, "--format", "csv"]);
    cmd.output().unwrap()
}

/// The rows (CSV lines, no header) of a fleet statement that must succeed.
fn ask(hosts: &[&str], certs: &Certs, sql: &str) -> Vec<String> {
    let out = fleet(hosts, certs, "client", &[], sql);
    assert_eq!(out.status.code(), Some(0), "{sql}: {}", text(&out.stderr));
    text(&out.stdout).lines().skip(1).map(str::to_string).collect()
}

/// DuckDB's answer over the recordings: `sql` reads the view `t`, the union
/// of `table` in every recording with a `host` column first.
fn duckdb(recordings: &[(&str, &Path)], table: &str, sql: &str) -> Vec<String> {
    // http_requests has a `host` column of its own (the Host header): the
    // fleet calls it http_host
    let columns = if table == "http_requests" { "* RENAME (host AS http_host)" } else { "*" };
    let union: Vec<String> = recordings
        .iter()
        .map(|(host, dir)| {
            format!(
                "SELECT '{host}' AS host, {columns} FROM read_parquet('{}/{table}/**/*.parquet', hive_partitioning = false)",
                dir.display()
            )
        })
        .collect();
    let script = format!(
        "import duckdb\ncon = duckdb.connect()\ncon.execute(\"CREATE VIEW t AS {}\")\nfor row in con.execute(\"{}\").fetchall():\n    print(','.join(str(v) for v in row))\n",
        union.join(" UNION ALL "),
        sql.replace('"', "\\\"")
    );
    let out = Command::new("python3").args(["-c", &script]).output().unwrap();
    assert!(out.status.success(), "duckdb (pip install duckdb): {}", text(&out.stderr));
    text(&out.stdout).lines().map(str::to_string).collect()
}

/// Three agents with recordings of 3000, 2000 and 1000 events per table.
struct Three {
    _dir: TempDir,
    certs: Certs,
    recs: Vec<PathBuf>,
    workers: Vec<Worker>,
}

impl Three {
    fn start(tag: &str) -> Three {
        let dir = TempDir::new(tag);
        let certs = Certs::make(dir.path());
        let mut recs = vec![];
        let mut workers = vec![];
        for (i, rows) in [3000, 2000, 1000].into_iter().enumerate() {
            let rec = dir.join(&format!("rec{i}"));
            recording(&rec, rows, i as u64 + 1);
            workers.push(Worker::start(&rec, &certs));
            recs.push(rec);
        }
        Three { _dir: dir, certs, recs, workers }
    }

    fn hosts(&self) -> Vec<&str> {
        self.workers.iter().map(|w| w.addr.as_str()).collect()
    }

    fn recordings(&self) -> Vec<(&str, &Path)> {
        self.workers.iter().zip(&self.recs).map(|(w, r)| (w.addr.as_str(), r.as_path())).collect()
    }
}

/// The same answers as DuckDB over the three recordings: a GROUP BY with
/// the host column, the done-when question, and two top-Ns over
/// http_requests; EXPLAIN shows the partial aggregate in a stage of one
/// task per host and the final aggregate on the coordinator.
#[test]
fn three_hosts_answer_as_duckdb_does() {
    let three = Three::start("fleet-three");
    let hosts = three.hosts();
    let recs = three.recordings();

    let by_comm = "SELECT host, comm, count(*) FROM connects GROUP BY 1, 2 ORDER BY 1, 2";
    let got = ask(&hosts, &three.certs, by_comm);
    assert_eq!(got, duckdb(&recs, "connects", &by_comm.replace("connects", "t")));
    assert_eq!(got.len(), 3 * 7, "every host, every comm: {got:?}");

    let shadow = "SELECT host, count(*) FROM opens WHERE path = '/etc/shadow' GROUP BY host ORDER BY host";
    let got = ask(&hosts, &three.certs, shadow);
    assert_eq!(got, duckdb(&recs, "opens", &shadow.replace("opens", "t")));
    assert_eq!(got.len(), 3);

    // one host: the same answer, from that host alone
    let one = "SELECT count(*) FROM opens WHERE path = '/etc/shadow'";
    assert_eq!(ask(&hosts[..1], &three.certs, one), duckdb(&recs[..1], "opens", &one.replace("opens", "t")));

    let slowest = "SELECT host, path, latency_ns FROM http_requests ORDER BY latency_ns DESC, host, path LIMIT 5";
    assert_eq!(
        ask(&hosts, &three.certs, slowest),
        duckdb(&recs, "http_requests", &slowest.replace("http_requests", "t"))
    );
    let top_paths =
        "SELECT path, count(*) AS n FROM http_requests WHERE status >= 400 GROUP BY path ORDER BY n DESC, path LIMIT 3";
    assert_eq!(
        ask(&hosts, &three.certs, top_paths),
        duckdb(&recs, "http_requests", &top_paths.replace("http_requests", "t"))
    );

    let explain = ask(&hosts, &three.certs, &format!("EXPLAIN {}", by_comm.replace(" ORDER BY 1, 2", "")));
    let plan = explain.join("\n");
    let partial = plan.find("mode=Partial").expect("a partial aggregate");
    let final_ = plan.find("mode=Final").expect("a final aggregate");
    assert!(final_ < partial, "the final aggregate above the partial one:\n{plan}");
    assert!(plan.contains("NetworkCoalesceExec"), "{plan}");
    assert!(plan.contains("input_tasks=3"), "one task per host:\n{plan}");
    for h in &hosts {
        assert!(plan.contains(&format!("host={h}")), "{h} scans its own table:\n{plan}");
    }
}

/// A stopped agent: the statement answers from the other two, says on
/// stderr which host was left out, and `sysql_fleet` says why; with
/// --all-hosts the statement fails with one line.
#[test]
fn a_stopped_host_is_left_out_and_reported() {
    let mut three = Three::start("fleet-stopped");
    let gone = three.workers.pop().unwrap();
    let gone_addr = gone.addr.clone();
    gone.stop();
    let mut hosts = three.hosts();
    hosts.push(&gone_addr);
    let recs = three.recordings();

    let sql = "SELECT host, count(*) FROM opens GROUP BY host ORDER BY host";
    let out = fleet(
        &hosts,
        &three.certs,
        "client",
        &[],
        &format!("{sql}; SELECT host, status, rows FROM sysql_fleet ORDER BY host"),
    );
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    let stdout = text(&out.stdout);
    let lines: Vec<&str> = stdout.lines().collect();
    let second = lines.iter().position(|l| *l == "host,status,rows").expect("the report's header");
    let answer: Vec<&str> = lines[1..second].to_vec();
    assert_eq!(answer, duckdb(&recs, "opens", &sql.replace("opens", "t")));
    let report: Vec<&str> = lines[second + 1..].to_vec();
    let mut want: Vec<String> = answer.iter().map(|l| format!("{},ok,{}", l.split(',').next().unwrap(), 1)).collect();
    want.push(format!("{gone_addr},unreachable,0"));
    want.sort();
    assert_eq!(report, want, "each host sent one row (its partial count)");
    let stderr = text(&out.stderr);
    let left: Vec<&str> = stderr.lines().filter(|l| l.contains("left out")).collect();
    assert_eq!(left.len(), 1, "{stderr}");
    assert!(left[0].starts_with(&format!("sysql: fleet: 2 of 3 hosts answered; left out: {gone_addr} (unreachable: ")));

    let out = fleet(&hosts, &three.certs, "client", &["--all-hosts"], sql);
    assert_eq!(out.status.code(), Some(1));
    assert_eq!(text(&out.stdout), "");
    let errors: Vec<String> =
        text(&out.stderr).lines().filter(|l| !l.contains("fleet of 3 hosts")).map(str::to_string).collect();
    assert_eq!(errors.len(), 1, "{errors:?}");
    assert!(
        errors[0].contains(&format!("1 of 3 hosts did not answer, and --all-hosts needs every one: {gone_addr}")),
        "{errors:?}"
    );
}

/// Mutual TLS: a coordinator whose certificate another CA signed gets
/// nothing from any host.
#[test]
fn a_coordinator_without_the_right_certificate_is_refused() {
    let three = Three::start("fleet-tls");
    let hosts = three.hosts();
    let out = fleet(&hosts, &three.certs, "rogue", &[], "SELECT count(*) FROM opens");
    assert_eq!(out.status.code(), Some(1), "{}", text(&out.stderr));
    assert_eq!(text(&out.stdout), "");
    let stderr = text(&out.stderr);
    assert!(stderr.contains("no host answered"), "{stderr}");
    for h in &hosts {
        assert!(stderr.contains(&format!("{h} (unreachable: ")), "{stderr}");
    }
    // the right certificate, the same hosts: answered
    assert_eq!(ask(&hosts, &three.certs, "SELECT count(*) FROM opens"), vec!["6000"]);
}

/// A worker runs only its allow-list: a plan that reads a file, sent by a
/// coordinator with the right certificate, is refused before it runs.
#[test]
fn a_worker_refuses_a_plan_that_scans_a_file() {
    use datafusion::prelude::{CsvReadOptions, SessionContext};
    use datafusion_distributed::grpc::{create_worker_client, BoxCloneSyncChannel};
    use datafusion_distributed::{MaybeEncoded, SetPlanRequest, TaskKey};
    use futures::StreamExt;

    let three = Three::start("fleet-crafted");
    let secret = three._dir.join("secret.csv");
    std::fs::write(&secret, "a,b\n1,2\n").unwrap();
    let rt = tokio::runtime::Runtime::new().unwrap();
    let err = rt.block_on(async {
        let ctx = SessionContext::new();
        ctx.register_csv("secret", secret.to_str().unwrap(), CsvReadOptions::new()).await.unwrap();
        let plan = ctx.sql("SELECT * FROM secret").await.unwrap().create_physical_plan().await.unwrap();
        let tls = tonic::transport::ClientTlsConfig::new()
            .identity(tonic::transport::Identity::from_pem(
                std::fs::read(three.certs.path("client.crt")).unwrap(),
                std::fs::read(three.certs.path("client.key")).unwrap(),
            ))
            .ca_certificate(tonic::transport::Certificate::from_pem(
                std::fs::read(three.certs.path("ca.crt")).unwrap(),
            ));
        let url = format!("https://{}", three.workers[0].addr);
        let channel = tonic::transport::Endpoint::from_shared(url.clone())
            .unwrap()
            .tls_config(tls)
            .unwrap()
            .connect()
            .await
            .unwrap();
        let mut client = create_worker_client(BoxCloneSyncChannel::new(channel));
        let request = SetPlanRequest {
            task_key: TaskKey { query_id: uuid::Uuid::new_v4(), stage_id: 1, task_number: 0 },
            task_count: 1,
            plan: MaybeEncoded::Decoded(plan),
            work_unit_feed_declarations: vec![],
            target_worker_url: url.parse().unwrap(),
            query_start_time_ns: 0,
        };
        let task = ctx.task_ctx();
        let answer = client
            .coordinator_channel(
                Default::default(),
                request,
                futures::stream::empty().boxed(),
                Default::default(),
                &task,
            )
            .await;
        match answer {
            Err(e) => e.to_string(),
            Ok(mut stream) => match stream.next().await {
                Some(Err(e)) => e.to_string(),
                _ => String::new(),
            },
        }
    });
    assert!(err.contains("sysql worker: refused a plan with DataSourceExec"), "the worker's answer: {err:?}");
}

/// The scale curve of docs/fleet.md: 50 workers on this machine, each with
/// a recording of its own size; the coordinator's latency for a filtered
/// count and a GROUP BY against 1, 5, 10, 25 and 50 hosts, and what each
/// host sent. `cargo test --test fleet scale_curve -- --ignored --nocapture`
#[test]
#[ignore]
fn scale_curve() {
    let dir = TempDir::new("fleet-scale");
    let certs = Certs::make(dir.path());
    let mut workers = vec![];
    for i in 0..50 {
        let rec = dir.join(&format!("rec{i}"));
        recording(&rec, 2000 + 1000 * (i % 10), i as u64 + 1);
        workers.push(Worker::start(&rec, &certs));
    }
    let queries = [
        ("filtered count", "SELECT count(*) FROM opens WHERE path = '/etc/shadow'"),
        ("group by", "SELECT host, comm, count(*) FROM connects GROUP BY 1, 2"),
    ];
    println!(
        "| hosts | query | first statement (ms) | next statements, median (ms) | rows/host | bytes/host | coordinator process, wall (ms) | coordinator process, CPU (ms) |"
    );
    println!("|---|---|---|---|---|---|---|---|");
    for n in [1, 5, 10, 25, 50] {
        let hosts: Vec<&str> = workers[..n].iter().map(|w| w.addr.as_str()).collect();
        for (name, sql) in queries {
            let statements = [sql; 6].join("; ");
            // the coordinator's own CPU time (user + system), whole process
            let cpu_file = dir.join("cpu");
            let mut cmd = Command::new("/usr/bin/time");
            cmd.args(["-f", "%U %S", "-o"]).arg(&cpu_file).arg(BIN).arg("fleet");
            for h in &hosts {
                cmd.args(["--host", h]);
            }
            let start = Instant::now();
            let out = cmd
                .args([
                    "--cert",
                    &certs.path("client.crt"),
                    "--key",
                    &certs.path("client.key"),
                    "--ca",
                    &certs.path("ca.crt"),
                ])
                .args(["--history-file", "/dev/null", "--format", "table", "-c"])
                .arg(format!("{statements}; SELECT avg(rows), avg(bytes) FROM sysql_fleet"))
                .output()
                .unwrap();
            let wall = start.elapsed();
            assert!(out.status.success(), "{}", text(&out.stderr));
            let stdout = text(&out.stdout);
            let mut elapsed: Vec<f64> = stdout
                .lines()
                .filter_map(|l| l.split("Elapsed ").nth(1))
                .filter_map(|s| s.split(' ').next()?.parse::<f64>().ok())
                .map(|s| s * 1e3)
                .collect();
            let per_host =
                stdout.lines().rev().find(|l| l.starts_with("| ") && l.contains('.')).unwrap_or("").to_string();
            elapsed.truncate(6);
            let first = elapsed[0];
            let mut rest = elapsed[1..].to_vec();
            rest.sort_by(|a, b| a.partial_cmp(b).unwrap());
            let cells: Vec<&str> = per_host.split('|').map(str::trim).filter(|c| !c.is_empty()).collect();
            let cpu: f64 = std::fs::read_to_string(&cpu_file)
                .unwrap()
                .split_whitespace()
                .filter_map(|v| v.parse::<f64>().ok())
                .sum();
            println!(
                "| {n} | {name} | {first:.1} | {:.1} | {} | {} | {:.0} | {:.0} |",
                rest[rest.len() / 2],
                cells.first().unwrap_or(&"?"),
                cells.get(1).unwrap_or(&"?"),
                wall.as_secs_f64() * 1e3,
                cpu * 1e3
            );
        }
    }
}
