//! Output formats for query results: aligned tables, CSV, JSON and newline-delimited JSON.
//!
//! Every format renders into memory first and then writes to the caller's writer in one go, so
//! an I/O failure (a closed pipe) surfaces as a plain [`std::io::Error`] the caller can recognise.
//!
//! Where things go: results are written to the writer the caller passes in (stdout). The footer
//! ("N row(s) fetched. Elapsed X.XXX seconds.") is part of the human-readable table output and
//! goes to that same writer; for `csv`, `json` and `ndjson` it goes to stderr so that machine
//! output stays clean when redirected.
//!
//! Timestamps are written as RFC 3339 in UTC: zoned timestamps in their zone (`…Z` for UTC) and
//! zone-less ones, which sysql treats as UTC, with an explicit `Z`.

use std::fmt;
use std::io::Write;
use std::str::FromStr;
use std::time::Duration;

use anyhow::Result;
use datafusion::arrow::array::RecordBatch;
use datafusion::arrow::csv::WriterBuilder as CsvWriterBuilder;
use datafusion::arrow::datatypes::{DataType, SchemaRef, TimeUnit};
use datafusion::arrow::json::writer::LineDelimited;
use datafusion::arrow::json::WriterBuilder as JsonWriterBuilder;
use datafusion::arrow::util::display::{ArrayFormatter, FormatOptions};
use datafusion::arrow::util::pretty::pretty_format_batches_with_options;

/// chrono format for timestamps without a time zone: sysql's clocks are UTC, so say so.
const NAIVE_TIMESTAMP_FORMAT: &str = "%Y-%m-%dT%H:%M:%S%.fZ";

/// How results are written.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Format {
    /// An aligned table with borders, for people.
    #[default]
    Table,
    /// RFC 4180 CSV with a header line.
    Csv,
    /// One JSON array of objects, one object per line.
    Json,
    /// One JSON object per line.
    NdJson,
}

/// The error for a format name that [`Format::from_str`] does not know.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UnknownFormat(pub String);

impl fmt::Display for UnknownFormat {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "unknown format '{}': expected table, csv, json or ndjson", self.0)
    }
}

impl std::error::Error for UnknownFormat {}

impl FromStr for Format {
    type Err = UnknownFormat;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s.trim().to_ascii_lowercase().as_str() {
            "table" => Ok(Format::Table),
            "csv" => Ok(Format::Csv),
            "json" => Ok(Format::Json),
            "ndjson" | "nd-json" => Ok(Format::NdJson),
            _ => Err(UnknownFormat(s.to_string())),
        }
    }
}

impl fmt::Display for Format {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Format::Table => "table",
            Format::Csv => "csv",
            Format::Json => "json",
            Format::NdJson => "ndjson",
        })
    }
}

/// Prints query results in one [`Format`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Printer {
    /// The output format.
    pub format: Format,
    /// At most this many rows are shown in `table` format for a bounded result; the footer still
    /// counts them all. Machine formats and streamed (live) results always show every row.
    pub maxrows: Option<usize>,
    /// Whether the footer includes the elapsed time.
    pub timing: bool,
}

impl Default for Printer {
    fn default() -> Self {
        Printer { format: Format::Table, maxrows: None, timing: true }
    }
}

impl Printer {
    /// Writes a complete (bounded) result. An empty result in `table` format is the header with
    /// no rows, in `csv` the header line, in `json` `[]`, in `ndjson` nothing. A result without
    /// columns (the answer to DDL such as `CREATE VIEW`) prints nothing.
    pub fn print_batches(&self, out: &mut dyn Write, schema: &SchemaRef, batches: &[RecordBatch]) -> Result<()> {
        let text = self.render(schema, batches)?;
        out.write_all(&text)?;
        out.flush()?;
        Ok(())
    }

