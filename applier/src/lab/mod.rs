//! `podnet lab`: the whole cluster on one machine, out of network namespaces, proven pair by
//! pair. A [`Lab`] is a guard: building it makes the namespaces of a [`LabPlan`] (router,
//! outside host, one switch per segment, nodes, pods), converging runs a [`Converge`] per
//! node, attaching runs the real CNI plugins, probing sends a datagram from every source
//! to every destination and checks reachability, the source address seen and the pod MTU.
//! Dropping it removes every namespace it made and its state directory (on an error, a
//! panic, or an interrupt noticed through [`check_interrupt`]); [`Lab::keep`] leaves it up
//! for [`down`] to remove later from its state file.
//!
//! Submodules: `topology` (pure plan), `netns` and `build` (namespaces and links), `cni`,
//! `converge` (the converge seam), `expect` (pure expectations), `probe`, `report`
//! (text, JSON, JUnit from one result model), `state` (the state file and `lab down`).

pub mod build;
pub mod cni;
pub mod converge;
pub mod expect;
pub mod netns;
pub mod probe;
pub mod report;
pub mod state;
pub mod topology;

use std::net::{Ipv4Addr, SocketAddrV4};
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use podnet_compiler::Cluster;
use podnet_compiler::plan::{NodePlan, rooted};
use serde_json::Value;

pub use converge::{Converge, Converged, EngineConverge, NodeRef, WatchConverge};
pub use expect::{CheckKind, Endpoint, EndpointKind, Pair, Seen};
pub use probe::ProbeConfig;
pub use report::{LabResult, Phase, Timings};
pub use topology::{LabPlan, Relation};

use crate::engine::EngineError;
use cni::Attachment;

/// The default state directory: one subdirectory per lab (state file, node roots).
pub const STATE_DIR: &str = "/run/podnet-lab";

/// Why a lab could not be built, converged or probed (a failed *check* is not an error:
/// it is in the [`Phase`]).
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum LabError {
    #[error("{what}: {source}")]
    Io {
        what: String,
        #[source]
        source: std::io::Error,
    },
    #[error("{what} failed: {message}")]
    Command { what: String, message: String },
    #[error("`{tool}` is not installed: install the Debian package {package}")]
    MissingTool { tool: String, package: String },
    #[error(
        "CNI plugin(s) {} not found in {searched}: install the Debian package {} \
         (apt-get install {}) or point CNI_PATH at them",
        plugins.join(", "), cni::PACKAGE, cni::PACKAGE
    )]
    MissingPlugins {
        plugins: Vec<String>,
        searched: String,
    },
    #[error("CNI: {0}")]
    Cni(String),
    #[error("node {node}: {source}")]
    Engine {
        node: String,
        #[source]
        source: EngineError,
    },
    #[error("node {node} did not converge:\n  {}", problems.join("\n  "))]
    NotConverged { node: String, problems: Vec<String> },
    #[error("{} node(s) failed:\n{}", .0.len(), .0.iter().map(|e| format!("  {e}")).collect::<Vec<_>>().join("\n"))]
    Nodes(Vec<LabError>),
    #[error("node {0} has no subnet (add `subnet` or run `podnet lock`)")]
    Unallocated(String),
    #[error("no free address for the lab's router on segment {0}")]
    NoRouterAddress(ipnet::Ipv4Net),
    #[error("no free network for the lab's outside host (all candidates overlap the cluster)")]
    NoOutsideAddress,
    #[error("lab id `{0}` is invalid: 1-12 lowercase letters and digits, starting with a letter")]
    BadId(String),
    #[error(
        "namespace {0} exists already: lab `{1}` is running or was kept (`podnet lab down {1}`)"
    )]
    Exists(String, String),
    #[error(
        "the next file describes other machines: `--then` keeps the lab's nodes (names, \
         addresses, interfaces, underlay MTUs) and changes only their configuration"
    )]
    OtherMachines,
    #[error(
        "the lab needs up to {need} neighbour (ARP) entries, but every namespace shares the \
         kernel's one table of at most {limit} (net.ipv4.neigh.default.gc_thresh3 of this \
         host): use fewer pods per node or nodes, or raise the limit on this host \
         (sysctl -w net.ipv4.neigh.default.gc_thresh3=N)"
    )]
    NeighbourLimit { need: usize, limit: usize },
    #[error("interrupted")]
    Interrupted,
}

