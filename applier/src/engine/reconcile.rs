//! `Engine::reconcile`: check everything → journal ahead → link stage → execute → observe
//! and diff again (a few rounds while only retryable errors occur) → verify. The firewall
//! converges on its own thread meanwhile, after every check passed.

use std::collections::BTreeSet;
use std::path::Path;
use std::time::{Duration, Instant};

use podnet_compiler::plan::{FirewallDriver, NodePlan};

use super::{Engine, EngineError, FirewallMode, preflight};
use crate::adopt::Adopted;
use crate::diff::{Diff, Observed, Op, diff};
use crate::execute::{self, Failure};
use crate::firewall::{Exec, FirewallReport, FirewallSpec, IptablesMode};
use crate::journal::{self, Journal, PriorFile};
use crate::kernel::link::MARKER;
use crate::kernel::nl::NlSocket;
use crate::observe::{self, Scope};

/// How often observe → diff → execute runs before giving up on retryable errors.
const ROUNDS: usize = 3;

/// What a reconcile did.
#[derive(Debug)]
pub struct Reconciled {
    /// With `--adopt`: the foreign objects taken over in place by this call.
    pub adopted: Adopted,
    /// The first diff: what was out of date (rendered with the names known then).
    pub changes: Diff,
    /// Operations performed (or found already done).
    pub done: usize,
    pub failures: Vec<Failure>,
    pub firewall: Option<FirewallReport>,
    /// What still differs after the last round (empty when converged).
    pub remaining: Diff,
    /// The last observation of the kernel objects (what `remaining` was computed from):
    /// `watch` keeps it as its picture of the node and updates it from kernel events.
    pub observed: Observed,
    pub elapsed: Duration,
    /// What is not a failure but wants attention (a flanneld still running here).
    pub warnings: Vec<String>,
}

impl Reconciled {
    pub fn converged(&self) -> bool {
        self.failures.is_empty() && self.remaining.is_empty()
    }
}

impl Engine {
    /// Converges the node on `plan` (as compiled: paths not rooted). `early` is a kernel
    /// observation made by [`Engine::observe_kernel`] under this engine's lock (used when it
    /// covers the plan's route protocol). Nothing is written unless every check passes.
    pub fn reconcile(
        &mut self,
        plan: &NodePlan,
        early: Option<Observed>,
    ) -> Result<Reconciled, EngineError> {
        // Until this call has verified the node, it is not known to be on any plan.
        self.applied = None;
        preflight::validate(plan)?;
        let rooted = self.rooted(plan);
        preflight::confined(&rooted, self.root())?;
        let firewall = self.firewall;
        let adopt = self.adopt;
        if firewall == FirewallMode::Managed
            && let Some(t) = preflight::missing_tool(plan.firewall.driver)
        {
            return Err(EngineError::MissingTool(t));
        }
        let root = self.root.clone();
        let loaded = self.journal.clone();
        let target = self.target.clone();
        let announce = self.announce.clone();
        let result = target.run(|| {
            run(
                &rooted,
                root.as_deref(),
                loaded.as_ref(),
                firewall,
                adopt,
                early,
                announce.as_deref(),
            )
        })?;
        let (reconciled, journal) = result?;
        self.journal = journal;
        self.applied = reconciled.converged().then(|| journal::plan_hash(plan));
        Ok(reconciled)
    }
}

