//! Counters behind the `sysql_stats` table: every event captured, lost,
//! garbled, truncated or evicted is counted here.

use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use sysql_events::{Table, TABLE_COUNT};

/// Counters of one table, since start.
#[derive(Debug, Default)]
pub struct TableStats {
    /// Events decoded into the table.
    pub captured: AtomicU64,
    /// Events the kernel could not put in the ring buffer (from the per-CPU
    /// counters of the kernel programs).
    pub lost_kernel: AtomicU64,
    /// Events dropped in user space (a live consumer that fell behind).
    pub lost_user: AtomicU64,
    /// Records that could not be decoded.
    pub decode_errors: AtomicU64,
    /// Events with a truncated field (path, argv, address).
    pub truncated: AtomicU64,
    /// Events evicted from history by the memory cap (not by age).
    pub evicted: AtomicU64,
    /// Events expired from history by age.
    pub expired: AtomicU64,
    /// Events that reached the live reorder buffer after the watermark had
    /// passed them: left out of ordered live streams (still in history).
    pub late: AtomicU64,
    /// Events the capture filter skipped in the kernel (from the kernel
    /// programs' per-CPU counters).
    pub filtered_kernel: AtomicU64,
}

/// All counters.
#[derive(Debug, Default)]
pub struct Stats {
    tables: [TableStats; TABLE_COUNT],
    /// Records whose kind was unknown or too short to have one.
    pub unknown_records: AtomicU64,
    /// The capture filter, as one line, for each table it can skip events
    /// of (`None`: the table's capture is whole).
    kernel_filter: FilterLines,
    /// The filter the kernel applies now: the capture filter, narrowed
    /// while live queries narrow it (history off).
    kernel_filter_now: FilterLines,
}

impl Stats {
    pub fn table(&self, t: Table) -> &TableStats {
        &self.tables[t as usize]
    }

    /// Stores the kernel's loss counters (they are totals, not increments).
    pub fn set_kernel_lost(&self, lost: [u64; TABLE_COUNT]) {
        for (t, n) in self.tables.iter().zip(lost) {
            t.lost_kernel.store(n, Relaxed);
        }
    }

    /// Stores the kernel's filter counters (totals).
    pub fn set_kernel_filtered(&self, filtered: [u64; TABLE_COUNT]) {
        for (t, n) in self.tables.iter().zip(filtered) {
            t.filtered_kernel.store(n, Relaxed);
        }
    }

    /// Records the capture filter of each table (one line; `None`: the
    /// table's capture is whole).
    pub fn set_kernel_filter(&self, per_table: [Option<String>; TABLE_COUNT]) {
        set_lines(&self.kernel_filter, per_table.clone());
        set_lines(&self.kernel_filter_now, per_table);
    }

    /// Records the filter the kernel applies now, each table's (see
    /// [`crate::capture_need`]).
    pub fn set_kernel_filter_now(&self, per_table: [Option<String>; TABLE_COUNT]) {
        set_lines(&self.kernel_filter_now, per_table);
    }

    /// The capture filter of table `t`, if its capture is filtered.
    pub fn kernel_filter(&self, t: Table) -> Option<std::sync::Arc<str>> {
        self.kernel_filter.read().unwrap_or_else(|e| e.into_inner())[t as usize].clone()
    }

    /// The filter the kernel applies to table `t` now, if any.
    pub fn kernel_filter_now(&self, t: Table) -> Option<std::sync::Arc<str>> {
        self.kernel_filter_now.read().unwrap_or_else(|e| e.into_inner())[t as usize].clone()
    }

    /// Events lost anywhere, all tables.
    pub fn total_lost(&self) -> u64 {
        self.tables.iter().map(|t| t.lost_kernel.load(Relaxed) + t.lost_user.load(Relaxed)).sum()
    }

    /// Events captured, all tables.
    pub fn total_captured(&self) -> u64 {
        self.tables.iter().map(|t| t.captured.load(Relaxed)).sum()
    }
}

type FilterLines = std::sync::RwLock<[Option<std::sync::Arc<str>>; TABLE_COUNT]>;

fn set_lines(lines: &FilterLines, per_table: [Option<String>; TABLE_COUNT]) {
    let mut f = lines.write().unwrap_or_else(|e| e.into_inner());
    for (slot, line) in f.iter_mut().zip(per_table) {
        *slot = line.filter(|l| !l.is_empty()).map(Into::into);
    }
}
