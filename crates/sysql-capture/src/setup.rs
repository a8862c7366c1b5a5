//! Prerequisites and set-up errors: each says in one sentence what to do.

use aya::programs::ProgramError;
use aya::EbpfError;
use nix::time::{clock_gettime, ClockId};
use std::path::Path;

/// Where the kernel exposes its own BTF; overridable for tests.
fn btf_path() -> String {
    std::env::var("SYSQL_BTF_PATH").unwrap_or_else(|_| "/sys/kernel/btf/vmlinux".into())
}

const TRACEFS: &str = "/sys/kernel/tracing";

// CapEff bits (linux/capability.h).
const CAP_SYS_ADMIN: u32 = 21;
const CAP_PERFMON: u32 = 38;
const CAP_BPF: u32 = 39;

/// Why sysql could not start capturing.
#[derive(Debug, thiserror::Error)]
pub enum SetupError {
    #[error(
        "permission denied: sysql needs root (or CAP_BPF, CAP_PERFMON and CAP_DAC_READ_SEARCH) to load its eBPF programs; run it with sudo"
    )]
    NotPrivileged,
    #[error("kernel BTF not found at {0}: sysql needs a kernel built with CONFIG_DEBUG_INFO_BTF=y")]
    NoBtf(String),
    #[error("tracefs is not mounted and mounting it failed ({0}); mount it with: mount -t tracefs nodev /sys/kernel/tracing")]
    NoTracefs(String),
    #[error("tracefs is mounted at {0} but sysql cannot read it: without root, sysql needs CAP_DAC_READ_SEARCH (besides CAP_BPF and CAP_PERFMON) to read the tracepoint ids there")]
    TracefsUnreadable(String),
    #[error(
        "tracepoint {0} not found: this kernel lacks it (sysql needs syscall tracepoints, CONFIG_FTRACE_SYSCALLS=y)"
    )]
    MissingTracepoint(String),
    #[error("the kernel verifier rejected program {program}: {detail}; please report this with your kernel version (uname -r)")]
    Rejected { program: String, detail: String },
    #[error("the kernel refused to load program {program} ({detail}): the kernel may be locked down, or sysql lacks CAP_BPF and CAP_PERFMON")]
    Refused { program: String, detail: String },
    #[error("loading the eBPF programs failed: {0}")]
    Load(String),
    #[error("{0}")]
    Config(String),
}

/// Checks privileges, BTF and tracefs (mounting it if needed), in the order a
/// user would fix them.
pub fn preflight() -> Result<(), SetupError> {
    if !privileged() {
        return Err(SetupError::NotPrivileged);
    }
    let btf = btf_path();
    if !Path::new(&btf).exists() {
        return Err(SetupError::NoBtf(btf));
    }
    ensure_tracefs()
}

fn privileged() -> bool {
    if nix::unistd::geteuid().is_root() && effective_caps().is_none_or(|caps| has(caps, CAP_SYS_ADMIN)) {
        return true;
    }
    effective_caps().is_some_and(|caps| has(caps, CAP_BPF) && has(caps, CAP_PERFMON))
}

fn has(caps: u64, cap: u32) -> bool {
    caps & (1u64 << cap) != 0
}

fn effective_caps() -> Option<u64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find(|l| l.starts_with("CapEff:"))?;
    u64::from_str_radix(line.trim_start_matches("CapEff:").trim(), 16).ok()
}

fn tracefs_ready(dir: &Path) -> bool {
    dir.join("events").is_dir()
}

/// tracefs is not mounted at boot on some systems; aya looks for it once per
/// process and remembers a miss, so this must run before the first attach.
fn ensure_tracefs() -> Result<(), SetupError> {
    if tracefs_ready(Path::new(TRACEFS)) || tracefs_ready(Path::new("/sys/kernel/debug/tracing")) {
        return Ok(());
    }
    // Mounted but not readable (tracefs is root's, mode 0700): mounting it
    // again would not help.
    let mounts = std::fs::read_to_string("/proc/self/mounts").unwrap_or_default();
    if let Some(at) = mounts.lines().find_map(|l| {
        let mut f = l.split_whitespace();
        let (_, dir, kind) = (f.next(), f.next(), f.next());
        let dir = dir.unwrap_or_default();
        // (a mount covered by a later one is listed too, but not there)
        (kind == Some("tracefs") && Path::new(dir).is_dir()).then(|| dir.to_string())
    }) {
        return Err(SetupError::TracefsUnreadable(at));
    }
    nix::mount::mount(Some("nodev"), TRACEFS, Some("tracefs"), nix::mount::MsFlags::empty(), None::<&str>)
        .map_err(|e| SetupError::NoTracefs(e.desc().to_lowercase()))?;
    if tracefs_ready(Path::new(TRACEFS)) {
        Ok(())
    } else {
        Err(SetupError::NoTracefs(format!("{TRACEFS}/events is missing after mounting")))
    }
}

