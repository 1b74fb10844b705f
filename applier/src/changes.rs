//! The change report `plan --live`, `apply`, `status` and `teardown` print: warnings about
//! running pods first, then one `+ ~ -` line per change (kernel objects, sysctls, files,
//! firewall objects), conflicts, and one summary line with one counting rule (every object
//! once, what goes with a deleted link included); or the same as one JSON document
//! (`--format json`, `schemas/diff.schema.json`, docs/diff-format.md).

use std::io::Write;

use serde_json::{Value, json};

use crate::diff::json::action;
use crate::diff::warnings::{self, Warning};
use crate::diff::{Counts, Detail, Diff};
use crate::firewall::{self, DriftKind};

/// The version of the JSON document's shape.
pub const FORMAT_VERSION: u32 = 1;

/// Change lines printed without `--verbose`.
pub const SHOWN: usize = 50;

/// One firewall object created, changed or removed.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FirewallChange {
    pub sign: char,
    /// As the tool names it: `table inet podnet`, `nat chain PODNET-POSTRTG`, …
    pub object: String,
}

impl FirewallChange {
    /// A driver's drift: missing → `+`, different → `~`, unexpected → `-`.
    pub fn from_drift(d: &firewall::Drift) -> FirewallChange {
        FirewallChange {
            sign: match d.kind {
                DriftKind::Missing => '+',
                DriftKind::Differs => '~',
                DriftKind::Unexpected => '-',
            },
            object: d.object.clone(),
        }
    }

    /// An object a driver removed.
    pub fn removed(object: &str) -> FirewallChange {
        FirewallChange {
            sign: '-',
            object: object.to_string(),
        }
    }

    pub fn line(&self) -> String {
        format!("{} firewall {}", self.sign, self.object)
    }
}

/// Tense of the summary: what an apply would do, or what was done.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Tense {
    Pending,
    Done,
}

/// `3 to add, 1 to change, 0 to remove` or `3 added, 1 changed, 0 removed`.
pub fn phrase(c: Counts, tense: Tense) -> String {
    match tense {
        Tense::Pending => format!(
            "{} to add, {} to change, {} to remove",
            c.add, c.change, c.remove
        ),
        Tense::Done => format!(
            "{} added, {} changed, {} removed",
            c.add, c.change, c.remove
        ),
    }
}

/// A node's changes with everything needed to print them.
pub struct Report<'a> {
    pub kernel: &'a Diff,
    pub firewall: Vec<FirewallChange>,
    pub warnings: Vec<Warning>,
}

impl<'a> Report<'a> {
    /// The report of `kernel` (its warnings computed from it) and the firewall changes.
    pub fn new(kernel: &'a Diff, firewall: Vec<FirewallChange>) -> Report<'a> {
        Report {
            kernel,
            warnings: warnings::warnings(kernel),
            firewall,
        }
    }

    /// Every object once: kernel objects (with what goes with a deleted link), sysctls,
    /// files and firewall objects.
    pub fn counts(&self) -> Counts {
        let mut c = self.kernel.tally();
        for f in &self.firewall {
            c.count(f.sign);
        }
        c
    }

    pub fn is_empty(&self) -> bool {
        self.kernel.is_empty() && self.firewall.is_empty()
    }

    /// Warnings, then change lines (the first [`SHOWN`] unless verbose), firewall lines and
    /// conflicts.
    pub fn print(&self, out: &mut impl Write, detail: Detail) -> std::io::Result<()> {
        self.print_warnings(out)?;
        print_lines(out, self.kernel, detail)?;
        for f in &self.firewall {
            writeln!(out, "{}", f.line())?;
        }
        for c in &self.kernel.conflicts {
            writeln!(out, "conflict: {c}")?;
        }
        Ok(())
    }

    /// The pod warnings alone.
    pub fn print_warnings(&self, out: &mut impl Write) -> std::io::Result<()> {
        for w in &self.warnings {
            writeln!(out, "warning: {}", w.message)?;
        }
        Ok(())
    }

    /// The JSON document: `command`, `node`, `changes`, `warnings`, `conflicts`,
    /// `summary`; `extra` adds command-specific members (`pending`, `converged`, …).
    pub fn json(&self, command: &str, node: Option<&str>, extra: Value) -> Value {
        let mut changes = self.kernel.changes_json();
        changes.extend(self.firewall.iter().map(|f| {
            json!({
                "action": action(f.sign),
                "kind": "firewall",
                "id": f.object,
                "text": f.line(),
                "before": Value::Null,
                "after": Value::Null,
            })
        }));
        let c = self.counts();
        let mut doc = json!({
            "format_version": FORMAT_VERSION,
            "command": command,
            "node": node,
            "changes": changes,
            "warnings": self.warnings.iter().map(|w| json!({
                "code": w.code,
                "message": w.message,
                "pods": w.pods,
            })).collect::<Vec<_>>(),
            "conflicts": self.kernel.conflicts.iter().map(|c| json!({
                "kind": format!("{:?}", c.kind()),
                "message": c.to_string(),
            })).collect::<Vec<_>>(),
            "summary": { "add": c.add, "change": c.change, "remove": c.remove },
        });
        if let (Some(d), Value::Object(extra)) = (doc.as_object_mut(), extra) {
            d.extend(extra);
        }
        doc
    }
}

/// Up to [`SHOWN`] change lines of `d` (all with [`Detail::Verbose`]).
pub fn print_lines(out: &mut impl Write, d: &Diff, detail: Detail) -> std::io::Result<()> {
    let limit = if detail == Detail::Verbose {
        usize::MAX
    } else {
        SHOWN
    };
    for op in d.ops.iter().take(limit) {
        writeln!(out, "{}", d.line_as(op, detail))?;
    }
    if d.ops.len() > limit {
        writeln!(
            out,
            "… and {} more (--verbose shows all)",
            d.ops.len() - limit
        )?;
    }
    Ok(())
}

/// Writes a JSON document and a newline.
pub fn print_json(out: &mut impl Write, v: &Value) -> std::io::Result<()> {
    let text = serde_json::to_string_pretty(v).map_err(std::io::Error::other)?;
    writeln!(out, "{text}")
}