/// The whole reconcile, inside the target namespace. Returns the journal as left.
fn run(
    plan: &NodePlan,
    root: Option<&Path>,
    loaded: Option<&Journal>,
    firewall: FirewallMode,
    adopt: bool,
    early: Option<Observed>,
    announce: Option<&(dyn Fn(&crate::diff::Diff) + Send + Sync)>,
) -> Result<(Reconciled, Option<Journal>), EngineError> {
    let start = Instant::now();
    let mut j = loaded.cloned().unwrap_or_default();
    let mut sock = NlSocket::new()?;
    preflight::identity(&mut sock, plan)?;
    let observe = |sock: &mut NlSocket, j: &Journal| -> Result<Observed, EngineError> {
        Ok(observe::observe(
            sock,
            Some(plan),
            Scope { journal: Some(j) },
            plan.route_protocol,
        )?)
    };
    let mut obs = match early {
        Some(mut k) if k.protocols == observe::protocols(Some(plan), loaded) => {
            observe::observe_local(&mut k, Some(plan), Scope { journal: Some(&j) })?;
            k
        }
        _ => observe(&mut sock, &j)?,
    };
    // Without a journal, routes of the plan's protocol are not known to be podnet's.
    obs.journaled = loaded.is_some();
    // `--adopt`: what matches the plan is podnet's from here on. Its prior state enters
    // the journal with the write-ahead save below, after every check and before any write.
    let mut adopted = Adopted::default();
    if adopt {
        let (found, with, again) =
            super::adoption(&mut sock, plan, root, manage_fw_of(firewall), Some(&j), obs)?;
        (adopted, obs) = (found, again);
        j.adopted = with.adopted;
        for f in &adopted.own_files {
            j.files.entry(f.clone()).or_default();
        }
    }
    let mut d = diff(plan, &obs);
    let files = super::takeover::foreign_files(plan, root)?;
    d.conflicts
        .extend(super::takeover::conflicts(&files, adopt));
    if !d.conflicts.is_empty() {
        return Err(EngineError::Conflicts(d.conflicts.clone()));
    }
    if let Some(f) = announce {
        f(&d);
    }
    let spec = FirewallSpec::from(&plan.firewall);
    let manage_fw = firewall == FirewallMode::Managed;
    let other = match plan.firewall.driver {
        FirewallDriver::Nftables => FirewallDriver::Iptables,
        FirewallDriver::Iptables => FirewallDriver::Nftables,
    };
    let other_may_exist = loaded.is_none() || j.firewalls.contains(&other);
    let tools = crate::firewall::Firewall::new(Exec::Host);
    // Write-ahead, like every object podnet creates: node, protocol, firewall driver, and
    // the nft tables the iptables tools are about to create.
    j.cluster.clone_from(&plan.cluster);
    j.node.clone_from(&plan.node);
    j.protocols.insert(plan.route_protocol);
    if manage_fw {
        j.firewalls.insert(plan.firewall.driver);
        if plan.firewall.driver == FirewallDriver::Iptables
            && tools.iptables_mode()? == IptablesMode::Nft
        {
            for t in crate::firewall::iptables::TOOL_TABLES {
                if !j.tool_tables.contains(*t) && !nft_table_exists(&Exec::Host, t) {
                    j.tool_tables.insert((*t).to_string());
                }
            }
        }
    }
    if loaded != Some(&j) {
        j.save(root)?;
    }
    std::thread::scope(|scope| {
        let hash = scope.spawn(|| journal::plan_hash(plan));
        let fw = manage_fw.then(|| scope.spawn(|| tools.apply_known(&spec, other_may_exist)));
        let kernel = converge(plan, &mut sock, &mut j, d, obs, root, &observe);
        let fw = match fw.map(|t| t.join()) {
            None => None,
            Some(Ok(r)) => Some(r?),
            Some(Err(_)) => return Err(io_other("the firewall thread panicked")),
        };
        let (changes, done, failures, remaining, observed) = kernel?;
        if failures.is_empty() && remaining.is_empty() {
            // podnet's rules and files are in place: flannel's adopted ones go (their
            // prior state is in the journal since the write-ahead save).
            if manage_fw && !adopted.firewall.is_empty() {
                crate::firewall::flannel::remove(&Exec::Host, &adopted.firewall)?;
            }
            super::takeover::remove_files(&adopted.files)?;
            commit(&mut j, plan);
            if manage_fw {
                j.firewalls = BTreeSet::from([plan.firewall.driver]);
            }
            let hash = hash
                .join()
                .map_err(|_| io_other("the plan hashing thread panicked"))?;
            if j.plan_hash.as_deref() != Some(hash.as_str()) {
                let bytes = serde_json::to_vec(plan).map_err(std::io::Error::other)?;
                j.save_plan(root, &bytes, &hash)?;
            }
            if loaded != Some(&j) {
                j.save(root)?;
            }
        }
        Ok((
            Reconciled {
                adopted,
                changes,
                done,
                failures,
                firewall: fw,
                remaining,
                observed,
                elapsed: start.elapsed(),
                warnings: super::takeover::warnings(),
            },
            Some(j),
        ))
    })
}

