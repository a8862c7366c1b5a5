//! Durable history: the agent writes each table's history to a state
//! directory as Parquet files, and a query sees memory and disk as one
//! table.
//!
//! Layout: `<dir>/<table>/date=YYYY-MM-DD/hour=HH/<min_ts>-<max_ts>-<first_id>-<last_id>.parquet`
//! (times in UTC nanoseconds, partitioned by the hour of the file's oldest
//! row), written under a `.tmp` name and renamed when complete, zstd, with
//! row-group statistics. Any Parquet reader reads them as they are
//! (DuckDB: `read_parquet('<dir>/opens/**/*.parquet', hive_partitioning = true)`).
//!
//! Every flush interval (10 s by default) the writer takes each table's
//! history entries not written yet (sealing them, see [`crate::history`])
//! and the entries that left memory before being written (the spill), and
//! writes them to one new file, one row group per entry, with the entries'
//! ids and the table's loss counters for the interval in the file's
//! metadata. A query reads memory's entries, and from the store only ids
//! below the oldest id in memory, so no row is read twice and none is
//! missed. After a `kill -9` at most one flush interval is lost; the next
//! start says so in `sysql_gaps` and `sysql_stats`.
//!
//! Retention: files whose newest row is older than `retain` are removed,
//! then the oldest files while the directory is over `disk_cap`; their rows
//! are counted per table (`disk_removed`). Files that left memory (every
//! row group below the oldest id in memory) are compacted, per table and
//! hour, into one file with larger row groups.

mod files;
pub mod read;
pub mod replay;

use crate::event::Batch;
use crate::history::{Entry, History, Spill};
use crate::stats::Stats;
use files::FileInfo;
use std::collections::VecDeque;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use sysql_events::{Table, TABLE_COUNT};

/// How the store keeps history on disk.
#[derive(Debug, Clone)]
pub struct StoreConfig {
    /// The state directory (`/var/lib/sysql`).
    pub dir: PathBuf,
    /// Files whose newest row is older than this are removed.
    pub retain: Duration,
    /// Past this many bytes of files, the oldest are removed.
    pub disk_cap: u64,
    /// How often history is written: at most this much is lost to a `kill -9`.
    pub flush_interval: Duration,
    /// Memory for entries that left memory before they were written (a
    /// storm faster than the disk, a full disk); past it the oldest are
    /// dropped, and counted in `disk_unwritten`.
    pub pending_cap: usize,
}

impl StoreConfig {
    pub fn new(dir: impl Into<PathBuf>) -> Self {
        StoreConfig {
            dir: dir.into(),
            retain: Duration::from_secs(7 * 86400),
            disk_cap: 2 << 30,
            flush_interval: Duration::from_secs(10),
            pending_cap: 256 << 20,
        }
    }
}

/// Counters of the store, per table.
#[derive(Debug, Default)]
pub struct DiskStats {
    /// Rows removed by retention or the disk cap.
    pub removed: AtomicU64,
    /// Rows that could not be written: dropped from the spill (full), or a
    /// write that failed and was given up.
    pub unwritten: AtomicU64,
}

/// A time sysql did not capture.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Gap {
    pub start_ns: i64,
    pub end_ns: i64,
    pub reason: String,
}

#[derive(Debug, Default)]
struct State {
    files: [Vec<Arc<FileInfo>>; TABLE_COUNT],
    /// Entries that left memory unwritten, oldest first.
    pending: [VecDeque<Entry>; TABLE_COUNT],
    pending_bytes: usize,
    /// The last write error said (said once until a write succeeds).
    failing: Option<String>,
}

/// The durable part of history.
#[derive(Debug)]
pub struct Store {
    config: StoreConfig,
    state: Mutex<State>,
    /// Per table: every entry with a smaller id is on disk (or was dropped).
    written: [AtomicU64; TABLE_COUNT],
    disk: [DiskStats; TABLE_COUNT],
    /// Per table: the loss counters at the last file written (to put the
    /// interval's losses in the next file's metadata).
    last_counts: Mutex<[[u64; 5]; TABLE_COUNT]>,
    gaps: Mutex<Vec<Gap>>,
    /// Write errors since start.
    pub write_errors: AtomicU64,
    read_only: bool,
}

