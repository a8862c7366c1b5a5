//! `sysql schedule <file or dir>...`: runs a library of saved queries on
//! their schedules over the live capture and writes their results to sinks,
//! until Ctrl-C, SIGTERM or `--for`. SIGHUP reloads the files.
//!
//! The pieces: [`library`] reads the saved query files, [`runner`] runs them,
//! [`diff`] turns results into rows added and removed, [`sink`] writes
//! records to stdout or files that [`mod@file`] rotates, [`prometheus`] serves
//! numeric results to a scraper. See docs/saved-queries.md.

pub mod diff;
pub mod file;
pub mod library;
pub mod prometheus;
pub mod runner;
pub mod sink;

use crate::cli::{Args, ScheduleArgs};
use crate::exit::SETUP_ERROR;
use crate::signals::{Counts, Sig, Signals};
use library::Library;
use runner::{Scheduler, Sessions, Settings};
use std::process::ExitCode;
use std::sync::atomic::Ordering::Relaxed;
use std::sync::Arc;
use sysql_engine::query::Policy;
use tokio::sync::Notify;

/// Checks the options and reads the saved queries, before the capture
/// starts: the exit status is 1 if there is no query to run, 2 on a set-up
/// error.
pub fn prepare(args: &Args, opts: &ScheduleArgs) -> Result<Library, ExitCode> {
    if !args.command.is_empty() || !args.file.is_empty() {
        eprintln!("sysql: schedule runs saved query files; -c and -f do not go with it");
        return Err(ExitCode::from(SETUP_ERROR));
    }
    for path in &opts.paths {
        if let Err(e) = std::fs::metadata(path) {
            eprintln!("sysql: schedule: cannot read {}: {e}", path.display());
            return Err(ExitCode::from(SETUP_ERROR));
        }
    }
    if let Some(Err(e)) = opts.prometheus.map(prometheus::check) {
        eprintln!("sysql: schedule: {e}");
        return Err(ExitCode::from(SETUP_ERROR));
    }
    let library = library::load(&opts.paths);
    if library.queries.is_empty() {
        report(&library.errors.iter().map(ToString::to_string).collect::<Vec<_>>());
        if library.errors.is_empty() {
            eprintln!("sysql: schedule: no saved query to run");
        }
        return Err(ExitCode::from(crate::exit::SQL_ERROR));
    }
    Ok(library)
}

/// Runs the schedule over a started capture; returns 0 when stopped, 1 if
/// no query could start, 2 on a set-up error.
pub fn run(
    rt: &tokio::runtime::Runtime,
    running: crate::app::Running,
    opts: &ScheduleArgs,
    library: Library,
    file_access: bool,
    signals: &Signals,
    since: Counts,
) -> ExitCode {
    signals.handle_terminate();
    let running = Arc::new(running);
    // Saved queries are single read-only statements; `--allow-file-access`
    // is the one switch that lets them touch files, as everywhere.
    let policy = Policy { file_access, files_switch: Some("--allow-file-access"), ..Policy::default() };
    let sessions: Sessions = Arc::new(move || running.session(policy.clone()));
    let settings = Settings {
        sink: opts.sink.clone(),
        results: opts.results,
        first_run: opts.first_run,
        queue_rows: opts.queue_rows.max(1),
        keep_latest: opts.prometheus.is_some(),
    };
    rt.block_on(serve(sessions, settings, opts, library, signals, since))
}

fn report(errors: &[String]) {
    for e in errors {
        eprintln!("sysql: schedule: {e}");
    }
}

fn running_line(scheduler: &Scheduler) -> String {
    let (mut total, mut live) = (0, 0);
    for (q, _) in scheduler.queries() {
        total += 1;
        live += usize::from(q.schedule == library::Schedule::Live);
    }
    format!("{total} saved queries running ({live} live)")
}

async fn serve(
    sessions: Sessions,
    settings: Settings,
    opts: &ScheduleArgs,
    library: Library,
    signals: &Signals,
    since: Counts,
) -> ExitCode {
    let listener = match opts.prometheus {
        Some(addr) => match prometheus::bind(addr).await {
            Ok(listener) => Some(listener),
            Err(e) => {
                eprintln!("sysql: schedule: {e}");
                return ExitCode::from(SETUP_ERROR);
            }
        },
        None => None,
    };
    let closed = Arc::new(Notify::new());
    let mut scheduler = Scheduler::new(sessions, settings, closed.clone());
    let exporter = listener.map(|l| tokio::spawn(prometheus::serve(l, scheduler.registry())));
    report(&scheduler.apply(&library).await);
    if scheduler.queries().next().is_none() {
        // Each file that could not start has said why, in one line.
        scheduler.shutdown().await;
        return ExitCode::from(crate::exit::SQL_ERROR);
    }
    eprintln!("sysql: schedule: {}; SIGHUP reloads the files, Ctrl-C stops", running_line(&scheduler));
    let stop = async {
        match opts.run_for {
            Some(d) => tokio::time::sleep(d).await,
            None => std::future::pending().await,
        }
    };
    tokio::pin!(stop);
    // A stop sent while sysql was starting counts; a reload then is moot
    // (the files were just read).
    let mut hangups = since;
    hangups[Sig::Hangup as usize] = signals.now()[Sig::Hangup as usize];
    loop {
        tokio::select! {
            sig = signals.after(hangups, &[Sig::Hangup, Sig::Interrupt, Sig::Terminate]) => {
                if sig != Sig::Hangup {
                    break;
                }
                hangups[Sig::Hangup as usize] = signals.now()[Sig::Hangup as usize];
                let library = library::load(&opts.paths);
                report(&scheduler.apply(&library).await);
                eprintln!("sysql: schedule: reloaded: {}", running_line(&scheduler));
            }
            _ = &mut stop => break,
            _ = closed.notified() => break,
        }
    }
    if let Some(exporter) = exporter {
        exporter.abort();
    }
    for (name, stats) in scheduler.shutdown().await {
        eprintln!(
            "sysql: schedule: {name}: {} runs, {} rows, {} dropped, {} errors",
            stats.runs.load(Relaxed),
            stats.rows.load(Relaxed),
            stats.dropped.load(Relaxed),
            stats.errors.load(Relaxed),
        );
    }
    ExitCode::SUCCESS
}
