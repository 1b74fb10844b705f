//! Incremental repair, for `watch`: the same diff and execute as [`Engine::reconcile`], on a
//! part of a plan the engine has already checked and applied (the objects a kernel event
//! named) against the caller's up-to-date observation of exactly those objects, so a
//! repair costs what the change costs, not what the cluster costs. Whatever needs more
//! than route, nexthop, neighbour, FDB or address writes (a link to create or change, a
//! conflict, a failed write) is handed back as [`Repaired::escalate`]: the caller then runs
//! a full reconcile. And the firewall on its own, for nftables events.

use std::collections::BTreeSet;
use std::time::{Duration, Instant};

use podnet_compiler::plan::{FirewallDriver, NodePlan};

use super::{Engine, EngineError, FirewallMode, preflight};
use crate::diff::routes::RouteOp;
use crate::diff::{Diff, Observed, Op, diff};
use crate::execute::{self, Failure};
use crate::firewall::{FirewallReport, FirewallSpec};
use crate::journal;
use crate::kernel::nl::NlSocket;

/// What an incremental repair did.
#[derive(Debug)]
pub struct Repaired {
    /// What was out of date among the objects looked at.
    pub changes: Diff,
    pub done: usize,
    pub failures: Vec<Failure>,
    /// Why a full reconcile is needed instead (nothing was written when this is set before
    /// execution; after failed writes it names them).
    pub escalate: Option<String>,
    pub elapsed: Duration,
}

impl Engine {
    /// Converges the objects of `part` — a plan this engine reconciled, cut down to some
    /// routes, neighbours and FDB entries (links and addresses whole, no sysctls or files)
    /// — on `observed`, which must hold the current state of exactly those objects (and
    /// every link). Only the nexthops in `deletable` may be deleted (the caller knows that
    /// no route outside `part` uses them); the next full reconcile removes other stale ones.
    pub fn repair(
        &self,
        part: &NodePlan,
        observed: &Observed,
        deletable: &BTreeSet<u32>,
    ) -> Result<Repaired, EngineError> {
        self.repair_as(None, part, observed, deletable)
    }

    /// [`Engine::repair`]; with `identity`, the plan's node identity is checked (inside the
    /// target, before the first write) too.
    fn repair_as(
        &self,
        identity: Option<&NodePlan>,
        part: &NodePlan,
        observed: &Observed,
        deletable: &BTreeSet<u32>,
    ) -> Result<Repaired, EngineError> {
        let start = Instant::now();
        let mut d = diff(part, observed);
        d.ops.retain(|op| match op {
            Op::Route(RouteOp::NexthopDelete(id)) => deletable.contains(id),
            _ => true,
        });
        let escalate = if !d.conflicts.is_empty() {
            Some(format!("conflict: {}", d.conflict_summary()))
        } else {
            d.ops
                .iter()
                .find(|op| op.is_link())
                .map(|op| format!("link change: {}", d.line(op)))
        };
        if escalate.is_some() || (d.ops.is_empty() && identity.is_none()) {
            return Ok(Repaired {
                changes: d,
                done: 0,
                failures: Vec::new(),
                escalate,
                elapsed: start.elapsed(),
            });
        }
        let report = self
            .target
            .run(|| -> Result<execute::Report, EngineError> {
                let mut sock = NlSocket::new()?;
                if let Some(plan) = identity {
                    preflight::identity(&mut sock, plan)?;
                }
                Ok(execute::execute(&mut sock, &d, &d.ops)?)
            })??;
        let escalate = (!report.failures.is_empty()).then(|| {
            let f: Vec<String> = report
                .failures
                .iter()
                .map(|f| format!("{}: {}", f.op, f.error))
                .collect();
            format!("failed: {}", f.join("; "))
        });
        Ok(Repaired {
            changes: d,
            done: report.done,
            failures: report.failures,
            escalate,
            elapsed: start.elapsed(),
        })
    }

