-- name: top-http-requests
-- description: Top HTTP requests served on this host in the last 10 minutes, with error count and latency
-- schedule: every 1m
-- results: snapshot
SELECT method, path, count(*) AS hits,
       sum(CASE WHEN status >= 500 THEN 1 ELSE 0 END) AS server_errors,
       round(avg(latency_ns) / 1e6, 2) AS avg_ms,
       round(max(latency_ns) / 1e6, 2) AS max_ms
FROM http_requests
WHERE role = 'server' AND ts > now() - INTERVAL '10 minutes'
GROUP BY method, path
ORDER BY hits DESC, method, path
LIMIT 10;
