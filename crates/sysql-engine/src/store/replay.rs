//! Live tables over a recording: a statement's live scans subscribe to a
//! hub of their own, which this replays the recording into, in event time.
//!
//! A table's files are read in the order of their oldest row, and each
//! table's watermark moves to just below the oldest row of its next file
//! (no later file holds an older row), so windows and joins see every row
//! once, in `ts` order, and give the rows they gave live. The tables are
//! read in step (always the one whose next file is oldest), so a join's
//! state stays as bounded as it was live. Without a pace, batches go as
//! fast as the statement takes them (the replay waits for room rather than
//! drop); with a pace of 1 they go at the recorded pace (2: twice as fast).
//! When the recording is read, the subscriptions end, and so does the
//! statement.

use super::Store;
use crate::live::LiveHub;
use std::sync::Arc;
use std::time::{Duration, Instant};
use sysql_events::Table;

/// Replays `store` into `hub` for the tables that have subscribers.
pub async fn run(store: Arc<Store>, hub: Arc<LiveHub>, pace: Option<f64>) {
    let tables: Vec<Table> = Table::ALL.into_iter().filter(|t| hub.subscribers(*t) > 0).collect();
    // each table's files, oldest first, with the row groups to read
    let mut queues: Vec<(Table, std::collections::VecDeque<_>)> = tables
        .iter()
        .map(|&t| {
            let mut files = store.snapshot(t, i64::MIN, i64::MAX, u64::MAX).files;
            files.sort_by_key(|(f, _)| f.min_ts);
            (t, files.into_iter().collect())
        })
        .collect();
    let origin = queues.iter().filter_map(|(_, q)| q.front().map(|(f, _)| f.min_ts)).min();
    let started = Instant::now();
    // the table whose next file is oldest, until none has files left
    while let Some(i) = (0..queues.len())
        .filter(|&i| !queues[i].1.is_empty())
        .min_by_key(|&i| queues[i].1.front().map(|(f, _)| f.min_ts))
    {
        let table = queues[i].0;
        let (file, groups) = queues[i].1.pop_front().expect("not empty");
        let schema = crate::event::schema(table);
        let path = file.path.clone();
        let read = tokio::task::spawn_blocking(move || -> std::io::Result<Vec<_>> {
            super::read::read_file(&path, &schema, None, groups)?
                .collect::<Result<Vec<_>, _>>()
                .map_err(std::io::Error::other)
        })
        .await;
        let batches = match read {
            Ok(Ok(batches)) => batches,
            _ => Vec::new(), // an unreadable file: skipped
        };
        for batch in batches {
            if batch.num_rows() == 0 {
                continue;
            }
            let ts = batch.column(0).as_any().downcast_ref::<datafusion::arrow::array::TimestampNanosecondArray>().map(
                |a| (a.values().iter().copied().min().unwrap_or(0), a.values().iter().copied().max().unwrap_or(0)),
            );
            let Some((min_ts, max_ts)) = ts else { continue };
            if let (Some(pace), Some(origin)) = (pace.filter(|p| *p > 0.0), origin) {
                let due = Duration::from_secs_f64(((min_ts - origin).max(0) as f64 / 1e9) / pace);
                if let Some(wait) = due.checked_sub(started.elapsed()) {
                    tokio::time::sleep(wait).await;
                }
            }
            // wait for room: a replay never drops rows
            while hub.room(table) < 2 {
                if hub.subscribers(table) == 0 {
                    return;
                }
                tokio::time::sleep(Duration::from_millis(1)).await;
            }
            hub.publish(table, &crate::event::Batch { batch, min_ts, max_ts });
        }
        // nothing older than this table's next file is to come
        let next = queues[i].1.front().map(|(f, _)| f.min_ts.saturating_sub(1)).unwrap_or(i64::MAX / 2);
        hub.advance_table(table, next);
        if tables.iter().all(|t| hub.subscribers(*t) == 0) {
            return;
        }
    }
    for &t in &tables {
        hub.advance_table(t, i64::MAX / 2);
    }
    // Subscribers still get what is queued, then their streams end.
    hub.close();
}
