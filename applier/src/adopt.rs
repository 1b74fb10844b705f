//! Adoption (`apply --adopt`, `plan --live --adopt`): the foreign objects that match the
//! plan and can be taken over in place — a link of a planned name and kind whose
//! attributes need no recreation (for a vxlan the same VNI, port, local address, underlay
//! and learning flag), a foreign gateway route to a planned destination through the
//! planned device when that device is adopted or podnet's, or the very route the plan has
//! through the underlay (host-gw). Each one's prior state is what the journal keeps (written before the
//! first change), so `teardown` can put it back. Pure: no IO here.

use std::collections::BTreeMap;
use std::fmt;
use std::net::Ipv4Addr;

use ipnet::Ipv4Net;
use podnet_compiler::plan::{LinkKind, NodePlan};
use serde::{Deserialize, Serialize};

use crate::diff::Observed;
use crate::diff::links::recreate_reason;
use crate::firewall::flannel::PriorFirewall;
use crate::journal::PriorFile;
use crate::kernel::addr::Addr;
use crate::kernel::link::{KernelLinkKind, Link};
use crate::kernel::route::{Route, Target};

/// A vxlan's attributes before adoption.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PriorVxlan {
    pub vni: u32,
    pub port: u16,
    pub local: Option<Ipv4Addr>,
    pub learning: bool,
}

/// A link as it was before podnet took it over.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PriorLink {
    pub kind: LinkKind,
    pub mtu: u32,
    pub mac: Option<[u8; 6]>,
    pub up: bool,
    /// Its ifalias (`None`: none; podnet's marker replaces it).
    pub alias: Option<String>,
    pub vxlan: Option<PriorVxlan>,
    /// Its IPv4 addresses.
    pub addresses: Vec<Ipv4Net>,
    /// A vxlan's permanent neighbours (IP, MAC).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub neighbours: Vec<(Ipv4Addr, [u8; 6])>,
    /// A vxlan's FDB entries with a destination (MAC, destination).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub fdb: Vec<([u8; 6], Ipv4Addr)>,
}

/// A route as it was before podnet replaced it in place.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PriorRoute {
    pub via: Ipv4Addr,
    pub dev: String,
    pub onlink: bool,
    pub protocol: u8,
}

/// Everything podnet took over on this node, with its prior state (in the journal).
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Adopted {
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub links: BTreeMap<String, PriorLink>,
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub routes: BTreeMap<Ipv4Net, PriorRoute>,
    /// flannel's iptables chains and nft tables, removed once podnet's firewall is in place.
    #[serde(default, skip_serializing_if = "PriorFirewall::is_empty")]
    pub firewall: PriorFirewall,
    /// flannel's files (its conflist that shadows podnet's, `subnet.env` when the plan does
    /// not write it), by rooted path: removed once podnet's files are written.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub files: BTreeMap<String, PriorFile>,
    /// Routes of the plan's own protocol, all to planned destinations, found without a
    /// journal (a node set up by `podnet plan --format shell`): podnet's from now on, so
    /// they are not "unjournaled routes" (not journaled: there is nothing to give back).
    #[serde(skip)]
    pub own_routes: usize,
    /// On such a node, the plan's CNI conflist found with exactly the planned content and
    /// mode: written by the script, so podnet's (journaled as absent before podnet).
    #[serde(skip)]
    pub own_files: Vec<String>,
}

impl Adopted {
    pub fn is_empty(&self) -> bool {
        self.links.is_empty()
            && self.routes.is_empty()
            && self.firewall.is_empty()
            && self.files.is_empty()
            && self.own_routes == 0
            && self.own_files.is_empty()
    }

    /// Whether `l` is a link podnet adopted (same name and kind as recorded).
    pub fn owns(&self, l: &Link) -> bool {
        self.links
            .get(&l.name)
            .is_some_and(|p| l.kind == Some(KernelLinkKind::from(p.kind)))
    }

