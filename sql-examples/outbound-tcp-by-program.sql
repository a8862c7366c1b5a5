-- name: outbound-tcp-by-program
-- description: How many outbound TCP connections in the past hour, and by which programs?
-- schedule: every 1m
SELECT comm, count(*) AS connections
FROM connects
WHERE protocol = 'tcp' AND ts > now() - INTERVAL '1 hour'
GROUP BY comm
ORDER BY 2 DESC;
