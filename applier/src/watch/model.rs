//! The daemon's picture of the node: the last full observation, kept current by kernel
//! events, indexed so that one event costs a few hash lookups. [`Model::apply`] records
//! what an event changed as [`Touched`] keys (or that a full re-read is needed: a link
//! went down or away, an address changed, events were lost — the kernel drops routes and
//! permanent neighbours then without announcing it); [`Model::part`] cuts the plan and the
//! observation down to those keys for [`crate::engine::Engine::repair`].

use std::collections::{BTreeMap, BTreeSet};
use std::net::Ipv4Addr;

use ahash::{AHashMap as HashMap, AHashSet as HashSet};
use ipnet::Ipv4Net;
use podnet_compiler::plan::NodePlan;

use crate::diff::Observed;
use crate::diff::routes::RouteStyle;
use crate::kernel::addr::Addr;
use crate::kernel::events::KernelEvent;
use crate::kernel::link::Link;
use crate::kernel::neigh::{Fdb, Neigh};
use crate::kernel::nexthop::Nexthop;
use crate::kernel::route::{Route, Target};

/// The objects kernel events changed since the last repair.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Touched {
    pub routes: BTreeSet<Ipv4Net>,
    /// (device name, neighbour address)
    pub neighs: BTreeSet<(String, Ipv4Addr)>,
    /// (device name, MAC)
    pub fdb: BTreeSet<(String, [u8; 6])>,
    /// Links whose planned attributes may have changed (checked against the plan).
    pub links: bool,
    /// Why only a full re-read will do (the first reason seen).
    pub full: Option<String>,
    /// What the events were about, for the metrics: (kind, count).
    pub kinds: BTreeMap<&'static str, u64>,
}

impl Touched {
    pub fn is_empty(&self) -> bool {
        self.routes.is_empty()
            && self.neighs.is_empty()
            && self.fdb.is_empty()
            && !self.links
            && self.full.is_none()
    }

    fn full(&mut self, why: String) {
        if self.full.is_none() {
            self.full = Some(why);
        }
    }
}

/// The plan's objects by key (built once per plan).
struct Index {
    routes: HashMap<Ipv4Net, usize>,
    neighs: HashMap<(String, Ipv4Addr), usize>,
    fdb: HashMap<(String, [u8; 6]), Vec<usize>>,
    links: HashSet<String>,
}

impl Index {
    fn of(plan: &NodePlan) -> Index {
        let mut fdb: HashMap<(String, [u8; 6]), Vec<usize>> = HashMap::new();
        for (i, f) in plan.fdb.iter().enumerate() {
            fdb.entry((f.dev.clone(), f.mac.0)).or_default().push(i);
        }
        Index {
            routes: plan
                .routes
                .iter()
                .enumerate()
                .map(|(i, r)| (r.dst, i))
                .collect(),
            neighs: plan
                .neighbours
                .iter()
                .enumerate()
                .map(|(i, n)| ((n.dev.clone(), n.ip), i))
                .collect(),
            fdb,
            links: plan.links.iter().map(|l| l.name.clone()).collect(),
        }
    }
}

/// The node as last observed and updated by events since.
pub struct Model {
    index: Index,
    underlay: String,
    protocols: BTreeSet<u8>,
    style: RouteStyle,
    links: BTreeMap<u32, Link>,
    owned: BTreeSet<u32>,
    addrs: Vec<Addr>,
    routes: HashMap<Ipv4Net, Route>,
    /// The routes of `routes` that use each nexthop (a deleted nexthop takes them along).
    users: HashMap<u32, HashSet<Ipv4Net>>,
    foreign: HashSet<Ipv4Net>,
    nexthops: HashMap<u32, Nexthop>,
    /// podnet's nexthops by (gateway, device, onlink): the ones a planned route can reuse.
    by_key: HashMap<(Ipv4Addr, u32, bool), BTreeSet<u32>>,
    other_ids: HashSet<u32>,
    neighs: HashMap<(u32, Ipv4Addr), Neigh>,
    /// By (device, MAC): a vxlan device may hold several entries for one MAC.
    fdb: HashMap<(u32, [u8; 6]), Vec<Fdb>>,
}

