//! What of flannel is on the node besides its kernel objects, read for `--adopt`, `plan
//! --live` and `status`: CNI configuration files that the container runtime would pick
//! before podnet's conflist (it takes the first by name), a `/run/flannel/subnet.env` the
//! plan does not write, and a flanneld still running in the target namespace. Reads only;
//! the engine journals what it takes over before removing it.

use std::collections::BTreeMap;
use std::io;
use std::os::unix::fs::MetadataExt as _;
use std::path::Path;

use podnet_compiler::plan::{NodePlan, rooted};

use crate::diff::Conflict;
use crate::journal::{self, PriorFile};

/// flanneld's subnet file, without a root.
pub const SUBNET_ENV: &str = "/run/flannel/subnet.env";

/// The file names libcni reads as network configurations.
fn is_cni_conf(name: &str) -> bool {
    [".conf", ".conflist", ".json"]
        .iter()
        .any(|e| name.ends_with(e))
}

/// Whether a CNI configuration is flannel's: its type (or one of its plugins' types) is
/// `flannel`.
fn is_flannels(content: &[u8]) -> bool {
    let Ok(v) = serde_json::from_slice::<serde_json::Value>(content) else {
        return false;
    };
    let flannel = |p: &serde_json::Value| p.get("type").and_then(|t| t.as_str()) == Some("flannel");
    flannel(&v)
        || v.get("plugins")
            .and_then(|p| p.as_array())
            .is_some_and(|a| a.iter().any(flannel))
}

/// A foreign file in podnet's way.
#[derive(Debug)]
pub struct Foreign {
    /// Rooted path.
    pub path: String,
    /// flannel's (adoptable) or someone else's (a conflict even under `--adopt`).
    pub flannel: bool,
    pub prior: PriorFile,
    /// What it does to podnet (for the conflict text).
    pub why: String,
}

/// The foreign files in the way of `plan` (rooted): configurations in the plan's CNI
/// directory that sort before its conflist, and a `subnet.env` the plan does not write.
pub fn foreign_files(plan: &NodePlan, root: Option<&Path>) -> io::Result<Vec<Foreign>> {
    let mut out = Vec::new();
    let conflist = plan.files.iter().map(|f| Path::new(&f.path)).find(|p| {
        p.file_name()
            .and_then(|n| n.to_str())
            .is_some_and(is_cni_conf)
    });
    if let Some(ours) = conflist
        && let (Some(dir), Some(name)) = (ours.parent(), ours.file_name())
    {
        let entries = match std::fs::read_dir(dir) {
            Ok(e) => e.collect::<Result<Vec<_>, _>>()?,
            Err(e) if e.kind() == io::ErrorKind::NotFound => Vec::new(),
            Err(e) => return Err(journal::context(e, format!("reading {}", dir.display()))),
        };
        let mut names: Vec<String> = entries
            .iter()
            .filter_map(|e| e.file_name().to_str().map(str::to_string))
            .filter(|n| is_cni_conf(n) && n.as_str() < name.to_str().unwrap_or_default())
            .collect();
        names.sort();
        for n in names {
            let path = dir.join(&n);
            let Some(prior) = prior(&path)? else { continue };
            out.push(Foreign {
                path: path.to_string_lossy().into_owned(),
                flannel: prior.content.as_deref().is_some_and(is_flannels),
                prior,
                why: format!(
                    "sorts before {} in {}, so the container runtime uses it instead of \
                     podnet's conflist",
                    name.to_string_lossy(),
                    dir.display()
                ),
            });
        }
    }
    let env = rooted(root, SUBNET_ENV);
    if !plan.files.iter().any(|f| f.path == env)
        && let Some(prior) = prior(Path::new(&env))?
    {
        out.push(Foreign {
            path: env,
            flannel: true,
            prior,
            why: "is flanneld's lease of this node, which podnet does not keep (it is written \
                  only with `flannel-compat on`)"
                .to_string(),
        });
    }
    Ok(out)
}

/// A regular file's (or symbolic link's) prior state; `None` when absent or not a file.
fn prior(path: &Path) -> io::Result<Option<PriorFile>> {
    let symlink = journal::symlink_target(path)
        .map_err(|e| journal::context(e, format!("reading {}", path.display())))?;
    match std::fs::metadata(path) {
        Ok(m) if m.is_file() => {}
        Ok(_) => return Ok(None),
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(journal::context(e, format!("reading {}", path.display()))),
    }
    let Some((mode, content)) = journal::read_file(path)
        .map_err(|e| journal::context(e, format!("reading {}", path.display())))?
    else {
        return Ok(None);
    };
    Ok(Some(PriorFile {
        mode: Some(mode),
        content: Some(content),
        symlink,
    }))
}