fn manage_fw_of(mode: FirewallMode) -> bool {
    mode == FirewallMode::Managed
}

fn io_other(msg: &str) -> EngineError {
    EngineError::Io(std::io::Error::other(msg.to_string()))
}

/// Whether nftables table `family name` (e.g. `ip nat`) exists in `exec`'s namespace.
pub(super) fn nft_table_exists(exec: &Exec, table: &str) -> bool {
    let mut args = vec!["list", "table"];
    args.extend(table.split_whitespace());
    exec.output("nft", &args, None)
        .is_ok_and(|o| o.status.success())
}

type Converged = (Diff, usize, Vec<Failure>, Diff, Observed);

/// The kernel part: execute, observe again and diff, for up to `ROUNDS` rounds while only
/// retryable errors occur. Returns (first diff, operations done, failures, what still
/// differs, the fresh observation it was computed from).
fn converge(
    plan: &NodePlan,
    sock: &mut NlSocket,
    j: &mut Journal,
    mut d: Diff,
    mut obs: Observed,
    root: Option<&Path>,
    observe: &dyn Fn(&mut NlSocket, &Journal) -> Result<Observed, EngineError>,
) -> Result<Converged, EngineError> {
    let changes = d.clone();
    let mut done = 0;
    let mut failures = Vec::new();
    for _ in 0..ROUNDS {
        if d.ops.is_empty() && !symlinks_pending(j, plan) {
            break;
        }
        // Links first: the rest of the diff needs their real indices.
        let stage = d.link_stage();
        if stage > 0 {
            let creating = record_links(j, &d, root)?;
            record_priors(j, &d, &obs, root, false)?;
            let r = execute::execute(sock, &d, &d.ops[..stage])?;
            done += r.done;
            obs = observe(sock, j)?;
            if forget_unmade_links(j, &obs, &creating, root)? {
                obs = observe(sock, j)?;
            }
            d = diff(plan, &obs);
            if !r.failures.is_empty() {
                failures = r.failures;
                break;
            }
            if !d.conflicts.is_empty() {
                return Err(EngineError::Conflicts(d.conflicts.clone()));
            }
        }
        record_priors(j, &d, &obs, root, true)?;
        let r = execute::execute(sock, &d, &d.ops)?;
        done += r.done;
        done += restore_symlinks(j, plan, &mut failures);
        let retry = !r.failures.is_empty() && r.failures.iter().all(|f| f.retryable);
        failures.extend(r.failures);
        obs = observe(sock, j)?;
        d = diff(plan, &obs);
        if !retry {
            break;
        }
        failures.clear();
    }
    Ok((changes, done, failures, d, obs))
}

/// Write-ahead: names (with kinds) the links the link stage is about to create; returns
/// the names.
fn record_links(
    j: &mut Journal,
    d: &Diff,
    root: Option<&Path>,
) -> Result<BTreeSet<String>, EngineError> {
    let mut creating = BTreeSet::new();
    for op in &d.ops {
        if let Op::LinkCreate { link, .. } = op {
            creating.insert(link.name.clone());
            j.links.insert(link.name.clone(), link.kind);
            j.creating.insert(link.name.clone());
        }
    }
    if !creating.is_empty() {
        j.save(root)?;
    }
    Ok(creating)
}

