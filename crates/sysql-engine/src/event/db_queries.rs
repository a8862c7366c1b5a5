//! The `db_queries` table: PostgreSQL and MySQL statements seen on sockets,
//! with their outcome (see `crate::payload::pgsql` and `crate::payload::mysql`).

use super::rows::{bools, endpoint, i32s, i64s, text};
use super::{common_fields, PayloadRow, RowsBuilder};
use crate::payload::{DbRow, Role};
use datafusion::arrow::array::ArrayRef;
use datafusion::arrow::datatypes::{DataType, Field, Schema, SchemaRef};
use std::sync::Arc;
use sysql_events::Header;

pub fn schema() -> SchemaRef {
    let mut fields = common_fields();
    fields.extend([
        Field::new("fd", DataType::Int32, false),
        Field::new("role", DataType::Utf8, false),
        Field::new("protocol", DataType::Utf8, false),
        Field::new("client_addr", DataType::Utf8, true),
        Field::new("client_port", DataType::UInt16, true),
        Field::new("server_addr", DataType::Utf8, true),
        Field::new("server_port", DataType::UInt16, true),
        Field::new("user", DataType::Utf8, true),
        Field::new("database", DataType::Utf8, true),
        Field::new("query", DataType::Utf8, false),
        Field::new("outcome", DataType::Utf8, true),
        Field::new("error", DataType::Utf8, true),
        Field::new("tag", DataType::Utf8, true),
        Field::new("latency_ns", DataType::Int64, true),
        Field::new("truncated", DataType::Boolean, false),
    ]);
    Arc::new(Schema::new(fields))
}

pub type DbQueriesBuilder = RowsBuilder<DbRow>;

impl PayloadRow for DbRow {
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
        // The client is the remote end for a server, the local end for a client.
        let client = |x: &DbRow| if x.role == Role::Server { x.meta.remote } else { x.meta.local };
        let server = |x: &DbRow| if x.role == Role::Server { x.meta.local } else { x.meta.remote };
        let [client_addr, client_port] = endpoint(r, client);
        let [server_addr, server_port] = endpoint(r, server);
        vec![
            i32s(r, |x| x.meta.fd),
            text(r, |x| Some(x.role.name())),
            text(r, |x| Some(x.protocol)),
            client_addr,
            client_port,
            server_addr,
            server_port,
            text(r, |x| x.user.as_deref()),
            text(r, |x| x.database.as_deref()),
            text(r, |x| Some(x.query.as_str())),
            text(r, |x| x.outcome),
            text(r, |x| x.error.as_deref()),
            text(r, |x| x.tag.as_deref()),
            i64s(r, |x| x.latency_ns),
            bools(r, |x| x.truncated),
        ]
    }
}
