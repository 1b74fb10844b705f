//! Observation: reads podnet's own kernel objects with filtered netlink dumps (routes by
//! protocol, neighbours and FDB entries by device), plus every link's name and index, the
//! planned sysctls and the planned and journaled files. Reads only.

use std::collections::{BTreeMap, BTreeSet};
use std::io;
use std::path::Path;

use podnet_compiler::plan::NodePlan;

use crate::diff::{FileState, Observed};
use crate::diff_routes::RouteStyle;
use crate::journal::{self, Journal};
use crate::kernel::addr::{Addr, RTM_GETADDR};
use crate::kernel::link::{Link, MARKER, RTM_GETLINK};
use crate::kernel::neigh::{Fdb, Neigh, RTM_GETNEIGH};
use crate::kernel::nexthop::{Nexthop, RTM_GETNEXTHOP};
use crate::kernel::nl::NlSocket;
use crate::kernel::route::{RTM_GETROUTE, Route};

/// What to look at besides the plan.
#[derive(Clone, Copy, Debug, Default)]
pub struct Scope<'a> {
    pub journal: Option<&'a Journal>,
    /// Treat links with the plan's names as podnet's even without the marker.
    pub adopt: bool,
}

/// The route protocols to look for: the plan's and every one the journal recorded.
pub fn protocols(plan: Option<&NodePlan>, journal: Option<&Journal>) -> BTreeSet<u8> {
    let mut p: BTreeSet<u8> = journal.map(|j| j.protocols.clone()).unwrap_or_default();
    if let Some(plan) = plan {
        p.insert(plan.route_protocol);
    }
    p
}

/// Observes everything the diff compares for `plan` (or, without a plan, everything podnet
/// owns: what `status` and `teardown` need).
pub fn observe(
    sock: &mut NlSocket,
    plan: Option<&NodePlan>,
    scope: Scope<'_>,
    default_protocol: u8,
) -> io::Result<Observed> {
    let mut obs = Observed {
        protocols: protocols(plan, scope.journal),
        ..Observed::default()
    };
    if obs.protocols.is_empty() {
        obs.protocols.insert(default_protocol);
    }
    let planned_links: BTreeSet<&str> = plan
        .map(|p| p.links.iter().map(|l| l.name.as_str()).collect())
        .unwrap_or_default();
    for m in sock.dump(RTM_GETLINK, &Link::dump_request())? {
        if let Some(l) = Link::parse(&m) {
            let unmarked = l.alias.as_deref().is_none_or(str::is_empty);
            let owned = l.alias.as_deref() == Some(MARKER)
                || (unmarked && scope.journal.is_some_and(|j| j.links.contains(&l.name)))
                || (scope.adopt && planned_links.contains(l.name.as_str()));
            if owned {
                obs.owned.insert(l.index);
            }
            obs.links.push(l);
        }
    }
    for m in sock.dump(RTM_GETADDR, &Addr::dump_request())? {
        if let Some(a) = Addr::parse(&m)
            && obs.owned.contains(&a.index)
        {
            obs.addrs.push(a);
        }
    }
    // Routes, nexthops and the vxlan devices' tables are independent dumps: each gets its
    // own socket and thread (threads share the namespace of the thread that spawns them).
    let vxlans: Vec<u32> = obs
        .links
        .iter()
        .filter(|l| obs.owned.contains(&l.index) && l.kind.as_deref() == Some("vxlan"))
        .map(|l| l.index)
        .collect();
    let protocols: Vec<u8> = obs.protocols.iter().copied().collect();
    let (routes, nexthops, tables) = std::thread::scope(|scope| {
        let routes = scope.spawn(|| -> io::Result<Vec<Route>> {
            let mut sock = NlSocket::new()?;
            let mut out = Vec::new();
            for &p in &protocols {
                for m in sock.dump(RTM_GETROUTE, &Route::dump_request(p))? {
                    out.extend(Route::parse(&m, p));
                }
            }
            Ok(out)
        });
        let tables = scope.spawn(|| -> io::Result<(Vec<Neigh>, Vec<Fdb>)> {
            let (mut neighs, mut fdb) = (Vec::new(), Vec::new());
            if vxlans.is_empty() {
                return Ok((neighs, fdb));
            }
            let mut sock = NlSocket::new()?;
            for &index in &vxlans {
                for m in sock.dump(RTM_GETNEIGH, &Neigh::dump_request(index))? {
                    neighs.extend(Neigh::parse(&m).filter(|n| n.index == index));
                }
                for m in sock.dump(RTM_GETNEIGH, &Fdb::dump_request(index))? {
                    fdb.extend(Fdb::parse(&m).filter(|f| f.index == index));
                }
            }
            Ok((neighs, fdb))
        });
        let nexthops = match sock.dump(RTM_GETNEXTHOP, &Nexthop::dump_request()) {
            Ok(msgs) => Ok(Some(
                msgs.iter().filter_map(|m| Nexthop::parse(m)).collect(),
            )),
            // Kernels before 5.3 have no nexthop objects.
            Err(e) if matches!(e.raw_os_error(), Some(libc::EOPNOTSUPP | libc::EINVAL)) => Ok(None),
            Err(e) => Err(e),
        };
        (joined(routes.join()), nexthops, joined(tables.join()))
    });
    obs.routes = routes?;
    match nexthops? {
        Some(n) => obs.nexthops = n,
        None => obs.style = RouteStyle::PlainGateways,
    }
    (obs.neighs, obs.fdb) = tables?;
    if let Some(plan) = plan {
        for s in &plan.sysctls {
            obs.sysctls.insert(s.key.clone(), read_sysctl(&s.key)?);
        }
    }
    let mut paths: BTreeSet<&str> = plan
        .map(|p| p.files.iter().map(|f| f.path.as_str()).collect())
        .unwrap_or_default();
    if let Some(j) = scope.journal {
        paths.extend(j.files.keys().map(String::as_str));
    }
    obs.files = read_files(paths)?;
    Ok(obs)
}

/// A scoped thread's result, with a panic turned into an error.
fn joined<T>(r: std::thread::Result<io::Result<T>>) -> io::Result<T> {
    r.unwrap_or_else(|_| Err(io::Error::other("an observer thread panicked")))
}

fn read_files<'a>(
    paths: impl IntoIterator<Item = &'a str>,
) -> io::Result<BTreeMap<String, Option<FileState>>> {
    let mut out = BTreeMap::new();
    for p in paths {
        let state =
            journal::read_file(Path::new(p))?.map(|(mode, content)| FileState { mode, content });
        out.insert(p.to_string(), state);
    }
    Ok(out)
}

/// `/proc/sys` path of a dotted sysctl key.
pub fn sysctl_path(key: &str) -> String {
    format!("/proc/sys/{}", key.replace('.', "/"))
}

/// A sysctl's current value (trimmed); `None` when the key does not exist.
pub fn read_sysctl(key: &str) -> io::Result<Option<String>> {
    if key.split('.').any(|p| p.is_empty() || p == "..") || key.contains('/') {
        return Ok(None);
    }
    match std::fs::read_to_string(sysctl_path(key)) {
        Ok(v) => Ok(Some(v.trim().to_string())),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(e),
    }
}

/// Sets a sysctl.
pub fn write_sysctl(key: &str, value: &str) -> io::Result<()> {
    if key.split('.').any(|p| p.is_empty() || p == "..") || key.contains('/') {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            format!("`{key}` is not a sysctl key"),
        ));
    }
    std::fs::write(sysctl_path(key), value)
}