/// Nanoseconds to add to `CLOCK_BOOTTIME` (the kernel programs' clock) to get
/// UTC wall-clock time.
pub fn clock_offset_ns() -> i64 {
    let ns = |id| clock_gettime(id).map(|t| t.tv_sec() as i128 * 1_000_000_000 + t.tv_nsec() as i128).unwrap_or(0);
    // Bracket the realtime read with two boottime reads to halve the error.
    let b1 = ns(ClockId::CLOCK_BOOTTIME);
    let r = ns(ClockId::CLOCK_REALTIME);
    let b2 = ns(ClockId::CLOCK_BOOTTIME);
    (r - (b1 + b2) / 2) as i64
}

fn first_line(s: &str) -> String {
    s.lines().map(str::trim).find(|l| !l.is_empty()).unwrap_or("").to_string()
}

fn last_line(s: &str) -> String {
    s.lines().map(str::trim).rfind(|l| !l.is_empty()).unwrap_or("").to_string()
}

pub(crate) fn load_error(e: EbpfError) -> SetupError {
    match &e {
        EbpfError::MapError(m) if m.to_string().contains("Operation not permitted") => SetupError::NotPrivileged,
        _ => SetupError::Load(first_line(&e.to_string())),
    }
}

pub(crate) fn program_error(program: &str, e: ProgramError) -> SetupError {
    match e {
        ProgramError::LoadError { io_error, verifier_log } => {
            // The log ends with statistics ("verification time", "stack
            // depth", "processed N insns"); the reason is the line before them.
            let log = verifier_log.to_string();
            let stats = ["processed ", "verification time", "stack depth"];
            let reason = log
                .lines()
                .map(str::trim)
                .rfind(|l| !l.is_empty() && !stats.iter().any(|s| l.starts_with(s)))
                .map(str::to_string);
            let detail = reason.unwrap_or_else(|| last_line(&log));
            if io_error.kind() == std::io::ErrorKind::PermissionDenied && detail.is_empty() {
                SetupError::Refused { program: program.into(), detail: io_error.to_string() }
            } else {
                let detail = if detail.is_empty() { io_error.to_string() } else { detail };
                SetupError::Rejected { program: program.into(), detail }
            }
        }
        other => SetupError::Load(format!("program {program}: {}", first_line(&other.to_string()))),
    }
}

pub(crate) fn attach_error(point: &str, e: ProgramError) -> SetupError {
    match e {
        ProgramError::TracePointError(_) => SetupError::MissingTracepoint(point.into()),
        ProgramError::SyscallError(s) if s.io_error.kind() == std::io::ErrorKind::PermissionDenied => {
            SetupError::NotPrivileged
        }
        ProgramError::SyscallError(s) if s.io_error.kind() == std::io::ErrorKind::NotFound => {
            SetupError::NoTracefs(first_line(&s.to_string()))
        }
        other => SetupError::Load(format!("attaching {point}: {}", first_line(&other.to_string()))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn clock_offset_is_the_boot_time() {
        // realtime - boottime is when the machine booted: in the past, after 2000.
        let boot = clock_offset_ns();
        let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_nanos() as i64;
        assert!(boot > 946_684_800_000_000_000 && boot < now, "boot offset {boot}");
    }

    #[test]
    fn errors_are_one_line() {
        for e in [
            SetupError::NotPrivileged,
            SetupError::NoBtf("/x".into()),
            SetupError::NoTracefs("permission denied".into()),
            SetupError::MissingTracepoint("syscalls/sys_enter_openat2".into()),
        ] {
            let s = e.to_string();
            assert!(!s.contains('\n') && s.len() < 200, "{s}");
        }
    }
}
