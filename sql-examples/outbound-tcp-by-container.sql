-- name: outbound-tcp-by-container
-- description: How many outbound TCP connections succeeded in the past hour, by container?
-- schedule: every 1m
SELECT c.container_id, k.runtime, count(*) AS connections
FROM connects c LEFT JOIN containers k ON c.cgroup_id = k.cgroup_id
WHERE c.protocol = 'tcp' AND c.outcome = 'connected' AND c.ts > now() - INTERVAL '1 hour'
GROUP BY c.container_id, k.runtime
ORDER BY connections DESC, c.container_id;
