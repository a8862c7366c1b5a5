//! Cgroups and the containers they belong to: the `containers` table, and
//! the `container_id` every event row gets at ingest.
//!
//! Built from the cgroup v2 tree alone, with no container runtime to ask: a
//! cgroup's id (what `bpf_get_current_cgroup_id()` gives every event) is the
//! inode number of its directory under the cgroup2 mount, and its path says
//! who made it (`/system.slice/docker-<id>.scope`, `/kubepods/besteffort/
//! pod<uid>/<id>`, ...; see [`classify`]). The tree is walked at start; an
//! event from a cgroup not seen yet is looked up at once through its
//! process's `/proc/<pid>/cgroup` (one small read, checked against the
//! directory's inode), else by walking the tree again (rate-limited: a burst
//! of [`WALK_BURST`] walks, then [`WALK_RATE`] a second); a query of
//! `containers` walks it too if the last walk is a second old. Walks mark the
//! cgroups whose directory is gone. State is bounded: past [`MAX_ROWS`]
//! cgroups, the longest-removed ones are dropped.

use crate::event::columns::ColumnDef;
use async_trait::async_trait;
use datafusion::arrow::datatypes::{Schema, SchemaRef};
use datafusion::arrow::record_batch::RecordBatch;
use datafusion::catalog::{Session, TableProvider};
use datafusion::common::Result;
use datafusion::datasource::memory::MemorySourceConfig;
use datafusion::datasource::TableType;
use datafusion::logical_expr::Expr;
use datafusion::physical_plan::ExecutionPlan;
use std::collections::HashMap;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// Cgroups remembered at most (removed ones are dropped first).
pub const MAX_ROWS: usize = 65536;
/// Directories visited by one walk at most.
const MAX_WALK: usize = 200_000;
/// Walks for events from unknown cgroups: this many at once...
pub const WALK_BURST: f64 = 10.0;
/// ...then this many a second.
pub const WALK_RATE: f64 = 2.0;
/// A query of `containers` walks the tree if the last walk is this old.
const QUERY_WALK_AGE: Duration = Duration::from_secs(1);

/// What a cgroup's path says about it.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Info {
    /// `docker`, `containerd`, `cri-o`, `podman`, `kubernetes`, `systemd` or `host`.
    pub runtime: &'static str,
    /// 64 hex characters.
    pub container_id: Option<String>,
    /// The pod's UID, with dashes (systemd paths write it with `_`).
    pub pod_uid: Option<String>,
    /// `guaranteed`, `burstable` or `besteffort`.
    pub qos: Option<&'static str>,
    pub systemd_unit: Option<String>,
}

fn is_id(s: &str) -> bool {
    s.len() == 64 && s.bytes().all(|b| b.is_ascii_hexdigit() && !b.is_ascii_uppercase())
}

/// `<prefix><64 hex><suffix>` -> the id.
fn id_between<'a>(s: &'a str, prefix: &str, suffix: &str) -> Option<&'a str> {
    s.strip_prefix(prefix)?.strip_suffix(suffix).filter(|id| is_id(id))
}

/// A container id in one path component, and the runtime its shape names.
fn container_in(component: &str, parent: Option<&str>, in_pod: bool) -> Option<(&'static str, String)> {
    const SCOPES: [(&str, &str); 4] =
        [("docker-", "docker"), ("cri-containerd-", "containerd"), ("crio-", "cri-o"), ("libpod-", "podman")];
    for (prefix, runtime) in SCOPES {
        if let Some(id) = id_between(component, prefix, ".scope") {
            return Some((runtime, id.to_string()));
        }
    }
    // `<pod slice>:cri-containerd:<id>` (containerd's cgroupsPath with the
    // systemd driver), and the same shape for the other runtimes.
    const COLONS: [(&str, &str); 3] = [(":cri-containerd:", "containerd"), (":docker:", "docker"), (":crio:", "cri-o")];
    for (marker, runtime) in COLONS {
        if let Some((_, id)) = component.split_once(marker) {
            if is_id(id) {
                return Some((runtime, id.to_string()));
            }
        }
    }
    if is_id(component) {
        // `/docker/<id>` (cgroupfs driver), `/kubepods/<qos>/pod<uid>/<id>`
        let runtime = match parent {
            Some("docker") => "docker",
            _ if in_pod => "kubernetes",
            Some("libpod_parent") | Some("machine.slice") => "podman",
            _ => return None,
        };
        return Some((runtime, component.to_string()));
    }
    None
}

