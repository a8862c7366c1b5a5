//! Loads sysql's eBPF programs, attaches them to syscall tracepoints and reads
//! their ring buffer. The only crate in sysql that touches aya.
//!
//! Needs Linux 5.11+ (BPF ring buffer, task storage and BTF task pointers in
//! tracing programs) with BTF (`/sys/kernel/btf/vmlinux`) and
//! syscall tracepoints (`CONFIG_FTRACE_SYSCALLS`), and root or CAP_BPF +
//! CAP_PERFMON. kprobes and fentry are not used: they are missing or locked
//! down on the kernels sysql targets. One BTF tracepoint (`tp_btf`,
//! Linux 5.5+) follows TCP connects to their outcome.

pub mod filter;
mod setup;
mod syscalls;

use aya::maps::lpm_trie::{Key, LpmTrie};
use aya::maps::{Array, HashMap, MapData, PerCpuArray};
use aya::programs::tp_btf::BtfTracePointLink;
use aya::programs::trace_point::TracePointLink;
use aya::programs::{BtfTracePoint, TracePoint};
use aya::{include_bytes_aligned, Btf, Ebpf, EbpfLoader};
use std::os::fd::AsFd;
use std::time::Duration;
use sysql_events::ring::Ring;
use sysql_events::TABLE_COUNT;
use tokio::io::unix::AsyncFd;

pub use filter::CaptureFilter;
pub use setup::{clock_offset_ns, preflight, SetupError};
pub use syscalls::{Syscall, SYSCALLS};

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

/// How syscalls reach the programs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Hooks {
    /// Two BTF tracepoints, `sys_enter` and `sys_exit`, see every syscall;
    /// a table in the kernel (by syscall number) picks the handler, or none.
    /// Five attachments in all; they detach at once.
    SyscallTable,
    /// One syscall tracepoint per syscall and direction (37 attachments;
    /// each detach waits for RCU grace periods under a kernel mutex).
    Tracepoints,
}

impl Hooks {
    /// `SYSQL_HOOKS=tracepoints` (for developers and the benchmark, which
    /// compares both) or the default.
    fn from_env() -> Result<Hooks, SetupError> {
        match std::env::var("SYSQL_HOOKS").as_deref() {
            Err(_) | Ok("syscall-table") => Ok(Hooks::SyscallTable),
            Ok("tracepoints") => Ok(Hooks::Tracepoints),
            Ok(other) => {
                Err(SetupError::Config(format!("SYSQL_HOOKS={other} is not one of syscall-table, tracepoints")))
            }
        }
    }
}

/// The programs of [`Hooks::SyscallTable`], exits before entries: the
/// syscall table is filled before any of them is attached.
const TABLE_PROGRAMS: &[(&str, Hook)] = &[
    ("sched_process_exec", Tp(&["sched/sched_process_exec"])),
    ("sched_process_exit", Tp(&["sched/sched_process_exit"])),
    ("inet_sock_set_state", BtfHook("inet_sock_set_state")),
    ("sysql_sys_exit", BtfHook("sys_exit")),
    ("sysql_sys_enter", BtfHook("sys_enter")),
];

/// Each program of [`Hooks::Tracepoints`] and where it attaches. Exit programs come first, so that no
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
    /// What the kernel programs skip (in place before the first attach).
    pub filter: CaptureFilter,
}

/// The most payload bytes one record carries.
pub const SNAP_MAX: u32 = sysql_events::SNAP_MAX as u32;

impl Default for CaptureConfig {
    fn default() -> Self {
        CaptureConfig {
            ring_bytes: 16 << 20,
            wakeup_bytes: 256 << 10,
            ignore_tgid: std::process::id(),
            payloads: true,
            snap_len: SNAP_MAX,
            filter: CaptureFilter::default(),
        }
    }
}

/// Loaded and attached programs, and the ring buffer they write to.
pub struct Capture {
    ring: AsyncFd<Ring>,
    lost: PerCpuArray<MapData, u64>,
    tracepoints: Vec<&'static str>,
    ring_bytes: u32,
    links: Option<Links>,
    /// The kernel's syscall table (syscall number -> handler).
    syscalls: Array<MapData, u32>,
    hooks: Hooks,
    payloads: bool,
    filter: FilterMaps,
    filtered: PerCpuArray<MapData, u64>,
    // Dropping the Ebpf unloads every program: keep it last and alive.
    _ebpf: Ebpf,
}

/// What takes each record read from the ring.
pub type Reader<'a> = &'a mut (dyn FnMut(&[u8]) + Send);

/// The programs' attachments. Dropping them detaches every program, all at
/// once (see the [`Drop`] impl); a capture's owner may take them
/// ([`Capture::take_links`]) to detach at a time of its choosing.
pub struct Links {
    tracepoints: Vec<TracePointLink>,
    btf: Vec<BtfTracePointLink>,
}

