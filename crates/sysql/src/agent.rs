//! `sysql agent`: captures all the time, keeps history in memory and in its
//! state directory (`sysql_engine::store`), answers clients over Flight SQL
//! on a unix socket only root can open (`sysql_server::flight`), and can run
//! saved queries too. Stops on SIGTERM or Ctrl-C: stops answering, reads
//! what is left in the ring, writes it, marks the clean stop, removes its
//! socket.

use crate::cli::{AgentArgs, Args};
use crate::schedule::library::{self, Results};
use crate::schedule::runner::{Scheduler, Sessions, Settings};
use crate::signals::{Counts, Sig, Signals};
use crate::{app, exec, exit, privilege};
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::Arc;
use sysql_engine::query::{Policy, QuerySession};
use sysql_engine::store::{Store, StoreConfig, Writer};
use sysql_engine::Engine;
use sysql_server::client::AgentClient;
use sysql_server::fleet::tls::TlsFiles;
use sysql_server::flight::{self, Sessions as ClientSessions};
use sysql_server::pg::{PgListeners, PgOptions, SOCKET_NAME};

/// The policy of the agent's clients: the shell's, without files (a client
/// must not read or write the agent's files, whatever its own flags).
fn client_policy() -> Policy {
    Policy { session_views: true, ..Policy::default() }
}

/// `HH:MM:SS UTC` and the date of a UTC time in nanoseconds.
pub fn time_text(ns: i64) -> String {
    match datafusion::arrow::temporal_conversions::timestamp_ns_to_datetime(ns) {
        Some(t) => t.format("%Y-%m-%d %H:%M:%S UTC").to_string(),
        None => "?".into(),
    }
}

/// The line a client prints when it is connected to an agent.
pub fn client_banner(client: &AgentClient) -> String {
    let since = match client.info().history_since {
        Some(t) => format!("history since {}", time_text(t)),
        None => "no history yet".into(),
    };
    format!("connected to the sysql agent at {} (pid {}), {since}", client.path().display(), client.info().pid)
}

/// The line a client prints when it reads a recording.
pub fn recording_banner(dir: &Path, engine: &Engine) -> String {
    let store = engine.store().expect("a recording has a store");
    let spans: Vec<(i64, i64)> = sysql_events::Table::ALL.iter().filter_map(|t| store.span(*t)).collect();
    match (spans.iter().map(|s| s.0).min(), spans.iter().map(|s| s.1).max()) {
        (Some(from), Some(to)) => {
            format!("reading the recording {}: history from {} to {}", dir.display(), time_text(from), time_text(to))
        }
        _ => format!("reading the recording {}: it holds no events", dir.display()),
    }
}

/// The Postgres unix socket of the agent, if it has one.
fn pg_socket(opts: &AgentArgs) -> Option<PathBuf> {
    pg_options(opts).ok().and_then(|o| o.unix)
}

/// The Postgres endpoint's options from the agent's.
fn pg_options(opts: &AgentArgs) -> Result<PgOptions, String> {
    let default = opts.socket.parent().unwrap_or(Path::new("/")).join(SOCKET_NAME);
    let listen = if opts.pg_listen.is_empty() { vec![default.display().to_string()] } else { opts.pg_listen.clone() };
    let mut unix: Option<PathBuf> = None;
    let mut tcp = Vec::new();
    for place in listen {
        if place == "none" {
            continue;
        }
        if place.starts_with('/') || place.starts_with('.') {
            let mut path = PathBuf::from(&place);
            if path.is_dir() {
                path.push(SOCKET_NAME);
            }
            if unix.is_some() {
                return Err(format!("--pg-listen {place}: the Postgres endpoint has one unix socket"));
            }
            unix = Some(path);
        } else {
            use std::net::ToSocketAddrs;
            let addrs =
                place.to_socket_addrs().map_err(|e| format!("--pg-listen {place}: not a path or HOST:PORT ({e})"))?;
            tcp.extend(addrs);
        }
    }
    Ok(PgOptions {
        unix,
        group: Some(opts.pg_group.clone()),
        tcp,
        tls_cert: opts.pg_tls_cert.clone(),
        tls_key: opts.pg_tls_key.clone(),
        passwords: opts.pg_passwords.clone(),
        max_connections: opts.pg_max_connections,
        statement_timeout: Some(opts.pg_statement_timeout),
    })
}

fn now_ns() -> i64 {
    app::now_ns()
}

