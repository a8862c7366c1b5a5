//! Recent history in memory: each table keeps its batches for a retention
//! period, under one memory cap shared by all tables. Past the cap, the
//! oldest batch of the table holding the most memory goes first (a storm of
//! opens does not push out the rare rows of other tables), and every evicted
//! row is counted. Readers take a snapshot (Arc clones) and never block the
//! writer for long.
//!
//! Every entry has an id, increasing per table, which a durable store
//! (`crate::store`) uses to tell what is in memory from what is on disk: a
//! query reads the entries in memory, and from the store only ids below the
//! oldest one in memory. An entry the store has written (or is writing) is
//! sealed: it is no longer merged with later batches. With a store, an
//! entry that leaves memory before it was written is handed to the store
//! (the spill) instead of being dropped.

use crate::event::Batch;
use crate::stats::Stats;
use datafusion::arrow::compute::concat_batches;
use datafusion::arrow::record_batch::RecordBatch;
use std::collections::VecDeque;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering::Relaxed};
use std::sync::{Arc, Mutex, OnceLock};
use sysql_events::{Table, TABLE_COUNT};

/// Small batches are merged until they reach this many rows...
const COMPACT_ROWS: usize = 8192;
/// ...but only batches smaller than this are merged.
const COMPACT_MIN_ROWS: usize = 2048;
/// ...and while a merged batch spans at most this fraction of the retention
/// period, so that expiry (a whole batch at a time) stays fine-grained.
const COMPACT_SPAN_DIVISOR: i64 = 16;

/// One batch of a table in history.
#[derive(Debug, Clone)]
pub struct Entry {
    /// Increasing per table.
    pub id: u64,
    pub batch: RecordBatch,
    pub min_ts: i64,
    pub max_ts: i64,
    pub bytes: usize,
    /// Given to the store to write: no longer merged with later batches.
    pub sealed: bool,
}

/// What one table holds now.
#[derive(Debug, Clone, Copy, Default)]
pub struct Usage {
    pub rows: u64,
    pub bytes: u64,
    pub oldest: Option<i64>,
    pub newest: Option<i64>,
}

/// Where entries go that leave memory before the store has written them.
pub trait Spill: Send + Sync + std::fmt::Debug {
    /// Takes an entry of `table` that leaves memory unwritten. Called with
    /// the table's history lock held, so that no reader sees it in neither.
    fn spill(&self, table: Table, entry: Entry);
    /// The id up to which entries of `table` are written.
    fn written_up_to(&self, table: Table) -> u64;
}

#[derive(Debug)]
pub struct History {
    tables: [Mutex<VecDeque<Entry>>; TABLE_COUNT],
    /// The next entry id of each table.
    next_id: [AtomicU64; TABLE_COUNT],
    used: AtomicUsize,
    /// Bytes per table, for choosing which one gives up a batch.
    table_used: [AtomicUsize; TABLE_COUNT],
    cap_bytes: usize,
    retention_ns: i64,
    stats: Arc<Stats>,
    spill: OnceLock<Arc<dyn Spill>>,
}

/// A table's entries at one moment: every entry in memory, and the id of
/// the oldest one (entries with a smaller id are not in memory any more).
#[derive(Debug, Clone)]
pub struct Snapshot {
    pub batches: Vec<RecordBatch>,
    /// The oldest id in memory, or the next id if memory holds none.
    pub first_id: u64,
}

impl History {
    pub fn new(retention_ns: i64, cap_bytes: usize, stats: Arc<Stats>) -> Self {
        History {
            tables: Default::default(),
            next_id: Default::default(),
            used: AtomicUsize::new(0),
            table_used: Default::default(),
            cap_bytes,
            retention_ns,
            stats,
            spill: OnceLock::new(),
        }
    }

