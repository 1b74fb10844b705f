//! `podnet plan`: render what a node's kernel state and files must be, as text, JSON or an
//! equivalent shell script, for one node (`--node N`) or every node (`--all`).
//!
//! Nodes are planned and written one at a time, so memory stays bounded by one plan even for
//! thousands of nodes. With `--all` on standard output, `--format json` emits JSON Lines (one
//! compact plan per line); text and shell renderings follow each other, separated by a blank
//! line. `--out DIR` writes one file per node instead: `DIR/<node>.json|.txt|.sh`.
//! `--root DIR` prefixes every file path of the plan, in every format. Exit 0 on success, 1
//! when the cluster has errors or the node cannot be planned (unknown, no subnet).

use std::io::Write;
use std::path::{Path, PathBuf};

use anyhow::Context as _;
use podnet_compiler::plan::{NodePlan, Planner, render_shell, render_text};
use podnet_compiler::{Diagnostic, FsLoader, UseLock, compile};

use crate::changes::{Tense, phrase, print_json};
use crate::cli::{DiagFormat, PlanArgs, PlanFormat};
use crate::diff::Detail;
use crate::engine::{Access, Engine};
use crate::{journal, report};

pub fn run(args: &PlanArgs) -> anyhow::Result<i32> {
    if args.live {
        return live(args);
    }
    let diagnostics = args.format.diagnostics(args.diagnostics);
    let c = compile(&FsLoader, &args.file, UseLock::IfPresent);
    let Some(cluster) = c.valid_cluster() else {
        report::print(&c.sources, &c.diagnostics, diagnostics)?;
        return Ok(1);
    };
    // Warnings go to standard error only: standard output carries the plan.
    if diagnostics == DiagFormat::Human && !c.diagnostics.is_empty() {
        report::print(&c.sources, &c.diagnostics, DiagFormat::Human)?;
    }
    let planner = Planner::new(cluster);
    let fail = |d: Diagnostic| -> anyhow::Result<i32> {
        report::print(&c.sources, &[d], diagnostics)?;
        Ok(1)
    };
    let nodes: Vec<usize> = match &args.node {
        Some(name) => match planner.index_of(name) {
            Ok(i) => vec![i],
            Err(d) => return fail(d),
        },
        None => (0..planner.len()).collect(),
    };
    let stream = args.all && args.out.is_none();
    let stdout = std::io::stdout();
    let mut out = stdout.lock();
    if let Some(dir) = &args.out {
        std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    }
    for (n, &i) in nodes.iter().enumerate() {
        let plan = match planner.plan(i) {
            Ok(p) => p,
            Err(d) => return fail(d),
        };
        let text = render(&plan, args.format, args.root.as_deref(), stream)?;
        match &args.out {
            Some(dir) => {
                let path = out_path(dir, &plan.node, args.format)?;
                write_out(&path, text.as_bytes(), args.format)?;
            }
            None => {
                if n > 0 && args.format != PlanFormat::Json {
                    writeln!(out)?;
                }
                out.write_all(text.as_bytes())?;
            }
        }
    }
    out.flush()?;
    if let Some(dir) = &args.out {
        let what = match args.format {
            PlanFormat::Shell => "executable shell script(s), mode 0755",
            PlanFormat::Json => "JSON plan(s), mode 0644",
            PlanFormat::Text => "text plan(s), mode 0644",
        };
        eprintln!("wrote {} {what}, to {}", nodes.len(), dir.display());
    }
    Ok(0)
}

/// One node's rendering; `json_lines` selects compact one-line JSON.
fn render(
    plan: &NodePlan,
    format: PlanFormat,
    root: Option<&Path>,
    json_lines: bool,
) -> anyhow::Result<String> {
    Ok(match format {
        PlanFormat::Shell => render_shell(plan, root),
        PlanFormat::Text | PlanFormat::Json => {
            let rebased;
            let plan = match root {
                Some(r) => {
                    rebased = plan.clone().with_root(r);
                    &rebased
                }
                None => plan,
            };
            match format {
                PlanFormat::Text => render_text(plan),
                _ if json_lines => plan.to_json_line()?,
                _ => plan.to_json_pretty()?,
            }
        }
    })
}

