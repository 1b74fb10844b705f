//! `podnet lock`: allocate node subnets into FILE.lock (existing allocations never move), or
//! `--check` that the lock is up to date (exit 1 and print what would change).

use podnet_compiler::lock::{self, Lock};
use podnet_compiler::{FsLoader, Loader as _, UseLock, compile};
use std::io::Write as _;

use crate::cli::{DiagFormat, LockArgs};
use crate::report;

pub fn run(args: &LockArgs) -> anyhow::Result<i32> {
    let mut c = compile(&FsLoader, &args.file, UseLock::No);
    if c.has_errors() {
        report::print(&c.sources, &c.diagnostics, args.format)?;
        return Ok(1);
    }
    let Some(cluster) = c.cluster.as_ref() else {
        return Ok(1);
    };
    let path = lock::lock_path(&args.file);
    let mut diags = Vec::new();
    let old: Option<Lock> = lock::read(&FsLoader, &path, &mut c.sources, &mut diags);
    if !diags.is_empty() {
        // A lock that exists but cannot be read or parsed is never taken for a missing one:
        // allocating afresh would move subnets of running nodes.
        report::print(&c.sources, &diags, args.format)?;
        eprintln!(
            "error: {} was not changed: fix it first (or move it away to allocate every node afresh)",
            path.display()
        );
        return Ok(1);
    }
    let mut adiags = Vec::new();
    let Some(new) = lock::allocate(cluster, old.as_ref(), &mut adiags) else {
        report::print(&c.sources, &adiags, args.format)?;
        return Ok(1);
    };
    let empty = Lock {
        nodes: Default::default(),
        ..new.clone()
    };
    let changes = old.as_ref().unwrap_or(&empty).diff(&new);
    let header_changed = old.as_ref().is_none_or(|o| {
        o.cluster != new.cluster || o.pod_cidr != new.pod_cidr || o.subnet_len != new.subnet_len
    });
    let stale = header_changed || !changes.is_empty();
    // What the lock's header would become (another cluster, pod CIDR or subnet length).
    let mut header = Vec::new();
    if let Some(o) = old.as_ref() {
        if o.cluster != new.cluster {
            header.push(("cluster", o.cluster.clone(), new.cluster.clone()));
        }
        if o.pod_cidr != new.pod_cidr {
            header.push(("pod-cidr", o.pod_cidr.to_string(), new.pod_cidr.to_string()));
        }
        if o.subnet_len != new.subnet_len {
            header.push((
                "subnet-len",
                o.subnet_len.to_string(),
                new.subnet_len.to_string(),
            ));
        }
    }
    let json = args.format == DiagFormat::Json;
    if json {
        let doc = serde_json::json!({
            "lock": path.display().to_string(),
            "up_to_date": !stale,
            "header": header.iter().map(|(k, a, b)| serde_json::json!({ "key": k, "before": a, "after": b })).collect::<Vec<_>>(),
            "changes": changes.iter().map(change_json).collect::<Vec<_>>(),
            "written": !args.check && stale,
        });
        writeln!(std::io::stdout().lock(), "{doc:#}")?;
    } else {
        let mut out = std::io::stdout().lock();
        for (k, a, b) in &header {
            writeln!(out, "~ {k} = {a} -> {b}")?;
        }
        for ch in &changes {
            writeln!(out, "{ch}")?;
        }
    }
    if args.check {
        if stale {
            eprintln!(
                "{}: out of date ({} change{}); run `podnet lock {}`",
                path.display(),
                changes.len() + header.len(),
                if changes.len() + header.len() == 1 {
                    ""
                } else {
                    "s"
                },
                args.file.display()
            );
            return Ok(1);
        }
        return Ok(0);
    }
    let text = new.render();
    let current = FsLoader.read(&path).ok();
    if current.as_deref() != Some(text.as_str()) {
        // Through a symlink to its target: a linked lock stays a link.
        super::fmt::write_through(&path, text.as_bytes())?;
        eprintln!(
            "{}: {} node(s), {} change(s)",
            path.display(),
            new.nodes.len(),
            changes.len()
        );
    } else {
        eprintln!("{}: up to date", path.display());
    }
    Ok(0)
}

/// One node's change as JSON: `action` (`add`, `remove`, `change`), `node`, `before`, `after`.
fn change_json(c: &lock::Change) -> serde_json::Value {
    match c {
        lock::Change::Added { node, subnet } => {
            serde_json::json!({ "action": "add", "node": node, "before": null, "after": subnet.to_string() })
        }
        lock::Change::Removed { node, subnet } => {
            serde_json::json!({ "action": "remove", "node": node, "before": subnet.to_string(), "after": null })
        }
        lock::Change::Moved { node, from, to } => {
            serde_json::json!({ "action": "change", "node": node, "before": from.to_string(), "after": to.to_string() })
        }
    }
}