/// Why a state directory cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("cannot use the state directory {0}: {1}")]
    Dir(PathBuf, std::io::Error),
    #[error("{0} is not a sysql state directory (it has none of the tables' directories)")]
    NotState(PathBuf),
}

impl Store {
    /// Opens (creating it if needed) a state directory to write to.
    pub fn open(config: StoreConfig) -> Result<Arc<Store>, StoreError> {
        std::fs::create_dir_all(&config.dir).map_err(|e| StoreError::Dir(config.dir.clone(), e))?;
        Self::load(config, false)
    }

    /// Opens a state directory (or a copy of one) to read only: a recording.
    pub fn open_read_only(dir: &Path) -> Result<Arc<Store>, StoreError> {
        let meta = std::fs::metadata(dir).map_err(|e| StoreError::Dir(dir.to_path_buf(), e))?;
        if !meta.is_dir() {
            return Err(StoreError::NotState(dir.to_path_buf()));
        }
        if !Table::ALL.iter().any(|t| dir.join(t.name()).is_dir()) {
            return Err(StoreError::NotState(dir.to_path_buf()));
        }
        Self::load(StoreConfig::new(dir), true)
    }

    fn load(config: StoreConfig, read_only: bool) -> Result<Arc<Store>, StoreError> {
        let mut state = State::default();
        let written: [AtomicU64; TABLE_COUNT] = Default::default();
        for t in Table::ALL {
            let files = files::scan(&config.dir.join(t.name()), !read_only)
                .map_err(|e| StoreError::Dir(config.dir.clone(), e))?;
            let next = files.iter().map(|f| f.last_id + 1).max().unwrap_or(0);
            written[t as usize].store(next, Relaxed);
            state.files[t as usize] = files.into_iter().map(Arc::new).collect();
        }
        Ok(Arc::new(Store {
            config,
            state: Mutex::new(state),
            written,
            disk: Default::default(),
            last_counts: Mutex::new([[0; 5]; TABLE_COUNT]),
            gaps: Mutex::new(Vec::new()),
            write_errors: AtomicU64::new(0),
            read_only,
        }))
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    pub fn config(&self) -> &StoreConfig {
        &self.config
    }

    /// Rows of `table` not written yet: in memory past what is written, and
    /// spilled (a full disk makes this grow; it falls back once writes
    /// succeed again).
    pub fn waiting(&self, table: Table, history: &History) -> u64 {
        let t = table as usize;
        let spilled: u64 = self.lock().pending[t].iter().map(|e| e.batch.num_rows() as u64).sum();
        spilled + history.rows_from(table, self.written[t].load(Relaxed))
    }

    /// The first id of each table's entries to come (after those on disk).
    pub fn next_ids(&self) -> [u64; TABLE_COUNT] {
        std::array::from_fn(|t| self.written[t].load(Relaxed))
    }

    pub fn disk_stats(&self, table: Table) -> &DiskStats {
        &self.disk[table as usize]
    }

    /// Rows and bytes of a table's files.
    pub fn usage(&self, table: Table) -> (u64, u64) {
        let state = self.lock();
        let files = &state.files[table as usize];
        (files.iter().map(|f| f.rows).sum(), files.iter().map(|f| f.bytes).sum())
    }

    /// The oldest and newest `ts` on disk of a table.
    pub fn span(&self, table: Table) -> Option<(i64, i64)> {
        let state = self.lock();
        let files = &state.files[table as usize];
        Some((files.iter().map(|f| f.min_ts).min()?, files.iter().map(|f| f.max_ts).max()?))
    }

    /// Bytes of all files.
    pub fn disk_bytes(&self) -> u64 {
        let state = self.lock();
        state.files.iter().flatten().map(|f| f.bytes).sum()
    }

    /// The gaps in capture this directory holds.
    pub fn gaps(&self) -> Vec<Gap> {
        self.gaps.lock().unwrap_or_else(|e| e.into_inner()).clone()
    }

    /// Records a gap (from the agent's state file at start).
    pub fn add_gap(&self, gap: Gap) {
        self.gaps.lock().unwrap_or_else(|e| e.into_inner()).push(gap);
    }

    /// What a query of `table` reads from the store: files and spilled
    /// entries with ids below `first_id` (the oldest in memory), that may
    /// hold rows with `lo <= ts <= hi`.
    pub fn snapshot(&self, table: Table, lo: i64, hi: i64, first_id: u64) -> read::DiskSnapshot {
        let state = self.lock();
        let t = table as usize;
        let pending = state.pending[t]
            .iter()
            .filter(|e| e.id < first_id && e.max_ts >= lo && e.min_ts <= hi)
            .map(|e| e.batch.clone())
            .collect();
        let files = state.files[t]
            .iter()
            .filter(|f| f.first_id < first_id && f.max_ts >= lo && f.min_ts <= hi)
            .filter_map(|f| {
                let groups = f.row_groups_below(first_id, lo, hi);
                (!groups.is_empty()).then(|| (f.clone(), groups))
            })
            .collect();
        read::DiskSnapshot { pending, files }
    }

    /// Writes what history holds that is not on disk yet, then applies
    /// retention and compacts. Returns the rows written.
    pub fn flush(&self, history: &History, stats: &Stats, now_ns: i64) -> u64 {
        if self.read_only {
            return 0;
        }
        let mut written = 0;
        for table in Table::ALL {
            written += self.flush_table(history, stats, table);
        }
        self.apply_retention(now_ns);
        for table in Table::ALL {
            let first_id = history.snapshot_ids(table, Some(i64::MAX), None).first_id;
            if let Err(e) = self.compact(table, first_id) {
                self.failed(&format!("compacting {}: {e}", table.name()));
            }
        }
        written
    }

    fn failed(&self, message: &str) {
        self.write_errors.fetch_add(1, Relaxed);
        let mut state = self.lock();
        if state.failing.as_deref() != Some(message) {
            eprintln!("sysql: agent: cannot write history: {message}; it stays in memory and is counted if dropped");
            state.failing = Some(message.to_string());
        }
    }

    fn flush_table(&self, history: &History, stats: &Stats, table: Table) -> u64 {
        let t = table as usize;
        let from = self.written[t].load(Relaxed);
        let mut entries: Vec<Entry> = self.lock().pending[t].iter().cloned().collect();
        entries.extend(history.seal_from(table, from));
        entries.sort_by_key(|e| e.id);
        entries.dedup_by_key(|e| e.id);
        if entries.is_empty() {
            return 0;
        }
        let counts = table_counts(stats, table);
        let losses = {
            let last = self.last_counts.lock().unwrap_or_else(|e| e.into_inner());
            std::array::from_fn::<u64, 5, _>(|i| counts[i].saturating_sub(last[t][i]))
        };
        match files::write(&self.config.dir.join(table.name()), table, &entries, &losses, &[]) {
            Ok(info) => {
                let rows = info.rows;
                let last_id = info.last_id;
                let mut state = self.lock();
                state.failing = None;
                let ids: std::collections::HashSet<u64> = entries.iter().map(|e| e.id).collect();
                let before = state.pending[t].len();
                let mut freed = 0;
                state.pending[t].retain(|e| {
                    let keep = !ids.contains(&e.id);
                    if !keep {
                        freed += e.bytes;
                    }
                    keep
                });
                state.pending_bytes = state.pending_bytes.saturating_sub(freed);
                let _ = before;
                state.files[t].push(Arc::new(info));
                self.written[t].fetch_max(last_id + 1, Relaxed);
                self.last_counts.lock().unwrap_or_else(|e| e.into_inner())[t] = counts;
                rows
            }
            Err(e) => {
                self.failed(&e.to_string());
                0
            }
        }
    }

    /// Removes files past the retention period, then the oldest while the
    /// directory is over its cap.
    fn apply_retention(&self, now_ns: i64) {
        let horizon = now_ns.saturating_sub(i64::try_from(self.config.retain.as_nanos()).unwrap_or(i64::MAX));
        let mut state = self.lock();
        let mut removed: Vec<(usize, Arc<FileInfo>)> = Vec::new();
        for (t, files) in state.files.iter_mut().enumerate() {
            files.retain(|f| {
                let keep = f.max_ts >= horizon;
                if !keep {
                    removed.push((t, f.clone()));
                }
                keep
            });
        }
        let mut total: u64 = state.files.iter().flatten().map(|f| f.bytes).sum();
        while total > self.config.disk_cap {
            // the file holding the oldest rows, whichever table it is of
            let oldest = (0..TABLE_COUNT)
                .filter_map(|t| {
                    state.files[t].iter().enumerate().min_by_key(|(_, f)| f.min_ts).map(|(i, f)| (t, i, f.min_ts))
                })
                .min_by_key(|&(_, _, ts)| ts);
            let Some((t, i, _)) = oldest else { break };
            let f = state.files[t].remove(i);
            total = total.saturating_sub(f.bytes);
            removed.push((t, f));
        }
        drop(state);
        for (t, f) in removed {
            self.disk[t].removed.fetch_add(f.rows, Relaxed);
            f.remove();
        }
    }

    /// Merges a table's files that left memory, per hour, once there are
    /// enough of them.
    fn compact(&self, table: Table, first_id: u64) -> std::io::Result<()> {
        const MIN_FILES: usize = 16;
        let t = table as usize;
        let groups: Vec<Vec<Arc<FileInfo>>> = {
            let state = self.lock();
            let mut by_hour: std::collections::BTreeMap<PathBuf, Vec<Arc<FileInfo>>> = Default::default();
            for f in &state.files[t] {
                if f.last_id < first_id {
                    if let Some(dir) = f.path.parent() {
                        by_hour.entry(dir.to_path_buf()).or_default().push(f.clone());
                    }
                }
            }
            by_hour.into_values().filter(|g| g.len() >= MIN_FILES).collect()
        };
        for group in groups {
            let merged = files::compact(&self.config.dir.join(table.name()), table, &group)?;
            let mut state = self.lock();
            let names: std::collections::HashSet<&Path> = group.iter().map(|f| f.path.as_path()).collect();
            state.files[t].retain(|f| !names.contains(f.path.as_path()));
            state.files[t].push(Arc::new(merged));
            drop(state);
            for f in group {
                f.remove();
            }
        }
        Ok(())
    }
}

impl Spill for Store {
    fn spill(&self, table: Table, entry: Entry) {
        let t = table as usize;
        let mut state = self.lock();
        state.pending_bytes += entry.bytes;
        state.pending[t].push_back(entry);
        // Past the cap, the oldest spilled entries (of the table with the
        // most) are dropped: counted as unwritten.
        while state.pending_bytes > self.config.pending_cap {
            let largest = (0..TABLE_COUNT).max_by_key(|&i| state.pending[i].iter().map(|e| e.bytes).sum::<usize>());
            let Some(i) = largest else { break };
            let Some(e) = state.pending[i].pop_front() else { break };
            state.pending_bytes = state.pending_bytes.saturating_sub(e.bytes);
            self.disk[i].unwritten.fetch_add(e.batch.num_rows() as u64, Relaxed);
        }
    }

