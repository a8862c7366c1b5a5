//! The one statement path. Every front end (the shell, `-c` and `-f`, saved
//! queries, the agent's Flight SQL and Postgres endpoints) runs SQL through a
//! [`QuerySession`]:
//!
//! 1. [`QuerySession::parse`] splits text into statements, within the
//!    policy's size and depth limits;
//! 2. [`QuerySession::prepare`] checks a statement against the [`Policy`]
//!    and plans it, and decides from the plan how it runs ([`Kind`]): a
//!    statement is live if its plan scans a live table (through views too),
//!    never because of its text;
//! 3. [`QuerySession::execute`] runs it as a stream of batches, under the
//!    statement's own memory cap ([`memory`]).
//!
//! Front ends keep only what is theirs: reading input, deadlines and Ctrl-C
//! (dropping the stream cancels the statement), and output.

pub mod error;
pub mod memory;
pub mod policy;

pub use error::{ErrorKind, QueryError};
pub use policy::Policy;

use crate::live_table::{prepare_live, LiveTable};
use crate::window::{self, WindowQuery};
use crate::Engine;
use datafusion::arrow::datatypes::{DataType, Schema, SchemaRef};
use datafusion::arrow::record_batch::RecordBatch;
use datafusion::catalog::{CatalogProvider, CatalogProviderList, MemoryCatalogProvider, MemoryCatalogProviderList};
use datafusion::catalog::{MemorySchemaProvider, SchemaProvider, TableProvider};
use datafusion::common::tree_node::TreeNodeRecursion;
use datafusion::common::ScalarValue;
use datafusion::datasource::{source_as_provider, MemTable, ViewTable};
use datafusion::error::DataFusionError;
use datafusion::execution::runtime_env::RuntimeEnv;
use datafusion::execution::{SessionState, SessionStateBuilder, TaskContext};
use datafusion::logical_expr::LogicalPlan;
use datafusion::physical_plan::stream::RecordBatchStreamAdapter;
use datafusion::physical_plan::{execute_stream, SendableRecordBatchStream};
use datafusion::prelude::SessionContext;
use datafusion::sql::parser::{DFParserBuilder, Statement};
use datafusion::sql::sqlparser::dialect::dialect_from_str;
use futures::{Stream, StreamExt};
use memory::{QueryMemory, StatementPool};
use policy::SetEffect;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

/// How a statement runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// Over history (and anything else bounded): a finite result.
    Bounded,
    /// Over a live table: rows as they happen, until cancelled or a LIMIT.
    Live,
    /// A windowed aggregate over a live table: a result per window as it closes.
    Window,
    /// Changes the session (SET, CREATE VIEW): no rows.
    Command,
}

impl Kind {
    /// True for statements that run until stopped.
    pub fn is_unbounded(self) -> bool {
        matches!(self, Kind::Live | Kind::Window)
    }
}

/// A statement checked and planned, ready to run.
#[derive(Debug)]
pub struct Prepared {
    kind: Kind,
    schema: SchemaRef,
    body: Body,
    notices: Vec<String>,
}

#[derive(Debug)]
enum Body {
    Plan { plan: LogicalPlan, live_inputs: bool, set: Option<SetEffect> },
    Window(Box<WindowQuery>),
}

impl Prepared {
    pub fn kind(&self) -> Kind {
        self.kind
    }

    /// The columns of the result.
    pub fn schema(&self) -> &SchemaRef {
        &self.schema
    }

    /// What a user should know before reading the result, one line each:
    /// a table it reads whose capture the kernel filtered (its missing rows
    /// were never captured, by choice).
    pub fn notices(&self) -> &[String] {
        &self.notices
    }

    /// The types of the statement's parameters (`$1`, `$2`, ...), in
    /// order; `None` where the statement does not fix one.
    pub fn parameter_types(&self) -> Result<Vec<Option<DataType>>, QueryError> {
        let Body::Plan { plan, .. } = &self.body else { return Ok(vec![]) };
        let types = plan.get_parameter_types().map_err(|e| QueryError::from_datafusion(&e, ""))?;
        let mut ordered = vec![None; types.len()];
        for (id, t) in types {
            let n =
                id.strip_prefix('$').and_then(|n| n.parse::<usize>().ok()).filter(|n| (1..=ordered.len()).contains(n));
            match n {
                Some(n) => ordered[n - 1] = t,
                None => {
                    return Err(QueryError::new(
                        ErrorKind::Syntax,
                        format!("parameter {id}: parameters are numbered $1, $2, ... without gaps"),
                    ))
                }
            }
        }
        Ok(ordered)
    }

