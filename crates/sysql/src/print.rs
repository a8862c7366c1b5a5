//! Output formats for query results: aligned tables, horizontal bars, CSV, JSON and
//! newline-delimited JSON.
//!
//! Every format renders into memory first and then writes to the caller's writer in one go, so
//! an I/O failure (a closed pipe) surfaces as a plain [`std::io::Error`] the caller can recognise.
//!
//! Where things go: results are written to the writer the caller passes in (stdout). The footer
//! ("N row(s) fetched. Elapsed X.XXX seconds.") is part of the human-readable table output and
//! goes to that same writer; for `csv`, `json` and `ndjson` it goes to stderr so that machine
//! output stays clean when redirected.
//!
//! Timestamps are written as RFC 3339. In the machine formats they keep every digit their value
//! has, zoned ones in their zone (`…Z` for UTC) and zone-less ones, which sysql treats as UTC,
//! with an explicit `Z`. Tables show each column's timestamps at one precision, with a zone
//! only when the type has one ([`timestamps`]).

mod timestamps;

use std::fmt;
use std::io::Write;
use std::str::FromStr;
use std::time::Duration;

use anyhow::Result;
use datafusion::arrow::array::RecordBatch;
use datafusion::arrow::csv::WriterBuilder as CsvWriterBuilder;
use datafusion::arrow::datatypes::SchemaRef;
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
    /// The first text column against the first number column as horizontal bars (`\chart`'s).
    Bar,
}

impl Format {
    /// Whether the format is for people: a complete result is laid out as a whole (aligned, or
    /// scaled to its largest value) and its footer goes with it; the machine formats stream
    /// rows and send the footer to stderr.
    pub fn for_people(self) -> bool {
        matches!(self, Format::Table | Format::Bar)
    }
}

/// The error for a format name that [`Format::from_str`] does not know.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UnknownFormat(pub String);

impl fmt::Display for UnknownFormat {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "unknown format '{}': expected table, csv, json, ndjson or bar", self.0)
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
            "bar" => Ok(Format::Bar),
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
            Format::Bar => "bar",
        })
    }
}

/// When `table` output shows each row as a record of `name | value` lines (psql's `\x`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Expanded {
    /// Rows across, always.
    #[default]
    Off,
    /// Records, always.
    On,
    /// Records when a row is wider than the terminal ([`Printer::width`]).
    Auto,
}

impl fmt::Display for Expanded {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Expanded::Off => "off",
            Expanded::On => "on",
            Expanded::Auto => "auto",
        })
    }
}

/// Prints query results in one [`Format`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Printer {
    /// The output format.
    pub format: Format,
    /// At most this many rows are shown in `table` format for a bounded result; a line under the
    /// table says how many were not. Machine formats and streamed (live) results show every row.
    pub maxrows: Option<usize>,
    /// Whether the footer includes the elapsed time.
    pub timing: bool,
    /// No "N row(s) fetched" footer at all (`-q`).
    pub quiet: bool,
    /// Rows across or as records, in `table` format.
    pub expanded: Expanded,
    /// How a NULL shows in `table` and `bar` format (machine formats have their own).
    pub null: String,
    /// The terminal's width in columns, when output goes to one (for [`Expanded::Auto`], and
    /// the length of bars).
    pub width: Option<usize>,
}

impl Default for Printer {
    fn default() -> Self {
        Printer {
            format: Format::Table,
            maxrows: None,
            timing: false,
            quiet: false,
            expanded: Expanded::Off,
            null: "NULL".into(),
            width: None,
        }
    }
}

