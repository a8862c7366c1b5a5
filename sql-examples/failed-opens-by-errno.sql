-- name: failed-opens-by-errno
-- description: Failed opens in the past hour by error and program
-- schedule: every 5m
SELECT errno, comm, count(*) AS failures
FROM opens
WHERE ret < 0 AND ts > now() - INTERVAL '1 hour'
GROUP BY errno, comm
ORDER BY failures DESC
LIMIT 20;