impl Model {
    /// The model of `obs`, observed for `plan` (what a full reconcile left).
    pub fn new(plan: &NodePlan, obs: Observed) -> Model {
        let mut m = Model {
            index: Index::of(plan),
            underlay: plan.underlay.interface.clone(),
            protocols: obs.protocols,
            style: obs.style,
            links: obs.links.into_iter().map(|l| (l.index, l)).collect(),
            owned: obs.owned,
            addrs: obs.addrs,
            routes: HashMap::new(),
            users: HashMap::new(),
            foreign: obs.foreign_routes,
            nexthops: HashMap::new(),
            by_key: HashMap::new(),
            other_ids: obs.other_nexthop_ids.into_iter().collect(),
            neighs: obs
                .neighs
                .into_iter()
                .map(|n| ((n.index, n.ip), n))
                .collect(),
            fdb: {
                let mut m: HashMap<(u32, [u8; 6]), Vec<Fdb>> = HashMap::new();
                for f in obs.fdb {
                    m.entry((f.index, f.mac)).or_default().push(f);
                }
                m
            },
        };
        for r in obs.routes {
            m.put_route(r);
        }
        for n in obs.nexthops {
            m.put_nexthop(n);
        }
        m
    }

    fn put_nexthop(&mut self, n: Nexthop) {
        self.by_key
            .entry((n.gateway, n.ifindex, n.onlink))
            .or_default()
            .insert(n.id);
        if let Some(old) = self.nexthops.insert(n.id, n) {
            self.unkey(&old);
        }
    }

    fn take_nexthop(&mut self, id: u32) -> bool {
        match self.nexthops.remove(&id) {
            Some(old) => {
                self.unkey(&old);
                true
            }
            None => false,
        }
    }

    fn unkey(&mut self, old: &Nexthop) {
        let key = (old.gateway, old.ifindex, old.onlink);
        let still = self
            .nexthops
            .get(&old.id)
            .is_some_and(|n| (n.gateway, n.ifindex, n.onlink) == key);
        if !still && let Some(ids) = self.by_key.get_mut(&key) {
            ids.remove(&old.id);
            if ids.is_empty() {
                self.by_key.remove(&key);
            }
        }
    }

    fn put_route(&mut self, r: Route) {
        if let Target::Nexthop(id) = r.target {
            self.users.entry(id).or_default().insert(r.dst);
        }
        if let Some(old) = self.routes.insert(r.dst, r) {
            self.unuse(&old);
        }
    }

    fn take_route(&mut self, dst: &Ipv4Net) {
        if let Some(old) = self.routes.remove(dst) {
            self.unuse(&old);
        }
    }

    fn unuse(&mut self, old: &Route) {
        if let Target::Nexthop(id) = old.target
            && self
                .routes
                .get(&old.dst)
                .is_none_or(|r| r.target != old.target)
            && let Some(u) = self.users.get_mut(&id)
        {
            u.remove(&old.dst);
            if u.is_empty() {
                self.users.remove(&id);
            }
        }
    }

