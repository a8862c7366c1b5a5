//! sysql: SQL over live Linux syscalls. This file only dispatches: arguments
//! in `cli`, capture wiring in `app`, the shell in `repl`, one-shot runs in
//! `oneshot`, saved queries on a schedule in `schedule`.

use clap::Parser;
use std::process::ExitCode;
use sysql::{app, cli, exec, oneshot, print, repl, schedule};

/// Exit status for a set-up error (privileges, kernel features, bad options).
const SETUP_ERROR: u8 = 2;

fn main() -> ExitCode {
    let args = cli::Args::parse();
    // Statements are planned on threads with a deep stack (see exec::STACK_BYTES).
    let main = std::thread::Builder::new().name("sysql".into()).stack_size(exec::STACK_BYTES).spawn(move || run(args));
    match main.map(|t| t.join()) {
        Ok(Ok(code)) => code,
        _ => ExitCode::from(SETUP_ERROR),
    }
}

fn run(args: cli::Args) -> ExitCode {
    let rt = match tokio::runtime::Builder::new_multi_thread().enable_all().thread_stack_size(exec::STACK_BYTES).build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("sysql: cannot start the runtime: {e}");
            return ExitCode::from(SETUP_ERROR);
        }
    };
    if let Some(cli::Subcommand::Schedule(opts)) = &args.subcommand {
        return schedule::run(&rt, &args, opts);
    }
    let running = match app::start(&rt, args.history, args.history_memory, args.ring_size) {
        Ok(mut running) => {
            running.allow_file_access = args.allow_file_access;
            running
        }
        Err(e) => {
            eprintln!("sysql: {e}");
            return ExitCode::from(SETUP_ERROR);
        }
    };
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
