//! Start-up, in the order least privilege needs: take the signals, check
//! the options, then either connect to an agent (or open a recording), or
//! load and attach the kernel programs on the first thread; drop every
//! capability no longer needed, then start the reader thread and the
//! runtime, and hand over to the agent, the schedule, a one-shot run or the
//! shell.

use crate::signals::{Counts, Signals};
use crate::{agent, app, backend, cli, exec, exit, oneshot, print, privilege, repl, schedule};
use std::path::PathBuf;
use std::process::ExitCode;
use sysql_engine::query::Policy;
use sysql_server::client::{AgentClient, ConnectError};

/// Runs sysql with parsed arguments; returns its exit status.
pub fn main(args: cli::Args) -> ExitCode {
    if let Some(cli::Subcommand::PgPassword(opts)) = &args.subcommand {
        return agent::pg_password(opts);
    }
    // First of all, so that no signal sent while sysql starts is lost.
    let signals = match Signals::install() {
        Ok(s) => s,
        Err(e) => return exit::setup(format!("cannot take signals: {e}")),
    };
    let since = signals.now();
    sysql_engine::query::install_panic_hook();
    let (library, prometheus) = match &args.subcommand {
        Some(cli::Subcommand::Schedule(opts)) => match schedule::prepare(&args, opts) {
            Ok(library) => (Some(library), opts.prometheus.map(|a| a.port())),
            Err(code) => return code,
        },
        Some(cli::Subcommand::Agent(opts)) => return agent::main(&args, opts, signals, since),
        Some(cli::Subcommand::BenchPipeline(opts)) => return crate::bench_pipeline::run(opts),
        Some(cli::Subcommand::SynthRecording(opts)) => return crate::synth::run(opts),
        Some(cli::Subcommand::Fleet(_)) => (None, None),
        Some(cli::Subcommand::PgPassword(_)) => unreachable!("handled first"),
        None => (None, None),
    };
    let script = match oneshot::scripts(&args) {
        Ok(scripts) => scripts,
        Err(code) => return code,
    };
    if let Some(cli::Subcommand::Fleet(opts)) = &args.subcommand {
        let opts = opts.clone();
        return crate::fleet::main(args, &opts, script, signals, since);
    }
    if library.is_none() {
        // A recording, or an agent that answers: no capture of our own.
        if let Some(dir) = args.data.clone() {
            return client(args, Mode::Recording(dir), script, signals, since);
        }
        if !args.embedded {
            let explicit = args.agent.is_some();
            let socket = args.agent.clone().unwrap_or_else(|| PathBuf::from(cli::DEFAULT_SOCKET));
            if explicit || socket.exists() {
                // The connection lives on the runtime it was made on: the one
                // the statements run on.
                let rt = match runtime() {
                    Ok(rt) => rt,
                    Err(e) => return exit::setup(format!("cannot start the runtime: {e}")),
                };
                match rt.block_on(AgentClient::connect(&socket)) {
                    Ok(client) => {
                        return run_client(args, backend::Backend::Agent(client), script, signals, since, None, rt)
                    }
                    Err(ConnectError::Absent(_)) | Err(ConnectError::Denied(_)) if !explicit => {}
                    Err(e) => return exit::setup(e),
                }
            }
        }
    }
    // The programs are loaded and attached on this thread before any other
    // thread exists; then every capability no longer needed is dropped, and
    // the threads started afterwards (the signal taker, the reader, the
    // runtime's workers) inherit what is left (see privilege).
    let reader = match tokio::runtime::Builder::new_current_thread().enable_all().build() {
        Ok(rt) => rt,
        Err(e) => return exit::setup(format!("cannot start the runtime: {e}")),
    };
    let running = match app::start(&reader, &args) {
        Ok(running) => running,
        Err(e) => return exit::setup(e),
    };
    if let Err(e) = privilege::drop_to(&privilege::needed(prometheus)) {
        return exit::setup(e);
    }
    if let Err(e) = signals.start() {
        return exit::setup(format!("cannot take signals: {e}"));
    }
    let whence = if args.embedded || library.is_some() {
        ""
    } else {
        "; no agent running, so history starts now (sysql agent keeps it all the time)"
    };
    eprintln!("sysql: {}{whence}", running.capturing_line());
    let connection = format!("in this process (embedded), {}{whence}", running.capturing_line());
    // The reader task runs on a thread of its own, the rest on the runtime in `run`.
    let reader = std::thread::Builder::new()
        .name("sysql-reader".into())
        .stack_size(exec::STACK_BYTES)
        .spawn(move || reader.block_on(std::future::pending::<()>()));
    // Statements are planned on threads with a deep stack (see exec::STACK_BYTES).
    let main = reader.and_then(|_| {
        std::thread::Builder::new()
            .name("sysql".into())
            .stack_size(exec::STACK_BYTES)
            .spawn(move || run(args, running, library, script, signals, since, connection))
    });
    match main.map(|t| t.join()) {
        Ok(Ok(code)) => code,
        _ => ExitCode::from(exit::SETUP_ERROR),
    }
}