    /// Attaches a store: entries that leave memory unwritten go to it, and
    /// ids continue after those it holds (`first_ids`, per table).
    pub fn attach_spill(&self, spill: Arc<dyn Spill>, first_ids: [u64; TABLE_COUNT]) {
        for (next, first) in self.next_id.iter().zip(first_ids) {
            next.fetch_max(first, Relaxed);
        }
        let _ = self.spill.set(spill);
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

    /// Removes the front entry of table `t` (its lock held): handed to the
    /// store if it was not written yet.
    fn pop_front(&self, t: usize, q: &mut VecDeque<Entry>) -> Option<Entry> {
        let e = q.pop_front()?;
        self.sub_used(t, e.bytes);
        if let Some(spill) = self.spill.get() {
            let table = Table::ALL[t];
            if e.id >= spill.written_up_to(table) {
                spill.spill(table, e.clone());
            }
        }
        Some(e)
    }

    /// Adds a batch, evicting first what it needs room for: the bytes held
    /// stay under the memory cap at every moment, as `sysql_stats` may be
    /// read at any time.
    pub fn insert(&self, table: Table, b: Batch) {
        if b.batch.num_rows() == 0 {
            return;
        }
        let t = table as usize;
        let mut entry = Entry {
            id: 0,
            bytes: b.batch.get_array_memory_size(),
            batch: b.batch,
            min_ts: b.min_ts,
            max_ts: b.max_ts,
            sealed: false,
        };
        self.make_room(entry.bytes);
        {
            let mut q = self.lock(t);
            // Quiet tables flush small batches often: merge them into the
            // newest one, so history stays a few large batches. A batch that
            // is already large (a busy table's) is kept as it is: merging it
            // would copy every row once more, a quarter of the writer's time.
            // An entry given to the store is not merged any more.
            if let Some(tail) = q.back().filter(|tail| entry.batch.num_rows() < COMPACT_MIN_ROWS && !tail.sealed) {
                let span = entry.max_ts.saturating_sub(tail.min_ts);
                if tail.batch.num_rows() + entry.batch.num_rows() <= COMPACT_ROWS
                    && span <= self.retention_ns / COMPACT_SPAN_DIVISOR
                {
                    if let Ok(merged) = concat_batches(&entry.batch.schema(), [&tail.batch, &entry.batch]) {
                        let tail = q.pop_back().expect("tail exists");
                        self.sub_used(t, tail.bytes);
                        entry = Entry {
                            id: tail.id,
                            bytes: merged.get_array_memory_size(),
                            batch: merged,
                            min_ts: tail.min_ts.min(entry.min_ts),
                            max_ts: tail.max_ts.max(entry.max_ts),
                            sealed: false,
                        };
                        self.add_used(t, entry.bytes);
                        q.push_back(entry);
                        drop(q);
                        // a merge can come out a little larger than its parts
                        self.enforce_cap();
                        return;
                    }
                }
            }
            entry.id = self.next_id[t].fetch_add(1, Relaxed);
            self.add_used(t, entry.bytes);
            q.push_back(entry);
        }
        self.enforce_cap();
    }

    fn enforce_cap(&self) {
        self.make_room(0);
    }

    /// Evicts until `bytes` more fit under the cap (or nothing is left).
    fn make_room(&self, bytes: usize) {
        while self.used.load(Relaxed).saturating_add(bytes) > self.cap_bytes {
            if !self.evict() {
                break;
            }
        }
    }

    /// Removes the oldest batch of the table that holds the most memory.
    fn evict(&self) -> bool {
        let largest = (0..TABLE_COUNT).max_by_key(|&t| self.table_used[t].load(Relaxed));
        let Some(t) = largest else { return false };
        let mut q = self.lock(t);
        let Some(e) = self.pop_front(t, &mut q) else { return false };
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
                let e = self.pop_front(t, &mut q).expect("front exists");
                self.stats.table(Table::ALL[t]).expired.fetch_add(e.batch.num_rows() as u64, Relaxed);
            }
        }
    }

    /// The batches that may hold rows with `lo <= ts <= hi`.
    pub fn snapshot(&self, table: Table, lo: Option<i64>, hi: Option<i64>) -> Vec<RecordBatch> {
        self.snapshot_ids(table, lo, hi).batches
    }

    /// The batches that may hold rows with `lo <= ts <= hi`, and the oldest
    /// id in memory.
    pub fn snapshot_ids(&self, table: Table, lo: Option<i64>, hi: Option<i64>) -> Snapshot {
        let lo = lo.unwrap_or(i64::MIN);
        let hi = hi.unwrap_or(i64::MAX);
        let t = table as usize;
        let q = self.lock(t);
        let first_id = q.front().map(|e| e.id).unwrap_or_else(|| self.next_id[t].load(Relaxed));
        let batches = q.iter().filter(|e| e.max_ts >= lo && e.min_ts <= hi).map(|e| e.batch.clone()).collect();
        Snapshot { batches, first_id }
    }

    /// Seals and returns the entries of `table` with an id of at least
    /// `from` (for the store to write).
    pub fn seal_from(&self, table: Table, from: u64) -> Vec<Entry> {
        let mut q = self.lock(table as usize);
        q.iter_mut()
            .filter(|e| e.id >= from)
            .map(|e| {
                e.sealed = true;
                e.clone()
            })
            .collect()
    }

    /// Runs `f` while `table`'s entries cannot leave memory (a reader that
    /// must see them and the store's entries consistently).
    pub fn with_locked<R>(&self, table: Table, f: impl FnOnce(&VecDeque<Entry>, u64) -> R) -> R {
        let t = table as usize;
        let q = self.lock(t);
        let first_id = q.front().map(|e| e.id).unwrap_or_else(|| self.next_id[t].load(Relaxed));
        f(&q, first_id)
    }

    /// Rows of entries with an id of at least `from`.
    pub fn rows_from(&self, table: Table, from: u64) -> u64 {
        self.lock(table as usize).iter().filter(|e| e.id >= from).map(|e| e.batch.num_rows() as u64).sum()
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

#[cfg(test)]
mod tests {
    use super::*;
    use datafusion::arrow::array::Int64Array;
    use datafusion::arrow::datatypes::{DataType, Field, Schema};
    use std::sync::atomic::AtomicBool;

    fn batch(rows: usize) -> Batch {
        let schema = Arc::new(Schema::new(vec![Field::new("v", DataType::Int64, false)]));
        let values = Int64Array::from_iter_values(0..rows as i64);
        Batch { batch: RecordBatch::try_new(schema, vec![Arc::new(values)]).unwrap(), min_ts: 0, max_ts: 0 }
    }

    /// A reader on another thread never sees more bytes held than the cap,
    /// not even while a batch goes in and an old one goes out.
    #[test]
    fn bytes_held_never_pass_the_cap() {
        let one = batch(COMPACT_MIN_ROWS).batch.get_array_memory_size();
        let cap = one * 10 + one / 2;
        let history = Arc::new(History::new(i64::MAX, cap, Arc::new(Stats::default())));
        let done = Arc::new(AtomicBool::new(false));
        let reader = {
            let (history, done) = (history.clone(), done.clone());
            std::thread::spawn(move || {
                let (mut max, mut reads) = (0, 0u64);
                while !done.load(Relaxed) || reads == 0 {
                    max = max.max(history.used_bytes());
                    reads += 1;
                }
                max
            })
        };
        for _ in 0..20_000 {
            history.insert(Table::Opens, batch(COMPACT_MIN_ROWS));
        }
        done.store(true, Relaxed);
        let max = reader.join().unwrap();
        assert!(max <= cap, "{max} bytes held, cap {cap}");
        assert_eq!(history.usage(Table::Opens).rows, 10 * COMPACT_MIN_ROWS as u64);
        assert!(history.used_bytes() <= cap);
    }
}
