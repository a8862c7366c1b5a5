//! Helpers shared by the integration tests.
#![allow(dead_code)]

pub mod agent;

use datafusion::arrow::record_batch::RecordBatch;
use datafusion::arrow::util::display::{ArrayFormatter, FormatOptions};
use futures::StreamExt;
use std::path::{Path, PathBuf};
use std::process::Command;
use sysql_engine::query::{Policy, QuerySession};

/// A directory removed when dropped.
pub struct TempDir(PathBuf);

impl TempDir {
    pub fn new(tag: &str) -> Self {
        use std::sync::atomic::{AtomicU32, Ordering};
        static N: AtomicU32 = AtomicU32::new(0);
        let n = N.fetch_add(1, Ordering::Relaxed);
        let p = std::env::temp_dir().join(format!("sysql-test-{tag}-{}-{n}", std::process::id()));
        let _ = std::fs::remove_dir_all(&p);
        std::fs::create_dir_all(&p).unwrap();
        TempDir(p)
    }
    pub fn path(&self) -> &Path {
        &self.0
    }
    pub fn join(&self, name: &str) -> PathBuf {
        self.0.join(name)
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// Compiles tests/probe/sysql-probe.c into `dir` (named sysql-probe, so its
/// comm is known).
pub fn compile_probe(dir: &TempDir) -> PathBuf {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../tests/probe/sysql-probe.c");
    let exe = dir.join("sysql-probe");
    let status = Command::new("cc").args(["-O1", "-o"]).arg(&exe).arg(&src).status().expect("cc runs");
    assert!(status.success(), "compiling the probe failed");
    exe
}

/// The statements of the README's tour, as typed at the `sysql>` prompt
/// (without the backslash commands).
pub fn readme_tour() -> Vec<String> {
    let readme = std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("../../README.md")).unwrap();
    let mut statements = Vec::new();
    let mut current = String::new();
    for line in readme.lines() {
        let body = line.strip_prefix("sysql> ").or_else(|| line.strip_prefix("   ->  "));
        let Some(body) = body else { continue };
        // Comments, and the shell's own commands (`\chart`), are no SQL.
        if body.starts_with("--") || body.starts_with('\\') {
            continue;
        }
        current.push_str(body);
        current.push(' ');
        if body.trim_end().ends_with(';') {
            statements.push(std::mem::take(&mut current));
        }
    }
    assert!(statements.len() >= 6, "{statements:?}");
    statements
}

/// A session over a running capture, with the shell's policy.
pub fn session(running: &sysql::app::Running) -> QuerySession {
    running.session(Policy::shell(false)).unwrap()
}

/// Runs one bounded statement through the statement path and returns its batches.
pub fn batches(rt: &tokio::runtime::Runtime, session: &QuerySession, sql: &str) -> Vec<RecordBatch> {
    rt.block_on(async {
        let mut stream = session.run(sql).await?;
        let mut out = Vec::new();
        while let Some(b) = stream.next().await {
            out.push(b?);
        }
        Ok::<_, sysql_engine::query::QueryError>(out)
    })
    .unwrap_or_else(|e| panic!("{sql}: {e}"))
}

/// Runs SQL and returns every row as strings (NULL for nulls).
pub fn query(rt: &tokio::runtime::Runtime, session: &QuerySession, sql: &str) -> Vec<Vec<String>> {
    rows(&batches(rt, session, sql))
}

/// Every row of some batches as strings (NULL for nulls).
pub fn rows(batches: &[RecordBatch]) -> Vec<Vec<String>> {
    let opts = FormatOptions::default().with_null("NULL");
    let mut rows = Vec::new();
    for b in batches {
        let fmts: Vec<_> = b.columns().iter().map(|c| ArrayFormatter::try_new(c.as_ref(), &opts).unwrap()).collect();
        for r in 0..b.num_rows() {
            rows.push(fmts.iter().map(|f| f.value(r).to_string()).collect());
        }
    }
    rows
}

/// A shell typed into at a terminal (stdin is a pseudo-terminal; stdout and
/// stderr are pipes, or the terminal too with [`Typist::spawn_terminal`]),
/// driven as a person would: wait for the prompt, type a line. A shell keeps
/// history only for what is typed at a terminal.
pub struct Typist {
    pub child: std::process::Child,
    keyboard: std::fs::File,
    out: std::sync::mpsc::Receiver<Vec<u8>>,
    /// Everything the shell has printed on stdout (and on stderr, when that
    /// is the terminal) so far.
    pub seen: Vec<u8>,
    /// Where in `seen` the last prompt waited for ended.
    mark: usize,
}

impl Typist {
    /// At a terminal of 80 columns and 24 rows.
    pub fn spawn(cmd: std::process::Command) -> Typist {
        Typist::spawn_sized(cmd, 80, 24)
    }

    /// At a terminal of `columns` and `rows`.
    pub fn spawn_sized(cmd: std::process::Command, columns: u16, rows: u16) -> Typist {
        Typist::start(cmd, columns, rows, false)
    }

