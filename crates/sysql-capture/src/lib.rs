//! Loads sysql's eBPF programs, attaches them to syscall tracepoints and reads
//! their ring buffer. The only crate in sysql that touches aya.
//!
//! Needs Linux 5.11+ (BPF ring buffer, task storage and BTF task pointers in
//! tracing programs) with BTF (`/sys/kernel/btf/vmlinux`) and
//! syscall tracepoints (`CONFIG_FTRACE_SYSCALLS`), and root or CAP_BPF +
//! CAP_PERFMON. kprobes and fentry are not used: they are missing or locked
//! down on the kernels sysql targets. One BTF tracepoint (`tp_btf`,
//! Linux 5.5+) follows TCP connects to their outcome.

mod setup;

use aya::maps::{MapData, PerCpuArray, RingBuf};
use aya::programs::{BtfTracePoint, TracePoint};
use aya::{include_bytes_aligned, Btf, Ebpf, EbpfLoader};
use std::time::Duration;
use sysql_events::TABLE_COUNT;
use tokio::io::unix::AsyncFd;

pub use setup::{clock_offset_ns, preflight, SetupError};

/// The compiled kernel programs (built by build.rs from `ebpf/sysql.bpf.c`).
static OBJECT: &[u8] = include_bytes_aligned!(concat!(env!("OUT_DIR"), "/sysql.bpf.o"));

/// Where a program attaches.
#[derive(Debug, Clone, Copy)]
enum Hook {
    /// Classic tracepoints, as `category/name`.
    Tracepoints(&'static [&'static str]),
    /// A BTF tracepoint (`tp_btf`), by the kernel's tracepoint name.
    Btf(&'static str),
}

use Hook::{Btf as BtfHook, Tracepoints as Tp};

/// Each program and where it attaches. Exit programs come first, so that no
/// entry is stashed before its exit can complete it; the TCP state program
/// comes before the connect enter program, so that every connect stashed
/// has its outcome followed.
const PROGRAMS: &[(&str, Hook)] = &[
    (
        "sys_exit_open",
        Tp(&[
            "syscalls/sys_exit_open",
            "syscalls/sys_exit_openat",
            "syscalls/sys_exit_openat2",
            "syscalls/sys_exit_creat",
        ]),
    ),
    ("sys_exit_connect", Tp(&["syscalls/sys_exit_connect"])),
    ("sys_exit_accept", Tp(&["syscalls/sys_exit_accept", "syscalls/sys_exit_accept4"])),
    ("sys_exit_execve", Tp(&["syscalls/sys_exit_execve", "syscalls/sys_exit_execveat"])),
    ("sched_process_exec", Tp(&["sched/sched_process_exec"])),
    ("sched_process_exit", Tp(&["sched/sched_process_exit"])),
    ("inet_sock_set_state", BtfHook("inet_sock_set_state")),
    ("sys_enter_open", Tp(&["syscalls/sys_enter_open"])),
    ("sys_enter_openat", Tp(&["syscalls/sys_enter_openat"])),
    ("sys_enter_openat2", Tp(&["syscalls/sys_enter_openat2"])),
    ("sys_enter_creat", Tp(&["syscalls/sys_enter_creat"])),
    ("sys_enter_connect", Tp(&["syscalls/sys_enter_connect"])),
    ("sys_enter_accept", Tp(&["syscalls/sys_enter_accept"])),
    ("sys_enter_accept4", Tp(&["syscalls/sys_enter_accept4"])),
    ("sys_enter_execve", Tp(&["syscalls/sys_enter_execve"])),
    ("sys_enter_execveat", Tp(&["syscalls/sys_enter_execveat"])),
];

/// Payload capture (the http_requests, db_queries and dns_queries tables):
/// attached only when payloads are captured.
const PAYLOAD_PROGRAMS: &[(&str, Hook)] = &[
    (
        "sys_exit_sock_io",
        Tp(&[
            "syscalls/sys_exit_read",
            "syscalls/sys_exit_write",
            "syscalls/sys_exit_recvfrom",
            "syscalls/sys_exit_sendto",
            "syscalls/sys_exit_recvmsg",
            "syscalls/sys_exit_sendmsg",
            "syscalls/sys_exit_readv",
            "syscalls/sys_exit_writev",
        ]),
    ),
    ("sys_enter_read", Tp(&["syscalls/sys_enter_read"])),
    ("sys_enter_write", Tp(&["syscalls/sys_enter_write"])),
    ("sys_enter_recvfrom", Tp(&["syscalls/sys_enter_recvfrom"])),
    ("sys_enter_sendto", Tp(&["syscalls/sys_enter_sendto"])),
    ("sys_enter_recvmsg", Tp(&["syscalls/sys_enter_recvmsg"])),
    ("sys_enter_sendmsg", Tp(&["syscalls/sys_enter_sendmsg"])),
    ("sys_enter_readv", Tp(&["syscalls/sys_enter_readv"])),
    ("sys_enter_writev", Tp(&["syscalls/sys_enter_writev"])),
];

