//! Pictures of results in the terminal: [`bars`] draws a result's first text column against its
//! first number column as horizontal bars (for `\chart` and the `bar` output format), and
//! [`sparkline`] draws a series on one line (the events per window of a live window query, in
//! its status line).

use std::fmt::Write as _;

use datafusion::arrow::array::{Array, AsArray, RecordBatch};
use datafusion::arrow::compute::cast;
use datafusion::arrow::datatypes::{DataType, Float64Type, SchemaRef};
use datafusion::arrow::util::display::{ArrayFormatter, FormatOptions};

/// The width bars are fitted to when output goes to no terminal.
pub const DEFAULT_WIDTH: usize = 80;
/// The longest a bar gets, in columns: longer bars say no more and wrap on narrow terminals.
const MAX_BAR: usize = 50;
/// Labels longer than this are cut (with `…`).
const MAX_LABEL: usize = 30;
/// A bar's end, in eighths of a column.
const EIGHTHS: [char; 8] = [' ', '▏', '▎', '▍', '▌', '▋', '▊', '▉'];

/// Why a result cannot be drawn, as the rest of a sentence whose subject is what draws it
/// ("\chart needs ...", "the bar format needs ...").
#[derive(Debug, PartialEq, Eq)]
pub struct NoChart(pub String);

