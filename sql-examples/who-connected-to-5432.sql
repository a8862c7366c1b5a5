-- name: who-connected-to-5432
-- description: Who connected to port 5432 (PostgreSQL) in the past hour, from which container, and did it work?
-- schedule: every 5m
SELECT comm, container_id, daddr, outcome, count(*) AS attempts, max(ts) AS last
FROM connects
WHERE dport = 5432 AND ts > now() - INTERVAL '1 hour'
GROUP BY comm, container_id, daddr, outcome
ORDER BY attempts DESC;
