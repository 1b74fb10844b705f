//! The state journal under `/var/lib/podnet` (prefixed by `--root`): what podnet created or is
//! about to create (write-ahead, so a crash mid-apply leaves nothing unowned), the values
//! sysctls had before podnet first set them, the prior content of files it overwrote, the
//! route protocols it used, the directories it created, the nft tables its firewall tools
//! created, and the last plan applied in full. Written atomically; an exclusive lock beside
//! it keeps two appliers from interleaving. Errors are `io::Error`s that name the path.

use std::collections::{BTreeMap, BTreeSet};
use std::fs::{self, File, OpenOptions};
use std::io::{self, Write as _};
use std::os::unix::fs::{OpenOptionsExt as _, PermissionsExt as _};
use std::path::{Path, PathBuf};

use podnet_compiler::plan::{FirewallDriver, LinkKind, NodePlan, rooted};
use serde::{Deserialize, Serialize};

use crate::adopt::Adopted;
use crate::diff::NodeNames;

/// The journal's directory, without a root.
pub const DIR: &str = "/var/lib/podnet";
const STATE: &str = "state.json";
const PLAN: &str = "plan.json";
/// Node names by address and subnet, as of the last compiled cluster file (so a removed
/// node's route, `status` and `teardown` still name the node).
const NODES: &str = "nodes.json";
const LOCK: &str = "lock";
const VERSION: u32 = 2;

/// A file's state before podnet first wrote it.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PriorFile {
    /// `None`: the file did not exist (teardown removes it); otherwise its mode and content
    /// (teardown writes them back).
    pub mode: Option<u32>,
    /// The bytes (any content, not only UTF-8).
    pub content: Option<Vec<u8>>,
    /// The path was a symbolic link to this target (restored as the same link; `mode` and
    /// `content` are then what it pointed to).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub symlink: Option<PathBuf>,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Journal {
    pub version: u32,
    /// The node and cluster last applied.
    pub cluster: String,
    pub node: String,
    /// Every route protocol podnet has used here (routes and nexthops carry one).
    pub protocols: BTreeSet<u8>,
    /// Links podnet created or is creating, by name, with their kind: a link that crashed
    /// before getting its ifalias marker is still recognised as podnet's (if of that kind).
    pub links: BTreeMap<String, LinkKind>,
    /// Names of links whose create is in flight (recorded before the create, cleared once
    /// the link stage saw the result). Only these may be claimed without the ifalias
    /// marker: a foreign link that later takes a planned name is never podnet's.
    #[serde(default, skip_serializing_if = "BTreeSet::is_empty")]
    pub creating: BTreeSet<String>,
    /// Files podnet wrote (as rooted paths), with what was there before.
    pub files: BTreeMap<String, PriorFile>,
    /// Directories podnet created for its files (removed by teardown when empty).
    #[serde(default)]
    pub dirs: BTreeSet<PathBuf>,
    /// The firewall drivers podnet has written here: an apply looks for the other driver's
    /// leftovers only if it is listed (or there is no journal).
    #[serde(default)]
    pub firewalls: BTreeSet<FirewallDriver>,
    /// nftables tables (`ip nat`, `ip filter`) that did not exist before podnet's iptables
    /// driver wrote through iptables-nft, which creates them: teardown removes them when
    /// nothing else is left in them.
    #[serde(default)]
    pub tool_tables: BTreeSet<String>,
    /// Sysctl values before podnet first changed them.
    pub sysctls: BTreeMap<String, String>,
    /// Foreign objects `apply --adopt` took over in place, with their state before
    /// (recorded before the first change; teardown puts that state back).
    #[serde(default, skip_serializing_if = "Adopted::is_empty")]
    pub adopted: Adopted,
    /// A hash of the last plan applied and verified in full, which is kept beside the
    /// journal in `plan.json` (read by `status`; the journal itself stays small, so the
    /// no-op apply does not parse a 20,000-route plan twice).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub plan_hash: Option<String>,
}

