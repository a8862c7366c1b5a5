//! A fleet table's scan: [`HostScanExec`] on the coordinator (all hosts
//! before the planner splits it, one host in each task after), encoded by
//! [`FleetCodec`] as the table, the host, the projection, the filters and
//! the limit, and decoded on the worker as a [`LocalScanExec`] over the
//! worker's own table with the host column added.

use super::{fleet_schema, table_named};
use datafusion::arrow::array::{ArrayRef, RecordBatch, RecordBatchOptions, StringArray};
use datafusion::arrow::datatypes::SchemaRef;
use datafusion::common::tree_node::TreeNodeRecursion;
use datafusion::common::{exec_err, internal_err, DataFusionError, Result};
use datafusion::execution::{SendableRecordBatchStream, TaskContext};
use datafusion::logical_expr::Expr;
use datafusion::physical_expr::{EquivalenceProperties, PhysicalExpr};
use datafusion::physical_plan::coalesce_partitions::CoalescePartitionsExec;
use datafusion::physical_plan::execution_plan::{Boundedness, EmissionType};
use datafusion::physical_plan::stream::RecordBatchStreamAdapter;
use datafusion::physical_plan::{DisplayAs, DisplayFormatType, ExecutionPlan, Partitioning, PlanProperties};
use datafusion_proto::logical_plan::DefaultLogicalExtensionCodec;
use datafusion_proto::physical_plan::{PhysicalExtensionCodec, PhysicalProtoConverterExtension};
use futures::{StreamExt, TryStreamExt};
use prost::Message;
use std::fmt;
use std::sync::Arc;
use sysql_engine::Engine;

/// What a host scans: the same for every host of a statement.
#[derive(Debug, Clone, PartialEq)]
pub struct ScanSpec {
    /// The event table's name.
    pub table: String,
    /// Columns of the fleet table (0 is `host`), in output order.
    pub projection: Vec<usize>,
    /// Filters the host's table may use to skip rows (the plan applies
    /// them again above the scan): protobuf `LogicalExprList`.
    pub filters: Vec<u8>,
    pub limit: Option<usize>,
}

impl ScanSpec {
    pub fn new(table: &str, projection: Vec<usize>, filters: &[Expr], limit: Option<usize>) -> Result<ScanSpec> {
        let codec = DefaultLogicalExtensionCodec {};
        let expr = datafusion_proto::logical_plan::to_proto::serialize_exprs(filters, &codec)
            .map_err(|e| DataFusionError::Plan(format!("a scan's filters: {e}")))?;
        let filters = datafusion_proto::protobuf::LogicalExprList { expr }.encode_to_vec();
        Ok(ScanSpec { table: table.to_string(), projection, filters, limit })
    }

    /// The output schema: the fleet table's, projected.
    pub fn schema(&self) -> Result<SchemaRef> {
        let Some(table) = table_named(&self.table) else {
            return exec_err!("the fleet has no table {}", self.table);
        };
        let full = fleet_schema(&sysql_engine::event::schema(table));
        if let Some(i) = self.projection.iter().find(|i| **i >= full.fields().len()) {
            return exec_err!("column {i} is past the columns of {}", self.table);
        }
        Ok(Arc::new(full.project(&self.projection)?))
    }
}

fn properties(schema: SchemaRef, partitions: usize) -> Arc<PlanProperties> {
    Arc::new(PlanProperties::new(
        EquivalenceProperties::new(schema),
        Partitioning::UnknownPartitioning(partitions),
        EmissionType::Incremental,
        Boundedness::Bounded,
    ))
}

/// The scan of a fleet table on the coordinator: of every host (`host`
/// unset, one partition per host, before the planner splits it), or of one
/// (its task's variant, sent to that host).
#[derive(Debug)]
pub struct HostScanExec {
    pub spec: ScanSpec,
    pub host: Option<String>,
    hosts: Vec<String>,
    props: Arc<PlanProperties>,
}

