//! `Engine::teardown`: the diff against an empty plan (every owned kernel object, every
//! file podnet wrote put back as it was, symbolic links included), the journal's prior
//! sysctl values, the firewall state of the drivers podnet used, the nft tables its tools
//! created and the directories it created; then the journal goes. Best effort: every
//! failure is reported, and the journal stays until nothing is left.

use std::path::{Path, PathBuf};

use podnet_compiler::lower::defaults::{CNI_DIR, CNI_FILE, ROUTE_PROTOCOL};
use podnet_compiler::plan::{FirewallDriver, rooted};

use super::reconcile::nft_table_exists;
use super::{Engine, EngineError, FirewallMode, empty_plan, preflight};
use crate::adopt::{self, Adopted};
use crate::diff::routes::RouteOp;
use crate::diff::{Diff, Observed, Op, diff};
use crate::execute::{self, Failure};
use crate::firewall::{Driver, Exec, Firewall};
use crate::journal::{self, Journal};
use crate::kernel::addr::Addr;
use crate::kernel::link::LinkChange;
use crate::kernel::neigh::{Fdb, Neigh};
use crate::kernel::nl::NlSocket;
use crate::observe::{self, Scope};

/// What a teardown did.
#[derive(Debug)]
pub struct TornDown {
    /// Everything removed or restored (kernel objects, files, sysctls).
    pub changes: Diff,
    /// Adopted flannel objects put back besides the kernel's (files, firewall chains).
    pub restored: Vec<String>,
    /// Firewall objects removed (`table inet podnet`, `nat chain PODNET-POSTRTG`, …).
    pub firewall: Vec<String>,
    /// Directories podnet had created, removed.
    pub dirs: Vec<PathBuf>,
    pub failures: Vec<Failure>,
    /// Owned objects still present afterwards (empty on success).
    pub remaining: Diff,
    /// Whether podnet had a journal here.
    pub journaled: bool,
    /// Without a journal: what could not be restored because its prior state is unknown.
    pub unrestored: Vec<String>,
    /// Without a journal: state that could not even be looked for (a firewall driver whose
    /// tool is missing; podnet never writes through a driver whose tool is missing).
    pub unchecked: Vec<String>,
}

impl TornDown {
    /// Nothing podnet owns is left and nothing it changed stays unrestored.
    pub fn complete(&self) -> bool {
        self.failures.is_empty() && self.remaining.is_empty() && self.unrestored.is_empty()
    }
}

impl Engine {
    /// Removes everything podnet owns here and puts back what it changed.
    pub fn teardown(&mut self) -> Result<TornDown, EngineError> {
        let root = self.root.clone();
        let loaded = self.journal.clone();
        let firewall = self.firewall;
        let target = self.target.clone();
        self.applied = None;
        let t = target.run(|| run(root.as_deref(), loaded.as_ref(), firewall))??;
        if t.failures.is_empty() && t.remaining.is_empty() {
            self.journal = None;
        }
        Ok(t)
    }
}

