//! The single writer: raw ring buffer records in, Arrow batches out to history.
//!
//! One decode pass per record, straight into the column builders: no
//! allocation or syscall per event. Batches are flushed when a table reaches
//! `flush_rows` rows or `flush_interval` has passed.

use crate::containers::Containers;
use crate::event::accepts::AcceptsBuilder;
use crate::event::connects::ConnectsBuilder;
use crate::event::db_queries::DbQueriesBuilder;
use crate::event::dns_queries::DnsQueriesBuilder;
use crate::event::execs::ExecsBuilder;
use crate::event::exits::ExitsBuilder;
use crate::event::http_requests::HttpRequestsBuilder;
use crate::event::opens::OpensBuilder;
use crate::event::Batch;
use crate::history::History;
use crate::live::LiveHub;
use crate::payload::Payloads;
use crate::stats::Stats;
use std::sync::atomic::Ordering::Relaxed;
use std::sync::Arc;
use std::time::{Duration, Instant};
use sysql_events::{
    decode, DecodeError, Record, Table, Widen, KIND_ACCEPT, KIND_CONNECT, KIND_CONNECT_DONE, KIND_EXEC, KIND_EXIT,
    KIND_OPEN, KIND_PAYLOAD, TABLE_COUNT,
};

pub struct Ingest {
    opens: OpensBuilder,
    connects: ConnectsBuilder,
    execs: ExecsBuilder,
    http: HttpRequestsBuilder,
    db: DbQueriesBuilder,
    dns: DnsQueriesBuilder,
    accepts: AcceptsBuilder,
    exits: ExitsBuilder,
    /// Connection tracking that turns payloads into the three tables above.
    payloads: Payloads,
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
    /// Where an open or exec sent at its exact length is widened to its struct.
    widen: Box<Widen>,
}

impl Ingest {
    pub(crate) fn new(
        history: Arc<History>,
        live: Arc<LiveHub>,
        stats: Arc<Stats>,
        containers: Arc<Containers>,
        config: &crate::EngineConfig,
    ) -> Self {
        // Builders start small and grow: a quiet table's batches stay small.
        let start = 64;
        let mut ingest = Ingest {
            opens: OpensBuilder::with_capacity(start),
            connects: ConnectsBuilder::with_capacity(start),
            execs: ExecsBuilder::with_capacity(start).redacting(config.redact_argv.clone()),
            http: HttpRequestsBuilder::new(),
            db: DbQueriesBuilder::new(),
            dns: DnsQueriesBuilder::new(),
            accepts: AcceptsBuilder::with_capacity(start),
            exits: ExitsBuilder::with_capacity(start),
            payloads: Payloads::new(config.payload),
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
            widen: Widen::new(),
        };
        ingest.opens.attribute(containers.clone());
        ingest.connects.attribute(containers.clone());
        ingest.execs.attribute(containers.clone());
        ingest.http.attribute(containers.clone());
        ingest.db.attribute(containers.clone());
        ingest.dns.attribute(containers.clone());
        ingest.accepts.attribute(containers.clone());
        ingest.exits.attribute(containers);
        ingest
    }

    /// Decodes one ring buffer record into its table. A record that cannot be
    /// decoded is counted, never a panic.
    pub fn push(&mut self, record: &[u8]) {
        let off = self.clock_offset_ns;
        let (table, rows, truncated, full) = match decode(record, &mut self.widen) {
            Ok(Record::Open(e)) => {
                (Table::Opens, 1, self.opens.append(e, off) as u64, self.opens.len() >= self.flush_rows)
            }
            Ok(Record::Connect(e)) => {
                let (rows, truncated) = self.connects.push(e, off);
                (Table::Connects, rows, truncated, self.connects.len() >= self.flush_rows)
            }
            Ok(Record::ConnectDone(e)) => {
                let (rows, truncated) = self.connects.push_done(e, off);
                (Table::Connects, rows, truncated, self.connects.len() >= self.flush_rows)
            }
            Ok(Record::Exec(e)) => {
                (Table::Execs, 1, self.execs.append(e, off) as u64, self.execs.len() >= self.flush_rows)
            }
            Ok(Record::Accept(e)) => {
                (Table::Accepts, 1, self.accepts.append(e, off) as u64, self.accepts.len() >= self.flush_rows)
            }
            Ok(Record::Exit(e)) => {
                (Table::Exits, 1, self.exits.append(e, off) as u64, self.exits.len() >= self.flush_rows)
            }
            Ok(Record::Payload(e, data)) => {
                self.payloads.push(e, data);
                let malformed = std::mem::take(&mut self.payloads.malformed);
                if malformed > 0 {
                    self.stats.table(Table::DbQueries).decode_errors.fetch_add(malformed, Relaxed);
                }
                self.take_payload_rows();
                return;
            }
            Err(err) => {
                self.decode_error(&err);
                return;
            }
        };
        self.pending[table as usize] += rows;
        self.truncated[table as usize] += truncated;
        if full {
            self.flush_table(table);
        }
    }

