//! Incremental repair, for `watch`: the same diff and execute as [`Engine::reconcile`], on a
//! part of a plan the engine has already checked and applied (the objects a kernel event
//! named) against the caller's up-to-date observation of exactly those objects, so a
//! repair costs what the change costs, not what the cluster costs. Whatever needs more
//! than route, nexthop, neighbour, FDB or address writes (a link to create or change, a
//! conflict, a failed write) is handed back as [`Repaired::escalate`]: the caller then runs
//! a full reconcile. And the firewall on its own, for nftables events.

use std::time::{Duration, Instant};

use podnet_compiler::plan::{FirewallDriver, NodePlan};

use super::{Engine, EngineError, FirewallMode, preflight};
use crate::diff::routes::RouteOp;
use crate::diff::{Diff, Observed, Op, diff};
use crate::execute::{self, Failure};
use crate::firewall::{FirewallReport, FirewallSpec};
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
    /// every link). Nexthops are never deleted here (a route outside `part` may use one):
    /// the next full reconcile removes stale ones.
    pub fn repair(&self, part: &NodePlan, observed: &Observed) -> Result<Repaired, EngineError> {
        let start = Instant::now();
        let mut d = diff(part, observed);
        d.ops
            .retain(|op| !matches!(op, Op::Route(RouteOp::NexthopDelete(_))));
        let escalate = if !d.conflicts.is_empty() {
            Some(format!("conflict: {}", d.conflict_summary()))
        } else {
            d.ops
                .iter()
                .find(|op| op.is_link())
                .map(|op| format!("link change: {}", d.line(op)))
        };
        if escalate.is_some() || d.ops.is_empty() {
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
