//! `sysql -c SQL` and `sysql -f FILE` (several, in order, as psql runs
//! them; `-f -` reads standard input): run the statements over what the
//! backend holds (with `--for`, over what was captured in that time, or
//! streaming a live statement for that long), print, and exit with the
//! status of [`crate::exit`]. The first failing statement stops the rest.

use crate::backend::Backend;
use crate::cli::{Args, Script};
use crate::exec::{run_sql, RunOptions};
use crate::exit;
use crate::print::Printer;
use crate::signals::{Counts, Sig, Signals};
use std::io::{Read, Write};
use std::process::ExitCode;
use std::time::Instant;

/// Runs the texts of `-c` and `-f`, in order. `since` is the signal count
/// at start: a SIGINT sent while sysql was starting ends the `--for` wait.
pub fn run(
    rt: &tokio::runtime::Runtime,
    backend: &Backend,
    texts: &[String],
    args: &Args,
    printer: &Printer,
    signals: &Signals,
    since: Counts,
) -> ExitCode {
    // `--for` counts from now: every program is attached.
    let until = args.capture_for.map(|d| Instant::now() + d);
    // SIGTERM stops a one-shot run as SIGINT does.
    signals.handle_terminate();
    let opts =
        RunOptions { until, since, cancel_on: &[Sig::Interrupt, Sig::Terminate], ..RunOptions::interactive(signals) };
    let result = rt.block_on(async {
        let mut out = std::io::stdout();
        let mut result = Ok(0);
        for sql in texts {
            result = run_sql(backend, sql, printer, &mut out, &opts).await;
            if result.is_err() {
                break;
            }
        }
        let _ = out.flush();
        result
    });
    exit::from_run(result.map(|_| ()))
}

/// The texts of `-c` and `-f` in order, read before anything starts (an
/// unreadable file is a set-up error); `-f -` reads standard input. Empty
/// without either.
pub fn scripts(args: &Args) -> Result<Vec<String>, ExitCode> {
    args.scripts
        .iter()
        .map(|script| match script {
            Script::Sql(sql) => Ok(sql.clone()),
            Script::File(path) if path.as_os_str() == "-" => {
                let mut text = String::new();
                std::io::stdin()
                    .read_to_string(&mut text)
                    .map(|_| text)
                    .map_err(|e| exit::setup(format!("cannot read standard input: {e}")))
            }
            Script::File(path) => {
                std::fs::read_to_string(path).map_err(|e| exit::setup(format!("cannot read {}: {e}", path.display())))
            }
        })
        .collect()
}
