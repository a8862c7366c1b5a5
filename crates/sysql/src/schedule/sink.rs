//! Where scheduled results go: stdout as newline-delimited JSON, or a file
//! (NDJSON or CSV) rotated by size.
//!
//! Every record carries the query's name, the time of the run (or, for a live
//! query, of the batch) and an action: `added` or `removed` (differential
//! results, and every row of a live query is `added`), `snapshot` (every row
//! of a run), or `dropped` (a count of rows lost to a slow sink). In NDJSON
//! the query's own columns are nested under `columns`, as osquery does, so
//! they never collide with the envelope:
//!
//! ```json
//! {"name":"top-files-opened","time":"2025-01-01T10:00:00.123Z","action":"added","columns":{"path":"/etc/passwd","opens":12}}
//! ```
//!
//! In CSV the envelope is the first three columns. Each sink is written by a
//! thread of its own behind a queue bounded in rows: a slow sink never holds
//! up a query, and what does not fit is counted, reported on stderr and (in
//! NDJSON) as a `dropped` record once the sink has caught up.

use datafusion::arrow::array::UInt64Array;
use datafusion::arrow::array::{Array, ArrayRef, RecordBatch, StringArray, StructArray, TimestampNanosecondArray};
use datafusion::arrow::csv::WriterBuilder as CsvWriterBuilder;
use datafusion::arrow::datatypes::DataType;
use datafusion::arrow::error::ArrowError;
use datafusion::arrow::json::writer::LineDelimited;
use datafusion::arrow::json::WriterBuilder as JsonWriterBuilder;
use datafusion::arrow::util::display::{ArrayFormatter, FormatOptions};
use std::collections::BTreeMap;
use std::fmt;
use std::io::{self, BufWriter, Write};
use std::path::{Path, PathBuf};
use std::str::FromStr;
use std::sync::atomic::{AtomicUsize, Ordering::Relaxed};
use std::sync::{Arc, Mutex};
use tokio::sync::{mpsc, Notify};

use super::file::RotatingFile;
use crate::cli::parse_size;

/// Timestamps as RFC 3339 UTC, as the rest of sysql prints them.
const TIMESTAMP_FORMAT: &str = "%Y-%m-%dT%H:%M:%S%.fZ";
const DEFAULT_MAX_BYTES: u64 = 64 << 20;
const DEFAULT_KEEP: usize = 5;
/// The Arrow memory a sink's queue may hold, whatever its row bound: a
/// queue of one-row batches costs more per row than a queue of large ones.
pub const QUEUE_BYTES: usize = 64 << 20;
/// Rows encoded and written at a time.
const CHUNK_ROWS: usize = 1024;

/// A sink as written in a header (`-- sink:`) or on the command line: the
/// path may hold `{name}`, replaced by each query's name.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SinkSpec {
    Stdout,
    File { path: String, max_bytes: u64, keep: usize },
}

impl FromStr for SinkSpec {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, String> {
        let s = s.trim();
        let err = |why: &str| format!("invalid sink '{s}': {why}");
        if s == "stdout" || s == "-" {
            return Ok(SinkSpec::Stdout);
        }
        let Some(rest) = s.strip_prefix("file:") else {
            return Err(err("expected stdout or file:PATH[,max=SIZE][,keep=N]"));
        };
        let mut parts = rest.split(',');
        let path = parts.next().unwrap_or_default().trim().to_string();
        if path.is_empty() {
            return Err(err("no path after file:"));
        }
        let (mut max_bytes, mut keep) = (DEFAULT_MAX_BYTES, DEFAULT_KEEP);
        for option in parts {
            match option.trim().split_once('=') {
                Some(("max", v)) => max_bytes = parse_size(v).map_err(|e| err(&e))?,
                Some(("keep", v)) => keep = v.trim().parse().map_err(|_| err("keep takes a number of old files"))?,
                _ => return Err(err(&format!("unknown option '{option}': expected max=SIZE or keep=N"))),
            }
        }
        if max_bytes == 0 {
            return Err(err("max must be more than 0"));
        }
        Ok(SinkSpec::File { path, max_bytes, keep })
    }
}

