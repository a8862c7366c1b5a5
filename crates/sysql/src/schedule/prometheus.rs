//! A Prometheus text endpoint on loopback (`--prometheus 127.0.0.1:9464`):
//! each scheduled query's counters, and the numeric columns of each history
//! query's latest result as gauges.
//!
//! ```text
//! sysql_schedule_runs_total{query="outbound-tcp-by-program"} 12
//! sysql_result{query="outbound-tcp-by-program",column="connections",comm="curl"} 4
//! ```
//!
//! In `sysql_result`, every numeric column of a row is one sample, labelled
//! with the query, the column and the row's text columns (timestamps and
//! lists are left out); a row whose labels repeat an earlier row's is
//! skipped, since a series must be unique. Live queries have counters only.
//! The endpoint speaks just enough HTTP/1.1 for a scraper: `GET /metrics`.

use super::runner::Registry;
use datafusion::arrow::array::{Array, ArrayRef, Float64Array, RecordBatch, StringArray};
use datafusion::arrow::compute::cast;
use datafusion::arrow::datatypes::DataType;
use std::collections::HashSet;
use std::fmt::Write as _;
use std::net::SocketAddr;
use std::sync::atomic::Ordering::Relaxed;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

/// Series of one query's result at most, so a query that lists events does
/// not flood the scrape.
const MAX_SERIES: usize = 10_000;

/// Refuses all but loopback addresses: the endpoint has no authentication,
/// and results can be sensitive.
pub fn check(addr: SocketAddr) -> Result<(), String> {
    if !addr.ip().is_loopback() {
        return Err(format!("--prometheus {addr}: the endpoint listens on loopback only (e.g. 127.0.0.1:9464)"));
    }
    Ok(())
}

/// Binds the endpoint (see [`check`]).
pub async fn bind(addr: SocketAddr) -> Result<TcpListener, String> {
    check(addr)?;
    TcpListener::bind(addr).await.map_err(|e| format!("cannot listen on {addr}: {e}"))
}

/// Answers scrapes until the task is dropped.
pub async fn serve(listener: TcpListener, registry: Registry) {
    loop {
        let Ok((stream, _)) = listener.accept().await else { continue };
        let registry = registry.clone();
        tokio::spawn(async move {
            let _ = answer(stream, &registry).await;
        });
    }
}

async fn answer(mut stream: TcpStream, registry: &Registry) -> std::io::Result<()> {
    let mut request = Vec::new();
    let mut buf = [0u8; 1024];
    while !request.windows(4).any(|w| w == b"\r\n\r\n") && request.len() < 8192 {
        let n = tokio::time::timeout(std::time::Duration::from_secs(5), stream.read(&mut buf))
            .await
            .map_err(|_| std::io::ErrorKind::TimedOut)??;
        if n == 0 {
            break;
        }
        request.extend_from_slice(&buf[..n]);
    }
    let line = String::from_utf8_lossy(&request);
    let (status, body) = match line.split_whitespace().take(2).collect::<Vec<_>>().as_slice() {
        ["GET", "/metrics" | "/"] => ("200 OK", render(registry)),
        _ => ("404 Not Found", "GET /metrics\n".to_string()),
    };
    let head = format!(
        "HTTP/1.1 {status}\r\nContent-Type: text/plain; version=0.0.4\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
        body.len()
    );
    stream.write_all(head.as_bytes()).await?;
    stream.write_all(body.as_bytes()).await?;
    stream.shutdown().await
}

/// The exposition text for every running query.
pub fn render(registry: &Registry) -> String {
    let queries = registry.lock().unwrap_or_else(|e| e.into_inner()).clone();
    let mut text = String::new();
    let counters = [
        ("runs", "Runs of each saved query (windows or batches of a live one)"),
        ("rows", "Result rows handed to the sink"),
        ("dropped_rows", "Result rows dropped because the sink could not keep up"),
        ("errors", "Runs that failed"),
    ];
    for (name, help) in counters {
        let _ =
            writeln!(text, "# HELP sysql_schedule_{name}_total {help}.\n# TYPE sysql_schedule_{name}_total counter");
        for (query, stats) in &queries {
            let value = match name {
                "runs" => &stats.runs,
                "rows" => &stats.rows,
                "dropped_rows" => &stats.dropped,
                _ => &stats.errors,
            };
            let _ =
                writeln!(text, "sysql_schedule_{name}_total{{query=\"{}\"}} {}", escape(query), value.load(Relaxed));
        }
    }
    let _ = writeln!(text, "# HELP sysql_result Numeric columns of each history query's latest result.");
    let _ = writeln!(text, "# TYPE sysql_result gauge");
    for (query, stats) in &queries {
        if let Some(batch) = stats.latest() {
            result_samples(&mut text, query, &batch);
        }
    }
    text
}

