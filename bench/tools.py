"""The tracers under test and how each one's events are counted.

A session is one tracer process (or none) that sees several workload runs.
Every run gets keys of its own (a path prefix, a path, a port or an argv tag;
see `Run`), so one pass over a tracer's output, or one SQL query for sysql,
counts exactly how many of each run's events the tracer saw.
"""

import json
import os
import re
import signal
import subprocess
import time

# bpftrace printing every event, in the spirit of opensnoop.bt / execsnoop.bt:
# opens and connects are printed at exit (with their result), execs at entry.
BPFTRACE_SCRIPT = r"""
BEGIN { printf("READY\n"); }
tracepoint:syscalls:sys_enter_open,
tracepoint:syscalls:sys_enter_openat
{
	@path[tid] = args->filename;
}
tracepoint:syscalls:sys_exit_open,
tracepoint:syscalls:sys_exit_openat
/@path[tid]/
{
	printf("O %d %d %s\n", pid, args->ret, str(@path[tid]));
	delete(@path[tid]);
}
tracepoint:syscalls:sys_enter_connect
{
	$sa = (struct sockaddr_in *)args->uservaddr;
	@port[tid] = ($sa->sin_port >> 8) | (($sa->sin_port & 0xff) << 8);
}
tracepoint:syscalls:sys_exit_connect
/@port[tid]/
{
	printf("C %d %d %d\n", pid, args->ret, @port[tid]);
	delete(@port[tid]);
}
tracepoint:syscalls:sys_enter_execve
{
	printf("E %d ", pid);
	join(args->argv);
}
END { clear(@path); clear(@port); }
"""
BPFTRACE_TRACEPOINTS = 7

# Which tables each tool fills: a tool that does not see a workload's syscall
# is "n/a" for it, not "lost everything".
SEES = {
    "none": set(),
    "bpftrace": {"open", "connect", "exec"},
    "opensnoop": {"open"},
    "sysql": {"open", "connect", "exec"},
}


class Run:
    """One run of the workload generator and the key its events carry."""

    def __init__(self, sid, k, workload, label, threads, rate, ops=0, duration=0.0):
        self.k = k
        self.workload = workload
        self.label = label
        self.threads = threads
        self.rate = rate  # per thread, 0 = as fast as possible
        self.ops = ops  # per thread
        self.duration = duration
        self.prefix = f"/tmp/sb-{sid}-r{k}.missing/"  # open-miss
        self.hit_path = f"/tmp/sb-{sid}-r{k}.hit"  # open-hit
        self.tag = f"sb-{sid}-r{k}-"  # exec argv
        self.port = 0  # connect-*, chosen by the planner
        self.result = None  # the generator's summary
        self.seen = None  # events of this run the tracer saw
        self.rows = None  # rows sysql holds for them (duplicates would show here)
        self.tracer_cpu_s = None
        self.rss_end_kb = None

    @property
    def kind(self):
        return self.workload.split("-")[0]

    def argv(self, generator):
        a = [generator, self.workload, "--threads", str(self.threads), "--rate", str(self.rate)]
        if self.ops:
            a += ["--ops", str(self.ops)]
        if self.duration:
            a += ["--duration", str(self.duration)]
        if self.workload == "open-miss":
            a += ["--prefix", self.prefix]
        elif self.workload == "open-hit":
            a += ["--path", self.hit_path]
        elif self.workload == "exec":
            a += ["--prefix", self.tag]
        else:
            a += ["--port", str(self.port)]
        return a

    def prepare(self):
        if self.workload == "open-hit":
            with open(self.hit_path, "w") as f:
                f.write("sysql bench\n")
            with open(self.hit_path) as f:  # cached from now on
                f.read()

    def cleanup(self):
        if self.workload == "open-hit":
            try:
                os.unlink(self.hit_path)
            except FileNotFoundError:
                pass


def run_generator(generator, run):
    """Runs the generator for `run` and keeps its summary in `run.result`."""
    timeout = (run.duration or 0) + 60 + (run.ops or 0) * run.threads / 1000
    p = subprocess.run(run.argv(generator), capture_output=True, text=True, timeout=timeout)
    if p.returncode != 0:
        raise RuntimeError(f"workload generator failed ({p.returncode}): {p.stderr.strip()}")
    run.result = json.loads(p.stdout.strip().splitlines()[-1])
    return run.result


