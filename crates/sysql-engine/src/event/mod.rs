//! Arrow builders for each event table: one file per table, each holding its
//! schema next to the code that fills it, so the two cannot disagree.

pub mod connects;
pub mod db_queries;
pub mod dns_queries;
pub mod execs;
pub mod http_requests;
pub mod opens;

use datafusion::arrow::array::{
    ArrayBuilder, ArrayRef, BooleanBuilder, PrimitiveBuilder, StringBuilder, StringViewBuilder,
    TimestampNanosecondBuilder, UInt32Builder, UInt64Builder,
};
use datafusion::arrow::datatypes::ArrowPrimitiveType;
use datafusion::arrow::datatypes::{DataType, Field, SchemaRef, TimeUnit};
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
        Field::new("comm", DataType::Utf8View, false),
        Field::new("cgroup_id", DataType::UInt64, false),
    ]
}

/// Text from kernel bytes: borrowed when valid UTF-8 (the usual case, no
/// allocation), with U+FFFD for invalid bytes otherwise.
pub fn text(bytes: &[u8]) -> Cow<'_, str> {
    // `from_utf8` validates ASCII a word at a time; `from_utf8_lossy` walks
    // chunks and cost a tenth of the writer's time on paths alone.
    match std::str::from_utf8(bytes) {
        Ok(s) => Cow::Borrowed(s),
        Err(_) => String::from_utf8_lossy(bytes),
    }
}

/// Finishes a builder and puts in its place an empty one sized for `rows`
/// rows: a finished Arrow builder starts again from no capacity, and growing
/// it by doubling on every batch copied each column several times.
pub fn finish_prim<T: ArrowPrimitiveType>(b: &mut PrimitiveBuilder<T>, rows: usize) -> ArrayRef {
    let mut old = std::mem::replace(b, PrimitiveBuilder::with_capacity(rows));
    Arc::new(old.finish())
}

/// [`finish_prim`] for strings: the next batch gets room for as many value
/// bytes as this one had, and an eighth more (a batch past its capacity
/// doubles it, and history keeps the capacity).
pub fn finish_str(b: &mut StringBuilder, rows: usize) -> ArrayRef {
    let bytes = b.values_slice().len();
    let bytes = bytes + bytes / 8;
    let mut old = std::mem::replace(b, StringBuilder::with_capacity(rows, bytes));
    Arc::new(old.finish())
}

/// [`finish_prim`] for short strings (names, at most a few bytes past 12):
/// string views keep strings of up to 12 bytes inside the 16-byte view, so
/// an append copies no value bytes, a filter moves views, and a GROUP BY
/// compares them in place.
pub fn finish_view(b: &mut StringViewBuilder, rows: usize) -> ArrayRef {
    let mut old = std::mem::replace(b, StringViewBuilder::with_capacity(rows));
    Arc::new(old.finish())
}

/// Appends the error name of a syscall result (`NULL` on success) to a
/// short-string column, spelling unknown numbers through `scratch`.
pub fn append_errno(b: &mut StringViewBuilder, ret: i64, scratch: &mut String) {
    scratch.clear();
    if crate::names::write_errno(scratch, ret) {
        b.append_value(scratch.as_str());
    } else {
        b.append_null();
    }
}

/// [`finish_prim`] for booleans.
pub fn finish_bool(b: &mut BooleanBuilder, rows: usize) -> ArrayRef {
    let mut old = std::mem::replace(b, BooleanBuilder::with_capacity(rows));
    Arc::new(old.finish())
}

