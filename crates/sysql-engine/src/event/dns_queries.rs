//! The `dns_queries` table: DNS questions over UDP and their answers (see
//! `crate::payload::dns`).

use super::rows::{endpoint, i32s, i64s, text, u16s};
use super::{common_fields, Batch, Common};
use crate::payload::{DnsRow, Role};
use datafusion::arrow::array::ArrayRef;
use datafusion::arrow::datatypes::{DataType, Field, Schema, SchemaRef};
use datafusion::arrow::record_batch::RecordBatch;
use std::sync::Arc;

pub fn schema() -> SchemaRef {
    let mut fields = common_fields();
    fields.extend([
        Field::new("fd", DataType::Int32, false),
        Field::new("role", DataType::Utf8, false),
        Field::new("server_addr", DataType::Utf8, true),
        Field::new("server_port", DataType::UInt16, true),
        Field::new("id", DataType::UInt16, false),
        Field::new("name", DataType::Utf8, false),
        Field::new("type", DataType::Utf8, false),
        Field::new("rcode", DataType::Utf8, true),
        Field::new("answers", DataType::Utf8, true),
        Field::new("latency_ns", DataType::Int64, true),
    ]);
    Arc::new(Schema::new(fields))
}

pub struct DnsQueriesBuilder {
    schema: SchemaRef,
    common: Common,
    rows: Vec<DnsRow>,
}

impl DnsQueriesBuilder {
    pub fn new() -> Self {
        DnsQueriesBuilder { schema: schema(), common: Common::with_capacity(16), rows: Vec::new() }
    }

    pub fn append(&mut self, row: DnsRow, clock_offset_ns: i64) -> bool {
        self.common.append(&row.meta.header, clock_offset_ns);
        self.rows.push(row);
        false
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
        let server = |x: &DnsRow| if x.role == Role::Server { x.meta.local } else { x.meta.remote };
        let [server_addr, server_port] = endpoint(r, server);
        arrays.extend::<[ArrayRef; 10]>([
            i32s(r, |x| x.meta.fd),
            text(r, |x| Some(x.role.name())),
            server_addr,
            server_port,
            u16s(r, |x| Some(x.id)),
            text(r, |x| Some(x.name.as_str())),
            text(r, |x| Some(x.qtype.as_str())),
            text(r, |x| x.rcode.as_deref()),
            text(r, |x| x.answers.as_deref()),
            i64s(r, |x| x.latency_ns),
        ]);
        let batch = RecordBatch::try_new(self.schema.clone(), arrays).expect("dns_queries schema matches its builder");
        Batch { batch, min_ts, max_ts }
    }
}

impl Default for DnsQueriesBuilder {
    fn default() -> Self {
        Self::new()
    }
}
