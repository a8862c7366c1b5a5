//! The store's Parquet files: names, writing (to a `.tmp` name, renamed
//! when complete), reading their footers at start, compaction.

use super::COUNT_KEYS;
use crate::history::Entry;
use datafusion::arrow::array::RecordBatch;
use datafusion::arrow::datatypes::SchemaRef;
use datafusion::arrow::temporal_conversions::timestamp_ns_to_datetime;
use parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder;
use parquet::arrow::ArrowWriter;
use parquet::basic::{Compression, ZstdLevel};
use parquet::file::metadata::{KeyValue, ParquetMetaData};
use parquet::file::properties::{EnabledStatistics, WriterProperties};
use parquet::file::statistics::Statistics;
use std::io;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering::Relaxed};
use std::sync::Arc;
use sysql_events::Table;

/// Metadata key: the entry id of each row group, comma-separated (absent in
/// a compacted file, all of whose rows left memory).
const ROW_GROUP_IDS: &str = "sysql.row_group_ids";
/// Metadata key: file names a compacted file replaces (removed at start if
/// a crash left them).
const REPLACES: &str = "sysql.replaces";
const TABLE_KEY: &str = "sysql.table";

/// One file of a table.
#[derive(Debug)]
pub struct FileInfo {
    pub path: PathBuf,
    pub min_ts: i64,
    pub max_ts: i64,
    pub first_id: u64,
    pub last_id: u64,
    pub rows: u64,
    pub bytes: u64,
    pub meta: Arc<ParquetMetaData>,
    /// The entry id of each row group; empty when every row is below memory.
    pub row_group_ids: Vec<u64>,
    removed: AtomicBool,
}

impl FileInfo {
    /// Marks the file for removal: it is unlinked once no query reads it.
    pub fn remove(&self) {
        self.removed.store(true, Relaxed);
    }

    /// The row groups with entry ids below `first_id` that may hold rows
    /// with `lo <= ts <= hi`.
    pub fn row_groups_below(&self, first_id: u64, lo: i64, hi: i64) -> Vec<usize> {
        (0..self.meta.num_row_groups())
            .filter(|&i| self.row_group_ids.get(i).is_none_or(|id| *id < first_id))
            .filter(|&i| ts_range(&self.meta, i).is_none_or(|(min, max)| max >= lo && min <= hi))
            .collect()
    }
}

impl Drop for FileInfo {
    fn drop(&mut self) {
        if self.removed.load(Relaxed) {
            let _ = std::fs::remove_file(&self.path);
            // an hour's directory left empty goes too
            if let Some(dir) = self.path.parent() {
                let _ = std::fs::remove_dir(dir);
                if let Some(day) = dir.parent() {
                    let _ = std::fs::remove_dir(day);
                }
            }
        }
    }
}

/// The `ts` range of a row group, from its statistics (column 0 is `ts`).
fn ts_range(meta: &ParquetMetaData, rg: usize) -> Option<(i64, i64)> {
    match meta.row_group(rg).column(0).statistics()? {
        Statistics::Int64(s) => Some((*s.min_opt()?, *s.max_opt()?)),
        _ => None,
    }
}

fn kv(meta: &ParquetMetaData, key: &str) -> Option<String> {
    meta.file_metadata().key_value_metadata()?.iter().find(|kv| kv.key == key).and_then(|kv| kv.value.clone())
}

/// `<min_ts>-<max_ts>-<first_id>-<last_id>` from a file name.
fn parse_name(name: &str) -> Option<(i64, i64, u64, u64)> {
    let stem = name.strip_suffix(".parquet")?;
    let mut parts = stem.splitn(4, '-');
    Some((
        parts.next()?.parse().ok()?,
        parts.next()?.parse().ok()?,
        parts.next()?.parse().ok()?,
        parts.next()?.parse().ok()?,
    ))
}

/// The hour directory of a time: `date=YYYY-MM-DD/hour=HH`.
fn hour_dir(ts: i64) -> PathBuf {
    let t = timestamp_ns_to_datetime(ts).unwrap_or_default();
    PathBuf::from(format!("date={}", t.format("%Y-%m-%d"))).join(format!("hour={}", t.format("%H")))
}

