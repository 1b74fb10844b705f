//! `podnet teardown`: remove every object podnet owns on this node (routes and nexthops of
//! its protocols, its links with everything on them, its firewall state, the tables and
//! directories it created) and every file it wrote, restore the sysctls and files the
//! journal recorded, then delete the journal. Without a journal it removes what carries
//! podnet's markers and says what it could not restore (exit 1). The output counts objects
//! as `apply` does: what `apply` added, `teardown` removes.

use std::io::Write as _;

use serde_json::json;

use crate::changes::{FirewallChange, Report, Tense, phrase, print_json, print_lines};
use crate::cli::{OutputFormat, TeardownArgs};
use crate::diff::Detail;
use crate::engine::{Access, Engine};
use crate::journal;

pub fn run(args: &TeardownArgs) -> anyhow::Result<i32> {
    let target = super::apply::target(args.netns.as_deref())?;
    let mut engine = Engine::open(target, args.root.as_deref(), Access::Write)?;
    let node = engine.journal().map(|j| j.node.clone());
    // Read before the teardown removes them with the journal.
    let names = journal::load_node_names(args.root.as_deref());
    let mut t = engine.teardown()?;
    t.changes.nodes = names.clone();
    t.remaining.nodes = names;
    let fw: Vec<FirewallChange> = t
        .firewall
        .iter()
        .map(|f| FirewallChange::removed(f))
        .collect();
    let report = Report::new(&t.changes, fw);
    let complete = t.failures.is_empty() && t.remaining.is_empty();
    let restored = complete && t.unrestored.is_empty();
    let mut out = std::io::stdout().lock();
    let detail = if args.verbose {
        Detail::Verbose
    } else {
        Detail::Normal
    };
    if args.format == OutputFormat::Json {
        let extra = json!({
            "journaled": t.journaled,
            "complete": complete,
            "directories": t.dirs.iter().map(|d| d.display().to_string()).collect::<Vec<_>>(),
            "failures": t.failures.iter().map(|f| json!({ "op": f.op, "error": f.error.to_string() })).collect::<Vec<_>>(),
            "remaining": t.remaining.changes_json(),
            "unrestored": t.unrestored,
            "unchecked": t.unchecked,
            "restored": t.restored,
        });
        print_json(&mut out, &report.json("teardown", node.as_deref(), extra))?;
        return Ok(if restored { 0 } else { 1 });
    }
    // Pod warnings make no sense here: every pod loses its network with the bridge.
    print_lines(&mut out, &t.changes, detail)?;
    for r in &t.restored {
        writeln!(out, "~ {r}")?;
    }
    for f in &report.firewall {
        writeln!(out, "{}", f.line())?;
    }
    for d in &t.dirs {
        writeln!(out, "- directory {}", d.display())?;
    }
    for f in &t.failures {
        writeln!(out, "failed: {}: {}", f.op, f.error)?;
    }
    if !complete {
        print_lines(&mut out, &t.remaining, detail)?;
        eprintln!("error: teardown incomplete; the journal was kept, run it again");
        return Ok(1);
    }
    let dirs = match t.dirs.len() {
        0 => String::new(),
        1 => " (plus 1 directory podnet created)".to_string(),
        n => format!(" (plus {n} directories podnet created)"),
    };
    let counts = phrase(report.counts(), Tense::Done);
    if !t.journaled {
        writeln!(
            out,
            "no journal: {counts}{dirs}: the objects that carry podnet's markers"
        )?;
        for u in &t.unchecked {
            writeln!(out, "not checked: {u}")?;
        }
        if !t.unrestored.is_empty() {
            for u in &t.unrestored {
                writeln!(out, "not restored: {u}")?;
            }
            eprintln!(
                "error: podnet has no journal here, so it cannot restore what it changed \
                 before (listed above); check those by hand"
            );
            return Ok(1);
        }
        return Ok(0);
    }
    writeln!(
        out,
        "node {}: {counts}{dirs}; podnet owns nothing on this node",
        node.as_deref().unwrap_or("?")
    )?;
    Ok(0)
}