    /// The statement with its parameters replaced by `values`.
    pub fn bind(self, values: Vec<ScalarValue>) -> Result<Prepared, QueryError> {
        let expected = self.parameter_types()?.len();
        if values.len() != expected {
            return Err(QueryError::new(
                ErrorKind::Syntax,
                format!("the statement takes {expected} parameters, {} were given", values.len()),
            ));
        }
        if expected == 0 {
            return Ok(self);
        }
        match self.body {
            Body::Plan { plan, live_inputs, set } => {
                let plan = plan.with_param_values(values).map_err(|e| QueryError::from_datafusion(&e, ""))?;
                let schema = match self.kind {
                    Kind::Command => self.schema,
                    _ => Arc::new(plan.schema().as_arrow().clone()),
                };
                Ok(Prepared {
                    kind: self.kind,
                    schema,
                    body: Body::Plan { plan, live_inputs, set },
                    notices: self.notices,
                })
            }
            Body::Window(_) => Err(QueryError::new(ErrorKind::Plan, "a windowed statement takes no parameters")),
        }
    }
}

/// Rows of a running statement. Dropping it stops the statement (and frees
/// its live subscriptions).
pub struct QueryStream {
    kind: Kind,
    schema: SchemaRef,
    inner: SendableRecordBatchStream,
    pool: Arc<StatementPool>,
    engine: Engine,
    qualifier: String,
}

impl QueryStream {
    pub fn kind(&self) -> Kind {
        self.kind
    }

    pub fn schema(&self) -> &SchemaRef {
        &self.schema
    }

    /// A reservation in the statement's memory, for a front end that holds
    /// its results (a table printer, a diff): what it holds counts towards
    /// the statement's cap.
    pub fn reservation(&self, holder: &str) -> datafusion::execution::memory_pool::MemoryReservation {
        let pool: Arc<dyn datafusion::execution::memory_pool::MemoryPool> = self.pool.clone();
        datafusion::execution::memory_pool::MemoryConsumer::new(holder).register(&pool)
    }

    /// The statement's memory so far, in bytes.
    pub fn memory_used(&self) -> usize {
        datafusion::execution::memory_pool::MemoryPool::reserved(self.pool.as_ref())
    }

    /// Turns a DataFusion error of this statement into one line.
    pub fn error(&self, e: &DataFusionError) -> QueryError {
        QueryError::from_datafusion(e, &self.qualifier)
    }
}

impl Stream for QueryStream {
    type Item = Result<RecordBatch, QueryError>;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        let this = &mut *self;
        // A panic in an operator (a bug) fails this statement, not the process.
        let polled = catching(|| this.inner.poll_next_unpin(cx));
        let polled = match polled {
            Ok(polled) => polled,
            Err(panic) => return Poll::Ready(Some(Err(panicked(panic)))),
        };
        match polled {
            Poll::Ready(Some(Ok(batch))) => {
                if let Err(e) = this.engine.process_limit().check() {
                    return Poll::Ready(Some(Err(QueryError::from_datafusion(&e, &this.qualifier))));
                }
                Poll::Ready(Some(Ok(batch)))
            }
            Poll::Ready(Some(Err(e))) => Poll::Ready(Some(Err(QueryError::from_datafusion(&e, &this.qualifier)))),
            Poll::Ready(None) => Poll::Ready(None),
            Poll::Pending => Poll::Pending,
        }
    }
}

/// Splits text into statements with the default dialect, within `policy`'s
/// limits, without a session (a client of an agent, which checks them again).
pub fn split(sql: &str, policy: &Policy) -> Result<Vec<Statement>, QueryError> {
    policy.check_text(sql)?;
    let statements = DFParserBuilder::new(sql)
        .build()
        .and_then(|mut p| p.parse_statements())
        .map_err(|e| QueryError::from_datafusion(&e, ""))?;
    let statements: Vec<Statement> = statements.into();
    for s in &statements {
        policy.check_statement(s)?;
    }
    Ok(statements)
}

/// A session: its own settings and views, the engine's tables, a policy.
pub struct QuerySession {
    ctx: SessionContext,
    engine: Engine,
    policy: Policy,
    qualifier: String,
}