impl Drop for Links {
    /// Detaching a syscall tracepoint waits for the kernel's RCU grace
    /// periods, 60-80 ms, and one after the other the 37 of them took 2.6 s
    /// (which is also what the process's exit costs if the kernel closes
    /// them). Each is detached on a thread of its own, so the waits overlap:
    /// one grace period serves them all.
    fn drop(&mut self) {
        let tracepoints = std::mem::take(&mut self.tracepoints);
        let btf = std::mem::take(&mut self.btf);
        std::thread::scope(|scope| {
            let spawn = |f: Box<dyn FnOnce() + Send>| {
                // (if no thread can be made, the link is detached here)
                if let Err(e) = std::thread::Builder::new().name("sysql-detach".into()).spawn_scoped(scope, f) {
                    log::debug!("detaching on the caller's thread: {e}");
                }
            };
            for link in tracepoints {
                spawn(Box::new(move || drop(link)));
            }
            for link in btf {
                spawn(Box::new(move || drop(link)));
            }
        });
    }
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

        let hooks = Hooks::from_env()?;
        let programs: Vec<&(&str, Hook)> = match hooks {
            Hooks::SyscallTable => TABLE_PROGRAMS.iter().collect(),
            Hooks::Tracepoints => {
                let payloads = if config.payloads { PAYLOAD_PROGRAMS } else { &[] };
                PROGRAMS.iter().chain(payloads).collect()
            }
        };
        // Load (verify) every program first, then set the maps up, then
        // attach: a program the verifier rejects is reported before anything
        // else, and nothing is attached before the filter is in place.
        let mut btf = None;
        for (name, hook) in &programs {
            match hook {
                Tp(_) => {
                    let program: &mut TracePoint = program_of(&mut ebpf, name)?;
                    program.load().map_err(|e| setup::program_error(name, e))?;
                }
                BtfHook(point) => {
                    if btf.is_none() {
                        let read = Btf::from_sys_fs()
                            .map_err(|e| SetupError::Load(format!("reading the kernel's BTF: {e}")))?;
                        btf = Some(read);
                    }
                    let program: &mut BtfTracePoint = program_of(&mut ebpf, name)?;
                    program
                        .load(point, btf.as_ref().expect("read above"))
                        .map_err(|e| setup::program_error(name, e))?;
                }
            }
        }

        let mut syscalls =
            Array::try_from(take_map(&mut ebpf, "sysql_syscalls")?).map_err(map_error("syscall table"))?;
        let mut filter = FilterMaps {
            config: Array::try_from(take_map(&mut ebpf, "sysql_filter")?).map_err(map_error("filter"))?,
            comm: HashMap::try_from(take_map(&mut ebpf, "sysql_filter_comm")?).map_err(map_error("filter"))?,
            pid: HashMap::try_from(take_map(&mut ebpf, "sysql_filter_pid")?).map_err(map_error("filter"))?,
            uid: HashMap::try_from(take_map(&mut ebpf, "sysql_filter_uid")?).map_err(map_error("filter"))?,
            cgroup: HashMap::try_from(take_map(&mut ebpf, "sysql_filter_cgroup")?).map_err(map_error("filter"))?,
            path: LpmTrie::try_from(take_map(&mut ebpf, "sysql_filter_path")?).map_err(map_error("filter"))?,
        };
        let filtered =
            PerCpuArray::try_from(take_map(&mut ebpf, "sysql_filtered")?).map_err(map_error("filter counters"))?;
        let ring = take_map(&mut ebpf, "sysql_events")?;
        let lost = take_map(&mut ebpf, "sysql_lost")?;
        apply_filter(&mut syscalls, &mut filter, hooks, config.payloads, &config.filter)?;

        let mut tracepoints = Vec::new();
        let mut links = Links { tracepoints: Vec::new(), btf: Vec::new() };
        for (name, hook) in &programs {
            match hook {
                Tp(points) => {
                    let program: &mut TracePoint = program_of(&mut ebpf, name)?;
                    for point in *points {
                        let (category, event) = point.split_once('/').expect("category/name");
                        let id = program.attach(category, event).map_err(|e| setup::attach_error(point, e))?;
                        links.tracepoints.push(program.take_link(id).map_err(|e| setup::attach_error(point, e))?);
                        tracepoints.push(*point);
                    }
                }
                BtfHook(point) => {
                    let program: &mut BtfTracePoint = program_of(&mut ebpf, name)?;
                    let id = program.attach().map_err(|e| setup::attach_error(point, e))?;
                    links.btf.push(program.take_link(id).map_err(|e| setup::attach_error(point, e))?);
                    tracepoints.push(*point);
                }
            }
        }

