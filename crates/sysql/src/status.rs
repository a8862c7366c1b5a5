//! The status line under a running live query: events per second coming in,
//! rows out, events lost so far, and for a window query a sparkline of the
//! events counted per window. Written to stderr, and only when stderr is a
//! terminal, so it never mixes with results in a file or a pipe.

use std::io::{IsTerminal, Write};
use std::time::Instant;
use sysql_engine::Engine;

pub struct StatusLine {
    engine: Option<Engine>,
    enabled: bool,
    shown: bool,
    rows: usize,
    last: (Instant, u64),
    /// Events counted in each of the latest windows, oldest first.
    windows: std::collections::VecDeque<u64>,
}

/// How many windows the sparkline shows.
const SPARK_WINDOWS: usize = 24;

impl StatusLine {
    pub fn new(engine: Option<Engine>) -> Self {
        let captured = engine.as_ref().map(|e| e.stats().total_captured()).unwrap_or(0);
        StatusLine {
            enabled: engine.is_some() && std::io::stderr().is_terminal(),
            engine,
            shown: false,
            rows: 0,
            last: (Instant::now(), captured),
            windows: Default::default(),
        }
    }

    /// A window closed with `events` counted in it.
    pub fn window(&mut self, events: u64) {
        if self.windows.len() == SPARK_WINDOWS {
            self.windows.pop_front();
        }
        self.windows.push_back(events);
    }

    pub fn rows(&mut self, n: usize) {
        self.rows += n;
    }

    /// Redraws the line (call it periodically).
    pub fn show(&mut self) {
        let Some(engine) = self.engine.as_ref().filter(|_| self.enabled) else { return };
        let captured = engine.stats().total_captured();
        let secs = self.last.0.elapsed().as_secs_f64().max(1e-3);
        let rate = (captured.saturating_sub(self.last.1)) as f64 / secs;
        self.last = (Instant::now(), captured);
        let lost = engine.stats().total_lost();
        let mut err = std::io::stderr().lock();
        let spark = if self.windows.is_empty() {
            String::new()
        } else {
            let windows: Vec<u64> = self.windows.iter().copied().collect();
            format!(", per window {}", crate::chart::sparkline(&windows))
        };
        let _ = write!(
            err,
            "\r\x1b[2K-- live: {rate:.0} events/s in, {} rows out, {lost} lost{spark} (Ctrl-C stops)",
            self.rows
        );
        let _ = err.flush();
        self.shown = true;
    }

    /// Erases the line before results are printed.
    pub fn clear(&mut self) {
        if self.shown {
            let mut err = std::io::stderr().lock();
            let _ = write!(err, "\r\x1b[2K");
            let _ = err.flush();
            self.shown = false;
        }
    }
}