fn read_meta(path: &Path) -> io::Result<Arc<ParquetMetaData>> {
    let file = std::fs::File::open(path)?;
    let builder = ParquetRecordBatchReaderBuilder::try_new(file).map_err(io::Error::other)?;
    Ok(builder.metadata().clone())
}

fn info(path: PathBuf, meta: Arc<ParquetMetaData>) -> Option<FileInfo> {
    let (min_ts, max_ts, first_id, last_id) = parse_name(path.file_name()?.to_str()?)?;
    let bytes = std::fs::metadata(&path).map(|m| m.len()).unwrap_or(0);
    let row_group_ids =
        kv(&meta, ROW_GROUP_IDS).map(|s| s.split(',').filter_map(|x| x.parse().ok()).collect()).unwrap_or_default();
    Some(FileInfo {
        rows: meta.file_metadata().num_rows().max(0) as u64,
        path,
        min_ts,
        max_ts,
        first_id,
        last_id,
        bytes,
        meta,
        row_group_ids,
        removed: AtomicBool::new(false),
    })
}

/// Every file of a table's directory, oldest first. When `writable`, what a
/// crash left is tidied: `.tmp` files, and files a compaction replaced.
pub fn scan(dir: &Path, writable: bool) -> io::Result<Vec<FileInfo>> {
    let mut paths = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        let entries = match std::fs::read_dir(&d) {
            Ok(e) => e,
            Err(e) if e.kind() == io::ErrorKind::NotFound => continue,
            Err(e) => return Err(e),
        };
        for entry in entries {
            let path = entry?.path();
            if path.is_dir() {
                stack.push(path);
            } else if path.extension().is_some_and(|e| e == "parquet") {
                paths.push(path);
            } else if writable && path.extension().is_some_and(|e| e == "tmp") {
                let _ = std::fs::remove_file(&path);
            }
        }
    }
    let mut files = Vec::new();
    let mut replaced = std::collections::HashSet::new();
    for path in paths {
        // a file that cannot be read (cut short by a crash of another
        // writer, damaged) is left alone and not read
        let Ok(meta) = read_meta(&path) else { continue };
        if let Some(list) = kv(&meta, REPLACES) {
            replaced.extend(list.split(',').map(str::to_string));
        }
        if let Some(info) = info(path, meta) {
            files.push(info);
        }
    }
    files.retain(|f| {
        let name = f.path.file_name().and_then(|n| n.to_str()).unwrap_or_default();
        let keep = !replaced.contains(name);
        if !keep && writable {
            f.remove();
        }
        keep
    });
    files.sort_by_key(|f| (f.first_id, f.min_ts));
    Ok(files)
}

fn properties(kv: Vec<KeyValue>) -> WriterProperties {
    WriterProperties::builder()
        .set_compression(Compression::ZSTD(ZstdLevel::try_new(3).expect("a valid zstd level")))
        .set_statistics_enabled(EnabledStatistics::Chunk)
        .set_max_row_group_row_count(Some(65536))
        .set_key_value_metadata(Some(kv))
        .set_created_by(format!("sysql {}", env!("CARGO_PKG_VERSION")))
        .build()
}

/// Writes `batches` (grouped: one row group per inner list when `grouped`)
/// to `<dir>/<hour>/<name>`: a `.tmp` file, synced, then renamed.
fn write_file(
    dir: &Path,
    schema: SchemaRef,
    groups: &[Vec<RecordBatch>],
    range: (i64, i64, u64, u64),
    kv: Vec<KeyValue>,
) -> io::Result<FileInfo> {
    let (min_ts, max_ts, first_id, last_id) = range;
    let hour = dir.join(hour_dir(min_ts));
    std::fs::create_dir_all(&hour)?;
    let name = format!("{min_ts}-{max_ts}-{first_id}-{last_id}.parquet");
    let path = hour.join(&name);
    let tmp = hour.join(format!("{name}.tmp"));
    let written = (|| -> io::Result<Arc<ParquetMetaData>> {
        let file = std::fs::File::create(&tmp)?;
        let mut writer = ArrowWriter::try_new(file, schema, Some(properties(kv))).map_err(io::Error::other)?;
        for group in groups {
            for batch in group {
                writer.write(batch).map_err(io::Error::other)?;
            }
            writer.flush().map_err(io::Error::other)?;
        }
        let file = writer.into_inner().map_err(io::Error::other)?;
        file.sync_all()?;
        drop(file);
        read_meta(&tmp)
    })();
    let meta = match written {
        Ok(meta) => meta,
        Err(e) => {
            let _ = std::fs::remove_file(&tmp);
            return Err(e);
        }
    };
    std::fs::rename(&tmp, &path)?;
    info(path, meta).ok_or_else(|| io::Error::other("a file name sysql cannot read back"))
}

