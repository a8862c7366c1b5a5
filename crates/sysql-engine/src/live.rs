//! Live streams: every batch the writer flushes, handed to subscribers.
//!
//! Two kinds of subscription. *Raw* subscribers get batches as soon as they
//! are flushed, in arrival order: right for filters and projections, where
//! order does not matter and latency does. *Ordered* subscribers get rows in
//! `ts` order through a reorder buffer: rows are held until the watermark
//! (`now - lateness`, advanced by the wall clock, so an idle source still
//! moves it) passes them, then released sorted. A row that arrives with a
//! `ts` at or below a watermark already released is late: it is counted in
//! `sysql_stats.late` and left out of the ordered stream (it is still in
//! history), never put in a window that was already emitted.
//!
//! A subscriber that falls behind by more than its channel's bound loses the
//! batch; its rows are counted in `lost_user`.

use crate::event::Batch;
use crate::stats::Stats;
use datafusion::arrow::array::{Array, Scalar, TimestampNanosecondArray};
use datafusion::arrow::compute::kernels::cmp::{gt, lt_eq};
use datafusion::arrow::compute::{concat_batches, filter_record_batch, sort_to_indices, take_record_batch};
use datafusion::arrow::record_batch::RecordBatch;
use std::sync::atomic::Ordering::Relaxed;
use std::sync::{Arc, Mutex};
use sysql_events::{Table, TABLE_COUNT};
use tokio::sync::mpsc;

/// Batches a subscriber may fall behind by before it loses one.
const CHANNEL_BATCHES: usize = 1024;

/// What a live subscriber receives.
#[derive(Debug, Clone)]
pub enum LiveItem {
    /// Rows (in `ts` order for ordered subscriptions).
    Rows(RecordBatch),
    /// Ordered subscriptions only: no row with `ts <= watermark` will follow.
    Watermark(i64),
}

#[derive(Default)]
struct TableHub {
    raw: Vec<mpsc::Sender<LiveItem>>,
    ordered: Vec<mpsc::Sender<LiveItem>>,
    /// Rows waiting for the watermark (ordered subscribers only).
    pending: Vec<RecordBatch>,
    watermark: i64,
}

/// Fan-out of flushed batches to live subscribers.
pub struct LiveHub {
    tables: [Mutex<TableHub>; TABLE_COUNT],
    lateness_ns: i64,
    stats: Arc<Stats>,
    /// A replay's hub starts its ordered streams here (the recording's
    /// start), not at the wall clock.
    start_watermark: Option<i64>,
}

impl std::fmt::Debug for LiveHub {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LiveHub").field("lateness_ns", &self.lateness_ns).finish()
    }
}

fn ts_column(batch: &RecordBatch) -> &TimestampNanosecondArray {
    batch
        .column(0)
        .as_any()
        .downcast_ref::<TimestampNanosecondArray>()
        .expect("every event table starts with ts: Timestamp(ns)")
}

/// `v` as a scalar of the same type (and time zone) as `ts`, for comparisons.
fn cut(ts: &TimestampNanosecondArray, v: i64) -> Scalar<TimestampNanosecondArray> {
    Scalar::new(TimestampNanosecondArray::from(vec![v]).with_timezone_opt(ts.timezone().map(str::to_string)))
}

/// Sends to every subscriber; drops closed ones, counts rows a full one lost.
fn fan_out(subs: &mut Vec<mpsc::Sender<LiveItem>>, item: &LiveItem, stats: &Stats, table: Table) {
    let rows = match item {
        LiveItem::Rows(b) => b.num_rows() as u64,
        LiveItem::Watermark(_) => 0,
    };
    subs.retain(|tx| match tx.try_send(item.clone()) {
        Ok(()) => true,
        Err(mpsc::error::TrySendError::Full(_)) => {
            stats.table(table).lost_user.fetch_add(rows, Relaxed);
            true
        }
        Err(mpsc::error::TrySendError::Closed(_)) => false,
    });
}

impl LiveHub {
    pub fn new(lateness_ns: i64, stats: Arc<Stats>) -> Self {
        LiveHub { tables: Default::default(), lateness_ns, stats, start_watermark: None }
    }

    /// A hub for replaying a recording that starts after `start_watermark`:
    /// its watermarks follow the recording's event time.
    pub fn replay(start_watermark: i64, stats: Arc<Stats>) -> Self {
        LiveHub { tables: Default::default(), lateness_ns: 0, stats, start_watermark: Some(start_watermark) }
    }

    /// How many more batches the slowest subscriber of `table` can take
    /// (a replay waits for room instead of dropping).
    pub fn room(&self, table: Table) -> usize {
        let hub = self.lock(table);
        hub.raw
            .iter()
            .chain(&hub.ordered)
            .filter(|tx| !tx.is_closed())
            .map(|tx| tx.capacity())
            .min()
            .unwrap_or(usize::MAX)
    }

    /// Ends every subscription: their streams end (a replay has no more).
    pub fn close(&self) {
        for table in Table::ALL {
            let mut hub = self.lock(table);
            hub.raw.clear();
            hub.ordered.clear();
        }
    }

