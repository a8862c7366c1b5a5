//! Command-line arguments, and the duration and size values they take.

use crate::print::Format;
use crate::schedule::library::Results;
use crate::schedule::sink::SinkSpec;
use clap::Parser;
use std::path::PathBuf;
use std::time::Duration;

/// SQL over live Linux syscalls.
///
/// With no -c or -f, starts an interactive shell over the live capture.
#[derive(Debug, Parser)]
#[command(name = "sysql", version, about, long_about = None)]
pub struct Args {
    #[command(subcommand)]
    pub subcommand: Option<Subcommand>,

    /// Run this SQL (one or more `;`-separated statements) and exit;
    /// repeatable, and run in order with the -f files.
    #[arg(short = 'c', long = "command", value_name = "SQL", global = true)]
    pub command: Vec<String>,

    /// Run the statements in this file (`-` for standard input) and exit;
    /// repeatable, and run in order with the -c texts.
    #[arg(short = 'f', long = "file", value_name = "FILE", global = true)]
    pub file: Vec<PathBuf>,

    /// The -c texts and -f files in the order they were given (filled by
    /// [`Args::parse_ordered`]).
    #[arg(skip)]
    pub scripts: Vec<Script>,

    /// Quiet: no banner and no "N row(s) fetched" footers.
    #[arg(short = 'q', long)]
    pub quiet: bool,

    /// Write no shell history (none is written either when input is not a
    /// terminal).
    #[arg(long)]
    pub no_history: bool,

    /// Print each statement's elapsed time after its footer (as `\timing
    /// on` in the shell); off by default.
    #[arg(long, global = true)]
    pub timing: bool,

    /// With -c or -f: capture for this long first (e.g. 500ms, 5s, 2m, 1h).
    #[arg(long = "for", value_name = "DURATION", value_parser = parse_duration)]
    pub capture_for: Option<Duration>,

    /// Output format: table, csv, json, ndjson or bar.
    #[arg(long, value_name = "FORMAT", default_value = "table", global = true)]
    pub format: Format,

    /// Print at most this many rows of a result (table or bar format); the shell's
    /// default is 40 (`\maxrows` changes it), -c and -f print every row.
    #[arg(long, value_name = "N", global = true)]
    pub maxrows: Option<usize>,

    /// How long each table keeps events.
    #[arg(long, value_name = "DURATION", default_value = "1h", value_parser = parse_duration, global = true)]
    pub history: Duration,

    /// Memory for history, all tables together (e.g. 512MiB, 2GiB); past it
    /// the oldest events of the largest table are evicted, and counted.
    #[arg(long, value_name = "BYTES", default_value = "1GiB", value_parser = parse_size, global = true)]
    pub history_memory: u64,

    /// Memory one statement may use: its operators' state, the values its
    /// functions build, the results held for printing. Past it the statement
    /// fails with one line; capture and history are untouched.
    #[arg(long, value_name = "BYTES", default_value = "2GiB", value_parser = parse_size, global = true)]
    pub query_memory: u64,

    /// Kernel ring buffer size (a power of two).
    #[arg(long, value_name = "BYTES", default_value = "16MiB", value_parser = parse_size, global = true)]
    pub ring_size: u64,

    /// Capture no socket payloads at all: the http_requests, db_queries and
    /// dns_queries tables stay empty and socket reads and writes are not traced.
    #[arg(long, global = true)]
    pub no_payload: bool,

    /// Capture only events that match: KEY=VALUE with KEY one of comm, pid,
    /// uid, cgroup (an id or a cgroup v2 path), path (a prefix of an open's
    /// path) or syscall. Repeat it: values of one key are alternatives, keys
    /// must all match. The kernel skips the rest before copying anything,
    /// and counts them in sysql_stats.filtered_kernel.
    #[arg(long, value_name = "KEY=VALUE", global = true)]
    pub capture_only: Vec<String>,

    /// Skip events that match (KEY=VALUE, as --capture-only), in the kernel.
    #[arg(long, value_name = "KEY=VALUE", global = true)]
    pub capture_exclude: Vec<String>,

    /// Payload bytes copied from each socket send or receive (at most 4KiB);
    /// longer messages are cut and flagged `truncated`.
    #[arg(long, value_name = "BYTES", default_value = "4KiB", value_parser = parse_size, global = true)]
    pub snap_len: u64,

