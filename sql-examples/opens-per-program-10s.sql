-- name: opens-per-program-10s
-- description: The 20 programs opening most files in each 10-second window, as each window closes
-- schedule: live
SELECT window_start, comm, count(*) AS opens, count(*) FILTER (WHERE ret < 0) AS failed, window_lost
FROM live.opens
GROUP BY tumble(ts, INTERVAL '10 seconds'), comm
ORDER BY opens DESC
LIMIT 20;