/// Builders for the common columns.
pub struct Common {
    ts: TimestampNanosecondBuilder,
    pid: UInt32Builder,
    tid: UInt32Builder,
    ppid: UInt32Builder,
    uid: UInt32Builder,
    gid: UInt32Builder,
    comm: StringViewBuilder,
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
            comm: StringViewBuilder::with_capacity(rows),
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
        let rows = self.len();
        let ts = TimestampNanosecondBuilder::with_capacity(rows).with_timezone("UTC");
        let arrays: Vec<ArrayRef> = vec![
            Arc::new(std::mem::replace(&mut self.ts, ts).finish()),
            finish_prim(&mut self.pid, rows),
            finish_prim(&mut self.tid, rows),
            finish_prim(&mut self.ppid, rows),
            finish_prim(&mut self.uid, rows),
            finish_prim(&mut self.gid, rows),
            finish_view(&mut self.comm, rows),
            finish_prim(&mut self.cgroup_id, rows),
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

/// A payload table's row: its schema and how a slice of rows becomes the
/// columns after the common ones.
pub trait PayloadRow: Sized {
    fn schema() -> SchemaRef;
    /// Who made the exchange; `ts_boot_ns` is the row's time.
    fn header(&self) -> &Header;
    /// Whether the captured message was cut short.
    fn truncated(&self) -> bool;
    fn columns(rows: &[Self]) -> Vec<ArrayRef>;
}

/// The builder of a payload table: rows are kept whole until the batch is
/// finished (they are few, made once per exchange).
pub struct RowsBuilder<R> {
    schema: SchemaRef,
    common: Common,
    rows: Vec<R>,
}

impl<R: PayloadRow> RowsBuilder<R> {
    pub fn new() -> Self {
        RowsBuilder { schema: R::schema(), common: Common::with_capacity(16), rows: Vec::new() }
    }

    /// Appends one row. Returns true if its message was cut short.
    pub fn append(&mut self, row: R, clock_offset_ns: i64) -> bool {
        self.common.append(row.header(), clock_offset_ns);
        let truncated = row.truncated();
        self.rows.push(row);
        truncated
    }

    pub fn len(&self) -> usize {
        self.rows.len()
    }

    pub fn is_empty(&self) -> bool {
        self.rows.is_empty()
    }

    pub fn finish(&mut self) -> Batch {
        let (mut arrays, min_ts, max_ts) = self.common.finish();
        arrays.extend(R::columns(&std::mem::take(&mut self.rows)));
        let batch = RecordBatch::try_new(self.schema.clone(), arrays).expect("payload schema matches its columns");
        Batch { batch, min_ts, max_ts }
    }
}

impl<R: PayloadRow> Default for RowsBuilder<R> {
    fn default() -> Self {
        Self::new()
    }
}

/// Columns built from whole rows (see [`RowsBuilder`]).
pub(crate) mod rows {
    use datafusion::arrow::array::{
        ArrayRef, BooleanArray, Int32Array, Int64Array, StringArray, UInt16Array, UInt64Array,
    };
    use std::net::IpAddr;
    use std::sync::Arc;

    pub fn text<'a, T: 'a>(rows: &'a [T], f: impl Fn(&'a T) -> Option<&'a str>) -> ArrayRef {
        Arc::new(rows.iter().map(f).collect::<StringArray>())
    }

    pub fn u16s<T>(rows: &[T], f: impl Fn(&T) -> Option<u16>) -> ArrayRef {
        Arc::new(rows.iter().map(f).collect::<UInt16Array>())
    }

    pub fn u64s<T>(rows: &[T], f: impl Fn(&T) -> Option<u64>) -> ArrayRef {
        Arc::new(rows.iter().map(f).collect::<UInt64Array>())
    }

    pub fn i64s<T>(rows: &[T], f: impl Fn(&T) -> Option<i64>) -> ArrayRef {
        Arc::new(rows.iter().map(f).collect::<Int64Array>())
    }

    pub fn i32s<T>(rows: &[T], f: impl Fn(&T) -> i32) -> ArrayRef {
        Arc::new(rows.iter().map(|r| Some(f(r))).collect::<Int32Array>())
    }

    pub fn bools<T>(rows: &[T], f: impl Fn(&T) -> bool) -> ArrayRef {
        Arc::new(rows.iter().map(|r| Some(f(r))).collect::<BooleanArray>())
    }

    /// An address column and its port column.
    pub fn endpoint<T>(rows: &[T], f: impl Fn(&T) -> Option<(IpAddr, u16)>) -> [ArrayRef; 2] {
        use std::fmt::Write;
        let mut addrs = datafusion::arrow::array::StringBuilder::with_capacity(rows.len(), rows.len() * 10);
        for r in rows {
            match f(r) {
                Some((ip, _)) => {
                    let _ = write!(addrs, "{ip}");
                    addrs.append_value("");
                }
                None => addrs.append_null(),
            }
        }
        [Arc::new(addrs.finish()), u16s(rows, |r| f(r).map(|(_, p)| p))]
    }
}