impl QuerySession {
    pub fn new(engine: &Engine, policy: Policy) -> Result<Self, QueryError> {
        let ctx = engine.session().map_err(|e| QueryError::from_datafusion(&e, ""))?;
        let qualifier = {
            let state = ctx.state();
            let catalog = &state.config().options().catalog;
            format!("{}.{}.", catalog.default_catalog, catalog.default_schema)
        };
        Ok(QuerySession { ctx, engine: engine.clone(), policy, qualifier })
    }

    /// A session over a context its front end built: the same statement
    /// path and policy over other tables (the fleet's coordinator, whose
    /// tables are the union of its hosts'). The context should come from
    /// [`Engine::session`], so that it has sysql's functions.
    pub fn with_context(engine: &Engine, policy: Policy, ctx: SessionContext) -> Self {
        let qualifier = {
            let state = ctx.state();
            let catalog = &state.config().options().catalog;
            format!("{}.{}.", catalog.default_catalog, catalog.default_schema)
        };
        QuerySession { ctx, engine: engine.clone(), policy, qualifier }
    }

    pub fn engine(&self) -> &Engine {
        &self.engine
    }

    pub fn policy(&self) -> &Policy {
        &self.policy
    }

    /// The DataFusion context (for tools that list tables).
    pub fn context(&self) -> &SessionContext {
        &self.ctx
    }

    fn error(&self, e: &DataFusionError) -> QueryError {
        QueryError::from_datafusion(e, &self.qualifier)
    }

    /// Splits text into statements. The whole text is parsed first, so a
    /// syntax error anywhere runs nothing. Whitespace and comments alone are
    /// no statement at all.
    pub fn parse(&self, sql: &str) -> Result<Vec<Statement>, QueryError> {
        self.policy.check_text(sql)?;
        let state = self.ctx.state();
        let options = state.config().options();
        let dialect_name = options.sql_parser.dialect;
        let dialect = dialect_from_str(dialect_name)
            .ok_or_else(|| QueryError::new(ErrorKind::Plan, format!("unsupported SQL dialect {dialect_name}")))?;
        let statements = DFParserBuilder::new(sql)
            .with_dialect(dialect.as_ref())
            .with_recursion_limit(options.sql_parser.recursion_limit.get())
            .build()
            .and_then(|mut p| p.parse_statements())
            .map_err(|e| self.error(&e))?;
        let statements: Vec<Statement> = statements.into();
        for s in &statements {
            self.policy.check_statement(s)?;
        }
        Ok(statements)
    }

    /// Parses text holding exactly one statement and prepares it.
    pub async fn prepare_sql(&self, sql: &str) -> Result<Prepared, QueryError> {
        let mut statements = self.parse(sql)?;
        if statements.len() != 1 {
            return Err(QueryError::new(
                ErrorKind::Syntax,
                format!("expected one statement, found {}", statements.len()),
            ));
        }
        self.prepare(statements.remove(0)).await
    }

    /// Checks a statement against the policy and plans it.
    pub async fn prepare(&self, statement: Statement) -> Result<Prepared, QueryError> {
        contained(self.prepare_inner(statement)).await?
    }

    async fn prepare_inner(&self, statement: Statement) -> Result<Prepared, QueryError> {
        self.policy.check_statement(&statement)?;
        if let Some(q) = window::plan(&self.ctx, &statement).await.map_err(|e| self.error(&e))? {
            // Plan the per-window statement over an empty window, so that a
            // mistake in it is an error now, not when the first window closes.
            let (ctx, private) = private_context(&self.ctx.state())?;
            let empty = MemTable::try_new(window::window_schema(q.table), vec![vec![]]).map_err(|e| self.error(&e))?;
            private.register_table(window::WINDOW_TABLE.into(), Arc::new(empty)).map_err(|e| self.error(&e))?;
            let plan = ctx.state().create_logical_plan(&q.sql).await.map_err(|e| self.error(&e))?;
            self.policy.check_plan(&plan)?;
            let schema = Arc::new(plan.schema().as_arrow().clone());
            let notices = self.filter_notices(&[q.table]);
            return Ok(Prepared { kind: Kind::Window, schema, body: Body::Window(Box::new(q)), notices });
        }
        let plan = self.ctx.state().statement_to_plan(statement).await.map_err(|e| self.error(&e))?;
        let set = self.policy.check_plan(&plan)?;
        let live_inputs = reads_live(&plan);
        let kind = match &plan {
            LogicalPlan::Ddl(_) | LogicalPlan::Statement(_) => Kind::Command,
            // EXPLAIN of a live query shows the plan and ends.
            LogicalPlan::Explain(_) | LogicalPlan::DescribeTable(_) => Kind::Bounded,
            _ if live_inputs => Kind::Live,
            _ => Kind::Bounded,
        };
        let schema: SchemaRef = match kind {
            Kind::Command => Arc::new(Schema::empty()),
            _ => Arc::new(plan.schema().as_arrow().clone()),
        };
        let notices = self.filter_notices(&tables_read(&plan));
        Ok(Prepared { kind, schema, body: Body::Plan { plan, live_inputs, set }, notices })
    }

