//! The coordinator side: a DataFusion context whose tables are the union of
//! the hosts' tables, planned by `datafusion-distributed` so that each scan
//! becomes one task per host, routed to that host, with filters,
//! projections, partial aggregates, sorts and limits in the same task and
//! the final aggregate on the coordinator.
//!
//! Before a statement over fleet tables is planned, every host is asked its
//! version (at once, within the timeout): hosts that do not answer, or
//! answer with another version, are left out of the statement and said on
//! stderr and in `sysql_fleet`, unless every host is required
//! (`--all-hosts`), then the statement fails. The crate has no retries: a
//! host that fails during the statement fails it.

use super::report::{CountExec, FleetTable, HostReport, Report, Status};
use super::scan::{FleetCodec, HostScanExec, ScanSpec};
use super::tls::TlsFiles;
use super::{fleet_schema, HOST_COLUMN, RENAMED_HOST_COLUMN};
use async_trait::async_trait;
use datafusion::arrow::datatypes::SchemaRef;
use datafusion::catalog::{Session, TableProvider};
use datafusion::common::tree_node::{Transformed, TreeNode, TreeNodeRecursion};
use datafusion::common::{DataFusionError, Result};
use datafusion::datasource::{source_as_provider, TableType};
use datafusion::execution::context::QueryPlanner;
use datafusion::execution::SessionStateBuilder;
use datafusion::logical_expr::{Expr, LogicalPlan, PlanType, StringifiedPlan, TableProviderFilterPushDown};
use datafusion::physical_plan::explain::ExplainExec;
use datafusion::physical_plan::ExecutionPlan;
use datafusion::prelude::SessionContext;
use datafusion_distributed::grpc::{create_worker_client, BoxCloneSyncChannel};
use datafusion_distributed::{
    ChannelResolver, DesiredTaskCountEvent, DesiredTaskCountEventResponse, DistributedExt, DistributedLeafExec,
    GetWorkerInfoRequest, NetworkCoalesceExec, RouteTasksEvent, RouteTasksEventResponse, ScaleUpLeafNodeEvent,
    ScaleUpLeafNodeEventResponse, SessionStateBuilderExt, WorkerChannel, WorkerResolver,
};
use std::collections::HashMap;
use std::sync::atomic::AtomicU64;
use std::sync::{Arc, Mutex, RwLock};
use std::time::{Duration, Instant};
use sysql_engine::Engine;
use tonic::transport::{Channel, ClientTlsConfig, Endpoint};
use url::Url;

/// How the coordinator reaches its hosts.
#[derive(Debug, Clone)]
pub struct FleetConfig {
    /// `HOST:PORT` of each worker, as the `host` column shows it.
    pub hosts: Vec<String>,
    pub tls: TlsFiles,
    /// How long a host has to answer the version check.
    pub timeout: Duration,
    /// Fail a statement when a host is left out, instead of answering
    /// without it.
    pub all_hosts: bool,
}

#[derive(Debug, Clone)]
struct Host {
    name: String,
    url: Url,
}

/// The hosts, their connections, and which answered for the statement
/// being planned.
pub struct Fleet {
    hosts: Vec<Host>,
    tls: ClientTlsConfig,
    timeout: Duration,
    all_hosts: bool,
    channels: Mutex<HashMap<Url, Channel>>,
    /// Hosts in the current statement, in task order, with their reports.
    live: RwLock<Vec<(Host, Arc<HostReport>)>>,
    report: Arc<Report>,
}

impl std::fmt::Debug for Fleet {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Fleet").field("hosts", &self.hosts.len()).finish()
    }
}

/// A host entry with its `https://` URL.
fn host(entry: &str) -> Result<Host, String> {
    let name = entry.trim().trim_start_matches("https://").trim_end_matches('/').to_string();
    if name.is_empty() {
        return Err("an empty host".into());
    }
    if name.contains("://") {
        return Err(format!("{entry}: the fleet speaks TLS only (HOST:PORT or https://HOST:PORT)"));
    }
    let url = Url::parse(&format!("https://{name}")).map_err(|e| format!("{entry}: not HOST:PORT ({e})"))?;
    if url.port().is_none() {
        return Err(format!("{entry}: no port (HOST:PORT)"));
    }
    Ok(Host { name, url })
}

/// Reads a hosts file: one `HOST:PORT` a line; blank lines and `#` comments
/// are skipped.
pub fn read_hosts(path: &std::path::Path) -> Result<Vec<String>, String> {
    let text = std::fs::read_to_string(path).map_err(|e| format!("cannot read {}: {e}", path.display()))?;
    Ok(text
        .lines()
        .map(|l| l.split('#').next().unwrap_or("").trim())
        .filter(|l| !l.is_empty())
        .map(str::to_string)
        .collect())
}

