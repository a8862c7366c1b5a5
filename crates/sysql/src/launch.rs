//! Start-up, in the order least privilege needs: check the options, load
//! and attach the kernel programs on the first thread, drop every capability
//! no longer needed, then start the reader thread and the runtime, and hand
//! over to the schedule, a one-shot run or the shell.

use crate::{app, cli, exec, oneshot, print, privilege, repl, schedule};
use std::process::ExitCode;

/// Exit status for a set-up error (privileges, kernel features, bad options).
const SETUP_ERROR: u8 = 2;

/// Runs sysql with parsed arguments; returns its exit status.
pub fn main(args: cli::Args) -> ExitCode {
    let (library, prometheus) = match &args.subcommand {
        Some(cli::Subcommand::Schedule(opts)) => match schedule::prepare(&args, opts) {
            Ok(library) => (Some(library), opts.prometheus.map(|a| a.port())),
            Err(code) => return code,
        },
        Some(cli::Subcommand::BenchPipeline(opts)) => return crate::bench_pipeline::run(opts),
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