/// The conflicts of `files`: every one without `--adopt`, the ones not flannel's with it.
pub fn conflicts(files: &[Foreign], adopt: bool) -> Vec<Conflict> {
    files
        .iter()
        .filter(|f| !(adopt && f.flannel))
        .map(|f| Conflict::ForeignFile {
            path: f.path.clone(),
            why: f.why.clone(),
            adoptable: f.flannel,
        })
        .collect()
}

/// The flannel files of `files`, by path, with their prior state (what `--adopt` takes).
pub fn adoptable(files: Vec<Foreign>) -> BTreeMap<String, PriorFile> {
    files
        .into_iter()
        .filter(|f| f.flannel)
        .map(|f| (f.path, f.prior))
        .collect()
}

/// Removes the adopted files (a file already gone counts as removed).
pub fn remove_files(files: &BTreeMap<String, PriorFile>) -> io::Result<()> {
    for path in files.keys() {
        match std::fs::remove_file(path) {
            Ok(()) => {}
            Err(e) if e.kind() == io::ErrorKind::NotFound => {}
            Err(e) => return Err(journal::context(e, format!("removing {path}"))),
        }
    }
    Ok(())
}

/// Puts an adopted file back as it was (content and mode, or the symbolic link).
pub fn restore_file(path: &str, prior: &PriorFile) -> io::Result<()> {
    let p = Path::new(path);
    if let Some(target) = &prior.symlink {
        return journal::restore_symlink(p, target);
    }
    match (&prior.content, prior.mode) {
        (Some(c), Some(m)) => journal::write_atomic(p, c, m),
        _ => Ok(()),
    }
}

/// The processes named `flanneld` (by `comm` or the name of the program they run) in the
/// calling thread's network namespace, as (pid, command line).
pub fn flanneld() -> Vec<(u32, String)> {
    let Ok(here) = std::fs::metadata("/proc/thread-self/ns/net").map(|m| m.ino()) else {
        return Vec::new();
    };
    let Ok(procs) = std::fs::read_dir("/proc") else {
        return Vec::new();
    };
    let mut out = Vec::new();
    for e in procs.flatten() {
        let Some(pid) = e.file_name().to_str().and_then(|n| n.parse::<u32>().ok()) else {
            continue;
        };
        let dir = e.path();
        let comm = std::fs::read_to_string(dir.join("comm")).unwrap_or_default();
        let cmdline = std::fs::read(dir.join("cmdline")).unwrap_or_default();
        let args: Vec<String> = cmdline
            .split(|b| *b == 0)
            .filter(|a| !a.is_empty())
            .map(|a| String::from_utf8_lossy(a).into_owned())
            .collect();
        let program = args
            .first()
            .and_then(|a| Path::new(a).file_name())
            .and_then(|n| n.to_str())
            .unwrap_or_default();
        if comm.trim_end() != "flanneld" && program != "flanneld" {
            continue;
        }
        // Only a flanneld acting on this namespace matters.
        if std::fs::metadata(dir.join("ns/net")).map(|m| m.ino()).ok() != Some(here) {
            continue;
        }
        out.push((pid, args.join(" ")));
    }
    out.sort();
    out
}

/// The warnings about flannel that every command on the node prints.
pub fn warnings() -> Vec<String> {
    flanneld()
        .into_iter()
        .map(|(pid, cmd)| {
            format!(
                "flanneld is running here (pid {pid}: {cmd}): it re-creates its routes, \
                 firewall rules and subnet.env behind podnet; stop it (and its DaemonSet or \
                 service) before or right after `apply --adopt`"
            )
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn flannels_conflist_is_recognised_by_its_plugin_type() {
        assert!(is_flannels(
            br#"{"name":"cbr0","plugins":[{"type":"flannel"},{"type":"portmap"}]}"#
        ));
        assert!(is_flannels(br#"{"name":"cbr0","type":"flannel"}"#));
        assert!(!is_flannels(
            br#"{"name":"x","plugins":[{"type":"bridge"}]}"#
        ));
        assert!(!is_flannels(b"not json"));
        assert!(is_cni_conf("10-flannel.conflist") && !is_cni_conf("README"));
    }
}
