//! `podnet apply`: converge this node on its plan (from a cluster file or a plan JSON),
//! print what changed, and exit 0 when verified, 1 otherwise (nothing is changed when the
//! input is invalid or something foreign is in the way).

use std::collections::BTreeSet;
use std::io::Write as _;
use std::net::Ipv4Addr;
use std::path::Path;

use anyhow::Context as _;
use podnet_compiler::plan::{FORMAT_VERSION, NodePlan, Planner};
use podnet_compiler::{FsLoader, UseLock, compile};

use crate::changes::{FirewallChange, Report, Tense, phrase, print_json, print_lines};
use crate::cli::{ApplyArgs, DiagFormat, OutputFormat};
use crate::diff::Detail;
use crate::diff::NodeNames;
use crate::engine::{Access, Engine, EngineError};
use crate::kernel::addr::{Addr, RTM_GETADDR};
use crate::kernel::netns::Target;
use crate::kernel::nl::NlSocket;
use crate::{journal, plan_cache, report};

pub fn run(args: &ApplyArgs) -> anyhow::Result<i32> {
    let root = args.root.as_deref();
    // A FIFO or device would block the read below while holding the applier lock.
    regular_file(&args.target)?;
    let target = target(args.netns.as_deref())?;
    let mut engine = Engine::open(target.clone(), root, Access::Write)?.with_adopt(args.adopt);
    let text = args.format != OutputFormat::Json;
    if text {
        // Changes that disturb running pods are said before anything is written.
        engine = engine.with_announce(std::sync::Arc::new(|d: &crate::diff::Diff| {
            let mut out = std::io::stdout().lock();
            for w in crate::diff::warnings::warnings(d) {
                let _ = writeln!(out, "warning: {}", w.message);
            }
            let _ = out.flush();
        }));
    }
    // Under the applier lock, the kernel is read on another thread while the plan is
    // compiled (or read from JSON): the two take about as long at 20,000 nodes.
    let (plan, early) = std::thread::scope(|scope| {
        let early = scope.spawn(|| engine.observe_kernel().ok());
        let plan = load_plan(
            &args.target,
            args.node.as_deref(),
            &target,
            args.format.diagnostics(args.diagnostics),
            Some(root),
        );
        (plan, early.join().ok().flatten())
    });
    let (plan, names) = match plan? {
        Ok(p) => p,
        Err(code) => return Ok(code),
    };
    let mut a = match engine.reconcile(&plan, early) {
        Ok(a) => a,
        Err(e) => return Err(explain(e, &args.target)),
    };
    let mut known = names.clone();
    known.merge(journal::load_node_names(root));
    a.changes.nodes = known.clone();
    a.remaining.nodes = known;
    let mut fw = Vec::new();
    if let Some(f) = &a.firewall {
        fw.extend(f.applied.drift.iter().map(FirewallChange::from_drift));
        fw.extend(f.removed.removed.iter().map(|r| FirewallChange::removed(r)));
    }
    let mut report = Report::new(&a.changes, fw);
    if text {
        // Printed before acting (the announce above).
        report.warnings.clear();
    }
    let converged = a.converged();
    if converged && !names.is_empty() {
        // Names only label later output: failing to record them fails nothing.
        if let Err(e) = journal::save_node_names(root, &names) {
            eprintln!("warning: {e}");
        }
    }
    let mut out = std::io::stdout().lock();
    for w in &a.warnings {
        eprintln!("warning: {w}");
    }
    let detail = if args.verbose {
        Detail::Verbose
    } else {
        Detail::Normal
    };
    if args.format == OutputFormat::Json {
        let failures: Vec<serde_json::Value> = a
            .failures
            .iter()
            .map(|f| serde_json::json!({ "op": f.op, "error": f.error.to_string() }))
            .collect();
        let extra = serde_json::json!({
            "converged": converged,
            "failures": failures,
            "remaining": a.remaining.changes_json(),
            "adopted": a.adopted.lines(),
            "elapsed_ms": a.elapsed.as_secs_f64() * 1000.0,
        });
        print_json(&mut out, &report.json("apply", Some(&plan.node), extra))?;
        return Ok(if converged { 0 } else { 1 });
    }
    for line in a.adopted.lines() {
        writeln!(out, "{line}")?;
    }
    report.print(&mut out, detail)?;
    for f in &a.failures {
        writeln!(out, "failed: {}: {}", f.op, f.error)?;
    }
    if !converged {
        if !a.remaining.is_empty() {
            writeln!(out, "not converged; still different:")?;
            print_lines(&mut out, &a.remaining, detail)?;
        }
        eprintln!(
            "error: node {} did not converge ({} failed operation(s), {} remaining difference(s))",
            plan.node,
            a.failures.len(),
            a.remaining.ops.len()
        );
        return Ok(1);
    }
    writeln!(
        out,
        "node {}: {}; converged in {:.1} ms",
        plan.node,
        phrase(report.counts(), Tense::Done),
        a.elapsed.as_secs_f64() * 1000.0
    )?;
    Ok(0)
}

/// The engine's target from `--netns`.
pub fn target(netns: Option<&str>) -> anyhow::Result<Target> {
    Ok(match netns {
        Some(n) => Target::named(n)?,
        None => Target::Current,
    })
}

/// Refuses anything but a regular file (before a lock is taken or a read can block).
pub fn regular_file(path: &Path) -> anyhow::Result<()> {
    let m = std::fs::metadata(path).with_context(|| format!("reading {}", path.display()))?;
    if !m.is_file() {
        anyhow::bail!(
            "{} is not a regular file (a cluster file or a plan JSON is expected)",
            path.display()
        );
    }
    Ok(())
}