impl LabError {
    pub fn io(what: impl Into<String>, source: std::io::Error) -> LabError {
        LabError::Io {
            what: what.into(),
            source,
        }
    }
}

static INTERRUPTED: AtomicBool = AtomicBool::new(false);

/// Makes SIGINT and SIGTERM set the interrupt flag the lab checks between steps (its guards
/// then remove everything); a second signal exits at once with status 130.
pub fn install_signal_handlers() -> std::io::Result<()> {
    use signal_hook::consts::{SIGINT, SIGTERM};
    for sig in [SIGINT, SIGTERM] {
        signal_hook::flag::register_conditional_shutdown(sig, 130, shared_flag())?;
        signal_hook::flag::register(sig, shared_flag())?;
    }
    // Mirror the shared flag into the static one (signal-hook wants an Arc).
    std::thread::spawn(|| {
        loop {
            if shared_flag().load(Ordering::SeqCst) {
                INTERRUPTED.store(true, Ordering::SeqCst);
                return;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    });
    Ok(())
}

fn shared_flag() -> std::sync::Arc<AtomicBool> {
    static FLAG: std::sync::OnceLock<std::sync::Arc<AtomicBool>> = std::sync::OnceLock::new();
    FLAG.get_or_init(|| std::sync::Arc::new(AtomicBool::new(false)))
        .clone()
}

/// `Err(Interrupted)` once SIGINT/SIGTERM arrived (after [`install_signal_handlers`]).
pub fn check_interrupt() -> Result<(), LabError> {
    if INTERRUPTED.load(Ordering::SeqCst) {
        Err(LabError::Interrupted)
    } else {
        Ok(())
    }
}

/// Runs `f` on every item with at most `threads` at once; every item runs, all errors are
/// returned together (one alone as itself).
pub fn parallel<T: Sync>(
    items: &[T],
    threads: usize,
    f: impl Fn(&T) -> Result<(), LabError> + Sync,
) -> Result<(), LabError> {
    let next = std::sync::atomic::AtomicUsize::new(0);
    let errors = Mutex::new(Vec::new());
    std::thread::scope(|s| {
        for _ in 0..threads.clamp(1, items.len().max(1)) {
            s.spawn(|| {
                loop {
                    let i = next.fetch_add(1, Ordering::Relaxed);
                    let Some(item) = items.get(i) else { break };
                    if let Err(e) = f(item)
                        && let Ok(mut v) = errors.lock()
                    {
                        v.push(e);
                    }
                }
            });
        }
    });
    let mut errors = errors.into_inner().unwrap_or_default();
    match errors.len() {
        0 => Ok(()),
        1 => Err(errors.remove(0)),
        _ => Err(LabError::Nodes(errors)),
    }
}

/// How a lab is built.
#[derive(Clone, Debug)]
pub struct LabOptions {
    /// The lab id (prefix of every namespace); default: `pl` and 4 hex digits.
    pub id: Option<String>,
    /// Pods per node.
    pub pods: usize,
    /// Where the lab's state file and node roots live.
    pub state_dir: PathBuf,
    pub probe: ProbeConfig,
}

impl Default for LabOptions {
    fn default() -> Self {
        LabOptions {
            id: None,
            pods: 2,
            state_dir: PathBuf::from(STATE_DIR),
            probe: ProbeConfig::default(),
        }
    }
}

/// Progress reports: a stage name, done, total.
pub type Progress<'a> = &'a (dyn Fn(&str, usize, usize) + Sync);

/// The host's limit on non-permanent neighbour entries (read, never changed).
fn neighbour_limit() -> Option<usize> {
    std::fs::read_to_string("/proc/sys/net/ipv4/neigh/default/gc_thresh3")
        .ok()?
        .trim()
        .parse()
        .ok()
}

/// A default lab id: `pl` + 4 hex digits from the process id and the clock.
pub fn fresh_id() -> String {
    let t = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.subsec_nanos())
        .unwrap_or(0);
    format!("pl{:04x}", (std::process::id() ^ t ^ (t >> 16)) & 0xffff)
}

/// A running lab. Dropping it removes everything it made unless it was kept.
pub struct Lab {
    plan: LabPlan,
    dir: PathBuf,
    made: Mutex<Vec<String>>,
    /// Per node, per pod: the attachment, once attached.
    pods: Vec<Vec<Option<Attachment>>>,
    /// Per node: the conflist the pods were attached with.
    attached_with: Vec<Option<Value>>,
    cni_path: Vec<PathBuf>,
    probe: ProbeConfig,
    kept: bool,
    runs: u32,
}

impl Lab {
    /// Builds the lab's topology for `cluster` (nothing converged yet). Every CNI plugin
    /// the plans' conflists name must be installed and no namespace of the lab may exist,
    /// checked before anything is made.
    pub fn up(
        cluster: &Cluster,
        plans: &[NodePlan],
        opts: &LabOptions,
        progress: Progress<'_>,
    ) -> Result<Lab, LabError> {
        let id = opts.id.clone().unwrap_or_else(fresh_id);
        let plan = LabPlan::new(cluster, &id, opts.pods)?;
        let cni_path = cni::search_path();
        let conflists = plans
            .iter()
            .map(|p| cni::plan_conflist(p).map(|c| c.1))
            .collect::<Result<Vec<_>, _>>()?;
        cni::check_plugins(&conflists, &cni_path)?;
        let need = topology::neighbour_entries(plan.nodes.len(), opts.pods);
        if let Some(limit) = neighbour_limit()
            && need > limit
        {
            return Err(LabError::NeighbourLimit { need, limit });
        }
        let names = plan.namespaces();
        if let Some(n) = names.iter().find(|n| netns::exists(n)) {
            return Err(LabError::Exists(n.clone(), id));
        }
        let dir = opts.state_dir.join(&id);
        state::write(&dir, &state::State::new(&id, &plan.cluster, names))?;
        let lab = Lab {
            pods: plan
                .nodes
                .iter()
                .map(|n| vec![None; n.pods.len()])
                .collect(),
            attached_with: vec![None; plan.nodes.len()],
            plan,
            dir,
            made: Mutex::new(Vec::new()),
            cni_path,
            probe: opts.probe.clone(),
            kept: false,
            runs: 0,
        };
        let made = |n: &str| {
            if let Ok(mut m) = lab.made.lock() {
                m.push(n.to_string());
            }
        };
        build::namespaces(&lab.plan, &made, &|d, t| progress("namespaces", d, t))?;
        check_interrupt()?;
        build::links(&lab.plan)?;
        check_interrupt()?;
        Ok(lab)
    }

    pub fn plan(&self) -> &LabPlan {
        &self.plan
    }

    pub fn id(&self) -> &str {
        &self.plan.id
    }

    /// The lab's state directory (state file, node roots).
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// A node's `--root`.
    pub fn node_root(&self, node: usize) -> PathBuf {
        converge::node_root(&self.dir, &self.plan.nodes[node].name)
    }

    fn node_ref<'a>(&'a self, i: usize, root: &'a Path) -> NodeRef<'a> {
        let n = &self.plan.nodes[i];
        NodeRef {
            name: &n.name,
            ns: &n.ns,
            root,
        }
    }

    /// Converges every node on its plan (compiled from `file`) through `conv`, in parallel.
    pub fn converge(
        &mut self,
        conv: &dyn Converge,
        file: &Path,
        plans: &[NodePlan],
        progress: Progress<'_>,
    ) -> Result<Vec<Converged>, LabError> {
        conv.publish(file)?;
        let roots: Vec<PathBuf> = (0..self.plan.nodes.len())
            .map(|i| self.node_root(i))
            .collect();
        for r in &roots {
            std::fs::create_dir_all(r)
                .map_err(|e| LabError::io(format!("creating {}", r.display()), e))?;
        }
        let done = Mutex::new(vec![None; plans.len()]);
        let count = std::sync::atomic::AtomicUsize::new(0);
        let idx: Vec<usize> = (0..plans.len()).collect();
        parallel(&idx, build::PARALLEL, |&i| {
            check_interrupt()?;
            let node = self.node_ref(i, &roots[i]);
            let c = conv.converge(&node, &plans[i])?;
            if let Ok(mut d) = done.lock() {
                d[i] = Some(c);
            }
            progress(
                "nodes converged",
                count.fetch_add(1, Ordering::Relaxed) + 1,
                plans.len(),
            );
            Ok(())
        })?;
        Ok(done
            .into_inner()
            .unwrap_or_default()
            .into_iter()
            .flatten()
            .collect())
    }

    /// Removes (CNI `DEL`) the pods whose node's conflist differs in `plans`, before the
    /// nodes converge on them: their bridge, subnet or MTU is about to change.
    pub fn detach_changed(&mut self, plans: &[NodePlan]) -> Result<(), LabError> {
        let mut jobs = Vec::new();
        for (i, p) in plans.iter().enumerate() {
            let new = cni::plan_conflist(p)?.1;
            if self.attached_with[i]
                .as_ref()
                .is_some_and(|old| *old != new)
            {
                for k in 0..self.pods[i].len() {
                    jobs.push((i, k));
                }
                self.attached_with[i] = None;
            }
        }
        self.del(&jobs)
    }

    fn del(&mut self, jobs: &[(usize, usize)]) -> Result<(), LabError> {
        let pods = &self.pods;
        let plan = &self.plan;
        let path = &self.cni_path;
        let r = parallel(jobs, build::PARALLEL, |&(i, k)| match &pods[i][k] {
            Some(a) => cni::del(&plan.nodes[i].ns, a, path),
            None => Ok(()),
        });
        for &(i, k) in jobs {
            self.pods[i][k] = None;
        }
        r
    }

    /// Attaches every pod not attached yet through the CNI plugins, with the conflist the
    /// engine wrote under the node's root (host-local leases in the node's root too).
    pub fn attach(&mut self, plans: &[NodePlan], progress: Progress<'_>) -> Result<(), LabError> {
        let mut confs = Vec::with_capacity(plans.len());
        for (i, p) in plans.iter().enumerate() {
            let (path, _) = cni::plan_conflist(p)?;
            let root = self.node_root(i);
            let on_disk = rooted(Some(&root), &path);
            let text = std::fs::read_to_string(&on_disk).map_err(|e| {
                LabError::io(format!("reading {on_disk} (written by the engine)"), e)
            })?;
            let v: Value = serde_json::from_str(&text)
                .map_err(|e| LabError::Cni(format!("{on_disk}: {e}")))?;
            let data = root.join("var/lib/cni/networks");
            confs.push((cni::plugin_confs(&v, &data), v));
        }
        let jobs: Vec<(usize, usize)> = self
            .pods
            .iter()
            .enumerate()
            .flat_map(|(i, ps)| {
                (0..ps.len())
                    .filter(move |&k| ps[k].is_none())
                    .map(move |k| (i, k))
            })
            .collect();
        let total = jobs.len();
        let done = Mutex::new(Vec::new());
        let count = std::sync::atomic::AtomicUsize::new(0);
        let plan = &self.plan;
        let path = &self.cni_path;
        let r = parallel(&jobs, build::PARALLEL, |&(i, k)| {
            check_interrupt()?;
            let n = &plan.nodes[i];
            let container = format!("{}-{i}-{k}", plan.id);
            let a = cni::add(&n.ns, confs[i].0.clone(), &n.pods[k], &container, path)?;
            if let Ok(mut d) = done.lock() {
                d.push((i, k, a));
            }
            progress(
                "pods attached",
                count.fetch_add(1, Ordering::Relaxed) + 1,
                total,
            );
            Ok(())
        });
        for (i, k, a) in done.into_inner().unwrap_or_default() {
            self.pods[i][k] = Some(a);
        }
        r?;
        // Each node knows its pods' MACs as permanent neighbours (the shared neighbour
        // table, `topology::neighbour_entries`).
        let pods = &self.pods;
        let idx: Vec<usize> = (0..pods.len()).collect();
        parallel(&idx, build::PARALLEL, |&i| {
            let mut text = String::new();
            for a in pods[i].iter().flatten() {
                if let (Some(mac), Some(br)) = (&a.mac, &a.bridge) {
                    text.push_str(&format!(
                        "neigh replace {} lladdr {mac} dev {br} nud permanent\n",
                        a.address.addr()
                    ));
                }
            }
            if text.is_empty() {
                return Ok(());
            }
            build::ip_batch(&plan.nodes[i].ns, &text)
        })?;
        for (i, (_, v)) in confs.into_iter().enumerate() {
            self.attached_with[i] = Some(v);
        }
        Ok(())
    }

    /// The endpoints as they are now: pods (attached), nodes, the outside host and its
    /// `except` addresses; and the sockets receiving at them.
    fn endpoints(&self) -> (Vec<Endpoint>, Vec<probe::SocketSpec>) {
        let mut eps = Vec::new();
        let mut socks = Vec::new();
        let run = self.runs;
        let mut sock = |ns: &str, ip: Ipv4Addr, kind: u16| {
            socks.push(probe::SocketSpec {
                ns: ns.to_string(),
                bind: SocketAddrV4::new(ip, probe::port(run, kind)),
            });
            socks.len() - 1
        };
        for (i, n) in self.plan.nodes.iter().enumerate() {
            for (k, a) in self.pods[i].iter().enumerate() {
                if let Some(a) = a {
                    let ip = cni::pod_ip(a);
                    eps.push(Endpoint {
                        label: format!("{}/p{}", n.name, k + 1),
                        kind: EndpointKind::Pod { node: i },
                        address: ip,
                        socket: sock(&n.pods[k], ip, 0),
                    });
                }
            }
        }
        for (i, n) in self.plan.nodes.iter().enumerate() {
            let ip = n.address.addr();
            eps.push(Endpoint {
                label: n.name.clone(),
                kind: EndpointKind::Node { node: i },
                address: ip,
                socket: sock(&n.ns, ip, 1),
            });
        }
        let o = &self.plan.outside;
        let s = sock(&o.ns, Ipv4Addr::UNSPECIFIED, 2);
        eps.push(Endpoint {
            label: "outside".into(),
            kind: EndpointKind::Outside,
            address: o.address.addr(),
            socket: s,
        });
        for (range, addr) in &o.except {
            eps.push(Endpoint {
                label: format!("outside[{range}]"),
                kind: EndpointKind::Except { range: *range },
                address: *addr,
                socket: s,
            });
        }
        (eps, socks)
    }

    /// Probes every pair and returns the phase's result (checks are evaluated from it).
    pub fn probe(
        &mut self,
        cluster: &Cluster,
        file: &Path,
        progress: Progress<'_>,
    ) -> Result<Phase, LabError> {
        let start = Instant::now();
        self.runs += 1;
        let (eps, specs) = self.endpoints();
        let socks = probe::open(&specs)?;
        // The configuration's own view (subnets, pod MTU): same machines, maybe not the
        // configuration the lab was built with.
        let plan = LabPlan::new(cluster, &self.plan.id, self.plan.pods_per_node)?;
        let pairs = expect::pairs(&plan, cluster, &eps);
        // The MTU the pods were given (their conflist's), which is the cluster's pod MTU
        // unless someone changed the plan.
        let mtu = self
            .attached_with
            .iter()
            .flatten()
            .flat_map(|c| c["plugins"].as_array().into_iter().flatten())
            .filter_map(|p| p["mtu"].as_u64())
            .filter_map(|m| u32::try_from(m).ok())
            .max()
            .unwrap_or(plan.pod_mtu);
        let small = 16;
        let big = (mtu as usize).saturating_sub(probe::HEADERS).max(small);
        let mut dgrams = Vec::with_capacity(pairs.len() * 2);
        for p in &pairs {
            let (src, dst) = (&eps[p.src], &eps[p.dst]);
            for size in [small, big] {
                dgrams.push(probe::Datagram {
                    from: src.socket,
                    to: SocketAddrV4::new(dst.address, specs[dst.socket].bind.port()),
                    at: dst.socket,
                    size,
                });
            }
        }
        let nonce = std::process::id().rotate_left(16) ^ self.runs;
        let out = probe::run(&socks, &dgrams, nonce, &self.probe, &|d, t| {
            progress("probes", d, t)
        });
        check_interrupt()?;
        let seen = out
            .chunks(2)
            .map(|c| Seen {
                small: c.first().and_then(|o| o.seen),
                mtu: c.get(1).and_then(|o| o.seen),
                error: c.iter().rev().find_map(|o| o.error.clone()),
            })
            .collect();
        Ok(Phase {
            file: file.display().to_string(),
            nodes: self.plan.nodes.iter().map(|n| n.name.clone()).collect(),
            segments: self
                .plan
                .nodes
                .iter()
                .map(|n| self.plan.switches[n.segment].net.to_string())
                .collect(),
            pod_mtu: mtu,
            endpoints: eps,
            pairs,
            seen,
            leftovers: Vec::new(),
            timings: Timings {
                probe: start.elapsed(),
                ..Timings::default()
            },
        })
    }

    /// What each node still has that `plans` do not want (or lacks): must be empty after
    /// converging on them.
    pub fn leftovers(&self, plans: &[NodePlan]) -> Result<Vec<(String, Vec<String>)>, LabError> {
        let out = Mutex::new(Vec::new());
        let idx: Vec<usize> = (0..plans.len()).collect();
        parallel(&idx, build::PARALLEL, |&i| {
            let root = self.node_root(i);
            let l = converge::leftovers(&self.node_ref(i, &root), &plans[i])?;
            if let Ok(mut o) = out.lock() {
                o.push((i, self.plan.nodes[i].name.clone(), l));
            }
            Ok(())
        })?;
        let mut v = out.into_inner().unwrap_or_default();
        v.sort_by_key(|x| x.0);
        Ok(v.into_iter().map(|(_, n, l)| (n, l)).collect())
    }

    /// Leaves the lab up: its namespaces stay, its state file says so, `podnet lab down`
    /// removes it.
    pub fn keep(mut self) -> Result<String, LabError> {
        let mut s = state::read(&self.dir)?;
        s.kept = true;
        s.pid = 0;
        state::write(&self.dir, &s)?;
        self.kept = true;
        Ok(self.plan.id.clone())
    }

    /// Removes the pods (CNI `DEL`), then every namespace and the state directory.
    pub fn down(mut self) -> Result<Duration, LabError> {
        let start = Instant::now();
        let jobs: Vec<(usize, usize)> = self
            .pods
            .iter()
            .enumerate()
            .flat_map(|(i, ps)| (0..ps.len()).map(move |k| (i, k)))
            .collect();
        let del = self.del(&jobs);
        let rm = self.remove();
        self.kept = true; // nothing left for Drop
        del.and(rm)?;
        Ok(start.elapsed())
    }

    /// Deletes every namespace made (in reverse) and the state directory.
    fn remove(&self) -> Result<(), LabError> {
        let made: Vec<String> = self
            .made
            .lock()
            .map(|m| m.iter().rev().cloned().collect())
            .unwrap_or_default();
        let r = parallel(&made, build::PARALLEL, |n| {
            netns::delete(n).map_err(|e| LabError::io(format!("deleting namespace {n}"), e))
        });
        if let Ok(mut m) = self.made.lock() {
            m.clear();
        }
        r?;
        state::remove(&self.dir)
    }
}

impl Drop for Lab {
    fn drop(&mut self) {
        if !self.kept
            && let Err(e) = self.remove()
        {
            eprintln!(
                "podnet lab: cleanup of lab {} incomplete: {e}",
                self.plan.id
            );
        }
    }
}

/// Stops a converger when dropped.
struct StopFirst<'a>(&'a dyn Converge);

