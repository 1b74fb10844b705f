//! The daemon's config: compiling the cluster file for this node (recording every input
//! the compile read), the directories to watch for it (the parent directories of the file,
//! its includes and its lock — never the files: an editor saves by rename and a ConfigMap
//! volume swaps its `..data` symlink, both of which leave a watch on the file itself on a
//! dead inode), the watcher that turns any event there into a hint for the loop, and the
//! refusal of a ConfigMap `subPath` mount (a single-file bind mount never updates).

use std::collections::BTreeSet;
use std::path::{Component, Path, PathBuf};
use std::sync::mpsc::Sender;

use notify::{EventKind, RecommendedWatcher, RecursiveMode, Watcher as _};
use podnet_compiler::plan::{NodePlan, Planner};
use podnet_compiler::{UseLock, compile};

use crate::commands::apply::{local_addresses, local_node};
use crate::kernel::netns::Target;
use crate::plan_cache::{Inputs, Recorder};
use crate::report;

/// A compiled config.
#[derive(Clone, Debug)]
pub struct Compiled {
    /// Shared with the daemon's "applied" plan: one copy of a 20,000-node plan, not two.
    pub plan: std::sync::Arc<NodePlan>,
    pub inputs: Inputs,
    /// Digest of every input as read.
    pub fingerprint: String,
}

/// Why a config could not be used (the last good plan stays applied).
#[derive(Clone, Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ConfigError {
    /// The compiler found errors (rendered with their locations and hints).
    #[error("the cluster file has errors ({summary}):\n{rendered}")]
    Invalid {
        summary: String,
        rendered: String,
        inputs: Inputs,
    },
    /// This machine's node could not be chosen or planned.
    #[error("{message}")]
    Node { message: String, inputs: Inputs },
}

impl ConfigError {
    /// What the failed compile read (watched like a good config's inputs).
    pub fn inputs(&self) -> &Inputs {
        match self {
            ConfigError::Invalid { inputs, .. } | ConfigError::Node { inputs, .. } => inputs,
        }
    }

    /// A short reason for `/readyz` and the logs' one-line field.
    pub fn reason(&self) -> String {
        match self {
            ConfigError::Invalid { summary, .. } => format!("invalid config: {summary}"),
            ConfigError::Node { message, .. } => format!("invalid config: {message}"),
        }
    }
}

/// Compiles `file` (with its lock when present) and plans `node` (default: the node whose
/// address is local in `ns`).
pub fn load(file: &Path, node: Option<&str>, ns: &Target) -> Result<Compiled, ConfigError> {
    let rec = Recorder::new();
    let c = compile(&rec, file, UseLock::IfPresent);
    let Some(cluster) = c.valid_cluster() else {
        let summary = report::summary(&c.diagnostics).unwrap_or_else(|| "errors".into());
        let rendered = report::render(&c.sources, &c.diagnostics);
        return Err(ConfigError::Invalid {
            summary,
            rendered,
            inputs: rec.into_inputs(),
        });
    };
    let planner = Planner::new(cluster);
    let chosen = match node {
        Some(n) => Ok(n.to_string()),
        None => local_addresses(ns)
            .map_err(anyhow::Error::from)
            .and_then(|local| local_node(cluster, &local)),
    };
    let planned = chosen.map_err(|e| format!("{e:#}")).and_then(|name| {
        planner
            .index_of(&name)
            .and_then(|i| planner.plan(i))
            .map_err(|d| report::render(&c.sources, &[d]))
    });
    let inputs = rec.into_inputs();
    match planned {
        Ok(plan) => {
            let fingerprint = inputs.fingerprint();
            Ok(Compiled {
                plan: std::sync::Arc::new(plan),
                inputs,
                fingerprint,
            })
        }
        Err(message) => Err(ConfigError::Node {
            message: message.trim_end().to_string(),
            inputs,
        }),
    }
}