impl Printer {
    /// Writes a complete (bounded) result. An empty result in `table` format is the header with
    /// no rows, in `csv` the header line, in `json` `[]`, in `ndjson` and `bar` nothing. A result
    /// without columns (the answer to DDL such as `CREATE VIEW`) prints nothing. A result that
    /// `bar` cannot draw (no text or no number column) is shown as a table, under a line on
    /// stderr that says why.
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
        if !self.format.for_people() {
            let mut stream = StreamPrinter::new(self, schema.clone());
            let mut buf = Vec::new();
            for batch in batches {
                stream.push(&mut buf, batch)?;
            }
            stream.finish(&mut buf)?;
            return Ok(buf);
        }
        if self.format == Format::Bar {
            let width = self.width.unwrap_or(crate::chart::DEFAULT_WIDTH);
            match crate::chart::bars(schema, batches, width, self.maxrows, &self.null) {
                Ok(bars) => return Ok(bars.into_bytes()),
                // The rows are still worth seeing.
                Err(e) => eprintln!("sysql: the bar format {e}; shown as a table"),
            }
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
        let visible = timestamps::shortest(&visible);
        let options = self.format_options();
        let mut text = String::new();
        let across = match self.expanded {
            Expanded::On => None,
            Expanded::Off | Expanded::Auto => Some(pretty_format_batches_with_options(&visible, &options)?.to_string()),
        };
        match across {
            Some(table) if !self.too_wide(&table) => {
                text.push_str(&table);
                text.push('\n');
            }
            _ => text.push_str(&records(schema, &visible, &options, 0)?),
        }
        if shown < total {
            let hidden = total - shown;
            let rows = if hidden == 1 { "row" } else { "rows" };
            text.push_str(&format!("({hidden} more {rows} not shown, {total} in all)\n"));
        }
        Ok(text.into_bytes())
    }

    /// Whether a table whose first line is that of `table` is wider than the terminal, with
    /// [`Expanded::Auto`].
    fn too_wide(&self, table: &str) -> bool {
        let width = table.lines().next().map_or(0, |l| l.chars().count());
        self.expanded == Expanded::Auto && self.width.is_some_and(|w| width > w)
    }

    /// Arrow display options for `table` output: [`Printer::null`] for NULLs.
    fn format_options(&self) -> FormatOptions<'_> {
        format_options(Format::Table).with_null(&self.null)
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
        if self.quiet {
            return Ok(());
        }
        let line = self.footer(rows, elapsed);
        if self.format.for_people() {
            writeln!(out, "{line}\n")?;
            out.flush()?;
        } else {
            eprintln!("{line}");
        }
        Ok(())
    }
}

/// Arrow display options shared by all formats; only the null marker differs.
fn format_options<'a>(format: Format) -> FormatOptions<'a> {
    let null = if format == Format::Table { "NULL" } else { "" };
    FormatOptions::new().with_display_error(true).with_null(null).with_timestamp_format(Some(NAIVE_TIMESTAMP_FORMAT))
}

/// Prints rows as records, psql's expanded display: for each row a line `-[ RECORD n ]` and a
/// `name | value` line per column, names aligned. `first` is the number of rows before these.
fn records(schema: &SchemaRef, batches: &[RecordBatch], options: &FormatOptions<'_>, first: usize) -> Result<String> {
    let names: Vec<&String> = schema.fields().iter().map(|f| f.name()).collect();
    let name_width = names.iter().map(|n| n.chars().count()).max().unwrap_or(0);
    let mut rows: Vec<Vec<String>> = Vec::new();
    for batch in batches {
        rows.extend(cells(batch, options)?);
    }
    let value_width = rows.iter().flatten().map(|v| v.chars().count()).max().unwrap_or(0);
    let mut text = String::new();
    for (n, row) in rows.iter().enumerate() {
        text.push_str(&record_header(first + n + 1, name_width, value_width));
        for (name, value) in names.iter().zip(row) {
            let line = format!("{name:<name_width$} | {value}");
            text.push_str(line.trim_end());
            text.push('\n');
        }
    }
    Ok(text)
}

/// `-[ RECORD n ]-----+------`: as wide as the record, a `+` over the column separator.
fn record_header(n: usize, name_width: usize, value_width: usize) -> String {
    let mut line: Vec<char> = format!("-[ RECORD {n} ]").chars().collect();
    let label = line.len();
    let width = name_width + 3 + value_width;
    line.resize(width.max(label), '-');
    if name_width + 1 >= label && name_width + 1 < line.len() {
        line[name_width + 1] = '+';
    }
    let mut text: String = line.into_iter().collect();
    text.push('\n');
    text
}

