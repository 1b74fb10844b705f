//! Convergence: observe → diff → execute → verify for one node's plan, and its inverse,
//! teardown. The journal is written ahead of every change that creates something, so an
//! interrupted apply (even `kill -9`) leaves only objects the next run recognises as
//! podnet's. Also what `plan --live` and `status` use to compare a plan with the kernel.

use std::collections::BTreeSet;
use std::path::Path;
use std::time::{Duration, Instant};

use anyhow::Context as _;
use podnet_compiler::lower::defaults::ROUTE_PROTOCOL;
use podnet_compiler::plan::{Firewall as PlanFirewall, FirewallDriver, NodePlan};

use crate::diff::{Diff, Observed, Op, diff};
use crate::execute::{self, Failure};
use crate::firewall::{Exec, Firewall, FirewallReport, FirewallSpec};
use crate::journal::{self, Journal, PriorFile};
use crate::kernel::nl::NlSocket;
use crate::observe::{self, Scope};

/// How often observe → diff → execute runs before giving up on retryable errors.
const ROUNDS: usize = 3;

/// Options shared by apply, plan --live, status and teardown.
#[derive(Clone, Copy, Debug, Default)]
pub struct Options<'a> {
    /// Prefix of every file path and of the journal.
    pub root: Option<&'a Path>,
    /// Leave the firewall alone (the library's callers that test kernel state only).
    pub skip_firewall: bool,
}

/// What an apply did.
#[derive(Debug)]
pub struct Applied {
    /// The first diff: what was out of date (rendered with the names known then).
    pub changes: Diff,
    /// Operations performed (or found already done).
    pub done: usize,
    pub failures: Vec<Failure>,
    pub firewall: Option<FirewallReport>,
    /// What still differs after the last round (empty when converged).
    pub remaining: Diff,
    pub elapsed: Duration,
}

impl Applied {
    pub fn converged(&self) -> bool {
        self.failures.is_empty() && self.remaining.is_empty()
    }
}

/// A plan that wants nothing: the diff against it removes everything podnet owns.
pub fn empty_plan(protocol: u8) -> NodePlan {
    NodePlan {
        format_version: podnet_compiler::plan::FORMAT_VERSION,
        cluster: String::new(),
        node: String::new(),
        underlay: podnet_compiler::plan::Underlay {
            interface: String::new(),
            address: ipnet::Ipv4Net::default(),
        },
        route_protocol: protocol,
        sysctls: Vec::new(),
        links: Vec::new(),
        addresses: Vec::new(),
        routes: Vec::new(),
        neighbours: Vec::new(),
        fdb: Vec::new(),
        firewall: PlanFirewall {
            driver: FirewallDriver::Nftables,
            masquerade: Vec::new(),
            forward_accept: Vec::new(),
        },
        files: Vec::new(),
    }
}

/// Compares `plan` (file paths already rooted) with the kernel: the `plan --live` diff.
pub fn live_diff(plan: &NodePlan, opts: Options<'_>) -> anyhow::Result<Diff> {
    let j = Journal::load(opts.root)?;
    let mut sock = NlSocket::new().context("opening a netlink socket")?;
    let obs = observe::observe(
        &mut sock,
        Some(plan),
        Scope {
            journal: j.as_ref(),
        },
        plan.route_protocol,
    )
    .context("reading kernel state")?;
    Ok(diff(plan, &obs))
}

/// Converges the node on `plan` (file paths already rooted). The firewall (child
/// processes) and the hashing of the plan for the journal run on their own threads while
/// the kernel objects are observed, diffed and changed.
pub fn apply(plan: &NodePlan, opts: Options<'_>) -> anyhow::Result<Applied> {
    let prepared = prepare(opts.root)?;
    apply_prepared(plan, opts, prepared, None)
}

/// The applier lock (held until dropped) and the journal as found.
pub struct Prepared {
    _lock: journal::Lock,
    pub journal: Option<Journal>,
}

/// Takes the applier lock and reads the journal: the first step of every apply.
pub fn prepare(root: Option<&Path>) -> anyhow::Result<Prepared> {
    let lock = journal::lock(root)?;
    Ok(Prepared {
        _lock: lock,
        journal: Journal::load(root)?,
    })
}

/// The route protocols a kernel observation made before the plan is known must cover.
pub fn prepared_protocols(p: &Prepared) -> BTreeSet<u8> {
    let mut set = observe::protocols(None, p.journal.as_ref());
    if set.is_empty() {
        set.insert(ROUTE_PROTOCOL);
    }
    set
}