        let aya::maps::Map::RingBuf(ring) = ring else {
            return Err(SetupError::Load("map sysql_events is not a ring buffer".into()));
        };
        let ring = Ring::new(ring.fd().as_fd(), size as usize)
            .map_err(|e| SetupError::Load(format!("cannot map the ring buffer: {e}")))?;
        // AsyncFd owns the Ring, which owns (a duplicate of) the map's fd,
        // so the fd outlives its registration: the I/O-safety concern behind
        // the deprecation does not arise here, and `register` would need
        // `unsafe` outside sysql-events.
        #[allow(deprecated)]
        let ring = AsyncFd::new(ring).map_err(|e| SetupError::Load(format!("ring buffer poll: {e}")))?;
        let lost = PerCpuArray::try_from(lost).map_err(|e| SetupError::Load(format!("loss counters: {e}")))?;
        Ok(Capture {
            ring,
            lost,
            tracepoints,
            ring_bytes: size,
            links: Some(links),
            syscalls,
            hooks,
            payloads: config.payloads,
            filter,
            filtered,
            _ebpf: ebpf,
        })
    }

    /// Takes the programs' attachments, so that their owner detaches them
    /// (by dropping them) when it stops, whatever becomes of the capture.
    /// `None` once taken.
    pub fn take_links(&mut self) -> Option<Links> {
        self.links.take()
    }

    /// The tracepoints attached, as `category/name` (or a BTF
    /// tracepoint's name).
    pub fn tracepoints(&self) -> &[&'static str] {
        &self.tracepoints
    }

    /// Replaces the capture filter, in place: the programs stay attached.
    /// While it changes, events are kept rather than skipped.
    pub fn set_filter(&mut self, filter: &CaptureFilter) -> Result<(), SetupError> {
        apply_filter(&mut self.syscalls, &mut self.filter, self.hooks, self.payloads, filter)
    }

    /// Events the capture filter skipped, per table (indexed by
    /// [`sysql_events::Table`]), summed over CPUs.
    pub fn kernel_filtered(&self) -> Result<[u64; TABLE_COUNT], SetupError> {
        per_table(&self.filtered, "filter counters")
    }

    /// How syscalls reach the programs.
    pub fn hooks(&self) -> Hooks {
        self.hooks
    }

    /// The syscalls traced now: the kernel's table as it stands (with
    /// [`Hooks::Tracepoints`], the table is unused and this is empty).
    pub fn syscalls_traced(&self) -> Vec<&'static Syscall> {
        SYSCALLS.iter().filter(|sc| matches!(self.syscalls.get(&sc.nr, 0), Ok(h) if h != 0)).collect()
    }

    /// Waits until records are ready or `poll` passes, then hands every
    /// waiting record (up to `max`) to `f`. Returns how many were read.
    ///
    /// The kernel side wakes the reader only past a backlog (batched
    /// wake-ups keep the cost per event low), so `poll` bounds the delay
    /// between a syscall and its record being read.
    ///
    /// `f` is a trait object so that the loop over records is compiled here,
    /// optimised as this crate is, whatever the caller's crate is compiled as.
    pub async fn read(&mut self, poll: Duration, max: usize, f: Reader<'_>) -> std::io::Result<usize> {
        let n = drain(self.ring.get_mut(), max, f);
        if n > 0 {
            return Ok(n);
        }
        match tokio::time::timeout(poll, self.ring.readable_mut()).await {
            Ok(guard) => {
                let mut guard = guard?;
                let n = drain(guard.get_inner_mut(), max, f);
                if n < max {
                    guard.clear_ready();
                }
                Ok(n)
            }
            Err(_elapsed) => Ok(drain(self.ring.get_mut(), max, f)),
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
    pub fn catch_up(&mut self, f: Reader<'_>) -> usize {
        self.ring.get_mut().read(usize::MAX, u64::from(self.ring_bytes), f).records
    }

    /// Records the kernel could not reserve ring space for, per table
    /// (indexed by [`sysql_events::Table`]), summed over CPUs.
    pub fn kernel_lost(&self) -> Result<[u64; TABLE_COUNT], SetupError> {
        per_table(&self.lost, "loss counters")
    }
}

/// Per-CPU counters by table, summed.
fn per_table(map: &PerCpuArray<MapData, u64>, what: &str) -> Result<[u64; TABLE_COUNT], SetupError> {
    let mut out = [0u64; TABLE_COUNT];
    for (i, slot) in out.iter_mut().enumerate() {
        let values = map.get(&(i as u32), 0).map_err(|e| SetupError::Load(format!("reading {what}: {e}")))?;
        *slot = values.iter().sum();
    }
    Ok(out)
}

/// The capture filter's maps in the kernel.
struct FilterMaps {
    /// `struct sysql_filter`: [only, exclude] dimension masks.
    config: Array<MapData, [u32; 2]>,
    comm: HashMap<MapData, [u8; sysql_events::COMM_LEN], u32>,
    pid: HashMap<MapData, u32, u32>,
    uid: HashMap<MapData, u32, u32>,
    cgroup: HashMap<MapData, u64, u32>,
    path: LpmTrie<MapData, [u8; sysql_events::PATH_LEN], u32>,
}

/// A program of the object, as its type.
fn program_of<'a, P>(ebpf: &'a mut Ebpf, name: &str) -> Result<&'a mut P, SetupError>
where
    &'a mut P: TryFrom<&'a mut aya::programs::Program, Error = aya::programs::ProgramError>,
{
    ebpf.program_mut(name)
        .ok_or_else(|| SetupError::Load(format!("program {name} missing from the object")))?
        .try_into()
        .map_err(|e| SetupError::Load(format!("program {name}: {e}")))
}