    /// Renders a complete result into bytes; see [`Printer::print_batches`].
    pub fn render(&self, schema: &SchemaRef, batches: &[RecordBatch]) -> Result<Vec<u8>> {
        if schema.fields().is_empty() {
            return Ok(Vec::new());
        }
        if self.format != Format::Table {
            let mut stream = StreamPrinter::new(self, schema.clone());
            let mut buf = Vec::new();
            for batch in batches {
                stream.push(&mut buf, batch)?;
            }
            stream.finish(&mut buf)?;
            return Ok(buf);
        }

        let total: usize = batches.iter().map(RecordBatch::num_rows).sum();
        let shown = self.maxrows.map_or(total, |max| max.min(total));
        let mut visible = Vec::with_capacity(batches.len());
        let mut left = shown;
        for batch in batches {
            if left == 0 {
                break;
            }
            let take = left.min(batch.num_rows());
            visible.push(batch.slice(0, take));
            left -= take;
        }
        if visible.is_empty() {
            // The pretty printer takes its header from the first batch.
            visible.push(RecordBatch::new_empty(schema.clone()));
        }
        let options = format_options(Format::Table);
        let table = pretty_format_batches_with_options(&visible, &options)?;
        let mut text = format!("{table}\n");
        if shown < total {
            text.push_str(&format!("(first {shown} of {total} rows shown)\n"));
        }
        Ok(text.into_bytes())
    }

    /// The footer line, without a newline: "N row(s) fetched. Elapsed X.XXX seconds.", or only
    /// "N row(s) fetched." when timing is off.
    pub fn footer(&self, rows: usize, elapsed: Duration) -> String {
        if self.timing {
            format!("{rows} row(s) fetched. Elapsed {:.3} seconds.", elapsed.as_secs_f64())
        } else {
            format!("{rows} row(s) fetched.")
        }
    }

    /// Writes the footer: to `out` in `table` format, to stderr in the machine formats.
    pub fn print_footer(&self, out: &mut dyn Write, rows: usize, elapsed: Duration) -> Result<()> {
        let line = self.footer(rows, elapsed);
        if self.format == Format::Table {
            writeln!(out, "{line}\n")?;
            out.flush()?;
        } else {
            eprintln!("{line}");
        }
        Ok(())
    }
}

/// Arrow display options shared by all formats; only the null marker differs.
fn format_options(format: Format) -> FormatOptions<'static> {
    let null = if format == Format::Table { "NULL" } else { "" };
    FormatOptions::new().with_display_error(true).with_null(null).with_timestamp_format(Some(NAIVE_TIMESTAMP_FORMAT))
}

/// Prints batches of an unbounded (live) result as they arrive.
///
/// `table` prints the header once, with columns as wide as the first batch needs, and then rows as
/// they come, aligned to those widths; a later value too long for its column pushes the rest of its
/// own row right and leaves the other rows aligned.
/// `csv` prints the header once, `json` opens the array on the first row and closes it in
/// [`StreamPrinter::finish`], `ndjson` prints one line per row.
#[derive(Debug)]
pub struct StreamPrinter {
    format: Format,
    schema: SchemaRef,
    rows: usize,
    started: bool,
    widths: Vec<usize>,
}

impl StreamPrinter {
    /// A printer for a result with `schema` in the format of `printer`.
    pub fn new(printer: &Printer, schema: SchemaRef) -> Self {
        let widths = schema.fields().iter().map(|f| f.name().chars().count().max(min_width(f.data_type()))).collect();
        StreamPrinter { format: printer.format, schema, rows: 0, started: false, widths }
    }

    /// Rows printed so far.
    pub fn rows(&self) -> usize {
        self.rows
    }

    /// Prints the rows of `batch` and flushes `out`.
    pub fn push(&mut self, out: &mut dyn Write, batch: &RecordBatch) -> Result<()> {
        if self.schema.fields().is_empty() || batch.num_rows() == 0 {
            return Ok(());
        }
        let mut buf = Vec::new();
        match self.format {
            Format::Table => self.push_table(&mut buf, batch)?,
            Format::Csv => {
                CsvWriterBuilder::new()
                    .with_header(!self.started)
                    .with_timestamp_format(NAIVE_TIMESTAMP_FORMAT.to_string())
                    .build(&mut buf)
                    .write(batch)?;
            }
            Format::Json => {
                for line in ndjson_lines(batch)?.lines() {
                    buf.extend_from_slice(if self.started { b",\n" } else { b"[" });
                    buf.extend_from_slice(line.as_bytes());
                    self.started = true;
                }
            }
            Format::NdJson => buf.extend_from_slice(ndjson_lines(batch)?.as_bytes()),
        }
        self.started = true;
        self.rows += batch.num_rows();
        out.write_all(&buf)?;
        out.flush()?;
        Ok(())
    }