    /// Adds `other`'s entries that are not recorded yet (a prior is never overwritten:
    /// the first one is the state before podnet).
    pub fn merge(&mut self, other: &Adopted) {
        for (k, v) in &other.links {
            self.links.entry(k.clone()).or_insert_with(|| v.clone());
        }
        for (k, v) in &other.routes {
            self.routes.entry(*k).or_insert_with(|| v.clone());
        }
        for c in &other.firewall.chains {
            let known = self
                .firewall
                .chains
                .iter()
                .any(|p| p.backend == c.backend && p.table == c.table && p.chain == c.chain);
            if !known {
                self.firewall.chains.push(c.clone());
            }
        }
        for t in &other.firewall.tables {
            let known = self
                .firewall
                .tables
                .iter()
                .any(|p| p.family == t.family && p.name == t.name);
            if !known {
                self.firewall.tables.push(t.clone());
            }
        }
        for (k, v) in &other.files {
            self.files.entry(k.clone()).or_insert_with(|| v.clone());
        }
    }

    /// The takeover as lines (`adopt: link flannel.1 (vxlan 1, port 8472) …`).
    pub fn lines(&self) -> Vec<String> {
        let mut out: Vec<String> = self
            .links
            .iter()
            .map(|(name, p)| {
                let what = match &p.vxlan {
                    Some(v) => format!(
                        "vxlan {}, port {}, local {}",
                        v.vni,
                        v.port,
                        v.local.map_or("none".to_string(), |l| l.to_string())
                    ),
                    None => kind_name(p.kind).to_string(),
                };
                let addrs: Vec<String> = p.addresses.iter().map(ToString::to_string).collect();
                format!(
                    "adopt: link {name} ({what}, mtu {}{}), marked `{}`",
                    p.mtu,
                    if addrs.is_empty() {
                        String::new()
                    } else {
                        format!(", addresses {}", addrs.join(" "))
                    },
                    crate::kernel::link::MARKER
                )
            })
            .collect();
        out.extend(self.routes.iter().map(|(dst, r)| {
            format!(
                "adopt: route {dst} via {} dev {}{} (protocol {}), replaced in place",
                r.via,
                r.dev,
                if r.onlink { " onlink" } else { "" },
                r.protocol
            )
        }));
        out.extend(
            self.firewall
                .lines()
                .into_iter()
                .map(|l| format!("adopt: firewall {l}, removed once podnet's rules are in place")),
        );
        out.extend(self.files.iter().map(|(path, f)| {
            format!(
                "adopt: file {path} ({} bytes), moved away once podnet's files are written",
                f.content.as_ref().map_or(0, Vec::len)
            )
        }));
        out
    }
}

fn kind_name(k: LinkKind) -> &'static str {
    match k {
        LinkKind::Bridge => "bridge",
        LinkKind::Vxlan => "vxlan",
    }
}

impl fmt::Display for Adopted {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.lines().join("\n"))
    }
}

