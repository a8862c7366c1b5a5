//! `sysql agent` as a real process, for the tests that ask it.

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

pub const BIN: &str = env!("CARGO_BIN_EXE_sysql");

pub fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

/// An agent process; its stderr lines arrive on a channel.
pub struct Agent {
    pub child: Child,
    lines: mpsc::Receiver<String>,
    pub said: Vec<String>,
    pub socket: PathBuf,
    /// The line the agent said when it began answering.
    pub started: String,
}

impl Agent {
    /// Starts an agent on `dir/state` and `dir/sock` and waits until it answers.
    pub fn start(dir: &Path, extra: &[&str]) -> Agent {
        let socket = dir.join("sock");
        let mut cmd = Command::new(BIN);
        cmd.arg("agent").arg("--state-dir").arg(dir.join("state")).arg("--socket").arg(&socket).args(extra);
        Agent::spawn(cmd, socket, "answering on")
    }

    /// Runs `cmd` (an agent's command line, answering on `socket`) and waits
    /// for the stderr line that says it is `ready`, kept in `started`.
    pub fn spawn(mut cmd: Command, socket: PathBuf, ready: &str) -> Agent {
        let mut child = cmd.stdout(Stdio::null()).stderr(Stdio::piped()).spawn().unwrap();
        let err = child.stderr.take().unwrap();
        let (tx, lines) = mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(err).lines() {
                let Ok(line) = line else { break };
                if tx.send(line).is_err() {
                    break;
                }
            }
        });
        let mut agent = Agent { child, lines, said: Vec::new(), socket, started: String::new() };
        agent.started = agent.wait_for(ready);
        agent
    }

    /// Waits (at most 60 s) for a stderr line containing `needle`.
    pub fn wait_for(&mut self, needle: &str) -> String {
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match self.lines.recv_timeout(left) {
                Ok(line) => {
                    self.said.push(line.clone());
                    if line.contains(needle) {
                        return line;
                    }
                }
                Err(_) => panic!("the agent never said {needle:?}; it said {:?}", self.said),
            }
        }
    }

    pub fn signal(&self, sig: nix::sys::signal::Signal) {
        nix::sys::signal::kill(nix::unistd::Pid::from_raw(self.child.id() as i32), sig).unwrap();
    }

    /// SIGTERM, and the exit status.
    pub fn stop(mut self) -> std::process::ExitStatus {
        self.signal(nix::sys::signal::Signal::SIGTERM);
        self.child.wait().unwrap()
    }

    /// SIGKILL, waiting until the process is gone.
    pub fn kill(mut self) {
        self.child.kill().unwrap();
        self.child.wait().unwrap();
    }

    /// Runs SQL through `sysql --agent`, returns stdout (CSV without header).
    pub fn ask(&self, sql: &str) -> String {
        let out =
            Command::new(BIN).arg("--agent").arg(&self.socket).args(["-c", sql, "--format", "csv"]).output().unwrap();
        assert_eq!(out.status.code(), Some(0), "{sql}: {}", text(&out.stderr));
        text(&out.stdout).lines().skip(1).collect::<Vec<_>>().join("\n")
    }

    /// Asks until the answer is `want` (at most 30 s): a row can wait for a
    /// later record (a connect for its outcome); each ask is a client round
    /// trip, which paces the loop.
    pub fn ask_until(&self, sql: &str, want: &str) -> String {
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            let got = self.ask(sql);
            if got == want || Instant::now() > deadline {
                return got;
            }
        }
    }
}

impl Drop for Agent {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
