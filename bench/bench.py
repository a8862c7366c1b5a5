"""The benchmark suite of sysql: capture rate, overhead and query
speed, side by side with bpftrace and opensnoop. Entry point: scripts/bench;
method and JSON schema: docs/benchmarks.md.

For each workload, tools run in turn (no tracer, bpftrace, opensnoop, sysql):
one tracer process per tool and workload sees a fixed plan of generator runs
(low rate, as fast as possible with one and with all threads, a ladder of
rates, 100k events/s), then every run's events are counted exactly.
"""

import argparse
import json
import os
import platform
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import history  # noqa: E402
import latency  # noqa: E402
import report  # noqa: E402
import startup  # noqa: E402
import tools  # noqa: E402

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
WORKLOADS = ["open-miss", "open-hit", "connect-refused", "connect-listener", "exec"]
TOOLS = ["none", "bpftrace", "opensnoop", "sysql"]
NCPU = os.cpu_count() or 1

# Durations in seconds; ladder rates are events per second over all threads.
MODES = {
    "quick": dict(tools=["none", "sysql"], workloads=["open-miss"], threads=[1], cal_s=0.2, max_s=0.3,
                  low_rate=1000, low_s=0.5, idle_s=1.0, ladder=[], ladder_s=0, rss_s=0.5,
                  latency=[(1000, 0.5)], history_events=50_000, reps=3, rounds=1, pipeline_events=200_000,
                  startup_reps=1),
    "default": dict(tools=TOOLS, workloads=WORKLOADS, threads=sorted({1, NCPU}), cal_s=0.3, max_s=1.0,
                    low_rate=1000, low_s=1.0, idle_s=1.0, ladder=[100_000, 250_000, 500_000, 1_000_000],
                    ladder_s=1.0, rss_s=2.0, latency=[(1000, 2.0), (100_000, 2.0)],
                    history_events=2_000_000, reps=5, rounds=1, pipeline_events=2_000_000,
                    startup_reps=5),
    "full": dict(tools=TOOLS, workloads=WORKLOADS, threads=sorted({1, NCPU}), cal_s=0.5, max_s=3.0,
                 low_rate=1000, low_s=3.0, idle_s=2.0,
                 ladder=[50_000, 100_000, 200_000, 400_000, 700_000, 1_000_000, 1_500_000, 2_000_000],
                 ladder_s=3.0, rss_s=5.0, latency=[(1000, 5.0), (10_000, 5.0), (100_000, 5.0)],
                 history_events=10_000_000, reps=5, rounds=3, pipeline_events=4_000_000,
                 startup_reps=9),
}


T0 = time.monotonic()


def log(msg):
    print(f"bench: {time.monotonic() - T0:6.1f}s {msg}", file=sys.stderr, flush=True)


class Env:
    """Paths and settings shared by every part of the run."""

    def __init__(self, args, mode):
        self.mode = mode
        self.sid = os.urandom(3).hex()
        shm = "/dev/shm" if os.path.isdir("/dev/shm") else None
        self.workdir = tempfile.mkdtemp(prefix="sysql-bench-", dir=shm)  # tracer outputs
        self.bigdir = tempfile.mkdtemp(prefix="sysql-bench-", dir="/var/tmp")  # history export
        self.sysql = args.sysql
        self.sysql_args = args.sysql_arg or []
        self.generator = None
        self.opensnoop = shutil.which("opensnoop") or "/usr/sbin/opensnoop"
        self.log = log
        self.next_k = 0

    def new_run(self, workload, label, threads, rate, ops=0, duration=0.0):
        self.next_k += 1
        r = tools.Run(self.sid, self.next_k, workload, label, threads, rate, ops, duration)
        if r.kind == "connect":
            r.port = free_port()
        return r


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


# --- set-up -----------------------------------------------------------------

def build_generator():
    src = os.path.join(ROOT, "bench", "workload.c")
    out_dir = os.path.join(ROOT, "bench", "build")
    os.makedirs(out_dir, exist_ok=True)
    exe = os.path.join(out_dir, "sysql-bench")
    if not os.path.exists(exe) or os.path.getmtime(exe) < os.path.getmtime(src):
        cc = os.environ.get("CC", "cc")
        subprocess.run([cc, "-O2", "-Wall", "-pthread", "-o", exe, src], check=True)
    return exe