/// An engine error as the user sees it; a plan for another node also names the node of the
/// cluster file whose address is local, when there is one.
pub fn explain(e: EngineError, file: &Path) -> anyhow::Error {
    if let EngineError::WrongNode(w) = &e
        && !is_json(file)
    {
        let c = compile(&FsLoader, file, UseLock::IfPresent);
        if let Some(cluster) = c.valid_cluster() {
            let local: Vec<Ipv4Addr> = w.local.iter().map(|a| a.addr()).collect();
            if let [one] = local_nodes(cluster, &local).as_slice()
                && *one != w.node
            {
                return anyhow::anyhow!("{e}; this machine is node {one}: pass --node {one}");
            }
        }
    }
    anyhow::Error::new(e)
}

fn is_json(p: &Path) -> bool {
    p.extension().is_some_and(|e| e == "json")
}

/// The plan to apply, as compiled (the engine roots file paths): read from a plan JSON, or
/// compiled from a cluster file for `node` (default: the node whose address is local in
/// `ns`). With `cache: Some(root)`, a cluster file's plan comes from the compiled-plan
/// cache under that root when every input still reads the same, and a fresh compile is
/// stored there. With the plan come the cluster's node names (empty for a plan JSON or a
/// cached plan). `Err(code)` when the problem has been reported already.
pub fn load_plan(
    target: &Path,
    node: Option<&str>,
    ns: &Target,
    diagnostics: DiagFormat,
    cache: Option<Option<&Path>>,
) -> anyhow::Result<Result<(NodePlan, NodeNames), i32>> {
    let mut names = NodeNames::default();
    let plan = if is_json(target) {
        let text = std::fs::read_to_string(target)
            .with_context(|| format!("reading {}", target.display()))?;
        let plan: NodePlan = serde_json::from_str(&text).with_context(|| {
            format!(
                "{} is not a podnet plan (make one with `podnet plan FILE --node N --format json`)",
                target.display()
            )
        })?;
        if plan.format_version != FORMAT_VERSION {
            anyhow::bail!(
                "{} has plan format {}, this podnet applies format {FORMAT_VERSION}",
                target.display(),
                plan.format_version
            );
        }
        if let Some(n) = node
            && n != plan.node
        {
            anyhow::bail!(
                "{} is the plan of node {}, not {n}",
                target.display(),
                plan.node
            );
        }
        plan
    } else {
        if let Some(root) = cache
            && let Some(plan) = plan_cache::lookup(root, target, node, || local_addresses(ns))
        {
            return Ok(Ok((plan, names)));
        }
        let rec = plan_cache::Recorder::new();
        let c = compile(&rec, target, UseLock::IfPresent);
        let Some(cluster) = c.valid_cluster() else {
            report::print(&c.sources, &c.diagnostics, diagnostics)?;
            eprintln!("error: nothing was changed: the cluster file has errors");
            return Ok(Err(1));
        };
        names = NodeNames::of_cluster(cluster);
        let planner = Planner::new(cluster);
        let mut local = Vec::new();
        let index = match node {
            Some(n) => planner.index_of(n),
            None => {
                local = local_addresses(ns)?;
                let name = local_node(cluster, &local)?;
                planner.index_of(&name)
            }
        };
        match index.and_then(|i| planner.plan(i)) {
            Ok(p) => {
                if let Some(root) = cache {
                    plan_cache::store(root, target, node, local, rec, &p);
                }
                p
            }
            Err(d) => {
                report::print(&c.sources, &[d], diagnostics)?;
                return Ok(Err(1));
            }
        }
    };
    Ok(Ok((plan, names)))
}

/// The nodes whose underlay address is among `local`.
fn local_nodes<'a>(cluster: &'a podnet_compiler::Cluster, local: &[Ipv4Addr]) -> Vec<&'a str> {
    cluster
        .nodes
        .iter()
        .filter(|n| local.contains(&n.address.value.addr()))
        .map(|n| n.name.value.as_str())
        .collect()
}

/// The IPv4 addresses configured in `ns`, sorted, without repeats.
pub(crate) fn local_addresses(ns: &Target) -> std::io::Result<Vec<Ipv4Addr>> {
    let set = ns.run(|| -> std::io::Result<BTreeSet<Ipv4Addr>> {
        let mut sock = NlSocket::new()?;
        Ok(sock
            .dump(RTM_GETADDR, &Addr::dump_request())?
            .iter()
            .filter_map(|m| Addr::parse(m))
            .map(|a| a.address.addr())
            .collect())
    })??;
    Ok(set.into_iter().collect())
}

/// The one node whose underlay address is among `local`.
pub(crate) fn local_node(
    cluster: &podnet_compiler::Cluster,
    local: &[Ipv4Addr],
) -> anyhow::Result<String> {
    match local_nodes(cluster, local).as_slice() {
        [one] => Ok((*one).to_string()),
        [] => anyhow::bail!(
            "no node of cluster {} has its address on this machine (local addresses: {}); \
             pass --node NAME",
            cluster.name.value,
            local
                .iter()
                .map(ToString::to_string)
                .collect::<Vec<_>>()
                .join(", ")
        ),
        many => anyhow::bail!(
            "several nodes have their address on this machine ({}); pass --node NAME",
            many.join(", ")
        ),
    }
}