    /// Owned objects by kind (for the metrics).
    pub fn owned_counts(&self) -> [(&'static str, usize); 6] {
        [
            ("link", self.owned.len()),
            ("address", self.addrs.len()),
            ("route", self.routes.len()),
            (
                "nexthop",
                self.nexthops
                    .values()
                    .filter(|n| self.protocols.contains(&n.protocol))
                    .count(),
            ),
            (
                "neighbour",
                self.neighs.values().filter(|n| n.permanent).count(),
            ),
            ("fdb", self.fdb.values().map(Vec::len).sum()),
        ]
    }

    fn name(&self, index: u32) -> Option<&str> {
        self.links.get(&index).map(|l| l.name.as_str())
    }

    /// Whether a link matters: podnet's, planned by name, or the underlay.
    fn relevant(&self, l: &Link) -> bool {
        self.owned.contains(&l.index)
            || self.index.links.contains(&l.name)
            || l.name == self.underlay
    }

    /// Applies one event; records what it changed in `t`.
    pub fn apply(&mut self, e: KernelEvent, t: &mut Touched) {
        let kind = match &e {
            KernelEvent::Link { .. } => "link",
            KernelEvent::Addr { .. } => "address",
            KernelEvent::Route { .. } => "route",
            KernelEvent::Nexthop { .. } => "nexthop",
            KernelEvent::Neigh { .. } => "neighbour",
            KernelEvent::Fdb { .. } => "fdb",
            KernelEvent::Overrun => "overrun",
        };
        match e {
            KernelEvent::Overrun => {
                t.full("kernel events were lost (receive buffer overrun)".into())
            }
            KernelEvent::Link { gone, link } => {
                let before = self.links.get(&link.index).cloned();
                let relevant =
                    self.relevant(&link) || before.as_ref().is_some_and(|b| self.relevant(b));
                if gone {
                    self.links.remove(&link.index);
                    if relevant {
                        self.owned.remove(&link.index);
                        t.full(format!("link {} was deleted", link.name));
                    }
                } else {
                    if relevant {
                        let was_up = before.as_ref().map(|b| b.up);
                        match was_up {
                            None => t.full(format!("link {} appeared", link.name)),
                            Some(up) if up != link.up => t.full(format!(
                                "link {} went {}",
                                link.name,
                                if link.up { "up" } else { "down" }
                            )),
                            Some(_) if before.as_ref().is_some_and(|b| b.name != link.name) => {
                                t.full(format!("link {} was renamed", link.name));
                            }
                            Some(_) => t.links = true,
                        }
                    }
                    self.links.insert(link.index, link);
                }
                if relevant {
                    *t.kinds.entry(kind).or_default() += 1;
                }
                return;
            }
            KernelEvent::Addr { gone, addr } => {
                let on = self.links.get(&addr.index);
                let relevant =
                    self.owned.contains(&addr.index) || on.is_some_and(|l| l.name == self.underlay);
                if relevant {
                    if self.owned.contains(&addr.index) {
                        self.addrs.retain(|a| a != &addr);
                        if !gone {
                            self.addrs.push(addr.clone());
                        }
                    }
                    t.full(format!(
                        "address {} {} on {}",
                        addr.address,
                        if gone { "removed" } else { "added" },
                        self.name(addr.index).unwrap_or("?")
                    ));
                } else {
                    return;
                }
            }
            KernelEvent::Route { gone, route } => {
                let dst = route.dst;
                let planned = self.index.routes.contains_key(&dst);
                match route.route {
                    Some(r) if self.protocols.contains(&r.protocol) => {
                        if gone {
                            if self
                                .routes
                                .get(&dst)
                                .is_some_and(|m| m.protocol == r.protocol)
                            {
                                self.take_route(&dst);
                            }
                        } else {
                            self.put_route(r);
                        }
                        t.routes.insert(dst);
                    }
                    _ if route.tos == 0
                        && route.metric == 0
                        && !self.protocols.contains(&route.protocol) =>
                    {
                        if gone {
                            self.foreign.remove(&dst);
                        } else {
                            self.foreign.insert(dst);
                        }
                        if !planned {
                            return;
                        }
                        // A foreign route to a planned destination replaced podnet's (a
                        // conflict) or went away (podnet's must come back): only a fresh
                        // read tells which of podnet's routes the kernel still has.
                        t.full(format!(
                            "a foreign route to planned destination {dst} was {}",
                            if gone { "removed" } else { "added" }
                        ));
                    }
                    _ => return,
                }
            }
            KernelEvent::Nexthop { gone, id, nexthop } => {
                if gone {
                    self.other_ids.remove(&id);
                    if self.take_nexthop(id) {
                        // The kernel removes the routes that used it without a word. (An
                        // index, not a scan of every route: a link going down deletes all
                        // of its nexthops, one event each.)
                        for dst in self.users.remove(&id).unwrap_or_default() {
                            self.routes.remove(&dst);
                            t.routes.insert(dst);
                        }
                    } else {
                        return;
                    }
                } else {
                    match nexthop {
                        Some(n) => self.put_nexthop(n),
                        None => {
                            self.other_ids.insert(id);
                            return;
                        }
                    }
                }
            }
            KernelEvent::Neigh { gone, neigh } => {
                if !self.owned.contains(&neigh.index) {
                    return;
                }
                let key = (neigh.index, neigh.ip);
                if gone {
                    self.neighs.remove(&key);
                } else {
                    self.neighs.insert(key, neigh);
                }
                let Some(dev) = self.name(key.0).map(str::to_string) else {
                    return;
                };
                t.neighs.insert((dev, key.1));
            }
            KernelEvent::Fdb { gone, fdb } => {
                if !self.owned.contains(&fdb.index) {
                    return;
                }
                let key = (fdb.index, fdb.mac);
                let entries = self.fdb.entry(key).or_default();
                entries.retain(|f| f.dst != fdb.dst);
                if !gone {
                    entries.push(fdb);
                }
                // `bridge fdb replace` changes an entry's destination in place and
                // announces only the new one: when a MAC seems to have several
                // destinations, only a fresh read tells which still exist.
                if entries.len() > 1 {
                    t.full(format!(
                        "FDB entry {} changed its destination",
                        crate::diff::mac(key.1)
                    ));
                }
                let Some(dev) = self.name(key.0).map(str::to_string) else {
                    return;
                };
                t.fdb.insert((dev, key.1));
            }
        }
        *t.kinds.entry(kind).or_default() += 1;
    }

    /// `plan` cut down to the touched objects (links and addresses whole), and the model's
    /// observation of exactly those objects.
    pub fn part(&self, plan: &NodePlan, t: &Touched) -> (NodePlan, Observed) {
        let mut part = NodePlan {
            sysctls: Vec::new(),
            files: Vec::new(),
            routes: Vec::new(),
            neighbours: Vec::new(),
            fdb: Vec::new(),
            format_version: plan.format_version,
            cluster: plan.cluster.clone(),
            node: plan.node.clone(),
            underlay: plan.underlay.clone(),
            route_protocol: plan.route_protocol,
            links: plan.links.clone(),
            addresses: plan.addresses.clone(),
            firewall: plan.firewall.clone(),
        };
        for dst in &t.routes {
            if let Some(&i) = self.index.routes.get(dst) {
                part.routes.push(plan.routes[i].clone());
            }
        }
        for key in &t.neighs {
            if let Some(&i) = self.index.neighs.get(key) {
                part.neighbours.push(plan.neighbours[i].clone());
            }
        }
        for key in &t.fdb {
            if let Some(is) = self.index.fdb.get(key) {
                part.fdb.extend(is.iter().map(|&i| plan.fdb[i].clone()));
            }
        }
        let by_name: HashMap<&str, u32> = self
            .links
            .values()
            .map(|l| (l.name.as_str(), l.index))
            .collect();
        let index_of = |name: &str| by_name.get(name).copied();
        let routes: Vec<Route> = t
            .routes
            .iter()
            .filter_map(|d| self.routes.get(d).cloned())
            .collect();
        // The nexthops those routes use, and podnet's nexthops a planned route could reuse.
        let mut wanted_keys: HashSet<(Ipv4Addr, u32, bool)> = HashSet::new();
        for r in &part.routes {
            if let Some(i) = index_of(&r.dev) {
                wanted_keys.insert((r.via, i, r.onlink));
            }
        }
        let used: HashSet<u32> = routes
            .iter()
            .filter_map(|r| match r.target {
                Target::Nexthop(id) => Some(id),
                Target::Gateway { .. } | Target::Other { .. } => None,
            })
            .collect();
        // Only these nexthops matter to the cut-down diff. The ids of every other one are
        // needed only to pick a free id, i.e. when a wanted nexthop does not exist.
        let mut ids: BTreeSet<u32> = used.clone().into_iter().collect();
        let mut missing = false;
        for k in &wanted_keys {
            match self.by_key.get(k) {
                Some(found) => ids.extend(found.iter().copied()),
                None => missing = true,
            }
        }
        let nexthops: Vec<Nexthop> = ids
            .iter()
            .filter_map(|id| self.nexthops.get(id).cloned())
            .collect();
        let other_ids: Vec<u32> = if missing {
            self.other_ids
                .iter()
                .copied()
                .chain(self.nexthops.keys().copied().filter(|id| !ids.contains(id)))
                .collect()
        } else {
            Vec::new()
        };
        let neighs = t
            .neighs
            .iter()
            .filter_map(|(dev, ip)| index_of(dev).and_then(|i| self.neighs.get(&(i, *ip))))
            .cloned()
            .collect();
        let fdb = t
            .fdb
            .iter()
            .filter_map(|(dev, mac)| index_of(dev).and_then(|i| self.fdb.get(&(i, *mac))))
            .flatten()
            .cloned()
            .collect();
        let obs = Observed {
            links: self.links.values().cloned().collect(),
            owned: self.owned.clone(),
            addrs: self.addrs.clone(),
            routes,
            nexthops,
            other_nexthop_ids: other_ids,
            foreign_routes: t
                .routes
                .iter()
                .filter(|d| self.foreign.contains(*d))
                .copied()
                .collect(),
            journaled: true,
            style: self.style,
            protocols: self.protocols.clone(),
            neighs,
            fdb,
            ..Observed::default()
        };
        (part, obs)
    }
}