fn run(
    root: Option<&Path>,
    loaded: Option<&Journal>,
    firewall: FirewallMode,
) -> Result<TornDown, EngineError> {
    let j = loaded.cloned().unwrap_or_default();
    let protocol = j.protocols.iter().next().copied().unwrap_or(ROUTE_PROTOCOL);
    let nothing = empty_plan(protocol);
    let mut sock = NlSocket::new()?;
    let scope = Scope { journal: Some(&j) };
    let obs = observe::observe(&mut sock, None, scope, protocol)?;
    let mut d = diff(&nothing, &obs);
    give_back(&mut d, &j.adopted, &obs);
    for (key, value) in &j.sysctls {
        d.ops.push(Op::Sysctl {
            key: key.clone(),
            value: value.clone(),
            was: observe::read_sysctl(key)?,
        });
    }
    let changes = d.clone();
    // flannel's files first: the runtime always finds a conflist.
    let mut restored = Vec::new();
    let mut failures = Vec::new();
    for (path, prior) in &j.adopted.files {
        match super::takeover::restore_file(path, prior) {
            Ok(()) => restored.push(format!("file {path} (flannel's, given back)")),
            Err(e) => failures.push(failure(format!("~ file {path}"), e.to_string())),
        }
    }
    let r = execute::execute(&mut sock, &d, &d.ops)?;
    failures.extend(r.failures);
    for (path, prior) in &j.files {
        if let Some(target) = &prior.symlink
            && let Err(e) = journal::restore_symlink(Path::new(path), target)
        {
            failures.push(failure(
                format!("~ file {path} (symbolic link to {})", target.display()),
                e.to_string(),
            ));
        }
    }
    let mut removed_fw = Vec::new();
    let mut unrestored = Vec::new();
    let mut unchecked = Vec::new();
    if firewall == FirewallMode::Managed {
        let drivers: Vec<FirewallDriver> = match loaded {
            Some(j) => j.firewalls.iter().copied().collect(),
            None => vec![FirewallDriver::Nftables, FirewallDriver::Iptables],
        };
        let tools = Firewall::new(Exec::Host);
        // flannel's rules back before podnet's go, so traffic is always masqueraded.
        if !j.adopted.firewall.is_empty() {
            match crate::firewall::flannel::restore(&Exec::Host, &j.adopted.firewall) {
                Ok(lines) => restored.extend(lines.into_iter().map(|l| format!("{l} (flannel's)"))),
                Err(e) => {
                    failures.push(failure("~ firewall (flannel's)".to_string(), e.to_string()))
                }
            }
        }
        for driver in drivers {
            if let Some(t) = preflight::missing_tool(driver) {
                if loaded.is_some() {
                    failures.push(failure(
                        format!("- firewall {}", name(driver)),
                        t.to_string(),
                    ));
                } else {
                    unchecked.push(format!(
                        "the {} firewall state (`{}` is not installed to look for it)",
                        name(driver),
                        t.program
                    ));
                }
                continue;
            }
            match tools.driver(Driver::from(driver)).and_then(|d| d.remove()) {
                Ok(report) => removed_fw.extend(report.removed),
                Err(e) => failures.push(failure(
                    format!("- firewall {}", name(driver)),
                    e.to_string(),
                )),
            }
        }
        for table in &j.tool_tables {
            match remove_if_unused(table) {
                Ok(true) => removed_fw.push(format!("table {table} (created by iptables-nft)")),
                Ok(false) => {}
                Err(e) => failures.push(failure(format!("- table {table}"), e)),
            }
        }
    }
    let mut dirs: Vec<&PathBuf> = j.dirs.iter().collect();
    // Deepest first.
    dirs.sort_by_key(|d| std::cmp::Reverse(d.components().count()));
    let mut removed_dirs = Vec::new();
    for dir in dirs {
        match std::fs::remove_dir(dir) {
            Ok(()) => removed_dirs.push(dir.clone()),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            // Something else keeps files there now: the directory is theirs too.
            Err(e) if e.raw_os_error() == Some(libc::ENOTEMPTY) => {}
            Err(e) => failures.push(failure(
                format!("- directory {}", dir.display()),
                e.to_string(),
            )),
        }
    }
    if loaded.is_none() {
        unrestored.extend(unknown_priors(root)?);
    }
    // What was given back is no longer podnet's (it has no marker, and its routes have
    // their prior protocol again).
    let given_back = Journal {
        adopted: Adopted::default(),
        ..j.clone()
    };
    let after = Scope {
        journal: Some(&given_back),
    };
    let remaining = diff(
        &nothing,
        &observe::observe(&mut sock, None, after, protocol)?,
    );
    if failures.is_empty() && remaining.is_empty() {
        Journal::remove(root)?;
    }
    Ok(TornDown {
        changes,
        restored,
        firewall: removed_fw,
        dirs: removed_dirs,
        failures,
        remaining,
        journaled: loaded.is_some(),
        unrestored,
        unchecked,
    })
}

/// Adopted objects are given back instead of deleted: each adopted link gets its prior
/// attributes and addresses back (without podnet's marker), each adopted route is replaced
/// in place by the route it was (its gateway, device, onlink flag and protocol).
fn give_back(d: &mut Diff, adopted: &Adopted, obs: &Observed) {
    if adopted.is_empty() {
        return;
    }
    let index_of = |name: &str| obs.links.iter().find(|l| l.name == name).map(|l| l.index);
    let mut restores = Vec::new();
    d.ops.retain_mut(|op| match op {
        Op::LinkDelete { index, name, .. } => {
            let Some(prior) = adopted.links.get(name.as_str()) else {
                return true;
            };
            let index = *index;
            let Some(have) = obs.links.iter().find(|l| l.index == index) else {
                return true;
            };
            let change = LinkChange {
                alias: Some(prior.alias.clone().unwrap_or_default()),
                mtu: (have.mtu != prior.mtu).then_some(prior.mtu),
                mac: prior.mac.filter(|m| have.mac != Some(*m)),
                up: (have.up != prior.up).then_some(prior.up),
            };
            let now: Vec<&Addr> = obs.addrs.iter().filter(|a| a.index == index).collect();
            for a in &prior.addresses {
                if !now.iter().any(|n| n.address == *a) {
                    restores.push(Op::AddrReplace(Addr { index, address: *a }));
                }
            }
            for n in now {
                if !prior.addresses.contains(&n.address) {
                    restores.push(Op::AddrDelete(n.clone()));
                }
            }
            if prior.vxlan.is_some() {
                tables(&mut restores, index, prior, obs);
            }
            restores.push(Op::LinkChange {
                index,
                name: name.clone(),
                change,
            });
            false
        }
        Op::Route(RouteOp::RouteDelete(r)) => {
            let Some(prior) = adopted.routes.get(&r.dst) else {
                return true;
            };
            let Some(ifindex) = index_of(&prior.dev) else {
                return true;
            };
            *op = Op::Route(RouteOp::RouteReplace {
                route: adopt::prior_route(r.dst, prior, ifindex),
                was: r.target.clone(),
            });
            true
        }
        _ => true,
    });
    // After the route restores (and the nexthop deletes), before the other link deletes.
    let at = d
        .ops
        .iter()
        .position(|o| {
            matches!(
                o,
                Op::LinkDelete { .. }
                    | Op::FileWrite(_)
                    | Op::FileRestore { .. }
                    | Op::FileRemove(_)
            )
        })
        .unwrap_or(d.ops.len());
    d.ops.splice(at..at, restores);
}

