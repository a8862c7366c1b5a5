"""(d) Syscall-to-visible latency of a live sysql query.

One sysql process runs `SELECT ts, path FROM live.opens WHERE path LIKE ...`
with CSV output into a pipe; a reader thread stamps every chunk it reads with
the wall clock. A row's latency is its arrival time minus its `ts` (the
syscall's entry, UTC). Each rate is an open-miss run of its own, so the rows
are attributed exactly, and a run's rows must all arrive.
"""

import calendar
import os
import re
import subprocess
import threading
import time

import tools

ROW = re.compile(rb"^(\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d)(?:\.(\d+))?Z?,/tmp/sb-\w+-r(\d+)\.missing/(\S+)$", re.M)


class Reader(threading.Thread):
    """Reads a pipe in raw chunks; a line's arrival is the time of the chunk
    that completed it."""

    def __init__(self, fd):
        super().__init__(daemon=True)
        self.fd = fd
        self.chunks = []  # (arrival_ns, bytes of complete lines)
        self.lines = 0

    def run(self):
        pending = b""
        while True:
            data = os.read(self.fd, 1 << 16)
            now = time.time_ns()
            if not data:
                break
            data = pending + data
            cut = data.rfind(b"\n") + 1
            pending = data[cut:]
            if cut:
                self.chunks.append((now, data[:cut]))
                self.lines += data.count(b"\n", 0, cut)


def ts_ns(sec_text, frac, cache={}):
    base = cache.get(sec_text)
    if base is None:
        base = calendar.timegm(time.strptime(sec_text.decode(), "%Y-%m-%dT%H:%M:%S")) * 10**9
        cache[sec_text] = base
    if frac:
        return base + int(frac[:9].ljust(9, b"0"))
    return base


def percentile(sorted_values, p):
    if not sorted_values:
        return None
    i = round((len(sorted_values) - 1) * p)
    return sorted_values[i]


def stderr_tail(path):
    try:
        with open(path, errors="replace") as f:
            return f.read().strip()[-300:]
    except OSError:
        return ""


def measure(env, rates):
    """Returns {"<rate>": {p50_ms, p99_ms, max_ms, expected, seen}} or an error."""
    runs = [env.new_run("open-miss", f"latency-{rate}", 1, rate, duration=secs) for rate, secs in rates]
    sql = f"SELECT ts, path FROM live.opens WHERE path LIKE '/tmp/sb-{env.sid}-r%'"
    argv = [env.sysql, "--embedded", "-c", sql, "--for", "24h", "--format", "csv"] + env.sysql_args
    err_path = os.path.join(env.workdir, "latency.err")
    proc = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=open(err_path, "wb"))
    reader = Reader(proc.stdout.fileno())
    reader.start()
    try:
        error = tools.wait_attached(proc)
        if error:
            return {"error": f"sysql {error}: {stderr_tail(err_path)}"}
        # The live query subscribes some time after the programs attach: wait
        # for a canary row before the measured runs.
        canary = env.new_run("open-miss", "canary", 1, 0, ops=1)
        deadline = time.monotonic() + 60
        while not any(f"r{canary.k}.missing/".encode() in c for _, c in reader.chunks[-50:]):
            if time.monotonic() > deadline or proc.poll() is not None:
                return {"error": f"the live query showed no row within 60 s: {stderr_tail(err_path)}"}
            tools.run_generator(env.generator, canary)
            time.sleep(0.05)
        time.sleep(0.1)
        for r in runs:
            before = reader.lines
            tools.run_generator(env.generator, r)
            deadline = time.monotonic() + 10
            while reader.lines - before < r.result["ops"] and time.monotonic() < deadline:
                time.sleep(0.05)
            env.log(f"  sysql     live latency     {r.label:22} {r.result['ops']:>9} ops "
                    f"{r.result['rate']:>11,.0f}/s, {reader.lines - before} rows arrived")
    finally:
        tools.stop(proc, 20)
        reader.join(timeout=10)
    per_run = {r.k: [] for r in runs}
    seen = {r.k: set() for r in runs}
    for arrival, block in reader.chunks:
        for m in ROW.finditer(block):
            k = int(m.group(3))
            if k in per_run:
                per_run[k].append(arrival - ts_ns(m.group(1), m.group(2)))
                seen[k].add(m.group(4))
    out = {}
    for (rate, _), r in zip(rates, runs):
        lat = sorted(per_run[r.k])
        ms = (lambda v: None if v is None else round(v / 1e6, 3))
        out[str(rate)] = {
            "rate": round(r.result["rate"], 1),
            "expected": r.result["ops"],
            "seen": len(seen[r.k]),
            "rows": len(lat),
            "p50_ms": ms(percentile(lat, 0.50)),
            "p99_ms": ms(percentile(lat, 0.99)),
            "max_ms": ms(lat[-1] if lat else None),
        }
    os.unlink(err_path)
    return out