impl Default for Journal {
    /// A fresh journal of the current version (nothing recorded yet).
    fn default() -> Journal {
        Journal {
            version: VERSION,
            cluster: String::new(),
            node: String::new(),
            protocols: BTreeSet::new(),
            links: BTreeMap::new(),
            creating: BTreeSet::new(),
            files: BTreeMap::new(),
            dirs: BTreeSet::new(),
            firewalls: BTreeSet::new(),
            tool_tables: BTreeSet::new(),
            sysctls: BTreeMap::new(),
            adopted: Adopted::default(),
            plan_hash: None,
        }
    }
}

/// The journal's directory under `root`.
pub fn dir(root: Option<&Path>) -> PathBuf {
    PathBuf::from(rooted(root, DIR))
}

/// The node names recorded by [`save_node_names`] (empty when there are none or the file
/// cannot be read: names only label the output).
pub fn load_node_names(root: Option<&Path>) -> NodeNames {
    let mut names = NodeNames::default();
    let Ok(text) = fs::read_to_string(dir(root).join(NODES)) else {
        return names;
    };
    let Ok(entries) = serde_json::from_str::<Vec<NodeEntry>>(&text) else {
        return names;
    };
    for e in entries {
        if let Some(a) = e.address {
            names.insert(&e.name, a, e.subnet);
        }
    }
    names
}

/// Records `names` (merged with those recorded before, the new ones first) beside the
/// journal.
pub fn save_node_names(root: Option<&Path>, names: &NodeNames) -> io::Result<()> {
    let mut all = names.clone();
    all.merge(load_node_names(root));
    let entries: Vec<NodeEntry> = all
        .entries()
        .into_iter()
        .map(|(name, address, subnet)| NodeEntry {
            name,
            address,
            subnet,
        })
        .collect();
    let text = serde_json::to_vec(&entries).map_err(io::Error::other)?;
    let path = dir(root).join(NODES);
    write_atomic(&path, &text, 0o644).map_err(|e| context(e, format!("writing {}", path.display())))
}

#[derive(Serialize, Deserialize)]
struct NodeEntry {
    name: String,
    address: Option<std::net::Ipv4Addr>,
    subnet: Option<ipnet::Ipv4Net>,
}

/// An exclusive lock on the journal, held until dropped.
pub struct Lock {
    _file: File,
}

/// An `io::Error` of the same kind whose message names what was being done.
pub fn context(e: io::Error, what: impl std::fmt::Display) -> io::Error {
    io::Error::new(e.kind(), format!("{what}: {e}"))
}

/// Takes the applier lock under `root`, waiting for another applier to finish.
pub fn lock(root: Option<&Path>) -> io::Result<Lock> {
    let d = dir(root);
    fs::create_dir_all(&d).map_err(|e| context(e, format!("creating {}", d.display())))?;
    let path = d.join(LOCK);
    let file = OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .mode(0o600)
        .open(&path)
        .map_err(|e| context(e, format!("opening {}", path.display())))?;
    file.lock()
        .map_err(|e| context(e, format!("locking {}", path.display())))?;
    Ok(Lock { _file: file })
}

impl Journal {
    /// Reads the journal under `root`; `None` when there is none.
    pub fn load(root: Option<&Path>) -> io::Result<Option<Journal>> {
        let path = dir(root).join(STATE);
        let text = match fs::read_to_string(&path) {
            Ok(t) => t,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(context(e, format!("reading {}", path.display()))),
        };
        let invalid = |why: String| io::Error::new(io::ErrorKind::InvalidData, why);
        let version = serde_json::from_str::<serde_json::Value>(&text)
            .ok()
            .and_then(|v| v.get("version").and_then(serde_json::Value::as_u64));
        if let Some(v) = version
            && v != u64::from(VERSION)
        {
            return Err(invalid(format!(
                "{} has journal version {v}, this podnet reads version {VERSION} (tear the \
                 node down with the podnet that wrote it, then apply again)",
                path.display()
            )));
        }
        let j: Journal = serde_json::from_str(&text).map_err(|e| {
            invalid(format!(
                "{} is not a podnet journal ({e}; move it away to start afresh)",
                path.display()
            ))
        })?;
        Ok(Some(j))
    }