/// Writes one `--out` file: a shell script executable (0755), anything else 0644, whatever
/// the umask (the mode is set after the write).
fn write_out(path: &Path, bytes: &[u8], format: PlanFormat) -> anyhow::Result<()> {
    use std::os::unix::fs::PermissionsExt as _;
    let mode = match format {
        PlanFormat::Shell => 0o755,
        PlanFormat::Text | PlanFormat::Json => 0o644,
    };
    std::fs::write(path, bytes).with_context(|| format!("writing {}", path.display()))?;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode))
        .with_context(|| format!("setting the mode of {}", path.display()))?;
    Ok(())
}

/// `DIR/<node>.<ext>`; a node name that is not a plain file name is refused.
fn out_path(dir: &Path, node: &str, format: PlanFormat) -> anyhow::Result<PathBuf> {
    if node.is_empty() || node == "." || node == ".." || node.contains(['/', '\\', '\0']) {
        anyhow::bail!("node name `{node}` cannot be used as a file name in --out");
    }
    let ext = match format {
        PlanFormat::Text => "txt",
        PlanFormat::Json => "json",
        PlanFormat::Shell => "sh",
    };
    Ok(dir.join(format!("{node}.{ext}")))
}

/// `--live`: the `+ ~ -` changes an apply would make on this machine (kernel, sysctls,
/// files and firewall, from the engine's one drift), then a summary.
fn live(args: &PlanArgs) -> anyhow::Result<i32> {
    if args.format == PlanFormat::Shell {
        anyhow::bail!(
            "--format shell renders a plan, not the changes to a live node: use --format text \
             or json with --live, or drop --live"
        );
    }
    super::apply::regular_file(&args.file)?;
    let target = super::apply::target(args.netns.as_deref())?;
    let (plan, names) = match super::apply::load_plan(
        &args.file,
        args.node.as_deref(),
        &target,
        args.format.diagnostics(args.diagnostics),
        None,
    )? {
        Ok(p) => p,
        Err(code) => return Ok(code),
    };
    let engine =
        Engine::open(target.clone(), args.root.as_deref(), Access::Read)?.with_adopt(args.adopt);
    let mut drift = engine
        .drift(&plan)
        .map_err(|e| super::apply::explain(e, &args.file))?;
    let mut known = names;
    known.merge(journal::load_node_names(args.root.as_deref()));
    drift.kernel.nodes = known;
    let report = super::status::report(&drift);
    let pending = !drift.is_empty();
    let code = if !drift.kernel.conflicts.is_empty() {
        1
    } else if pending && args.detailed_exitcode {
        2
    } else {
        0
    };
    let stdout = std::io::stdout();
    let mut out = stdout.lock();
    for w in &drift.warnings {
        eprintln!("warning: {w}");
    }
    if args.format == PlanFormat::Json {
        let extra = serde_json::json!({
            "pending": pending,
            "adopt": drift.adopt.lines(),
        });
        print_json(&mut out, &report.json("plan", Some(&plan.node), extra))?;
        return Ok(code);
    }
    for line in drift.adopt.lines() {
        writeln!(out, "{line}")?;
    }
    let detail = if args.verbose {
        Detail::Verbose
    } else {
        Detail::Normal
    };
    report.print(&mut out, detail)?;
    if pending {
        writeln!(
            out,
            "node {}: {}{}",
            plan.node,
            match (drift.adopt.links.len(), drift.adopt.routes.len()) {
                (0, 0) => String::new(),
                (l, r) => format!("{l} link(s) and {r} route(s) to adopt, "),
            },
            phrase(report.counts(), Tense::Pending),
        )?;
    } else {
        writeln!(
            out,
            "node {}: no changes; the kernel matches the plan",
            plan.node
        )?;
    }
    out.flush()?;
    Ok(code)
}