    fn written_up_to(&self, table: Table) -> u64 {
        self.written[table as usize].load(Relaxed)
    }
}

/// The loss counters of a table recorded in each file: captured,
/// lost_kernel, lost_user, decode_errors, truncated.
fn table_counts(stats: &Stats, table: Table) -> [u64; 5] {
    let s = stats.table(table);
    [
        s.captured.load(Relaxed),
        s.lost_kernel.load(Relaxed),
        s.lost_user.load(Relaxed),
        s.decode_errors.load(Relaxed),
        s.truncated.load(Relaxed),
    ]
}

/// Names of the counters [`table_counts`] gives, as file metadata keys.
pub const COUNT_KEYS: [&str; 5] =
    ["sysql.captured", "sysql.lost_kernel", "sysql.lost_user", "sysql.decode_errors", "sysql.truncated"];

/// A batch as history holds it, for tests that write files directly.
pub fn entry(id: u64, batch: Batch) -> Entry {
    Entry {
        id,
        bytes: batch.batch.get_array_memory_size(),
        batch: batch.batch,
        min_ts: batch.min_ts,
        max_ts: batch.max_ts,
        sealed: true,
    }
}

/// The agent's marks in its state directory: `agent.state` says when it
/// started, when it last wrote, and whether it stopped cleanly; `gaps`
/// keeps one line per gap found at a start (`<start_ns> <end_ns> <reason>`).
impl Store {
    fn state_path(&self) -> PathBuf {
        self.config.dir.join("agent.state")
    }

