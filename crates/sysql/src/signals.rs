//! Signals that are never lost. The first thing `main` does is block
//! SIGINT, SIGTERM and SIGHUP in its thread, which every thread started
//! later inherits; one thread then takes them with `sigwait` and counts
//! them. A signal that arrives while sysql is still loading its kernel
//! programs stays pending until that thread takes it, and whoever waits for
//! it afterwards (the `--for` wait, a running query) sees the count already
//! past the point it waits from. (Child processes start with an empty
//! signal mask: the standard library resets it before exec.)

use nix::sys::signal::{SigSet, Signal};
use std::sync::Arc;
use tokio::sync::watch;

/// Which signal.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Sig {
    Interrupt = 0,
    Terminate = 1,
    Hangup = 2,
}

/// How many of each signal have arrived since start.
pub type Counts = [u64; 3];

/// The signals taken so far, to wait on.
#[derive(Clone)]
pub struct Signals {
    counts: watch::Receiver<Counts>,
    _sender: Arc<watch::Sender<Counts>>,
    /// Whether a part of sysql handles SIGTERM; if none does, SIGTERM ends
    /// the process at once with status 143, as its default action would.
    terminate_handled: Arc<std::sync::atomic::AtomicBool>,
}

/// The exit status of a process ended by SIGTERM's default action.
const TERMINATED: i32 = 143;

fn set() -> SigSet {
    let mut set = SigSet::empty();
    set.add(Signal::SIGINT);
    set.add(Signal::SIGTERM);
    set.add(Signal::SIGHUP);
    set
}

impl Signals {
    /// Blocks the signals in the calling thread; every thread started
    /// afterwards inherits the mask. Call it before any other thread exists.
    /// Signals stay pending until [`Signals::start`].
    pub fn install() -> std::io::Result<Signals> {
        set().thread_block().map_err(std::io::Error::from)?;
        let (tx, rx) = watch::channel([0u64; 3]);
        Ok(Signals { counts: rx, _sender: Arc::new(tx), terminate_handled: Default::default() })
    }

    /// Says that SIGTERM is waited for (a one-shot run, the schedule); else
    /// it ends the process at once.
    pub fn handle_terminate(&self) {
        self.terminate_handled.store(true, std::sync::atomic::Ordering::Relaxed);
    }

    /// Starts the thread that takes the signals (and counts those pending).
    /// Started after privileges are dropped, it holds none.
    pub fn start(&self) -> std::io::Result<()> {
        let sender = self._sender.clone();
        let handled = self.terminate_handled.clone();
        let set = set();
        std::thread::Builder::new().name("sysql-signals".into()).spawn(move || loop {
            let Ok(signal) = set.wait() else { continue };
            let which = match signal {
                Signal::SIGINT => Sig::Interrupt,
                Signal::SIGTERM if !handled.load(std::sync::atomic::Ordering::Relaxed) => {
                    std::process::exit(TERMINATED)
                }
                Signal::SIGTERM => Sig::Terminate,
                Signal::SIGHUP => Sig::Hangup,
                _ => continue,
            };
            sender.send_modify(|c| c[which as usize] += 1);
        })?;
        Ok(())
    }

    /// Signals that never fire (tests and tools that run statements
    /// without a process of their own).
    pub fn none() -> Signals {
        let (tx, rx) = watch::channel([0u64; 3]);
        Signals { counts: rx, _sender: Arc::new(tx), terminate_handled: Default::default() }
    }

    /// The counts now: wait from here with [`Signals::after`].
    pub fn now(&self) -> Counts {
        *self.counts.borrow()
    }

    /// Resolves once one of `which` arrives after `since` (at once if one
    /// already has).
    pub async fn after(&self, since: Counts, which: &[Sig]) -> Sig {
        let mut rx = self.counts.clone();
        let mut fired = None;
        let _ = rx
            .wait_for(|c| {
                fired = which.iter().copied().find(|s| c[*s as usize] > since[*s as usize]);
                fired.is_some()
            })
            .await;
        match fired {
            Some(s) => s,
            // The sender lives as long as any Signals: unreachable, but never fire then.
            None => std::future::pending().await,
        }
    }

    /// Resolves on the next SIGINT from now.
    pub async fn interrupt(&self) {
        self.after(self.now(), &[Sig::Interrupt]).await;
    }

    /// Resolves on SIGINT or SIGTERM after `since`: a request to stop.
    pub async fn stop_after(&self, since: Counts) -> Sig {
        self.after(since, &[Sig::Interrupt, Sig::Terminate]).await
    }

    /// For tests: count a signal as if it had arrived.
    pub fn raise(&self, which: Sig) {
        self._sender.send_modify(|c| c[which as usize] += 1);
    }
}
