//! The sysql binary's building blocks, as a library so the integration tests
//! drive exactly what users run: `app` wires capture to engine, `backend`
//! says where statements run, `exec` runs statement text and prints it
//! (`print`), `repl` is the shell, `oneshot` the `-c`/`-f` mode, `schedule`
//! runs saved queries on their schedules, `launch` the start-up order,
//! `signals` takes the signals, `terminal` the terminal's size and the
//! pager, `chart` bars and sparklines, `exit` the exit statuses, `cli` the
//! arguments, `fleet` the coordinator over many agents, `bench_pipeline`
//! the hidden pipeline micro-benchmark, `synth` the hidden synthetic
//! recordings.

pub mod agent;
pub mod app;
pub mod backend;
pub mod bench_pipeline;
pub mod chart;
pub mod cli;
pub mod exec;
pub mod exit;
pub mod fleet;
pub mod launch;
pub mod oneshot;
pub mod print;
pub mod privilege;
pub mod repl;
pub mod schedule;
pub mod signals;
pub mod status;
pub mod synth;
pub mod terminal;
