//! The fleet: one SQL statement over many hosts, on `datafusion-distributed`.
//!
//! Every agent can be a *worker* ([`worker`]): it serves, on TCP with mutual
//! TLS, the worker side of the distributed engine, and runs only plans made
//! of an allow-list of nodes over its own tables ([`allow`]). `sysql fleet`
//! is the *coordinator* ([`coordinator`]): its tables are the union of the
//! hosts' tables with a `host` column first; a scan of one of them is a
//! [`scan::HostScanExec`], split into one task per host, each routed to its
//! host, where it becomes a [`scan::LocalScanExec`] over that host's history
//! (memory and disk). Filters, projections, partial aggregates, sorts and
//! limits run in the same task; the final aggregate and merge run on the
//! coordinator.

pub mod allow;
pub mod coordinator;
pub mod report;
pub mod scan;
pub mod tls;
pub mod worker;

use datafusion::arrow::datatypes::{DataType, Field, Schema, SchemaRef};
use std::sync::Arc;
use sysql_events::Table;

/// The column every fleet table has first.
pub const HOST_COLUMN: &str = "host";

/// The tables a fleet serves: every event table (history, not `live.*`).
pub fn tables() -> Vec<(Table, SchemaRef)> {
    sysql_engine::event_tables().into_iter().collect()
}

/// What a table's own `host` column (the HTTP `Host` header of
/// `http_requests`) is called in the fleet, where `host` names the host.
pub const RENAMED_HOST_COLUMN: &str = "http_host";

/// A table's schema with the `host` column first (the table's own `host`
/// column, if it has one, renamed [`RENAMED_HOST_COLUMN`]).
pub fn fleet_schema(table: &SchemaRef) -> SchemaRef {
    let mut fields = vec![Arc::new(Field::new(HOST_COLUMN, DataType::Utf8, false))];
    fields.extend(table.fields().iter().map(|f| match f.name().as_str() {
        HOST_COLUMN => Arc::new(f.as_ref().clone().with_name(RENAMED_HOST_COLUMN)),
        _ => f.clone(),
    }));
    Arc::new(Schema::new_with_metadata(fields, table.metadata().clone()))
}

/// The event table of a name.
pub fn table_named(name: &str) -> Option<Table> {
    Table::ALL.into_iter().find(|t| t.name() == name)
}