    /// Writes the journal atomically.
    pub fn save(&self, root: Option<&Path>) -> io::Result<()> {
        let path = dir(root).join(STATE);
        let text = serde_json::to_vec(self).map_err(io::Error::other)?;
        write_atomic(&path, &text, 0o600)
            .map_err(|e| context(e, format!("writing {}", path.display())))
    }

    /// Deletes the journal and the last plan (after a teardown).
    pub fn remove(root: Option<&Path>) -> io::Result<()> {
        for name in [PLAN, STATE, NODES] {
            let path = dir(root).join(name);
            match fs::remove_file(&path) {
                Ok(()) => {}
                Err(e) if e.kind() == io::ErrorKind::NotFound => {}
                Err(e) => return Err(context(e, format!("removing {}", path.display()))),
            }
        }
        Ok(())
    }

    /// Records `plan` (already encoded, with its hash) as the last plan applied.
    pub fn save_plan(&mut self, root: Option<&Path>, encoded: &[u8], hash: &str) -> io::Result<()> {
        let path = dir(root).join(PLAN);
        write_atomic(&path, encoded, 0o600)
            .map_err(|e| context(e, format!("writing {}", path.display())))?;
        self.plan_hash = Some(hash.to_string());
        Ok(())
    }

    /// The last plan applied in full, if any.
    pub fn load_plan(root: Option<&Path>) -> io::Result<Option<NodePlan>> {
        let path = dir(root).join(PLAN);
        match fs::read(&path) {
            Ok(bytes) => serde_json::from_slice(&bytes).map(Some).map_err(|e| {
                io::Error::new(
                    io::ErrorKind::InvalidData,
                    format!("{} is not a podnet plan: {e}", path.display()),
                )
            }),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(context(e, format!("reading {}", path.display()))),
        }
    }
}

/// A hash of a plan (to tell whether the recorded plan changed without encoding it: a
/// 20,000-node plan takes longer to encode than to compare with the kernel). Fixed seeds,
/// so equal plans hash equal across runs of one podnet build.
pub fn plan_hash(plan: &NodePlan) -> String {
    let h = ahash::RandomState::with_seeds(0x706f_646e, 0x6574, 0x706c_616e, 0x6861_7368)
        .hash_one(plan);
    format!("{h:016x}")
}

/// The directories `create_dir_all(path)` would create, outermost first.
pub fn missing_dirs(path: &Path) -> Vec<PathBuf> {
    let mut out: Vec<PathBuf> = path
        .ancestors()
        .take_while(|a| !a.as_os_str().is_empty() && fs::symlink_metadata(a).is_err())
        .map(Path::to_path_buf)
        .collect();
    out.reverse();
    out
}

/// Writes `bytes` to `path` atomically: a temporary file in the same directory, its mode,
/// fsync, rename over `path` (a symbolic link at `path` is replaced, not followed), fsync of
/// the directory. Parent directories are created.
pub fn write_atomic(path: &Path, bytes: &[u8], mode: u32) -> io::Result<()> {
    let parent = match path.parent() {
        Some(p) if !p.as_os_str().is_empty() => p,
        _ => Path::new("."),
    };
    fs::create_dir_all(parent)?;
    let name = path
        .file_name()
        .ok_or_else(|| io::Error::new(io::ErrorKind::InvalidInput, "path has no file name"))?;
    let tmp = parent.join(format!(
        ".{}.podnet-{}",
        name.to_string_lossy(),
        std::process::id()
    ));
    let result = (|| {
        let mut f = OpenOptions::new()
            .create(true)
            .truncate(true)
            .write(true)
            .mode(mode)
            .open(&tmp)?;
        f.write_all(bytes)?;
        // The umask may have narrowed the mode given at creation.
        f.set_permissions(fs::Permissions::from_mode(mode))?;
        f.sync_all()?;
        fs::rename(&tmp, path)?;
        File::open(parent)?.sync_all()
    })();
    if result.is_err() {
        let _ = fs::remove_file(&tmp);
    }
    result
}

