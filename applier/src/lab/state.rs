//! The lab's state file, `STATE_DIR/ID/state.json`: every namespace the lab may make
//! (written before the first is made), the process running it and whether it was kept.
//! `podnet lab down` removes labs from it; it never touches a namespace it does not list.

use std::io;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use super::{LabError, netns};

const FILE: &str = "state.json";

/// One lab, as recorded.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct State {
    pub id: String,
    pub cluster: String,
    /// The process running the lab (0 once kept).
    pub pid: u32,
    pub kept: bool,
    /// Every namespace the lab may make, in creation order.
    pub namespaces: Vec<String>,
}

impl State {
    pub fn new(id: &str, cluster: &str, namespaces: Vec<String>) -> State {
        State {
            id: id.to_string(),
            cluster: cluster.to_string(),
            pid: std::process::id(),
            kept: false,
            namespaces,
        }
    }

    /// Whether the process that made it is gone (it crashed, was killed, or kept the lab).
    pub fn abandoned(&self) -> bool {
        self.kept || self.pid == 0 || !Path::new(&format!("/proc/{}", self.pid)).exists()
    }
}

/// Writes the state file atomically (temporary file, rename), creating the directory.
pub fn write(dir: &Path, s: &State) -> Result<(), LabError> {
    let what = |e| LabError::io(format!("writing {}", dir.join(FILE).display()), e);
    std::fs::create_dir_all(dir).map_err(what)?;
    let text = serde_json::to_string_pretty(s).map_err(|e| what(io::Error::other(e)))?;
    let tmp = dir.join(".state.json.tmp");
    std::fs::write(&tmp, text).map_err(what)?;
    std::fs::rename(&tmp, dir.join(FILE)).map_err(what)
}

pub fn read(dir: &Path) -> Result<State, LabError> {
    let p = dir.join(FILE);
    let what = |e| LabError::io(format!("reading {}", p.display()), e);
    let text = std::fs::read_to_string(&p).map_err(what)?;
    serde_json::from_str(&text).map_err(|e| what(io::Error::new(io::ErrorKind::InvalidData, e)))
}

/// Removes a lab's directory (state file, node roots, CNI leases).
pub fn remove(dir: &Path) -> Result<(), LabError> {
    match std::fs::remove_dir_all(dir) {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(LabError::io(format!("removing {}", dir.display()), e)),
    }
}

/// The labs recorded under `state_dir`.
pub fn list(state_dir: &Path) -> Result<Vec<(PathBuf, State)>, LabError> {
    let entries = match std::fs::read_dir(state_dir) {
        Ok(e) => e,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => return Err(LabError::io(format!("reading {}", state_dir.display()), e)),
    };
    let mut out = Vec::new();
    for e in entries.flatten() {
        let dir = e.path();
        if dir.join(FILE).is_file() {
            out.push((dir.clone(), read(&dir)?));
        }
    }
    out.sort_by(|a, b| a.1.id.cmp(&b.1.id));
    Ok(out)
}

/// Removes lab `id`, or (without one) every lab whose process is gone; a lab still run by
/// a live process is removed only when named. Returns the ids removed.
pub fn down(state_dir: &Path, id: Option<&str>) -> Result<Vec<String>, LabError> {
    let labs = list(state_dir)?;
    if let Some(id) = id
        && !labs.iter().any(|(_, s)| s.id == id)
    {
        return Err(LabError::io(
            format!("lab {id}"),
            io::Error::new(
                io::ErrorKind::NotFound,
                format!("no such lab under {}", state_dir.display()),
            ),
        ));
    }
    let mut removed = Vec::new();
    let mut errors = Vec::new();
    for (dir, s) in labs {
        let chosen = match id {
            Some(id) => s.id == id,
            None => s.abandoned(),
        };
        if !chosen {
            continue;
        }
        let mut ok = true;
        for n in s.namespaces.iter().rev() {
            if let Err(e) = netns::delete(n) {
                ok = false;
                errors.push(LabError::io(format!("deleting namespace {n}"), e));
            }
        }
        if ok {
            remove(&dir)?;
            removed.push(s.id);
        }
    }
    match errors.len() {
        0 => Ok(removed),
        1 => Err(errors.remove(0)),
        _ => Err(LabError::Nodes(errors)),
    }
}