impl HostScanExec {
    pub fn new(spec: ScanSpec, hosts: Vec<String>) -> Result<Self> {
        // A partition per task (two for one host, see `coordinator`): the
        // planner coalesces them, which is where it puts the boundary.
        let props = properties(spec.schema()?, hosts.len().max(2));
        Ok(HostScanExec { spec, host: None, hosts, props })
    }

    /// The variant scanning one host.
    pub fn on(&self, host: &str) -> Result<Self> {
        Ok(HostScanExec {
            spec: self.spec.clone(),
            host: Some(host.to_string()),
            hosts: vec![host.to_string()],
            props: properties(self.spec.schema()?, 1),
        })
    }

    /// The variant of a task that reads nothing on `host` (a limit of 0).
    pub fn nothing_on(&self, host: &str) -> Result<Self> {
        let mut scan = self.on(host)?;
        scan.spec.limit = Some(0);
        Ok(scan)
    }

    /// The hosts it scans, in task order.
    pub fn hosts(&self) -> &[String] {
        &self.hosts
    }
}

impl DisplayAs for HostScanExec {
    fn fmt_as(&self, _t: DisplayFormatType, f: &mut fmt::Formatter) -> fmt::Result {
        let names: Vec<&str> = self.props.eq_properties.schema().fields().iter().map(|f| f.name().as_str()).collect();
        match &self.host {
            Some(h) => write!(f, "HostScanExec: table={}, host={h}, columns=[{}]", self.spec.table, names.join(", "))?,
            None => write!(
                f,
                "HostScanExec: table={}, hosts={}, columns=[{}]",
                self.spec.table,
                self.hosts.len(),
                names.join(", ")
            )?,
        }
        if let Some(n) = self.spec.limit {
            write!(f, ", limit={n}")?;
        }
        Ok(())
    }
}

impl ExecutionPlan for HostScanExec {
    fn name(&self) -> &str {
        "HostScanExec"
    }

    fn properties(&self) -> &Arc<PlanProperties> {
        &self.props
    }

    fn children(&self) -> Vec<&Arc<dyn ExecutionPlan>> {
        vec![]
    }

    fn apply_expressions(
        &self,
        _f: &mut dyn FnMut(&Arc<dyn PhysicalExpr>) -> Result<TreeNodeRecursion>,
    ) -> Result<TreeNodeRecursion> {
        Ok(TreeNodeRecursion::Continue)
    }

    fn with_new_children(self: Arc<Self>, children: Vec<Arc<dyn ExecutionPlan>>) -> Result<Arc<dyn ExecutionPlan>> {
        if !children.is_empty() {
            return internal_err!("HostScanExec has no children");
        }
        Ok(self)
    }

    fn execute(&self, _partition: usize, _context: Arc<TaskContext>) -> Result<SendableRecordBatchStream> {
        internal_err!("a host's scan runs on that host, not on the coordinator")
    }
}

/// A fleet table's scan on a worker: the worker's own table (its history,
/// memory and disk), with the host column added.
pub struct LocalScanExec {
    spec: ScanSpec,
    host: String,
    engine: Engine,
    props: Arc<PlanProperties>,
}

impl LocalScanExec {
    pub fn new(spec: ScanSpec, host: String, engine: Engine) -> Result<Self> {
        let props = properties(spec.schema()?, 1);
        Ok(LocalScanExec { spec, host, engine, props })
    }
}

impl fmt::Debug for LocalScanExec {
    fn fmt(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.debug_struct("LocalScanExec").field("spec", &self.spec).field("host", &self.host).finish()
    }
}

impl DisplayAs for LocalScanExec {
    fn fmt_as(&self, _t: DisplayFormatType, f: &mut fmt::Formatter) -> fmt::Result {
        write!(f, "LocalScanExec: table={}, host={}", self.spec.table, self.host)
    }
}

impl ExecutionPlan for LocalScanExec {
    fn name(&self) -> &str {
        "LocalScanExec"
    }

    fn properties(&self) -> &Arc<PlanProperties> {
        &self.props
    }