impl fmt::Display for SinkSpec {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            SinkSpec::Stdout => f.write_str("stdout"),
            SinkSpec::File { path, .. } => write!(f, "file:{path}"),
        }
    }
}

impl SinkSpec {
    /// The concrete sink for one query.
    pub fn target(&self, query: &str) -> Target {
        match self {
            SinkSpec::Stdout => Target::Stdout,
            SinkSpec::File { path, max_bytes, keep } => {
                Target::File { path: PathBuf::from(path.replace("{name}", query)), max_bytes: *max_bytes, keep: *keep }
            }
        }
    }
}

/// How a sink encodes records.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    NdJson,
    Csv,
}

/// One opened (or to be opened) sink; queries whose targets are equal share it.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Target {
    Stdout,
    File { path: PathBuf, max_bytes: u64, keep: usize },
}

impl Target {
    /// CSV for a file whose name ends in `.csv`, else NDJSON.
    pub fn format(&self) -> Format {
        match self {
            Target::File { path, .. } if path.extension().is_some_and(|e| e.eq_ignore_ascii_case("csv")) => Format::Csv,
            _ => Format::NdJson,
        }
    }

    pub fn path(&self) -> Option<&Path> {
        match self {
            Target::Stdout => None,
            Target::File { path, .. } => Some(path),
        }
    }
}

impl fmt::Display for Target {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Target::Stdout => f.write_str("stdout"),
            Target::File { path, .. } => write!(f, "{}", path.display()),
        }
    }
}

/// What a record says about its row.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Action {
    Added,
    Removed,
    Snapshot,
    Dropped,
}

impl Action {
    pub fn as_str(self) -> &'static str {
        match self {
            Action::Added => "added",
            Action::Removed => "removed",
            Action::Snapshot => "snapshot",
            Action::Dropped => "dropped",
        }
    }
}

/// The actions of a batch's rows.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Actions {
    All(Action),
    PerRow(Vec<Action>),
}

/// Rows of one query for a sink.
#[derive(Debug, Clone)]
pub struct Output {
    pub query: Arc<str>,
    /// UTC nanoseconds: when the run started, or when a live batch came.
    pub time_ns: i64,
    pub actions: Actions,
    pub batch: RecordBatch,
}

impl Output {
    fn action(&self, row: usize) -> Action {
        match &self.actions {
            Actions::All(a) => *a,
            Actions::PerRow(v) => v[row],
        }
    }

    /// Rows `offset..offset + len`.
    fn slice(&self, offset: usize, len: usize) -> Output {
        let actions = match &self.actions {
            Actions::All(a) => Actions::All(*a),
            Actions::PerRow(v) => Actions::PerRow(v[offset..offset + len].to_vec()),
        };
        Output { query: self.query.clone(), time_ns: self.time_ns, actions, batch: self.batch.slice(offset, len) }
    }

    /// A record that says `rows` result rows of `query` were dropped.
    fn dropped(query: Arc<str>, rows: u64, time_ns: i64) -> Output {
        let batch = RecordBatch::try_from_iter([("rows", Arc::new(UInt64Array::from(vec![rows])) as ArrayRef)])
            .expect("one column");
        Output { query, time_ns, actions: Actions::All(Action::Dropped), batch }
    }
}

/// State shared by a sink's queue and its writer.
#[derive(Debug, Default)]
struct Shared {
    /// Rows sent and not yet written.
    queued: AtomicUsize,
    /// Their Arrow memory.
    queued_bytes: AtomicUsize,
    /// Rows dropped per query and not yet reported.
    dropped: Mutex<BTreeMap<Arc<str>, u64>>,
}

impl Shared {
    fn drop_rows(&self, query: &Arc<str>, rows: usize) {
        let mut dropped = self.dropped.lock().unwrap_or_else(|e| e.into_inner());
        *dropped.entry(query.clone()).or_default() += rows as u64;
    }