/// Where `path` points if it is a symbolic link.
pub fn symlink_target(path: &Path) -> io::Result<Option<PathBuf>> {
    match fs::symlink_metadata(path) {
        Ok(m) if m.file_type().is_symlink() => fs::read_link(path).map(Some),
        Ok(_) => Ok(None),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(e),
    }
}

/// Puts back a symbolic link at `path` pointing to `target` (atomically, by rename).
pub fn restore_symlink(path: &Path, target: &Path) -> io::Result<()> {
    let parent = path.parent().unwrap_or(Path::new("."));
    let name = path
        .file_name()
        .ok_or_else(|| io::Error::new(io::ErrorKind::InvalidInput, "path has no file name"))?;
    let tmp = parent.join(format!(
        ".{}.podnet-link-{}",
        name.to_string_lossy(),
        std::process::id()
    ));
    let _ = fs::remove_file(&tmp);
    std::os::unix::fs::symlink(target, &tmp)?;
    if let Err(e) = fs::rename(&tmp, path) {
        let _ = fs::remove_file(&tmp);
        return Err(e);
    }
    File::open(parent)?.sync_all()
}

/// Reads a file's mode and content; `None` when it does not exist.
pub fn read_file(path: &Path) -> io::Result<Option<(u32, Vec<u8>)>> {
    match fs::read(path) {
        Ok(content) => {
            let mode = fs::metadata(path)?.permissions().mode() & 0o7777;
            Ok(Some((mode, content)))
        }
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(e),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn atomic_write_sets_mode_and_replaces() {
        let d = tempfile::tempdir().expect("tempdir");
        let p = d.path().join("a/b/c.conf");
        write_atomic(&p, b"one", 0o644).expect("write");
        write_atomic(&p, b"two", 0o600).expect("rewrite");
        assert_eq!(read_file(&p).expect("read"), Some((0o600, b"two".to_vec())));
        let names: Vec<_> = fs::read_dir(p.parent().expect("parent"))
            .expect("dir")
            .map(|e| e.expect("entry").file_name())
            .collect();
        assert_eq!(names.len(), 1, "no temporary file left: {names:?}");
        assert_eq!(read_file(&d.path().join("nope")).expect("read"), None);
    }

    #[test]
    fn journal_round_trips_under_a_root() {
        let d = tempfile::tempdir().expect("tempdir");
        let root = Some(d.path());
        assert_eq!(Journal::load(root).expect("load"), None);
        let mut j = Journal {
            node: "n1".into(),
            ..Journal::default()
        };
        j.protocols.insert(77);
        j.links.insert("cni0".into(), LinkKind::Bridge);
        j.sysctls.insert("net.ipv4.ip_forward".into(), "0".into());
        j.save(root).expect("save");
        // A journal without adoptions does not mention them (older podnets read it).
        let text = fs::read_to_string(d.path().join("var/lib/podnet/state.json")).expect("read");
        assert!(!text.contains("adopted"), "{text}");
        j.adopted.routes.insert(
            "10.244.2.0/24".parse().expect("net"),
            crate::adopt::PriorRoute {
                via: "10.244.2.0".parse().expect("ip"),
                dev: "flannel.1".into(),
                onlink: true,
                protocol: 3,
            },
        );
        j.save(root).expect("save");
        assert_eq!(Journal::load(root).expect("load"), Some(j.clone()));
        assert!(d.path().join("var/lib/podnet/state.json").exists());
        assert_eq!(Journal::load(root).expect("load"), Some(j));
        let _l = lock(root).expect("lock");
        Journal::remove(root).expect("remove");
        assert_eq!(Journal::load(root).expect("load"), None);
        fs::write(d.path().join("var/lib/podnet/state.json"), "{").expect("write");
        let e = Journal::load(root).expect_err("garbage");
        assert!(e.to_string().contains("not a podnet journal"), "{e}");
        fs::write(
            d.path().join("var/lib/podnet/state.json"),
            r#"{"version":1}"#,
        )
        .expect("write");
        let e = Journal::load(root).expect_err("old version");
        assert!(e.to_string().contains("journal version 1"), "{e}");
    }
}