    /// A notice for each table in `tables` whose capture is filtered.
    fn filter_notices(&self, tables: &[crate::Table]) -> Vec<String> {
        let stats = self.engine.stats();
        tables
            .iter()
            .filter_map(|t| {
                stats.kernel_filter(*t).map(|f| {
                    format!(
                        "{}: its capture is filtered in the kernel ({f}): events outside the filter were never captured",
                        t.name()
                    )
                })
            })
            .collect()
    }

    /// Runs a prepared statement. A bounded statement first waits for every
    /// event captured up to now to be in the tables.
    pub async fn execute(&self, prepared: Prepared) -> Result<QueryStream, QueryError> {
        contained(self.execute_inner(prepared)).await?
    }

    async fn execute_inner(&self, prepared: Prepared) -> Result<QueryStream, QueryError> {
        let pool = Arc::new(StatementPool::new(self.engine.budget().clone(), self.engine.config().query_memory_bytes));
        // Over a recording, a live statement replays it into a hub of its own.
        let replay = match (self.engine.replay_pace(), self.engine.store(), prepared.kind.is_unbounded()) {
            (Some(pace), Some(store), true) => {
                let start = store_start(store);
                Some((Arc::new(crate::live::LiveHub::replay(start, self.engine.stats().clone())), store.clone(), pace))
            }
            _ => None,
        };
        let stream = match prepared.body {
            Body::Plan { plan, set, .. } if prepared.kind == Kind::Command => {
                if set != Some(SetEffect::Ignore) {
                    self.ctx.execute_logical_plan(plan).await.map_err(|e| self.error(&e))?;
                }
                empty_stream(prepared.schema.clone())
            }
            Body::Plan { plan, live_inputs, .. } => {
                if prepared.kind == Kind::Bounded {
                    self.engine.sync().await;
                }
                let mut state = self.statement_state(&pool, live_inputs);
                if let Some((hub, _, _)) = &replay {
                    state.config_mut().set_extension(Arc::new(crate::live_table::ReplayHub(hub.clone())));
                }
                let physical = plan_physical(&state, &plan, &pool).await.map_err(|e| self.error(&e))?;
                let task = Arc::new(TaskContext::from(&state));
                if prepared.kind == Kind::Live {
                    let (physical, task) = prepare_live(physical, task).map_err(|e| self.error(&e))?;
                    let stream = execute_stream(physical, task).map_err(|e| self.error(&e))?;
                    // every live scan has subscribed: the replay can start
                    match replay {
                        Some((hub, store, pace)) => with_task(stream, crate::store::replay::run(store, hub, pace)),
                        None => stream,
                    }
                } else {
                    let stream = execute_stream(physical, task).map_err(|e| self.error(&e))?;
                    match &plan {
                        LogicalPlan::Explain(explain) => {
                            let mut rows = self.kernel_filter_rows(&tables_read(&plan));
                            rows.extend(self.live_capture_rows(&explain.plan).map_err(|e| self.error(&e))?);
                            if rows.is_empty() {
                                stream
                            } else {
                                explain_with_filters(stream, rows).map_err(|e| self.error(&e))?
                            }
                        }
                        _ => stream,
                    }
                }
            }
            Body::Window(q) => {
                let state = self.statement_state(&pool, false);
                let (ctx, _) = private_context(&state)?;
                let (tx, rx) = tokio::sync::mpsc::channel::<datafusion::error::Result<RecordBatch>>(64);
                let engine = self.engine.clone();
                let hub = match &replay {
                    Some((hub, store, pace)) => {
                        let (hub2, store, pace, table) = (hub.clone(), store.clone(), *pace, q.table);
                        // the replay starts once the window has subscribed
                        tokio::spawn(async move {
                            let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
                            while hub2.subscribers(table) == 0 {
                                if std::time::Instant::now() > deadline {
                                    return; // the window failed before it subscribed
                                }
                                tokio::task::yield_now().await;
                            }
                            crate::store::replay::run(store, hub2, pace).await
                        });
                        hub.clone()
                    }
                    None => engine.live().clone(),
                };
                let task = tokio::spawn(async move {
                    let out = tx.clone();
                    let result = window::run(&engine, &hub, &ctx, &q, |b| {
                        out.try_send(Ok(b)).map_err(|_| {
                            DataFusionError::Execution("the reader of a window fell behind or left".into())
                        })
                    })
                    .await;
                    if let Err(e) = result {
                        let _ = tx.send(Err(e)).await;
                    }
                });
                let abort = AbortOnDrop(task);
                let stream = futures::stream::unfold((rx, abort), |(mut rx, abort)| async move {
                    rx.recv().await.map(|item| (item, (rx, abort)))
                });
                Box::pin(RecordBatchStreamAdapter::new(prepared.schema.clone(), stream))
            }
        };
        Ok(QueryStream {
            kind: prepared.kind,
            schema: prepared.schema,
            inner: stream,
            pool,
            engine: self.engine.clone(),
            qualifier: self.qualifier.clone(),
        })
    }