/// A pod's QoS class and UID in one path component.
fn pod_in(component: &str, parent: Option<&str>) -> Option<(&'static str, String)> {
    // systemd driver: kubepods-<qos>-pod<uid>.slice, kubepods-pod<uid>.slice
    if let Some(rest) = component.strip_prefix("kubepods-").and_then(|r| r.strip_suffix(".slice")) {
        let (qos, uid) = match rest.split_once("-pod") {
            Some((q, uid)) => (qos_name(q)?, uid),
            None => ("guaranteed", rest.strip_prefix("pod")?),
        };
        return valid_uid(&uid.replace('_', "-")).map(|u| (qos, u));
    }
    // cgroupfs driver: kubepods/<qos>/pod<uid>, kubepods/pod<uid>
    let uid = component.strip_prefix("pod")?;
    let qos = match parent? {
        "kubepods" => "guaranteed",
        p => qos_name(p)?,
    };
    valid_uid(uid).map(|u| (qos, u))
}

fn qos_name(s: &str) -> Option<&'static str> {
    match s {
        "besteffort" => Some("besteffort"),
        "burstable" => Some("burstable"),
        "guaranteed" => Some("guaranteed"),
        _ => None,
    }
}

/// A UUID-shaped pod UID (8-4-4-4-12 hex).
fn valid_uid(uid: &str) -> Option<String> {
    let parts: Vec<&str> = uid.split('-').collect();
    let shape = parts.len() == 5
        && parts.iter().zip([8, 4, 4, 4, 12]).all(|(p, n)| p.len() == n && p.bytes().all(|b| b.is_ascii_hexdigit()));
    shape.then(|| uid.to_ascii_lowercase())
}

/// What a cgroup v2 path (relative to the mount, starting with `/`) says:
/// the layouts Falco and Pixie recognise. The container id is the nearest
/// one going up from the leaf (a process in a sub-cgroup of a container
/// belongs to it); the systemd unit is the nearest `.service` or `.scope`
/// (or the leaf, if it is a `.slice`).
pub fn classify(path: &str) -> Info {
    let parts: Vec<&str> = path.split('/').filter(|p| !p.is_empty()).collect();
    let mut info = Info::default();
    let mut qos_parent: Option<&'static str> = None;
    for (i, part) in parts.iter().enumerate() {
        let parent = i.checked_sub(1).map(|p| parts[p]);
        if let Some((qos, uid)) = pod_in(part, parent) {
            info.qos = Some(qos);
            info.pod_uid = Some(uid);
        } else if info.pod_uid.is_none() {
            // kubepods-besteffort.slice / kubepods/besteffort: a QoS class
            // with no pod yet (the class's own cgroup)
            let class = part
                .strip_prefix("kubepods-")
                .and_then(|r| r.strip_suffix(".slice"))
                .or(if parent == Some("kubepods") || parent == Some("kubepods.slice") { Some(*part) } else { None });
            if let Some(q) = class.and_then(qos_name) {
                qos_parent = Some(q);
            }
        }
    }
    if info.qos.is_none() {
        info.qos = qos_parent;
    }
    for i in (0..parts.len()).rev() {
        let parent = i.checked_sub(1).map(|p| parts[p]);
        let in_pod =
            parts[..i].iter().enumerate().any(|(j, p)| pod_in(p, j.checked_sub(1).map(|q| parts[q])).is_some());
        if let Some((runtime, id)) = container_in(parts[i], parent, in_pod) {
            info.runtime = runtime;
            info.container_id = Some(id);
            break;
        }
    }
    info.systemd_unit = parts
        .iter()
        .rev()
        .find(|p| p.ends_with(".service") || p.ends_with(".scope"))
        .or(parts.last().filter(|p| p.ends_with(".slice")))
        .map(|p| p.to_string());
    if info.container_id.is_none() {
        info.runtime = if info.pod_uid.is_some() {
            "kubernetes"
        } else if info.systemd_unit.is_some() {
            "systemd"
        } else {
            "host"
        };
    }
    info
}