/// After the link stage: a name podnet was creating whose link does not exist, or exists
/// without podnet's marker (its create failed, e.g. EEXIST because someone else made it in
/// the meantime), leaves the journal, so that link is never mistaken for podnet's.
/// Returns whether the journal changed.
fn forget_unmade_links(
    j: &mut Journal,
    obs: &Observed,
    creating: &BTreeSet<String>,
    root: Option<&Path>,
) -> Result<bool, EngineError> {
    let before = j.links.len();
    j.links.retain(|name, _| {
        let link = obs.links.iter().find(|l| &l.name == name);
        match link {
            None => false,
            Some(l) => !creating.contains(name) || l.alias.as_deref() == Some(MARKER),
        }
    });
    // Every create of this stage has had its result: the made links carry the marker.
    let was_creating = j.creating.len();
    j.creating.retain(|n| !creating.contains(n));
    let changed = j.links.len() != before;
    if changed || j.creating.len() != was_creating {
        j.save(root)?;
    }
    Ok(changed)
}

/// Write-ahead, right before the writes: the value each sysctl had and (with `files`) what
/// each file was before podnet first changed it (content, mode, or the symbolic link it
/// was), and the directories its write is about to create.
fn record_priors(
    j: &mut Journal,
    d: &Diff,
    obs: &Observed,
    root: Option<&Path>,
    files: bool,
) -> Result<(), EngineError> {
    let mut changed = false;
    for op in &d.ops {
        match op {
            Op::Sysctl {
                key,
                was: Some(was),
                ..
            } if !j.sysctls.contains_key(key) => {
                j.sysctls.insert(key.clone(), was.clone());
                changed = true;
            }
            Op::FileWrite(f) if files => {
                let path = Path::new(&f.path);
                if let Some(parent) = path.parent() {
                    for dir in journal::missing_dirs(parent) {
                        changed |= j.dirs.insert(dir);
                    }
                }
                if j.files.contains_key(&f.path) {
                    continue;
                }
                let mut prior = match obs.files.get(&f.path) {
                    Some(Some(s)) => PriorFile {
                        mode: Some(s.mode),
                        content: Some(s.content.clone()),
                        symlink: None,
                    },
                    _ => PriorFile::default(),
                };
                prior.symlink = journal::symlink_target(path)?;
                j.files.insert(f.path.clone(), prior);
                changed = true;
            }
            _ => {}
        }
    }
    if changed {
        j.save(root)?;
    }
    Ok(())
}

/// Files that left the plan and were symbolic links before podnet: whether one is not
/// that link again yet.
fn symlinks_pending(j: &Journal, plan: &NodePlan) -> bool {
    j.files.iter().any(|(path, prior)| {
        prior.symlink.as_ref().is_some_and(|target| {
            !plan.files.iter().any(|f| &f.path == path)
                && journal::symlink_target(Path::new(path))
                    .ok()
                    .flatten()
                    .as_ref()
                    != Some(target)
        })
    })
}

/// Puts back the symbolic links of files that left the plan (the diff restores content;
/// the link itself is the engine's to restore). Returns how many were restored.
fn restore_symlinks(j: &Journal, plan: &NodePlan, failures: &mut Vec<Failure>) -> usize {
    let mut done = 0;
    for (path, prior) in &j.files {
        let Some(target) = &prior.symlink else {
            continue;
        };
        if plan.files.iter().any(|f| &f.path == path) {
            continue;
        }
        let p = Path::new(path);
        if journal::symlink_target(p).ok().flatten().as_ref() == Some(target) {
            continue;
        }
        match journal::restore_symlink(p, target) {
            Ok(()) => done += 1,
            Err(e) => failures.push(Failure {
                op: format!("~ file {path} (symbolic link to {})", target.display()),
                error: execute::FailureError::Io(e.to_string()),
                retryable: false,
            }),
        }
    }
    done
}

/// After a verified apply: the journal describes exactly the plan.
fn commit(j: &mut Journal, plan: &NodePlan) {
    j.protocols = BTreeSet::from([plan.route_protocol]);
    j.links = plan
        .links
        .iter()
        .map(|l| (l.name.clone(), l.kind))
        .collect();
    let planned: BTreeSet<&str> = plan.files.iter().map(|f| f.path.as_str()).collect();
    // Files that left the plan have been restored or removed by now.
    j.files.retain(|p, _| planned.contains(p.as_str()));
}
