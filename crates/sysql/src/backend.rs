//! Where the shell's and `-c`'s statements run: in this process, through
//! the engine's statement path (embedded, or over a recording), or in a
//! sysql agent, which runs them through the same path on its side (over
//! Flight SQL, `sysql_server::client`). Either way a statement is first
//! prepared (checked, planned, its kind known) and then executed as a
//! stream of batches.

use datafusion::arrow::datatypes::SchemaRef;
use datafusion::arrow::record_batch::RecordBatch;
use datafusion::execution::memory_pool::MemoryReservation;
use datafusion::sql::parser::Statement;
use futures::stream::BoxStream;
use futures::StreamExt;
use sysql_engine::query::{Kind, Policy, Prepared, QueryError, QuerySession};
use sysql_engine::Engine;
use sysql_server::client::{self, AgentClient};

/// Where statements run.
pub enum Backend {
    /// This process's own capture and engine (or a recording).
    Embedded(QuerySession),
    /// A sysql agent, over its socket.
    Agent(AgentClient),
}

/// A statement prepared by a backend.
pub struct Pending {
    kind: Kind,
    schema: SchemaRef,
    inner: PendingInner,
}

enum PendingInner {
    Embedded(Prepared),
    Agent(client::Prepared),
}

impl Pending {
    pub fn kind(&self) -> Kind {
        self.kind
    }

    pub fn schema(&self) -> &SchemaRef {
        &self.schema
    }

    /// What a user should know before reading the result, a line each.
    pub fn notices(&self) -> &[String] {
        match &self.inner {
            PendingInner::Embedded(p) => p.notices(),
            PendingInner::Agent(p) => &p.notices,
        }
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
            Backend::Agent(_) => None,
        }
    }

    /// Splits text into statements, within the policy's limits (the agent
    /// checks them again on its side).
    pub fn parse(&self, sql: &str) -> Result<Vec<Statement>, QueryError> {
        match self {
            Backend::Embedded(s) => s.parse(sql),
            Backend::Agent(_) => sysql_engine::query::split(sql, &Policy::default()),
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
            Backend::Agent(c) => {
                let prepared = c.prepare(&statement.to_string()).await?;
                Ok(Pending {
                    kind: prepared.kind,
                    schema: prepared.schema.clone(),
                    inner: PendingInner::Agent(prepared),
                })
            }
        }
    }

    /// Runs a prepared statement.
    pub async fn execute(&self, pending: Pending) -> Result<Rows, QueryError> {
        let Pending { kind, schema, inner } = pending;
        let pending = (kind, schema);
        match (self, inner) {
            (Backend::Embedded(s), PendingInner::Embedded(prepared)) => {
                let stream = s.execute(prepared).await?;
                let reservation = Some(stream.reservation("result"));
                Ok(Rows { kind: stream.kind(), schema: stream.schema().clone(), stream: stream.boxed(), reservation })
            }
            (Backend::Agent(c), PendingInner::Agent(prepared)) => {
                let (kind, schema) = pending;
                let stream = c.execute(prepared).await?;
                Ok(Rows { kind, schema, stream, reservation: None })
            }
            (Backend::Embedded(_), PendingInner::Agent(_)) | (Backend::Agent(_), PendingInner::Embedded(_)) => {
                unreachable!("a statement runs where it was prepared")
            }
        }
    }
}
