# Shared by the bench's shell tools (bench/cost, bench/cost-steps, bench/ab):
# source it from the repository root.

# Builds the workload generator when it is missing or older than its source,
# and sets $gen to it.
build_generator() {
    mkdir -p bench/build
    gen=bench/build/sysql-bench
    [ -x $gen ] && [ $gen -nt bench/workload.c ] || cc -O2 -Wall -pthread -o $gen bench/workload.c
}

# Starts `ARGV...` (a sysql capture) in the background with its stderr in
# ERR, sets $pid, and returns once it prints its "capturing since" line
# (exits if it dies first).
start_capture() {
    local err=$1
    shift
    "$@" >/dev/null 2>"$err" &
    pid=$!
    until grep -q "capturing since" "$err"; do
        kill -0 $pid 2>/dev/null || { cat "$err" >&2; exit 1; }
        sleep 0.05
    done
}

# Stops the capture started by start_capture.
stop_capture() {
    kill -INT $pid
    wait $pid || true
    pid=
}

# Seconds of wall time for OPS operations of the generator's MODE on PATH.
wall() {
    "$gen" "$1" --ops "$2" --path "$3" | python3 -c 'import json,sys; print(json.load(sys.stdin)["wall_s"])'
}
