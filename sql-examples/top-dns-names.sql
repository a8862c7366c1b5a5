-- name: top-dns-names
-- description: Names looked up over DNS in the last hour, by program, with failed lookups
-- schedule: every 5m
-- results: snapshot
SELECT name, comm, count(*) AS lookups,
       sum(CASE WHEN rcode IS NOT NULL AND rcode <> 'NOERROR' THEN 1 ELSE 0 END) AS failed
FROM dns_queries
WHERE ts > now() - INTERVAL '1 hour'
GROUP BY name, comm
ORDER BY lookups DESC, name, comm
LIMIT 20;