    /// Ends the output: closes the table or the JSON array, or prints the lone header of an empty
    /// result.
    pub fn finish(&mut self, out: &mut dyn Write) -> Result<()> {
        if self.schema.fields().is_empty() {
            return Ok(());
        }
        let mut buf = Vec::new();
        match self.format {
            Format::Table => {
                if !self.started {
                    self.write_header(&mut buf)?;
                }
                self.write_border(&mut buf)?;
            }
            Format::Csv if !self.started => {
                let empty = RecordBatch::new_empty(self.schema.clone());
                CsvWriterBuilder::new().build(&mut buf).write(&empty)?;
            }
            Format::Json => buf.extend_from_slice(if self.started { b"]\n" } else { b"[]\n" }),
            Format::Csv | Format::NdJson => {}
        }
        self.started = true;
        out.write_all(&buf)?;
        out.flush()?;
        Ok(())
    }

    fn push_table(&mut self, buf: &mut Vec<u8>, batch: &RecordBatch) -> Result<()> {
        let options = format_options(Format::Table);
        let formatters = batch
            .columns()
            .iter()
            .map(|c| ArrayFormatter::try_new(c.as_ref(), &options))
            .collect::<Result<Vec<_>, _>>()?;
        let rows: Vec<Vec<String>> = (0..batch.num_rows())
            .map(|row| formatters.iter().map(|f| one_line_cell(&f.value(row).to_string())).collect())
            .collect();
        if !self.started {
            for row in &rows {
                for (width, cell) in self.widths.iter_mut().zip(row) {
                    *width = (*width).max(cell.chars().count());
                }
            }
            self.write_header(buf)?;
        }
        for row in &rows {
            self.write_row(buf, row)?;
        }
        Ok(())
    }

    fn write_header(&self, buf: &mut Vec<u8>) -> Result<()> {
        let names: Vec<String> = self.schema.fields().iter().map(|f| f.name().clone()).collect();
        self.write_border(buf)?;
        self.write_row(buf, &names)?;
        self.write_border(buf)
    }

    fn write_border(&self, buf: &mut Vec<u8>) -> Result<()> {
        let mut line = String::from("+");
        for width in &self.widths {
            line.push_str(&"-".repeat(width + 2));
            line.push('+');
        }
        writeln!(buf, "{line}")?;
        Ok(())
    }

    fn write_row(&self, buf: &mut Vec<u8>, cells: &[String]) -> Result<()> {
        let mut line = String::from("|");
        for (cell, width) in cells.iter().zip(&self.widths) {
            let pad = width.saturating_sub(cell.chars().count());
            line.push(' ');
            line.push_str(cell);
            line.push_str(&" ".repeat(pad + 1));
            line.push('|');
        }
        writeln!(buf, "{line}")?;
        Ok(())
    }
}

/// The widest a value of this type usually prints, for types whose width varies from row to row
/// (a timestamp drops trailing zero digits of its fraction); 0 when the data decides.
fn min_width(data_type: &DataType) -> usize {
    match data_type {
        DataType::Timestamp(unit, _) => match unit {
            TimeUnit::Second => "2023-11-14T22:13:20Z".len(),
            TimeUnit::Millisecond => "2023-11-14T22:13:20.123Z".len(),
            TimeUnit::Microsecond => "2023-11-14T22:13:20.123456Z".len(),
            TimeUnit::Nanosecond => "2023-11-14T22:13:20.123456789Z".len(),
        },
        _ => 0,
    }
}

/// Encodes a batch as newline-delimited JSON, with explicit nulls.
fn ndjson_lines(batch: &RecordBatch) -> Result<String> {
    let mut buf = Vec::new();
    let mut writer = JsonWriterBuilder::new()
        .with_explicit_nulls(true)
        .with_timestamp_format(NAIVE_TIMESTAMP_FORMAT.to_string())
        .build::<_, LineDelimited>(&mut buf);
    writer.write(batch)?;
    writer.finish()?;
    drop(writer);
    Ok(String::from_utf8(buf)?)
}