impl std::fmt::Display for NoChart {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

/// Draws each row as `label  bar value`, the bars scaled to the largest value and to fit in
/// `width` columns. At most `maxrows` rows are drawn; `null` is how a NULL label shows.
pub fn bars(
    schema: &SchemaRef,
    batches: &[RecordBatch],
    width: usize,
    maxrows: Option<usize>,
    null: &str,
) -> Result<String, NoChart> {
    let fields = schema.fields();
    let text = fields.iter().position(|f| is_text(f.data_type()));
    let number = fields.iter().position(|f| f.data_type().is_numeric());
    let (Some(text), Some(number)) = (text, number) else {
        let names: Vec<String> = fields.iter().map(|f| format!("{} {}", f.name(), f.data_type())).collect();
        return Err(NoChart(format!(
            "needs a text column and a number column, and the result has {}",
            if names.is_empty() { "no columns".to_string() } else { names.join(", ") }
        )));
    };
    let options = FormatOptions::new().with_null(null);
    let unreadable = |e: datafusion::arrow::error::ArrowError| NoChart(format!("cannot read the result: {e}"));
    let mut rows: Vec<(String, Option<f64>, String)> = Vec::new();
    for batch in batches {
        let labels = cast(batch.column(text), &DataType::Utf8).map_err(unreadable)?;
        let labels = labels.as_string::<i32>();
        let values = cast(batch.column(number), &DataType::Float64).map_err(unreadable)?;
        let values = values.as_primitive::<Float64Type>();
        let shown = ArrayFormatter::try_new(batch.column(number).as_ref(), &options).map_err(unreadable)?;
        for row in 0..batch.num_rows() {
            let label = if labels.is_null(row) { null.to_string() } else { cut(labels.value(row)) };
            let value = (!values.is_null(row)).then(|| values.value(row)).filter(|v| v.is_finite());
            rows.push((label, value, shown.value(row).to_string()));
        }
    }
    let total = rows.len();
    rows.truncate(maxrows.unwrap_or(total));
    let label_width = rows.iter().map(|r| r.0.chars().count()).max().unwrap_or(0);
    let value_width = rows.iter().map(|r| r.2.chars().count()).max().unwrap_or(0);
    let room = width.saturating_sub(label_width + value_width + 3).clamp(10, MAX_BAR);
    let largest = rows.iter().filter_map(|r| r.1).fold(0.0f64, f64::max);
    let mut out = String::new();
    for (label, value, shown) in &rows {
        let eighths = match value {
            Some(v) if largest > 0.0 && *v > 0.0 => (v / largest * (room * 8) as f64).round() as usize,
            _ => 0,
        };
        let bar = bar(eighths);
        let line = format!("{label:<label_width$}  {bar} {shown}");
        let _ = writeln!(out, "{}", line.trim_end());
    }
    if rows.len() < total {
        let _ = writeln!(out, "({} more rows not drawn, {total} in all)", total - rows.len());
    }
    Ok(out)
}

fn is_text(data_type: &DataType) -> bool {
    match data_type {
        DataType::Utf8 | DataType::LargeUtf8 | DataType::Utf8View => true,
        DataType::Dictionary(_, value) => is_text(value),
        _ => false,
    }
}

fn cut(label: &str) -> String {
    if label.chars().count() <= MAX_LABEL {
        return label.replace(['\n', '\t'], " ");
    }
    let mut cut: String = label.chars().take(MAX_LABEL - 1).collect();
    cut.push('…');
    cut.replace(['\n', '\t'], " ")
}

/// A bar `eighths` eighths of a column long.
fn bar(eighths: usize) -> String {
    let mut bar = "█".repeat(eighths / 8);
    if !eighths.is_multiple_of(8) {
        bar.push(EIGHTHS[eighths % 8]);
    }
    bar
}

/// A series as one line of block heights, `▁` for the smallest value and `█` for the largest.
pub fn sparkline(values: &[u64]) -> String {
    const LEVELS: [char; 8] = ['▁', '▂', '▃', '▄', '▅', '▆', '▇', '█'];
    let (low, high) = (values.iter().min().copied().unwrap_or(0), values.iter().max().copied().unwrap_or(0));
    values
        .iter()
        .map(|&v| if high == low { LEVELS[0] } else { LEVELS[((v - low) * 7 / (high - low)) as usize] })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use datafusion::arrow::array::{ArrayRef, Int64Array, StringArray};
    use datafusion::arrow::datatypes::{Field, Schema};
    use std::sync::Arc;

    fn result() -> (SchemaRef, RecordBatch) {
        let schema = Arc::new(Schema::new(vec![
            Field::new("n", DataType::Int64, true),
            Field::new("comm", DataType::Utf8, true),
        ]));
        let columns: Vec<ArrayRef> = vec![
            Arc::new(Int64Array::from(vec![Some(16), Some(8), Some(1), None])),
            Arc::new(StringArray::from(vec![Some("bash"), Some("cat"), None, Some("ls")])),
        ];
        (schema.clone(), RecordBatch::try_new(schema, columns).unwrap())
    }

    #[test]
    fn bars_scale_to_the_largest_value() {
        let (schema, batch) = result();
        let text = bars(&schema, &[batch], 80, None, "NULL").unwrap();
        let expected =
            format!("bash  {} 16\ncat   {} 8\nNULL  {} 1\nls     NULL\n", "█".repeat(50), "█".repeat(25), "███▏");
        assert_eq!(text, expected);
    }

    #[test]
    fn bars_fit_a_narrow_terminal_and_maxrows() {
        let (schema, batch) = result();
        let text = bars(&schema, &[batch], 19, Some(1), "NULL").unwrap();
        assert_eq!(text, format!("bash  {} 16\n(3 more rows not drawn, 4 in all)\n", "█".repeat(10)));
    }

    #[test]
    fn a_result_without_text_cannot_be_drawn() {
        let schema = Arc::new(Schema::new(vec![Field::new("n", DataType::Int64, false)]));
        let batch = RecordBatch::try_new(schema.clone(), vec![Arc::new(Int64Array::from(vec![1]))]).unwrap();
        assert_eq!(
            bars(&schema, &[batch], 80, None, "NULL").unwrap_err().0,
            "needs a text column and a number column, and the result has n Int64"
        );
    }

    #[test]
    fn sparklines() {
        assert_eq!(sparkline(&[0, 7, 14, 7]), "▁▄█▄");
        assert_eq!(sparkline(&[3, 3]), "▁▁");
        assert_eq!(sparkline(&[]), "");
    }
}
