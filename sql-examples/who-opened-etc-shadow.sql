-- name: who-opened-etc-shadow
-- description: Which process opened /etc/shadow?
-- schedule: every 1m
SELECT ts, pid, comm, uid, ret
FROM opens
WHERE path = '/etc/shadow';