/// The fleet worker's address and certificates, if the agent serves one.
fn fleet_options(opts: &AgentArgs) -> Result<Option<(std::net::SocketAddr, TlsFiles)>, String> {
    let Some(addr) = opts.fleet_listen else { return Ok(None) };
    match (&opts.fleet_cert, &opts.fleet_key, &opts.fleet_ca) {
        (Some(cert), Some(key), Some(ca)) => {
            Ok(Some((addr, TlsFiles { cert: cert.clone(), key: key.clone(), ca: ca.clone() })))
        }
        _ => {
            Err("--fleet-listen needs --fleet-cert, --fleet-key and --fleet-ca: the fleet speaks mutual TLS only"
                .into())
        }
    }
}

/// Binds the fleet worker's port (before privileges are dropped).
fn fleet_bind(fleet: &Option<(std::net::SocketAddr, TlsFiles)>) -> Result<Option<FleetListener>, String> {
    let Some((addr, tls)) = fleet else { return Ok(None) };
    // Fail now on unreadable certificates, not at the first coordinator.
    tls.server()?;
    let listener =
        std::net::TcpListener::bind(addr).map_err(|e| format!("cannot listen on {addr} for the fleet: {e}"))?;
    let local = listener.local_addr().map_err(|e| format!("cannot listen on {addr} for the fleet: {e}"))?;
    Ok(Some(FleetListener { listener, local, tls: tls.clone() }))
}

struct FleetListener {
    listener: std::net::TcpListener,
    local: std::net::SocketAddr,
    tls: TlsFiles,
}

impl FleetListener {
    /// Serves the worker until `stop` is sent.
    fn spawn(self, engine: Engine, stop: tokio::sync::oneshot::Receiver<()>) -> tokio::task::JoinHandle<()> {
        tokio::spawn(async move {
            let listener = match self
                .listener
                .set_nonblocking(true)
                .and_then(|()| tokio::net::TcpListener::from_std(self.listener))
            {
                Ok(l) => l,
                Err(e) => return eprintln!("sysql: agent: fleet: cannot listen on {}: {e}", self.local),
            };
            let stop = async {
                let _ = stop.await;
            };
            if let Err(e) = sysql_server::fleet::worker::serve(engine, listener, &self.tls, stop).await {
                eprintln!("sysql: agent: fleet: {e}");
            }
        })
    }
}

/// `sysql --data DIR agent --fleet-listen ...`: a recording served to the
/// fleet, with no capture and no privileges, until SIGTERM or Ctrl-C.
fn serve_recording(args: &Args, opts: &AgentArgs, dir: &Path, signals: Signals, since: Counts) -> ExitCode {
    let fleet = match fleet_options(opts) {
        Ok(Some(f)) => Some(f),
        Ok(None) => {
            return exit::setup("agent --data DIR serves a recording to the fleet only: give --fleet-listen ADDR:PORT")
        }
        Err(e) => return exit::setup(e),
    };
    let store = match Store::open_read_only(dir) {
        Ok(store) => store,
        Err(e) => return exit::setup(e),
    };
    store.load_gaps();
    let config = match app::engine_config(args) {
        Ok(c) => sysql_engine::EngineConfig {
            clock_offset_ns: 0,
            containers: sysql_engine::containers::ContainersConfig::default(),
            ..c
        },
        Err(e) => return exit::setup(e),
    };
    let engine = Engine::recording(config, store, None);
    let listener = match fleet_bind(&fleet) {
        Ok(Some(l)) => l,
        Ok(None) => unreachable!("the fleet options are given"),
        Err(e) => return exit::setup(e),
    };
    if let Err(e) = privilege::drop_to(&Default::default()) {
        return exit::setup(e);
    }
    signals.handle_terminate();
    if let Err(e) = signals.start() {
        return exit::setup(format!("cannot take signals: {e}"));
    }
    let rt = match crate::launch::runtime() {
        Ok(rt) => rt,
        Err(e) => return exit::setup(format!("cannot start the runtime: {e}")),
    };
    eprintln!("sysql: agent: {}; fleet worker on {} (mutual TLS)", recording_banner(dir, &engine), listener.local);
    rt.block_on(async {
        let (stop_tx, stop_rx) = tokio::sync::oneshot::channel();
        let server = listener.spawn(engine, stop_rx);
        signals.after(since, &[Sig::Interrupt, Sig::Terminate]).await;
        let _ = stop_tx.send(());
        let _ = server.await;
    });
    eprintln!("sysql: agent: stopped");
    ExitCode::SUCCESS
}

