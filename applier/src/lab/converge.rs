//! "Converge node N on plan P": the one seam between the lab and whatever keeps a node
//! converged. [`EngineConverge`] calls the node engine directly (what `podnet apply` does);
//! a `podnet watch` converger (one shared file replaced by atomic rename, each node's
//! watcher reporting back) plugs in here without touching the rest of the lab.

use std::path::{Path, PathBuf};
use std::time::Duration;

use podnet_compiler::plan::NodePlan;

use super::LabError;
use crate::engine::{Access, Engine};
use crate::kernel::netns::Target;

/// A node as a converger sees it: its namespace and its `--root`.
#[derive(Clone, Debug)]
pub struct NodeRef<'a> {
    pub name: &'a str,
    pub ns: &'a str,
    pub root: &'a Path,
}

/// What converging one node did.
#[derive(Clone, Debug)]
pub struct Converged {
    /// Kernel objects, sysctls and files added, changed or removed.
    pub changes: usize,
    pub elapsed: Duration,
}

/// Keeps lab nodes converged on a configuration.
pub trait Converge: Sync {
    /// Called once per configuration, before any node converges on it (a watch converger
    /// replaces the shared cluster file here).
    fn publish(&self, _file: &Path) -> Result<(), LabError> {
        Ok(())
    }

    /// Converges `node` on `plan` (as compiled from the published file) and returns once it
    /// is verified, or fails.
    fn converge(&self, node: &NodeRef<'_>, plan: &NodePlan) -> Result<Converged, LabError>;
}

/// Converges through [`Engine::reconcile`] in the node's namespace, with the node's root.
#[derive(Clone, Copy, Debug, Default)]
pub struct EngineConverge;

impl Converge for EngineConverge {
    fn converge(&self, node: &NodeRef<'_>, plan: &NodePlan) -> Result<Converged, LabError> {
        let engine_err = |e| LabError::Engine {
            node: node.name.to_string(),
            source: e,
        };
        let target = Target::named(node.ns).map_err(|e| LabError::io("naming a node", e))?;
        let mut engine =
            Engine::open(target, Some(node.root), Access::Write).map_err(engine_err)?;
        let r = engine.reconcile(plan, None).map_err(engine_err)?;
        if !r.converged() {
            let mut problems: Vec<String> = r
                .failures
                .iter()
                .map(|f| format!("{}: {}", f.op, f.error))
                .collect();
            problems.extend(r.remaining.ops.iter().map(|op| r.remaining.line(op)));
            return Err(LabError::NotConverged {
                node: node.name.to_string(),
                problems,
            });
        }
        let (a, c, d) = r.changes.counts();
        Ok(Converged {
            changes: a + c + d,
            elapsed: r.elapsed,
        })
    }
}

/// What of the node differs from `plan` after converging on it: every owned kernel object,
/// file or firewall object the plan does not want (left over from an earlier
/// configuration) or lacks, as the engine's drift lines.
pub fn leftovers(node: &NodeRef<'_>, plan: &NodePlan) -> Result<Vec<String>, LabError> {
    let engine_err = |e| LabError::Engine {
        node: node.name.to_string(),
        source: e,
    };
    let target = Target::named(node.ns).map_err(|e| LabError::io("naming a node", e))?;
    let engine = Engine::open(target, Some(node.root), Access::Read).map_err(engine_err)?;
    let d = engine.drift(plan).map_err(engine_err)?;
    let mut out: Vec<String> = d.kernel.ops.iter().map(|op| d.kernel.line(op)).collect();
    out.extend(d.kernel.conflicts.iter().map(ToString::to_string));
    out.extend(
        d.firewall
            .iter()
            .flatten()
            .map(|f| format!("firewall: {f}")),
    );
    Ok(out)
}

/// The directory a node's `--root` lives in under the lab's state directory.
pub fn node_root(lab_dir: &Path, node: &str) -> PathBuf {
    lab_dir.join("nodes").join(node)
}
