//! `podnet teardown`: remove every object podnet owns on this node (routes and nexthops of
//! its protocols, its links with everything on them, its firewall state) and every file it
//! wrote, restore the sysctls and files the journal recorded, then delete the journal.

use std::io::Write as _;

use crate::apply::{Options, teardown};
use crate::cli::TeardownArgs;

pub fn run(args: &TeardownArgs) -> anyhow::Result<i32> {
    let t = teardown(Options {
        root: args.root.as_deref(),
        ..Options::default()
    })?;
    let mut out = std::io::stdout().lock();
    super::apply::print_changes(&mut out, &t.changes, false)?;
    for f in &t.failures {
        writeln!(out, "failed: {}: {}", f.op, f.error)?;
    }
    if !t.failures.is_empty() || !t.remaining.is_empty() {
        super::apply::print_changes(&mut out, &t.remaining, false)?;
        eprintln!("error: teardown incomplete; the journal was kept, run it again");
        return Ok(1);
    }
    writeln!(
        out,
        "removed {} object(s); podnet owns nothing on this node",
        t.changes.ops.len()
    )?;
    Ok(0)
}