    /// Adds rows the connects builder made outside `push` (given up after the wait).
    fn count_connects(&mut self, (rows, truncated): (u64, u64)) {
        self.pending[Table::Connects as usize] += rows;
        self.truncated[Table::Connects as usize] += truncated;
    }

    /// Moves the rows the payload parsers finished into their tables.
    fn take_payload_rows(&mut self) {
        let off = self.clock_offset_ns;
        let rows = &mut self.payloads.rows;
        for row in rows.http.drain(..) {
            self.pending[Table::HttpRequests as usize] += 1;
            self.truncated[Table::HttpRequests as usize] += self.http.append(row, off) as u64;
        }
        for row in rows.db.drain(..) {
            self.pending[Table::DbQueries as usize] += 1;
            self.truncated[Table::DbQueries as usize] += self.db.append(row, off) as u64;
        }
        for row in rows.dns.drain(..) {
            self.pending[Table::DnsQueries as usize] += 1;
            self.truncated[Table::DnsQueries as usize] += self.dns.append(row, off) as u64;
        }
        for (table, full) in [
            (Table::HttpRequests, self.http.len() >= self.flush_rows),
            (Table::DbQueries, self.db.len() >= self.flush_rows),
            (Table::DnsQueries, self.dns.len() >= self.flush_rows),
        ] {
            if full {
                self.flush_table(table);
            }
        }
    }

    /// Ends every exchange still open (their rows get what was seen) and
    /// flushes: for shutdown, and for tests over recorded events.
    pub fn finish_payloads(&mut self) {
        self.payloads.finish();
        self.take_payload_rows();
        let given_up = self.connects.finish_held(self.clock_offset_ns);
        self.count_connects(given_up);
        self.flush();
    }

    fn decode_error(&self, err: &DecodeError) {
        let table = match err {
            DecodeError::NotEnoughBytes { kind: KIND_OPEN, .. } => Some(Table::Opens),
            DecodeError::NotEnoughBytes { kind: KIND_CONNECT | KIND_CONNECT_DONE, .. } => Some(Table::Connects),
            DecodeError::NotEnoughBytes { kind: KIND_ACCEPT, .. } => Some(Table::Accepts),
            DecodeError::NotEnoughBytes { kind: KIND_EXIT, .. } => Some(Table::Exits),
            DecodeError::NotEnoughBytes { kind: KIND_EXEC, .. } => Some(Table::Execs),
            // A payload's table is known only once parsed: its errors count under http_requests.
            DecodeError::NotEnoughBytes { kind: KIND_PAYLOAD, .. } => Some(Table::HttpRequests),
            _ => None,
        };
        match table {
            Some(t) => self.stats.table(t).decode_errors.fetch_add(1, Relaxed),
            None => self.stats.unknown_records.fetch_add(1, Relaxed),
        };
    }

    fn finish(&mut self, table: Table) -> Option<Batch> {
        // Exhaustive: a new table does not compile until it is flushed here.
        match table {
            Table::Opens => (!self.opens.is_empty()).then(|| self.opens.finish()),
            Table::Connects => (!self.connects.is_empty()).then(|| self.connects.finish()),
            Table::Execs => (!self.execs.is_empty()).then(|| self.execs.finish()),
            Table::HttpRequests => (!self.http.is_empty()).then(|| self.http.finish()),
            Table::DbQueries => (!self.db.is_empty()).then(|| self.db.finish()),
            Table::DnsQueries => (!self.dns.is_empty()).then(|| self.dns.finish()),
            Table::Accepts => (!self.accepts.is_empty()).then(|| self.accepts.finish()),
            Table::Exits => (!self.exits.is_empty()).then(|| self.exits.finish()),
        }
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
            let now_boot = now_wall_ns.saturating_sub(self.clock_offset_ns);
            self.payloads.expire(now_boot);
            self.take_payload_rows();
            let given_up = self.connects.expire(now_boot, self.clock_offset_ns);
            self.count_connects(given_up);
            self.flush();
            self.history.expire(now_wall_ns);
        }
        // The watermark moves only right after a flush, so no row still in
        // the builders can fall behind it.
        if live && flushed {
            // A payload row carries its request's time and is made when the
            // response comes, and a connect's row when its outcome comes:
            // those tables' watermarks wait for the oldest one still open.
            let off = self.clock_offset_ns;
            let holds = self.payloads.oldest_pending().map(|t| t.map(|t| t.saturating_add(off)));
            let connects = self.connects.oldest_held().map(|t| t.saturating_add(off));
            self.live.advance_held(now_wall_ns.min(self.drained_at), |table| match table {
                Table::HttpRequests => holds[0],
                Table::DbQueries => holds[1],
                Table::DnsQueries => holds[2],
                Table::Connects => connects,
                Table::Opens | Table::Execs | Table::Accepts | Table::Exits => None,
            });
        }
        flushed
    }
}
