//! The state journal under `/var/lib/podnet` (prefixed by `--root`): what podnet created or is
//! about to create (write-ahead, so a crash mid-apply leaves nothing unowned), the values
//! sysctls had before podnet first set them, the prior content of files it overwrote, the
//! route protocols it used, and the last plan applied in full. Written atomically; an
//! exclusive lock beside it keeps two appliers from interleaving.

use std::collections::{BTreeMap, BTreeSet};
use std::fs::{self, File, OpenOptions};
use std::io::{self, Write as _};
use std::os::unix::fs::{OpenOptionsExt as _, PermissionsExt as _};
use std::path::{Path, PathBuf};

use anyhow::Context as _;
use podnet_compiler::plan::{NodePlan, rooted};
use serde::{Deserialize, Serialize};

/// The journal's directory, without a root.
pub const DIR: &str = "/var/lib/podnet";
const STATE: &str = "state.json";
const PLAN: &str = "plan.json";
const LOCK: &str = "lock";
const VERSION: u32 = 1;

/// A file's state before podnet first wrote it.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PriorFile {
    /// `None`: the file did not exist (teardown removes it); otherwise its mode and content
    /// (teardown writes them back).
    pub mode: Option<u32>,
    /// The bytes (any content, not only UTF-8).
    pub content: Option<Vec<u8>>,
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
    /// Links podnet created or is creating (by name): a link that crashed before getting
    /// its ifalias marker is still recognised as podnet's.
    pub links: BTreeSet<String>,
    /// Files podnet wrote (as rooted paths), with what was there before.
    pub files: BTreeMap<String, PriorFile>,
    /// The firewall drivers podnet has written here (`nftables`, `iptables`): an apply
    /// looks for the other driver's leftovers only if it is listed (or there is no journal).
    #[serde(default)]
    pub firewalls: BTreeSet<String>,
    /// Sysctl values before podnet first changed them.
    pub sysctls: BTreeMap<String, String>,
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
            links: BTreeSet::new(),
            files: BTreeMap::new(),
            firewalls: BTreeSet::new(),
            sysctls: BTreeMap::new(),
            plan_hash: None,
        }
    }
}

/// The journal's directory under `root`.
pub fn dir(root: Option<&Path>) -> PathBuf {
    PathBuf::from(rooted(root, DIR))
}

/// An exclusive lock on the journal, held until dropped.
pub struct Lock {
    _file: File,
}

/// Takes the applier lock under `root`, waiting for another applier to finish.
pub fn lock(root: Option<&Path>) -> anyhow::Result<Lock> {
    let d = dir(root);
    fs::create_dir_all(&d).with_context(|| format!("creating {}", d.display()))?;
    let path = d.join(LOCK);
    let file = OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .mode(0o600)
        .open(&path)
        .with_context(|| format!("opening {}", path.display()))?;
    file.lock()
        .with_context(|| format!("locking {}", path.display()))?;
    Ok(Lock { _file: file })
}

impl Journal {
    /// Reads the journal under `root`; `None` when there is none.
    pub fn load(root: Option<&Path>) -> anyhow::Result<Option<Journal>> {
        let path = dir(root).join(STATE);
        let text = match fs::read_to_string(&path) {
            Ok(t) => t,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(e).with_context(|| format!("reading {}", path.display())),
        };
        let j: Journal = serde_json::from_str(&text).with_context(|| {
            format!(
                "{} is not a podnet journal (move it away to start afresh)",
                path.display()
            )
        })?;
        if j.version != VERSION {
            anyhow::bail!(
                "{} has journal version {}, this podnet reads version {VERSION}",
                path.display(),
                j.version
            );
        }
        Ok(Some(j))
    }

    /// Writes the journal atomically.
    pub fn save(&self, root: Option<&Path>) -> anyhow::Result<()> {
        let path = dir(root).join(STATE);
        let text = serde_json::to_vec(self).context("encoding the journal")?;
        write_atomic(&path, &text, 0o600).with_context(|| format!("writing {}", path.display()))
    }

    /// Deletes the journal and the last plan (after a teardown).
    pub fn remove(root: Option<&Path>) -> anyhow::Result<()> {
        for name in [PLAN, STATE] {
            let path = dir(root).join(name);
            match fs::remove_file(&path) {
                Ok(()) => {}
                Err(e) if e.kind() == io::ErrorKind::NotFound => {}
                Err(e) => return Err(e).with_context(|| format!("removing {}", path.display())),
            }
        }
        Ok(())
    }

    /// Records `plan` (already encoded, with its hash) as the last plan applied.
    pub fn save_plan(
        &mut self,
        root: Option<&Path>,
        encoded: &[u8],
        hash: &str,
    ) -> anyhow::Result<()> {
        let path = dir(root).join(PLAN);
        write_atomic(&path, encoded, 0o600)
            .with_context(|| format!("writing {}", path.display()))?;
        self.plan_hash = Some(hash.to_string());
        Ok(())
    }

    /// The last plan applied in full, if any.
    pub fn load_plan(root: Option<&Path>) -> anyhow::Result<Option<NodePlan>> {
        let path = dir(root).join(PLAN);
        match fs::read(&path) {
            Ok(bytes) => serde_json::from_slice(&bytes)
                .map(Some)
                .with_context(|| format!("{} is not a podnet plan", path.display())),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(e).with_context(|| format!("reading {}", path.display())),
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

/// Writes `bytes` to `path` atomically: a temporary file in the same directory, its mode,
/// fsync, rename over `path`, fsync of the directory. Parent directories are created.
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
        j.links.insert("cni0".into());
        j.sysctls.insert("net.ipv4.ip_forward".into(), "0".into());
        j.save(root).expect("save");
        assert!(d.path().join("var/lib/podnet/state.json").exists());
        assert_eq!(Journal::load(root).expect("load"), Some(j));
        let _l = lock(root).expect("lock");
        Journal::remove(root).expect("remove");
        assert_eq!(Journal::load(root).expect("load"), None);
        fs::write(d.path().join("var/lib/podnet/state.json"), "{").expect("write");
        let e = Journal::load(root).expect_err("garbage");
        assert!(format!("{e:#}").contains("not a podnet journal"), "{e:#}");
    }
}