/// The directories to watch for `file` and what its compile read: each input's parent
/// directory (as given, not resolved), and for a glob the directory before its first
/// pattern character (recursively).
pub fn dirs(file: &Path, inputs: &Inputs) -> BTreeSet<(PathBuf, RecursiveMode)> {
    let mut out = BTreeSet::new();
    let mut add = |p: &Path| {
        let glob_at = p
            .components()
            .position(|c| matches!(c, Component::Normal(s) if s.to_string_lossy().contains(['*', '?', '[', '{'])));
        match glob_at {
            Some(i) => {
                let base: PathBuf = p.components().take(i).collect();
                out.insert((dir_or_dot(&base), RecursiveMode::Recursive));
            }
            None => {
                let parent = p
                    .parent()
                    .map(dir_or_dot)
                    .unwrap_or_else(|| PathBuf::from("."));
                out.insert((parent, RecursiveMode::NonRecursive));
            }
        }
    };
    add(file);
    for p in inputs.paths() {
        add(&p);
    }
    // A directory watched recursively covers the same directory watched flat.
    let recursive: Vec<PathBuf> = out
        .iter()
        .filter(|(_, m)| *m == RecursiveMode::Recursive)
        .map(|(p, _)| p.clone())
        .collect();
    out.retain(|(p, m)| *m == RecursiveMode::Recursive || !recursive.contains(p));
    out
}

fn dir_or_dot(p: &Path) -> PathBuf {
    if p.as_os_str().is_empty() {
        PathBuf::from(".")
    } else {
        p.to_path_buf()
    }
}

/// Whether `file` is itself a mount point (how a ConfigMap `subPath` mount looks): such a
/// file never sees the ConfigMap's updates. Returns the refusal's text.
pub fn single_file_mount(file: &Path) -> Option<String> {
    let resolved = std::fs::canonicalize(file).ok()?;
    let info = std::fs::read_to_string("/proc/self/mountinfo").ok()?;
    let is_mount = info.lines().any(|line| {
        line.split(' ')
            .nth(4)
            .is_some_and(|m| unescape(m) == resolved.to_string_lossy())
    });
    is_mount.then(|| {
        format!(
            "{} is a single-file mount (a Kubernetes ConfigMap mounted with subPath): it never \
             sees an update; mount the ConfigMap as a directory and point podnet at the file in it",
            file.display()
        )
    })
}

/// mountinfo escapes space, tab, newline and backslash as `\ooo`.
fn unescape(s: &str) -> String {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'\\'
            && let Some(v) = b
                .get(i + 1..i + 4)
                .and_then(|o| std::str::from_utf8(o).ok())
                .and_then(|o| u8::from_str_radix(o, 8).ok())
        {
            out.push(v);
            i += 4;
            continue;
        }
        out.push(b[i]);
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// Watches directories and sends `hint()` for every non-access event in them.
pub struct DirWatcher {
    inner: RecommendedWatcher,
    watched: BTreeSet<(PathBuf, RecursiveMode)>,
}

impl DirWatcher {
    pub fn new<T: Send + 'static>(tx: Sender<T>, hint: fn() -> T) -> notify::Result<DirWatcher> {
        let inner = notify::recommended_watcher(move |r: notify::Result<notify::Event>| {
            let relevant = match &r {
                Ok(e) => !matches!(e.kind, EventKind::Access(_)),
                // An error (e.g. the queue overflowed): re-read to be safe.
                Err(_) => true,
            };
            if relevant {
                let _ = tx.send(hint());
            }
        })?;
        Ok(DirWatcher {
            inner,
            watched: BTreeSet::new(),
        })
    }

    /// Watches exactly `dirs` from now on; returns the ones that could not be watched
    /// (missing directories: the slow poll covers them).
    pub fn set(&mut self, dirs: BTreeSet<(PathBuf, RecursiveMode)>) -> Vec<(PathBuf, String)> {
        for (d, _) in self.watched.difference(&dirs) {
            let _ = self.inner.unwatch(d);
        }
        let mut failed = Vec::new();
        let mut now = BTreeSet::new();
        // Every directory is (re-)watched: one that was deleted and made again lost its
        // watch in the kernel without a word.
        for (d, mode) in dirs {
            match self.inner.watch(&d, mode) {
                Ok(()) => {
                    now.insert((d, mode));
                }
                Err(e) => failed.push((d, e.to_string())),
            }
        }
        self.watched = now;
        failed
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mountinfo_escapes() {
        assert_eq!(unescape(r"/a\040b/c"), "/a b/c");
        assert_eq!(unescape(r"/x\"), r"/x\");
    }

    #[test]
    fn watched_directories() {
        let inputs = Inputs::default();
        let d = dirs(Path::new("/etc/podnet/cluster.podnet"), &inputs);
        assert_eq!(
            d.into_iter().collect::<Vec<_>>(),
            vec![(PathBuf::from("/etc/podnet"), RecursiveMode::NonRecursive)]
        );
        let d = dirs(Path::new("cluster.podnet"), &inputs);
        assert_eq!(d.len(), 1);
        assert!(d.contains(&(PathBuf::from("."), RecursiveMode::NonRecursive)));
    }
}
