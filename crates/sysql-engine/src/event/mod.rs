//! Arrow builders for each event table: one file per table, each holding its
//! column list (see [`columns`]) next to the code that fills it.

#[macro_use]
pub mod columns;
pub mod accepts;
pub mod connect_outcome;
pub mod connects;
pub mod db_queries;
pub mod dns_queries;
pub mod execs;
pub mod exits;
pub mod http_requests;
pub mod opens;

use crate::containers::Containers;

use columns::{ColumnDef, Kind};
use datafusion::arrow::array::{ArrayRef, StringBuilder, StringViewBuilder};
use datafusion::arrow::datatypes::{DataType, Field, Schema, SchemaRef};
use datafusion::arrow::record_batch::RecordBatch;
use std::borrow::Cow;
use std::sync::Arc;
use sysql_events::{Header, Table};

/// The timestamp type of every `ts` column: nanoseconds, UTC.
pub fn ts_type() -> DataType {
    Kind::Ts.data_type()
}

columns! {
    /// The columns every event table starts with.
    pub struct CommonColumns {
        ts: Ts, not null, "when the syscall was entered, UTC wall clock";
        pid: UInt32, not null, "process id (thread group id), initial PID namespace";
        tid: UInt32, not null, "thread id";
        ppid: UInt32, not null, "parent process id";
        uid: UInt32, not null, "real user id";
        gid: UInt32, not null, "real group id";
        comm: Utf8View, not null, "command name (15 bytes at most); for `execs`, the new program's";
        cgroup_id: UInt64, not null, "cgroup v2 id of the task: the key for container attribution";
        container_id: Utf8, null, "the container the task ran in (64 hex characters, from its cgroup: see [containers](tables/containers.md)); `NULL` outside containers";
    }
}

/// The columns every event table starts with, as fields.
pub fn common_fields() -> Vec<Field> {
    CommonColumns::COLUMNS.iter().map(ColumnDef::field).collect()
}

/// One event table: what a row is, and its own columns (after the common ones).
#[derive(Debug, Clone, Copy)]
pub struct TableDef {
    pub table: Table,
    /// What one row is, for `docs/tables.md` and `\dt+`.
    pub doc: &'static str,
    pub columns: &'static [ColumnDef],
}

impl TableDef {
    /// Every column: the common ones, then the table's own.
    pub fn all_columns(&self) -> impl Iterator<Item = &'static ColumnDef> {
        CommonColumns::COLUMNS.iter().chain(self.columns)
    }

    pub fn schema(&self) -> SchemaRef {
        Arc::new(Schema::new(self.all_columns().map(ColumnDef::field).collect::<Vec<_>>()))
    }
}

/// The definition of each event table. Exhaustive: a new [`Table`] does not
/// compile until it has one.
pub fn table_def(table: Table) -> TableDef {
    let (doc, columns) = match table {
        Table::Opens => ("`open`, `openat`, `openat2` or `creat` call, failed ones too", opens::OpensColumns::COLUMNS),
        Table::Connects => ("`connect` call, failed ones too", connects::ConnectsColumns::COLUMNS),
        Table::Execs => ("`execve` or `execveat` call, failed ones too", execs::ExecsColumns::COLUMNS),
        Table::HttpRequests => {
            ("HTTP/1.x request seen on a socket, with its response", http_requests::HttpColumns::COLUMNS)
        }
        Table::DbQueries => {
            ("PostgreSQL or MySQL statement seen on a socket, with its outcome", db_queries::DbColumns::COLUMNS)
        }
        Table::DnsQueries => ("DNS question over UDP port 53, with its answer", dns_queries::DnsColumns::COLUMNS),
        Table::Accepts => ("`accept` or `accept4` call, failed ones too", accepts::AcceptsColumns::COLUMNS),
        Table::Exits => ("process that ended (its last thread exited)", exits::ExitsColumns::COLUMNS),
    };
    TableDef { table, doc, columns }
}