/// How to load the programs.
#[derive(Debug, Clone)]
pub struct CaptureConfig {
    /// Ring buffer size in bytes: a power of two, at least one page.
    pub ring_bytes: u32,
    /// The kernel wakes the reader once this many bytes are waiting; below it
    /// the reader finds records on its next poll (see [`Capture::read`]).
    pub wakeup_bytes: u64,
    /// A process whose syscalls are never traced: sysql itself.
    pub ignore_tgid: u32,
    /// Capture socket payloads (HTTP, PostgreSQL, MySQL, DNS). When off, the
    /// socket I/O tracepoints are not attached at all.
    pub payloads: bool,
    /// Payload bytes copied per syscall, at most [`SNAP_MAX`].
    pub snap_len: u32,
}

/// The most payload bytes one record carries.
pub const SNAP_MAX: u32 = sysql_events::SNAP_MAX as u32;

impl Default for CaptureConfig {
    fn default() -> Self {
        CaptureConfig {
            ring_bytes: 32 << 20,
            wakeup_bytes: 256 << 10,
            ignore_tgid: std::process::id(),
            payloads: true,
            snap_len: SNAP_MAX,
        }
    }
}

/// Loaded and attached programs, and the ring buffer they write to.
pub struct Capture {
    ring: AsyncFd<RingBuf<MapData>>,
    lost: PerCpuArray<MapData, u64>,
    tracepoints: Vec<&'static str>,
    ring_bytes: u32,
    // Dropping the Ebpf detaches every program: keep it last and alive.
    _ebpf: Ebpf,
}

impl Capture {
    /// Checks the prerequisites, loads the programs and attaches them all.
    pub fn start(config: &CaptureConfig) -> Result<Capture, SetupError> {
        let size = config.ring_bytes;
        if !size.is_power_of_two() || size < 4096 {
            return Err(SetupError::Config(format!(
                "ring buffer size {size} is not a power of two of at least 4096 bytes"
            )));
        }
        if config.snap_len == 0 || config.snap_len > SNAP_MAX {
            return Err(SetupError::Config(format!(
                "snap length {} is not between 1 and {SNAP_MAX} bytes",
                config.snap_len
            )));
        }
        preflight()?;
        // For developers and the tests: load another build of the programs.
        let custom = match std::env::var_os("SYSQL_BPF_OBJECT") {
            Some(path) => Some(std::fs::read(&path).map_err(|e| {
                SetupError::Config(format!("cannot read SYSQL_BPF_OBJECT {}: {e}", path.to_string_lossy()))
            })?),
            None => None,
        };
        let object: &[u8] = custom.as_deref().unwrap_or(OBJECT);
        let mut ebpf = EbpfLoader::new()
            // sysql_args is task storage, which aya has no typed API for: only
            // the kernel programs use it.
            .allow_unsupported_maps()
            .override_global("sysql_self_tgid", &config.ignore_tgid, true)
            .override_global("sysql_wakeup_bytes", &config.wakeup_bytes, true)
            .override_global("sysql_snap_len", &config.snap_len, true)
            .map_max_entries("sysql_events", size)
            .load(object)
            .map_err(setup::load_error)?;

        let mut tracepoints = Vec::new();
        let payloads = if config.payloads { PAYLOAD_PROGRAMS } else { &[] };
        let mut btf = None;
        for (name, hook) in PROGRAMS.iter().chain(payloads) {
            match hook {
                Tp(points) => {
                    let program: &mut TracePoint = ebpf
                        .program_mut(name)
                        .ok_or_else(|| SetupError::Load(format!("program {name} missing from the object")))?
                        .try_into()
                        .map_err(|e| SetupError::Load(format!("program {name}: {e}")))?;
                    program.load().map_err(|e| setup::program_error(name, e))?;
                    for point in *points {
                        let (category, event) = point.split_once('/').expect("category/name");
                        program.attach(category, event).map_err(|e| setup::attach_error(point, e))?;
                        tracepoints.push(*point);
                    }
                }
                BtfHook(point) => {
                    if btf.is_none() {
                        let read = Btf::from_sys_fs()
                            .map_err(|e| SetupError::Load(format!("reading the kernel's BTF: {e}")))?;
                        btf = Some(read);
                    }
                    let program: &mut BtfTracePoint = ebpf
                        .program_mut(name)
                        .ok_or_else(|| SetupError::Load(format!("program {name} missing from the object")))?
                        .try_into()
                        .map_err(|e| SetupError::Load(format!("program {name}: {e}")))?;
                    program
                        .load(point, btf.as_ref().expect("read above"))
                        .map_err(|e| setup::program_error(name, e))?;
                    program.attach().map_err(|e| setup::attach_error(point, e))?;
                    tracepoints.push(*point);
                }
            }
        }

        let ring = ebpf.take_map("sysql_events").ok_or_else(|| SetupError::Load("no ring buffer map".into()))?;
        let ring = RingBuf::try_from(ring).map_err(|e| SetupError::Load(format!("ring buffer: {e}")))?;
        // AsyncFd owns the RingBuf, which owns the fd, so the fd outlives its
        // registration: the I/O-safety concern behind the deprecation does not
        // arise here, and `register` would need `unsafe` outside the decoder.
        #[allow(deprecated)]
        let ring = AsyncFd::new(ring).map_err(|e| SetupError::Load(format!("ring buffer poll: {e}")))?;
        let lost = ebpf.take_map("sysql_lost").ok_or_else(|| SetupError::Load("no loss counter map".into()))?;
        let lost = PerCpuArray::try_from(lost).map_err(|e| SetupError::Load(format!("loss counters: {e}")))?;
        Ok(Capture { ring, lost, tracepoints, ring_bytes: size, _ebpf: ebpf })
    }

