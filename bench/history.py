"""(f) History query speed: sysql over the events it captured, against DuckDB
over the same events.

sysql has no import path yet, so the events are real: one sysql process
captures a burst of N openat calls (half on missing, numbered paths, half on a
cached file, from two generator processes), then runs one -f file: each query
`reps` times (its footer on stderr gives the elapsed time), the stats, and
last `SELECT * FROM opens` as CSV. That CSV becomes a Parquet file through
pyarrow; DuckDB runs the same queries over it, once loaded into an in-memory
table (like sysql's history) and once straight from the Parquet file.
"""

import csv
import importlib
import importlib.util
import io
import os
import re
import statistics
import subprocess
import sys
import time

import tools

# name -> (sysql SQL, DuckDB SQL); the same question in each dialect.
QUERIES = {
    "filter_groupby": (
        "SELECT comm, errno, count(*) AS n, avg(latency_ns) AS avg_latency_ns FROM opens "
        "WHERE ret < 0 GROUP BY comm, errno ORDER BY n DESC, comm, errno",
        "SELECT comm, errno, count(*) AS n, avg(latency_ns) AS avg_latency_ns FROM opens "
        "WHERE ret < 0 GROUP BY comm, errno ORDER BY n DESC, comm, errno",
    ),
    "window_1s": (
        "SELECT date_bin(INTERVAL '1 second', ts) AS w, count(*) AS n, avg(latency_ns) AS avg_latency_ns "
        "FROM opens GROUP BY w ORDER BY w",
        "SELECT time_bucket(INTERVAL '1 second', ts) AS w, count(*) AS n, avg(latency_ns) AS avg_latency_ns "
        "FROM opens GROUP BY w ORDER BY w",
    ),
    "string_filter": (
        "SELECT comm, count(*) AS n FROM opens WHERE path LIKE '%.missing/%7' GROUP BY comm ORDER BY n DESC, comm",
        "SELECT comm, count(*) AS n FROM opens WHERE path LIKE '%.missing/%7' GROUP BY comm ORDER BY n DESC, comm",
    ),
}

FOOTER = re.compile(r"(\d+) row\(s\) fetched\.(?: Elapsed ([\d.]+) seconds\.)?")

# Arrow types of the exported columns (anything else is read as a string).
TYPES = {"pid": "uint32", "tid": "uint32", "ppid": "uint32", "uid": "uint32", "gid": "uint32",
         "mode": "uint32", "cgroup_id": "uint64", "dfd": "int32", "flags": "int64", "ret": "int64",
         "latency_ns": "int64", "path_truncated": "bool_"}


def missing_modules():
    return [m for m in ("duckdb", "pyarrow") if importlib.util.find_spec(m) is None]