/// Every row of `batch` as display strings on one line each.
fn cells(batch: &RecordBatch, options: &FormatOptions<'_>) -> Result<Vec<Vec<String>>> {
    let formatters =
        batch.columns().iter().map(|c| ArrayFormatter::try_new(c.as_ref(), options)).collect::<Result<Vec<_>, _>>()?;
    Ok((0..batch.num_rows())
        .map(|row| formatters.iter().map(|f| one_line_cell(&f.value(row).to_string())).collect())
        .collect())
}

/// Prints batches of an unbounded (live) result as they arrive.
///
/// `table` prints the header once, with columns as wide as the first batch needs (timestamps with
/// every digit of their unit), and then rows as they come, aligned to those widths. A later value
/// too long for its column widens the column, and the header is printed again above that row, so
/// that every row lines up with the header above it. Expanded display prints each row as a
/// record; [`Expanded::Auto`] decides on the first batch. `bar` prints a table too: bars are
/// scaled to the largest value, which a stream that never ends never knows.
/// `csv` prints the header once, `json` opens the array on the first row and closes it in
/// [`StreamPrinter::finish`], `ndjson` prints one line per row.
#[derive(Debug)]
pub struct StreamPrinter {
    format: Format,
    schema: SchemaRef,
    rows: usize,
    started: bool,
    widths: Vec<usize>,
    null: String,
    expanded: Expanded,
    width: Option<usize>,
}

