-- name: top-files-opened
-- description: The 20 files opened most in the past hour
-- schedule: every 5m
SELECT path, count(*) AS opens, count(DISTINCT comm) AS programs
FROM opens
WHERE ts > now() - INTERVAL '1 hour' AND ret >= 0
GROUP BY path
ORDER BY opens DESC
LIMIT 20;
