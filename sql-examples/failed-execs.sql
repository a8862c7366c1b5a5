-- name: failed-execs
-- description: What failed to exec, and why?
-- schedule: every 1m
SELECT ts, comm, filename, argv, errno
FROM execs
WHERE ret < 0;