impl StreamPrinter {
    /// A printer for a result with `schema` in the format of `printer`.
    pub fn new(printer: &Printer, schema: SchemaRef) -> Self {
        let widths =
            schema.fields().iter().map(|f| f.name().chars().count().max(timestamps::width(f.data_type()))).collect();
        StreamPrinter {
            format: printer.format,
            schema,
            rows: 0,
            started: false,
            widths,
            null: printer.null.clone(),
            expanded: printer.expanded,
            width: printer.width,
        }
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
            Format::Table | Format::Bar => self.push_table(&mut buf, batch)?,
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
            Format::Table | Format::Bar if self.expanded == Expanded::On => {}
            Format::Table | Format::Bar => {
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
        let options = format_options(Format::Table).with_null(&self.null);
        let batch = &timestamps::at_unit(batch);
        let rows = cells(batch, &options)?;
        if !self.started {
            for row in &rows {
                for (width, cell) in self.widths.iter_mut().zip(row) {
                    *width = (*width).max(cell.chars().count());
                }
            }
            let across = self.widths.iter().map(|w| w + 3).sum::<usize>() + 1;
            if self.expanded == Expanded::Auto {
                self.expanded = if self.width.is_some_and(|w| across > w) { Expanded::On } else { Expanded::Off };
            }
            if self.expanded != Expanded::On {
                self.write_header(buf)?;
            }
        }
        if self.expanded == Expanded::On {
            buf.extend_from_slice(records(&self.schema, std::slice::from_ref(batch), &options, self.rows)?.as_bytes());
            return Ok(());
        }
        for row in &rows {
            let mut wider = false;
            for (width, cell) in self.widths.iter_mut().zip(row) {
                let needed = cell.chars().count();
                if needed > *width {
                    *width = needed;
                    wider = true;
                }
            }
            if wider {
                self.write_header(buf)?;
            }
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
        for name in ["table", "csv", "json", "ndjson", "bar"] {
            assert_eq!(name.parse::<Format>().unwrap().to_string(), name);
        }
        assert_eq!("nd-json".parse::<Format>().unwrap(), Format::NdJson);
        assert_eq!("CSV".parse::<Format>().unwrap(), Format::Csv);
        assert_eq!(
            "xml".parse::<Format>().unwrap_err().to_string(),
            "unknown format 'xml': expected table, csv, json, ndjson or bar"
        );
    }

    #[test]
    fn bars_draw_the_first_text_column_against_the_first_number_column() {
        // 26 columns: the labels (11), the values (2) and their gaps (3) leave 10 for a bar.
        let p = Printer { format: Format::Bar, width: Some(26), ..Printer::default() };
        let text = String::from_utf8(p.render(&schema(), &[batch()]).unwrap()).unwrap();
        assert_eq!(text, format!("/etc/passwd  {} 1\nNULL         {} 42\n", "▎", "█".repeat(10)));
        // Without a text column the rows show as a table (and stderr says why).
        let numbers = batch().project(&[0]).unwrap();
        let table = String::from_utf8(p.render(&numbers.schema(), &[numbers]).unwrap()).unwrap();
        assert_eq!(table, "+-----+\n| pid |\n+-----+\n| 1   |\n| 42  |\n+-----+\n");
        // A live result in `bar` is a table: bars scale to a largest value it never knows.
        assert_eq!(stream(Format::Bar, &[batch()]), stream(Format::Table, &[batch()]));
        let mut out = Vec::new();
        p.print_footer(&mut out, 2, Duration::ZERO).unwrap();
        assert_eq!(out, b"2 row(s) fetched.\n\n");
    }

    #[test]
    fn table() {
        // One value has nanoseconds, so every value of the column shows nine digits; the type
        // has no zone, so none shows.
        let expected = "\
+-----+-------------+-------------------------------+
| pid | path        | ts                            |
+-----+-------------+-------------------------------+
| 1   | /etc/passwd | 2023-11-14T22:13:20.000000000 |
| 42  | NULL        | 2023-11-14T22:13:20.123456789 |
+-----+-------------+-------------------------------+
";
        assert_eq!(render(Format::Table, &[batch()]), expected);
        // The streamed table looks the same when everything arrives in one batch.
        assert_eq!(stream(Format::Table, &[batch()]), expected);
    }

    #[test]
    fn streamed_table_shows_every_digit_of_the_unit() {
        let text = stream(Format::Table, &[batch().slice(0, 1)]);
        let expected = "\
+-----+-------------+-------------------------------+
| pid | path        | ts                            |
+-----+-------------+-------------------------------+
| 1   | /etc/passwd | 2023-11-14T22:13:20.000000000 |
+-----+-------------+-------------------------------+
";
        assert_eq!(text, expected);
        // A bounded result of the same row needs no fraction.
        assert!(render(Format::Table, &[batch().slice(0, 1)]).contains("| 2023-11-14T22:13:20 |"));
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
        assert_eq!(streamed.lines().nth(1), Some(format!("| pid | path | ts{} |", " ".repeat(27)).as_str()));
        assert_eq!(streamed.lines().count(), 4);
    }

    #[test]
    fn table_maxrows() {
        let p = Printer { maxrows: Some(1), ..Printer::default() };
        let text = String::from_utf8(p.render(&schema(), &[batch(), batch()]).unwrap()).unwrap();
        assert_eq!(text.lines().filter(|l| l.starts_with("| 1 ")).count(), 1);
        assert!(!text.contains("| 42"));
        assert!(text.ends_with("(3 more rows not shown, 4 in all)\n"), "{text}");
    }

    #[test]
    fn streamed_table_heads_again_when_a_value_no_longer_fits() {
        let first = RecordBatch::try_new(
            schema(),
            vec![
                Arc::new(Int64Array::from(vec![1])),
                Arc::new(StringArray::from(vec!["/a"])),
                Arc::new(TimestampNanosecondArray::from(vec![0])),
            ],
        )
        .unwrap();
        let text = stream(Format::Table, &[first.clone(), batch(), first]);
        let expected = "\
+-----+------+-------------------------------+
| pid | path | ts                            |
+-----+------+-------------------------------+
| 1   | /a   | 1970-01-01T00:00:00.000000000 |
+-----+-------------+-------------------------------+
| pid | path        | ts                            |
+-----+-------------+-------------------------------+
| 1   | /etc/passwd | 2023-11-14T22:13:20.000000000 |
| 42  | NULL        | 2023-11-14T22:13:20.123456789 |
| 1   | /a          | 1970-01-01T00:00:00.000000000 |
+-----+-------------+-------------------------------+
";
        assert_eq!(text, expected);
    }

    fn expanded_text() -> String {
        let rule = "-".repeat(23);
        format!(
            "-[ RECORD 1 ]{rule}\npid  | 1\npath | /etc/passwd\nts   | 2023-11-14T22:13:20.000000000\n\
             -[ RECORD 2 ]{rule}\npid  | 42\npath | NULL\nts   | 2023-11-14T22:13:20.123456789\n"
        )
    }

    #[test]
    fn expanded_shows_records() {
        let p = Printer { expanded: Expanded::On, ..Printer::default() };
        assert_eq!(String::from_utf8(p.render(&schema(), &[batch()]).unwrap()).unwrap(), expanded_text());
        let mut sp = StreamPrinter::new(&p, schema());
        let mut out = Vec::new();
        sp.push(&mut out, &batch().slice(0, 1)).unwrap();
        sp.push(&mut out, &batch().slice(1, 1)).unwrap();
        sp.finish(&mut out).unwrap();
        let streamed = String::from_utf8(out).unwrap();
        assert!(streamed.starts_with("-[ RECORD 1 ]----") && streamed.contains("\n-[ RECORD 2 ]----"), "{streamed}");
        assert!(streamed.ends_with("ts   | 2023-11-14T22:13:20.123456789\n"), "{streamed}");
    }

    #[test]
    fn auto_expands_rows_wider_than_the_terminal() {
        // The table is 53 columns wide.
        let at = |width: Option<usize>| {
            let p = Printer { expanded: Expanded::Auto, width, ..Printer::default() };
            String::from_utf8(p.render(&schema(), &[batch()]).unwrap()).unwrap()
        };
        assert!(at(Some(53)).starts_with("+-----+"));
        assert!(at(None).starts_with("+-----+"));
        assert_eq!(at(Some(52)), expanded_text());
    }

    #[test]
    fn null_display() {
        let p = Printer { null: "(null)".into(), ..Printer::default() };
        let text = String::from_utf8(p.render(&schema(), &[batch()]).unwrap()).unwrap();
        assert!(text.contains("| 42  | (null)      |"), "{text}");
        // Machine formats keep their own NULL.
        let csv = Printer { format: Format::Csv, ..p }.render(&schema(), &[batch()]).unwrap();
        assert!(String::from_utf8(csv).unwrap().contains("\n42,,"));
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
        let csv = printer(Format::Csv).render(&schema, std::slice::from_ref(&batch)).unwrap();
        assert_eq!(String::from_utf8(csv).unwrap(), "ts\n2023-11-14T22:13:20Z\n");
        let table = printer(Format::Table).render(&schema, &[batch]).unwrap();
        assert!(String::from_utf8(table).unwrap().contains("| 2023-11-14T22:13:20Z |"));
    }

    #[test]
    fn no_columns_prints_nothing() {
        let empty = Arc::new(Schema::empty());
        for format in [Format::Table, Format::Csv, Format::Json, Format::NdJson, Format::Bar] {
            assert!(printer(format).render(&empty, &[]).unwrap().is_empty());
        }
    }

    #[test]
    fn footer() {
        let p = Printer { timing: true, ..Printer::default() };
        assert_eq!(p.footer(3, Duration::from_millis(1234)), "3 row(s) fetched. Elapsed 1.234 seconds.");
        let untimed = Printer { timing: false, ..p };
        assert_eq!(untimed.footer(0, Duration::ZERO), "0 row(s) fetched.");
        let mut out = Vec::new();
        Printer { quiet: true, ..untimed }.print_footer(&mut out, 3, Duration::ZERO).unwrap();
        assert!(out.is_empty());
    }
}