    /// Store SQL literals as `?`, and HTTP header values and query-string
    /// values as `***`, in the payload tables.
    #[arg(long, global = true)]
    pub redact_payload: bool,

    /// Shell history file (default ~/.sysql_history; created mode 0600).
    #[arg(long, value_name = "FILE", global = true)]
    pub history_file: Option<PathBuf>,

    /// Allow statements that read or write files (COPY TO, CREATE EXTERNAL
    /// TABLE), in the shell, -c, -f and saved queries. Off by default: sysql
    /// runs as root.
    #[arg(long, global = true)]
    pub allow_file_access: bool,

    /// Store what this regular expression matches in execs.argv as `***`
    /// (its first capture group, or the whole match); repeatable. Added to
    /// the default patterns, which mask the values of options such as
    /// --password=, --token=, --secret=, --api-key= (docs/tables/execs.md).
    #[arg(long = "redact-argv", value_name = "REGEX", global = true)]
    pub redact_argv: Vec<String>,

    /// Do not apply the default argv patterns (those given with
    /// --redact-argv still apply).
    #[arg(long, global = true)]
    pub no_redact_argv: bool,

    /// The agent's socket: the shell and -c/-f ask the agent there when one
    /// runs (default /run/sysql/sysql.sock); given explicitly, an agent must
    /// answer there.
    #[arg(long, value_name = "PATH")]
    pub agent: Option<PathBuf>,

    /// Capture in this process even if an agent runs.
    #[arg(long, conflicts_with_all = ["agent", "data"])]
    pub embedded: bool,

    /// Read a state directory (or a copy of one) instead of capturing: the
    /// same tables over its history; live tables replay it in event time.
    /// Needs no privileges.
    #[arg(long, value_name = "DIR", conflicts_with = "agent")]
    pub data: Option<PathBuf>,

    /// With --data: replay live tables at this many times the recorded pace
    /// (1 is as recorded); by default as fast as the query takes rows.
    #[arg(long, value_name = "SPEED", requires = "data")]
    pub pace: Option<f64>,
}

/// One `-c` text or `-f` file, in command-line order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Script {
    Sql(String),
    File(PathBuf),
}

impl Args {
    /// Parses the process's arguments, keeping the order of `-c` and `-f`
    /// (as psql runs them).
    pub fn parse_ordered() -> Args {
        Self::parse_ordered_from(std::env::args_os())
    }

    /// [`Args::parse_ordered`] over `argv`; exits with clap's message on a
    /// bad option.
    pub fn parse_ordered_from<I, T>(argv: I) -> Args
    where
        I: IntoIterator<Item = T>,
        T: Into<std::ffi::OsString> + Clone,
    {
        use clap::{CommandFactory, FromArgMatches};
        let matches = Args::command().get_matches_from(argv);
        let mut args = Args::from_arg_matches(&matches).unwrap_or_else(|e| e.exit());
        let at = |id: &str| matches.indices_of(id).map(|i| i.collect::<Vec<_>>()).unwrap_or_default();
        let mut scripts: Vec<(usize, Script)> = at("command")
            .into_iter()
            .zip(args.command.iter().cloned().map(Script::Sql))
            .chain(at("file").into_iter().zip(args.file.iter().cloned().map(Script::File)))
            .collect();
        scripts.sort_by_key(|(index, _)| *index);
        args.scripts = scripts.into_iter().map(|(_, script)| script).collect();
        args
    }
}

/// Where the agent's socket is by default.
pub const DEFAULT_SOCKET: &str = "/run/sysql/sysql.sock";
/// Where the agent keeps its state by default.
pub const DEFAULT_STATE_DIR: &str = "/var/lib/sysql";

/// What sysql can do besides the shell and one-shot runs.
#[derive(Debug, clap::Subcommand)]
pub enum Subcommand {
    /// Run saved queries on their schedules and write their results to sinks.
    ///
    /// Each file's header (`-- name:`, `-- description:`, `-- schedule: every
    /// 1m` or `live`, and optionally `-- sink:` and `-- results:`) says how it
    /// runs; see docs/saved-queries.md. SIGHUP reloads the files; Ctrl-C stops.
    Schedule(ScheduleArgs),

    /// Capture all the time, keep history in memory and on disk, and answer
    /// the shell, -c and -f of every user (root) over a unix socket.
    ///
    /// Runs in the foreground until SIGTERM or Ctrl-C; see docs/agent.md for
    /// the systemd unit.
    Agent(Box<AgentArgs>),

