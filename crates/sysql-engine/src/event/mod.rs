//! Arrow builders for each event table: one file per table, each holding its
//! schema next to the code that fills it, so the two cannot disagree.

pub mod connects;
pub mod execs;
pub mod opens;

use datafusion::arrow::array::{
    ArrayBuilder, ArrayRef, StringBuilder, TimestampNanosecondBuilder, UInt32Builder, UInt64Builder,
};
use datafusion::arrow::datatypes::{DataType, Field, TimeUnit};
use datafusion::arrow::record_batch::RecordBatch;
use std::borrow::Cow;
use std::sync::Arc;
use sysql_events::Header;

/// The timestamp type of every `ts` column: nanoseconds, UTC.
pub fn ts_type() -> DataType {
    DataType::Timestamp(TimeUnit::Nanosecond, Some("UTC".into()))
}

/// The columns every event table starts with.
pub fn common_fields() -> Vec<Field> {
    vec![
        Field::new("ts", ts_type(), false),
        Field::new("pid", DataType::UInt32, false),
        Field::new("tid", DataType::UInt32, false),
        Field::new("ppid", DataType::UInt32, false),
        Field::new("uid", DataType::UInt32, false),
        Field::new("gid", DataType::UInt32, false),
        Field::new("comm", DataType::Utf8, false),
        Field::new("cgroup_id", DataType::UInt64, false),
    ]
}

/// Text from kernel bytes: borrowed when valid UTF-8 (the usual case, no
/// allocation), with U+FFFD for invalid bytes otherwise.
pub fn text(bytes: &[u8]) -> Cow<'_, str> {
    String::from_utf8_lossy(bytes)
}

/// Builders for the common columns.
pub struct Common {
    ts: TimestampNanosecondBuilder,
    pid: UInt32Builder,
    tid: UInt32Builder,
    ppid: UInt32Builder,
    uid: UInt32Builder,
    gid: UInt32Builder,
    comm: StringBuilder,
    cgroup_id: UInt64Builder,
    min_ts: i64,
    max_ts: i64,
}

impl Common {
    pub fn with_capacity(rows: usize) -> Self {
        Common {
            ts: TimestampNanosecondBuilder::with_capacity(rows).with_timezone("UTC"),
            pid: UInt32Builder::with_capacity(rows),
            tid: UInt32Builder::with_capacity(rows),
            ppid: UInt32Builder::with_capacity(rows),
            uid: UInt32Builder::with_capacity(rows),
            gid: UInt32Builder::with_capacity(rows),
            comm: StringBuilder::with_capacity(rows, rows * 8),
            cgroup_id: UInt64Builder::with_capacity(rows),
            min_ts: i64::MAX,
            max_ts: i64::MIN,
        }
    }

    /// Appends the header's columns; `clock_offset_ns` turns the kernel's
    /// boot-time clock into UTC wall-clock time.
    pub fn append(&mut self, h: &Header, clock_offset_ns: i64) {
        let ts = (h.ts_boot_ns as i64).saturating_add(clock_offset_ns);
        self.min_ts = self.min_ts.min(ts);
        self.max_ts = self.max_ts.max(ts);
        self.ts.append_value(ts);
        self.pid.append_value(h.pid);
        self.tid.append_value(h.tid);
        self.ppid.append_value(h.ppid);
        self.uid.append_value(h.uid);
        self.gid.append_value(h.gid);
        self.comm.append_value(text(h.comm()));
        self.cgroup_id.append_value(h.cgroup_id);
    }

    pub fn len(&self) -> usize {
        self.pid.len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The arrays, and the min and max ts of the rows, resetting the builders.
    pub fn finish(&mut self) -> (Vec<ArrayRef>, i64, i64) {
        let bounds = (self.min_ts, self.max_ts);
        self.min_ts = i64::MAX;
        self.max_ts = i64::MIN;
        let arrays: Vec<ArrayRef> = vec![
            Arc::new(self.ts.finish()),
            Arc::new(self.pid.finish()),
            Arc::new(self.tid.finish()),
            Arc::new(self.ppid.finish()),
            Arc::new(self.uid.finish()),
            Arc::new(self.gid.finish()),
            Arc::new(self.comm.finish()),
            Arc::new(self.cgroup_id.finish()),
        ];
        (arrays, bounds.0, bounds.1)
    }
}

/// A finished batch with the time range it covers.
#[derive(Debug, Clone)]
pub struct Batch {
    pub batch: RecordBatch,
    pub min_ts: i64,
    pub max_ts: i64,
}
