//! Observation: reads podnet's own kernel objects with filtered netlink dumps (routes by
//! protocol, neighbours and FDB entries by device), plus every link's name and index, the
//! planned sysctls and the planned and journaled files. Reads only.

use std::collections::{BTreeMap, BTreeSet};
use std::io;
use std::path::Path;

use ipnet::Ipv4Net;
use podnet_compiler::plan::NodePlan;

use crate::diff::routes::RouteStyle;
use crate::diff::{FileState, Observed};
use crate::journal::{self, Journal};
use crate::kernel::addr::{Addr, RTM_GETADDR};
use crate::kernel::link::{KernelLinkKind, Link, RTM_GETLINK};
use crate::kernel::neigh::{Fdb, Neigh, RTM_GETNEIGH};
use crate::kernel::nexthop::{Nexthop, RTM_GETNEXTHOP};
use crate::kernel::nl::NlSocket;
use crate::kernel::route::{Dumped, RTM_GETROUTE, Route, Target};

/// What to look at besides the plan.
#[derive(Clone, Copy, Debug, Default)]
pub struct Scope<'a> {
    pub journal: Option<&'a Journal>,
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
    let mut protocols = protocols(plan, scope.journal);
    if protocols.is_empty() {
        protocols.insert(default_protocol);
    }
    let mut obs = observe_kernel(sock, protocols, scope)?;
    observe_local(&mut obs, plan, scope)?;
    Ok(obs)
}

/// The kernel half of [`observe`]: links, addresses, routes of `protocols`, nexthops,
/// neighbours and FDB. Needs no plan, so it can run while the plan is being compiled.
pub fn observe_kernel(
    sock: &mut NlSocket,
    protocols: BTreeSet<u8>,
    scope: Scope<'_>,
) -> io::Result<Observed> {
    let mut obs = Observed {
        protocols,
        ..Observed::default()
    };
    obs.journaled = scope.journal.is_some();
    for m in sock.dump(RTM_GETLINK, &Link::dump_request())? {
        if let Some(l) = Link::parse(&m) {
            let unmarked = l.alias.as_deref().is_none_or(str::is_empty);
            // A link without any alias that the journal says podnet was creating is one
            // podnet created but was stopped before marking (the journal is written before
            // the create). It must also be of the kind podnet was creating under that name.
            let journaled = scope.journal.is_some_and(|j| {
                j.creating.contains(&l.name)
                    && j.links
                        .get(&l.name)
                        .is_some_and(|k| l.kind == Some(KernelLinkKind::from(*k)))
            });
            let adopted = scope.journal.is_some_and(|j| j.adopted.owns(&l));
            let owned = l.owned() || (unmarked && journaled) || adopted;
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
        .filter(|l| obs.owned.contains(&l.index) && l.kind == Some(KernelLinkKind::Vxlan))
        .map(|l| l.index)
        .collect();
    let protocols = obs.protocols.clone();
    let adopted = scope.journal.map(|j| &j.adopted.routes);
    let (routes, nexthops, tables) = std::thread::scope(|scope| {
        let routes = scope.spawn(|| -> io::Result<RouteDump> {
            // One dump of the whole main table: podnet's routes, and the foreign ones a
            // planned route would replace (same destination, TOS 0, metric 0), the
            // gateway routes among them kept whole (what `--adopt` may take over).
            let mut sock = NlSocket::new()?;
            let mut out = RouteDump::default();
            for m in sock.dump(RTM_GETROUTE, &Route::dump_request(0))? {
                let Some(r) = Dumped::parse(&m) else { continue };
                match r.route {
                    Some(route) if protocols.contains(&r.protocol) => out.ours.push(route),
                    route if r.tos == 0 && r.metric == 0 && !protocols.contains(&r.protocol) => {
                        match route {
                            Some(
                                route @ Route {
                                    target: Target::Gateway { .. },
                                    ..
                                },
                            ) => {
                                if adopted.is_some_and(|a| a.contains_key(&route.dst)) {
                                    out.adopted.push(route);
                                } else {
                                    out.foreign.push(r.dst);
                                    out.gateways.push(route);
                                }
                            }
                            _ => out.foreign.push(r.dst),
                        }
                    }
                    _ => {}
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
            Ok(msgs) => {
                let (mut ours, mut others) = (Vec::new(), Vec::new());
                for m in &msgs {
                    match Nexthop::parse(m) {
                        Some(n) => ours.push(n),
                        None => others.extend(Nexthop::parse_id(m)),
                    }
                }
                Ok(Some((ours, others)))
            }
            // Kernels before 5.3 have no nexthop objects.
            Err(e) if matches!(e.raw_os_error(), Some(libc::EOPNOTSUPP | libc::EINVAL)) => Ok(None),
            Err(e) => Err(e),
        };
        (joined(routes.join()), nexthops, joined(tables.join()))
    });
    let routes = routes?;
    obs.routes = routes.ours;
    obs.foreign_routes = routes.foreign.into_iter().collect();
    obs.foreign_gateways = routes.gateways;
    obs.adopted_routes = routes.adopted;
    match nexthops? {
        Some((ours, others)) => (obs.nexthops, obs.other_nexthop_ids) = (ours, others),
        None => obs.style = RouteStyle::PlainGateways,
    }
    (obs.neighs, obs.fdb) = tables?;
    Ok(obs)
}

/// The local half of [`observe`]: the planned sysctls, the planned and journaled files and
/// the journal's record of what those files were before podnet.
pub fn observe_local(
    obs: &mut Observed,
    plan: Option<&NodePlan>,
    scope: Scope<'_>,
) -> io::Result<()> {
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
    if let Some(j) = scope.journal {
        for (path, prior) in &j.files {
            let state = match (prior.mode, &prior.content) {
                (Some(mode), Some(content)) => Some(FileState {
                    mode,
                    content: content.clone(),
                }),
                _ => None,
            };
            obs.file_priors.insert(path.clone(), state);
        }
    }
    Ok(())
}

/// The main table as one dump splits it.
#[derive(Default)]
struct RouteDump {
    /// Routes of podnet's protocols.
    ours: Vec<Route>,
    /// Destinations of foreign routes a planned route would replace.
    foreign: Vec<Ipv4Net>,
    /// The foreign gateway routes among those.
    gateways: Vec<Route>,
    /// Foreign gateway routes the journal says podnet adopted (not in `foreign`).
    adopted: Vec<Route>,
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