impl Drop for StopFirst<'_> {
    fn drop(&mut self) {
        self.0.stop();
    }
}

/// One configuration of a run: the file, its checked cluster and every node's plan (in
/// file order).
#[derive(Clone, Copy)]
pub struct Config<'a> {
    pub file: &'a Path,
    pub cluster: &'a Cluster,
    pub plans: &'a [NodePlan],
}

/// What to do with the lab after the last configuration was probed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Afterwards {
    /// Remove everything (pods with CNI `DEL`, then every namespace and file).
    Down,
    /// Leave it up for `podnet lab down`.
    Keep,
}

/// The whole `podnet lab`: build the lab of `first`, converge, attach pods, probe; then for
/// each of `then`, move every node to it (pods whose conflist changes re-attached), check
/// that nothing of the earlier configuration remains, probe again; finally remove the lab
/// or keep it. Errors (not failed checks) end the run; the lab is removed then too.
pub fn run(
    first: Config<'_>,
    then: &[Config<'_>],
    opts: &LabOptions,
    afterwards: Afterwards,
    conv: &dyn Converge,
    progress: Progress<'_>,
) -> Result<LabResult, LabError> {
    let base = LabPlan::new(first.cluster, "check", opts.pods)?;
    for t in then {
        base.same_machines(t.cluster)?;
    }
    let start = Instant::now();
    let mut lab = Lab::up(first.cluster, first.plans, opts, progress)?;
    // Declared after the lab, so dropped before it: whatever keeps the nodes converged
    // stops before anything of the lab is removed, on every path out of here.
    let _stop = StopFirst(conv);
    let bring_up = start.elapsed();
    let mut phases = vec![lab.phase(first, conv, progress, false)?];
    for t in then {
        phases.push(lab.phase(*t, conv, progress, true)?);
    }
    let id = lab.id().to_string();
    conv.stop();
    let (kept, down) = match afterwards {
        Afterwards::Keep => (Some(lab.keep()?), None),
        Afterwards::Down => (None, Some(lab.down()?)),
    };
    Ok(LabResult {
        lab: id,
        cluster: first.cluster.name.value.clone(),
        phases,
        bring_up,
        down,
        kept,
    })
}

impl Lab {
    /// One configuration: (after a change: pods whose conflist changes removed) converge,
    /// (after a change: leftovers) attach, probe.
    pub fn phase(
        &mut self,
        cfg: Config<'_>,
        conv: &dyn Converge,
        progress: Progress<'_>,
        change: bool,
    ) -> Result<Phase, LabError> {
        if change {
            self.detach_changed(cfg.plans)?;
        }
        let t = Instant::now();
        self.converge(conv, cfg.file, cfg.plans, progress)?;
        let converge = t.elapsed();
        let leftovers = if change {
            self.leftovers(cfg.plans)?
        } else {
            Vec::new()
        };
        let t = Instant::now();
        self.attach(cfg.plans, progress)?;
        let pods = t.elapsed();
        let mut p = self.probe(cfg.cluster, cfg.file, progress)?;
        p.leftovers = leftovers;
        p.timings.converge = converge;
        p.timings.pods = pods;
        Ok(p)
    }
}

/// Removes kept (or abandoned) labs recorded under `state_dir`: `id`, or every lab whose
/// process is gone. Returns the ids removed.
pub fn down(state_dir: &Path, id: Option<&str>) -> Result<Vec<String>, LabError> {
    state::down(state_dir, id)
}