/// An error and its causes, in one line.
fn chain(e: &(dyn std::error::Error + 'static)) -> String {
    let mut text = e.to_string();
    let mut source = e.source();
    while let Some(s) = source {
        let more = s.to_string();
        if !text.contains(&more) {
            text.push_str(": ");
            text.push_str(&more);
        }
        source = s.source();
    }
    text
}

impl Fleet {
    pub fn new(config: FleetConfig) -> Result<Arc<Fleet>, String> {
        let mut hosts: Vec<Host> = Vec::new();
        for entry in &config.hosts {
            let h = host(entry)?;
            if hosts.iter().any(|o| o.name == h.name) {
                return Err(format!("{} is listed twice", h.name));
            }
            hosts.push(h);
        }
        if hosts.is_empty() {
            return Err("no hosts: give --host HOST:PORT or --hosts FILE".into());
        }
        Ok(Arc::new(Fleet {
            hosts,
            tls: config.tls.client()?,
            timeout: config.timeout,
            all_hosts: config.all_hosts,
            channels: Mutex::new(HashMap::new()),
            live: RwLock::new(Vec::new()),
            report: Arc::new(Report::default()),
        }))
    }

    pub fn report(&self) -> &Arc<Report> {
        &self.report
    }

    pub fn host_count(&self) -> usize {
        self.hosts.len()
    }

    async fn channel(&self, url: &Url) -> Result<Channel, String> {
        if let Some(c) = self.channels.lock().unwrap_or_else(|e| e.into_inner()).get(url) {
            return Ok(c.clone());
        }
        let endpoint = Endpoint::from_shared(url.to_string())
            .map_err(|e| chain(&e))?
            .tls_config(self.tls.clone())
            .map_err(|e| chain(&e))?
            .connect_timeout(self.timeout);
        let channel = endpoint.connect().await.map_err(|e| chain(&e))?;
        self.channels.lock().unwrap_or_else(|e| e.into_inner()).insert(url.clone(), channel.clone());
        Ok(channel)
    }

    fn forget(&self, url: &Url) {
        self.channels.lock().unwrap_or_else(|e| e.into_inner()).remove(url);
    }

    /// Asks one host its version: a host of another version is left out.
    async fn ask(&self, host: &Host) -> HostReport {
        let start = Instant::now();
        let asked = tokio::time::timeout(self.timeout, async {
            let channel = self.channel(&host.url).await?;
            let mut client = create_worker_client(BoxCloneSyncChannel::new(channel));
            client.get_worker_info(GetWorkerInfoRequest {}).await.map_err(|e| chain(&e))
        })
        .await;
        let latency = start.elapsed().as_secs_f64() * 1e3;
        let (status, latency_ms, error) = match asked {
            Ok(Ok(info)) => match version_mismatch(&info.version, crate::VERSION) {
                None => (Status::Ok, Some(latency), None),
                Some(error) => (Status::Refused, Some(latency), Some(error)),
            },
            Ok(Err(e)) => (Status::Unreachable, None, Some(e)),
            Err(_) => (Status::Unreachable, None, Some(format!("no answer within {:?}", self.timeout))),
        };
        if status != Status::Ok {
            self.forget(&host.url);
        }
        HostReport {
            host: host.name.clone(),
            status,
            latency_ms,
            error,
            rows: AtomicU64::new(0),
            bytes: AtomicU64::new(0),
        }
    }

    /// Asks every host at once; the ones that answer make the statement.
    /// Says on stderr which were left out; fails if none answered, or if
    /// one was left out and every host is required.
    pub async fn check(&self) -> Result<(), String> {
        let reports = futures::future::join_all(self.hosts.iter().map(|h| self.ask(h))).await;
        let reports: Vec<Arc<HostReport>> = reports.into_iter().map(Arc::new).collect();
        let out: Vec<String> = reports
            .iter()
            .filter(|r| r.status != Status::Ok)
            .map(|r| format!("{} ({}: {})", r.host, r.status.name(), r.error.as_deref().unwrap_or("")))
            .collect();
        let live: Vec<(Host, Arc<HostReport>)> =
            self.hosts.iter().cloned().zip(reports.iter().cloned()).filter(|(_, r)| r.status == Status::Ok).collect();
        self.report.set(reports);
        *self.live.write().unwrap_or_else(|e| e.into_inner()) = live.clone();
        if !out.is_empty() {
            if self.all_hosts {
                return Err(format!(
                    "{} of {} hosts did not answer, and --all-hosts needs every one: {}",
                    out.len(),
                    self.hosts.len(),
                    out.join(", ")
                ));
            }
            if live.is_empty() {
                return Err(format!("no host answered: {}", out.join(", ")));
            }
            eprintln!(
                "sysql: fleet: {} of {} hosts answered; left out: {}",
                live.len(),
                self.hosts.len(),
                out.join(", ")
            );
        }
        Ok(())
    }

    fn live(&self) -> Vec<(Host, Arc<HostReport>)> {
        self.live.read().unwrap_or_else(|e| e.into_inner()).clone()
    }
}

/// The URLs of the hosts in the statement.
#[derive(Clone)]
struct Resolver(Arc<Fleet>);

impl WorkerResolver for Resolver {
    fn get_urls(&self) -> Result<Vec<Url>, DataFusionError> {
        Ok(self.0.live().into_iter().map(|(h, _)| h.url).collect())
    }
}

/// Connections over mutual TLS, one per host, reused.
#[derive(Clone)]
struct Channels(Arc<Fleet>);

#[async_trait]
impl ChannelResolver for Channels {
    async fn get_worker_client_for_url(&self, url: &Url) -> Result<Box<dyn WorkerChannel>, DataFusionError> {
        let channel = self
            .0
            .channel(url)
            .await
            .map_err(|e| DataFusionError::Execution(format!("cannot reach the host {url}: {e}")))?;
        Ok(create_worker_client(BoxCloneSyncChannel::new(channel)))
    }
}

/// The tasks of a fleet table's scan: one per host. With one host, two:
/// `datafusion-distributed` runs a stage of one task under a stage of one
/// task in the same place (here, where a host's table cannot be read), so
/// the host gets a second task that reads nothing.
fn tasks_for(hosts: usize) -> usize {
    hosts.max(2)
}

/// A scan of a fleet table runs as one task per host in the statement.
fn host_scan_tasks(ev: DesiredTaskCountEvent) -> Option<Result<DesiredTaskCountEventResponse>> {
    let scan = ev.plan.downcast_ref::<HostScanExec>()?;
    Some(Ok(DesiredTaskCountEventResponse::desired(tasks_for(scan.hosts().len()))))
}

/// The host of each task, in task order.
fn task_hosts(hosts: &[String]) -> Vec<String> {
    match hosts {
        [one] => vec![one.clone(); tasks_for(1)],
        _ => hosts.to_vec(),
    }
}

/// Splits a scan of a fleet table into its hosts, task i scanning host i.
fn host_scan_split(ev: ScaleUpLeafNodeEvent) -> Option<Result<ScaleUpLeafNodeEventResponse>> {
    let scan = ev.plan.downcast_ref::<HostScanExec>()?;
    if ev.task_count != tasks_for(scan.hosts().len()) {
        return Some(Err(DataFusionError::Plan(format!(
            "this statement needs the rows of {} hosts in fewer places ({} tasks): a join of two fleet tables, or a window over all hosts, is not split by host yet",
            scan.hosts().len(),
            ev.task_count
        ))));
    }
    let variants: Result<Vec<Arc<dyn ExecutionPlan>>> = task_hosts(scan.hosts())
        .iter()
        .enumerate()
        .map(|(task, h)| {
            let variant = if task < scan.hosts().len() { scan.on(h) } else { scan.nothing_on(h) };
            variant.map(|s| Arc::new(s) as Arc<dyn ExecutionPlan>)
        })
        .collect();
    Some(
        variants
            .and_then(|v| DistributedLeafExec::try_new(Arc::clone(ev.plan), v))
            .map(|leaf| ScaleUpLeafNodeEventResponse::new(Arc::new(leaf))),
    )
}

/// Routes the tasks of a stage that scans a fleet table: task i to host i.
fn host_scan_route(fleet: &Fleet, ev: &RouteTasksEvent) -> Option<Result<RouteTasksEventResponse>> {
    let mut hosts: Option<Vec<String>> = None;
    let _ = ev.plan.apply(|node| {
        if let Some(leaf) = node.downcast_ref::<DistributedLeafExec>() {
            if let Some(scan) = leaf.original().downcast_ref::<HostScanExec>() {
                hosts = Some(task_hosts(scan.hosts()));
                return Ok(TreeNodeRecursion::Stop);
            }
        }
        Ok(TreeNodeRecursion::Continue)
    });
    let hosts = hosts?;
    if hosts.len() != ev.task_count {
        return Some(Err(DataFusionError::Plan(format!("{} tasks for {} hosts", ev.task_count, hosts.len()))));
    }
    let live = fleet.live();
    let urls: Result<Vec<Url>> = hosts
        .iter()
        .map(|name| {
            live.iter()
                .find(|(h, _)| &h.name == name)
                .map(|(h, _)| h.url.clone())
                .ok_or_else(|| DataFusionError::Execution(format!("the host {name} left the statement")))
        })
        .collect();
    Some(urls.map(RouteTasksEventResponse::new))
}

/// A fleet table: one event table of every host, `host` first.
#[derive(Debug)]
struct HostsTable {
    table: &'static str,
    schema: SchemaRef,
    fleet: Arc<Fleet>,
}

#[async_trait]
impl TableProvider for HostsTable {
    fn schema(&self) -> SchemaRef {
        self.schema.clone()
    }

    fn table_type(&self) -> TableType {
        TableType::Base
    }

    fn supports_filters_pushdown(&self, filters: &[&Expr]) -> Result<Vec<TableProviderFilterPushDown>> {
        // Each host's table may use a filter to skip rows (a time range
        // skips files); the plan applies it again, on the host, above the
        // scan. A filter on `host` (or on a renamed column, which the
        // host's table does not know by that name) runs there too.
        let own = |name: &str| {
            name != HOST_COLUMN
                && name != RENAMED_HOST_COLUMN
                && self.schema.fields().iter().skip(1).any(|f| f.name() == name)
        };
        Ok(filters
            .iter()
            .map(|f| {
                let on_host = f.column_refs().iter().any(|c| !own(&c.name));
                if on_host {
                    TableProviderFilterPushDown::Unsupported
                } else {
                    TableProviderFilterPushDown::Inexact
                }
            })
            .collect())
    }

    async fn scan(
        &self,
        _state: &dyn Session,
        projection: Option<&Vec<usize>>,
        filters: &[Expr],
        limit: Option<usize>,
    ) -> Result<Arc<dyn ExecutionPlan>> {
        let projection = match projection {
            Some(p) => p.clone(),
            None => (0..self.schema.fields().len()).collect(),
        };
        let spec = ScanSpec::new(self.table, projection, filters, limit)?;
        let hosts: Vec<String> = self.fleet.live().into_iter().map(|(h, _)| h.name).collect();
        Ok(Arc::new(HostScanExec::new(spec, hosts)?))
    }
}

/// True if the plan reads a fleet table.
fn reads_hosts(plan: &LogicalPlan) -> bool {
    let mut found = false;
    let _ = plan.apply_with_subqueries(|node| {
        if let LogicalPlan::TableScan(scan) = node {
            if source_as_provider(&scan.source).is_ok_and(|p| p.is::<HostsTable>()) {
                found = true;
                return Ok(TreeNodeRecursion::Stop);
            }
        }
        Ok(TreeNodeRecursion::Continue)
    });
    found
}

/// Checks the hosts before a statement over fleet tables is planned; shows
/// the distributed plan (stages, tasks, hosts) in EXPLAIN; counts what
/// each host sends.
struct Planner {
    inner: Arc<dyn QueryPlanner + Send + Sync>,
    fleet: Arc<Fleet>,
}

impl std::fmt::Debug for Planner {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("FleetPlanner")
    }
}

