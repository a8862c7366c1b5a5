//! The worker side: `datafusion-distributed`'s worker service on TCP with
//! mutual TLS, decoding host scans over this engine's tables and running
//! only the plans [`allow`](super::allow) lets through. Its session has the
//! engine's functions (sysql's LIKE, the memory-guarded functions), and its
//! statements share one memory cap and never spill to disk, as the agent's
//! own do.

use super::scan::FleetCodec;
use super::tls::TlsFiles;
use datafusion::execution::disk_manager::{DiskManagerBuilder, DiskManagerMode};
use datafusion::execution::runtime_env::RuntimeEnvBuilder;
use datafusion::execution::SessionState;
use datafusion_distributed::{
    DistributedExt, Worker, WorkerPlanRewriteEvent, WorkerPlanRewriteEventResponse, WorkerQueryContext,
};
use std::future::Future;
use std::sync::Arc;
use sysql_engine::Engine;
use tokio::net::TcpListener;

/// The worker for an engine, reporting sysql's version.
pub fn worker(engine: &Engine) -> Result<Worker, String> {
    let runtime = RuntimeEnvBuilder::new()
        .with_memory_limit(engine.config().queries_memory_bytes, 1.0)
        .with_disk_manager_builder(DiskManagerBuilder::default().with_mode(DiskManagerMode::Disabled))
        .build_arc()
        .map_err(|e| format!("cannot make the worker's runtime: {e}"))?;
    let functions = engine.session().map_err(|e| format!("cannot make the worker's session: {e}"))?.state();
    let functions = Arc::new(functions);
    let engine = engine.clone();
    let builder = move |ctx: WorkerQueryContext| {
        let engine = engine.clone();
        let functions = functions.clone();
        async move { Ok::<_, datafusion::error::DataFusionError>(session(ctx, &engine, &functions)) }
    };
    Ok(Worker::from_session_builder(builder).with_runtime_env(runtime).with_version(crate::VERSION))
}

fn session(ctx: WorkerQueryContext, engine: &Engine, functions: &SessionState) -> SessionState {
    let mut builder = ctx.builder;
    let mut scalar: Vec<_> = builder.scalar_functions().clone().unwrap_or_default();
    scalar.extend(functions.scalar_functions().values().cloned());
    let mut aggregate: Vec<_> = builder.aggregate_functions().clone().unwrap_or_default();
    aggregate.extend(functions.aggregate_functions().values().cloned());
    builder
        .with_scalar_functions(scalar)
        .with_aggregate_functions(aggregate)
        .with_distributed_user_codec(FleetCodec { engine: Some(engine.clone()) })
        .with_distributed_worker_plan_rewrite_handler(allowed_only)
        .build()
}

/// The worker's plan hook: the allow-list, before a plan is registered.
fn allowed_only(ev: WorkerPlanRewriteEvent) -> datafusion::error::Result<WorkerPlanRewriteEventResponse> {
    super::allow::check(&ev.plan)?;
    Ok(WorkerPlanRewriteEventResponse::new(ev.plan))
}

/// Serves the worker on `listener` with mutual TLS until `stop` resolves.
pub async fn serve(
    engine: Engine,
    listener: TcpListener,
    tls: &TlsFiles,
    stop: impl Future<Output = ()> + Send + 'static,
) -> Result<(), String> {
    // tonic's server takes the process's crypto provider: ring, as the
    // Postgres endpoint's TLS (set once; a second call changes nothing).
    let _ = pgwire_server::tokio::tokio_rustls::rustls::crypto::ring::default_provider().install_default();
    let worker = worker(&engine)?;
    let server = tonic::transport::Server::builder()
        .tls_config(tls.server()?)
        .map_err(|e| format!("the fleet's TLS: {e}"))?
        .add_service(worker.into_worker_server());
    let incoming = tokio_stream::wrappers::TcpListenerStream::new(listener);
    server.serve_with_incoming_shutdown(incoming, stop).await.map_err(|e| format!("the fleet worker stopped: {e}"))
}