/// Keeps a streamed table row on one line.
fn one_line_cell(value: &str) -> String {
    if !value.contains(['\n', '\r', '\t']) {
        return value.to_string();
    }
    value.replace('\n', "\\n").replace('\r', "\\r").replace('\t', "\\t")
}

#[cfg(test)]
mod tests {
    use super::*;
    use datafusion::arrow::array::{ArrayRef, Int64Array, StringArray, TimestampNanosecondArray};
    use datafusion::arrow::datatypes::{DataType, Field, Schema, TimeUnit};
    use std::sync::Arc;

    fn schema() -> SchemaRef {
        Arc::new(Schema::new(vec![
            Field::new("pid", DataType::Int64, false),
            Field::new("path", DataType::Utf8, true),
            Field::new("ts", DataType::Timestamp(TimeUnit::Nanosecond, None), false),
        ]))
    }

    fn batch() -> RecordBatch {
        let columns: Vec<ArrayRef> = vec![
            Arc::new(Int64Array::from(vec![1, 42])),
            Arc::new(StringArray::from(vec![Some("/etc/passwd"), None])),
            Arc::new(TimestampNanosecondArray::from(vec![1_700_000_000_000_000_000, 1_700_000_000_123_456_789])),
        ];
        RecordBatch::try_new(schema(), columns).unwrap()
    }

    fn printer(format: Format) -> Printer {
        Printer { format, ..Printer::default() }
    }

    fn render(format: Format, batches: &[RecordBatch]) -> String {
        String::from_utf8(printer(format).render(&schema(), batches).unwrap()).unwrap()
    }

    fn stream(format: Format, batches: &[RecordBatch]) -> String {
        let mut sp = StreamPrinter::new(&printer(format), schema());
        let mut out = Vec::new();
        for b in batches {
            sp.push(&mut out, b).unwrap();
        }
        sp.finish(&mut out).unwrap();
        String::from_utf8(out).unwrap()
    }

    #[test]
    fn format_names_round_trip() {
        for name in ["table", "csv", "json", "ndjson"] {
            assert_eq!(name.parse::<Format>().unwrap().to_string(), name);
        }
        assert_eq!("nd-json".parse::<Format>().unwrap(), Format::NdJson);
        assert_eq!("CSV".parse::<Format>().unwrap(), Format::Csv);
        assert_eq!(
            "xml".parse::<Format>().unwrap_err().to_string(),
            "unknown format 'xml': expected table, csv, json or ndjson"
        );
    }

    #[test]
    fn table() {
        let expected = "\
+-----+-------------+--------------------------------+
| pid | path        | ts                             |
+-----+-------------+--------------------------------+
| 1   | /etc/passwd | 2023-11-14T22:13:20Z           |
| 42  | NULL        | 2023-11-14T22:13:20.123456789Z |
+-----+-------------+--------------------------------+
";
        assert_eq!(render(Format::Table, &[batch()]), expected);
        // The streamed table looks the same when everything arrives in one batch.
        assert_eq!(stream(Format::Table, &[batch()]), expected);
    }

    #[test]
    fn streamed_table_sizes_timestamps_for_nanoseconds() {
        let text = stream(Format::Table, &[batch().slice(0, 1)]);
        let expected = "\
+-----+-------------+--------------------------------+
| pid | path        | ts                             |
+-----+-------------+--------------------------------+
| 1   | /etc/passwd | 2023-11-14T22:13:20Z           |
+-----+-------------+--------------------------------+
";
        assert_eq!(text, expected);
    }

    #[test]
    fn empty_table_is_a_header() {
        let expected = "\
+-----+------+----+
| pid | path | ts |
+-----+------+----+
+-----+------+----+
";
        assert_eq!(render(Format::Table, &[]), expected);
        let streamed = stream(Format::Table, &[]);
        assert_eq!(streamed.lines().nth(1), Some(format!("| pid | path | ts{} |", " ".repeat(28)).as_str()));
        assert_eq!(streamed.lines().count(), 4);
    }

