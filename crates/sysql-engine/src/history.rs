//! Recent history: each table keeps its batches for a retention period, under
//! one memory cap shared by all tables. Past the cap, the oldest batch of the
//! table holding the most memory goes first (a storm of opens does not push
//! out the rare rows of other tables), and every evicted row is counted. Readers take a snapshot (Arc clones) and never
//! block the writer for long.

use crate::event::Batch;
use crate::stats::Stats;
use datafusion::arrow::compute::concat_batches;
use datafusion::arrow::record_batch::RecordBatch;
use std::collections::VecDeque;
use std::sync::atomic::{AtomicUsize, Ordering::Relaxed};
use std::sync::{Arc, Mutex};
use sysql_events::{Table, TABLE_COUNT};

/// Small batches are merged until they reach this many rows...
const COMPACT_ROWS: usize = 8192;
/// ...but only batches smaller than this are merged.
const COMPACT_MIN_ROWS: usize = 2048;
/// ...and while a merged batch spans at most this fraction of the retention
/// period, so that expiry (a whole batch at a time) stays fine-grained.
const COMPACT_SPAN_DIVISOR: i64 = 16;

#[derive(Debug)]
struct Entry {
    batch: RecordBatch,
    min_ts: i64,
    max_ts: i64,
    bytes: usize,
}

/// What one table holds now.
#[derive(Debug, Clone, Copy, Default)]
pub struct Usage {
    pub rows: u64,
    pub bytes: u64,
    pub oldest: Option<i64>,
    pub newest: Option<i64>,
}

#[derive(Debug)]
pub struct History {
    tables: [Mutex<VecDeque<Entry>>; TABLE_COUNT],
    used: AtomicUsize,
    /// Bytes per table, for choosing which one gives up a batch.
    table_used: [AtomicUsize; TABLE_COUNT],
    cap_bytes: usize,
    retention_ns: i64,
    stats: Arc<Stats>,
}

impl History {
    pub fn new(retention_ns: i64, cap_bytes: usize, stats: Arc<Stats>) -> Self {
        History {
            tables: Default::default(),
            used: AtomicUsize::new(0),
            table_used: Default::default(),
            cap_bytes,
            retention_ns,
            stats,
        }
    }

    fn lock(&self, t: usize) -> std::sync::MutexGuard<'_, VecDeque<Entry>> {
        // A panic while holding the lock leaves a consistent deque: recover it.
        self.tables[t].lock().unwrap_or_else(|e| e.into_inner())
    }

    fn add_used(&self, t: usize, bytes: usize) {
        self.used.fetch_add(bytes, Relaxed);
        self.table_used[t].fetch_add(bytes, Relaxed);
    }

    fn sub_used(&self, t: usize, bytes: usize) {
        self.used.fetch_sub(bytes, Relaxed);
        self.table_used[t].fetch_sub(bytes, Relaxed);
    }

    /// Adds a batch, then enforces the memory cap.
    pub fn insert(&self, table: Table, b: Batch) {
        if b.batch.num_rows() == 0 {
            return;
        }
        let mut entry =
            Entry { bytes: b.batch.get_array_memory_size(), batch: b.batch, min_ts: b.min_ts, max_ts: b.max_ts };
        {
            let mut q = self.lock(table as usize);
            // Quiet tables flush small batches often: merge them into the
            // newest one, so history stays a few large batches. A batch that
            // is already large (a busy table's) is kept as it is: merging it
            // would copy every row once more, a quarter of the writer's time.
            if let Some(tail) = q.back().filter(|_| entry.batch.num_rows() < COMPACT_MIN_ROWS) {
                let span = entry.max_ts.saturating_sub(tail.min_ts);
                if tail.batch.num_rows() + entry.batch.num_rows() <= COMPACT_ROWS
                    && span <= self.retention_ns / COMPACT_SPAN_DIVISOR
                {
                    if let Ok(merged) = concat_batches(&entry.batch.schema(), [&tail.batch, &entry.batch]) {
                        let tail = q.pop_back().expect("tail exists");
                        self.sub_used(table as usize, tail.bytes);
                        entry = Entry {
                            bytes: merged.get_array_memory_size(),
                            batch: merged,
                            min_ts: tail.min_ts.min(entry.min_ts),
                            max_ts: tail.max_ts.max(entry.max_ts),
                        };
                    }
                }
            }
            self.add_used(table as usize, entry.bytes);
            q.push_back(entry);
        }
        while self.used.load(Relaxed) > self.cap_bytes {
            if !self.evict() {
                break;
            }
        }
    }

    /// Removes the oldest batch of the table that holds the most memory.
    fn evict(&self) -> bool {
        let largest = (0..TABLE_COUNT).max_by_key(|&t| self.table_used[t].load(Relaxed));
        let Some(t) = largest else { return false };
        let Some(e) = self.lock(t).pop_front() else { return false };
        self.sub_used(t, e.bytes);
        self.stats.table(Table::ALL[t]).evicted.fetch_add(e.batch.num_rows() as u64, Relaxed);
        true
    }

    /// Drops batches whose newest row is older than the retention period
    /// (whole batches, each spanning at most 1/16 of the period).
    pub fn expire(&self, now_ns: i64) {
        let horizon = now_ns.saturating_sub(self.retention_ns);
        for t in 0..TABLE_COUNT {
            let mut q = self.lock(t);
            while q.front().is_some_and(|e| e.max_ts < horizon) {
                let e = q.pop_front().expect("front exists");
                self.sub_used(t, e.bytes);
                self.stats.table(Table::ALL[t]).expired.fetch_add(e.batch.num_rows() as u64, Relaxed);
            }
        }
    }

    /// The batches that may hold rows with `lo <= ts <= hi`.
    pub fn snapshot(&self, table: Table, lo: Option<i64>, hi: Option<i64>) -> Vec<RecordBatch> {
        let lo = lo.unwrap_or(i64::MIN);
        let hi = hi.unwrap_or(i64::MAX);
        self.lock(table as usize).iter().filter(|e| e.max_ts >= lo && e.min_ts <= hi).map(|e| e.batch.clone()).collect()
    }

    pub fn usage(&self, table: Table) -> Usage {
        let q = self.lock(table as usize);
        Usage {
            rows: q.iter().map(|e| e.batch.num_rows() as u64).sum(),
            bytes: q.iter().map(|e| e.bytes as u64).sum(),
            oldest: q.iter().map(|e| e.min_ts).min(),
            newest: q.iter().map(|e| e.max_ts).max(),
        }
    }

    /// Bytes held by all tables.
    pub fn used_bytes(&self) -> usize {
        self.used.load(Relaxed)
    }
}