    fn gaps_path(&self) -> PathBuf {
        self.config.dir.join("gaps")
    }

    /// Reads the gaps recorded so far (a recording's too).
    pub fn load_gaps(&self) {
        let text = std::fs::read_to_string(self.gaps_path()).unwrap_or_default();
        let mut gaps = self.gaps.lock().unwrap_or_else(|e| e.into_inner());
        for line in text.lines() {
            let mut parts = line.splitn(3, ' ');
            if let (Some(Ok(start_ns)), Some(Ok(end_ns)), Some(reason)) =
                (parts.next().map(str::parse), parts.next().map(str::parse), parts.next())
            {
                gaps.push(Gap { start_ns, end_ns, reason: reason.to_string() });
            }
        }
    }

    /// At an agent's start: the gap since the last one (if it ran before),
    /// recorded and returned, and the start marked.
    pub fn begin(&self, now_ns: i64) -> std::io::Result<Option<Gap>> {
        self.load_gaps();
        let previous = std::fs::read_to_string(self.state_path()).unwrap_or_default();
        let field =
            |name: &str| previous.lines().find_map(|l| l.strip_prefix(name).and_then(|v| v.trim().parse::<i64>().ok()));
        let gap = match (field("stopped "), field("flushed "), field("started ")) {
            (Some(stopped), _, _) => {
                Some(Gap { start_ns: stopped, end_ns: now_ns, reason: "the agent was stopped".into() })
            }
            (None, Some(at), _) | (None, None, Some(at)) => Some(Gap {
                start_ns: at,
                end_ns: now_ns,
                reason: "the agent ended without stopping (killed?): events after its last write were lost".into(),
            }),
            _ => None,
        };
        if let Some(gap) = &gap {
            use std::io::Write;
            let mut f = std::fs::OpenOptions::new().create(true).append(true).open(self.gaps_path())?;
            writeln!(f, "{} {} {}", gap.start_ns, gap.end_ns, gap.reason)?;
            self.add_gap(gap.clone());
        }
        self.mark(&format!("started {now_ns}\n"))?;
        Ok(gap)
    }

