//! The checks that run before the first write of a reconcile: the plan's validity, node
//! identity, the firewall driver's tools, and that no planned file escapes `--root`.
//! (Conflicts with foreign objects come from the diff.) Reads only.

use std::fmt;
use std::io;
use std::path::{Path, PathBuf};

use podnet_compiler::plan::{FirewallDriver, NodePlan};

use super::{EngineError, WrongNode};
use crate::firewall::FirewallSpec;
use crate::kernel::addr::{Addr, RTM_GETADDR};
use crate::kernel::link::{Link, RTM_GETLINK};
use crate::kernel::nl::NlSocket;

/// Every rule a plan must follow, whether compiled here or read from JSON (the compiler's
/// one plan validation, on the plan before it is rooted under `--root`).
pub fn validate(plan: &NodePlan) -> Result<(), EngineError> {
    podnet_compiler::validate::validate_plan(plan).map_err(EngineError::InvalidPlan)?;
    // The firewall drivers' own rendering rules (already implied by the plan rules).
    FirewallSpec::from(&plan.firewall).validate()?;
    Ok(())
}

/// The plan's node address must be configured on the interface it names: a plan for
/// another node would route that node's subnet here.
pub fn identity(sock: &mut NlSocket, plan: &NodePlan) -> Result<(), EngineError> {
    let u = &plan.underlay;
    let links: Vec<Link> = sock
        .dump(RTM_GETLINK, &Link::dump_request())?
        .iter()
        .filter_map(|m| Link::parse(m))
        .collect();
    let index = links
        .iter()
        .find(|l| l.name == u.interface)
        .map(|l| l.index);
    let addrs: Vec<Addr> = sock
        .dump(RTM_GETADDR, &Addr::dump_request())?
        .iter()
        .filter_map(|m| Addr::parse(m))
        .collect();
    let here = addrs
        .iter()
        .any(|a| Some(a.index) == index && a.address.addr() == u.address.addr());
    if here {
        return Ok(());
    }
    let mut local: Vec<_> = addrs
        .iter()
        .map(|a| a.address)
        .filter(|a| !a.addr().is_loopback())
        .collect();
    local.sort();
    local.dedup();
    // The interface that does carry the node's address, for the hint.
    let holder = addrs
        .iter()
        .find(|a| a.address.addr() == u.address.addr())
        .and_then(|a| links.iter().find(|l| l.index == a.index))
        .map(|l| l.name.clone());
    Err(EngineError::WrongNode(Box::new(WrongNode {
        node: plan.node.clone(),
        underlay: u.clone(),
        interface_exists: index.is_some(),
        local,
        holder,
    })))
}

/// A program a firewall driver needs, with where to get it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Tool {
    pub program: &'static str,
    pub package: &'static str,
    pub driver: FirewallDriver,
}

impl fmt::Display for Tool {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let (name, other) = match self.driver {
            FirewallDriver::Nftables => ("nftables", "iptables"),
            FirewallDriver::Iptables => ("iptables", "nftables"),
        };
        write!(
            f,
            "the {name} firewall driver needs `{}`, which is not installed: install the \
             Debian package `{}`, or choose `firewall {other}` in the cluster file",
            self.program, self.package
        )
    }
}

/// The first program `driver` needs that is not on `PATH`.
pub fn missing_tool(driver: FirewallDriver) -> Option<Tool> {
    let needs: &[(&str, &str)] = match driver {
        FirewallDriver::Nftables => &[("nft", "nftables")],
        FirewallDriver::Iptables => &[
            ("iptables-save", "iptables"),
            ("iptables-restore", "iptables"),
        ],
    };
    needs
        .iter()
        .find(|(p, _)| !on_path(p))
        .map(|&(program, package)| Tool {
            program,
            package,
            driver,
        })
}

/// Whether an executable `program` is on `PATH`.
pub fn on_path(program: &str) -> bool {
    use std::os::unix::fs::PermissionsExt as _;
    let path = std::env::var_os("PATH").unwrap_or_else(|| "/usr/sbin:/usr/bin:/sbin:/bin".into());
    std::env::split_paths(&path).any(|d| {
        std::fs::metadata(d.join(program))
            .is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
    })
}

/// Every planned file (already rooted) must stay under `root` even through symbolic links
/// in its existing parent directories.
pub fn confined(plan: &NodePlan, root: Option<&Path>) -> Result<(), EngineError> {
    let Some(root) = root else { return Ok(()) };
    let real_root = std::fs::canonicalize(root)
        .map_err(|e| crate::journal::context(e, format!("resolving --root {}", root.display())))?;
    for f in &plan.files {
        let path = Path::new(&f.path);
        let Some(existing) = path
            .parent()
            .into_iter()
            .flat_map(Path::ancestors)
            .find(|a| a.exists())
        else {
            continue;
        };
        let resolved = canonical(existing)?;
        if !resolved.starts_with(&real_root) {
            return Err(EngineError::EscapesRoot {
                path: f.path.clone(),
                resolved,
                root: root.to_path_buf(),
            });
        }
    }
    Ok(())
}

fn canonical(p: &Path) -> Result<PathBuf, EngineError> {
    std::fs::canonicalize(p).map_err(|e: io::Error| {
        EngineError::Io(crate::journal::context(
            e,
            format!("resolving {}", p.display()),
        ))
    })
}
