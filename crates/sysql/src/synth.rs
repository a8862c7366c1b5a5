//! `sysql synth-recording` (hidden): writes a state directory of synthetic
//! events, as the agent writes its history, for the fleet's tests and
//! scale runs (a recording per simulated host, with answers known from the
//! files alone). Every event table gets `--rows` rows, one millisecond
//! apart from `--start`; each column's values come from a generator seeded
//! by `--seed`, the table and the column: a few process names, paths that
//! include `/etc/shadow`, HTTP methods, small numbers.

use datafusion::arrow::array::{
    ArrayRef, BooleanArray, Float64Array, Int16Array, Int32Array, Int64Array, Int8Array, ListBuilder, RecordBatch,
    StringArray, StringBuilder, StringViewArray, TimestampNanosecondArray, UInt16Array, UInt32Array, UInt64Array,
    UInt8Array,
};
use datafusion::arrow::datatypes::{DataType, Field, TimeUnit};
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;
use sysql_engine::event::Batch;
use sysql_engine::store::{Store, StoreConfig};
use sysql_engine::{Engine, EngineConfig};
use sysql_events::Table;

/// Arguments of `sysql synth-recording`.
#[derive(Debug, clap::Args)]
pub struct SynthArgs {
    /// The state directory to write (created).
    #[arg(long, value_name = "DIR")]
    pub dir: PathBuf,

    /// Rows per event table.
    #[arg(long, value_name = "N", default_value_t = 1000)]
    pub rows: usize,

    /// Seed of the values: recordings of different seeds differ.
    #[arg(long, value_name = "N", default_value_t = 1)]
    pub seed: u64,

    /// UTC nanoseconds of the first event (default 2025-12-01 00:00:00).
    #[arg(long, value_name = "NS", default_value_t = 1_764_547_200_000_000_000)]
    pub start: i64,
}

const COMMS: &[&str] = &["nginx", "curl", "sshd", "python3", "postgres", "cron", "cat"];
const FILES: &[&str] = &["/etc/shadow", "/etc/passwd", "/etc/hosts", "/var/log/syslog", "/tmp/x", "/proc/self/stat"];
const HTTP_PATHS: &[&str] = &["/", "/index.html", "/api/users", "/api/orders", "/health", "/login", "/static/app.js"];
const METHODS: &[&str] = &["GET", "GET", "GET", "POST", "PUT", "DELETE"];

/// A value for (seed, table, column, row): splitmix64.
fn value(seed: u64, table: usize, column: usize, row: usize) -> u64 {
    let mut z = seed
        .wrapping_mul(0x9E37_79B9_7F4A_7C15)
        .wrapping_add((table as u64) << 40)
        .wrapping_add((column as u64) << 24)
        .wrapping_add(row as u64);
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

fn pick<'a>(list: &[&'a str], v: u64) -> &'a str {
    list[(v % list.len() as u64) as usize]
}