# --- process measurements ---------------------------------------------------

def cpu_s(pid):
    """On-CPU time of all threads of a process, in seconds (ns precision)."""
    total = 0
    try:
        for t in os.listdir(f"/proc/{pid}/task"):
            try:
                with open(f"/proc/{pid}/task/{t}/schedstat") as f:
                    total += int(f.read().split()[0])
            except (FileNotFoundError, ProcessLookupError):
                pass
    except FileNotFoundError:
        return None
    return total / 1e9


def status_kb(pid, field):
    try:
        with open(f"/proc/{pid}/status") as f:
            for line in f:
                if line.startswith(field + ":"):
                    return int(line.split()[1])
    except FileNotFoundError:
        pass
    return None


def rss_detail_kb(pid):
    """RSS split: anonymous memory, file pages (mostly the binary's code) and
    BPF map and perf buffer mappings (the kernel lets a BPF ring buffer's
    data pages be mapped twice in a row, as libbpf does, so that a 32 MiB
    ring counts 64 MiB; sysql maps them once)."""
    detail = {"anon": status_kb(pid, "RssAnon"), "file": status_kb(pid, "RssFile"), "bpf_maps": 0}
    try:
        name = ""
        with open(f"/proc/{pid}/smaps") as f:
            for line in f:
                head = line.split()
                if "-" in head[0] and len(head) >= 5 and ":" not in head[0]:
                    name = head[5] if len(head) > 5 else ""
                elif head[0] == "Rss:" and name.startswith(("anon_inode:bpf", "anon_inode:[perf_event]")):
                    detail["bpf_maps"] += int(head[1])
    except (OSError, IndexError, ValueError):
        detail["bpf_maps"] = None
    if detail["file"] is not None and detail["bpf_maps"]:
        detail["file"] -= detail["bpf_maps"]  # shared mappings: counted in RssFile
    return detail


def attach_count(pid):
    """BPF links and perf-event attachments held by a process."""
    n = 0
    try:
        for fd in os.listdir(f"/proc/{pid}/fd"):
            try:
                if os.readlink(f"/proc/{pid}/fd/{fd}") == "anon_inode:bpf_link":
                    n += 1
            except OSError:
                pass
    except FileNotFoundError:
        return -1
    try:
        out = subprocess.run(["bpftool", "-j", "perf"], capture_output=True, text=True, timeout=10).stdout
        n += sum(1 for e in json.loads(out or "[]") if e.get("pid") == pid)
    except (OSError, ValueError, subprocess.TimeoutExpired):
        pass
    return n


def other_tracers():
    """Processes other than this one holding BPF links or perf attachments:
    their programs run in every traced syscall, baseline included."""
    found = {}
    me = os.getpid()
    for pid in filter(str.isdigit, os.listdir("/proc")):
        if int(pid) == me:
            continue
        try:
            fds = os.listdir(f"/proc/{pid}/fd")
        except OSError:
            continue
        n = 0
        for fd in fds:
            try:
                if os.readlink(f"/proc/{pid}/fd/{fd}") == "anon_inode:bpf_link":
                    n += 1
            except OSError:
                pass
        if n:
            found[int(pid)] = n
    try:
        out = subprocess.run(["bpftool", "-j", "perf"], capture_output=True, text=True, timeout=10).stdout
        for e in json.loads(out or "[]"):
            if e.get("pid") != me:
                found[e["pid"]] = found.get(e["pid"], 0) + 1
    except (OSError, ValueError, subprocess.TimeoutExpired):
        pass
    result = []
    for pid, n in sorted(found.items()):
        try:
            with open(f"/proc/{pid}/comm") as f:
                comm = f.read().strip()
        except OSError:
            continue
        result.append({"pid": pid, "comm": comm, "attachments": n})
    return result


def wait_attached(proc, minimum=1, timeout=60.0):
    """Waits until `proc` holds at least `minimum` attachments and their number
    has not changed for 0.3 s. Returns an error message or None."""
    deadline = time.monotonic() + timeout
    last, stable = None, 0
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            return f"exited with status {proc.returncode} before attaching"
        n = attach_count(proc.pid)
        if n >= minimum and n == last:
            stable += 1
            if stable >= 3:
                time.sleep(0.2)
                return None
        else:
            stable = 0
        last = n
        time.sleep(0.1)
    return f"did not attach within {timeout:.0f} s"


