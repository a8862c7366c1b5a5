-- name: killed-by-signal
-- description: Which programs were killed by a signal in the past hour, and how long had they run?
-- schedule: every 1m
SELECT ts, pid, comm, signal, core_dumped, lifetime_ns / 1e9 AS lived_s, container_id
FROM exits
WHERE signal IS NOT NULL AND ts > now() - INTERVAL '1 hour'
ORDER BY ts;
