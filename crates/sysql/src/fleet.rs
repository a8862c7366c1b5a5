//! `sysql fleet`: the coordinator. The shell, `-c` and `-f` (and their
//! output formats) over the union of the hosts' tables, through the same
//! statement path and policy as every front end; the fleet only brings the
//! context (`sysql_server::fleet::coordinator`): the hosts' tables with a
//! `host` column, `sysql_fleet`, and the distributed planner.

use crate::cli::{Args, FleetArgs};
use crate::signals::{Counts, Signals};
use crate::{backend, exit, launch};
use std::process::ExitCode;
use sysql_engine::query::{Policy, QuerySession};
use sysql_server::fleet::coordinator::{self, Fleet, FleetConfig};
use sysql_server::fleet::tls::TlsFiles;

/// The hosts of `--host` and `--hosts FILE`, in that order.
fn hosts(opts: &FleetArgs) -> Result<Vec<String>, String> {
    let mut hosts = opts.hosts.clone();
    if let Some(path) = &opts.hosts_file {
        hosts.extend(coordinator::read_hosts(path)?);
    }
    Ok(hosts)
}

/// Runs the coordinator's shell or one-shot.
pub fn main(args: Args, opts: &FleetArgs, script: Vec<String>, signals: Signals, since: Counts) -> ExitCode {
    let hosts = match hosts(opts) {
        Ok(h) => h,
        Err(e) => return exit::setup(format!("fleet: {e}")),
    };
    let config = FleetConfig {
        hosts,
        tls: TlsFiles { cert: opts.cert.clone(), key: opts.key.clone(), ca: opts.ca.clone() },
        timeout: opts.timeout,
        all_hosts: opts.all_hosts,
    };
    let fleet = match Fleet::new(config) {
        Ok(f) => f,
        Err(e) => return exit::setup(format!("fleet: {e}")),
    };
    // The coordinator keeps no history: its engine only lends the session
    // its functions and memory limits.
    let engine_config = match crate::app::engine_config(&args) {
        Ok(c) => sysql_engine::EngineConfig {
            clock_offset_ns: 0,
            containers: sysql_engine::containers::ContainersConfig::default(),
            ..c
        },
        Err(e) => return exit::setup(e),
    };
    let engine = sysql_engine::Engine::new(engine_config);
    let ctx = match coordinator::context(&fleet, &engine) {
        Ok(ctx) => ctx,
        Err(e) => return exit::setup(format!("fleet: {e}")),
    };
    // A client's policy: read-only, views for the session, no files.
    let policy = Policy { session_views: true, ..Policy::default() };
    let session = QuerySession::with_context(&engine, policy, ctx);
    let rt = match launch::runtime() {
        Ok(rt) => rt,
        Err(e) => return exit::setup(format!("cannot start the runtime: {e}")),
    };
    let banner = format!(
        "fleet of {} hosts over mutual TLS; each statement leaves out hosts that do not answer within {:?}{} (see sysql_fleet)",
        fleet.host_count(),
        opts.timeout,
        if opts.all_hosts { ", or fails with --all-hosts" } else { "" }
    );
    launch::run_client(args, backend::Backend::Embedded(session), script, signals, since, Some(banner), rt)
}
