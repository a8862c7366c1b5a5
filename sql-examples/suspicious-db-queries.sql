-- name: suspicious-db-queries
-- description: Database statements that look like SQL injection, as the database received them
-- schedule: every 1m
SELECT ts, comm, pid, client_addr, user, database, outcome, query
FROM db_queries
WHERE role = 'server'
  AND ts > now() - INTERVAL '1 hour'
  AND (query ILIKE '%or 1=1%' OR query ILIKE '%union select%' OR query ILIKE '%'' or ''%'
       OR query ILIKE '%; drop %' OR query ILIKE '%pg_sleep(%' OR query ILIKE '%information_schema.%')
ORDER BY ts;
