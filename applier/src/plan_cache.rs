//! The compiled-plan cache of `podnet apply FILE`: compiling a 20,000-node cluster costs
//! more than comparing its plan with the kernel, so the last compiled plan is kept under
//! the journal directory, keyed by everything the compile read. A [`Recorder`] wraps the
//! compiler's file-system loader and records every call it made (file reads with a SHA-256
//! of their bytes or their error, glob expansions, identities); a lookup replays those
//! calls through the same loader and uses the cached plan only if every answer is the same,
//! the same podnet binary made it, and (without `--node`) the machine's local addresses,
//! which chose the node, are unchanged. Any difference is a miss and a full compile.

use std::cell::RefCell;
use std::io;
use std::net::Ipv4Addr;
use std::path::{Path, PathBuf};

use podnet_compiler::load::ReadError;
use podnet_compiler::plan::NodePlan;
use podnet_compiler::{FsLoader, Loader};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::journal;

const FILE: &str = "compiled.json";

/// One loader call and its answer.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
enum Call {
    Read {
        path: PathBuf,
        /// SHA-256 of the text, or the error's text.
        result: Result<String, String>,
    },
    Glob {
        pattern: PathBuf,
        result: Result<Vec<PathBuf>, String>,
    },
    Identity {
        path: PathBuf,
        result: PathBuf,
    },
}

/// The cache file (`P` is the plan, owned when read, borrowed when written).
#[derive(Debug, Serialize, Deserialize)]
struct Entry<P> {
    /// The podnet build that compiled it (version, and the executable's size and mtime).
    build: String,
    /// The cluster file applied, as given and resolved (another file never hits).
    file: (PathBuf, PathBuf),
    /// `--node` as given (`None`: chosen by the local addresses below).
    node: Option<String>,
    local: Vec<Ipv4Addr>,
    calls: Vec<Call>,
    plan: P,
}

/// A loader that answers through the file system and records what it answered.
pub struct Recorder {
    calls: RefCell<Vec<Call>>,
}

impl Default for Recorder {
    fn default() -> Self {
        Recorder::new()
    }
}

impl Recorder {
    pub fn new() -> Recorder {
        Recorder {
            calls: RefCell::new(Vec::new()),
        }
    }
}

fn digest(text: &str) -> String {
    let d = Sha256::digest(text.as_bytes());
    d.iter().map(|b| format!("{b:02x}")).collect()
}

fn answer(call: &Call) -> Call {
    let fs = FsLoader;
    match call {
        Call::Read { path, .. } => Call::Read {
            path: path.clone(),
            result: fs.read(path).map(|t| digest(&t)).map_err(|e| e.to_string()),
        },
        Call::Glob { pattern, .. } => Call::Glob {
            pattern: pattern.clone(),
            result: fs.glob(pattern),
        },
        Call::Identity { path, .. } => Call::Identity {
            path: path.clone(),
            result: fs.identity(path),
        },
    }
}

impl Loader for Recorder {
    fn read(&self, path: &Path) -> Result<String, ReadError> {
        let r = FsLoader.read(path);
        self.calls.borrow_mut().push(Call::Read {
            path: path.to_path_buf(),
            result: match &r {
                Ok(t) => Ok(digest(t)),
                Err(e) => Err(e.to_string()),
            },
        });
        r
    }

    fn glob(&self, pattern: &Path) -> Result<Vec<PathBuf>, String> {
        let r = FsLoader.glob(pattern);
        self.calls.borrow_mut().push(Call::Glob {
            pattern: pattern.to_path_buf(),
            result: r.clone(),
        });
        r
    }

    fn identity(&self, path: &Path) -> PathBuf {
        let r = FsLoader.identity(path);
        self.calls.borrow_mut().push(Call::Identity {
            path: path.to_path_buf(),
            result: r.clone(),
        });
        r
    }
}

/// What one compile read, kept by `watch` to tell whether the inputs changed.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Inputs {
    calls: Vec<Call>,
}

impl Recorder {
    /// Everything this recorder answered.
    pub fn into_inputs(self) -> Inputs {
        Inputs {
            calls: self.calls.into_inner(),
        }
    }
}

impl Inputs {
    /// The files read (or looked for) and the glob patterns expanded.
    pub fn paths(&self) -> Vec<PathBuf> {
        self.calls
            .iter()
            .filter_map(|c| match c {
                Call::Read { path, .. } => Some(path.clone()),
                Call::Glob { pattern, .. } => Some(pattern.clone()),
                Call::Identity { .. } => None,
            })
            .collect()
    }

    /// Whether any answer differs now (a file's content, a glob's matches, a file that
    /// appeared or went away): the same replay as the cache's lookup.
    pub fn changed(&self) -> bool {
        self.calls.iter().any(|c| answer(c) != *c)
    }

    /// A digest of every answer: equal digests mean equal inputs.
    pub fn fingerprint(&self) -> String {
        let text = serde_json::to_string(&self.calls).unwrap_or_default();
        digest(&text)
    }
}

/// This build of podnet.
fn build() -> String {
    let exe = std::env::current_exe()
        .and_then(std::fs::metadata)
        .map(|m| {
            use std::os::unix::fs::MetadataExt as _;
            format!("{}:{}.{}", m.len(), m.mtime(), m.mtime_nsec())
        })
        .unwrap_or_default();
    format!("{} {exe}", env!("CARGO_PKG_VERSION"))
}

