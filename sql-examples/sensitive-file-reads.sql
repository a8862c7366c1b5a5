-- name: sensitive-file-reads
-- description: Opens of credentials: shadow, sudoers, SSH keys
-- schedule: every 1m
SELECT ts, pid, comm, uid, path, flags_text, errno
FROM opens
WHERE path IN ('/etc/shadow', '/etc/gshadow', '/etc/sudoers')
   OR path LIKE '/etc/sudoers.d/%'
   OR path LIKE '%/.ssh/id_%'
   OR path LIKE '%/.ssh/authorized_keys%'
ORDER BY ts;