    fn take_dropped(&self) -> BTreeMap<Arc<str>, u64> {
        std::mem::take(&mut *self.dropped.lock().unwrap_or_else(|e| e.into_inner()))
    }

    fn release(&self, rows: usize, bytes: usize) {
        self.queued.fetch_sub(rows, Relaxed);
        self.queued_bytes.fetch_sub(bytes, Relaxed);
    }
}

/// The sending side of a sink: queries hand it their rows and never wait.
#[derive(Debug, Clone)]
pub struct SinkQueue {
    tx: mpsc::UnboundedSender<Output>,
    shared: Arc<Shared>,
    max_rows: usize,
    max_bytes: usize,
}

/// The receiving side, for the sink's writer (or a test).
#[derive(Debug)]
pub struct SinkReceiver {
    rx: mpsc::UnboundedReceiver<Output>,
    shared: Arc<Shared>,
}

impl SinkQueue {
    /// A queue that holds at most `max_rows` rows and `max_bytes` of Arrow
    /// memory (one larger result is let into an empty queue, so a big answer
    /// is never refused outright).
    pub fn new(max_rows: usize, max_bytes: usize) -> (SinkQueue, SinkReceiver) {
        let (tx, rx) = mpsc::unbounded_channel();
        let shared = Arc::new(Shared::default());
        (SinkQueue { tx, shared: shared.clone(), max_rows, max_bytes }, SinkReceiver { rx, shared })
    }

    /// Queues `out`; if it does not fit, drops it, counts its rows and
    /// returns false. Empty outputs are not sent.
    pub fn send(&self, out: Output) -> bool {
        let n = out.batch.num_rows();
        if n == 0 {
            return true;
        }
        let bytes = out.batch.get_array_memory_size();
        let before = self.shared.queued.fetch_add(n, Relaxed);
        let before_bytes = self.shared.queued_bytes.fetch_add(bytes, Relaxed);
        let full = before + n > self.max_rows || before_bytes + bytes > self.max_bytes;
        if before > 0 && full {
            self.shared.release(n, bytes);
            self.shared.drop_rows(&out.query, n);
            return false;
        }
        let query = out.query.clone();
        if self.tx.send(out).is_err() {
            self.shared.release(n, bytes);
            self.shared.drop_rows(&query, n);
            return false;
        }
        true
    }
}

impl SinkReceiver {
    /// The next output, waiting for it (from a thread outside the runtime).
    pub fn blocking_recv(&mut self) -> Option<Output> {
        self.rx.blocking_recv()
    }

    /// The next output, waiting for it.
    pub async fn recv(&mut self) -> Option<Output> {
        self.rx.recv().await
    }

    /// The next output if one is queued.
    pub fn try_recv(&mut self) -> Option<Output> {
        self.rx.try_recv().ok()
    }

    /// Marks `out` as written: its rows leave the queue's bound.
    pub fn done(&self, out: &Output) {
        self.shared.release(out.batch.num_rows(), out.batch.get_array_memory_size());
    }

    /// Rows dropped since the last call, per query.
    pub fn take_dropped(&self) -> BTreeMap<Arc<str>, u64> {
        self.shared.take_dropped()
    }
}

/// Encodes outputs as bytes in a sink's format.
pub fn encode(format: Format, out: &Output, header: bool) -> Result<Vec<u8>, ArrowError> {
    let n = out.batch.num_rows();
    let name: ArrayRef = Arc::new(StringArray::from_iter_values(std::iter::repeat_n(&*out.query, n)));
    let time: ArrayRef = Arc::new(TimestampNanosecondArray::from(vec![out.time_ns; n]).with_timezone("UTC"));
    let action: ArrayRef = Arc::new(StringArray::from_iter_values((0..n).map(|i| out.action(i).as_str())));
    let mut buf = Vec::new();
    match format {
        Format::NdJson => {
            let columns: ArrayRef = Arc::new(StructArray::from(out.batch.clone()));
            let batch =
                RecordBatch::try_from_iter([("name", name), ("time", time), ("action", action), ("columns", columns)])?;
            let mut writer = JsonWriterBuilder::new()
                .with_explicit_nulls(true)
                .with_timestamp_format(TIMESTAMP_FORMAT.to_string())
                .build::<_, LineDelimited>(&mut buf);
            writer.write(&batch)?;
            writer.finish()?;
        }
        Format::Csv => {
            let mut columns = vec![("name".to_string(), name), ("time".into(), time), ("action".into(), action)];
            for (field, column) in out.batch.schema().fields().iter().zip(out.batch.columns()) {
                columns.push((field.name().clone(), flat(column)?));
            }
            let batch = RecordBatch::try_from_iter(columns)?;
            CsvWriterBuilder::new()
                .with_header(header)
                .with_timestamp_format(TIMESTAMP_FORMAT.to_string())
                .build(&mut buf)
                .write(&batch)?;
        }
    }
    Ok(buf)
}

