//! `podnet teardown`: remove every object podnet owns on this node (routes and nexthops of
//! its protocols, its links with everything on them, its firewall state, the tables and
//! directories it created) and every file it wrote, restore the sysctls and files the
//! journal recorded, then delete the journal. Without a journal it removes what carries
//! podnet's markers and says what it could not restore (exit 1).

use std::io::Write as _;

use crate::cli::TeardownArgs;
use crate::engine::{Access, Engine};

pub fn run(args: &TeardownArgs) -> anyhow::Result<i32> {
    let target = super::apply::target(args.netns.as_deref())?;
    let mut engine = Engine::open(target, args.root.as_deref(), Access::Write)?;
    let t = engine.teardown()?;
    let mut out = std::io::stdout().lock();
    super::apply::print_changes(&mut out, &t.changes, false)?;
    for r in &t.restored {
        writeln!(out, "~ {r}")?;
    }
    for f in &t.firewall {
        writeln!(out, "- firewall: {f}")?;
    }
    for d in &t.dirs {
        writeln!(out, "- directory {}", d.display())?;
    }
    for f in &t.failures {
        writeln!(out, "failed: {}: {}", f.op, f.error)?;
    }
    if !t.failures.is_empty() || !t.remaining.is_empty() {
        super::apply::print_changes(&mut out, &t.remaining, false)?;
        eprintln!("error: teardown incomplete; the journal was kept, run it again");
        return Ok(1);
    }
    let removed = t.changes.ops.len() + t.firewall.len() + t.dirs.len();
    if !t.journaled {
        writeln!(
            out,
            "no journal: removed {removed} object(s) that carry podnet's markers"
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
        "removed {removed} object(s); podnet owns nothing on this node"
    )?;
    Ok(0)
}