    /// Print a password file line for a Postgres user of the agent: reads the
    /// password (twice at a terminal, else one line of stdin) and prints
    /// `user:SCRAM-SHA-256$...`, for --pg-passwords.
    #[command(name = "pg-password")]
    PgPassword(PgPasswordArgs),

    /// Ask many hosts at once: the shell, -c and -f over the union of the
    /// hosts' tables, each with a `host` column (docs/fleet.md).
    ///
    /// Each host runs `sysql agent --fleet-listen ADDR`; filters and partial
    /// aggregates run on the hosts, over mutual TLS.
    Fleet(FleetArgs),

    /// Write a synthetic recording (for the fleet's tests and scale runs).
    #[command(name = "synth-recording", hide = true)]
    SynthRecording(crate::synth::SynthArgs),

    /// The user-space pipeline alone on synthetic records (docs/benchmarks.md).
    #[command(name = "bench-pipeline", hide = true)]
    BenchPipeline(crate::bench_pipeline::BenchArgs),
}

/// Arguments of `sysql agent`.
#[derive(Debug, clap::Args)]
pub struct AgentArgs {
    /// Where history is kept on disk, as Parquet files.
    #[arg(long, value_name = "DIR", default_value = DEFAULT_STATE_DIR)]
    pub state_dir: PathBuf,

    /// The unix socket clients ask (mode 0600: root only).
    #[arg(long, value_name = "PATH", default_value = DEFAULT_SOCKET)]
    pub socket: PathBuf,

    /// Files whose newest event is older than this are removed.
    #[arg(long, value_name = "DURATION", default_value = "7d", value_parser = parse_duration)]
    pub retain: Duration,

    /// Past this many bytes of files, the oldest are removed (and counted).
    #[arg(long, value_name = "BYTES", default_value = "2GiB", value_parser = parse_size)]
    pub disk_cap: u64,

    /// How often history is written to disk: a kill -9 loses at most this.
    #[arg(long, value_name = "DURATION", default_value = "10s", value_parser = parse_duration)]
    pub flush_interval: Duration,

    /// Also run the saved queries in these files or directories (as
    /// `sysql schedule` does); SIGHUP reloads them.
    #[arg(long = "schedule", value_name = "FILE|DIR")]
    pub schedule: Vec<PathBuf>,

    /// Where the saved queries' results go (see `sysql schedule --sink`).
    #[arg(long, value_name = "SINK", default_value = "stdout")]
    pub sink: SinkSpec,

    /// Answer Postgres clients (psql, Grafana, drivers) here: a unix socket
    /// (a path; a directory gets .s.PGSQL.5432 in it) or HOST:PORT for TCP;
    /// repeatable. Default: .s.PGSQL.5432 next to --socket; `none` for no
    /// Postgres endpoint. See docs/postgres.md.
    #[arg(long = "pg-listen", value_name = "PATH|HOST:PORT|none")]
    pub pg_listen: Vec<String>,

    /// The group whose members may open the Postgres unix socket (mode 0660).
    #[arg(long, value_name = "GROUP", default_value = "sysql")]
    pub pg_group: String,

    /// Postgres users allowed over TCP: lines `user:SCRAM-SHA-256$...`
    /// (made by `sysql pg-password USER`). Required for TCP.
    #[arg(long, value_name = "FILE")]
    pub pg_passwords: Option<PathBuf>,

    /// TLS certificate chain (PEM) for Postgres over TCP; required off loopback.
    #[arg(long, value_name = "FILE")]
    pub pg_tls_cert: Option<PathBuf>,

    /// The TLS certificate's private key (PEM).
    #[arg(long, value_name = "FILE")]
    pub pg_tls_key: Option<PathBuf>,

    /// At most this many Postgres clients at once.
    #[arg(long, value_name = "N", default_value = "64")]
    pub pg_max_connections: usize,

    /// A Postgres client's bounded query stops after this long (live
    /// queries run until cancelled or the client goes away).
    #[arg(long, value_name = "DURATION", default_value = "5m", value_parser = parse_duration)]
    pub pg_statement_timeout: Duration,

