//! Exit statuses, in one place: 0 success, 1 a statement failed (or a saved
//! query library had nothing to run), 2 a set-up error (privileges, kernel
//! features, options, unreadable files), 130 interrupted (Ctrl-C stopped a
//! running statement). A closed output pipe (`sysql -c ... | head`) is
//! success.

use crate::exec::ExecError;
use std::process::ExitCode;

pub const SQL_ERROR: u8 = 1;
pub const SETUP_ERROR: u8 = 2;
pub const INTERRUPTED: u8 = 130;

/// The status of a run that ended with `result`, after saying why on stderr.
pub fn from_run(result: Result<(), ExecError>) -> ExitCode {
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(ExecError::Output(e)) if e.kind() == std::io::ErrorKind::BrokenPipe => ExitCode::SUCCESS,
        Err(ExecError::Cancelled) => ExitCode::from(INTERRUPTED),
        Err(e) => {
            eprintln!("sysql: {e}");
            ExitCode::from(SQL_ERROR)
        }
    }
}

/// Says a set-up error on stderr and gives its status.
pub fn setup(message: impl std::fmt::Display) -> ExitCode {
    eprintln!("sysql: {message}");
    ExitCode::from(SETUP_ERROR)
}