    /// When running live scans narrow the capture (history off), `(live
    /// table, what the kernel captures for it while the query runs)` for
    /// each live scan of `plan`, from its WHERE clause as the optimizer
    /// hands it to the scan.
    fn live_capture_rows(&self, plan: &LogicalPlan) -> datafusion::error::Result<Vec<(String, String)>> {
        if !self.engine.capture_needs().active() {
            return Ok(Vec::new());
        }
        let optimized = self.ctx.state().optimize(plan)?;
        let mut rows = Vec::new();
        optimized.apply_with_subqueries(|node| {
            if let LogicalPlan::TableScan(scan) = node {
                let live = source_as_provider(&scan.source).is_ok_and(|p| p.is::<LiveTable>());
                let table = crate::Table::ALL.into_iter().find(|t| t.name() == scan.table_name.table());
                if let (true, Some(table)) = (live, table) {
                    let need = crate::capture_need::Need::from_filters(table, &scan.filters).describe();
                    let what = if need.is_empty() {
                        "every event (no condition the kernel can apply)".into()
                    } else {
                        format!("only {need}")
                    };
                    rows.push((
                        format!("live.{}", table.name()),
                        format!("{what}, while the query runs (history is off)"),
                    ));
                }
            }
            Ok(TreeNodeRecursion::Continue)
        })?;
        Ok(rows)
    }

    /// `(table, filter)` for each table in `tables` whose capture is filtered.
    fn kernel_filter_rows(&self, tables: &[crate::Table]) -> Vec<(String, String)> {
        let stats = self.engine.stats();
        tables.iter().filter_map(|t| stats.kernel_filter(*t).map(|f| (t.name().to_string(), f.to_string()))).collect()
    }

    /// Prepares and runs exactly one statement.
    pub async fn run(&self, sql: &str) -> Result<QueryStream, QueryError> {
        let prepared = self.prepare_sql(sql).await?;
        self.execute(prepared).await
    }

    /// The session's state for one statement: its memory pool, which the
    /// function guards also see, and for live inputs one partition and
    /// batches of one row (on endless input, more than one partition puts an
    /// order-preserving merge in front of ordered operators, which then
    /// waits for a full batch from every partition).
    fn statement_state(&self, pool: &Arc<StatementPool>, live: bool) -> SessionState {
        let state = self.ctx.state();
        // The catalog list is shared with the session: building a state must
        // not make a new (empty) default catalog in it.
        let mut config = state.config().clone().with_create_default_catalog_and_schema(false);
        config.options_mut().extensions.insert(QueryMemory(Some(pool.clone())));
        if live {
            config.options_mut().execution.target_partitions = 1;
            let _ = config.options_mut().set("datafusion.execution.batch_size", "1");
        }
        let base = state.runtime_env();
        let runtime = RuntimeEnv {
            memory_pool: pool.clone(),
            disk_manager: base.disk_manager.clone(),
            cache_manager: base.cache_manager.clone(),
            object_store_registry: base.object_store_registry.clone(),
        };
        let mut state = SessionStateBuilder::new_from_existing(state)
            .with_config(config)
            .with_runtime_env(Arc::new(runtime))
            .build();
        // The physical planner gives functions the options of this mark (and
        // `now()` its time): this statement's, with its pool.
        state.mark_start_execution();
        state
    }
}

