//! Reading the store: a query's files as DataFusion partitions, each read
//! on a blocking thread with only the columns and row groups it needs, and
//! adapted to the table's current columns (a file of an older sysql lacks
//! newer columns: they read as NULL).

use super::files::FileInfo;
use datafusion::arrow::array::{new_null_array, ArrayRef, RecordBatch};
use datafusion::arrow::compute::cast;
use datafusion::arrow::datatypes::{Schema, SchemaRef};
use datafusion::error::{DataFusionError, Result};
use datafusion::execution::TaskContext;
use datafusion::physical_plan::stream::RecordBatchStreamAdapter;
use datafusion::physical_plan::streaming::PartitionStream;
use datafusion::physical_plan::SendableRecordBatchStream;
use parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder;
use parquet::arrow::ProjectionMask;
use std::path::Path;
use std::sync::Arc;

/// What a query reads from the store.
#[derive(Debug, Default)]
pub struct DiskSnapshot {
    /// Entries that left memory and are not written yet.
    pub pending: Vec<RecordBatch>,
    /// Files, with the row groups to read.
    pub files: Vec<(Arc<FileInfo>, Vec<usize>)>,
}

/// The output schema of a projection of `schema`.
pub fn project_schema(schema: &SchemaRef, projection: Option<&[usize]>) -> SchemaRef {
    match projection {
        Some(p) => Arc::new(Schema::new(p.iter().map(|&i| schema.field(i).clone()).collect::<Vec<_>>())),
        None => schema.clone(),
    }
}

/// Reads row groups of a file, the table columns `projection` (all when
/// `None`) in that order, as the table's types.
pub fn read_file(
    path: &Path,
    table: &SchemaRef,
    projection: Option<&[usize]>,
    row_groups: Vec<usize>,
) -> std::io::Result<impl Iterator<Item = Result<RecordBatch>>> {
    let file = std::fs::File::open(path)?;
    let builder = ParquetRecordBatchReaderBuilder::try_new(file).map_err(std::io::Error::other)?;
    let file_schema = builder.schema().clone();
    let wanted: Vec<usize> = projection.map(<[usize]>::to_vec).unwrap_or_else(|| (0..table.fields().len()).collect());
    // where each wanted column is in the file, if it is
    let at: Vec<Option<usize>> = wanted.iter().map(|&i| file_schema.index_of(table.field(i).name()).ok()).collect();
    let mut present: Vec<usize> = at.iter().flatten().copied().collect();
    present.sort_unstable();
    present.dedup();
    let mask = ProjectionMask::roots(builder.parquet_schema(), present.iter().copied());
    let reader = builder
        .with_row_groups(row_groups)
        .with_projection(mask)
        .with_batch_size(8192)
        .build()
        .map_err(std::io::Error::other)?;
    let out = project_schema(table, Some(&wanted));
    Ok(reader.map(move |batch| {
        let batch = batch?;
        let columns: Vec<ArrayRef> = at
            .iter()
            .zip(out.fields())
            .map(|(pos, field)| match pos {
                Some(p) => {
                    let col = batch.column(present.binary_search(p).expect("read"));
                    if col.data_type() == field.data_type() {
                        Ok(col.clone())
                    } else {
                        cast(col, field.data_type())
                    }
                }
                None => Ok(new_null_array(field.data_type(), batch.num_rows())),
            })
            .collect::<std::result::Result<_, _>>()?;
        RecordBatch::try_new_with_options(
            out.clone(),
            columns,
            &datafusion::arrow::array::RecordBatchOptions::new().with_row_count(Some(batch.num_rows())),
        )
        .map_err(DataFusionError::from)
    }))
}

/// A partition of a query's files: read one after another on a blocking
/// thread, a few batches ahead of the query.
#[derive(Debug)]
pub struct DiskPartition {
    table: SchemaRef,
    schema: SchemaRef,
    projection: Option<Vec<usize>>,
    files: Vec<(Arc<FileInfo>, Vec<usize>)>,
}

impl DiskPartition {
    pub fn new(table: SchemaRef, projection: Option<Vec<usize>>, files: Vec<(Arc<FileInfo>, Vec<usize>)>) -> Self {
        let schema = project_schema(&table, projection.as_deref());
        DiskPartition { table, schema, projection, files }
    }
}

impl PartitionStream for DiskPartition {
    fn schema(&self) -> &SchemaRef {
        &self.schema
    }

    fn execute(&self, _ctx: Arc<TaskContext>) -> SendableRecordBatchStream {
        let (tx, mut rx) = tokio::sync::mpsc::channel::<Result<RecordBatch>>(4);
        // The files stay (not unlinked by retention or compaction) while
        // this partition holds them.
        let files = self.files.clone();
        let (table, projection) = (self.table.clone(), self.projection.clone());
        tokio::task::spawn_blocking(move || {
            for (file, groups) in files {
                let batches = match read_file(&file.path, &table, projection.as_deref(), groups) {
                    Ok(b) => b,
                    Err(e) => {
                        let _ = tx.blocking_send(Err(DataFusionError::Execution(format!(
                            "reading {}: {e}",
                            file.path.display()
                        ))));
                        return;
                    }
                };
                for batch in batches {
                    if tx.blocking_send(batch).is_err() {
                        return; // the query is gone
                    }
                }
            }
        });
        let stream = futures::stream::poll_fn(move |cx| rx.poll_recv(cx));
        Box::pin(RecordBatchStreamAdapter::new(self.schema.clone(), stream))
    }
}

/// Splits files into at most `n` partitions of about the same bytes, in order.
pub fn partitions(files: Vec<(Arc<FileInfo>, Vec<usize>)>, n: usize) -> Vec<Vec<(Arc<FileInfo>, Vec<usize>)>> {
    let total: u64 = files.iter().map(|(f, _)| f.bytes).sum();
    let n = n.clamp(1, files.len().max(1));
    let per = total.div_ceil(n as u64).max(1);
    let mut out = vec![Vec::new()];
    let mut bytes = 0;
    for file in files {
        bytes += file.0.bytes;
        out.last_mut().expect("one").push(file);
        if bytes >= per && out.len() < n {
            out.push(Vec::new());
            bytes = 0;
        }
    }
    out.retain(|p| !p.is_empty());
    out
}