    /// Also serve the fleet's coordinators (`sysql fleet`) here, as a
    /// worker, over mutual TLS (needs --fleet-cert, --fleet-key, --fleet-ca).
    /// Port 0 picks a free port; the started line says which.
    #[arg(long, value_name = "ADDR:PORT")]
    pub fleet_listen: Option<std::net::SocketAddr>,

    /// This host's TLS certificate for the fleet (PEM).
    #[arg(long, value_name = "FILE", requires = "fleet_listen")]
    pub fleet_cert: Option<PathBuf>,

    /// The certificate's private key (PEM).
    #[arg(long, value_name = "FILE", requires = "fleet_listen")]
    pub fleet_key: Option<PathBuf>,

    /// The CA (PEM) that signs the coordinators' certificates: no other
    /// client is admitted.
    #[arg(long, value_name = "FILE", requires = "fleet_listen")]
    pub fleet_ca: Option<PathBuf>,
}

/// Arguments of `sysql fleet`.
#[derive(Debug, Clone, clap::Args)]
pub struct FleetArgs {
    /// A host's agent, HOST:PORT (its --fleet-listen); repeat for each.
    #[arg(long = "host", value_name = "HOST:PORT")]
    pub hosts: Vec<String>,

    /// A file of hosts, one HOST:PORT a line (# comments).
    #[arg(long = "hosts", value_name = "FILE")]
    pub hosts_file: Option<PathBuf>,

    /// The coordinator's TLS certificate (PEM), signed by the hosts' CA.
    #[arg(long, value_name = "FILE", required = true)]
    pub cert: PathBuf,

    /// The certificate's private key (PEM).
    #[arg(long, value_name = "FILE", required = true)]
    pub key: PathBuf,

    /// The CA (PEM) that signs the hosts' certificates.
    #[arg(long, value_name = "FILE", required = true)]
    pub ca: PathBuf,

    /// How long a host has to answer before a statement leaves it out.
    #[arg(long, value_name = "DURATION", default_value = "5s", value_parser = parse_duration)]
    pub timeout: Duration,

    /// Fail a statement if any host is left out, instead of answering
    /// without it.
    #[arg(long)]
    pub all_hosts: bool,
}

/// Arguments of `sysql pg-password`.
#[derive(Debug, clap::Args)]
pub struct PgPasswordArgs {
    /// The Postgres user name.
    pub user: String,
}

/// Arguments of `sysql schedule`.
#[derive(Debug, clap::Args)]
pub struct ScheduleArgs {
    /// Saved query files, or directories whose .sql files are saved queries.
    #[arg(required = true, value_name = "FILE|DIR")]
    pub paths: Vec<PathBuf>,

    /// Where results go when a query's header names no sink: `stdout` (NDJSON),
    /// or `file:PATH[,max=SIZE][,keep=N]` (CSV if PATH ends in .csv, else
    /// NDJSON; {name} in PATH is the query's name; rotated at max=, 64MiB by
    /// default, keeping keep=5 old files).
    #[arg(long, value_name = "SINK", default_value = "stdout")]
    pub sink: SinkSpec,

    /// What each run of a history query emits when its header does not say:
    /// diff (rows added and removed since the last run) or snapshot (every row).
    #[arg(long, value_name = "diff|snapshot", default_value = "diff")]
    pub results: Results,

    /// Run each history query first after this long, then on its schedule
    /// (default: one interval after start, as history starts empty).
    #[arg(long, value_name = "DURATION", value_parser = parse_duration)]
    pub first_run: Option<Duration>,

    /// Stop after this long (default: run until Ctrl-C or SIGTERM).
    #[arg(long = "for", value_name = "DURATION", value_parser = parse_duration)]
    pub run_for: Option<Duration>,

    /// Result rows a sink may hold queued (64 MiB of them at most); past it
    /// results are dropped and counted.
    #[arg(long, value_name = "ROWS", default_value_t = 65536)]
    pub queue_rows: usize,

    /// Serve counters and numeric results in Prometheus text format at
    /// http://ADDR/metrics (loopback only, e.g. 127.0.0.1:9464).
    #[arg(long, value_name = "ADDR")]
    pub prometheus: Option<std::net::SocketAddr>,
}

