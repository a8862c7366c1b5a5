//! sysql: SQL over live Linux syscalls. This file only dispatches: arguments
//! in `cli`, capture wiring in `app`, the shell in `repl`, one-shot runs in
//! `oneshot`, saved queries on a schedule in `schedule`.

use clap::Parser;
use std::process::ExitCode;
use sysql::{app, cli, exec, oneshot, print, privilege, repl, schedule};

/// Exit status for a set-up error (privileges, kernel features, bad options).
const SETUP_ERROR: u8 = 2;

fn main() -> ExitCode {
    let args = cli::Args::parse();
    let (library, prometheus) = match &args.subcommand {
        Some(cli::Subcommand::Schedule(opts)) => match schedule::prepare(&args, opts) {
            Ok(library) => (Some(library), opts.prometheus.map(|a| a.port())),
            Err(code) => return code,
        },
        Some(cli::Subcommand::BenchPipeline(opts)) => return sysql::bench_pipeline::run(opts),
        None => (None, None),
    };
    // The programs are loaded and attached on this thread before any other
    // thread exists; then every capability no longer needed is dropped, and
    // the threads started afterwards (the reader, the runtime's workers)
    // inherit what is left (see privilege).
    let reader = match tokio::runtime::Builder::new_current_thread().enable_all().build() {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("sysql: cannot start the runtime: {e}");
            return ExitCode::from(SETUP_ERROR);
        }
    };
    let running = match app::start(&reader, &args) {
        Ok(running) => running,
        Err(e) => {
            eprintln!("sysql: {e}");
            return ExitCode::from(SETUP_ERROR);
        }
    };
    if let Err(e) = privilege::drop_to(&privilege::needed(prometheus)) {
        eprintln!("sysql: {e}");
        return ExitCode::from(SETUP_ERROR);
    }
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
            .spawn(move || run(args, running, library))
    });
    match main.map(|t| t.join()) {
        Ok(Ok(code)) => code,
        _ => ExitCode::from(SETUP_ERROR),
    }
}

fn run(args: cli::Args, mut running: app::Running, library: Option<schedule::library::Library>) -> ExitCode {
    let rt = match tokio::runtime::Builder::new_multi_thread().enable_all().thread_stack_size(exec::STACK_BYTES).build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("sysql: cannot start the runtime: {e}");
            return ExitCode::from(SETUP_ERROR);
        }
    };
    if let (Some(cli::Subcommand::Schedule(opts)), Some(library)) = (&args.subcommand, library) {
        return schedule::run(&rt, running, opts, library);
    }
    running.allow_file_access = args.allow_file_access;
    let printer = print::Printer { format: args.format, maxrows: args.maxrows, timing: true };
    if args.command.is_some() || args.file.is_some() {
        return oneshot::run(&rt, &running, &args, &printer);
    }
    let ctx = match running.session() {
        Ok(ctx) => ctx,
        Err(e) => {
            eprintln!("sysql: {e}");
            return ExitCode::from(SETUP_ERROR);
        }
    };
    let opts = repl::ReplOptions { history_path: args.history_file.clone(), printer };
    match repl::run(&rt, ctx, opts) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("sysql: {e:#}");
            ExitCode::from(SETUP_ERROR)
        }
    }
}