/// CSV holds no lists or structs: those become their text (`[ls, -l]`).
fn flat(column: &ArrayRef) -> Result<ArrayRef, ArrowError> {
    if !column.data_type().is_nested() && !matches!(column.data_type(), DataType::Dictionary(..)) {
        return Ok(column.clone());
    }
    let options = FormatOptions::new().with_null("");
    let formatter = ArrayFormatter::try_new(column.as_ref(), &options)?;
    let values = (0..column.len()).map(|i| column.is_valid(i).then(|| formatter.value(i).to_string()));
    Ok(Arc::new(values.collect::<StringArray>()))
}

/// Where a writer thread puts its bytes.
enum Dest {
    Stdout(BufWriter<io::Stdout>),
    File(RotatingFile),
}

impl Dest {
    /// Writes `out` a slice of rows at a time, so a file rotates within a
    /// large result too; a CSV file starts with its header.
    fn write(&mut self, format: Format, out: &Output) -> io::Result<()> {
        let other = io::Error::other;
        for start in (0..out.batch.num_rows()).step_by(CHUNK_ROWS) {
            let chunk = out.slice(start, CHUNK_ROWS.min(out.batch.num_rows() - start));
            let body = encode(format, &chunk, false).map_err(other)?;
            match self {
                Dest::Stdout(w) => w.write_all(&body)?,
                Dest::File(f) => {
                    let header = || encode(format, &out.slice(0, 0), true).map_err(other);
                    f.write(&body, (format == Format::Csv).then_some(header))?;
                }
            }
        }
        Ok(())
    }

    fn flush(&mut self) -> io::Result<()> {
        match self {
            Dest::Stdout(w) => w.flush(),
            Dest::File(f) => f.flush(),
        }
    }
}

/// A sink's writer thread and the queue that feeds it.
pub struct Sink {
    pub queue: SinkQueue,
    thread: std::thread::JoinHandle<()>,
}

impl Sink {
    /// Opens `target` (a file is created now, so an unwritable one fails
    /// here) and starts its writer. A closed stdout (`| head`) notifies `closed`.
    pub fn open(target: &Target, max_rows: usize, closed: Arc<Notify>) -> io::Result<Sink> {
        let dest = match target {
            Target::Stdout => Dest::Stdout(BufWriter::with_capacity(64 << 10, io::stdout())),
            Target::File { path, max_bytes, keep } => Dest::File(RotatingFile::open(path, *max_bytes, *keep)?),
        };
        let (queue, rx) = SinkQueue::new(max_rows, QUEUE_BYTES);
        let (label, format) = (target.to_string(), target.format());
        let thread = std::thread::Builder::new()
            .name("sysql-sink".into())
            .spawn(move || write_loop(rx, dest, format, &label, &closed))?;
        Ok(Sink { queue, thread })
    }

    /// Waits until everything queued is written. Call it after every sender
    /// (the queries' copies of the queue too) is gone.
    pub fn close(self) {
        drop(self.queue);
        let _ = self.thread.join();
    }
}

/// Whether a sink's writes fail. A failure is said once, and recovery once
/// a flush gets everything out again.
struct Health<'a> {
    label: &'a str,
    closed: &'a Notify,
    /// While writes fail: the rows lost so far.
    failing: Option<u64>,
}