/// Runs the agent until SIGTERM or Ctrl-C.
pub fn main(args: &Args, opts: &AgentArgs, signals: Signals, since: Counts) -> ExitCode {
    if let Some(dir) = &args.data {
        return serve_recording(args, opts, dir, signals, since);
    }
    let fleet = match fleet_options(opts).and_then(|f| fleet_bind(&f)) {
        Ok(f) => f,
        Err(e) => return exit::setup(e),
    };
    let library = if opts.schedule.is_empty() {
        None
    } else {
        let library = library::load(&opts.schedule);
        for e in &library.errors {
            eprintln!("sysql: agent: schedule: {e}");
        }
        Some(library)
    };
    let config = StoreConfig {
        dir: opts.state_dir.clone(),
        retain: opts.retain,
        disk_cap: opts.disk_cap,
        flush_interval: opts.flush_interval,
        ..StoreConfig::new(&opts.state_dir)
    };
    let store = match Store::open(config) {
        Ok(store) => store,
        Err(e) => return exit::setup(e),
    };
    // The socket first: another agent already answering is a set-up error
    // before anything is loaded.
    let listener = match sysql_server::uds::bind_std(&opts.socket, 0o600) {
        Ok(l) => l,
        Err(e) => return exit::setup(e),
    };
    let pg = match pg_options(opts).and_then(PgListeners::bind) {
        Ok(pg) => pg,
        Err(e) => {
            let _ = std::fs::remove_file(&opts.socket);
            return exit::setup(e);
        }
    };
    let reader = match tokio::runtime::Builder::new_current_thread().enable_all().build() {
        Ok(rt) => rt,
        Err(e) => return exit::setup(format!("cannot start the runtime: {e}")),
    };
    let running = match app::start_with(&reader, args, Some(store.clone())) {
        Ok(running) => running,
        Err(e) => {
            let _ = std::fs::remove_file(&opts.socket);
            return exit::setup(e);
        }
    };
    if let Err(e) = privilege::drop_to(&privilege::needed(None)) {
        return exit::setup(e);
    }
    signals.handle_terminate();
    if let Err(e) = signals.start() {
        return exit::setup(format!("cannot take signals: {e}"));
    }
    let started = now_ns();
    match store.begin(started) {
        Ok(Some(gap)) => eprintln!(
            "sysql: agent: no capture from {} to {}: {}",
            time_text(gap.start_ns),
            time_text(gap.end_ns),
            gap.reason
        ),
        Ok(None) => {}
        Err(e) => return exit::setup(format!("cannot write to the state directory {}: {e}", opts.state_dir.display())),
    }
    let engine = running.engine.clone();
    let writer = match Writer::start(engine.clone(), started) {
        Ok(w) => w,
        Err(e) => return exit::setup(format!("cannot start the writer: {e}")),
    };
    let (rows, _) = sysql_events::Table::ALL.iter().fold((0u64, 0u64), |(r, b), t| {
        let (rows, bytes) = store.usage(*t);
        (r + rows, b + bytes)
    });
    let postgres = match pg.describe() {
        d if d.is_empty() => String::new(),
        d => format!("; postgres on {d}"),
    };
    let fleet_line = match &fleet {
        Some(f) => format!("; fleet worker on {} (mutual TLS)", f.local),
        None => String::new(),
    };
    eprintln!(
        "sysql: agent: {}; history in {} ({rows} events on disk), flushed every {:?}; answering on {}{postgres}{fleet_line}",
        running.capturing_line(),
        opts.state_dir.display(),
        opts.flush_interval,
        opts.socket.display()
    );
    let reader = std::thread::Builder::new()
        .name("sysql-reader".into())
        .stack_size(exec::STACK_BYTES)
        .spawn(move || reader.block_on(std::future::pending::<()>()));
    if let Err(e) = reader {
        return exit::setup(format!("cannot start the reader: {e}"));
    }
    let rt = match crate::launch::runtime() {
        Ok(rt) => rt,
        Err(e) => return exit::setup(format!("cannot start the runtime: {e}")),
    };
    let code = rt.block_on(serve(running, listener, (pg, fleet), opts, library, &signals, since));
    writer.stop();
    let _ = std::fs::remove_file(&opts.socket);
    if let Some(path) = pg_socket(opts) {
        let _ = std::fs::remove_file(path);
    }
    eprintln!("sysql: agent: stopped; history written to {}", opts.state_dir.display());
    code
}

