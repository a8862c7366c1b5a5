//! `sysql -c SQL` and `sysql -f FILE`: run the statements over what the
//! backend holds (with `--for`, over what was captured in that time, or
//! streaming a live statement for that long), print, and exit with the
//! status of [`crate::exit`].

use crate::backend::Backend;
use crate::cli::Args;
use crate::exec::{run_sql, RunOptions};
use crate::exit;
use crate::print::Printer;
use crate::signals::{Counts, Sig, Signals};
use std::io::Write;
use std::process::ExitCode;
use std::time::Instant;

/// Runs `-c` or `-f`. `since` is the signal count at start: a SIGINT sent
/// while sysql was starting ends the `--for` wait.
pub fn run(
    rt: &tokio::runtime::Runtime,
    backend: &Backend,
    sql: &str,
    args: &Args,
    printer: &Printer,
    signals: &Signals,
    since: Counts,
) -> ExitCode {
    // `--for` counts from now: every program is attached.
    let until = args.capture_for.map(|d| Instant::now() + d);
    // SIGTERM stops a one-shot run as SIGINT does.
    signals.handle_terminate();
    let opts = RunOptions { signals, until, since, cancel_on: &[Sig::Interrupt, Sig::Terminate] };
    let result = rt.block_on(async {
        let mut out = std::io::stdout();
        let r = run_sql(backend, sql, printer, &mut out, &opts).await;
        let _ = out.flush();
        r
    });
    exit::from_run(result.map(|_| ()))
}

/// The text of `-c` or `-f`, read before anything starts (an unreadable
/// file is a set-up error). `None` without either.
pub fn script(args: &Args) -> Result<Option<String>, ExitCode> {
    match (&args.command, &args.file) {
        (Some(sql), _) => Ok(Some(sql.clone())),
        (None, Some(path)) => std::fs::read_to_string(path)
            .map(Some)
            .map_err(|e| exit::setup(format!("cannot read {}: {e}", path.display()))),
        (None, None) => Ok(None),
    }
}
