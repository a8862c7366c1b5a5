//! Differential results: the rows a run added and removed since the previous
//! run, as osquery reports them.
//!
//! Results are compared as multisets of whole rows (every column, encoded by
//! Arrow's row format, so any column type compares): a row that appears twice
//! now and once before is one row added. A row whose count changed is the old
//! row removed and the new one added. The first run adds every row.

use super::sink::{Action, Actions};
use datafusion::arrow::array::{RecordBatch, UInt32Array};
use datafusion::arrow::compute::{concat_batches, take_record_batch};
use datafusion::arrow::datatypes::{DataType, SchemaRef};
use datafusion::arrow::error::ArrowError;
use datafusion::arrow::row::{RowConverter, Rows, SortField};
use std::collections::HashMap;

/// The previous result of one query.
#[derive(Default)]
pub struct Diff {
    previous: Option<Previous>,
}

struct Previous {
    types: Vec<DataType>,
    batch: RecordBatch,
    rows: Rows,
}

/// A run's changes, not yet taken as the new previous result.
pub struct Changes {
    /// The removed rows, then the added ones.
    pub batch: RecordBatch,
    /// Per row of `batch`: removed or added.
    pub actions: Actions,
    next: Previous,
}

impl Diff {
    pub fn new() -> Self {
        Diff::default()
    }

    /// Compares a run's result with the previous one. Call [`Diff::commit`]
    /// once the changes are delivered; if they are not (a sink dropped them),
    /// the next run reports them again, folded into its own.
    pub fn changes(&self, schema: &SchemaRef, batches: &[RecordBatch]) -> Result<Changes, ArrowError> {
        let current = concat_batches(schema, batches)?;
        let types: Vec<DataType> = schema.fields().iter().map(|f| f.data_type().clone()).collect();
        // A changed schema (an edited query) starts over.
        let previous = self.previous.as_ref().filter(|p| p.types == types);
        // The row format is a pure function of the column types: rows of
        // two runs compare byte for byte.
        let converter = RowConverter::new(types.iter().map(|t| SortField::new(t.clone())).collect())?;
        let rows = converter.convert_columns(current.columns())?;

        let mut removed = Vec::new();
        let mut added = Vec::new();
        let mut now: HashMap<&[u8], usize> = HashMap::with_capacity(rows.num_rows());
        for row in rows.iter() {
            *now.entry(row.data()).or_default() += 1;
        }
        if let Some(p) = previous {
            let mut before: HashMap<&[u8], usize> = HashMap::with_capacity(p.rows.num_rows());
            for (i, row) in p.rows.iter().enumerate() {
                match now.get_mut(row.data()) {
                    Some(n) if *n > 0 => *n -= 1,
                    _ => removed.push(i as u32),
                }
                *before.entry(row.data()).or_default() += 1;
            }
            for (i, row) in rows.iter().enumerate() {
                match before.get_mut(row.data()) {
                    Some(n) if *n > 0 => *n -= 1,
                    _ => added.push(i as u32),
                }
            }
        } else {
            added = (0..rows.num_rows() as u32).collect();
        }

        let mut parts = Vec::with_capacity(2);
        if let Some(p) = previous.filter(|_| !removed.is_empty()) {
            parts.push(take_record_batch(&p.batch, &UInt32Array::from(removed.clone()))?);
        }
        parts.push(take_record_batch(&current, &UInt32Array::from(added.clone()))?);
        let batch = concat_batches(schema, &parts)?;
        let mut actions = vec![Action::Removed; removed.len()];
        actions.resize(removed.len() + added.len(), Action::Added);
        drop(now);
        Ok(Changes { batch, actions: Actions::PerRow(actions), next: Previous { types, batch: current, rows } })
    }

    /// Takes the run that produced `changes` as the previous result.
    pub fn commit(&mut self, changes: Changes) {
        self.previous = Some(changes.next);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use datafusion::arrow::array::{ArrayRef, Int64Array, StringArray};
    use datafusion::arrow::datatypes::{Field, Schema};
    use std::sync::Arc;

    fn schema() -> SchemaRef {
        Arc::new(Schema::new(vec![Field::new("comm", DataType::Utf8, true), Field::new("n", DataType::Int64, false)]))
    }

    fn result(rows: &[(&str, i64)]) -> Vec<RecordBatch> {
        let comm: ArrayRef = Arc::new(StringArray::from_iter_values(rows.iter().map(|r| r.0)));
        let n: ArrayRef = Arc::new(Int64Array::from_iter_values(rows.iter().map(|r| r.1)));
        vec![RecordBatch::try_new(schema(), vec![comm, n]).unwrap()]
    }

    /// Runs a diff and renders it as `+comm:n` / `-comm:n`.
    fn run(diff: &mut Diff, rows: &[(&str, i64)]) -> Vec<String> {
        let changes = diff.changes(&schema(), &result(rows)).unwrap();
        let b = &changes.batch;
        let comm = b.column(0).as_any().downcast_ref::<StringArray>().unwrap();
        let n = b.column(1).as_any().downcast_ref::<Int64Array>().unwrap();
        let Actions::PerRow(actions) = &changes.actions else { panic!() };
        let out = (0..b.num_rows())
            .map(|i| {
                let sign = if actions[i] == Action::Added { '+' } else { '-' };
                format!("{sign}{}:{}", comm.value(i), n.value(i))
            })
            .collect();
        diff.commit(changes);
        out
    }

    #[test]
    fn reports_rows_added_and_removed() {
        let mut diff = Diff::new();
        assert_eq!(run(&mut diff, &[("curl", 3), ("ssh", 1)]), ["+curl:3", "+ssh:1"]);
        assert_eq!(run(&mut diff, &[("curl", 3), ("ssh", 1)]), Vec::<String>::new());
        assert_eq!(run(&mut diff, &[("ssh", 1), ("curl", 4), ("wget", 1)]), ["-curl:3", "+curl:4", "+wget:1"]);
        assert_eq!(run(&mut diff, &[]), ["-ssh:1", "-curl:4", "-wget:1"]);
    }

    #[test]
    fn duplicate_rows_count() {
        let mut diff = Diff::new();
        assert_eq!(run(&mut diff, &[("a", 1), ("a", 1)]), ["+a:1", "+a:1"]);
        assert_eq!(run(&mut diff, &[("a", 1)]), ["-a:1"]);
        assert_eq!(run(&mut diff, &[("a", 1), ("a", 1), ("a", 1)]), ["+a:1", "+a:1"]);
    }

    #[test]
    fn undelivered_changes_come_again() {
        let mut diff = Diff::new();
        run(&mut diff, &[("a", 1)]);
        // computed, never committed (the sink dropped it)
        let _lost = diff.changes(&schema(), &result(&[("a", 1), ("b", 1)])).unwrap();
        assert_eq!(run(&mut diff, &[("a", 1), ("b", 1), ("c", 1)]), ["+b:1", "+c:1"]);
    }
}
