//! sysql: SQL over live Linux syscalls. This file only dispatches: arguments
//! in `cli`, start-up in `launch`, capture wiring in `app`, the shell in
//! `repl`, one-shot runs in `oneshot`, saved queries in `schedule`.

use std::process::ExitCode;

fn main() -> ExitCode {
    sysql::launch::main(sysql::cli::Args::parse_ordered())
}