    /// Applies `new` as a change from `old` — the plan this engine last reconciled and
    /// verified in full (or applied this way) — when the two differ in nothing but routes,
    /// neighbours and FDB entries: `part`, `observed` and `deletable` are
    /// [`Engine::repair`]'s, cut out of `new` for the entries that differ (added, changed
    /// and removed ones) and observed for exactly those. Every check a reconcile makes
    /// before writing still comes first (the whole plan's validation, node identity, the
    /// diff's conflicts); then the writes, and the journal records `new` as the plan
    /// applied, as a verified reconcile does (`status` compares against it). A config
    /// change then costs what it changes: no dump of the node, no diff of 60,000 objects.
    ///
    /// `escalate` says why a full reconcile is needed instead (nothing was written when it
    /// is set before execution; after failed writes it names them, and the journal keeps
    /// the old plan).
    pub fn apply_change(
        &mut self,
        old: &NodePlan,
        new: &NodePlan,
        part: &NodePlan,
        observed: &Observed,
        deletable: &BTreeSet<u32>,
    ) -> Result<Repaired, EngineError> {
        let start = Instant::now();
        let not = |why: &str| Repaired {
            changes: Diff::default(),
            done: 0,
            failures: Vec::new(),
            escalate: Some(why.to_string()),
            elapsed: start.elapsed(),
        };
        if !entries_only(old, new) {
            return Ok(not("more than routes, neighbours and FDB entries changed"));
        }
        if self.journal.as_ref().is_none_or(|j| j.plan_hash.is_none())
            || self.applied.as_deref() != Some(journal::plan_hash(old).as_str())
        {
            return Ok(not("the previous plan is not known to be applied in full"));
        }
        preflight::validate(new)?;
        let mut r = self.repair_as(Some(new), part, observed, deletable)?;
        if r.escalate.is_some() {
            return Ok(r);
        }
        // What a verified reconcile commits: links, protocol and files are the old plan's,
        // so only the plan itself changes in the journal.
        let rooted = self.rooted(new);
        let hash = journal::plan_hash(&rooted);
        let root = self.root.clone();
        if let Some(j) = self.journal.as_mut()
            && j.plan_hash.as_deref() != Some(hash.as_str())
        {
            let bytes = serde_json::to_vec(&rooted).map_err(std::io::Error::other)?;
            j.save_plan(root.as_deref(), &bytes, &hash)?;
            j.save(root.as_deref())?;
        }
        self.applied = Some(if self.root.is_some() {
            journal::plan_hash(new)
        } else {
            hash
        });
        r.elapsed = start.elapsed();
        Ok(r)
    }

    /// Converges only the firewall of `plan` (an nftables event said podnet's table or
    /// chains changed). `None` when the engine leaves the firewall alone.
    pub fn reconcile_firewall(
        &self,
        plan: &NodePlan,
    ) -> Result<Option<FirewallReport>, EngineError> {
        if self.firewall == FirewallMode::Untouched {
            return Ok(None);
        }
        if let Some(t) = preflight::missing_tool(plan.firewall.driver) {
            return Err(EngineError::MissingTool(t));
        }
        let spec = FirewallSpec::from(&plan.firewall);
        let tools = self.firewall_tools();
        let other = match plan.firewall.driver {
            FirewallDriver::Nftables => FirewallDriver::Iptables,
            FirewallDriver::Iptables => FirewallDriver::Nftables,
        };
        let other = self
            .journal
            .as_ref()
            .is_none_or(|j| j.firewalls.contains(&other));
        Ok(Some(self.target.run(|| tools.apply_known(&spec, other))??))
    }
}

/// Whether `a` and `b` differ at most in their routes, neighbours and FDB entries (what
/// [`Engine::apply_change`] applies without a full reconcile).
pub fn entries_only(a: &NodePlan, b: &NodePlan) -> bool {
    // Destructured, so that a new plan field cannot be forgotten here.
    let NodePlan {
        format_version,
        cluster,
        node,
        underlay,
        route_protocol,
        sysctls,
        links,
        addresses,
        routes: _,
        neighbours: _,
        fdb: _,
        firewall,
        files,
    } = a;
    *format_version == b.format_version
        && *cluster == b.cluster
        && *node == b.node
        && *underlay == b.underlay
        && *route_protocol == b.route_protocol
        && *sysctls == b.sysctls
        && *links == b.links
        && *addresses == b.addresses
        && *firewall == b.firewall
        && *files == b.files
}
