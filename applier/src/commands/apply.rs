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

use crate::cli::{ApplyArgs, DiagFormat};
use crate::diff::Diff;
use crate::engine::{Access, Engine, EngineError};
use crate::kernel::addr::{Addr, RTM_GETADDR};
use crate::kernel::netns::Target;
use crate::kernel::nl::NlSocket;
use crate::{plan_cache, report};

/// Lines of changes printed without `--verbose`.
const SHOWN: usize = 50;

pub fn run(args: &ApplyArgs) -> anyhow::Result<i32> {
    let root = args.root.as_deref();
    // A FIFO or device would block the read below while holding the applier lock.
    regular_file(&args.target)?;
    let target = target(args.netns.as_deref())?;
    let mut engine = Engine::open(target.clone(), root, Access::Write)?.with_adopt(args.adopt);
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
    let plan = match plan? {
        Ok(p) => p,
        Err(code) => return Ok(code),
    };
    let a = match engine.reconcile(&plan, early) {
        Ok(a) => a,
        Err(e) => return Err(explain(e, &args.target)),
    };
    let mut out = std::io::stdout().lock();
    for line in a.adopted.lines() {
        writeln!(out, "{line}")?;
    }
    print_changes(&mut out, &a.changes, args.verbose)?;
    if let Some(fw) = &a.firewall {
        for d in &fw.applied.drift {
            writeln!(out, "~ firewall: {d}")?;
        }
        for r in &fw.removed.removed {
            writeln!(out, "- firewall: {r}")?;
        }
    }
    for f in &a.failures {
        writeln!(out, "failed: {}: {}", f.op, f.error)?;
    }
    let (add, change, remove) = a.changes.counts();
    if !a.converged() {
        if !a.remaining.is_empty() {
            writeln!(out, "not converged; still different:")?;
            print_changes(&mut out, &a.remaining, args.verbose)?;
        }
        eprintln!(
            "error: node {} did not converge ({} failed operation(s), {} remaining difference(s))",
            plan.node,
            a.failures.len(),
            a.remaining.ops.len()
        );
        return Ok(1);
    }
    let fw = a.firewall.as_ref().is_some_and(|f| f.wrote());
    writeln!(
        out,
        "node {}: {add} added, {change} changed, {remove} removed{}; converged in {:.1} ms",
        plan.node,
        if fw { ", firewall rewritten" } else { "" },
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
            if let [one] = local_nodes(cluster, &local).as_slice() {
                return anyhow::anyhow!("{e}; this machine is node {one}: pass --node {one}");
            }
        }
    }
    anyhow::Error::new(e)
}

fn is_json(p: &Path) -> bool {
    p.extension().is_some_and(|e| e == "json")
}

/// Prints up to `SHOWN` change lines (all with `verbose`).
pub fn print_changes(
    out: &mut impl std::io::Write,
    d: &Diff,
    verbose: bool,
) -> std::io::Result<()> {
    let limit = if verbose { usize::MAX } else { SHOWN };
    for op in d.ops.iter().take(limit) {
        writeln!(out, "{}", d.line(op))?;
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

/// The plan to apply, as compiled (the engine roots file paths): read from a plan JSON, or
/// compiled from a cluster file for `node` (default: the node whose address is local in
/// `ns`). With `cache: Some(root)`, a cluster file's plan comes from the compiled-plan
/// cache under that root when every input still reads the same, and a fresh compile is
/// stored there. `Err(code)` when the problem has been reported already.
pub fn load_plan(
    target: &Path,
    node: Option<&str>,
    ns: &Target,
    diagnostics: DiagFormat,
    cache: Option<Option<&Path>>,
) -> anyhow::Result<Result<NodePlan, i32>> {
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
            return Ok(Ok(plan));
        }
        let rec = plan_cache::Recorder::new();
        let c = compile(&rec, target, UseLock::IfPresent);
        let Some(cluster) = c.valid_cluster() else {
            report::print(&c.sources, &c.diagnostics, diagnostics)?;
            eprintln!("error: nothing was changed: the cluster file has errors");
            return Ok(Err(1));
        };
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
    Ok(Ok(plan))
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