impl Health<'_> {
    /// Notes a failed write of `rows` rows; false if the sink is gone for
    /// good (a closed stdout).
    fn failed(&mut self, e: io::Error, rows: usize, dest: &Dest) -> bool {
        if e.kind() == io::ErrorKind::BrokenPipe && matches!(dest, Dest::Stdout(_)) {
            self.closed.notify_one();
            return false;
        }
        match &mut self.failing {
            Some(lost) => *lost += rows as u64,
            None => {
                eprintln!("sysql: schedule: cannot write to {}: {e}; results are lost until it can", self.label);
                self.failing = Some(rows as u64);
            }
        }
        true
    }

    fn flushed(&mut self) {
        if let Some(lost) = self.failing.take() {
            eprintln!("sysql: schedule: writing to {} again ({lost} result rows lost)", self.label);
        }
    }
}

fn write_loop(mut rx: SinkReceiver, mut dest: Dest, format: Format, label: &str, closed: &Notify) {
    let mut health = Health { label, closed, failing: None };
    while let Some(out) = rx.blocking_recv() {
        let written = dest.write(format, &out);
        rx.done(&out);
        if let Err(e) = written {
            if !health.failed(e, out.batch.num_rows(), &dest) {
                return;
            }
        }
        if !rx.rx.is_empty() {
            continue;
        }
        // Caught up: flush, and say what was dropped meanwhile.
        match dest.flush() {
            Err(e) => {
                if !health.failed(e, 0, &dest) {
                    return;
                }
            }
            Ok(()) => health.flushed(),
        }
        for (query, rows) in rx.take_dropped() {
            eprintln!("sysql: schedule: {label} could not keep up: {rows} result rows of {query} dropped");
            if format == Format::NdJson {
                if let Err(e) = dest.write(format, &Output::dropped(query, rows, crate::app::now_ns())) {
                    if !health.failed(e, 0, &dest) {
                        return;
                    }
                }
            }
        }
    }
    for (query, rows) in rx.take_dropped() {
        eprintln!("sysql: schedule: {label}: {rows} result rows of {query} dropped");
    }
    let _ = dest.flush();
}

#[cfg(test)]
mod tests {
    use super::*;
    use datafusion::arrow::array::{Int64Array, ListBuilder, StringBuilder};

    fn u64_column(values: &[u64]) -> ArrayRef {
        Arc::new(UInt64Array::from(values.to_vec()))
    }

    fn batch() -> RecordBatch {
        let mut argv = ListBuilder::new(StringBuilder::new());
        argv.values().append_value("ls");
        argv.values().append_value("-l");
        argv.append(true);
        argv.append(false);
        RecordBatch::try_from_iter([
            ("pid", Arc::new(Int64Array::from(vec![1, 2])) as ArrayRef),
            ("comm", Arc::new(StringArray::from(vec![Some("ls"), None])) as ArrayRef),
            ("argv", Arc::new(argv.finish()) as ArrayRef),
        ])
        .unwrap()
    }

    fn output(actions: Actions) -> Output {
        Output { query: "q".into(), time_ns: 1_700_000_000_000_000_000, actions, batch: batch() }
    }

    #[test]
    fn ndjson_nests_the_columns() {
        let out = output(Actions::PerRow(vec![Action::Removed, Action::Added]));
        let text = String::from_utf8(encode(Format::NdJson, &out, false).unwrap()).unwrap();
        assert_eq!(
            text,
            "{\"name\":\"q\",\"time\":\"2023-11-14T22:13:20Z\",\"action\":\"removed\",\
             \"columns\":{\"pid\":1,\"comm\":\"ls\",\"argv\":[\"ls\",\"-l\"]}}\n\
             {\"name\":\"q\",\"time\":\"2023-11-14T22:13:20Z\",\"action\":\"added\",\
             \"columns\":{\"pid\":2,\"comm\":null,\"argv\":null}}\n"
        );
        let dropped = Output::dropped("q".into(), 7, 0);
        let text = String::from_utf8(encode(Format::NdJson, &dropped, false).unwrap()).unwrap();
        assert_eq!(
            text,
            "{\"name\":\"q\",\"time\":\"1970-01-01T00:00:00Z\",\"action\":\"dropped\",\"columns\":{\"rows\":7}}\n"
        );
    }

