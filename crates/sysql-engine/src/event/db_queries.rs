//! The `db_queries` table: PostgreSQL and MySQL statements seen on sockets,
//! with their outcome (see `crate::payload::pgsql` and `crate::payload::mysql`).

use super::rows::{bools, endpoint, i32s, i64s, text};
use super::{common_fields, Batch, Common};
use crate::payload::{DbRow, Role};
use datafusion::arrow::array::ArrayRef;
use datafusion::arrow::datatypes::{DataType, Field, Schema, SchemaRef};
use datafusion::arrow::record_batch::RecordBatch;
use std::sync::Arc;

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

pub struct DbQueriesBuilder {
    schema: SchemaRef,
    common: Common,
    rows: Vec<DbRow>,
}

impl DbQueriesBuilder {
    pub fn new() -> Self {
        DbQueriesBuilder { schema: schema(), common: Common::with_capacity(16), rows: Vec::new() }
    }

    /// Appends one row. Returns true if its query text was cut short.
    pub fn append(&mut self, row: DbRow, clock_offset_ns: i64) -> bool {
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
        // The client is the remote end for a server, the local end for a client.
        let client = |x: &DbRow| if x.role == Role::Server { x.meta.remote } else { x.meta.local };
        let server = |x: &DbRow| if x.role == Role::Server { x.meta.local } else { x.meta.remote };
        let [client_addr, client_port] = endpoint(r, client);
        let [server_addr, server_port] = endpoint(r, server);
        arrays.extend::<[ArrayRef; 15]>([
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
        ]);
        let batch = RecordBatch::try_new(self.schema.clone(), arrays).expect("db_queries schema matches its builder");
        Batch { batch, min_ts, max_ts }
    }
}

impl Default for DbQueriesBuilder {
    fn default() -> Self {
        Self::new()
    }
}
