//! Start-up, in the order least privilege needs: take the signals, check
//! the options, load and attach the kernel programs on the first thread,
//! drop every capability no longer needed, then start the reader thread and
//! the runtime, and hand over to the schedule, a one-shot run or the shell.

use crate::signals::Signals;
use crate::{app, backend, cli, exec, exit, oneshot, print, privilege, repl, schedule};
use std::process::ExitCode;
use sysql_engine::query::Policy;

/// Runs sysql with parsed arguments; returns its exit status.
pub fn main(args: cli::Args) -> ExitCode {
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
        Some(cli::Subcommand::BenchPipeline(opts)) => return crate::bench_pipeline::run(opts),
        None => (None, None),
    };
    let script = match oneshot::script(&args) {
        Ok(script) => script,
        Err(code) => return code,
    };
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
    eprintln!("sysql: {}", running.capturing_line());
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
            .spawn(move || run(args, running, library, script, signals, since))
    });
    match main.map(|t| t.join()) {
        Ok(Ok(code)) => code,
        _ => ExitCode::from(exit::SETUP_ERROR),
    }
}

fn run(
    args: cli::Args,
    running: app::Running,
    library: Option<schedule::library::Library>,
    script: Option<String>,
    signals: Signals,
    since: crate::signals::Counts,
) -> ExitCode {
    let rt = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .thread_name(sysql_engine::query::WORKER_PREFIX)
        .thread_stack_size(exec::STACK_BYTES)
        .build()
    {
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
    let printer = print::Printer { format: args.format, maxrows: args.maxrows, timing: true };
    if let Some(sql) = script {
        return oneshot::run(&rt, &backend, &sql, &args, &printer, &signals, since);
    }
    let opts = repl::ReplOptions { history_path: args.history_file.clone(), printer };
    match repl::run(&rt, backend, opts, &signals) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => exit::setup(format!("{e:#}")),
    }
}