/// The neighbour and FDB operations that put an adopted vxlan's tables back as they were.
fn tables(ops: &mut Vec<Op>, index: u32, prior: &adopt::PriorLink, obs: &Observed) {
    let neighs: Vec<&Neigh> = obs
        .neighs
        .iter()
        .filter(|n| n.index == index && n.permanent)
        .collect();
    for &(ip, mac) in &prior.neighbours {
        if !neighs.iter().any(|n| n.ip == ip && n.mac == Some(mac)) {
            ops.push(Op::NeighReplace(Neigh {
                index,
                ip,
                mac: Some(mac),
                permanent: true,
            }));
        }
    }
    for n in neighs {
        if !prior.neighbours.iter().any(|&(ip, _)| ip == n.ip) {
            ops.push(Op::NeighDelete(n.clone()));
        }
    }
    let fdb: Vec<&Fdb> = obs
        .fdb
        .iter()
        .filter(|f| f.index == index && f.dst.is_some())
        .collect();
    for &(mac, dst) in &prior.fdb {
        if !fdb
            .iter()
            .any(|f| f.mac == mac && f.dst == Some(dst) && f.permanent)
        {
            ops.push(Op::FdbReplace(Fdb {
                index,
                mac,
                dst: Some(dst),
                permanent: true,
            }));
        }
    }
    for f in fdb {
        if !prior
            .fdb
            .iter()
            .any(|&(m, d)| m == f.mac && f.dst == Some(d))
        {
            ops.push(Op::FdbDelete(f.clone()));
        }
    }
}

fn failure(op: String, error: String) -> Failure {
    failed(op, execute::FailureError::Io(error))
}

fn failed(op: String, error: execute::FailureError) -> Failure {
    Failure {
        op,
        error,
        retryable: false,
    }
}

fn name(d: FirewallDriver) -> &'static str {
    match d {
        FirewallDriver::Nftables => "nftables",
        FirewallDriver::Iptables => "iptables",
    }
}

/// Without a journal: the sysctls podnet sets and the files it writes by default whose
/// prior state is unknown (they are left as they are).
fn unknown_priors(root: Option<&Path>) -> Result<Vec<String>, EngineError> {
    let mut out = Vec::new();
    // Only a value podnet would have set can be podnet's doing.
    if observe::read_sysctl("net.ipv4.ip_forward")?.as_deref() == Some("1") {
        out.push(
            "sysctl net.ipv4.ip_forward (now 1, as podnet sets it; its value before podnet \
             is unknown)"
                .to_string(),
        );
    }
    let conflist = rooted(root, &format!("{CNI_DIR}/{CNI_FILE}"));
    let env = rooted(root, "/run/flannel/subnet.env");
    for f in [conflist, env] {
        if Path::new(&f).exists() {
            out.push(format!(
                "file {f} (podnet may have written it; its content before podnet is unknown)"
            ));
        }
    }
    Ok(out)
}

/// Deletes nft table `table` if nothing but empty base chains is left in it. Returns
/// whether it was deleted.
fn remove_if_unused(table: &str) -> Result<bool, String> {
    let exec = Exec::Host;
    if !nft_table_exists(&exec, table) {
        return Ok(false);
    }
    let mut args = vec!["-j", "list", "table"];
    args.extend(table.split_whitespace());
    let out = exec.run("nft", &args, None).map_err(|e| e.to_string())?;
    let v: serde_json::Value = serde_json::from_str(&out).map_err(|e| e.to_string())?;
    let items = v
        .get("nftables")
        .and_then(serde_json::Value::as_array)
        .cloned()
        .unwrap_or_default();
    let in_use = items.iter().any(|i| {
        i.get("rule").is_some()
            || i.get("set").is_some()
            || i.get("map").is_some()
            || i.get("chain").is_some_and(|c| c.get("hook").is_none())
    });
    if in_use {
        return Ok(false);
    }
    let mut args = vec!["delete", "table"];
    args.extend(table.split_whitespace());
    exec.run("nft", &args, None).map_err(|e| e.to_string())?;
    Ok(true)
}
