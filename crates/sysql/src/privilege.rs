//! Least privilege: once the kernel programs are loaded and attached, sysql
//! gives up every capability it no longer needs, in every set (bounding,
//! permitted, effective, inheritable, ambient), and sets no_new_privs, so
//! that nothing it runs afterwards (a query, a sink) can regain them.
//!
//! What the rest of a run needs, and why it needs no capability:
//! - reading the ring buffer: a memory map and an fd opened while loading;
//! - reading the per-CPU loss counters: a lookup on a map fd opened while
//!   loading, which needs no capability since Linux 6.5. Older kernels check
//!   CAP_BPF on every bpf() call when `kernel.unprivileged_bpf_disabled` is
//!   set, so there sysql keeps CAP_BPF (see [`needed`]);
//! - writing the shell history and schedule sink files: sysql stays uid 0,
//!   so it writes files and directories root owns, without
//!   CAP_DAC_OVERRIDE; a path in another user's private directory fails
//!   with "permission denied";
//! - serving Prometheus metrics: a port below 1024 keeps
//!   CAP_NET_BIND_SERVICE.
//!
//! Capabilities belong to threads, not processes: [`drop_to`] changes only
//! the calling thread, so sysql calls it before it starts any other thread,
//! and every thread started later inherits the reduced sets. It also sets
//! the umask to 077, so every file sysql creates is its owner's only.

use caps::{CapSet, Capability, CapsHashSet};
use nix::sys::stat::{umask, Mode};

/// The capabilities sysql still needs after loading, for these options.
pub fn needed(prometheus_port: Option<u16>) -> CapsHashSet {
    let mut keep = CapsHashSet::new();
    if bpf_calls_need_cap_bpf() {
        keep.insert(Capability::CAP_BPF);
    }
    if prometheus_port.is_some_and(|p| p < 1024) {
        keep.insert(Capability::CAP_NET_BIND_SERVICE);
    }
    keep
}

/// Before Linux 6.5, every bpf() command, a map lookup on an open fd
/// included, failed without CAP_BPF when unprivileged BPF was disabled.
fn bpf_calls_need_cap_bpf() -> bool {
    let disabled =
        std::fs::read_to_string("/proc/sys/kernel/unprivileged_bpf_disabled").map(|s| s.trim() != "0").unwrap_or(true);
    let release = std::fs::read_to_string("/proc/sys/kernel/osrelease").unwrap_or_default();
    disabled && kernel_before(&release, (6, 5))
}

/// Whether a kernel release string (`6.1.0-18-amd64`) is older than `major.minor`.
fn kernel_before(release: &str, (major, minor): (u32, u32)) -> bool {
    let mut parts = release.split(|c: char| !c.is_ascii_digit()).filter(|p| !p.is_empty()).map(|p| p.parse::<u32>());
    match (parts.next(), parts.next()) {
        (Some(Ok(a)), Some(Ok(b))) => (a, b) < (major, minor),
        // Unreadable: assume the older, stricter kernel.
        _ => true,
    }
}

/// Drops every capability but `keep` from the calling thread's bounding,
/// inheritable, ambient, effective and permitted sets, sets no_new_privs and
/// a 077 umask. Call it before starting any other thread.
pub fn drop_to(keep: &CapsHashSet) -> Result<(), String> {
    let fail = |what: &str, e: &dyn std::fmt::Display| format!("cannot drop privileges ({what}): {e}");
    // The bounding set first: dropping from it needs CAP_SETPCAP, still held
    // by root. Without it (sysql started with only the capabilities it
    // needs), the bounding set stays: no_new_privs below keeps an exec from
    // gaining anything through it.
    if caps::has_cap(None, CapSet::Effective, Capability::CAP_SETPCAP).unwrap_or(false) {
        for cap in caps::all() {
            if !keep.contains(&cap) && caps::has_cap(None, CapSet::Bounding, cap).unwrap_or(false) {
                caps::drop(None, CapSet::Bounding, cap).map_err(|e| fail("bounding set", &e))?;
            }
        }
    }
    if caps::runtime::ambient_set_supported().is_ok() {
        caps::clear(None, CapSet::Ambient).map_err(|e| fail("ambient set", &e))?;
    }
    caps::clear(None, CapSet::Inheritable).map_err(|e| fail("inheritable set", &e))?;
    // The effective set must stay within the permitted set: shrink it first.
    let held = caps::read(None, CapSet::Permitted).map_err(|e| fail("reading the permitted set", &e))?;
    let keep: CapsHashSet = keep.intersection(&held).copied().collect();
    caps::set(None, CapSet::Effective, &keep).map_err(|e| fail("effective set", &e))?;
    caps::set(None, CapSet::Permitted, &keep).map_err(|e| fail("permitted set", &e))?;
    nix::sys::prctl::set_no_new_privs().map_err(|e| fail("no_new_privs", &e))?;
    umask(Mode::from_bits_truncate(0o077));
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kernel_releases() {
        assert!(kernel_before("6.1.0-18-amd64", (6, 5)));
        assert!(kernel_before("5.15.0", (6, 5)));
        assert!(!kernel_before("6.5.0", (6, 5)));
        assert!(!kernel_before("6.18.44-fc-v595", (6, 5)));
        assert!(!kernel_before("10.0", (6, 5)));
        assert!(kernel_before("garbage", (6, 5)));
    }

    #[test]
    fn prometheus_below_1024_keeps_the_bind_capability() {
        assert!(needed(Some(80)).contains(&Capability::CAP_NET_BIND_SERVICE));
        assert!(!needed(Some(9464)).contains(&Capability::CAP_NET_BIND_SERVICE));
        assert!(!needed(None).contains(&Capability::CAP_NET_BIND_SERVICE));
    }
}
