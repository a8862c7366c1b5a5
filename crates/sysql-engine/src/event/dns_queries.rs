//! The `dns_queries` table: DNS questions over UDP and their answers (see
//! `crate::payload::dns`).

use super::rows::{endpoint, i32s, i64s, text, u16s};
use super::{common_fields, PayloadRow, RowsBuilder};
use crate::payload::{DnsRow, Role};
use datafusion::arrow::array::ArrayRef;
use datafusion::arrow::datatypes::{DataType, Field, Schema, SchemaRef};
use std::sync::Arc;
use sysql_events::Header;

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

pub type DnsQueriesBuilder = RowsBuilder<DnsRow>;

impl PayloadRow for DnsRow {
    fn schema() -> SchemaRef {
        schema()
    }

    fn header(&self) -> &Header {
        &self.meta.header
    }

    fn truncated(&self) -> bool {
        false
    }

    fn columns(r: &[Self]) -> Vec<ArrayRef> {
        let server = |x: &DnsRow| if x.role == Role::Server { x.meta.local } else { x.meta.remote };
        let [server_addr, server_port] = endpoint(r, server);
        vec![
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
        ]
    }
}