    #[test]
    fn csv_flattens_lists() {
        let text = String::from_utf8(encode(Format::Csv, &output(Actions::All(Action::Snapshot)), true).unwrap());
        assert_eq!(
            text.unwrap(),
            "name,time,action,pid,comm,argv\nq,2023-11-14T22:13:20Z,snapshot,1,ls,\"[ls, -l]\"\nq,2023-11-14T22:13:20Z,snapshot,2,,\n"
        );
    }

    #[test]
    fn sink_specs() {
        assert_eq!("stdout".parse::<SinkSpec>(), Ok(SinkSpec::Stdout));
        let spec: SinkSpec = "file:/var/log/{name}.csv,max=1MiB,keep=2".parse().unwrap();
        let target = spec.target("top");
        assert_eq!(target, Target::File { path: "/var/log/top.csv".into(), max_bytes: 1 << 20, keep: 2 });
        assert_eq!(target.format(), Format::Csv);
        assert_eq!("file:x.ndjson".parse::<SinkSpec>().unwrap().target("a").format(), Format::NdJson);
        for bad in ["syslog", "file:", "file:x,max=big", "file:x,size=1", "file:x,max=0"] {
            assert!(bad.parse::<SinkSpec>().unwrap_err().starts_with(&format!("invalid sink '{bad}'")), "{bad}");
        }
    }

    #[test]
    fn queue_is_bounded_in_rows_and_counts_what_it_drops() {
        let (queue, mut rx) = SinkQueue::new(3, usize::MAX);
        assert!(queue.send(output(Actions::All(Action::Added))));
        assert!(!queue.send(output(Actions::All(Action::Added))), "2 + 2 rows > 3");
        let out = rx.try_recv().unwrap();
        rx.done(&out);
        // an empty queue takes a result larger than the bound
        let big = Output { batch: RecordBatch::try_from_iter([("x", u64_column(&[1, 2, 3, 4]))]).unwrap(), ..out };
        assert!(queue.send(big));
        assert!(rx.try_recv().is_some());
        assert_eq!(rx.take_dropped().into_iter().collect::<Vec<_>>(), vec![("q".into(), 2)]);
        assert!(rx.take_dropped().is_empty());

        // the memory bound applies too
        let (queue, _rx) = SinkQueue::new(100, 1);
        assert!(queue.send(output(Actions::All(Action::Added))), "an empty queue takes one");
        assert!(!queue.send(output(Actions::All(Action::Added))));
    }

    #[test]
    fn files_rotate_by_size_and_csv_headers_start_each_file() {
        let dir = std::env::temp_dir().join(format!("sysql-sink-test-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("out.csv");
        let target = Target::File { path: path.clone(), max_bytes: 150, keep: 2 };
        let sink = Sink::open(&target, 100, Arc::new(Notify::new())).unwrap();
        for _ in 0..6 {
            assert!(sink.queue.send(output(Actions::All(Action::Added))));
        }
        sink.close();
        let read = |p: PathBuf| std::fs::read_to_string(p).unwrap();
        let current = read(path.clone());
        assert!(current.starts_with("name,time,action,pid,comm,argv\n"), "{current}");
        assert!(read(dir.join("out.csv.1")).starts_with("name,time,"));
        assert!(read(dir.join("out.csv.2")).starts_with("name,time,"));
        assert!(!dir.join("out.csv.3").exists(), "keep=2");
        assert!(current.len() <= 150);
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn an_unwritable_file_fails_at_open() {
        let target = Target::File { path: "/nonexistent-dir/x.ndjson".into(), max_bytes: 1, keep: 0 };
        let err = Sink::open(&target, 1, Arc::new(Notify::new())).err().unwrap();
        assert_eq!(err.kind(), io::ErrorKind::NotFound);
    }
}
