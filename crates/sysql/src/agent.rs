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
use std::path::Path;
use std::process::ExitCode;
use std::sync::Arc;
use sysql_engine::query::{Policy, QuerySession};
use sysql_engine::store::{Store, StoreConfig, Writer};
use sysql_engine::Engine;
use sysql_server::client::AgentClient;
use sysql_server::flight::{self, Sessions as ClientSessions};

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

fn now_ns() -> i64 {
    app::now_ns()
}

/// Runs the agent until SIGTERM or Ctrl-C.
pub fn main(args: &Args, opts: &AgentArgs, signals: Signals, since: Counts) -> ExitCode {
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
    eprintln!(
        "sysql: agent: {}; history in {} ({rows} events on disk), flushed every {:?}; answering on {}",
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
    let code = rt.block_on(serve(running, listener, opts, library, &signals, since));
    writer.stop();
    let _ = std::fs::remove_file(&opts.socket);
    eprintln!("sysql: agent: stopped; history written to {}", opts.state_dir.display());
    code
}

async fn serve(
    running: app::Running,
    listener: std::os::unix::net::UnixListener,
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
    let _ = server.await;
    if let Some(s) = scheduler {
        s.shutdown().await;
    }
    running.finish().await;
    ExitCode::SUCCESS
}