/// Writes history entries (oldest id first) as one file, one row group
/// per entry, with the interval's loss counters.
pub fn write(
    dir: &Path,
    table: Table,
    entries: &[Entry],
    losses: &[u64; 5],
    replaces: &[String],
) -> io::Result<FileInfo> {
    let schema = crate::event::schema(table);
    let range = (
        entries.iter().map(|e| e.min_ts).min().unwrap_or(0),
        entries.iter().map(|e| e.max_ts).max().unwrap_or(0),
        entries.first().map(|e| e.id).unwrap_or(0),
        entries.last().map(|e| e.id).unwrap_or(0),
    );
    let mut kv = vec![
        KeyValue::new(TABLE_KEY.to_string(), table.name().to_string()),
        KeyValue::new(
            ROW_GROUP_IDS.to_string(),
            entries.iter().map(|e| e.id.to_string()).collect::<Vec<_>>().join(","),
        ),
    ];
    for (key, n) in COUNT_KEYS.iter().zip(losses) {
        kv.push(KeyValue::new(key.to_string(), n.to_string()));
    }
    if !replaces.is_empty() {
        kv.push(KeyValue::new(REPLACES.to_string(), replaces.join(",")));
    }
    let groups: Vec<Vec<RecordBatch>> = entries.iter().map(|e| vec![e.batch.clone()]).collect();
    write_file(dir, schema, &groups, range, kv)
}

/// Merges files into one with large row groups, which replaces them.
pub fn compact(dir: &Path, table: Table, files: &[Arc<FileInfo>]) -> io::Result<FileInfo> {
    let schema = crate::event::schema(table);
    let mut batches = Vec::new();
    for f in files {
        let all: Vec<usize> = (0..f.meta.num_row_groups()).collect();
        for batch in super::read::read_file(&f.path, &schema, None, all)? {
            batches.push(batch?);
        }
    }
    let range = (
        files.iter().map(|f| f.min_ts).min().unwrap_or(0),
        files.iter().map(|f| f.max_ts).max().unwrap_or(0),
        files.iter().map(|f| f.first_id).min().unwrap_or(0),
        files.iter().map(|f| f.last_id).max().unwrap_or(0),
    );
    // the loss counters of the merged intervals add up
    let mut sums = [0u64; 5];
    for f in files {
        for (i, key) in COUNT_KEYS.iter().enumerate() {
            sums[i] += kv(&f.meta, key).and_then(|v| v.parse().ok()).unwrap_or(0);
        }
    }
    let mut kv = vec![KeyValue::new(TABLE_KEY.to_string(), table.name().to_string())];
    for (key, n) in COUNT_KEYS.iter().zip(sums) {
        kv.push(KeyValue::new(key.to_string(), n.to_string()));
    }
    let names: Vec<String> =
        files.iter().filter_map(|f| f.path.file_name().and_then(|n| n.to_str()).map(str::to_string)).collect();
    kv.push(KeyValue::new(REPLACES.to_string(), names.join(",")));
    // a compacted file's rows left memory: no row group ids
    write_file(dir, schema, &[batches], range, kv)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_and_hours() {
        assert_eq!(
            parse_name("1700000000000000000-1700000001000000000-5-9.parquet"),
            Some((1_700_000_000_000_000_000, 1_700_000_001_000_000_000, 5, 9))
        );
        assert_eq!(parse_name("x.parquet"), None);
        assert_eq!(hour_dir(1_700_000_000_000_000_000), PathBuf::from("date=2023-11-14/hour=22"));
    }
}