/// The schema of an event table.
pub fn schema(table: Table) -> SchemaRef {
    table_def(table).schema()
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

/// Appends a value or NULL.
pub fn append_opt<T: AsRef<str>>(b: &mut StringBuilder, v: Option<T>) {
    match v {
        Some(v) => b.append_value(v),
        None => b.append_null(),
    }
}

/// Builders for the common columns, and the time range of their rows.
pub struct Common {
    cols: CommonColumns,
    rows: usize,
    min_ts: i64,
    max_ts: i64,
    /// Where container ids come from; `None`: all NULL.
    containers: Option<Arc<Containers>>,
    /// The last cgroup looked up and its container: most events in a row
    /// come from one cgroup, so most rows skip the lookup.
    last_cgroup: Option<(u64, Option<Arc<str>>)>,
}

impl Common {
    pub fn with_capacity(rows: usize) -> Self {
        Common {
            cols: CommonColumns::new(rows),
            rows: 0,
            min_ts: i64::MAX,
            max_ts: i64::MIN,
            containers: None,
            last_cgroup: None,
        }
    }

    /// Fills `container_id` from these cgroups.
    pub fn attribute(&mut self, containers: Arc<Containers>) {
        self.containers = Some(containers);
        self.last_cgroup = None;
    }

    /// Appends the header's columns; `clock_offset_ns` turns the kernel's
    /// boot-time clock into UTC wall-clock time.
    pub fn append(&mut self, h: &Header, clock_offset_ns: i64) {
        let ts = (h.ts_boot_ns as i64).saturating_add(clock_offset_ns);
        self.min_ts = self.min_ts.min(ts);
        self.max_ts = self.max_ts.max(ts);
        let c = &mut self.cols;
        c.ts.append_value(ts);
        c.pid.append_value(h.pid);
        c.tid.append_value(h.tid);
        c.ppid.append_value(h.ppid);
        c.uid.append_value(h.uid);
        c.gid.append_value(h.gid);
        c.comm.append_value(text(h.comm()));
        c.cgroup_id.append_value(h.cgroup_id);
        match (&self.containers, &self.last_cgroup) {
            (None, _) => c.container_id.append_null(),
            (Some(_), Some((id, value))) if *id == h.cgroup_id => c.container_id.append_option(value.as_deref()),
            (Some(containers), _) => {
                let (value, settled) = containers.container_id(h.cgroup_id, h.pid);
                c.container_id.append_option(value.as_deref());
                // a cgroup not found yet is asked about again (a walk may find it)
                self.last_cgroup = settled.then_some((h.cgroup_id, value));
            }
        }
        self.rows += 1;
    }

    pub fn len(&self) -> usize {
        self.rows
    }

    pub fn is_empty(&self) -> bool {
        self.rows == 0
    }

    /// The arrays, and the min and max ts of the rows, resetting the builders.
    pub fn finish(&mut self) -> (Vec<ArrayRef>, i64, i64) {
        let bounds = (self.min_ts, self.max_ts);
        self.min_ts = i64::MAX;
        self.max_ts = i64::MIN;
        let arrays = self.cols.finish(self.rows);
        self.rows = 0;
        (arrays, bounds.0, bounds.1)
    }

    /// Finishes a table's batch: these common columns, then `own`.
    pub fn batch(&mut self, schema: &SchemaRef, own: Vec<ArrayRef>) -> Batch {
        let (mut arrays, min_ts, max_ts) = self.finish();
        arrays.extend(own);
        let batch = RecordBatch::try_new(schema.clone(), arrays)
            .unwrap_or_else(|e| panic!("a table's builders disagree with its column list: {e}"));
        Batch { batch, min_ts, max_ts }
    }
}

/// A finished batch with the time range it covers.
#[derive(Debug, Clone)]
pub struct Batch {
    pub batch: RecordBatch,
    pub min_ts: i64,
    pub max_ts: i64,
}

/// Appends an IP endpoint as an address column and a port column (NULLs
/// when there is none).
pub fn append_endpoint(
    addr: &mut StringBuilder,
    port: &mut datafusion::arrow::array::UInt16Builder,
    endpoint: Option<(std::net::IpAddr, u16)>,
) {
    use std::fmt::Write;
    match endpoint {
        Some((ip, p)) => {
            let _ = write!(addr, "{ip}");
            addr.append_value("");
            port.append_value(p);
        }
        None => {
            addr.append_null();
            port.append_null();
        }
    }
}
