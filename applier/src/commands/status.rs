//! `podnet status`: what podnet owns on this node (counts per kind of object), which plan
//! was applied last, and the engine's drift from it: kernel objects, sysctls, files and
//! the firewall.

use std::io::Write as _;

use crate::cli::StatusArgs;
use crate::engine::{Access, Drift, Engine};

pub fn run(args: &StatusArgs) -> anyhow::Result<i32> {
    let target = super::apply::target(args.netns.as_deref())?;
    let engine = Engine::open(target, args.root.as_deref(), Access::Read)?;
    let obs = engine.owned()?;
    let drift = engine.drift_from_last()?;
    let mut out = std::io::stdout().lock();
    match (engine.journal(), &drift) {
        (Some(j), Some(_)) => writeln!(
            out,
            "node {} of cluster {} (last applied plan)",
            j.node, j.cluster
        )?,
        (Some(j), None) => writeln!(
            out,
            "node {} of cluster {}: an apply started but did not finish",
            j.node, j.cluster
        )?,
        (None, _) => writeln!(out, "no journal: podnet has not applied anything here")?,
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
    let warnings = match &drift {
        Some(d) => d.warnings.clone(),
        None => engine.warnings(),
    };
    for w in warnings {
        eprintln!("warning: {w}");
    }
    let Some(drift) = drift else {
        writeln!(out, "drift:      unknown (no plan was applied in full)")?;
        return Ok(0);
    };
    if drift.is_empty() {
        writeln!(out, "drift:      none")?;
        return Ok(0);
    }
    let (a, c, r) = drift.kernel.counts();
    let fw = drift.firewall.as_ref().map_or(0, Vec::len);
    writeln!(
        out,
        "drift:      {a} missing, {c} different, {r} unexpected{}",
        if fw > 0 {
            format!(", firewall: {fw} difference(s)")
        } else {
            String::new()
        }
    )?;
    print_drift(&mut out, &drift, false)?;
    if !drift.kernel.conflicts.is_empty() {
        return Ok(1);
    }
    Ok(if args.detailed_exitcode { 2 } else { 0 })
}

/// The drift's lines: kernel, sysctl and file changes, the firewall's, then conflicts.
pub fn print_drift(
    out: &mut impl std::io::Write,
    drift: &Drift,
    verbose: bool,
) -> std::io::Result<()> {
    super::apply::print_changes(out, &drift.kernel, verbose)?;
    for x in drift.firewall.iter().flatten() {
        writeln!(out, "~ firewall: {x}")?;
    }
    for c in &drift.kernel.conflicts {
        writeln!(out, "conflict: {c}")?;
    }
    Ok(())
}