/// [`apply`] with the lock already held; `kernel` is an observation made under that lock
/// while the plan was compiled (used if it covers the plan's route protocol).
pub fn apply_prepared(
    plan: &NodePlan,
    opts: Options<'_>,
    prepared: Prepared,
    kernel: Option<Observed>,
) -> anyhow::Result<Applied> {
    let start = Instant::now();
    let loaded = prepared.journal.clone();
    let mut j = loaded.clone().unwrap_or_default();
    let mut sock = NlSocket::new().context("opening a netlink socket")?;
    let observe = |sock: &mut NlSocket, j: &Journal| {
        observe::observe(
            sock,
            Some(plan),
            Scope { journal: Some(j) },
            plan.route_protocol,
        )
        .context("reading kernel state")
    };
    let obs = match kernel {
        Some(mut k) if k.protocols == observe::protocols(Some(plan), loaded.as_ref()) => {
            observe::observe_local(&mut k, Some(plan), Scope { journal: Some(&j) })
                .context("reading sysctls and files")?;
            k
        }
        _ => observe(&mut sock, &j)?,
    };
    // Without a journal, routes of the plan's protocol are not known to be podnet's.
    let mut obs = obs;
    obs.journaled = loaded.is_some();
    let d = diff(plan, &obs);
    if !d.conflicts.is_empty() {
        anyhow::bail!("nothing was changed: {}", d.conflict_summary());
    }
    let spec = FirewallSpec::from(&plan.firewall);
    let other_may_exist =
        loaded.is_none() || j.firewalls.contains(&spec.driver.other().to_string());
    // Write-ahead, like every object podnet creates: its node, protocol and firewall driver.
    j.cluster.clone_from(&plan.cluster);
    j.node.clone_from(&plan.node);
    j.protocols.insert(plan.route_protocol);
    if !opts.skip_firewall {
        j.firewalls.insert(spec.driver.to_string());
    }
    if loaded.as_ref() != Some(&j) {
        j.save(opts.root)?;
    }
    std::thread::scope(|scope| {
        let hash = scope.spawn(|| journal::plan_hash(plan));
        let firewall = (!opts.skip_firewall).then(|| {
            scope.spawn(|| {
                Firewall::new(Exec::Host)
                    .apply_known(&spec, other_may_exist)
                    .context("applying the firewall")
            })
        });
        let kernel = converge(plan, &mut sock, &mut j, d, obs, opts.root, &observe);
        let firewall = match firewall.map(|t| t.join()) {
            None => None,
            Some(Ok(r)) => Some(r?),
            Some(Err(_)) => anyhow::bail!("the firewall thread panicked"),
        };
        let (changes, done, failures, remaining) = kernel?;
        if failures.is_empty() && remaining.is_empty() {
            commit(&mut j, plan);
            if !opts.skip_firewall {
                j.firewalls = std::collections::BTreeSet::from([spec.driver.to_string()]);
            }
            let hash = hash
                .join()
                .map_err(|_| anyhow::anyhow!("the plan hashing thread panicked"))?;
            if j.plan_hash.as_deref() != Some(hash.as_str()) {
                let bytes = serde_json::to_vec(plan).context("encoding the plan")?;
                j.save_plan(opts.root, &bytes, &hash)?;
            }
            if loaded.as_ref() != Some(&j) {
                j.save(opts.root)?;
            }
        }
        Ok(Applied {
            changes,
            done,
            failures,
            firewall,
            remaining,
            elapsed: start.elapsed(),
        })
    })
}

type Converged = (Diff, usize, Vec<Failure>, Diff);

/// The kernel part of apply: execute, observe again and diff, for up to `ROUNDS` rounds
/// while only retryable errors occur. Returns (first diff, operations done, failures,
/// what still differs, from a fresh observation).
fn converge(
    plan: &NodePlan,
    sock: &mut NlSocket,
    j: &mut Journal,
    mut d: Diff,
    mut obs: Observed,
    root: Option<&Path>,
    observe: &dyn Fn(&mut NlSocket, &Journal) -> anyhow::Result<Observed>,
) -> anyhow::Result<Converged> {
    let changes = d.clone();
    let mut done = 0;
    let mut failures = Vec::new();
    for _ in 0..ROUNDS {
        if d.ops.is_empty() {
            break;
        }
        // Links first: the rest of the diff needs their real indices.
        let stage = d.link_stage();
        if stage > 0 {
            record_links(j, &d, root)?;
            record_priors(j, &d, &obs, root, false)?;
            let r = execute::execute(sock, &d, &d.ops[..stage])?;
            done += r.done;
            // A name someone else took since the observation is not podnet's link.
            let before = j.links.len();
            j.links.retain(|name| !r.existing_links.contains(name));
            if j.links.len() != before {
                j.save(root)?;
            }
            obs = observe(sock, j)?;
            forget_missing_links(j, &obs, root)?;
            d = diff(plan, &obs);
            if !r.failures.is_empty() {
                failures = r.failures;
                break;
            }
            if !d.conflicts.is_empty() {
                anyhow::bail!("{}", d.conflict_summary());
            }
        }
        record_priors(j, &d, &obs, root, true)?;
        let r = execute::execute(sock, &d, &d.ops)?;
        done += r.done;
        let retry = !r.failures.is_empty() && r.failures.iter().all(|f| f.retryable);
        failures = r.failures;
        obs = observe(sock, j)?;
        d = diff(plan, &obs);
        if !retry {
            break;
        }
    }
    Ok((changes, done, failures, d))
}

