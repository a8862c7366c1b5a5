-- name: exec-then-connect
-- description: Programs that connect out over the network within 5 seconds of being executed
-- schedule: live
SELECT e.ts AS exec_ts, e.pid, e.uid, e.comm, e.argv, c.ts AS connect_ts, c.protocol, c.daddr, c.dport, c.errno
FROM live.execs e JOIN live.connects c
  ON c.pid = e.pid AND c.ts BETWEEN e.ts AND e.ts + INTERVAL '5 seconds'
WHERE e.ret = 0 AND c.family IN ('inet', 'inet6');
