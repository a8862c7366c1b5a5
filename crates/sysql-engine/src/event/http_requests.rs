//! The `http_requests` table: HTTP/1.x exchanges seen on sockets, one row per
//! request, with its response when seen (see `crate::payload::http`).

use super::rows::{bools, endpoint, i32s, i64s, text, u16s, u64s};
use super::{common_fields, Batch, Common};
use crate::payload::HttpRow;
use datafusion::arrow::array::ArrayRef;
use datafusion::arrow::datatypes::{DataType, Field, Schema, SchemaRef};
use datafusion::arrow::record_batch::RecordBatch;
use std::sync::Arc;

pub fn schema() -> SchemaRef {
    let mut fields = common_fields();
    fields.extend([
        Field::new("fd", DataType::Int32, false),
        Field::new("role", DataType::Utf8, false),
        Field::new("local_addr", DataType::Utf8, true),
        Field::new("local_port", DataType::UInt16, true),
        Field::new("remote_addr", DataType::Utf8, true),
        Field::new("remote_port", DataType::UInt16, true),
        Field::new("method", DataType::Utf8, false),
        Field::new("path", DataType::Utf8, false),
        Field::new("version", DataType::Utf8, true),
        Field::new("host", DataType::Utf8, true),
        Field::new("user_agent", DataType::Utf8, true),
        Field::new("status", DataType::UInt16, true),
        Field::new("latency_ns", DataType::Int64, true),
        Field::new("request_bytes", DataType::UInt64, false),
        Field::new("response_bytes", DataType::UInt64, true),
        Field::new("truncated", DataType::Boolean, false),
    ]);
    Arc::new(Schema::new(fields))
}

pub struct HttpRequestsBuilder {
    schema: SchemaRef,
    common: Common,
    rows: Vec<HttpRow>,
}

impl HttpRequestsBuilder {
    pub fn new() -> Self {
        HttpRequestsBuilder { schema: schema(), common: Common::with_capacity(16), rows: Vec::new() }
    }

    /// Appends one row. Returns true if its head was cut short.
    pub fn append(&mut self, row: HttpRow, clock_offset_ns: i64) -> bool {
        self.common.append(&row.meta.header, clock_offset_ns);
        let truncated = row.truncated;
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
        let rows = std::mem::take(&mut self.rows);
        let r = &rows[..];
        let [local_addr, local_port] = endpoint(r, |x| x.meta.local);
        let [remote_addr, remote_port] = endpoint(r, |x| x.meta.remote);
        arrays.extend::<[ArrayRef; 16]>([
            i32s(r, |x| x.meta.fd),
            text(r, |x| Some(x.role.name())),
            local_addr,
            local_port,
            remote_addr,
            remote_port,
            text(r, |x| Some(x.method.as_str())),
            text(r, |x| Some(x.path.as_str())),
            text(r, |x| {
                x.version.map(|v| match v {
                    0 => "HTTP/1.0",
                    _ => "HTTP/1.1",
                })
            }),
            text(r, |x| x.host.as_deref()),
            text(r, |x| x.user_agent.as_deref()),
            u16s(r, |x| x.status),
            i64s(r, |x| x.latency_ns),
            u64s(r, |x| Some(x.request_bytes)),
            u64s(r, |x| x.response_bytes),
            bools(r, |x| x.truncated),
        ]);
        let batch =
            RecordBatch::try_new(self.schema.clone(), arrays).expect("http_requests schema matches its builder");
        Batch { batch, min_ts, max_ts }
    }
}

impl Default for HttpRequestsBuilder {
    fn default() -> Self {
        Self::new()
    }
}