    /// With stdin, stdout and stderr all at a terminal of `columns` and
    /// `rows`, as a person runs it: what needs a terminal to show (the pager,
    /// the status line of a live query) shows, and both outputs are read in
    /// [`Typist::seen`]. The terminal passes output through unchanged (no
    /// `\n` to `\r\n`).
    pub fn spawn_terminal(cmd: std::process::Command, columns: u16, rows: u16) -> Typist {
        Typist::start(cmd, columns, rows, true)
    }

    fn start(mut cmd: std::process::Command, columns: u16, rows: u16, all: bool) -> Typist {
        use nix::sys::termios::{tcgetattr, tcsetattr, LocalFlags, OutputFlags, SetArg};
        use std::io::Read;
        use std::process::Stdio;
        let size = nix::pty::Winsize { ws_row: rows, ws_col: columns, ws_xpixel: 0, ws_ypixel: 0 };
        let pty = nix::pty::openpty(Some(&size), None).expect("a pseudo-terminal");
        let mut attrs = tcgetattr(&pty.slave).unwrap();
        attrs.local_flags.remove(LocalFlags::ECHO);
        attrs.output_flags.remove(OutputFlags::OPOST);
        tcsetattr(&pty.slave, SetArg::TCSANOW, &attrs).unwrap();
        let keyboard = std::fs::File::from(pty.master);
        if all {
            cmd.stdout(Stdio::from(pty.slave.try_clone().unwrap())).stderr(Stdio::from(pty.slave.try_clone().unwrap()));
        } else {
            cmd.stdout(Stdio::piped()).stderr(Stdio::piped());
        }
        let mut child = cmd.stdin(Stdio::from(pty.slave)).spawn().unwrap();
        // Our copies of the terminal's end close with `cmd`: reading the
        // other end then ends when the shell does.
        drop(cmd);
        let mut output: Box<dyn Read + Send> = match child.stdout.take() {
            Some(stdout) => Box::new(stdout),
            None => Box::new(keyboard.try_clone().unwrap()),
        };
        let (tx, out) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            let mut buf = [0u8; 4096];
            while let Ok(n) = output.read(&mut buf) {
                if n == 0 || tx.send(buf[..n].to_vec()).is_err() {
                    break;
                }
            }
        });
        Typist { child, keyboard, out, seen: Vec::new(), mark: 0 }
    }

    /// Waits (at most 60 s) until stdout shows `needle` after the last mark.
    pub fn expect(&mut self, needle: &str) {
        self.expect_any(&[needle]);
    }

    /// Waits (at most 60 s) until stdout shows one of `needles` after the
    /// last mark (the first one shown).
    pub fn expect_any(&mut self, needles: &[&str]) {
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
        loop {
            let found =
                needles.iter().filter_map(|n| find(&self.seen[self.mark..], n.as_bytes()).map(|at| at + n.len())).min();
            if let Some(end) = found {
                self.mark += end;
                return;
            }
            let left = deadline.saturating_duration_since(std::time::Instant::now());
            match self.out.recv_timeout(left) {
                Ok(chunk) => self.seen.extend(chunk),
                Err(_) => {
                    panic!("the shell never printed {needles:?}; it printed {:?}", String::from_utf8_lossy(&self.seen))
                }
            }
        }
    }

    /// Waits for the prompt (or the continuation prompt), then types `line`
    /// and Enter.
    pub fn line(&mut self, line: &str) {
        use std::io::Write;
        self.expect_any(&["sysql> ", "   -> "]);
        self.keyboard.write_all(line.as_bytes()).unwrap();
        self.keyboard.write_all(b"\r").unwrap();
    }

    /// Presses Ctrl-C (sends SIGINT, as the terminal's driver would).
    pub fn interrupt(&self) {
        let pid = nix::unistd::Pid::from_raw(self.child.id() as i32);
        nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGINT).unwrap();
    }

    /// What the shell printed on stdout after the last mark so far.
    pub fn since_mark(&self) -> String {
        String::from_utf8_lossy(&self.seen[self.mark..]).into_owned()
    }

    /// Types `\q` at the next prompt and returns the exit status, stdout
    /// and stderr.
    pub fn quit(mut self) -> (std::process::ExitStatus, String, String) {
        self.line("\\q");
        self.finish()
    }

    /// Waits for the shell to end and returns the exit status, stdout and
    /// stderr (empty when stderr is the terminal: it is in stdout).
    pub fn finish(mut self) -> (std::process::ExitStatus, String, String) {
        use std::io::Read;
        let mut err = String::new();
        if let Some(mut stderr) = self.child.stderr.take() {
            stderr.read_to_string(&mut err).unwrap();
        }
        let status = self.child.wait().unwrap();
        while let Ok(chunk) = self.out.recv_timeout(std::time::Duration::from_secs(5)) {
            self.seen.extend(chunk);
        }
        (status, String::from_utf8_lossy(&self.seen).into_owned(), err)
    }
}

fn find(hay: &[u8], needle: &[u8]) -> Option<usize> {
    hay.windows(needle.len().max(1)).position(|w| w == needle)
}