    #[test]
    fn table_maxrows() {
        let p = Printer { maxrows: Some(1), ..Printer::default() };
        let text = String::from_utf8(p.render(&schema(), &[batch(), batch()]).unwrap()).unwrap();
        assert_eq!(text.lines().filter(|l| l.starts_with("| 1 ")).count(), 1);
        assert!(!text.contains("| 42"));
        assert!(text.ends_with("(first 1 of 4 rows shown)\n"), "{text}");
    }

    #[test]
    fn streamed_table_keeps_the_first_widths() {
        let first = RecordBatch::try_new(
            schema(),
            vec![
                Arc::new(Int64Array::from(vec![1])),
                Arc::new(StringArray::from(vec!["/a"])),
                Arc::new(TimestampNanosecondArray::from(vec![0])),
            ],
        )
        .unwrap();
        let text = stream(Format::Table, &[first, batch()]);
        let expected = "\
+-----+------+--------------------------------+
| pid | path | ts                             |
+-----+------+--------------------------------+
| 1   | /a   | 1970-01-01T00:00:00Z           |
| 1   | /etc/passwd | 2023-11-14T22:13:20Z           |
| 42  | NULL | 2023-11-14T22:13:20.123456789Z |
+-----+------+--------------------------------+
";
        assert_eq!(text, expected);
    }

    #[test]
    fn csv() {
        let expected = "\
pid,path,ts
1,/etc/passwd,2023-11-14T22:13:20Z
42,,2023-11-14T22:13:20.123456789Z
";
        assert_eq!(render(Format::Csv, &[batch()]), expected);
        let twice = format!("{expected}{}", expected.split_once('\n').unwrap().1);
        assert_eq!(stream(Format::Csv, &[batch(), batch()]), twice);
        assert_eq!(render(Format::Csv, &[]), "pid,path,ts\n");
    }

    #[test]
    fn ndjson() {
        let expected = r#"{"pid":1,"path":"/etc/passwd","ts":"2023-11-14T22:13:20Z"}
{"pid":42,"path":null,"ts":"2023-11-14T22:13:20.123456789Z"}
"#;
        assert_eq!(render(Format::NdJson, &[batch()]), expected);
        assert_eq!(render(Format::NdJson, &[]), "");
    }

    #[test]
    fn json() {
        let expected = r#"[{"pid":1,"path":"/etc/passwd","ts":"2023-11-14T22:13:20Z"},
{"pid":42,"path":null,"ts":"2023-11-14T22:13:20.123456789Z"}]
"#;
        assert_eq!(render(Format::Json, &[batch()]), expected);
        assert_eq!(render(Format::Json, &[]), "[]\n");
        let two = stream(Format::Json, &[batch(), batch()]);
        assert_eq!(two.lines().count(), 4);
        assert!(two.starts_with("[{") && two.ends_with("}]\n"));
    }

    #[test]
    fn zoned_timestamps_are_utc() {
        let schema = Arc::new(Schema::new(vec![Field::new(
            "ts",
            DataType::Timestamp(TimeUnit::Nanosecond, Some("UTC".into())),
            false,
        )]));
        let array = TimestampNanosecondArray::from(vec![1_700_000_000_000_000_000]).with_timezone("UTC");
        let batch = RecordBatch::try_new(schema.clone(), vec![Arc::new(array)]).unwrap();
        let csv = printer(Format::Csv).render(&schema, &[batch]).unwrap();
        assert_eq!(String::from_utf8(csv).unwrap(), "ts\n2023-11-14T22:13:20Z\n");
    }

    #[test]
    fn no_columns_prints_nothing() {
        let empty = Arc::new(Schema::empty());
        for format in [Format::Table, Format::Csv, Format::Json, Format::NdJson] {
            assert!(printer(format).render(&empty, &[]).unwrap().is_empty());
        }
    }

    #[test]
    fn footer() {
        let p = Printer::default();
        assert_eq!(p.footer(3, Duration::from_millis(1234)), "3 row(s) fetched. Elapsed 1.234 seconds.");
        let quiet = Printer { timing: false, ..p };
        assert_eq!(quiet.footer(0, Duration::ZERO), "0 row(s) fetched.");
    }
}
