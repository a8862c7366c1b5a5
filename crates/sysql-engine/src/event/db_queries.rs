//! The `db_queries` table: PostgreSQL and MySQL statements seen on sockets,
//! one row per statement, with its outcome when seen (see
//! `crate::payload::pgsql` and `crate::payload::mysql`).

use super::{append_endpoint, append_opt, Batch, Common};
use crate::payload::{DbRow, Role};
use datafusion::arrow::datatypes::SchemaRef;
use sysql_events::Table;

columns! {
    /// The columns of `db_queries` after the common ones.
    pub struct DbColumns {
        fd: Int32, not null, "the socket fd in the process";
        role: Utf8, not null, "`server` (the database received the statement) or `client` (the process sent it)";
        protocol: Utf8, not null, "`postgres` or `mysql`";
        client_addr: Utf8, null, "the client's IP address; `NULL` over unix sockets";
        client_port: UInt16, null, "the client's port";
        server_addr: Utf8, null, "the database's IP address";
        server_port: UInt16, null, "the database's port";
        user: Utf8, null, "user name, when the connection's start was seen";
        database: Utf8, null, "database name, when the connection's start was seen";
        query: Utf8, not null, "statement text (literals as `?` with `--redact-payload`)";
        outcome: Utf8, null, "`ok` or `error`; `NULL` if no response was seen within 10 s";
        error: Utf8, null, "the server's error message";
        tag: Utf8, null, "command tag (`SELECT 3`, `INSERT 0 1`); MySQL: `OK <affected rows>` or `RESULTSET`";
        latency_ns: Int64, null, "from the statement to its completion (for a result larger than `--snap-len`, to its last bytes seen)";
        truncated: Boolean, not null, "the statement was longer than `--snap-len`: `query` holds its start";
    }
}

pub struct DbQueriesBuilder {
    schema: SchemaRef,
    common: Common,
    cols: DbColumns,
}

impl DbQueriesBuilder {
    pub fn new() -> Self {
        DbQueriesBuilder {
            schema: super::schema(Table::DbQueries),
            common: Common::with_capacity(16),
            cols: DbColumns::new(16),
        }
    }

    /// Appends one row. Returns true if its statement was cut short.
    pub fn append(&mut self, r: DbRow, clock_offset_ns: i64) -> bool {
        self.common.append(&r.meta.header, clock_offset_ns);
        let c = &mut self.cols;
        // The client is the remote end for a server, the local end for a client.
        let (client, server) =
            if r.role == Role::Server { (r.meta.remote, r.meta.local) } else { (r.meta.local, r.meta.remote) };
        c.fd.append_value(r.meta.fd);
        c.role.append_value(r.role.name());
        c.protocol.append_value(r.protocol);
        append_endpoint(&mut c.client_addr, &mut c.client_port, client);
        append_endpoint(&mut c.server_addr, &mut c.server_port, server);
        append_opt(&mut c.user, r.user.as_deref());
        append_opt(&mut c.database, r.database.as_deref());
        c.query.append_value(&r.query);
        append_opt(&mut c.outcome, r.outcome);
        append_opt(&mut c.error, r.error.as_deref());
        append_opt(&mut c.tag, r.tag.as_deref());
        c.latency_ns.append_option(r.latency_ns);
        c.truncated.append_value(r.truncated);
        r.truncated
    }

    /// Fills `container_id` from these cgroups.
    pub fn attribute(&mut self, containers: std::sync::Arc<crate::containers::Containers>) {
        self.common.attribute(containers);
    }

    pub fn len(&self) -> usize {
        self.common.len()
    }

    pub fn is_empty(&self) -> bool {
        self.common.is_empty()
    }

    pub fn finish(&mut self) -> Batch {
        let own = self.cols.finish(self.len());
        self.common.batch(&self.schema, own)
    }
}

impl Default for DbQueriesBuilder {
    fn default() -> Self {
        Self::new()
    }
}
