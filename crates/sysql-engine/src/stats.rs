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
}

/// All counters.
#[derive(Debug, Default)]
pub struct Stats {
    tables: [TableStats; TABLE_COUNT],
    /// Records whose kind was unknown or too short to have one.
    pub unknown_records: AtomicU64,
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

    /// Events lost anywhere, all tables.
    pub fn total_lost(&self) -> u64 {
        self.tables.iter().map(|t| t.lost_kernel.load(Relaxed) + t.lost_user.load(Relaxed)).sum()
    }

    /// Events captured, all tables.
    pub fn total_captured(&self) -> u64 {
        self.tables.iter().map(|t| t.captured.load(Relaxed)).sum()
    }
}
