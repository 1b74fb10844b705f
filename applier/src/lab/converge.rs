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

    /// Called before the lab is removed or kept (a watch converger ends its daemons).
    fn stop(&self) {}
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

/// Converges through `podnet watch`: one daemon per node (in its namespace, with its root)
/// watching one shared cluster file, which [`Converge::publish`] replaces by atomic rename
/// as a GitOps pull would. A node counts as converged when its daemon is alive and the
/// engine finds no drift from the plan. [`Converge::stop`] ends every daemon (SIGTERM) and
/// removes the shared file; it runs before the lab is removed.
pub struct WatchConverge {
    dir: PathBuf,
    bin: PathBuf,
    daemons: std::sync::Mutex<std::collections::BTreeMap<String, std::process::Child>>,
}

/// How long one node may take to converge under its daemon.
const WATCH_CONVERGE: Duration = Duration::from_secs(30);

impl WatchConverge {
    /// The shared file lives in `state_dir/watch-PID/`.
    pub fn new(state_dir: &Path) -> Result<WatchConverge, LabError> {
        let dir = state_dir.join(format!("watch-{}", std::process::id()));
        std::fs::create_dir_all(&dir)
            .map_err(|e| LabError::io(format!("creating {}", dir.display()), e))?;
        let bin = std::env::current_exe().map_err(|e| LabError::io("finding podnet", e))?;
        Ok(WatchConverge {
            dir,
            bin,
            daemons: std::sync::Mutex::new(std::collections::BTreeMap::new()),
        })
    }

    fn shared(&self) -> PathBuf {
        self.dir.join("cluster.podnet")
    }

    fn log_tail(root: &Path) -> String {
        let text = std::fs::read_to_string(root.join("watch.log")).unwrap_or_default();
        let lines: Vec<&str> = text.lines().collect();
        lines[lines.len().saturating_sub(5)..].join("\n")
    }
}

/// Writes `bytes` to `path` through a temporary file and a rename.
fn replace(path: &Path, bytes: &[u8]) -> Result<(), LabError> {
    let tmp = path.with_extension("tmp~");
    std::fs::write(&tmp, bytes)
        .and_then(|()| std::fs::rename(&tmp, path))
        .map_err(|e| LabError::io(format!("publishing {}", path.display()), e))
}

impl Converge for WatchConverge {
    fn publish(&self, file: &Path) -> Result<(), LabError> {
        let read = |p: &Path| {
            std::fs::read(p).map_err(|e| LabError::io(format!("reading {}", p.display()), e))
        };
        // The lock first: a daemon that sees the new file reads the matching lock.
        let lock = PathBuf::from(format!("{}.lock", file.display()));
        let shared_lock = PathBuf::from(format!("{}.lock", self.shared().display()));
        if lock.exists() {
            replace(&shared_lock, &read(&lock)?)?;
        } else if shared_lock.exists() {
            let _ = std::fs::remove_file(&shared_lock);
        }
        replace(&self.shared(), &read(file)?)
    }

    fn converge(&self, node: &NodeRef<'_>, plan: &NodePlan) -> Result<Converged, LabError> {
        let start = std::time::Instant::now();
        {
            let mut daemons = self
                .daemons
                .lock()
                .map_err(|_| LabError::io("watch daemons", std::io::Error::other("poisoned")))?;
            if !daemons.contains_key(node.name) {
                let log = std::fs::File::create(node.root.join("watch.log"))
                    .map_err(|e| LabError::io("creating the daemon's log", e))?;
                let child = std::process::Command::new("ip")
                    .arg("netns")
                    .arg("exec")
                    .arg(node.ns)
                    .arg(&self.bin)
                    .arg("watch")
                    .arg(self.shared())
                    .args(["--node", node.name, "--root"])
                    .arg(node.root)
                    .args([
                        "--listen",
                        "127.0.0.1:9402",
                        "--log-format",
                        "json",
                        "--poll",
                        "1s",
                    ])
                    .stdin(std::process::Stdio::null())
                    .stdout(std::process::Stdio::null())
                    .stderr(log)
                    .spawn()
                    .map_err(|e| LabError::io("starting podnet watch", e))?;
                daemons.insert(node.name.to_string(), child);
            }
        }
        let mut last = Vec::new();
        while start.elapsed() < WATCH_CONVERGE {
            super::check_interrupt()?;
            let exited = self.daemons.lock().ok().and_then(|mut d| {
                d.get_mut(node.name)
                    .and_then(|c| c.try_wait().ok().flatten())
            });
            if let Some(status) = exited {
                return Err(LabError::NotConverged {
                    node: node.name.to_string(),
                    problems: vec![format!(
                        "podnet watch exited ({status}): {}",
                        Self::log_tail(node.root)
                    )],
                });
            }
            match leftovers(node, plan) {
                Ok(l) if l.is_empty() => {
                    return Ok(Converged {
                        changes: 0,
                        elapsed: start.elapsed(),
                    });
                }
                Ok(l) => last = l,
                // The daemon may be mid-write (a journal being replaced): look again.
                Err(e) => last = vec![e.to_string()],
            }
            std::thread::sleep(Duration::from_millis(25));
        }
        last.push(format!("daemon log: {}", Self::log_tail(node.root)));
        Err(LabError::NotConverged {
            node: node.name.to_string(),
            problems: last,
        })
    }

    fn stop(&self) {
        let mut daemons = match self.daemons.lock() {
            Ok(mut d) => std::mem::take(&mut *d),
            Err(_) => return,
        };
        for c in daemons.values() {
            let _ = nix::sys::signal::kill(
                nix::unistd::Pid::from_raw(i32::try_from(c.id()).unwrap_or(i32::MAX)),
                nix::sys::signal::Signal::SIGTERM,
            );
        }
        let deadline = std::time::Instant::now() + Duration::from_secs(5);
        for c in daemons.values_mut() {
            while std::time::Instant::now() < deadline && matches!(c.try_wait(), Ok(None)) {
                std::thread::sleep(Duration::from_millis(10));
            }
            if matches!(c.try_wait(), Ok(None)) {
                let _ = c.kill();
            }
            let _ = c.wait();
        }
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

impl Drop for WatchConverge {
    fn drop(&mut self) {
        self.stop();
    }
}