    fn children(&self) -> Vec<&Arc<dyn ExecutionPlan>> {
        vec![]
    }

    fn apply_expressions(
        &self,
        _f: &mut dyn FnMut(&Arc<dyn PhysicalExpr>) -> Result<TreeNodeRecursion>,
    ) -> Result<TreeNodeRecursion> {
        Ok(TreeNodeRecursion::Continue)
    }

    fn with_new_children(self: Arc<Self>, children: Vec<Arc<dyn ExecutionPlan>>) -> Result<Arc<dyn ExecutionPlan>> {
        if !children.is_empty() {
            return internal_err!("LocalScanExec has no children");
        }
        Ok(self)
    }

    fn execute(&self, partition: usize, context: Arc<TaskContext>) -> Result<SendableRecordBatchStream> {
        if partition != 0 {
            return internal_err!("LocalScanExec has one partition, not {partition}");
        }
        let schema = self.schema();
        if self.spec.limit == Some(0) {
            return Ok(Box::pin(RecordBatchStreamAdapter::new(schema, futures::stream::empty())));
        }
        let (spec, host, engine) = (self.spec.clone(), self.host.clone(), self.engine.clone());
        let out = schema.clone();
        let open = async move {
            let session = engine.session()?;
            let provider = session.table_provider(spec.table.as_str()).await?;
            let state = session.state();
            let list = datafusion_proto::protobuf::LogicalExprList::decode(spec.filters.as_slice())
                .map_err(|e| DataFusionError::Execution(format!("a scan's filters: {e}")))?;
            let filters = datafusion_proto::logical_plan::from_proto::parse_exprs(
                &list.expr,
                &session.task_ctx(),
                &DefaultLogicalExtensionCodec {},
            )
            .map_err(|e| DataFusionError::Execution(format!("a scan's filters: {e}")))?;
            // The table's own columns the output needs (never none: a
            // count(*) still needs rows).
            let mut columns: Vec<usize> = spec.projection.iter().filter(|i| **i > 0).map(|i| i - 1).collect();
            columns.dedup();
            let read = if columns.is_empty() { vec![0] } else { columns.clone() };
            let plan = provider.scan(&state, Some(&read), &filters, spec.limit).await?;
            let plan: Arc<dyn ExecutionPlan> = if plan.properties().partitioning.partition_count() > 1 {
                Arc::new(CoalescePartitionsExec::new(plan))
            } else {
                plan
            };
            let stream = plan.execute(0, context)?;
            let stream = stream.map(move |batch| {
                let batch = batch?;
                let n = batch.num_rows();
                let arrays: Vec<ArrayRef> = spec
                    .projection
                    .iter()
                    .map(|i| match *i {
                        0 => Arc::new(StringArray::from_iter_values(std::iter::repeat_n(host.as_str(), n))) as ArrayRef,
                        i => {
                            let at = read.iter().position(|c| *c == i - 1).expect("a projected column is read");
                            batch.column(at).clone()
                        }
                    })
                    .collect();
                let options = RecordBatchOptions::new().with_row_count(Some(n));
                Ok(RecordBatch::try_new_with_options(out.clone(), arrays, &options)?)
            });
            Ok::<_, DataFusionError>(stream)
        };
        let stream = futures::stream::once(open).try_flatten();
        Ok(Box::pin(RecordBatchStreamAdapter::new(schema, stream)))
    }
}

/// Encodes [`HostScanExec`]s on the coordinator; decodes them on a worker
/// (which has an engine) as [`LocalScanExec`]s over its own tables.
#[derive(Clone, Default)]
pub struct FleetCodec {
    pub engine: Option<Engine>,
}

impl fmt::Debug for FleetCodec {
    fn fmt(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.debug_struct("FleetCodec").field("worker", &self.engine.is_some()).finish()
    }
}

const MAGIC: &[u8] = b"sysql-host-scan-1";

