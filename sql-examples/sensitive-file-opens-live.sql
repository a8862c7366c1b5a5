-- name: sensitive-file-opens-live
-- description: Opens of credentials (shadow, sudoers, SSH keys) as they happen
-- schedule: live
SELECT ts, pid, ppid, comm, uid, path, flags_text, errno
FROM live.opens
WHERE path IN ('/etc/shadow', '/etc/gshadow', '/etc/sudoers')
   OR path LIKE '/etc/sudoers.d/%'
   OR path LIKE '%/.ssh/id_%'
   OR path LIKE '%/.ssh/authorized_keys%';