async fn serve(
    running: app::Running,
    listener: std::os::unix::net::UnixListener,
    (pg, fleet): (PgListeners, Option<FleetListener>),
    opts: &AgentArgs,
    library: Option<library::Library>,
    signals: &Signals,
    since: Counts,
) -> ExitCode {
    let engine = running.engine.clone();
    let listener = match listener.set_nonblocking(true).and_then(|()| tokio::net::UnixListener::from_std(listener)) {
        Ok(l) => l,
        Err(e) => return exit::setup(format!("cannot listen on {}: {e}", opts.socket.display())),
    };
    let sessions = Arc::new(ClientSessions::new(engine.clone(), client_policy()));
    let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
    let me = nix::unistd::geteuid().as_raw();
    let server = tokio::spawn(flight::serve(listener, sessions, move |uid| uid == 0 || uid == me, async {
        let _ = stop_rx.await;
    }));
    let (pg_stop, mut pg_stopped) = tokio::sync::watch::channel(false);
    let postgres = tokio::spawn(pg.serve(engine.clone(), Policy::default(), async move {
        let _ = pg_stopped.wait_for(|stop| *stop).await;
    }));
    let (fleet_stop, fleet_stopped) = tokio::sync::oneshot::channel::<()>();
    let fleet = fleet.map(|f| f.spawn(engine.clone(), fleet_stopped));
    let mut scheduler = match library {
        Some(library) => {
            let factory_engine = engine.clone();
            let sessions: Sessions = Arc::new(move || QuerySession::new(&factory_engine, Policy::default()));
            let settings = Settings {
                sink: opts.sink.clone(),
                results: Results::Diff,
                first_run: None,
                queue_rows: 65536,
                keep_latest: false,
            };
            let mut scheduler = Scheduler::new(sessions, settings, Arc::new(tokio::sync::Notify::new()));
            for e in scheduler.apply(&library).await {
                eprintln!("sysql: agent: schedule: {e}");
            }
            Some(scheduler)
        }
        None => None,
    };
    let mut seen = since;
    seen[Sig::Hangup as usize] = signals.now()[Sig::Hangup as usize];
    // SIGHUP reloads the saved queries; SIGINT or SIGTERM stops.
    while signals.after(seen, &[Sig::Interrupt, Sig::Terminate, Sig::Hangup]).await == Sig::Hangup {
        seen[Sig::Hangup as usize] = signals.now()[Sig::Hangup as usize];
        if let Some(s) = scheduler.as_mut() {
            let library = library::load(&opts.schedule);
            for e in s.apply(&library).await {
                eprintln!("sysql: agent: schedule: {e}");
            }
        }
    }
    // Stop answering, stop the saved queries, then read what the ring
    // holds, and make the rows still waiting for a later record (a
    // connect's outcome, a request's response), so the last flush writes
    // them.
    let _ = stop_tx.send(());
    let _ = pg_stop.send(true);
    let _ = fleet_stop.send(());
    let _ = server.await;
    if let Some(f) = fleet {
        let _ = f.await;
    }
    let _ = postgres.await;
    if let Some(s) = scheduler {
        s.shutdown().await;
    }
    running.finish().await;
    ExitCode::SUCCESS
}

/// `sysql pg-password USER`: prints the password file's line for USER.
pub fn pg_password(opts: &crate::cli::PgPasswordArgs) -> ExitCode {
    use std::io::{BufRead, IsTerminal, Write};
    let stdin = std::io::stdin();
    let password = if stdin.is_terminal() {
        let ask = |prompt: &str| -> Result<String, String> {
            eprint!("{prompt}");
            let _ = std::io::stderr().flush();
            let fd = std::io::stdin();
            let old = nix::sys::termios::tcgetattr(&fd).map_err(|e| format!("cannot read the terminal: {e}"))?;
            let mut quiet = old.clone();
            quiet.local_flags.remove(nix::sys::termios::LocalFlags::ECHO);
            let _ = nix::sys::termios::tcsetattr(&fd, nix::sys::termios::SetArg::TCSANOW, &quiet);
            let mut line = String::new();
            let read = std::io::stdin().lock().read_line(&mut line);
            let _ = nix::sys::termios::tcsetattr(&fd, nix::sys::termios::SetArg::TCSANOW, &old);
            eprintln!();
            read.map_err(|e| format!("cannot read the password: {e}"))?;
            Ok(line.trim_end_matches(['\r', '\n']).to_string())
        };
        let first = match ask(&format!("Password for {}: ", opts.user)) {
            Ok(p) => p,
            Err(e) => return exit::setup(e),
        };
        match ask("Again: ") {
            Ok(again) if again == first => first,
            Ok(_) => return exit::setup("the passwords differ"),
            Err(e) => return exit::setup(e),
        }
    } else {
        let mut line = String::new();
        if let Err(e) = stdin.lock().read_line(&mut line) {
            return exit::setup(format!("cannot read the password: {e}"));
        }
        line.trim_end_matches(['\r', '\n']).to_string()
    };
    if password.is_empty() {
        return exit::setup("the password is empty");
    }
    match sysql_server::pg::password_line(&opts.user, &password) {
        Ok(line) => {
            println!("{line}");
            ExitCode::SUCCESS
        }
        Err(e) => exit::setup(e),
    }
}