/// Write-ahead: names the links the link stage is about to create.
fn record_links(j: &mut Journal, d: &Diff, root: Option<&Path>) -> anyhow::Result<()> {
    let mut changed = false;
    for op in &d.ops {
        if let Op::LinkCreate { link, .. } = op {
            changed |= j.links.insert(link.name.clone());
        }
    }
    if changed {
        j.save(root)?;
    }
    Ok(())
}

/// Drops journal names of links that do not exist (a create that failed or never ran), so
/// a link someone else creates later under that name is never mistaken for podnet's.
fn forget_missing_links(
    j: &mut Journal,
    obs: &Observed,
    root: Option<&Path>,
) -> anyhow::Result<()> {
    let before = j.links.len();
    j.links
        .retain(|name| obs.links.iter().any(|l| &l.name == name));
    if j.links.len() != before {
        j.save(root)?;
    }
    Ok(())
}

/// Write-ahead, right before the writes: the value each sysctl had and (with `files`) the
/// content each file had before podnet first changed it (as observed just now).
fn record_priors(
    j: &mut Journal,
    d: &Diff,
    obs: &Observed,
    root: Option<&Path>,
    files: bool,
) -> anyhow::Result<()> {
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
            Op::FileWrite(f) if files && !j.files.contains_key(&f.path) => {
                let prior = match obs.files.get(&f.path) {
                    Some(Some(s)) => PriorFile {
                        mode: Some(s.mode),
                        content: Some(s.content.clone()),
                    },
                    _ => PriorFile::default(),
                };
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

/// After a verified apply: the journal describes exactly the plan.
fn commit(j: &mut Journal, plan: &NodePlan) {
    j.protocols = BTreeSet::from([plan.route_protocol]);
    j.links = plan.links.iter().map(|l| l.name.clone()).collect();
    let planned: BTreeSet<&str> = plan.files.iter().map(|f| f.path.as_str()).collect();
    // Files that left the plan have been restored or removed by now.
    j.files.retain(|p, _| planned.contains(p.as_str()));
}

/// What a teardown did.
#[derive(Debug)]
pub struct TornDown {
    /// Everything removed or restored (kernel objects, files, sysctls).
    pub changes: Diff,
    pub failures: Vec<Failure>,
    /// Owned objects still present afterwards (empty on success).
    pub remaining: Diff,
}

/// Removes every object podnet owns and every file it wrote (writing back what a file was
/// before podnet), restores the journal's prior sysctl values, removes the firewall state,
/// and finally the journal.
pub fn teardown(opts: Options<'_>) -> anyhow::Result<TornDown> {
    let _lock = journal::lock(opts.root)?;
    let j = Journal::load(opts.root)?.unwrap_or_default();
    let protocol = j.protocols.iter().next().copied().unwrap_or(ROUTE_PROTOCOL);
    let nothing = empty_plan(protocol);
    let mut sock = NlSocket::new().context("opening a netlink socket")?;
    let scope = Scope { journal: Some(&j) };
    let obs = observe::observe(&mut sock, None, scope, protocol)?;
    let mut d = diff(&nothing, &obs);
    for (key, value) in &j.sysctls {
        d.ops.push(Op::Sysctl {
            key: key.clone(),
            value: value.clone(),
            was: None,
        });
    }
    let changes = d.clone();
    let r = execute::execute(&mut sock, &d, &d.ops)?;
    let mut failures = r.failures;
    if !opts.skip_firewall
        && let Err(e) = Firewall::new(Exec::Host).remove()
    {
        failures.push(Failure {
            op: "- firewall".to_string(),
            error: execute::FailureError::Firewall(e.to_string()),
            retryable: false,
        });
    }
    let remaining = diff(
        &nothing,
        &observe::observe(&mut sock, None, scope, protocol)?,
    );
    if failures.is_empty() && remaining.is_empty() {
        Journal::remove(opts.root)?;
    }
    Ok(TornDown {
        changes,
        failures,
        remaining,
    })
}
