//! The single writer: raw ring buffer records in, Arrow batches out to history.
//!
//! One decode pass per record, straight into the column builders: no
//! allocation or syscall per event. Batches are flushed when a table reaches
//! `flush_rows` rows or `flush_interval` has passed.

use crate::event::connects::ConnectsBuilder;
use crate::event::execs::ExecsBuilder;
use crate::event::opens::OpensBuilder;
use crate::event::Batch;
use crate::history::History;
use crate::live::LiveHub;
use crate::stats::Stats;
use std::sync::atomic::Ordering::Relaxed;
use std::sync::Arc;
use std::time::{Duration, Instant};
use sysql_events::{decode, DecodeError, Record, Table, KIND_CONNECT, KIND_EXEC, KIND_OPEN, TABLE_COUNT};

pub struct Ingest {
    opens: OpensBuilder,
    connects: ConnectsBuilder,
    execs: ExecsBuilder,
    /// Rows appended since the last publish of the counters.
    pending: [u64; TABLE_COUNT],
    truncated: [u64; TABLE_COUNT],
    history: Arc<History>,
    live: Arc<LiveHub>,
    stats: Arc<Stats>,
    clock_offset_ns: i64,
    flush_rows: usize,
    flush_interval: Duration,
    live_flush_interval: Duration,
    last_flush: Instant,
    drained_at: i64,
}

impl Ingest {
    pub(crate) fn new(
        history: Arc<History>,
        live: Arc<LiveHub>,
        stats: Arc<Stats>,
        config: &crate::EngineConfig,
    ) -> Self {
        // Builders start small and grow: a quiet table's batches stay small.
        let start = 64;
        Ingest {
            opens: OpensBuilder::with_capacity(start),
            connects: ConnectsBuilder::with_capacity(start),
            execs: ExecsBuilder::with_capacity(start).redacting(config.redact_argv.clone()),
            pending: [0; TABLE_COUNT],
            truncated: [0; TABLE_COUNT],
            history,
            live,
            stats,
            clock_offset_ns: config.clock_offset_ns,
            flush_rows: config.flush_rows.max(1),
            flush_interval: config.flush_interval,
            live_flush_interval: config.live_flush_interval,
            last_flush: Instant::now(),
            drained_at: i64::MAX,
        }
    }

    /// Decodes one ring buffer record into its table. A record that cannot be
    /// decoded is counted, never a panic.
    pub fn push(&mut self, record: &[u8]) {
        let off = self.clock_offset_ns;
        let (table, truncated, full) = match decode(record) {
            Ok(Record::Open(e)) => (Table::Opens, self.opens.append(e, off), self.opens.len() >= self.flush_rows),
            Ok(Record::Connect(e)) => {
                (Table::Connects, self.connects.append(e, off), self.connects.len() >= self.flush_rows)
            }
            Ok(Record::Exec(e)) => (Table::Execs, self.execs.append(e, off), self.execs.len() >= self.flush_rows),
            Err(err) => {
                self.decode_error(&err);
                return;
            }
        };
        self.pending[table as usize] += 1;
        self.truncated[table as usize] += truncated as u64;
        if full {
            self.flush_table(table);
        }
    }

    fn decode_error(&self, err: &DecodeError) {
        let table = match err {
            DecodeError::NotEnoughBytes { kind: KIND_OPEN, .. } => Some(Table::Opens),
            DecodeError::NotEnoughBytes { kind: KIND_CONNECT, .. } => Some(Table::Connects),
            DecodeError::NotEnoughBytes { kind: KIND_EXEC, .. } => Some(Table::Execs),
            _ => None,
        };
        match table {
            Some(t) => self.stats.table(t).decode_errors.fetch_add(1, Relaxed),
            None => self.stats.unknown_records.fetch_add(1, Relaxed),
        };
    }

    fn finish(&mut self, table: Table) -> Option<Batch> {
        let batch = match table {
            Table::Opens if !self.opens.is_empty() => self.opens.finish(),
            Table::Connects if !self.connects.is_empty() => self.connects.finish(),
            Table::Execs if !self.execs.is_empty() => self.execs.finish(),
            _ => return None,
        };
        Some(batch)
    }

    fn flush_table(&mut self, table: Table) {
        let i = table as usize;
        if let Some(batch) = self.finish(table) {
            self.live.publish(table, &batch);
            self.history.insert(table, batch);
        }
        let t = self.stats.table(table);
        t.captured.fetch_add(std::mem::take(&mut self.pending[i]), Relaxed);
        t.truncated.fetch_add(std::mem::take(&mut self.truncated[i]), Relaxed);
    }

    /// Tells the writer when the ring buffer was last found empty: the live
    /// watermark does not pass it (see [`Ingest::tick`]).
    pub fn drained_at(&mut self, wall_ns: i64) {
        self.drained_at = wall_ns;
    }

    /// The counters this writer publishes to.
    pub fn stats(&self) -> &Arc<Stats> {
        &self.stats
    }

    /// Flushes every table now.
    pub fn flush(&mut self) {
        for t in Table::ALL {
            self.flush_table(t);
        }
        self.last_flush = Instant::now();
    }

    /// Flushes if the flush interval has passed (a shorter one while live
    /// queries run), expires old history, and advances the live watermark
    /// (the heartbeat of live windows). Call it on every poll.
    pub fn tick(&mut self, now_wall_ns: i64) -> bool {
        let live = Table::ALL.iter().any(|t| self.live.has_subscribers(*t));
        let interval = if live { self.live_flush_interval } else { self.flush_interval };
        let flushed = self.last_flush.elapsed() >= interval;
        if flushed {
            self.flush();
            self.history.expire(now_wall_ns);
        }
        // The watermark moves only right after a flush, so no row still in
        // the builders can fall behind it.
        if live && flushed {
            self.live.advance(now_wall_ns.min(self.drained_at));
        }
        flushed
    }
}