impl Planner {
    async fn plan(&self, plan: &LogicalPlan, session: &dyn Session) -> Result<Arc<dyn ExecutionPlan>> {
        let physical = self.inner.create_physical_plan(plan, session).await?;
        let hosts: Vec<Arc<HostReport>> = self.fleet.live().into_iter().map(|(_, r)| r).collect();
        let counted = physical.transform_up(|node| {
            if node.is::<NetworkCoalesceExec>() {
                let wrapped: Arc<dyn ExecutionPlan> = Arc::new(CountExec::new(node, hosts.clone()));
                return Ok(Transformed::new(wrapped, true, TreeNodeRecursion::Jump));
            }
            Ok(Transformed::no(node))
        })?;
        Ok(counted.data)
    }
}

#[async_trait]
impl QueryPlanner for Planner {
    async fn create_physical_plan(&self, plan: &LogicalPlan, session: &dyn Session) -> Result<Arc<dyn ExecutionPlan>> {
        if !reads_hosts(plan) {
            return self.inner.create_physical_plan(plan, session).await;
        }
        self.fleet.check().await.map_err(DataFusionError::Execution)?;
        if let LogicalPlan::Explain(e) = plan {
            if !e.verbose {
                let physical = self.plan(&e.plan, session).await?;
                let plans = vec![
                    StringifiedPlan::new(PlanType::FinalLogicalPlan, e.plan.display_indent().to_string()),
                    StringifiedPlan::new(
                        PlanType::FinalPhysicalPlan,
                        datafusion_distributed::display_plan_ascii(physical.as_ref(), false),
                    ),
                ];
                return Ok(Arc::new(ExplainExec::new(Arc::new(e.schema.as_arrow().clone()), plans, false)));
            }
        }
        self.plan(plan, session).await
    }
}