/// Where cgroup2 is mounted, from the text of `/proc/self/mounts`:
/// `/sys/fs/cgroup` on unified hosts, `/sys/fs/cgroup/unified` on hybrid ones.
pub fn cgroup2_mount(mounts: &str) -> Option<PathBuf> {
    mounts.lines().find_map(|l| {
        let mut f = l.split_whitespace();
        let (_, dir, kind) = (f.next(), f.next()?, f.next()?);
        (kind == "cgroup2").then(|| PathBuf::from(unescape_mount(dir)))
    })
}

/// `/proc/mounts` writes spaces and the like as `\040` (octal).
fn unescape_mount(s: &str) -> String {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'\\' && i + 3 < b.len() && b[i + 1..i + 4].iter().all(|c| (b'0'..=b'7').contains(c)) {
            out.push((b[i + 1] - b'0') * 64 + (b[i + 2] - b'0') * 8 + (b[i + 3] - b'0'));
            i += 4;
        } else {
            out.push(b[i]);
            i += 1;
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// One cgroup sysql has seen.
#[derive(Debug, Clone)]
struct Cgroup {
    /// Relative to the cgroup2 mount; `None` if never found in the tree.
    path: Option<String>,
    info: Option<Info>,
    /// `container_id` as shared text, for the event rows.
    container_id: Option<Arc<str>>,
    /// Wall-clock ns.
    first_seen: i64,
    removed: Option<i64>,
}

#[derive(Debug)]
struct State {
    rows: HashMap<u64, Cgroup>,
    last_walk: Option<Instant>,
    /// Walks events may still trigger (a token bucket).
    tokens: f64,
    refilled: Instant,
}

impl State {
    /// Takes a walk from the bucket, if there is one.
    fn take_walk(&mut self) -> bool {
        let now = Instant::now();
        let refill = now.duration_since(self.refilled).as_secs_f64() * WALK_RATE;
        self.tokens = (self.tokens + refill).min(WALK_BURST);
        self.refilled = now;
        if self.tokens >= 1.0 {
            self.tokens -= 1.0;
            true
        } else {
            false
        }
    }
}

/// Where to look, and a clock.
#[derive(Debug, Clone, Default)]
pub struct ContainersConfig {
    /// The cgroup2 mount; `None`: no attribution (every `container_id` is NULL).
    pub cgroup_root: Option<PathBuf>,
    /// Where `/proc` is, for the quick lookup of a new cgroup through a
    /// process; `None` skips it (the tree walk alone).
    pub proc_root: Option<PathBuf>,
}

impl ContainersConfig {
    /// This host's cgroup2 mount and `/proc`.
    pub fn host() -> Self {
        let mounts = std::fs::read_to_string("/proc/self/mounts").unwrap_or_default();
        ContainersConfig { cgroup_root: cgroup2_mount(&mounts), proc_root: Some(PathBuf::from("/proc")) }
    }
}

/// The cgroups seen, shared by the writer (which asks for container ids)
/// and the `containers` table.
#[derive(Debug)]
pub struct Containers {
    config: ContainersConfig,
    state: Mutex<State>,
}

fn now_wall_ns() -> i64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_nanos() as i64).unwrap_or(0)
}

