//! A unix socket for a server: created in a directory made if missing
//! (mode 0755), replacing a stale socket (one nothing listens on), with the
//! given mode; every connection's peer credentials are checked, so a
//! socket whose mode is widened by mistake still admits only the allowed.

use std::io;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use tokio::net::{UnixListener, UnixStream};

/// Why a socket could not be made.
#[derive(Debug, thiserror::Error)]
pub enum SocketError {
    #[error("another sysql agent is listening on {0}")]
    InUse(PathBuf),
    #[error("cannot create the socket {0}: {1}")]
    Io(PathBuf, io::Error),
}

/// Binds `path` with `mode` (see [`bind_std`]), on the current runtime.
pub fn bind(path: &Path, mode: u32) -> Result<UnixListener, SocketError> {
    let listener = bind_std(path, mode)?;
    listener
        .set_nonblocking(true)
        .and_then(|()| UnixListener::from_std(listener))
        .map_err(|e| SocketError::Io(path.to_path_buf(), e))
}

/// Binds `path` with `mode`, before any runtime exists. A socket file left
/// by an agent that died is replaced; a live one is an error.
pub fn bind_std(path: &Path, mode: u32) -> Result<std::os::unix::net::UnixListener, SocketError> {
    let err = |e| SocketError::Io(path.to_path_buf(), e);
    if let Some(dir) = path.parent() {
        if !dir.exists() {
            std::fs::create_dir_all(dir).map_err(err)?;
            std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o755)).map_err(err)?;
        }
    }
    if path.exists() {
        if std::os::unix::net::UnixStream::connect(path).is_ok() {
            return Err(SocketError::InUse(path.to_path_buf()));
        }
        std::fs::remove_file(path).map_err(err)?;
    }
    // created with the mode already (no moment where others could connect)
    let old = nix::sys::stat::umask(nix::sys::stat::Mode::from_bits_truncate(0o777 & !mode));
    let listener = std::os::unix::net::UnixListener::bind(path);
    nix::sys::stat::umask(old);
    let listener = listener.map_err(err)?;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode)).map_err(err)?;
    Ok(listener)
}

/// Accepted connections whose peer's uid is `allowed` (others are closed
/// at once).
pub fn incoming(
    listener: UnixListener,
    allowed: impl Fn(u32) -> bool + Send + 'static,
) -> impl futures::Stream<Item = io::Result<UnixStream>> {
    futures::stream::unfold((listener, allowed), |(listener, allowed)| async move {
        loop {
            match listener.accept().await {
                Ok((stream, _)) => {
                    let uid = stream.peer_cred().map(|c| c.uid()).ok();
                    if uid.is_some_and(&allowed) {
                        return Some((Ok(stream), (listener, allowed)));
                    }
                    // refused: dropped here, closed
                }
                Err(e) => return Some((Err(e), (listener, allowed))),
            }
        }
    })
}