fn take_map(ebpf: &mut Ebpf, name: &str) -> Result<aya::maps::Map, SetupError> {
    ebpf.take_map(name).ok_or_else(|| SetupError::Load(format!("map {name} missing from the object")))
}

fn map_error(what: &'static str) -> impl Fn(aya::maps::MapError) -> SetupError {
    move |e| SetupError::Load(format!("{what}: {e}"))
}

/// Writes `filter` into the maps: first no filter at all (so that, while
/// the maps change, events are kept rather than skipped), then the values,
/// then the masks; and the syscall table.
fn apply_filter(
    syscalls: &mut Array<MapData, u32>,
    maps: &mut FilterMaps,
    hooks: Hooks,
    payloads: bool,
    filter: &CaptureFilter,
) -> Result<(), SetupError> {
    use filter::{CgroupRef, Term};
    let err = |e: aya::maps::MapError| SetupError::Load(format!("setting the capture filter: {e}"));
    if hooks == Hooks::Tracepoints && filter.has_syscalls() {
        return Err(SetupError::Config(
            "a capture filter by syscall needs the syscall table (unset SYSQL_HOOKS)".into(),
        ));
    }
    maps.config.set(0, [0, 0], 0).map_err(err)?;
    let comms: Vec<_> = maps.comm.keys().filter_map(Result::ok).collect();
    for k in comms {
        maps.comm.remove(&k).map_err(err)?;
    }
    for k in maps.pid.keys().filter_map(Result::ok).collect::<Vec<_>>() {
        maps.pid.remove(&k).map_err(err)?;
    }
    for k in maps.uid.keys().filter_map(Result::ok).collect::<Vec<_>>() {
        maps.uid.remove(&k).map_err(err)?;
    }
    for k in maps.cgroup.keys().filter_map(Result::ok).collect::<Vec<_>>() {
        maps.cgroup.remove(&k).map_err(err)?;
    }
    for k in maps.path.keys().filter_map(Result::ok).collect::<Vec<_>>() {
        maps.path.remove(&k).map_err(err)?;
    }
    for (term, mark) in filter.marked() {
        match term {
            Term::Comm(name) => {
                let mut key = [0u8; sysql_events::COMM_LEN];
                key[..name.len()].copy_from_slice(name.as_bytes());
                maps.comm.insert(key, mark, 0).map_err(err)?;
            }
            Term::Pid(pid) => maps.pid.insert(pid, mark, 0).map_err(err)?,
            Term::Uid(uid) => maps.uid.insert(uid, mark, 0).map_err(err)?,
            Term::Cgroup(cg) => {
                let id = match cg {
                    CgroupRef::Id(id) => *id,
                    CgroupRef::Path(p) => filter::cgroup_id(p).map_err(SetupError::Config)?,
                };
                maps.cgroup.insert(id, mark, 0).map_err(err)?;
            }
            Term::Path(prefix) => {
                let mut data = [0u8; sysql_events::PATH_LEN];
                data[..prefix.len()].copy_from_slice(prefix.as_bytes());
                let key = Key::new(prefix.len() as u32 * 8, data);
                maps.path.insert(&key, mark, 0).map_err(err)?;
            }
            Term::Syscall(_) => {}
        }
    }
    if hooks == Hooks::SyscallTable {
        for sc in SYSCALLS {
            let on = (payloads || !sc.payload) && filter.keeps_syscall(sc.name);
            syscalls.set(sc.nr, if on { sc.handler } else { 0 }, 0).map_err(err)?;
        }
    }
    maps.config.set(0, filter.masks(), 0).map_err(err)?;
    Ok(())
}

fn drain(ring: &mut Ring, max: usize, f: Reader<'_>) -> usize {
    ring.read(max, u64::MAX, f).records
}
