//! `sysql -c SQL` and `sysql -f FILE`: optionally capture for a while, run the
//! statements over what was captured, print, and exit 0 (success), 1 (a SQL
//! error) or 2 (a set-up error).

use crate::app::Running;
use crate::cli::Args;
use crate::exec::{run_sql, ExecError, StopAt};
use crate::print::Printer;
use std::io::Write;
use std::process::ExitCode;

pub fn run(rt: &tokio::runtime::Runtime, running: &Running, args: &Args, printer: &Printer) -> ExitCode {
    let sql = match (&args.command, &args.file) {
        (Some(sql), _) => sql.clone(),
        (None, Some(path)) => match std::fs::read_to_string(path) {
            Ok(text) => text,
            Err(e) => {
                eprintln!("sysql: cannot read {}: {e}", path.display());
                return ExitCode::from(2);
            }
        },
        (None, None) => unreachable!("dispatched only with -c or -f"),
    };
    let ctx = match running.session() {
        Ok(ctx) => ctx,
        Err(e) => {
            eprintln!("sysql: {e}");
            return ExitCode::from(2);
        }
    };
    // With --for, a live query runs for that long; anything else runs over
    // what was captured in that time.
    let live = sql.to_lowercase().contains("live.");
    if let (true, Some(d)) = (live, args.capture_for) {
        let stop = StopAt(std::time::Instant::now() + d);
        ctx.state_ref().write().config_mut().set_extension(std::sync::Arc::new(stop));
    }
    let result = rt.block_on(async {
        if let (false, Some(d)) = (live, args.capture_for) {
            tokio::select! {
                _ = tokio::time::sleep(d) => {}
                _ = tokio::signal::ctrl_c() => {}
            }
        }
        running.sync().await;
        let mut out = std::io::stdout();
        let r = run_sql(&ctx, &sql, printer, &mut out).await;
        let _ = out.flush();
        r
    });
    match result {
        Ok(_) => ExitCode::SUCCESS,
        // A closed pipe (`sysql -c ... | head`) is not an error.
        Err(ExecError::Output(e)) if e.kind() == std::io::ErrorKind::BrokenPipe => ExitCode::SUCCESS,
        Err(ExecError::Cancelled) => ExitCode::from(130),
        Err(e) => {
            eprintln!("sysql: {e}");
            ExitCode::from(1)
        }
    }
}
