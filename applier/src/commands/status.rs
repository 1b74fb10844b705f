//! `podnet status`: what podnet owns on this node (counts per kind of object), which plan
//! was applied last, and the engine's drift from it: kernel objects, sysctls, files and
//! the firewall.

use std::io::Write as _;

use serde_json::json;

use crate::changes::{FirewallChange, Report, Tense, phrase, print_json};
use crate::cli::{OutputFormat, StatusArgs};
use crate::diff::Detail;
use crate::engine::{Access, Drift, Engine};
use crate::journal;

pub fn run(args: &StatusArgs) -> anyhow::Result<i32> {
    let target = super::apply::target(args.netns.as_deref())?;
    let engine = Engine::open(target, args.root.as_deref(), Access::Read)?;
    let obs = engine.owned()?;
    let mut drift = engine.drift_from_last()?;
    if let Some(d) = &mut drift {
        d.kernel.nodes = journal::load_node_names(args.root.as_deref());
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
    let neighbours = obs.neighs.iter().filter(|n| n.permanent).count();
    let files = obs.files.values().filter(|f| f.is_some()).count();
    let code = match &drift {
        Some(d) if !d.kernel.conflicts.is_empty() => 1,
        Some(d) if !d.is_empty() && args.detailed_exitcode => 2,
        _ => 0,
    };
    let mut out = std::io::stdout().lock();
    if args.format == OutputFormat::Json {
        let owned = json!({
            "links": owned_links,
            "addresses": obs.addrs.len(),
            "routes": obs.routes.len(),
            "nexthops": owned_nh,
            "neighbours": neighbours,
            "fdb": obs.fdb.len(),
            "files": files,
        });
        let journal = engine
            .journal()
            .map(|j| json!({ "node": j.node, "cluster": j.cluster }));
        let doc = match &drift {
            Some(d) => {
                let report = report(d);
                report.json(
                    "status",
                    engine.journal().map(|j| j.node.as_str()),
                    json!({ "drifted": !d.is_empty(), "owned": owned, "journal": journal }),
                )
            }
            None => json!({
                "format_version": crate::changes::FORMAT_VERSION,
                "command": "status",
                "node": engine.journal().map(|j| j.node.as_str()),
                "changes": [],
                "warnings": [],
                "conflicts": [],
                "summary": { "add": 0, "change": 0, "remove": 0 },
                "drifted": null,
                "owned": owned,
                "journal": journal,
            }),
        };
        print_json(&mut out, &doc)?;
        return Ok(code);
    }
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
    writeln!(
        out,
        "links:      {} {}",
        owned_links.len(),
        owned_links.join(" ")
    )?;
    writeln!(out, "addresses:  {}", obs.addrs.len())?;
    writeln!(out, "routes:     {}", obs.routes.len())?;
    writeln!(out, "nexthops:   {owned_nh}")?;
    writeln!(out, "neighbours: {neighbours}")?;
    writeln!(out, "fdb:        {}", obs.fdb.len())?;
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
        return Ok(code);
    };
    if drift.is_empty() {
        writeln!(out, "drift:      none")?;
        return Ok(code);
    }
    let report = report(&drift);
    writeln!(
        out,
        "drift:      {} (what an apply would do)",
        phrase(report.counts(), Tense::Pending)
    )?;
    let detail = if args.verbose {
        Detail::Verbose
    } else {
        Detail::Normal
    };
    report.print(&mut out, detail)?;
    Ok(code)
}

/// The drift as a change report: kernel objects, sysctls and files, then the firewall's.
pub fn report(drift: &Drift) -> Report<'_> {
    let fw = drift
        .firewall
        .iter()
        .flatten()
        .map(FirewallChange::from_drift)
        .collect();
    Report::new(&drift.kernel, fw)
}