/// The coordinator's context: the engine's functions and settings, the
/// fleet tables instead of the local ones, `sysql_fleet`, and the
/// distributed planner with sysql's handlers.
pub fn context(fleet: &Arc<Fleet>, engine: &Engine) -> Result<SessionContext, String> {
    let base = engine.session().map_err(|e| e.to_string())?;
    // Drop the local tables: a fleet statement reads the hosts'.
    for name in base.catalog_names() {
        let Some(catalog) = base.catalog(&name) else { continue };
        for schema_name in catalog.schema_names() {
            let Some(schema) = catalog.schema(&schema_name) else { continue };
            if schema_name == "information_schema" {
                continue;
            }
            for table in schema.table_names() {
                if table != "sysql_columns" {
                    let _ = schema.deregister_table(&table);
                }
            }
        }
    }
    for (table, schema) in super::tables() {
        let provider = HostsTable { table: table.name(), schema: fleet_schema(&schema), fleet: fleet.clone() };
        base.register_table(table.name(), Arc::new(provider)).map_err(|e| e.to_string())?;
    }
    base.register_table("sysql_fleet", Arc::new(FleetTable(fleet.report().clone()))).map_err(|e| e.to_string())?;
    let state = base.state();
    // Building a state must not make a new (empty) default catalog.
    let mut config = state.config().clone().with_create_default_catalog_and_schema(false);
    {
        // Aggregates: partial on the hosts, final here, with no exchange
        // between hosts (the hosts never talk to each other).
        let options = config.options_mut();
        options.optimizer.repartition_aggregations = false;
        options.optimizer.repartition_joins = false;
        options.optimizer.repartition_windows = false;
        options.optimizer.enable_round_robin_repartition = false;
    }
    let route_fleet = fleet.clone();
    let state = SessionStateBuilder::new_from_existing(state)
        .with_config(config)
        .with_distributed_worker_resolver(Resolver(fleet.clone()))
        .with_distributed_channel_resolver(Channels(fleet.clone()))
        .with_distributed_user_codec(FleetCodec::default())
        .with_distributed_desired_task_count_handler(host_scan_tasks)
        .with_distributed_scale_up_leaf_node_handler(host_scan_split)
        .with_distributed_route_tasks_handler(move |ev: RouteTasksEvent<'_>| host_scan_route(&route_fleet, &ev))
        .with_distributed_planner()
        .with_distributed_max_tasks_per_stage(tasks_for(fleet.host_count()))
        .map_err(|e| e.to_string())?
        .build();
    let inner = state.query_planner().clone();
    let state = SessionStateBuilder::new_from_existing(state)
        .with_query_planner(Arc::new(Planner { inner, fleet: fleet.clone() }))
        .build();
    Ok(SessionContext::new_with_state(state))
}

/// Why a host that answers with `theirs` cannot serve a coordinator of
/// version `ours` (plans and scans are only understood by the same sysql).
fn version_mismatch(theirs: &str, ours: &str) -> Option<String> {
    if theirs == ours {
        return None;
    }
    let theirs = if theirs.is_empty() { "no sysql version".to_string() } else { format!("sysql {theirs}") };
    Some(format!("it runs {theirs}, this coordinator sysql {ours}"))
}

#[cfg(test)]
mod version_tests {
    use super::version_mismatch;

    #[test]
    fn a_host_of_another_version_is_refused_with_both_versions() {
        assert_eq!(version_mismatch("0.1.0", "0.1.0"), None);
        assert_eq!(
            version_mismatch("0.2.0", "0.1.0").as_deref(),
            Some("it runs sysql 0.2.0, this coordinator sysql 0.1.0")
        );
        // a datafusion-distributed worker that is not sysql reports no version
        assert_eq!(
            version_mismatch("", "0.1.0").as_deref(),
            Some("it runs no sysql version, this coordinator sysql 0.1.0")
        );
    }
}