impl Containers {
    /// Walks the tree once, so the cgroups present at start are known.
    pub fn new(config: ContainersConfig) -> Self {
        let state = State { rows: HashMap::new(), last_walk: None, tokens: WALK_BURST, refilled: Instant::now() };
        let c = Containers { config, state: Mutex::new(state) };
        c.walk();
        c
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// The cgroup2 mount, if attribution is on.
    pub fn root(&self) -> Option<&Path> {
        self.config.cgroup_root.as_deref()
    }

    /// The container of cgroup `id` (an event of process `pid` came from
    /// it), and whether that answer is settled: a cgroup not found because
    /// no walk was allowed (not settled) is looked up again on its next
    /// event. An id not seen before is looked up now.
    pub fn container_id(&self, id: u64, pid: u32) -> (Option<Arc<str>>, bool) {
        let Some(root) = self.config.cgroup_root.as_ref() else { return (None, true) };
        if let Some(c) = self.lock().rows.get(&id) {
            return (c.container_id.clone(), true);
        }
        // Through the process: /proc/<pid>/cgroup's `0::` line is its cgroup2 path.
        if let Some(path) = self.config.proc_root.as_ref().and_then(|p| proc_cgroup_path(p, pid)) {
            let dir = root.join(path.trim_start_matches('/'));
            if std::fs::metadata(&dir).is_ok_and(|m| m.ino() == id) {
                let mut state = self.lock();
                insert(&mut state, id, &path, now_wall_ns());
                return (state.rows.get(&id).and_then(|c| c.container_id.clone()), true);
            }
        }
        // (the process is gone already, or /proc is not ours to read)
        if !self.lock().take_walk() {
            return (None, false);
        }
        self.walk();
        let mut state = self.lock();
        if let Some(c) = state.rows.get(&id) {
            return (c.container_id.clone(), true);
        }
        // Seen in an event, nowhere in the tree (gone already): a row
        // without a path, so every cgroup seen has one.
        let now = now_wall_ns();
        make_room(&mut state);
        state
            .rows
            .insert(id, Cgroup { path: None, info: None, container_id: None, first_seen: now, removed: Some(now) });
        (None, true)
    }

    /// Walks the tree if the last walk is a second old (for queries of
    /// `containers`, so removals show). Returns whether it walked.
    pub fn walk_if_due(&self) -> bool {
        let due = self.lock().last_walk.is_none_or(|t| t.elapsed() >= QUERY_WALK_AGE);
        if due {
            self.walk();
        }
        due
    }

    /// Walks the whole tree: new cgroups are added, ones whose directory is
    /// gone are marked removed.
    pub fn walk(&self) {
        let Some(root) = self.config.cgroup_root.as_ref() else { return };
        let mut found = Vec::new();
        let mut stack = vec![(root.clone(), String::from("/"))];
        while let Some((dir, rel)) = stack.pop() {
            if found.len() >= MAX_WALK {
                break;
            }
            let Ok(meta) = std::fs::metadata(&dir) else { continue };
            found.push((meta.ino(), rel.clone()));
            let Ok(entries) = std::fs::read_dir(&dir) else { continue };
            for entry in entries.flatten() {
                if entry.file_type().is_ok_and(|t| t.is_dir()) {
                    let name = entry.file_name().to_string_lossy().into_owned();
                    let child = if rel == "/" { format!("/{name}") } else { format!("{rel}/{name}") };
                    stack.push((entry.path(), child));
                }
            }
        }
        let now = now_wall_ns();
        let mut state = self.lock();
        let seen: std::collections::HashSet<u64> = found.iter().map(|(id, _)| *id).collect();
        for (id, c) in state.rows.iter_mut() {
            if c.removed.is_none() && !seen.contains(id) {
                c.removed = Some(now);
            }
        }
        for (id, path) in found {
            match state.rows.get_mut(&id) {
                Some(c) if c.path.as_deref() == Some(path.as_str()) => {}
                Some(c) if c.path.is_none() => {
                    // an id seen in an event before its directory was walked
                    let info = classify(&path);
                    c.container_id = info.container_id.as_deref().map(Arc::from);
                    c.info = Some(info);
                    c.path = Some(path);
                    c.removed = None;
                }
                _ => insert(&mut state, id, &path, now),
            }
        }
        state.last_walk = Some(Instant::now());
    }

    /// The `containers` table now.
    pub fn batch(&self) -> Result<RecordBatch> {
        let state = self.lock();
        let mut rows: Vec<(&u64, &Cgroup)> = state.rows.iter().collect();
        rows.sort_by_key(|(id, c)| (c.first_seen, **id));
        let mut cols = ContainersColumns::new(rows.len());
        for (id, c) in &rows {
            cols.cgroup_id.append_value(**id);
            cols.cgroup_path.append_option(c.path.as_deref());
            let info = c.info.as_ref();
            cols.runtime.append_option(info.map(|i| i.runtime));
            cols.container_id.append_option(info.and_then(|i| i.container_id.as_deref()));
            cols.container_id_short.append_option(info.and_then(|i| i.container_id.as_deref()).map(|s| &s[..12]));
            cols.pod_uid.append_option(info.and_then(|i| i.pod_uid.as_deref()));
            cols.qos.append_option(info.and_then(|i| i.qos));
            cols.systemd_unit.append_option(info.and_then(|i| i.systemd_unit.as_deref()));
            cols.first_seen.append_value(c.first_seen);
            cols.removed.append_option(c.removed);
        }
        Ok(RecordBatch::try_new(table_schema(), cols.finish(rows.len()))?)
    }

    /// Cgroups known now (removed ones included).
    pub fn len(&self) -> usize {
        self.lock().rows.len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

fn insert(state: &mut State, id: u64, path: &str, now: i64) {
    let info = classify(path);
    make_room(state);
    state.rows.insert(
        id,
        Cgroup {
            path: Some(path.to_string()),
            container_id: info.container_id.as_deref().map(Arc::from),
            info: Some(info),
            first_seen: now,
            removed: None,
        },
    );
}

/// Keeps the table under [`MAX_ROWS`]: the longest-removed cgroup goes first.
fn make_room(state: &mut State) {
    while state.rows.len() >= MAX_ROWS {
        let oldest = state.rows.iter().filter_map(|(id, c)| c.removed.map(|r| (r, *id))).min();
        match oldest {
            Some((_, id)) => {
                state.rows.remove(&id);
            }
            None => break,
        }
    }
}

/// The cgroup2 path of a process, from `/proc/<pid>/cgroup` (the `0::` line).
fn proc_cgroup_path(proc_root: &Path, pid: u32) -> Option<String> {
    let text = std::fs::read_to_string(proc_root.join(pid.to_string()).join("cgroup")).ok()?;
    text.lines().find_map(|l| l.strip_prefix("0::")).map(|p| p.trim_end().to_string())
}

crate::columns! {
    /// The columns of `containers`.
    pub struct ContainersColumns {
        cgroup_id: UInt64, not null, "the cgroup v2 id (its directory's inode number): join event tables on it";
        cgroup_path: Utf8, null, "the cgroup's path under the cgroup2 mount (`/system.slice/docker-<id>.scope`); `NULL` if an event showed the id after its directory was gone";
        runtime: Utf8View, null, "who made it, from the path's shape: `docker`, `containerd`, `cri-o`, `podman`, `kubernetes` (a pod, or a container under a pod of the cgroupfs layout), `systemd` (a unit), `host` (anything else, the root included); `NULL` when the path is unknown";
        container_id: Utf8, null, "the container's full id (64 hex characters); `NULL` if not a container";
        container_id_short: Utf8, null, "its first 12 characters, as `docker ps` shows it";
        pod_uid: Utf8, null, "the Kubernetes pod's UID (with dashes) for a pod's cgroup and its containers";
        qos: Utf8View, null, "the pod's QoS class: `guaranteed`, `burstable` or `besteffort`";
        systemd_unit: Utf8, null, "the nearest systemd unit (`.service` or `.scope`, or the `.slice` itself)";
        first_seen: Ts, not null, "when sysql first saw the cgroup (a walk of the tree, or an event from it)";
        removed: Ts, null, "when sysql saw its directory gone; `NULL` while it exists";
    }
}

/// The schema of `containers`.
pub fn table_schema() -> SchemaRef {
    Arc::new(Schema::new(ContainersColumns::COLUMNS.iter().map(ColumnDef::field).collect::<Vec<_>>()))
}

/// `containers`: one row per cgroup seen. A scan walks the tree first if the
/// last walk is more than a second old, so removals show.
#[derive(Debug)]
pub struct ContainersTable {
    containers: Arc<Containers>,
}

impl ContainersTable {
    pub fn new(containers: Arc<Containers>) -> Self {
        ContainersTable { containers }
    }
}

#[async_trait]
impl TableProvider for ContainersTable {
    fn schema(&self) -> SchemaRef {
        table_schema()
    }

    fn table_type(&self) -> TableType {
        TableType::View
    }

    async fn scan(
        &self,
        _state: &dyn Session,
        projection: Option<&Vec<usize>>,
        _filters: &[Expr],
        _limit: Option<usize>,
    ) -> Result<Arc<dyn ExecutionPlan>> {
        self.containers.walk_if_due();
        Ok(MemorySourceConfig::try_new_exec(&[vec![self.containers.batch()?]], table_schema(), projection.cloned())?)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const ID: &str = "0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef";

    fn info(
        runtime: &'static str,
        id: Option<&str>,
        pod: Option<&str>,
        qos: Option<&'static str>,
        unit: Option<&str>,
    ) -> Info {
        Info {
            runtime,
            container_id: id.map(String::from),
            pod_uid: pod.map(String::from),
            qos,
            systemd_unit: unit.map(String::from),
        }
    }

    #[test]
    fn layouts_falco_and_pixie_recognise() {
        let uid = "4bd0ac6c-4fd3-4b8a-9b5c-0a1f2e3d4c5b";
        let uid_ = uid.replace('-', "_");
        let scope = |p: &str| format!("{p}{ID}.scope");
        assert_eq!(classify("/"), info("host", None, None, None, None));
        assert_eq!(
            classify(&format!("/system.slice/{}", scope("docker-"))),
            info("docker", Some(ID), None, None, Some(&scope("docker-")))
        );
        assert_eq!(classify(&format!("/docker/{ID}")), info("docker", Some(ID), None, None, None));
        assert_eq!(
            classify(&format!("/machine.slice/{}", scope("libpod-"))),
            info("podman", Some(ID), None, None, Some(&scope("libpod-")))
        );
        assert_eq!(
            classify(&format!(
                "/kubepods.slice/kubepods-besteffort.slice/kubepods-besteffort-pod{uid_}.slice/{}",
                scope("cri-containerd-")
            )),
            info("containerd", Some(ID), Some(uid), Some("besteffort"), Some(&scope("cri-containerd-")))
        );
        assert_eq!(
            classify(&format!(
                "/kubepods.slice/kubepods-burstable.slice/kubepods-burstable-pod{uid_}.slice/{}",
                scope("crio-")
            )),
            info("cri-o", Some(ID), Some(uid), Some("burstable"), Some(&scope("crio-")))
        );
        assert_eq!(
            classify(&format!("/kubepods.slice/kubepods-pod{uid_}.slice/{}", scope("cri-containerd-"))),
            info("containerd", Some(ID), Some(uid), Some("guaranteed"), Some(&scope("cri-containerd-")))
        );
        let colon = format!("/kubepods-besteffort-pod{uid_}.slice:cri-containerd:{ID}");
        assert_eq!(classify(&colon).container_id.as_deref(), Some(ID));
        assert_eq!(classify(&colon).runtime, "containerd");
        assert_eq!(
            classify(&format!("/kubepods/besteffort/pod{uid}/{ID}")),
            info("kubernetes", Some(ID), Some(uid), Some("besteffort"), None)
        );
        assert_eq!(
            classify(&format!("/kubepods/pod{uid}/{ID}")),
            info("kubernetes", Some(ID), Some(uid), Some("guaranteed"), None)
        );
        // the pod's own cgroup, and its QoS class's
        let pod = format!("/kubepods.slice/kubepods-besteffort.slice/kubepods-besteffort-pod{uid_}.slice");
        assert_eq!(
            classify(&pod),
            info(
                "kubernetes",
                None,
                Some(uid),
                Some("besteffort"),
                Some(&format!("kubepods-besteffort-pod{uid_}.slice"))
            )
        );
        assert_eq!(classify("/kubepods.slice/kubepods-burstable.slice").qos, Some("burstable"));
        // inside a container: the container still
        let nested = format!("/system.slice/{}/init.scope", scope("docker-"));
        assert_eq!(classify(&nested), info("docker", Some(ID), None, None, Some("init.scope")));
        // systemd units and plain directories
        assert_eq!(classify("/system.slice/nginx.service"), info("systemd", None, None, None, Some("nginx.service")));
        assert_eq!(classify("/user.slice"), info("systemd", None, None, None, Some("user.slice")));
        assert_eq!(classify("/mygroup/sub"), info("host", None, None, None, None));
        // not ids: too short, upper case, conmon scopes
        assert_eq!(classify("/system.slice/docker-abc.scope").runtime, "systemd");
        assert_eq!(classify(&format!("/docker/{}", ID.to_uppercase())).container_id, None);
        assert_eq!(classify(&format!("/machine.slice/libpod-conmon-{ID}.scope")).container_id, None);
    }

    #[test]
    fn the_cgroup2_mount_of_hybrid_and_unified_hosts() {
        let hybrid = "tmpfs /sys/fs/cgroup tmpfs rw 0 0\ncgroup /sys/fs/cgroup/cpu cgroup rw,cpu 0 0\n\
                      cgroup2 /sys/fs/cgroup/unified cgroup2 rw 0 0\n";
        assert_eq!(cgroup2_mount(hybrid), Some(PathBuf::from("/sys/fs/cgroup/unified")));
        assert_eq!(cgroup2_mount("cgroup2 /sys/fs/cgroup cgroup2 rw 0 0\n"), Some(PathBuf::from("/sys/fs/cgroup")));
        assert_eq!(cgroup2_mount("cgroup2 /a\\040b cgroup2 rw 0 0\n"), Some(PathBuf::from("/a b")));
        assert_eq!(cgroup2_mount("proc /proc proc rw 0 0\n"), None);
    }

    #[test]
    fn a_tree_walk_finds_adds_and_marks_removed() {
        let dir = std::env::temp_dir().join(format!("sysql-containers-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        let docker = dir.join("system.slice").join(format!("docker-{ID}.scope"));
        std::fs::create_dir_all(&docker).unwrap();
        let ino = |p: &Path| std::fs::metadata(p).unwrap().ino();
        let c = Containers::new(ContainersConfig { cgroup_root: Some(dir.clone()), proc_root: None });
        assert_eq!(c.len(), 3, "the root, the slice and the scope");
        assert_eq!(c.container_id(ino(&docker), 1).0.as_deref(), Some(ID));
        assert_eq!(c.container_id(ino(&dir), 1), (None, true));
        // a new cgroup is found by the walk its first event triggers
        let later = dir.join("docker").join(ID);
        std::fs::create_dir_all(&later).unwrap();
        assert_eq!(c.container_id(ino(&later), 1).0.as_deref(), Some(ID));
        // an id nowhere in the tree gets a row without a path, once
        assert_eq!(c.container_id(u64::MAX, 1), (None, true));
        assert_eq!(c.len(), 6);
        // walks for unknown ids are rate-limited
        let mut walks = 0;
        while c.lock().take_walk() {
            walks += 1;
        }
        assert!(walks < WALK_BURST as i32, "{walks}");
        assert_eq!(c.container_id(u64::MAX - 1, 1), (None, false), "no walk left: not settled");
        std::fs::remove_dir(&docker).unwrap();
        c.walk();
        let batch = c.batch().unwrap();
        assert_eq!(batch.num_rows(), 6);
        let removed = batch.column(9);
        assert_eq!(removed.null_count(), 4, "the docker scope and the unknown id are gone");
        let _ = std::fs::remove_dir_all(&dir);
    }
}