def settle(pid, idle_rate=0.0, quiet_s=0.1, max_s=10.0):
    """Waits until a tracer has caught up: over `quiet_s` its CPU time grows
    no faster than when it was idle (`idle_rate`, CPU seconds per second)
    plus 2%."""
    if pid is None:
        return
    deadline = time.monotonic() + max_s
    time.sleep(0.1)
    prev = cpu_s(pid)
    while time.monotonic() < deadline and prev is not None:
        time.sleep(quiet_s)
        cur = cpu_s(pid)
        if cur is None or cur - prev < (idle_rate * 1.5 + 0.02) * quiet_s:
            return
        prev = cur


def stop(proc, timeout):
    """SIGINT, then wait; SIGKILL if it does not end."""
    if proc.poll() is None:
        proc.send_signal(signal.SIGINT)
    try:
        proc.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()
        return False
    return True


# --- sessions ---------------------------------------------------------------

class Session:
    """A tracer running across several runs. Subclasses start it, stop it and
    count each run's events."""

    name = "none"

    def __init__(self, env, runs):
        self.env = env
        self.runs = runs
        self.proc = None
        self.error = None
        self.rss_idle_kb = None

    @property
    def pid(self):
        return self.proc.pid if self.proc else None

    def start(self):
        pass

    def finish(self):
        """Stops the tracer and fills `run.seen` for every run."""

    def rss_kb(self):
        return status_kb(self.pid, "VmRSS") if self.pid else None

    def rss_detail_kb(self):
        return rss_detail_kb(self.pid) if self.pid else None

    def hwm_kb(self):
        return status_kb(self.pid, "VmHWM") if self.pid else None


class NoTracer(Session):
    name = "none"


class Bpftrace(Session):
    name = "bpftrace"

    def start(self):
        script = os.path.join(self.env.workdir, "trace.bt")
        with open(script, "w") as f:
            f.write(BPFTRACE_SCRIPT)
        self.out = os.path.join(self.env.workdir, "bpftrace.out")
        self.err = os.path.join(self.env.workdir, "bpftrace.err")
        # -B full: block-buffered output, the fastest way to print every event.
        self.proc = subprocess.Popen(["bpftrace", "-B", "full", script],
                                     stdout=open(self.out, "wb"), stderr=open(self.err, "wb"))
        self.error = wait_attached(self.proc, BPFTRACE_TRACEPOINTS)

    def finish(self):
        stop(self.proc, 60)
        data = read_and_remove(self.out)
        # Not anchored at the line start: bpftrace prints an exec's "E <pid> "
        # and its argv as two events, and another CPU's line can land between.
        count_lines(self.runs, data, opens=rb"O -?\d+ -?\d+ (\S*)$", connects=rb"C (\d+) -?\d+ (\d+)$",
                    execs=rb" --exit (sb-\S+)")
        os.unlink(self.err)


class Opensnoop(Session):
    name = "opensnoop"

    def start(self):
        self.out = os.path.join(self.env.workdir, "opensnoop.out")
        self.proc = subprocess.Popen([self.env.opensnoop], stdout=open(self.out, "wb"), stderr=subprocess.DEVNULL)
        self.error = wait_attached(self.proc, 2)

    def finish(self):
        stop(self.proc, 60)
        data = read_and_remove(self.out)
        # PID COMM FD ERR PATH
        count_lines(self.runs, data, opens=rb"^\s*\d+\s+\S+\s+-?\d+\s+\d+\s+(.*)$")


def read_and_remove(path):
    with open(path, "rb") as f:
        data = f.read()
    os.unlink(path)
    return data


