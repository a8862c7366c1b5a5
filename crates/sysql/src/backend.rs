//! Where the shell's and `-c`'s statements run: in this process, through
//! the engine's statement path (embedded), or in a sysql agent, which runs
//! them through the same path on its side. Either way a statement is first
//! prepared (checked, planned, its kind known) and then executed as a
//! stream of batches.

use datafusion::arrow::datatypes::SchemaRef;
use datafusion::arrow::record_batch::RecordBatch;
use datafusion::execution::memory_pool::MemoryReservation;
use datafusion::sql::parser::Statement;
use futures::stream::BoxStream;
use futures::StreamExt;
use sysql_engine::query::{Kind, Prepared, QueryError, QuerySession};
use sysql_engine::Engine;

/// Where statements run.
pub enum Backend {
    /// This process's own capture and engine.
    Embedded(QuerySession),
}

/// A statement prepared by a backend.
pub struct Pending {
    kind: Kind,
    schema: SchemaRef,
    inner: PendingInner,
}

enum PendingInner {
    Embedded(Prepared),
}

impl Pending {
    pub fn kind(&self) -> Kind {
        self.kind
    }

    pub fn schema(&self) -> &SchemaRef {
        &self.schema
    }
}

/// A running statement's rows. Dropping it stops the statement.
pub struct Rows {
    pub kind: Kind,
    pub schema: SchemaRef,
    pub stream: BoxStream<'static, Result<RecordBatch, QueryError>>,
    /// Memory of the statement, for results the caller holds (embedded only).
    pub reservation: Option<MemoryReservation>,
}

impl Backend {
    /// The engine of an embedded backend (for the live status line).
    pub fn engine(&self) -> Option<&Engine> {
        match self {
            Backend::Embedded(s) => Some(s.engine()),
        }
    }

    /// Splits text into statements, within the policy's limits.
    pub fn parse(&self, sql: &str) -> Result<Vec<Statement>, QueryError> {
        match self {
            Backend::Embedded(s) => s.parse(sql),
        }
    }

    /// Checks and plans one statement.
    pub async fn prepare(&self, statement: Statement) -> Result<Pending, QueryError> {
        match self {
            Backend::Embedded(s) => {
                let prepared = s.prepare(statement).await?;
                Ok(Pending {
                    kind: prepared.kind(),
                    schema: prepared.schema().clone(),
                    inner: PendingInner::Embedded(prepared),
                })
            }
        }
    }

    /// Runs a prepared statement.
    pub async fn execute(&self, pending: Pending) -> Result<Rows, QueryError> {
        match (self, pending.inner) {
            (Backend::Embedded(s), PendingInner::Embedded(prepared)) => {
                let stream = s.execute(prepared).await?;
                let reservation = Some(stream.reservation("result"));
                Ok(Rows { kind: stream.kind(), schema: stream.schema().clone(), stream: stream.boxed(), reservation })
            }
        }
    }
}