thread_local! {
    /// Set while a statement's code runs under [`catching`]: its panics are
    /// reported as the statement's error, so the hook says nothing.
    static CATCHING: std::cell::Cell<bool> = const { std::cell::Cell::new(false) };
}

/// Calls `f`, catching a panic.
fn catching<T>(f: impl FnOnce() -> T) -> std::thread::Result<T> {
    let before = CATCHING.with(|c| c.replace(true));
    let r = std::panic::catch_unwind(std::panic::AssertUnwindSafe(f));
    CATCHING.with(|c| c.set(before));
    r
}

/// The watermark a replay starts after: just before the recording's oldest row.
fn store_start(store: &crate::store::Store) -> i64 {
    sysql_events::Table::ALL
        .iter()
        .filter_map(|t| store.span(*t))
        .map(|(min, _)| min)
        .min()
        .unwrap_or(0)
        .saturating_sub(1)
}

/// A stream that runs `task` while it is read, and stops it when dropped.
fn with_task(
    stream: SendableRecordBatchStream,
    task: impl std::future::Future<Output = ()> + Send + 'static,
) -> SendableRecordBatchStream {
    let schema = stream.schema();
    let abort = AbortOnDrop(tokio::spawn(task));
    let stream = futures::stream::unfold((stream, abort), |(mut s, abort)| async move {
        s.next().await.map(|item| (item, (s, abort)))
    });
    Box::pin(RecordBatchStreamAdapter::new(schema, stream))
}

/// Runs a future, turning a panic into the statement's error.
async fn contained<T>(f: impl std::future::Future<Output = T>) -> Result<T, QueryError> {
    let mut f = std::pin::pin!(f);
    std::future::poll_fn(move |cx| match catching(|| f.as_mut().poll(cx)) {
        Ok(Poll::Ready(v)) => Poll::Ready(Ok(v)),
        Ok(Poll::Pending) => Poll::Pending,
        Err(panic) => Poll::Ready(Err(panicked(panic))),
    })
    .await
}

/// The error of a statement that panicked.
fn panicked(payload: Box<dyn std::any::Any + Send>) -> QueryError {
    let message = payload
        .downcast_ref::<&str>()
        .map(|s| s.to_string())
        .or_else(|| payload.downcast_ref::<String>().cloned())
        .unwrap_or_else(|| "a panic".into());
    QueryError::new(ErrorKind::Execution, format!("internal error: {message} (the statement was stopped)"))
}

/// Threads whose panics are statements' (caught and reported as their
/// errors): the query runtime's workers are named with this prefix.
pub const WORKER_PREFIX: &str = "sysql-worker";

/// Installs a panic hook that says a panic in one line, and nothing for a
/// panic on a query worker (its statement reports it as its error).
pub fn install_panic_hook() {
    std::panic::set_hook(Box::new(|info| {
        let statement =
            CATCHING.with(|c| c.get()) || std::thread::current().name().is_some_and(|n| n.starts_with(WORKER_PREFIX));
        if statement {
            return;
        }
        let message = info
            .payload()
            .downcast_ref::<&str>()
            .map(|s| s.to_string())
            .or_else(|| info.payload().downcast_ref::<String>().cloned())
            .unwrap_or_default();
        let at = info.location().map(|l| format!(" at {}:{}", l.file(), l.line())).unwrap_or_default();
        eprintln!("sysql: internal error: {}{at}", error::one_line(&message));
    }));
}

/// Optimizes a plan, checks what its literals would cost, and plans it
/// physically.
async fn plan_physical(
    state: &SessionState,
    plan: &LogicalPlan,
    pool: &StatementPool,
) -> datafusion::error::Result<Arc<dyn datafusion::physical_plan::ExecutionPlan>> {
    let optimized = state.optimize(plan)?;
    memory::check_literals(&optimized, state.config().batch_size(), pool)?;
    state.query_planner().create_physical_plan(&optimized, state).await
}