/// Parses `500ms`, `5s`, `2m`, `1h`, `1d`, and sums like `1h30m`. A bare
/// number is seconds.
pub fn parse_duration(s: &str) -> Result<Duration, String> {
    let err = || format!("invalid duration '{s}': expected e.g. 500ms, 5s, 2m, 1h");
    let s = s.trim();
    if s.is_empty() {
        return Err(err());
    }
    if let Ok(secs) = s.parse::<f64>() {
        return Duration::try_from_secs_f64(secs).map_err(|_| err());
    }
    let mut total = Duration::ZERO;
    let mut rest = s;
    while !rest.is_empty() {
        let digits = rest.find(|c: char| !(c.is_ascii_digit() || c == '.')).ok_or_else(err)?;
        let value: f64 = rest[..digits].parse().map_err(|_| err())?;
        rest = &rest[digits..];
        let unit_len = rest.find(|c: char| c.is_ascii_digit()).unwrap_or(rest.len());
        let scale = match &rest[..unit_len] {
            "ns" => 1e-9,
            "us" => 1e-6,
            "ms" => 1e-3,
            "s" | "sec" => 1.0,
            "m" | "min" => 60.0,
            "h" => 3600.0,
            "d" => 86400.0,
            _ => return Err(err()),
        };
        rest = &rest[unit_len..];
        total += Duration::try_from_secs_f64(value * scale).map_err(|_| err())?;
    }
    Ok(total)
}

/// Parses `4096`, `64KiB`, `32MiB`, `1GiB` (also `K`, `M`, `G`, `KB`, ...,
/// all powers of 1024).
pub fn parse_size(s: &str) -> Result<u64, String> {
    let err = || format!("invalid size '{s}': expected e.g. 4096, 64KiB, 32MiB, 1GiB");
    let t = s.trim();
    let split = t.find(|c: char| !c.is_ascii_digit()).unwrap_or(t.len());
    let n: u64 = t[..split].parse().map_err(|_| err())?;
    let shift = match t[split..].trim().to_ascii_lowercase().as_str() {
        "" | "b" => 0,
        "k" | "kb" | "kib" => 10,
        "m" | "mb" | "mib" => 20,
        "g" | "gb" | "gib" => 30,
        "t" | "tb" | "tib" => 40,
        _ => return Err(err()),
    };
    n.checked_mul(1 << shift).ok_or_else(err)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations() {
        assert_eq!(parse_duration("5s"), Ok(Duration::from_secs(5)));
        assert_eq!(parse_duration("500ms"), Ok(Duration::from_millis(500)));
        assert_eq!(parse_duration("1h30m"), Ok(Duration::from_secs(5400)));
        assert_eq!(parse_duration("2"), Ok(Duration::from_secs(2)));
        assert_eq!(parse_duration("1.5s"), Ok(Duration::from_millis(1500)));
        assert!(parse_duration("5 parsecs").is_err());
        assert!(parse_duration("").is_err());
        assert!(parse_duration("-1s").is_err());
    }

    /// docs/cli.md names every option of every command.
    #[test]
    fn the_cli_reference_names_every_option() {
        use clap::CommandFactory;
        let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../docs/cli.md");
        let doc = std::fs::read_to_string(path).unwrap();
        let top = Args::command();
        let mut commands = vec![top.clone()];
        commands.extend(top.get_subcommands().filter(|c| !c.is_hide_set()).cloned());
        for command in commands {
            for arg in command.get_arguments().filter(|a| !a.is_hide_set()) {
                if let Some(long) = arg.get_long() {
                    assert!(doc.contains(&format!("`--{long}")), "docs/cli.md does not name --{long}");
                }
            }
        }
    }

    #[test]
    fn scripts_keep_their_order() {
        let args = Args::parse_ordered_from(["sysql", "-f", "a.sql", "-c", "SELECT 1", "-f", "-", "-c", "SELECT 2"]);
        assert_eq!(
            args.scripts,
            vec![
                Script::File("a.sql".into()),
                Script::Sql("SELECT 1".into()),
                Script::File("-".into()),
                Script::Sql("SELECT 2".into()),
            ]
        );
    }

    #[test]
    fn sizes() {
        assert_eq!(parse_size("4096"), Ok(4096));
        assert_eq!(parse_size("32MiB"), Ok(32 << 20));
        assert_eq!(parse_size("1GiB"), Ok(1 << 30));
        assert_eq!(parse_size("64k"), Ok(64 << 10));
        assert!(parse_size("1.5G").is_err());
        assert!(parse_size("lots").is_err());
    }
}
