-- name: capture-health
-- description: Events captured and lost per table since sysql started
-- schedule: every 1m
SELECT table_name, captured, lost_kernel, lost_user, decode_errors, evicted, history_rows
FROM sysql_stats
ORDER BY table_name;