def ensure_modules(install):
    """None when duckdb and pyarrow import, else why not; pip installs them
    when allowed."""
    if missing_modules() and install:
        print("bench: installing duckdb pyarrow (pip)", file=sys.stderr)
        r = subprocess.run([sys.executable, "-m", "pip", "install", "-q", "duckdb", "pyarrow"],
                           stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
        if r.returncode != 0 and "externally-managed" in r.stderr:
            subprocess.run([sys.executable, "-m", "pip", "install", "-q", "--break-system-packages",
                            "duckdb", "pyarrow"], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        importlib.invalidate_caches()
    missing = missing_modules()
    if missing:
        return f"not installed: {' '.join(missing)} (pip install duckdb pyarrow)"
    return None


def has_option(args, name):
    return any(a == name or a.startswith(name + "=") for a in args)


def capture_and_query(env, n_events, reps):
    """Runs sysql over a burst of n_events; returns timings, small results,
    the export's path and offset, and sysql's figures."""
    names = list(QUERIES)
    stmts = ["SELECT count(*) AS n FROM opens"]
    for _ in range(reps):
        stmts += [QUERIES[q][0] for q in names]
    stmts += ["SELECT count(*) AS n FROM opens",
              "SELECT table_name, captured, lost_kernel, history_rows, history_bytes FROM sysql_stats",
              "SELECT * FROM opens"]
    sql_path = os.path.join(env.workdir, "history.sql")
    with open(sql_path, "w") as f:
        f.write(";\n".join(stmts) + ";\n")
    out_path = os.path.join(env.bigdir, "history.csv")
    err_path = os.path.join(env.workdir, "history.err")
    extra = list(env.sysql_args)
    if not has_option(extra, "--history-memory"):
        extra += ["--history-memory", f"{max(1024, n_events * 600 // 2**20 + 512)}MiB"]
    argv = [env.sysql, "--embedded", "-f", sql_path, "--for", "24h", "--format", "csv", "--timing"] + extra
    proc = subprocess.Popen(argv, stdout=open(out_path, "wb"), stderr=open(err_path, "wb"))
    try:
        return run_capture(env, proc, stmts, names, reps, n_events, out_path, err_path)
    finally:
        if proc.poll() is None:
            tools.stop(proc, 10)


def run_capture(env, proc, stmts, names, reps, n_events, out_path, err_path):
    error = tools.wait_attached(proc)
    if error:
        tools.stop(proc, 10)
        raise RuntimeError(f"sysql {error}")
    c0 = tools.cpu_s(proc.pid)
    time.sleep(0.3)
    idle_rate = (tools.cpu_s(proc.pid) - c0) / 0.3
    miss = env.new_run("open-miss", "history", 1, 0, ops=n_events // 2)
    hit = env.new_run("open-hit", "history", 1, 0, ops=n_events - n_events // 2)
    hit.prepare()
    try:
        t0 = time.monotonic()
        gens = [subprocess.Popen(r.argv(env.generator), stdout=subprocess.PIPE) for r in (miss, hit)]
        for g in gens:
            g.wait()
        burst_s = time.monotonic() - t0
    finally:
        hit.cleanup()
    tools.settle(proc.pid, idle_rate)
    rss_kb = tools.status_kb(proc.pid, "VmRSS")
    t0 = time.monotonic()
    if not tools.stop(proc, 3600):
        raise RuntimeError("sysql did not finish the history queries within an hour")
    total_s = time.monotonic() - t0
    with open(err_path) as f:
        err = f.read()
    os.unlink(err_path)
    footers = FOOTER.findall(err)
    if proc.returncode != 0 or len(footers) != len(stmts):
        raise RuntimeError(f"sysql -f exited with status {proc.returncode}: {err.strip()[-400:]}")
    # Every statement but the export prints a header and its rows.
    results = []
    with open(out_path, "rb") as f:
        for rows, _ in footers[:-1]:
            lines = [f.readline().decode() for _ in range(int(rows) + 1)]
            results.append(list(csv.DictReader(io.StringIO("".join(lines)))))
        offset = f.tell()
    times = {q: [] for q in names}
    rows_of = {}
    for i, (rows, elapsed) in enumerate(footers[1:1 + reps * len(names)]):
        q = names[i % len(names)]
        times[q].append(float(elapsed) * 1000)
        rows_of[q] = results[1 + i]
    stats = results[-1]
    opens_stats = next((s for s in stats if s.get("table_name") == "opens"), {})
    return {
        "times_ms": times,
        "rows": rows_of,
        "events_before": int(results[0][0]["n"]),
        "events_after": int(results[1 + reps * len(names)][0]["n"]),
        "stats": opens_stats,
        "burst_s": burst_s,
        "burst_ops": n_events,
        "rss_kb": rss_kb,
        "export": (out_path, offset),
        "export_rows": int(footers[-1][0]),
        "queries_and_export_s": total_s,
    }


def export_parquet(path, offset, parquet_path):
    import pyarrow as pa
    import pyarrow.compute as pc
    import pyarrow.csv as pacsv
    import pyarrow.parquet as pq

    with open(path, "rb") as f:
        f.seek(offset)
        header = f.readline().decode().strip().split(",")
        f.seek(offset)
        types = {c: getattr(pa, TYPES[c])() for c in header if c in TYPES}
        types.update({c: pa.string() for c in header if c not in TYPES and c != "ts"})
        types["ts"] = pa.timestamp("ns", tz="UTC")
        table = pacsv.read_csv(f, read_options=pacsv.ReadOptions(block_size=64 << 20),
                               convert_options=pacsv.ConvertOptions(column_types=types, strings_can_be_null=True))
    # DuckDB's own timestamp is microseconds, naive (UTC here).
    ts = pc.cast(table.column("ts"), pa.timestamp("us", tz="UTC"), safe=False).cast(pa.timestamp("us"))
    table = table.set_column(table.schema.get_field_index("ts"), "ts", ts)
    pq.write_table(table, parquet_path)
    return table.num_rows


def duckdb_times(parquet_path, reps, storage):
    import duckdb

    con = duckdb.connect()
    if storage == "table":
        con.execute(f"CREATE TABLE opens AS SELECT * FROM read_parquet('{parquet_path}')")
    else:
        con.execute(f"CREATE VIEW opens AS SELECT * FROM read_parquet('{parquet_path}')")
    threads = con.execute("SELECT current_setting('threads')").fetchone()[0]
    times = {q: [] for q in QUERIES}
    rows = {}
    for _ in range(reps):
        for q, (_, sql) in QUERIES.items():
            t0 = time.perf_counter()
            cur = con.execute(sql)
            res = cur.fetchall()
            times[q].append((time.perf_counter() - t0) * 1000)
            cols = [d[0] for d in cur.description]
            rows[q] = [dict(zip(cols, r)) for r in res]
    con.close()
    return times, rows, threads


def summary(times):
    return {q: {"median_ms": round(statistics.median(v), 3), "min_ms": round(min(v), 3), "runs": len(v)}
            for q, v in times.items()}


def workload_rows(rows, comm="sysql-bench"):
    """The filter_groupby rows of the generator: identical in both engines,
    since no other process makes them."""
    return sorted((r["errno"] or "", int(r["n"])) for r in rows if r["comm"] == comm)


def measure(env, n_events, reps, info, install):
    if not info.get("sysql", {}).get("available"):
        reason = info.get("sysql", {}).get("reason", "sysql not run")
        return [{"tool": "sysql", "workload": "history", "available": False, "reason": reason}]
    env.log(f"history: capturing {n_events:,} openat events, then {reps} runs of each query")
    try:
        s = capture_and_query(env, n_events, reps)
    except Exception as e:
        env.log(f"  history: {e}")
        return [{"tool": "sysql", "workload": "history", "available": False, "reason": str(e)}]
    env.log(f"  sysql held {s['events_after']:,} opens ({s['burst_ops']:,} from the burst of "
            f"{s['burst_s']:.2f} s); exported {s['export_rows']:,} rows")
    entries = [{
        "tool": "sysql", "workload": "history", "available": True,
        "events": s["events_after"],
        "burst_events": s["burst_ops"],
        "burst_rate": round(s["burst_ops"] / s["burst_s"], 1) if s["burst_s"] else None,
        "lost_kernel": int(s["stats"].get("lost_kernel") or 0),
        "history_bytes": int(s["stats"].get("history_bytes") or 0),
        "rss_mb": round(s["rss_kb"] / 1024, 1) if s["rss_kb"] else None,
        "queries": summary(s["times_ms"]),
    }]
    problem = ensure_modules(install)
    if problem:
        entries.append({"tool": "duckdb", "workload": "history", "available": False, "reason": problem})
        return entries
    import duckdb
    path, offset = s["export"]
    parquet = os.path.join(env.bigdir, "opens.parquet")
    t0 = time.monotonic()
    rows = export_parquet(path, offset, parquet)
    os.unlink(path)
    env.log(f"  wrote {rows:,} rows to Parquet in {time.monotonic() - t0:.1f} s")
    mine = workload_rows(s["rows"]["filter_groupby"])
    for storage in ("table", "parquet"):
        times, res, threads = duckdb_times(parquet, reps, storage)
        theirs = workload_rows(res["filter_groupby"])
        entries.append({
            "tool": "duckdb" if storage == "table" else "duckdb-parquet",
            "workload": "history", "available": True,
            "version": duckdb.__version__, "storage": "in-memory table" if storage == "table" else "Parquet file",
            "threads": threads, "events": rows,
            "results_match": mine == theirs,
            "queries": summary(times),
        })
        if mine != theirs:
            env.log(f"  results differ: sysql {mine} duckdb {theirs}")
    os.unlink(parquet)
    return entries
