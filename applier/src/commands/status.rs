//! `podnet status`: what podnet owns on this node (counts per kind of object), which plan
//! was applied last, and whether the kernel and files drifted from it.

use std::io::Write as _;

use anyhow::Context as _;
use podnet_compiler::lower::defaults::ROUTE_PROTOCOL;

use crate::apply::empty_plan;
use crate::cli::StatusArgs;
use crate::diff::diff;
use crate::journal::Journal;
use crate::kernel::nl::NlSocket;
use crate::observe::{Scope, observe};

pub fn run(args: &StatusArgs) -> anyhow::Result<i32> {
    let root = args.root.as_deref();
    let j = Journal::load(root)?;
    let mut sock = NlSocket::new().context("opening a netlink socket")?;
    let last = Journal::load_plan(root)?;
    let plan = last
        .as_ref()
        .filter(|_| j.as_ref().is_some_and(|j| j.plan_hash.is_some()));
    let protocol = plan.map_or(ROUTE_PROTOCOL, |p| p.route_protocol);
    let scope = Scope {
        journal: j.as_ref(),
    };
    let obs = observe(&mut sock, plan, scope, protocol).context("reading kernel state")?;
    let mut out = std::io::stdout().lock();
    match (&j, plan) {
        (_, Some(p)) => writeln!(
            out,
            "node {} of cluster {} (last applied plan)",
            p.node, p.cluster
        )?,
        (Some(j), None) => writeln!(
            out,
            "node {} of cluster {}: an apply started but did not finish",
            j.node, j.cluster
        )?,
        (None, None) => writeln!(out, "no journal: podnet has not applied anything here")?,
    }
    let owned_links: Vec<&str> = obs
        .links
        .iter()
        .filter(|l| obs.owned.contains(&l.index))
        .map(|l| l.name.as_str())
        .collect();
    let owned_nh = obs
        .nexthops
        .iter()
        .filter(|n| obs.protocols.contains(&n.protocol))
        .count();
    writeln!(
        out,
        "links:      {} {}",
        owned_links.len(),
        owned_links.join(" ")
    )?;
    writeln!(out, "addresses:  {}", obs.addrs.len())?;
    writeln!(out, "routes:     {}", obs.routes.len())?;
    writeln!(out, "nexthops:   {owned_nh}")?;
    writeln!(
        out,
        "neighbours: {}",
        obs.neighs.iter().filter(|n| n.permanent).count()
    )?;
    writeln!(out, "fdb:        {}", obs.fdb.len())?;
    let files = obs.files.values().filter(|f| f.is_some()).count();
    writeln!(out, "files:      {files}")?;
    let drift = match plan {
        Some(p) => diff(p, &obs),
        None => {
            let mut d = diff(&empty_plan(protocol), &obs);
            d.ops.clear();
            d
        }
    };
    if drift.is_empty() && drift.conflicts.is_empty() {
        writeln!(out, "drift:      none")?;
        return Ok(0);
    }
    let (a, c, r) = drift.counts();
    writeln!(
        out,
        "drift:      {a} missing, {c} different, {r} unexpected"
    )?;
    super::apply::print_changes(&mut out, &drift, false)?;
    for c in &drift.conflicts {
        writeln!(out, "conflict: {c}")?;
    }
    Ok(if args.detailed_exitcode { 2 } else { 0 })
}