def count_lines(runs, data, opens=None, connects=None, execs=None):
    """Counts each run's events in a tracer's text output: distinct sequence
    numbers for open-miss and exec, lines for open-hit and connects."""
    by_prefix = {r.prefix.encode(): r for r in runs if r.workload == "open-miss"}
    by_hit = {r.hit_path.encode(): r for r in runs if r.workload == "open-hit"}
    by_port = {r.port: r for r in runs if r.kind == "connect"}
    by_tag = {r.tag.encode(): r for r in runs if r.workload == "exec"}
    seqs = {r.k: set() for r in runs}
    counts = {r.k: 0 for r in runs}
    if opens and (by_prefix or by_hit):
        for m in re.finditer(opens, data, re.M):
            path = m.group(1)
            if path in by_hit:
                counts[by_hit[path].k] += 1
                continue
            cut = path.rfind(b"/") + 1
            r = by_prefix.get(path[:cut])
            if r:
                seqs[r.k].add(path[cut:])
    if connects and by_port:
        for m in re.finditer(connects, data, re.M):
            r = by_port.get(int(m.group(2)))
            if r:
                counts[r.k] += 1
    if execs and by_tag:
        for m in re.finditer(execs, data, re.M):
            tag = m.group(1)
            head = tag[: tag.rfind(b"-", 0, tag.rfind(b"-")) + 1]  # "sb-<sid>-r<k>-"
            r = by_tag.get(head)
            if r:
                seqs[r.k].add(tag)
    for r in runs:
        r.seen = len(seqs[r.k]) if r.workload in ("open-miss", "exec") else counts[r.k]


class Sysql(Session):
    """sysql capturing into its history tables; counted by one SQL query when
    the session ends (sysql reads its -c at start, so every run is planned
    before it starts; SIGINT ends the --for capture early and runs it)."""

    name = "sysql"

    def count_sql(self):
        parts = []
        for r in self.runs:
            if r.workload == "open-miss":
                q = f"SELECT count(DISTINCT path) AS seen, count(*) AS rows FROM opens WHERE path LIKE '{r.prefix}%'"
            elif r.workload == "open-hit":
                q = f"SELECT count(*) AS seen, count(*) AS rows FROM opens WHERE path = '{r.hit_path}'"
            elif r.kind == "connect":
                q = (f"SELECT count(*) AS seen, count(*) AS rows FROM connects WHERE dport = {r.port} "
                     f"AND daddr = '127.0.0.1' AND comm = 'sysql-bench'")
            else:
                q = (f"SELECT count(DISTINCT argv) AS seen, count(*) AS rows FROM execs "
                     f"WHERE argv LIKE '% --exit {r.tag}%'")
            parts.append(q.replace("SELECT ", f"SELECT {r.k} AS run, ", 1))
        sql = " UNION ALL ".join(parts) if parts else "SELECT 0 AS run, 0 AS seen, 0 AS rows"
        return (sql + ";\nSELECT table_name, captured, lost_kernel, lost_user, decode_errors, evicted "
                "FROM sysql_stats;\n")

    def start(self):
        self.out = os.path.join(self.env.workdir, "sysql.out")
        self.err = os.path.join(self.env.workdir, "sysql.err")
        sql = os.path.join(self.env.workdir, "count.sql")
        with open(sql, "w") as f:
            f.write(self.count_sql())
        extra = list(self.env.sysql_args)
        # A session holds millions of events: a cap that evicts none of them
        # (it is a cap, not an allocation).
        if not any(a.startswith("--history-memory") for a in extra):
            extra += ["--history-memory", "8GiB"]
        argv = [self.env.sysql, "--embedded", "-f", sql, "--for", "24h", "--format", "ndjson"] + extra
        self.proc = subprocess.Popen(argv, stdout=open(self.out, "wb"), stderr=open(self.err, "wb"))
        self.error = wait_attached(self.proc)

    def finish(self):
        stop(self.proc, 600)
        self.stats = []
        with open(self.out) as f:
            for line in f:
                row = json.loads(line)
                if "run" in row:
                    for r in self.runs:
                        if r.k == row["run"]:
                            r.seen = row["seen"]
                            r.rows = row["rows"]  # more rows than seen: duplicates
                elif "table_name" in row:
                    self.stats.append(row)
        with open(self.err) as f:
            err = [line for line in f.read().splitlines() if "row(s) fetched" not in line]
        if self.proc.returncode != 0:
            self.error = f"sysql exited with status {self.proc.returncode}: {' '.join(err)[:300]}"
        os.unlink(self.out)
        os.unlink(self.err)


SESSIONS = {"none": NoTracer, "bpftrace": Bpftrace, "opensnoop": Opensnoop, "sysql": Sysql}