impl PhysicalExtensionCodec for FleetCodec {
    fn try_decode(
        &self,
        buf: &[u8],
        inputs: &[Arc<dyn ExecutionPlan>],
        _ctx: &TaskContext,
        _proto_converter: &dyn PhysicalProtoConverterExtension,
    ) -> Result<Arc<dyn ExecutionPlan>> {
        let Some(engine) = &self.engine else {
            return internal_err!("the coordinator decodes no host scan");
        };
        if !inputs.is_empty() {
            return exec_err!("a host scan has no inputs");
        }
        let (spec, host) = decode(buf)?;
        Ok(Arc::new(LocalScanExec::new(spec, host, engine.clone())?))
    }

    fn try_encode(
        &self,
        node: Arc<dyn ExecutionPlan>,
        buf: &mut Vec<u8>,
        _proto_converter: &dyn PhysicalProtoConverterExtension,
    ) -> Result<()> {
        let Some(scan) = node.downcast_ref::<HostScanExec>() else {
            return internal_err!("the fleet encodes host scans only, not {}", node.name());
        };
        let Some(host) = &scan.host else {
            return internal_err!("a host scan is sent to its host once the planner has split it");
        };
        encode(&scan.spec, host, buf);
        Ok(())
    }
}

fn put(buf: &mut Vec<u8>, bytes: &[u8]) {
    buf.extend_from_slice(&(bytes.len() as u32).to_le_bytes());
    buf.extend_from_slice(bytes);
}

fn encode(spec: &ScanSpec, host: &str, buf: &mut Vec<u8>) {
    put(buf, MAGIC);
    put(buf, spec.table.as_bytes());
    put(buf, host.as_bytes());
    let projection: Vec<u8> = spec.projection.iter().flat_map(|i| (*i as u32).to_le_bytes()).collect();
    put(buf, &projection);
    put(buf, &spec.limit.map(|n| n as u64).unwrap_or(u64::MAX).to_le_bytes());
    put(buf, &spec.filters);
}

/// Reads the length-prefixed fields of [`encode`].
struct Fields<'a>(&'a [u8]);

impl<'a> Fields<'a> {
    fn take(&mut self) -> Result<&'a [u8]> {
        let Some((len, rest)) = self.0.split_first_chunk::<4>() else {
            return exec_err!("a host scan cut short");
        };
        let len = u32::from_le_bytes(*len) as usize;
        if rest.len() < len {
            return exec_err!("a host scan cut short");
        }
        let (field, rest) = rest.split_at(len);
        self.0 = rest;
        Ok(field)
    }
}

fn decode(buf: &[u8]) -> Result<(ScanSpec, String)> {
    let mut fields = Fields(buf);
    let mut take = || fields.take();
    if take()? != MAGIC {
        return exec_err!("not a sysql host scan (another sysql version?)");
    }
    let text = |b: &[u8]| String::from_utf8(b.to_vec()).map_err(|e| DataFusionError::Execution(e.to_string()));
    let table = text(take()?)?;
    let host = text(take()?)?;
    let projection =
        take()?.chunks_exact(4).map(|c| u32::from_le_bytes(c.try_into().expect("4 bytes")) as usize).collect();
    let limit = take()?;
    let limit = match <[u8; 8]>::try_from(limit).map(u64::from_le_bytes) {
        Ok(u64::MAX) => None,
        Ok(n) => Some(n as usize),
        Err(_) => return exec_err!("a host scan's limit is 8 bytes"),
    };
    let filters = take()?.to_vec();
    let spec = ScanSpec { table, projection, filters, limit };
    spec.schema()?;
    if host.is_empty() {
        return exec_err!("a host scan without a host");
    }
    Ok((spec, host))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_scan_encodes_and_decodes() {
        let spec = ScanSpec::new("opens", vec![0, 3, 1], &[], Some(10)).unwrap();
        let mut buf = vec![];
        encode(&spec, "a:1", &mut buf);
        assert_eq!(decode(&buf).unwrap(), (spec, "a:1".to_string()));
        assert!(decode(&buf[..buf.len() - 1]).is_err());
    }
}