/// A runtime for statements: its workers are named so that a panic in a
/// statement is reported as the statement's error (see
/// `sysql_engine::query::install_panic_hook`).
pub fn runtime() -> std::io::Result<tokio::runtime::Runtime> {
    tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .thread_name(sysql_engine::query::WORKER_PREFIX)
        .thread_stack_size(exec::STACK_BYTES)
        .build()
}

/// Where a client's statements run.
enum Mode {
    Recording(PathBuf),
}

fn client(args: cli::Args, mode: Mode, script: Vec<String>, signals: Signals, since: Counts) -> ExitCode {
    let Mode::Recording(dir) = mode;
    let store = match sysql_engine::store::Store::open_read_only(&dir) {
        Ok(store) => store,
        Err(e) => return exit::setup(e),
    };
    store.load_gaps();
    // No cgroups: `containers` describes the host a capture runs on, and a
    // recording may come from another one (its rows keep their container_id).
    let config = match app::engine_config(&args) {
        Ok(c) => sysql_engine::EngineConfig {
            clock_offset_ns: 0,
            containers: sysql_engine::containers::ContainersConfig::default(),
            ..c
        },
        Err(e) => return exit::setup(e),
    };
    let engine = sysql_engine::Engine::recording(config, store, args.pace);
    let session = match sysql_engine::query::QuerySession::new(&engine, Policy::shell(args.allow_file_access)) {
        Ok(s) => s,
        Err(e) => return exit::setup(e),
    };
    let banner = crate::agent::recording_banner(&dir, &engine);
    let rt = match runtime() {
        Ok(rt) => rt,
        Err(e) => return exit::setup(format!("cannot start the runtime: {e}")),
    };
    run_client(args, backend::Backend::Embedded(session), script, signals, since, Some(banner), rt)
}

/// Runs the shell or a one-shot over a backend without a capture of its own.
pub(crate) fn run_client(
    args: cli::Args,
    backend: backend::Backend,
    script: Vec<String>,
    signals: Signals,
    since: Counts,
    banner: Option<String>,
    rt: tokio::runtime::Runtime,
) -> ExitCode {
    // A client needs no privilege at all.
    if let Err(e) = privilege::drop_to(&Default::default()) {
        return exit::setup(e);
    }
    if let Err(e) = signals.start() {
        return exit::setup(format!("cannot take signals: {e}"));
    }
    let banner = banner.unwrap_or_else(|| match &backend {
        backend::Backend::Agent(c) => crate::agent::client_banner(c),
        backend::Backend::Embedded(_) => String::new(),
    });
    eprintln!("sysql: {banner}");
    let main = std::thread::Builder::new()
        .name("sysql".into())
        .stack_size(exec::STACK_BYTES)
        .spawn(move || front_end(&rt, args, backend, script, &signals, since, banner));
    match main.map(|t| t.join()) {
        Ok(Ok(code)) => code,
        _ => ExitCode::from(exit::SETUP_ERROR),
    }
}

fn run(
    args: cli::Args,
    running: app::Running,
    library: Option<schedule::library::Library>,
    script: Vec<String>,
    signals: Signals,
    since: Counts,
    connection: String,
) -> ExitCode {
    let rt = match runtime() {
        Ok(rt) => rt,
        Err(e) => return exit::setup(format!("cannot start the runtime: {e}")),
    };
    if let (Some(cli::Subcommand::Schedule(opts)), Some(library)) = (&args.subcommand, library) {
        return schedule::run(&rt, running, opts, library, args.allow_file_access, &signals, since);
    }
    let session = match running.session(Policy::shell(args.allow_file_access)) {
        Ok(session) => session,
        Err(e) => return exit::setup(e),
    };
    let backend = backend::Backend::Embedded(session);
    front_end(&rt, args, backend, script, &signals, since, connection)
}

/// Runs the `-c`/`-f` texts, or else the shell; `connection` says where
/// statements run (for `\conninfo`).
fn front_end(
    rt: &tokio::runtime::Runtime,
    args: cli::Args,
    backend: backend::Backend,
    script: Vec<String>,
    signals: &Signals,
    since: Counts,
    connection: String,
) -> ExitCode {
    let printer = print::Printer {
        format: args.format,
        maxrows: args.maxrows,
        quiet: args.quiet,
        // Timing is off by default, as in psql; `\timing` or --timing turns it on.
        timing: args.timing,
        ..print::Printer::default()
    };
    if !script.is_empty() {
        return oneshot::run(rt, &backend, &script, &args, &printer, signals, since);
    }
    // The shell shows a screenful, as DuckDB's does; --maxrows or \maxrows change it.
    let printer = print::Printer { maxrows: args.maxrows.or(Some(repl::DEFAULT_MAXROWS)), ..printer };
    let history_path = if args.no_history { Some(PathBuf::new()) } else { args.history_file.clone() };
    let opts = repl::ReplOptions { history_path, printer, quiet: args.quiet, connection };
    match repl::run(rt, backend, opts, signals) {
        Ok(repl::Ended::Quit) => ExitCode::SUCCESS,
        Ok(repl::Ended::Failed) => ExitCode::from(exit::SQL_ERROR),
        Err(e) => exit::setup(format!("{e:#}")),
    }
}