    /// Moves `table`'s watermark to `wm` (no row at or below it will come),
    /// releasing what it passes: a replay's event-time watermark.
    pub fn advance_table(&self, table: Table, wm: i64) {
        self.advance_held(wm, |t| (t != table).then_some(i64::MIN))
    }

    fn lock(&self, t: Table) -> std::sync::MutexGuard<'_, TableHub> {
        self.tables[t as usize].lock().unwrap_or_else(|e| e.into_inner())
    }

    /// A new subscription to `table`, from now on. Also returns the
    /// watermark the stream starts after: an ordered subscriber gets exactly
    /// the rows with a later `ts` (earlier ones are in history).
    pub fn subscribe(&self, table: Table, ordered: bool, now_ns: i64) -> (mpsc::Receiver<LiveItem>, i64) {
        let (tx, rx) = mpsc::channel(CHANNEL_BATCHES);
        let mut hub = self.lock(table);
        // Subscriptions that ended since the last batch are gone now: with
        // none left, an ordered stream starts from the clock again.
        hub.raw.retain(|tx| !tx.is_closed());
        hub.ordered.retain(|tx| !tx.is_closed());
        if ordered {
            if hub.ordered.is_empty() {
                hub.watermark = self.start_watermark.unwrap_or(now_ns - self.lateness_ns);
            }
            hub.ordered.push(tx);
        } else {
            hub.raw.push(tx);
        }
        (rx, hub.watermark)
    }

    /// How many subscriptions `table` has.
    pub fn subscribers(&self, table: Table) -> usize {
        let hub = self.lock(table);
        hub.raw.iter().chain(&hub.ordered).filter(|tx| !tx.is_closed()).count()
    }

    /// True if anyone listens to `table` (the writer skips the work if not).
    pub fn has_subscribers(&self, table: Table) -> bool {
        let hub = self.lock(table);
        !hub.raw.is_empty() || !hub.ordered.is_empty()
    }

    /// Hands a freshly flushed batch to the subscribers.
    pub fn publish(&self, table: Table, batch: &Batch) {
        let mut hub = self.lock(table);
        if !hub.raw.is_empty() {
            fan_out(&mut hub.raw, &LiveItem::Rows(batch.batch.clone()), &self.stats, table);
        }
        if hub.ordered.is_empty() {
            hub.pending.clear();
            return;
        }
        let b = &batch.batch;
        if batch.min_ts <= hub.watermark {
            // some rows are late: count them, keep the rest
            let ts = ts_column(b);
            let keep = gt(ts, &cut(ts, hub.watermark)).expect("ts comparison");
            let kept = filter_record_batch(b, &keep).expect("filter by ts");
            let late = (b.num_rows() - kept.num_rows()) as u64;
            self.stats.table(table).late.fetch_add(late, Relaxed);
            if kept.num_rows() > 0 {
                hub.pending.push(kept);
            }
        } else {
            hub.pending.push(b.clone());
        }
    }

    /// Moves the watermark to `now - lateness` and releases, in `ts` order,
    /// every pending row at or below it. Call it often (the writer does, on
    /// every poll), even when nothing arrives: that is the heartbeat.
    pub fn advance(&self, now_ns: i64) {
        self.advance_held(now_ns, |_| None)
    }

    /// As [`LiveHub::advance`], but a table's watermark stays below the time
    /// `hold(table)` gives: rows that old may still come (payload tables make
    /// a request's row when its response arrives).
    pub fn advance_held(&self, now_ns: i64, hold: impl Fn(Table) -> Option<i64>) {
        for table in Table::ALL {
            let mut hub = self.lock(table);
            if hub.ordered.is_empty() {
                continue;
            }
            let mut wm = now_ns - self.lateness_ns;
            if let Some(held) = hold(table) {
                wm = wm.min(held.saturating_sub(1));
            }
            if wm <= hub.watermark {
                continue;
            }
            hub.watermark = wm;
            let pending = std::mem::take(&mut hub.pending);
            let mut ready = Vec::new();
            for b in pending {
                let ts = ts_column(&b);
                let cut = cut(ts, wm);
                let due = lt_eq(ts, &cut).expect("ts comparison");
                if due.true_count() == b.num_rows() {
                    ready.push(b);
                } else {
                    if due.true_count() > 0 {
                        ready.push(filter_record_batch(&b, &due).expect("filter"));
                    }
                    let rest = gt(ts, &cut).expect("ts comparison");
                    hub.pending.push(filter_record_batch(&b, &rest).expect("filter"));
                }
            }
            if !ready.is_empty() {
                let schema = ready[0].schema();
                let all = concat_batches(&schema, &ready).expect("same schema");
                let order = sort_to_indices(all.column(0), None, None).expect("sort by ts");
                let sorted = take_record_batch(&all, &order).expect("take");
                fan_out(&mut hub.ordered, &LiveItem::Rows(sorted), &self.stats, table);
            }
            fan_out(&mut hub.ordered, &LiveItem::Watermark(wm), &self.stats, table);
        }
    }
}
