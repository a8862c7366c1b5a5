//! The terminal the shell runs in: its size (for `\x auto`, `\chart` and when to page) and the
//! pager that shows results taller than the screen (`$PAGER`, by default `less -S`).

use std::io::{IsTerminal, Write};
use std::process::{Command, Stdio};

/// The pager when `$PAGER` is unset: `-S` keeps wide rows on one line each (scroll sideways).
pub const DEFAULT_PAGER: &str = "less -S";

/// Columns and rows of the terminal: `$COLUMNS` and `$LINES` when set, else the size of the first
/// of stdout, stdin and stderr that is a terminal; `None` without a terminal.
pub fn size() -> Option<(usize, usize)> {
    let env = |name: &str| std::env::var(name).ok().and_then(|v| v.trim().parse::<usize>().ok()).filter(|&n| n > 0);
    let asked = [std::io::stdout().as_fd_size(), std::io::stdin().as_fd_size(), std::io::stderr().as_fd_size()]
        .into_iter()
        .flatten()
        .next();
    match (env("COLUMNS"), env("LINES"), asked) {
        (Some(cols), Some(rows), _) => Some((cols, rows)),
        (cols, rows, Some((c, r))) => Some((cols.unwrap_or(c), rows.unwrap_or(r))),
        (Some(cols), None, None) => Some((cols, 24)),
        _ => None,
    }
}

/// The window size of a terminal, if the handle is one (and says a size).
trait WindowSize {
    fn as_fd_size(&self) -> Option<(usize, usize)>;
}

impl<T: std::os::fd::AsFd + IsTerminal> WindowSize for T {
    fn as_fd_size(&self) -> Option<(usize, usize)> {
        if !self.is_terminal() {
            return None;
        }
        let size = rustix::termios::tcgetwinsize(self.as_fd()).ok()?;
        (size.ws_col > 0 && size.ws_row > 0).then_some((usize::from(size.ws_col), usize::from(size.ws_row)))
    }
}

/// Shows text taller than the screen through a pager.
#[derive(Debug, Clone)]
pub struct Pager {
    /// A shell command line (`$PAGER`).
    pub command: String,
    /// The screen's rows: text of more lines than fits above the prompt is paged.
    pub rows: usize,
}

impl Pager {
    /// The pager for a shell whose output is the terminal: `None` when stdout is not a terminal
    /// or `$PAGER` is set empty.
    pub fn for_stdout() -> Option<Pager> {
        if !std::io::stdout().is_terminal() {
            return None;
        }
        let command = std::env::var("PAGER").unwrap_or_else(|_| DEFAULT_PAGER.to_string());
        let (_, rows) = size()?;
        (!command.trim().is_empty()).then_some(Pager { command, rows })
    }

    /// Whether `text` is taller than the screen (less a line for the prompt).
    pub fn needed(&self, text: &[u8]) -> bool {
        text.iter().filter(|&&b| b == b'\n').count() >= self.rows.saturating_sub(1)
    }

    /// Shows `text` in the pager and waits until it is closed. A pager that cannot start is said
    /// and `text` goes to `fallback`; a pager closed before the end (`q` in less) is no error.
    pub fn show(&self, text: &[u8], fallback: &mut dyn Write) -> std::io::Result<()> {
        let child = Command::new("sh").arg("-c").arg(&self.command).stdin(Stdio::piped()).spawn();
        let mut child = match child {
            Ok(child) => child,
            Err(e) => {
                eprintln!("sysql: cannot start the pager {}: {e}", self.command);
                return fallback.write_all(text);
            }
        };
        if let Some(mut stdin) = child.stdin.take() {
            match stdin.write_all(text) {
                Err(e) if e.kind() != std::io::ErrorKind::BrokenPipe => return Err(e),
                _ => {}
            }
        }
        child.wait()?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pages_what_does_not_fit_above_the_prompt() {
        let pager = Pager { command: "cat".into(), rows: 4 };
        assert!(!pager.needed(b"1\n2\n"));
        assert!(pager.needed(b"1\n2\n3\n"));
    }

    #[test]
    fn a_pager_gets_the_text() {
        let dir = std::env::temp_dir().join(format!("sysql-pager-{}", std::process::id()));
        let pager = Pager { command: format!("cat > {}", dir.display()), rows: 2 };
        pager.show(b"rows\n", &mut Vec::new()).unwrap();
        assert_eq!(std::fs::read_to_string(&dir).unwrap(), "rows\n");
        std::fs::remove_file(&dir).unwrap();
    }
}
