-- name: programs-by-user
-- description: Programs executed per user in the past hour
-- schedule: every 5m
SELECT uid, comm, count(*) AS execs
FROM execs
WHERE ret = 0 AND ts > now() - INTERVAL '1 hour'
GROUP BY uid, comm
ORDER BY uid, execs DESC;