fn result_samples(text: &mut String, query: &str, batch: &RecordBatch) {
    let schema = batch.schema();
    let mut labels: Vec<(String, &StringArray)> = Vec::new();
    let mut values: Vec<(String, Float64Array)> = Vec::new();
    let mut text_columns: Vec<(String, ArrayRef)> = Vec::new();
    for (field, column) in schema.fields().iter().zip(batch.columns()) {
        let name = label_name(field.name());
        match field.data_type() {
            t if t.is_numeric() => {
                if let Ok(c) = cast(column, &DataType::Float64) {
                    if let Some(f) = c.as_any().downcast_ref::<Float64Array>() {
                        values.push((name, f.clone()));
                    }
                }
            }
            DataType::Utf8 | DataType::LargeUtf8 | DataType::Utf8View | DataType::Boolean => {
                if let Ok(c) = cast(column, &DataType::Utf8) {
                    text_columns.push((name, c));
                }
            }
            _ => {}
        }
    }
    for (name, c) in &text_columns {
        if let Some(s) = c.as_any().downcast_ref::<StringArray>() {
            labels.push((name.clone(), s));
        }
    }
    let mut seen = HashSet::new();
    let mut series = 0;
    for row in 0..batch.num_rows() {
        let mut set = format!("query=\"{}\"", escape(query));
        for (name, column) in &labels {
            let value = if column.is_null(row) { "" } else { column.value(row) };
            let _ = write!(set, ",{name}=\"{}\"", escape(value));
        }
        if !seen.insert(set.clone()) {
            continue;
        }
        for (column, array) in &values {
            if array.is_null(row) || series >= MAX_SERIES {
                continue;
            }
            series += 1;
            let _ = writeln!(text, "sysql_result{{{set},column=\"{column}\"}} {}", array.value(row));
        }
    }
}

/// A column name as a label name: `[a-zA-Z_][a-zA-Z0-9_]*`, and not one of
/// the labels sysql sets.
fn label_name(name: &str) -> String {
    let mut out: String = name.chars().map(|c| if c.is_ascii_alphanumeric() { c } else { '_' }).collect();
    if out.is_empty() || out.starts_with(|c: char| c.is_ascii_digit()) || out == "query" || out == "column" {
        out.insert(0, '_');
    }
    out
}

fn escape(value: &str) -> String {
    value.replace('\\', "\\\\").replace('"', "\\\"").replace('\n', "\\n")
}

#[cfg(test)]
mod tests {
    use super::super::runner::QueryStats;
    use super::*;
    use datafusion::arrow::array::{Int64Array, TimestampNanosecondArray};
    use std::sync::Arc;

    #[test]
    fn renders_counters_and_numeric_results() {
        let stats = Arc::new(QueryStats::keeping_latest());
        stats.runs.store(3, Relaxed);
        let registry = Registry::default();
        registry.lock().unwrap().insert("tcp".into(), stats.clone());
        let batch = RecordBatch::try_from_iter([
            ("comm", Arc::new(StringArray::from(vec!["curl", "a\"b", "curl"])) as ArrayRef),
            ("ts", Arc::new(TimestampNanosecondArray::from(vec![0, 0, 0])) as ArrayRef),
            ("count(*)", Arc::new(Int64Array::from(vec![Some(4), None, Some(9)])) as ArrayRef),
        ])
        .unwrap();
        stats.set_latest(batch);
        let text = render(&registry);
        assert!(text.contains("sysql_schedule_runs_total{query=\"tcp\"} 3\n"), "{text}");
        assert!(text.contains("# TYPE sysql_result gauge\n"));
        let results: Vec<&str> = text.lines().filter(|l| l.starts_with("sysql_result{")).collect();
        // a null value is no sample; the repeated label set is skipped
        assert_eq!(results, ["sysql_result{query=\"tcp\",comm=\"curl\",column=\"count___\"} 4"]);
        assert_eq!(label_name("1x"), "_1x");
        assert_eq!(label_name("query"), "_query");
    }

    #[tokio::test]
    async fn serves_loopback_only() {
        assert!(bind("0.0.0.0:0".parse().unwrap()).await.unwrap_err().contains("loopback only"));
        let listener = bind("127.0.0.1:0".parse().unwrap()).await.unwrap();
        let addr = listener.local_addr().unwrap();
        let server = tokio::spawn(serve(listener, Registry::default()));
        let mut stream = TcpStream::connect(addr).await.unwrap();
        stream.write_all(b"GET /metrics HTTP/1.1\r\nHost: x\r\n\r\n").await.unwrap();
        let mut response = String::new();
        stream.read_to_string(&mut response).await.unwrap();
        assert!(response.starts_with("HTTP/1.1 200 OK\r\n"), "{response}");
        assert!(response.contains("# TYPE sysql_schedule_runs_total counter"));
        server.abort();
    }
}