/// The cluster file as given and as resolved now.
fn key(file: &Path) -> (PathBuf, PathBuf) {
    (
        file.to_path_buf(),
        std::fs::canonicalize(file).unwrap_or_else(|_| file.to_path_buf()),
    )
}

fn path(root: Option<&Path>) -> PathBuf {
    journal::dir(root).join(FILE)
}

/// The cached plan, if every input still reads the same. `local` is the machine's local
/// addresses (asked only when `node` is `None`).
pub fn lookup(
    root: Option<&Path>,
    file: &Path,
    node: Option<&str>,
    local: impl FnOnce() -> io::Result<Vec<Ipv4Addr>>,
) -> Option<NodePlan> {
    let bytes = std::fs::read(path(root)).ok()?;
    let e: Entry<NodePlan> = serde_json::from_slice(&bytes).ok()?;
    if e.build != build() || e.file != key(file) || e.node.as_deref() != node {
        return None;
    }
    if node.is_none() && local().ok()? != e.local {
        return None;
    }
    e.calls.iter().all(|c| answer(c) == *c).then_some(e.plan)
}

/// Records `plan` as compiled from what `rec` answered (written atomically; a failure only
/// means no cache).
pub fn store(
    root: Option<&Path>,
    file: &Path,
    node: Option<&str>,
    local: Vec<Ipv4Addr>,
    rec: Recorder,
    plan: &NodePlan,
) {
    let e = Entry {
        build: build(),
        file: key(file),
        node: node.map(str::to_string),
        local,
        calls: rec.calls.into_inner(),
        plan,
    };
    if let Ok(bytes) = serde_json::to_vec(&e) {
        let _ = journal::write_atomic(&path(root), &bytes, 0o600);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use podnet_compiler::plan::Planner;
    use podnet_compiler::{UseLock, compile};

    const ROOT: &str = "cluster t { pod-cidr 10.244.0.0/16; backend host-gw }
include \"racks/*.podnet\"
";

    fn compiled(file: &Path, root: &Path) -> NodePlan {
        if let Some(p) = lookup(Some(root), file, Some("a"), || Ok(Vec::new())) {
            return p;
        }
        let rec = Recorder::new();
        let c = compile(&rec, file, UseLock::IfPresent);
        let plan = Planner::new(c.valid_cluster().expect("valid"))
            .plan_named("a")
            .expect("plan");
        store(Some(root), file, Some("a"), Vec::new(), rec, &plan);
        plan
    }

    fn hit(root: &Path, file: &Path) -> bool {
        lookup(Some(root), file, Some("a"), || Ok(Vec::new())).is_some()
    }

    #[test]
    fn a_cached_plan_is_used_only_while_every_input_reads_the_same() {
        let d = tempfile::tempdir().expect("dir");
        let state = tempfile::tempdir().expect("state");
        let file = d.path().join("cluster.podnet");
        std::fs::write(&file, ROOT).expect("write");
        std::fs::create_dir(d.path().join("racks")).expect("mkdir");
        let rack = d.path().join("racks/r1.podnet");
        std::fs::write(
            &rack,
            "node a { address 10.0.0.1/24; subnet 10.244.1.0/24 }\n\
             node b { address 10.0.0.2/24; subnet 10.244.2.0/24 }\n",
        )
        .expect("write");
        assert!(!hit(state.path(), &file));
        let first = compiled(&file, state.path());
        assert!(hit(state.path(), &file), "an unchanged cluster hits");
        assert_eq!(compiled(&file, state.path()), first);
        // Another node asked for, or the node chosen by other local addresses: a miss.
        assert!(lookup(Some(state.path()), &file, Some("b"), || Ok(Vec::new())).is_none());
        assert!(lookup(Some(state.path()), &file, None, || Ok(Vec::new())).is_none());
        // Another cluster file that reads the same includes: a miss.
        let other = d.path().join("other.podnet");
        std::fs::write(&other, ROOT.replace("10.244.0.0/16", "10.245.0.0/16")).expect("write");
        assert!(!hit(state.path(), &other));
        // An included file changes.
        std::fs::write(
            &rack,
            "node a { address 10.0.0.1/24; subnet 10.244.1.0/24 }\n\
             node b { address 10.0.0.3/24; subnet 10.244.2.0/24 }\n",
        )
        .expect("write");
        assert!(!hit(state.path(), &file));
        let second = compiled(&file, state.path());
        assert_ne!(second, first);
        assert_eq!(
            second.routes[0].via,
            "10.0.0.3".parse::<Ipv4Addr>().expect("ip")
        );
        // A new file matches the include glob.
        assert!(hit(state.path(), &file));
        std::fs::write(
            d.path().join("racks/r2.podnet"),
            "node c { address 10.0.0.4/24; subnet 10.244.3.0/24 }\n",
        )
        .expect("write");
        assert!(!hit(state.path(), &file));
        assert_eq!(compiled(&file, state.path()).routes.len(), 2);
        // A lock file appears (the compile looked for one and found none).
        assert!(hit(state.path(), &file));
        std::fs::write(d.path().join("cluster.podnet.lock"), "garbage").expect("write");
        assert!(!hit(state.path(), &file));
    }
}
