"""Start-up and exit, side by side: how long each tracer takes from exec to
holding all its attachments, and from the stop to its exit.

- attached: the tracer is exec'd and its BPF links and perf-event
  attachments (`tools.attach_count`) are polled every 5 ms; the time is when
  the count first reaches the number it settles at. For sysql, also when it
  prints its "capturing since" line (what scripts wait for).
- stop: SIGINT once attached, to the process's exit (the kernel detaching
  every program is part of it).
- sysql one-shot: `sysql --embedded -c "SELECT 1"`: exec to the answer on
  stdout, and the answer to the process's exit.
- RSS idle: `VmRSS` (and its split, `tools.rss_detail_kb`) 1 s after the
  attachments settled. `sysql` is a one-shot capture whose statement is
  already planned (`-c ... --for 1h`); `sysql-agent` is `sysql agent`, the
  always-on process, before any client asks it anything, and again 1 s after
  it answered one query (`sysql --agent SOCKET -c ...`): the code a query
  runs stays mapped.

Each figure is the median of `reps` runs on an otherwise idle machine.
"""

import os
import selectors
import signal
import subprocess
import time

import tools
from report import median


def _attach_and_stop(argv, env=None, line=None, ask=None):
    """(seconds to the final attachment count, seconds to `line` on stderr or
    None, seconds from SIGINT to exit, attachments, (VmRSS kB, its split) 1 s
    after settling, and VmRSS kB 1 s after running the command `ask` (None
    without one))."""
    t0 = time.monotonic()
    proc = subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, env=env)
    os.set_blocking(proc.stderr.fileno(), False)
    counts = []  # (time, count)
    line_at = None
    buf = b""
    last_change = time.monotonic()
    while time.monotonic() - t0 < 60:
        if proc.poll() is not None:
            break
        try:
            chunk = proc.stderr.read() or b""
        except OSError:
            chunk = b""
        buf += chunk
        if line and line_at is None and line.encode() in buf:
            line_at = time.monotonic() - t0
        n = tools.attach_count(proc.pid)
        now = time.monotonic()
        if not counts or counts[-1][1] != n:
            counts.append((now - t0, n))
            last_change = now
        # settled: unchanged for 0.5 s (and the line seen, if there is one)
        if n > 0 and now - last_change > 0.5 and (line is None or line_at is not None):
            break
        time.sleep(0.005)
    final = counts[-1][1] if counts else 0
    attached = next((t for t, n in counts if n == final), None)
    time.sleep(1.0)
    rss = (tools.status_kb(proc.pid, "VmRSS"), tools.rss_detail_kb(proc.pid)) if proc.poll() is None else (None, None)
    rss_asked = None
    if ask and proc.poll() is None:
        asked = subprocess.run(ask, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, timeout=60)
        if asked.returncode == 0:
            time.sleep(1.0)
            rss_asked = tools.status_kb(proc.pid, "VmRSS")
    t1 = time.monotonic()
    proc.send_signal(signal.SIGINT)
    try:
        proc.wait(timeout=60)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()
    stop = time.monotonic() - t1
    proc.stderr.close()
    return attached, line_at, stop, final, rss, rss_asked


def _oneshot(sysql, env):
    """(seconds to the answer, seconds from the answer to the exit)."""
    t0 = time.monotonic()
    proc = subprocess.Popen([sysql, "--embedded", "-c", "SELECT 1"], stdout=subprocess.PIPE,
                            stderr=subprocess.DEVNULL, env=env)
    sel = selectors.DefaultSelector()
    sel.register(proc.stdout, selectors.EVENT_READ)
    answer = last = None
    while True:
        sel.select(timeout=60)
        data = os.read(proc.stdout.fileno(), 65536)
        if not data:
            break
        last = time.monotonic() - t0
        answer = answer if answer is not None else last
    proc.wait()
    return answer, time.monotonic() - t0 - (last or 0)


def measure(env, reps, available):
    """Result entries (tool, workload "startup")."""
    script = os.path.join(env.workdir, "startup.bt")
    with open(script, "w") as f:
        f.write(tools.BPFTRACE_SCRIPT)
    base = dict(os.environ)
    plans = []
    if available.get("sysql"):
        plans.append(("sysql", [env.sysql, "--embedded", "-c", "SELECT 1", "--for", "1h"] + env.sysql_args,
                      base, "capturing since"))
        state = os.path.join(env.workdir, "agent-state")
        sock = os.path.join(env.workdir, "agent.sock")
        plans.append(("sysql-agent", [env.sysql, "agent", "--state-dir", state, "--socket", sock] + env.sysql_args,
                      base, "capturing since"))
        tp = dict(base, SYSQL_HOOKS="tracepoints")
        plans.append(("sysql-tracepoints", [env.sysql, "--embedded", "-c", "SELECT 1", "--for", "1h"]
                      + env.sysql_args, tp, "capturing since"))
    if available.get("bpftrace"):
        plans.append(("bpftrace", ["bpftrace", script], base, None))
    if available.get("opensnoop"):
        plans.append(("opensnoop", [env.opensnoop], base, None))
    out = []
    for tool, argv, penv, line in plans:
        ask = None
        if tool == "sysql-agent":
            ask = [env.sysql, "--agent", sock, "-c", "SELECT comm, count(*) FROM opens GROUP BY comm"]
        runs = [_attach_and_stop(argv, penv, line, ask) for _ in range(reps)]
        e = {"tool": tool, "workload": "startup", "available": True,
             "attached_s": median([r[0] for r in runs if r[0] is not None]),
             "ready_line_s": median([r[1] for r in runs if r[1] is not None]) if line else None,
             "stop_s": median([r[2] for r in runs]),
             "attachments": runs[-1][3],
             "rss_idle_mb": median([r[4][0] / 1024 for r in runs if r[4][0]]),
             "rss_after_query_mb": median([r[5] / 1024 for r in runs if r[5]]),
             "rss_idle_detail_mb": {k: median([r[4][1][k] / 1024 for r in runs if r[4][1] and r[4][1].get(k) is not None])
                                    for k in ("anon", "file", "bpf_maps")}}
        if tool in ("sysql", "sysql-tracepoints"):
            shots = [_oneshot(env.sysql, penv) for _ in range(reps)]
            e["oneshot_answer_s"] = median([s[0] for s in shots if s[0] is not None])
            e["oneshot_exit_after_answer_s"] = median([s[1] for s in shots])
        out.append(e)
        env.log(f"startup {tool}: attached {e['attached_s']} s, stop {e['stop_s']} s")
    return out
