//! The `http_requests` table: HTTP/1.x exchanges seen on sockets, one row per
//! request, with its response when seen (see `crate::payload::http`).

use super::rows::{bools, endpoint, i32s, i64s, text, u16s, u64s};
use super::{common_fields, PayloadRow, RowsBuilder};
use crate::payload::HttpRow;
use datafusion::arrow::array::ArrayRef;
use datafusion::arrow::datatypes::{DataType, Field, Schema, SchemaRef};
use std::sync::Arc;
use sysql_events::Header;

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

pub type HttpRequestsBuilder = RowsBuilder<HttpRow>;

impl PayloadRow for HttpRow {
    fn schema() -> SchemaRef {
        schema()
    }

    fn header(&self) -> &Header {
        &self.meta.header
    }

    fn truncated(&self) -> bool {
        self.truncated
    }

    fn columns(r: &[Self]) -> Vec<ArrayRef> {
        let [local_addr, local_port] = endpoint(r, |x| x.meta.local);
        let [remote_addr, remote_port] = endpoint(r, |x| x.meta.remote);
        vec![
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
        ]
    }
}