def apt_install(packages):
    log(f"installing {' '.join(packages)} (apt)")
    env = dict(os.environ, DEBIAN_FRONTEND="noninteractive")
    r = subprocess.run(["apt-get", "install", "-y", "-qq"] + packages, env=env,
                       stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    if r.returncode != 0:
        subprocess.run(["apt-get", "update", "-qq"], env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        r = subprocess.run(["apt-get", "install", "-y", "-qq"] + packages, env=env,
                           stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    return r.returncode == 0


def tool_versions(env, wanted, install):
    """Which tools can run, their versions, and why the others cannot."""
    info = {"none": {"available": True, "version": None}}
    if "bpftrace" in wanted:
        if not shutil.which("bpftrace") and install:
            apt_install(["bpftrace"])
        if shutil.which("bpftrace"):
            v = subprocess.run(["bpftrace", "--version"], capture_output=True, text=True).stdout.strip()
            info["bpftrace"] = {"available": True, "version": v}
        else:
            info["bpftrace"] = {"available": False, "reason": "bpftrace is not installed (apt package bpftrace)"}
    if "opensnoop" in wanted:
        if not shutil.which("opensnoop") and install:
            apt_install(["libbpf-tools"])
        env.opensnoop = shutil.which("opensnoop") or env.opensnoop
        if os.path.exists(env.opensnoop):
            v = subprocess.run(["dpkg-query", "-W", "-f", "${Version}", "libbpf-tools"],
                               capture_output=True, text=True).stdout.strip()
            info["opensnoop"] = {"available": True, "version": f"libbpf-tools {v}".strip()}
        else:
            info["opensnoop"] = {"available": False,
                                 "reason": "opensnoop (libbpf-tools) is not packaged or not installed here"}
    if "sysql" in wanted:
        if env.sysql and os.path.exists(env.sysql):
            v = subprocess.run([env.sysql, "--version"], capture_output=True, text=True).stdout.strip()
            info["sysql"] = {"available": True, "version": v, "binary": env.sysql}
        else:
            why = f"no sysql binary at {env.sysql}" if env.sysql else "the sysql build failed"
            info["sysql"] = {"available": False, "reason": why}
    return info


def resolve_sysql(args):
    if args.sysql:
        return os.path.abspath(args.sysql)
    target = os.environ.get("CARGO_TARGET_DIR") or os.path.join(ROOT, "target")
    exe = os.path.join(target, "release", "sysql")
    if not args.no_build:
        log("building sysql (cargo build --release -p sysql)")
        r = subprocess.run(["bash", "-c", "source scripts/setup && cargo build --release -p sysql"], cwd=ROOT)
        if r.returncode != 0:
            log("the sysql build failed; sysql is left out")
            return None  # not a stale binary from an earlier build
    return exe


# --- running ----------------------------------------------------------------

def calibrate(env, workload, threads, seconds):
    """The generator's own rate with no tracer, to size the fixed-work runs."""
    r = env.new_run(workload, "calibrate", threads, 0, duration=seconds)
    r.prepare()
    try:
        res = tools.run_generator(env.generator, r)
    finally:
        r.cleanup()
    return max(res["rate"], 1.0)


def plan_runs(env, cfg, workload, cal):
    """The same plan for every tool of a workload; keys are fresh per session.
    The 100k/s run comes early, so sysql's RSS there holds little history."""
    runs = [env.new_run(workload, "low", 1, min(cfg["low_rate"], cal[1] / 4), duration=cfg["low_s"])]
    if workload == "open-miss" and cfg["rss_s"]:
        runs.append(env.new_run(workload, "rate-100k", 1, 100_000, duration=cfg["rss_s"]))
    for t in cfg["threads"]:
        ops = max(int(cal[t] * cfg["max_s"] / t), 100)
        # A slow tracer stops the run early: slowdowns are per operation.
        runs.append(env.new_run(workload, f"max-{t}t", t, 0, ops=ops, duration=max(5 * cfg["max_s"], 2.0)))
    if workload == "open-miss":
        for t in cfg["threads"]:
            for total in cfg["ladder"]:
                if total < cal[t] * 0.9:
                    runs.append(env.new_run(workload, f"ladder-{t}t-{total}", t, total / t,
                                            duration=cfg["ladder_s"]))
    return runs


def run_session(env, cfg, tool, workload, runs):
    # The baseline of each fixed-work run is taken right before the session,
    # so that slowdowns compare runs minutes apart at most on a busy machine.
    baseline = {}
    if tool != "none":
        for r in runs:
            if r.label.startswith("max-"):
                b = env.new_run(workload, r.label, r.threads, 0, ops=r.ops)
                b.prepare()
                try:
                    baseline[r.label] = tools.run_generator(env.generator, b)
                finally:
                    b.cleanup()
    # Files are made before the tracer starts: the driver's opens are not counted.
    for r in runs:
        r.prepare()
    sess = tools.SESSIONS[tool](env, runs)
    sess.baseline = baseline
    try:
        sess.start()
        if sess.error:
            if sess.proc:
                tools.stop(sess.proc, 10)
            return sess
        # Idle: CPU over the second half (start-up work is over by then), RSS at the end.
        time.sleep(cfg["idle_s"] / 2)
        c0 = tools.cpu_s(sess.pid) if sess.pid else None
        time.sleep(cfg["idle_s"] / 2)
        sess.rss_idle_kb = sess.rss_kb()
        sess.rss_idle_detail_kb = sess.rss_detail_kb()
        sess.idle_cpu_rate = (tools.cpu_s(sess.pid) - c0) / (cfg["idle_s"] / 2) if c0 is not None else 0.0
        for r in runs:
            c0 = tools.cpu_s(sess.pid) if sess.pid else None
            res = tools.run_generator(env.generator, r)
            if r.label == "rate-100k":
                r.rss_end_kb = sess.rss_kb()
            tools.settle(sess.pid, sess.idle_cpu_rate)
            if c0 is not None:
                c1 = tools.cpu_s(sess.pid)
                r.tracer_cpu_s = None if c1 is None else c1 - c0
            log(f"  {tool:9} {workload:16} {r.label:22} {res['ops']:>9} ops {res['rate']:>11,.0f}/s "
                f"wall {res['wall_s']:.3f}s cpu {res['user_s'] + res['sys_s']:.3f}s")
        sess.rss_hwm_kb = sess.hwm_kb()
        sess.finish()
    except BaseException:
        if sess.proc:
            tools.stop(sess.proc, 10)  # no tracer left behind
        raise
    finally:
        for r in runs:
            r.cleanup()
    if tool == "none":
        sess.baseline = {r.label: r.result for r in runs if r.label.startswith("max-")}
    return sess


def bench_workloads(env, cfg, info):
    """Every (tool, workload) session, tools alternating within a workload."""
    sessions = []  # (round, tool, workload, session or None, reason)
    for workload in cfg["workloads"]:
        kind = workload.split("-")[0]
        cal = {t: calibrate(env, workload, t, cfg["cal_s"]) for t in cfg["threads"]}
        log(f"{workload}: generator alone " + ", ".join(f"{t} thread(s) {c:,.0f}/s" for t, c in cal.items()))
        for rnd in range(cfg["rounds"]):
            for tool in cfg["tools"]:
                if not info[tool]["available"]:
                    sessions.append((rnd, tool, workload, None, info[tool]["reason"]))
                    continue
                if tool != "none" and kind not in tools.SEES[tool]:
                    sessions.append((rnd, tool, workload, None, f"{tool} does not trace {kind} syscalls"))
                    continue
                runs = plan_runs(env, cfg, workload, cal)
                try:
                    sess = run_session(env, cfg, tool, workload, runs)
                except Exception as e:  # a tool that breaks is reported, not fatal
                    log(f"  {tool} {workload}: {e}")
                    sessions.append((rnd, tool, workload, None, f"failed: {e}"))
                    continue
                if sess.error:
                    log(f"  {tool} {workload}: {sess.error}")
                    sessions.append((rnd, tool, workload, None, sess.error))
                else:
                    sessions.append((rnd, tool, workload, sess, None))
    return sessions


def pipeline(env, events):
    """The user-space pipeline alone: `sysql bench-pipeline` pushes synthetic
    ring records through the real decoder, builders and history on one
    thread and reports the thread's CPU time per event (docs/benchmarks.md)."""
    e = {"tool": "sysql", "workload": "pipeline", "events": events}
    log(f"pipeline: sysql bench-pipeline --events {events}")
    r = subprocess.run([env.sysql, "bench-pipeline", "--events", str(events), "--json"],
                       capture_output=True, text=True, timeout=600)
    if r.returncode != 0:
        return dict(e, available=False, reason=f"bench-pipeline failed: {r.stderr.strip()[:200]}")
    return dict(e, available=True, tables=json.loads(r.stdout))


def host_info():
    def read(path):
        try:
            with open(path) as f:
                return f.read().strip()
        except OSError:
            return None
    model = None
    for line in (read("/proc/cpuinfo") or "").splitlines():
        if line.startswith("model name"):
            model = line.split(":", 1)[1].strip()
            break
    return {"kernel": platform.release(), "cpus": NCPU, "cpu_model": model,
            "memory_mb": int(os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**20),
            "loadavg_at_start": read("/proc/loadavg"), "other_tracers": tools.other_tracers()}


def main(argv=None):
    p = argparse.ArgumentParser(prog="scripts/bench", description=__doc__.split("\n\n")[0])
    g = p.add_mutually_exclusive_group()
    g.add_argument("--quick", action="store_true", help="a few seconds: CI smoke (none and sysql, open-miss)")
    g.add_argument("--full", action="store_true", help="longer runs, more rates, 10M history events, 3 rounds")
    p.add_argument("--json", metavar="PATH", help="write the figures as JSON (schema: docs/benchmarks.md)")
    p.add_argument("--tools", help=f"comma-separated subset of {','.join(TOOLS)}")
    p.add_argument("--workloads", help=f"comma-separated subset of {','.join(WORKLOADS)}")
    p.add_argument("--history-events", type=int, help="events captured for the history queries (f)")
    p.add_argument("--rounds", type=int, help="repeat the tool sessions; figures are medians")
    p.add_argument("--parts", default="capture,latency,history,pipeline,startup",
                   help="comma-separated subset of capture (a-c, e), latency (d), history (f), "
                        "pipeline (sysql bench-pipeline), startup (start-up and exit); default all")
    p.add_argument("--sysql", metavar="PATH", help="the sysql binary (default: build and use target/release/sysql)")
    p.add_argument("--sysql-arg", action="append", metavar="ARG",
                   help="extra sysql option, e.g. --sysql-arg=--ring-size=64MiB (repeatable)")
    p.add_argument("--no-build", action="store_true", help="do not run cargo build")
    p.add_argument("--no-install", action="store_true", help="do not install bpftrace, libbpf-tools, duckdb, pyarrow")
    args = p.parse_args(argv)

    if os.geteuid() != 0:
        print("bench: loads eBPF programs: run it as root", file=sys.stderr)
        return 2
    mode = "quick" if args.quick else "full" if args.full else "default"
    cfg = dict(MODES[mode])
    if args.tools:
        cfg["tools"] = [t for t in args.tools.split(",") if t]
    if args.workloads:
        cfg["workloads"] = [w for w in args.workloads.split(",") if w]
    parts = [x for x in args.parts.split(",") if x]
    bad = [t for t in cfg["tools"] if t not in TOOLS] + [w for w in cfg["workloads"] if w not in WORKLOADS]
    bad += [x for x in parts if x not in ("capture", "latency", "history", "pipeline", "startup")]
    if bad:
        print(f"bench: unknown tool or workload: {', '.join(bad)}", file=sys.stderr)
        return 2
    if args.history_events:
        cfg["history_events"] = args.history_events
    if args.rounds:
        cfg["rounds"] = args.rounds
    if "none" not in cfg["tools"]:
        cfg["tools"] = ["none"] + cfg["tools"]  # the baseline of every slowdown

    # SIGTERM unwinds like Ctrl-C, so tracers are stopped and files removed.
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    args.sysql = resolve_sysql(args)
    env = Env(args, mode)
    try:
        env.generator = build_generator()
        info = tool_versions(env, cfg["tools"], not args.no_install)
        started = time.time()
        host = host_info()  # load and other tracers before the run
        log(f"mode {mode}; tools {', '.join(cfg['tools'])}; workloads {', '.join(cfg['workloads'])}")
        sessions = bench_workloads(env, cfg, info) if "capture" in parts else []
        results = report.entries(sessions, cfg, info)
        if "latency" in parts and info.get("sysql", {}).get("available"):
            lat = latency.measure(env, cfg["latency"])
            if not any(e["tool"] == "sysql" and e["workload"] == "open-miss" for e in results):
                results.append({"tool": "sysql", "workload": "open-miss", "available": True,
                                "version": info["sysql"].get("version")})
            report.attach_latency(results, lat)
        if "history" in parts:
            results += history.measure(env, cfg["history_events"], cfg["reps"], info, not args.no_install)
        if "pipeline" in parts and info.get("sysql", {}).get("available"):
            results.append(pipeline(env, cfg["pipeline_events"]))
        if "startup" in parts:
            have = {t: info.get(t, {}).get("available") for t in ("sysql", "bpftrace", "opensnoop")}
            results += startup.measure(env, cfg["startup_reps"], have)
        doc = {
            "schema_version": 1,
            "mode": mode,
            "started": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(started)),
            "duration_s": round(time.time() - started, 1),
            "host": host,
            "tools": info,
            "settings": {k: v for k, v in cfg.items() if k not in ("tools", "workloads")},
            "results": results,
        }
        doc["host"]["loadavg_at_end"] = host_info()["loadavg_at_start"]
        doc["host"]["other_tracers_at_end"] = host_info()["other_tracers"]
        doc["targets"] = report.targets(doc)
        print(report.render(doc))
        if args.json:
            with open(args.json, "w") as f:
                json.dump(doc, f, indent=1)
                f.write("\n")
            log(f"wrote {args.json}")
        return 0
    finally:
        shutil.rmtree(env.workdir, ignore_errors=True)
        shutil.rmtree(env.bigdir, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