    fn mark(&self, text: &str) -> std::io::Result<()> {
        let tmp = self.config.dir.join("agent.state.tmp");
        std::fs::write(&tmp, text)?;
        std::fs::rename(&tmp, self.state_path())
    }

    /// After a flush: everything captured up to `now_ns` is written.
    pub fn mark_flushed(&self, started_ns: i64, now_ns: i64) {
        let _ = self.mark(&format!("started {started_ns}\nflushed {now_ns}\n"));
    }

    /// At a clean stop, after the last flush.
    pub fn mark_stopped(&self, started_ns: i64, now_ns: i64) {
        let _ = self.mark(&format!("started {started_ns}\nflushed {now_ns}\nstopped {now_ns}\n"));
    }
}

/// The writer: flushes the store every flush interval on a thread of its
/// own, until stopped (with a last flush).
pub struct Writer {
    stop: std::sync::mpsc::Sender<()>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Writer {
    /// Starts writing `engine`'s history to its store.
    pub fn start(engine: crate::Engine, started_ns: i64) -> std::io::Result<Writer> {
        let (stop, stopped) = std::sync::mpsc::channel::<()>();
        let thread = std::thread::Builder::new().name("sysql-store".into()).spawn(move || {
            let Some(store) = engine.store().cloned() else { return };
            let interval = store.config.flush_interval;
            loop {
                let last = matches!(
                    stopped.recv_timeout(interval),
                    Ok(()) | Err(std::sync::mpsc::RecvTimeoutError::Disconnected)
                );
                let now = now_ns();
                store.flush(engine.history(), engine.stats(), now);
                if last {
                    store.mark_stopped(started_ns, now);
                    return;
                }
                store.mark_flushed(started_ns, now);
            }
        })?;
        Ok(Writer { stop, thread: Some(thread) })
    }

    /// Writes what is left and stops (call it once the capture is flushed).
    pub fn stop(mut self) {
        let _ = self.stop.send(());
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

fn now_ns() -> i64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_nanos() as i64).unwrap_or(0)
}