/// Aborts a task when dropped (a window's evaluation, when its reader goes).
struct AbortOnDrop(tokio::task::JoinHandle<()>);

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        self.0.abort();
    }
}

fn empty_stream(schema: SchemaRef) -> SendableRecordBatchStream {
    Box::pin(RecordBatchStreamAdapter::new(schema, futures::stream::empty()))
}

/// Catalog and schema of the tables sysql keeps for itself while running a
/// statement (a window's rows): not in the user's catalog, so nothing the
/// user sees or defines collides with them.
pub const PRIVATE_CATALOG: &str = "__sysql";
pub const PRIVATE_SCHEMA: &str = "private";

/// A context with everything of `state` (its settings, functions and
/// views) plus a private schema for sysql's own tables.
pub(crate) fn private_context(state: &SessionState) -> Result<(SessionContext, Arc<MemorySchemaProvider>), QueryError> {
    let list = MemoryCatalogProviderList::new();
    let base = state.catalog_list();
    for name in base.catalog_names() {
        if let Some(catalog) = base.catalog(&name) {
            list.register_catalog(name, catalog);
        }
    }
    let private = Arc::new(MemorySchemaProvider::new());
    let catalog = MemoryCatalogProvider::new();
    catalog.register_schema(PRIVATE_SCHEMA, private.clone()).map_err(|e| QueryError::from_datafusion(&e, ""))?;
    list.register_catalog(PRIVATE_CATALOG.into(), Arc::new(catalog));
    let state = SessionStateBuilder::new_from_existing(state.clone()).with_catalog_list(Arc::new(list)).build();
    Ok((SessionContext::new_with_state(state), private))
}

/// The event tables a plan reads (history or live), directly, in a
/// subquery or through a view, each once.
fn tables_read(plan: &LogicalPlan) -> Vec<crate::Table> {
    let mut out = Vec::new();
    let _ = plan.apply_with_subqueries(|node| {
        let scanned = match node {
            LogicalPlan::TableScan(scan) => {
                if let Ok(provider) = source_as_provider(&scan.source) {
                    if let Some(view) = provider.downcast_ref::<ViewTable>() {
                        out.extend(tables_read(view.logical_plan()));
                    }
                }
                crate::Table::ALL.into_iter().find(|t| t.name() == scan.table_name.table())
            }
            _ => None,
        };
        out.extend(scanned);
        Ok(TreeNodeRecursion::Continue)
    });
    let mut unique = Vec::new();
    for t in out {
        if !unique.contains(&t) {
            unique.push(t);
        }
    }
    unique
}

/// EXPLAIN's rows, then one `kernel_filter` row per filtered table.
fn explain_with_filters(
    stream: SendableRecordBatchStream,
    filters: Vec<(String, String)>,
) -> datafusion::error::Result<SendableRecordBatchStream> {
    use datafusion::arrow::array::StringArray;
    let schema = stream.schema();
    let kinds: Vec<String> = filters.iter().map(|_| "kernel_filter".to_string()).collect();
    let lines: Vec<String> = filters.iter().map(|(t, f)| format!("{t}: {f}")).collect();
    let extra = RecordBatch::try_new(
        schema.clone(),
        vec![Arc::new(StringArray::from(kinds)), Arc::new(StringArray::from(lines))],
    )?;
    let tail = futures::stream::once(async move { Ok(extra) });
    Ok(Box::pin(RecordBatchStreamAdapter::new(schema, stream.chain(tail))))
}

/// True if the plan scans a live table, directly, in a subquery or through
/// a view.
pub fn reads_live(plan: &LogicalPlan) -> bool {
    let mut live = false;
    let _ = plan.apply_with_subqueries(|node| {
        if let LogicalPlan::TableScan(scan) = node {
            if let Ok(provider) = source_as_provider(&scan.source) {
                if provider_is_live(&provider) {
                    live = true;
                    return Ok(TreeNodeRecursion::Stop);
                }
            }
        }
        Ok(TreeNodeRecursion::Continue)
    });
    live
}

fn provider_is_live(provider: &Arc<dyn TableProvider>) -> bool {
    provider.is::<LiveTable>() || provider.downcast_ref::<ViewTable>().is_some_and(|v| reads_live(v.logical_plan()))
}