    /// The tracepoints attached, as `category/name`.
    pub fn tracepoints(&self) -> &[&'static str] {
        &self.tracepoints
    }

    /// Waits until records are ready or `poll` passes, then hands every
    /// waiting record (up to `max`) to `f`. Returns how many were read.
    ///
    /// The kernel side wakes the reader only past a backlog (batched
    /// wake-ups keep the cost per event low), so `poll` bounds the delay
    /// between a syscall and its record being read.
    pub async fn read(&mut self, poll: Duration, max: usize, mut f: impl FnMut(&[u8])) -> std::io::Result<usize> {
        let n = drain(self.ring.get_mut(), max, &mut f);
        if n > 0 {
            return Ok(n);
        }
        match tokio::time::timeout(poll, self.ring.readable_mut()).await {
            Ok(guard) => {
                let mut guard = guard?;
                let n = drain(guard.get_inner_mut(), max, &mut f);
                if n < max {
                    guard.clear_ready();
                }
                Ok(n)
            }
            Err(_elapsed) => Ok(drain(self.ring.get_mut(), max, &mut f)),
        }
    }

    /// Hands `f` every record that was in the ring when it was called, and
    /// stops there: what the kernel writes meanwhile is left for later reads.
    /// Returns how many records were read.
    ///
    /// Records are read in the order their space was reserved, and at the
    /// call the ring held at most its size in bytes, so reading that many
    /// bytes (or emptying the ring) has read all of them. Under a storm that
    /// outruns the reader, an unbounded "read until empty" would never end.
    pub fn catch_up(&mut self, mut f: impl FnMut(&[u8])) -> usize {
        let budget = u64::from(self.ring_bytes);
        let mut bytes = 0u64;
        let mut n = 0;
        let ring = self.ring.get_mut();
        while bytes < budget {
            let Some(item) = ring.next() else { break };
            // Each record takes an 8-byte header and is padded to 8 bytes.
            bytes += (item.len() as u64 + RECORD_HEADER + 7) & !7;
            f(&item);
            n += 1;
        }
        n
    }

    /// Records the kernel could not reserve ring space for, per table
    /// (indexed by [`sysql_events::Table`]), summed over CPUs.
    pub fn kernel_lost(&self) -> Result<[u64; TABLE_COUNT], SetupError> {
        let mut out = [0u64; TABLE_COUNT];
        for (i, slot) in out.iter_mut().enumerate() {
            let values =
                self.lost.get(&(i as u32), 0).map_err(|e| SetupError::Load(format!("reading loss counters: {e}")))?;
            *slot = values.iter().sum();
        }
        Ok(out)
    }
}

/// The kernel's ring buffer header before each record (BPF_RINGBUF_HDR_SZ).
const RECORD_HEADER: u64 = 8;

fn drain(ring: &mut RingBuf<MapData>, max: usize, f: &mut impl FnMut(&[u8])) -> usize {
    let mut n = 0;
    while n < max {
        let Some(item) = ring.next() else { break };
        f(&item);
        n += 1;
    }
    n
}
