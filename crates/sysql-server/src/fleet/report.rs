//! What the fleet says of its hosts: the `sysql_fleet` table (per host, the
//! last statement's status, the answer's latency, rows and bytes received,
//! the error), and the node that counts what each host sends.

use datafusion::arrow::array::{ArrayRef, Float64Array, RecordBatch, StringArray, UInt64Array};
use datafusion::arrow::datatypes::{DataType, Field, Schema, SchemaRef};
use datafusion::catalog::{Session, TableProvider};
use datafusion::common::tree_node::TreeNodeRecursion;
use datafusion::common::{internal_err, Result};
use datafusion::datasource::memory::MemorySourceConfig;
use datafusion::datasource::TableType;
use datafusion::execution::{SendableRecordBatchStream, TaskContext};
use datafusion::logical_expr::Expr;
use datafusion::physical_expr::PhysicalExpr;
use datafusion::physical_plan::stream::RecordBatchStreamAdapter;
use datafusion::physical_plan::{DisplayAs, DisplayFormatType, ExecutionPlan, PlanProperties};
use futures::StreamExt;
use std::fmt;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::sync::{Arc, Mutex};

/// A host's state after the last statement that asked the fleet.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Status {
    /// Answered, and is in the statement.
    Ok,
    /// Did not answer within the timeout (or refused the connection):
    /// left out.
    Unreachable,
    /// Answered with another sysql version: left out.
    Refused,
}

impl Status {
    pub fn name(self) -> &'static str {
        match self {
            Status::Ok => "ok",
            Status::Unreachable => "unreachable",
            Status::Refused => "refused",
        }
    }
}

/// One host's line of `sysql_fleet`.
#[derive(Debug)]
pub struct HostReport {
    pub host: String,
    pub status: Status,
    /// The round trip of the version check, in milliseconds.
    pub latency_ms: Option<f64>,
    pub error: Option<String>,
    /// Rows and Arrow bytes received from the host in the last statement.
    pub rows: AtomicU64,
    pub bytes: AtomicU64,
}

/// The fleet's report, replaced at every statement over fleet tables.
#[derive(Debug, Default)]
pub struct Report(Mutex<Vec<Arc<HostReport>>>);

impl Report {
    pub fn set(&self, hosts: Vec<Arc<HostReport>>) {
        *self.0.lock().unwrap_or_else(|e| e.into_inner()) = hosts;
    }

    pub fn hosts(&self) -> Vec<Arc<HostReport>> {
        self.0.lock().unwrap_or_else(|e| e.into_inner()).clone()
    }

    fn batch(&self) -> Result<RecordBatch> {
        let hosts = self.hosts();
        let columns: Vec<ArrayRef> = vec![
            Arc::new(StringArray::from_iter_values(hosts.iter().map(|h| h.host.as_str()))),
            Arc::new(StringArray::from_iter_values(hosts.iter().map(|h| h.status.name()))),
            Arc::new(Float64Array::from_iter(hosts.iter().map(|h| h.latency_ms))),
            Arc::new(UInt64Array::from_iter_values(hosts.iter().map(|h| h.rows.load(Relaxed)))),
            Arc::new(UInt64Array::from_iter_values(hosts.iter().map(|h| h.bytes.load(Relaxed)))),
            Arc::new(StringArray::from_iter(hosts.iter().map(|h| h.error.as_deref()))),
        ];
        Ok(RecordBatch::try_new(report_schema(), columns)?)
    }
}

pub fn report_schema() -> SchemaRef {
    Arc::new(Schema::new(vec![
        Field::new("host", DataType::Utf8, false),
        Field::new("status", DataType::Utf8, false),
        Field::new("latency_ms", DataType::Float64, true),
        Field::new("rows", DataType::UInt64, false),
        Field::new("bytes", DataType::UInt64, false),
        Field::new("error", DataType::Utf8, true),
    ]))
}

/// `sysql_fleet`.
#[derive(Debug)]
pub struct FleetTable(pub Arc<Report>);

#[async_trait::async_trait]
impl TableProvider for FleetTable {
    fn schema(&self) -> SchemaRef {
        report_schema()
    }

    fn table_type(&self) -> TableType {
        TableType::View
    }

    async fn scan(
        &self,
        _state: &dyn Session,
        projection: Option<&Vec<usize>>,
        _filters: &[Expr],
        _limit: Option<usize>,
    ) -> Result<Arc<dyn ExecutionPlan>> {
        let batch = self.0.batch()?;
        Ok(MemorySourceConfig::try_new_exec(&[vec![batch]], report_schema(), projection.cloned())?)
    }
}

/// Counts what the hosts send: above the coordinator's receiving node,
/// whose output partitions are the hosts' tasks in order, a block of
/// `per_host` partitions each.
#[derive(Debug)]
pub struct CountExec {
    input: Arc<dyn ExecutionPlan>,
    hosts: Vec<Arc<HostReport>>,
    per_host: usize,
}

impl CountExec {
    pub fn new(input: Arc<dyn ExecutionPlan>, hosts: Vec<Arc<HostReport>>) -> Self {
        // one host has two tasks (see `coordinator`): both are its
        let partitions = input.properties().partitioning.partition_count();
        let per_host = (partitions / hosts.len().max(1)).max(1);
        CountExec { input, hosts, per_host }
    }
}

impl DisplayAs for CountExec {
    fn fmt_as(&self, _t: DisplayFormatType, f: &mut fmt::Formatter) -> fmt::Result {
        write!(f, "FleetCountExec: hosts={}", self.hosts.len())
    }
}

impl ExecutionPlan for CountExec {
    fn name(&self) -> &str {
        "FleetCountExec"
    }

    fn properties(&self) -> &Arc<PlanProperties> {
        self.input.properties()
    }

    fn children(&self) -> Vec<&Arc<dyn ExecutionPlan>> {
        vec![&self.input]
    }

    fn apply_expressions(
        &self,
        _f: &mut dyn FnMut(&Arc<dyn PhysicalExpr>) -> Result<TreeNodeRecursion>,
    ) -> Result<TreeNodeRecursion> {
        Ok(TreeNodeRecursion::Continue)
    }

    fn with_new_children(self: Arc<Self>, mut children: Vec<Arc<dyn ExecutionPlan>>) -> Result<Arc<dyn ExecutionPlan>> {
        if children.len() != 1 {
            return internal_err!("FleetCountExec has one child");
        }
        Ok(Arc::new(CountExec { input: children.remove(0), hosts: self.hosts.clone(), per_host: self.per_host }))
    }

    fn execute(&self, partition: usize, context: Arc<TaskContext>) -> Result<SendableRecordBatchStream> {
        let stream = self.input.execute(partition, context)?;
        let Some(host) = self.hosts.get(partition / self.per_host).cloned() else {
            return Ok(stream);
        };
        let schema = stream.schema();
        let counted = stream.map(move |batch| {
            if let Ok(b) = &batch {
                host.rows.fetch_add(b.num_rows() as u64, Relaxed);
                host.bytes.fetch_add(b.get_array_memory_size() as u64, Relaxed);
            }
            batch
        });
        Ok(Box::pin(RecordBatchStreamAdapter::new(schema, counted)))
    }
}