/// A column of `rows` values, or `None` for a type this generator does not make.
fn column(args: &SynthArgs, table: Table, c: usize, field: &Field, rows: std::ops::Range<usize>) -> Option<ArrayRef> {
    let v = |i: usize| value(args.seed, table as usize, c, i);
    let name = field.name().as_str();
    let array: ArrayRef = match field.data_type() {
        DataType::Timestamp(TimeUnit::Nanosecond, tz) => Arc::new(
            TimestampNanosecondArray::from_iter_values(rows.map(|i| args.start + i as i64 * 1_000_000))
                .with_timezone_opt(tz.clone()),
        ),
        DataType::Utf8 | DataType::Utf8View => {
            let text = |i: usize| -> String {
                match name {
                    "comm" => pick(COMMS, v(i)).to_string(),
                    "path" if table == Table::HttpRequests => pick(HTTP_PATHS, v(i)).to_string(),
                    "path" | "filename" => pick(FILES, v(i)).to_string(),
                    "method" => pick(METHODS, v(i)).to_string(),
                    _ => format!("{name}-{}", v(i) % 5),
                }
            };
            match field.data_type() {
                DataType::Utf8 => Arc::new(StringArray::from_iter_values(rows.map(text))),
                _ => Arc::new(StringViewArray::from_iter_values(rows.map(text))),
            }
        }
        DataType::Int8 => Arc::new(Int8Array::from_iter_values(rows.map(|i| (v(i) % 100) as i8))),
        DataType::Int16 => Arc::new(Int16Array::from_iter_values(rows.map(|i| (v(i) % 1000) as i16))),
        DataType::Int32 => Arc::new(Int32Array::from_iter_values(rows.map(|i| (v(i) % 100_000) as i32))),
        DataType::Int64 => Arc::new(Int64Array::from_iter_values(rows.map(|i| (v(i) % 100_000_000) as i64))),
        DataType::UInt8 => Arc::new(UInt8Array::from_iter_values(rows.map(|i| (v(i) % 100) as u8))),
        DataType::UInt16 if name == "status" => {
            Arc::new(UInt16Array::from_iter_values(rows.map(|i| [200, 200, 200, 404, 500][(v(i) % 5) as usize])))
        }
        DataType::UInt16 => Arc::new(UInt16Array::from_iter_values(rows.map(|i| (v(i) % 65536) as u16))),
        DataType::UInt32 => Arc::new(UInt32Array::from_iter_values(rows.map(|i| (v(i) % 100_000) as u32))),
        DataType::UInt64 => Arc::new(UInt64Array::from_iter_values(rows.map(|i| v(i) % 1_000_000))),
        DataType::Float64 => Arc::new(Float64Array::from_iter_values(rows.map(|i| (v(i) % 10_000) as f64 / 10.0))),
        DataType::Boolean => Arc::new(BooleanArray::from_iter(rows.map(|i| Some(v(i) % 7 == 0)))),
        DataType::List(inner) if inner.data_type() == &DataType::Utf8 => {
            let mut b = ListBuilder::new(StringBuilder::new()).with_field(inner.clone());
            for i in rows {
                b.values().append_value(pick(COMMS, v(i)));
                b.values().append_value(format!("--arg={}", v(i) % 3));
                b.append(true);
            }
            Arc::new(b.finish())
        }
        other if field.is_nullable() => datafusion::arrow::array::new_null_array(other, rows.len()),
        _ => return None,
    };
    Some(array)
}

/// Writes the recording.
pub fn run(args: &SynthArgs) -> ExitCode {
    const CHUNK: usize = 4096;
    let config =
        StoreConfig { retain: std::time::Duration::from_secs(100 * 365 * 86400), ..StoreConfig::new(&args.dir) };
    let store = match Store::open(config) {
        Ok(s) => s,
        Err(e) => return crate::exit::setup(e),
    };
    let engine = Engine::with_store(
        EngineConfig {
            retention: std::time::Duration::from_secs(100 * 365 * 86400),
            memory_cap_bytes: 8 << 30,
            ..EngineConfig::default()
        },
        store.clone(),
    );
    for (table, schema) in sysql_engine::event_tables() {
        let mut from = 0;
        while from < args.rows {
            let rows = from..(from + CHUNK).min(args.rows);
            let columns: Option<Vec<ArrayRef>> =
                schema.fields().iter().enumerate().map(|(c, f)| column(args, table, c, f, rows.clone())).collect();
            let Some(columns) = columns else {
                eprintln!(
                    "sysql: synth-recording: {} has a column of a type this generator does not make; skipped",
                    table.name()
                );
                break;
            };
            let batch = match RecordBatch::try_new(schema.clone(), columns) {
                Ok(b) => b,
                Err(e) => return crate::exit::setup(format!("{}: {e}", table.name())),
            };
            let min_ts = args.start + rows.start as i64 * 1_000_000;
            let max_ts = args.start + (rows.end as i64 - 1) * 1_000_000;
            engine.history().insert(table, Batch { batch, min_ts, max_ts });
            from = rows.end;
        }
    }
    store.flush(engine.history(), engine.stats(), crate::app::now_ns());
    ExitCode::SUCCESS
}
