-- name: new-outbound-programs
-- description: Programs connecting out over the network for the first time in the past hour
-- schedule: every 1m
-- results: diff
-- With diff results (the default), a program is reported `added` on the
-- first run that sees it connect out, and `removed` once it has not for an
-- hour (the history kept); the first run reports every program seen so far.
SELECT DISTINCT comm, uid
FROM connects
WHERE family IN ('inet', 'inet6')
  AND daddr NOT LIKE '127.%' AND daddr <> '::1'
  AND ts > now() - INTERVAL '1 hour';