/// What of the foreign objects in `obs` podnet can take over in place for `plan` (rooted
/// or not: files play no part). `addrs` are every IPv4 address on the node (the foreign
/// links' addresses are not part of an observation). Objects already podnet's are not
/// listed; what does not match stays a conflict of the diff.
pub fn candidates(plan: &NodePlan, obs: &Observed, addrs: &[Addr]) -> Adopted {
    let mut out = Adopted::default();
    let by_name: BTreeMap<&str, &Link> = obs.links.iter().map(|l| (l.name.as_str(), l)).collect();
    for want in &plan.links {
        let Some(have) = by_name.get(want.name.as_str()) else {
            continue;
        };
        if obs.owned.contains(&have.index) {
            continue;
        }
        let underlay = match &want.vxlan {
            Some(v) => match by_name.get(v.dev.as_str()) {
                Some(u) if !obs.owned.contains(&u.index) => Some(u.index),
                _ => continue,
            },
            None => None,
        };
        if recreate_reason(want, have, underlay).is_some() {
            continue;
        }
        let mut addresses: Vec<Ipv4Net> = addrs
            .iter()
            .filter(|a| a.index == have.index)
            .map(|a| a.address)
            .collect();
        addresses.sort();
        out.links.insert(
            want.name.clone(),
            PriorLink {
                kind: want.kind,
                mtu: have.mtu,
                mac: have.mac,
                up: have.up,
                alias: have.alias.clone().filter(|a| !a.is_empty()),
                vxlan: have.vxlan.as_ref().map(|v| PriorVxlan {
                    vni: v.vni,
                    port: v.port,
                    local: v.local,
                    learning: v.learning,
                }),
                addresses,
                neighbours: Vec::new(),
                fdb: Vec::new(),
            },
        );
    }
    let name_of: BTreeMap<u32, &str> = obs
        .links
        .iter()
        .map(|l| (l.index, l.name.as_str()))
        .collect();
    let adoptable_dev = |name: &str| {
        out.links.contains_key(name)
            || by_name
                .get(name)
                .is_some_and(|l| obs.owned.contains(&l.index))
    };
    let mut routes = BTreeMap::new();
    for want in &plan.routes {
        let Some(have) = obs.foreign_gateways.iter().find(|r| r.dst == want.dst) else {
            continue;
        };
        let Target::Gateway {
            via,
            ifindex,
            onlink,
        } = have.target
        else {
            continue;
        };
        let Some(dev) = name_of.get(&ifindex) else {
            continue;
        };
        // On an adopted or owned link any gateway is replaced in place; on the underlay
        // (host-gw: `PEER_SUBNET via PEER_IP dev IFACE`) only the very route the plan has.
        let on_underlay = *dev == plan.underlay.interface && via == want.via && !onlink;
        if *dev != want.dev || !(adoptable_dev(dev) || on_underlay) {
            continue;
        }
        routes.insert(
            want.dst,
            PriorRoute {
                via,
                dev: (*dev).to_string(),
                onlink,
                protocol: have.protocol,
            },
        );
    }
    out.routes = routes;
    if !obs.journaled {
        let p = plan.route_protocol;
        let ours: Vec<&Route> = obs.routes.iter().filter(|r| r.protocol == p).collect();
        let planned = |r: &&Route| plan.routes.iter().any(|w| w.dst == r.dst);
        if !ours.is_empty()
            && ours.iter().all(planned)
            && obs.nexthops.iter().all(|n| n.protocol != p)
        {
            out.own_routes = ours.len();
            for f in &plan.files {
                let conflist = f.path.ends_with(".conflist") || f.path.ends_with(".conf");
                let same = obs.files.get(&f.path).is_some_and(|have| {
                    have.as_ref()
                        .is_some_and(|h| h.mode == f.mode && h.content == f.content.as_bytes())
                });
                if conflist && same {
                    out.own_files.push(f.path.clone());
                }
            }
        }
    }
    out
}

/// Records each adopted vxlan's permanent neighbours and FDB entries as `obs` (made as if
/// the links were podnet's, so their tables were dumped) has them.
pub fn record_tables(adopted: &mut Adopted, obs: &Observed) {
    for (name, prior) in &mut adopted.links {
        if prior.vxlan.is_none() {
            continue;
        }
        let Some(index) = obs.links.iter().find(|l| &l.name == name).map(|l| l.index) else {
            continue;
        };
        prior.neighbours = obs
            .neighs
            .iter()
            .filter(|n| n.index == index && n.permanent)
            .filter_map(|n| n.mac.map(|m| (n.ip, m)))
            .collect();
        prior.neighbours.sort();
        prior.fdb = obs
            .fdb
            .iter()
            .filter(|f| f.index == index && f.permanent)
            .filter_map(|f| f.dst.map(|d| (f.mac, d)))
            .collect();
        prior.fdb.sort();
    }
}

/// The route `prior` describes, on the link of index `ifindex`.
pub fn prior_route(dst: Ipv4Net, prior: &PriorRoute, ifindex: u32) -> Route {
    Route {
        dst,
        target: Target::Gateway {
            via: prior.via,
            ifindex,
            onlink: prior.onlink,
        },
        protocol: prior.protocol,
    }
}
