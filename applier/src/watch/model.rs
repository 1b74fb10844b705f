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

/// The objects kernel events (or a config change) touched since the last repair.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Touched {
    pub routes: BTreeSet<Ipv4Net>,
    /// (link index, neighbour address)
    pub neighs: BTreeSet<(u32, Ipv4Addr)>,
    /// (link index, MAC)
    pub fdb: BTreeSet<(u32, [u8; 6])>,
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

/// The plan's objects by key (built once per plan). Keys are small and copied, not device
/// names: a neighbour or FDB entry's device is its position in `devs` (a plan has one or
/// two such devices), and plan entries are `u32` positions — at 20,000 nodes a name per
/// key cost megabytes.
struct Index {
    /// The devices the plan's neighbours and FDB entries are on.
    devs: Vec<String>,
    routes: HashMap<Ipv4Net, u32>,
    neighs: HashMap<(u32, Ipv4Addr), u32>,
    /// The first planned entry of each (device, MAC) …
    fdb: HashMap<(u32, [u8; 6]), u32>,
    /// … and the further ones, for a MAC planned with several destinations (rare).
    fdb_more: HashMap<(u32, [u8; 6]), Vec<u32>>,
    links: HashSet<String>,
}

/// The parts of `a` and `b` between their longest common head and tail: what a change
/// from one list to the other can have touched.
fn differing<'a, T: PartialEq>(a: &'a [T], b: &'a [T]) -> (&'a [T], &'a [T]) {
    let head = a.iter().zip(b).take_while(|(x, y)| x == y).count();
    let (a, b) = (&a[head..], &b[head..]);
    let tail = a
        .iter()
        .rev()
        .zip(b.iter().rev())
        .take_while(|(x, y)| x == y)
        .count();
    (&a[..a.len() - tail], &b[..b.len() - tail])
}

/// A plan position as stored in the index (plans hold far fewer than 2³² entries).
fn pos(i: usize) -> u32 {
    u32::try_from(i).unwrap_or(u32::MAX)
}

impl Index {
    fn of(plan: &NodePlan) -> Index {
        let mut devs: Vec<String> = Vec::new();
        let mut slot = |name: &str| -> u32 {
            match devs.iter().position(|d| d == name) {
                Some(i) => pos(i),
                None => {
                    devs.push(name.to_string());
                    pos(devs.len() - 1)
                }
            }
        };
        let mut neighs = HashMap::with_capacity(plan.neighbours.len());
        for (i, n) in plan.neighbours.iter().enumerate() {
            neighs.insert((slot(&n.dev), n.ip), pos(i));
        }
        let mut fdb = HashMap::with_capacity(plan.fdb.len());
        let mut fdb_more: HashMap<(u32, [u8; 6]), Vec<u32>> = HashMap::new();
        for (i, f) in plan.fdb.iter().enumerate() {
            let key = (slot(&f.dev), f.mac.0);
            if fdb.contains_key(&key) {
                fdb_more.entry(key).or_default().push(pos(i));
            } else {
                fdb.insert(key, pos(i));
            }
        }
        Index {
            routes: plan
                .routes
                .iter()
                .enumerate()
                .map(|(i, r)| (r.dst, pos(i)))
                .collect(),
            neighs,
            fdb,
            fdb_more,
            links: plan.links.iter().map(|l| l.name.clone()).collect(),
            devs,
        }
    }

    fn dev(&self, name: &str) -> Option<u32> {
        self.devs.iter().position(|d| d == name).map(pos)
    }

    fn neigh(&self, dev: &str, ip: Ipv4Addr) -> Option<usize> {
        let d = self.dev(dev)?;
        self.neighs.get(&(d, ip)).map(|&i| i as usize)
    }

    /// The plan positions of every FDB entry planned for (`dev`, `mac`), in plan order.
    fn fdb_entries(&self, dev: &str, mac: [u8; 6]) -> impl Iterator<Item = usize> + '_ {
        let key = self.dev(dev).map(|d| (d, mac));
        let first = key.and_then(|k| self.fdb.get(&k)).copied();
        let more = key.and_then(|k| self.fdb_more.get(&k));
        first
            .into_iter()
            .chain(more.into_iter().flatten().copied())
            .map(|i| i as usize)
    }
}

/// A nexthop's key as a planned route asks for it: (gateway, device, onlink).
type NhKey = (Ipv4Addr, u32, bool);

fn nh_key(n: &Nexthop) -> NhKey {
    (n.gateway, n.ifindex, n.onlink)
}

/// One entry of [`Model::users`]: (nexthop id, destination address, prefix length).
type User = (u32, u32, u8);

fn user(id: u32, dst: Ipv4Net) -> User {
    (id, u32::from(dst.addr()), dst.prefix_len())
}

/// The node as last observed and updated by events since. Every index is a flat set or
/// map of small copied keys (no collection per object): at 20,000 nodes a set per
/// nexthop alone cost several MiB.
pub struct Model {
    index: Index,
    underlay: String,
    protocols: BTreeSet<u8>,
    style: RouteStyle,
    links: BTreeMap<u32, Link>,
    owned: BTreeSet<u32>,
    addrs: Vec<Addr>,
    routes: HashMap<Ipv4Net, Route>,
    /// Which routes of `routes` use each nexthop (a deleted nexthop takes them along).
    users: BTreeSet<User>,
    foreign: HashSet<Ipv4Net>,
    nexthops: HashMap<u32, Nexthop>,
    /// podnet's nexthops by (gateway, device, onlink) and id: the ones a planned route can
    /// reuse.
    by_key: BTreeSet<(Ipv4Addr, u32, bool, u32)>,
    other_ids: HashSet<u32>,
    neighs: HashMap<(u32, Ipv4Addr), Neigh>,
    /// FDB entries by (device, MAC, destination) → permanent: a vxlan device may hold
    /// several entries for one MAC.
    fdb: BTreeMap<(u32, [u8; 6], Option<Ipv4Addr>), bool>,
}

/// What [`Model::part`] cuts out for a repair.
pub struct Part {
    /// The plan reduced to the touched objects (links and addresses whole).
    pub plan: NodePlan,
    /// The model's observation of exactly those objects.
    pub observed: Observed,
    /// The nexthops of `observed` that no route outside the part uses: the repair may
    /// delete these when the part's routes no longer need them.
    pub deletable: BTreeSet<u32>,
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
            routes: HashMap::with_capacity(obs.routes.len()),
            users: BTreeSet::new(),
            foreign: obs.foreign_routes,
            nexthops: HashMap::with_capacity(obs.nexthops.len()),
            by_key: BTreeSet::new(),
            other_ids: obs.other_nexthop_ids.into_iter().collect(),
            neighs: obs
                .neighs
                .into_iter()
                .map(|n| ((n.index, n.ip), n))
                .collect(),
            fdb: obs
                .fdb
                .into_iter()
                .map(|f| ((f.index, f.mac, f.dst), f.permanent))
                .collect(),
        };
        for r in obs.routes {
            m.put_route(r);
        }
        for n in obs.nexthops {
            m.put_nexthop(n);
        }
        m
    }

    /// The same model aiming at `plan` from now on (after a config change was applied
    /// without a full re-read).
    pub fn replan(&mut self, plan: &NodePlan) {
        self.index = Index::of(plan);
    }

    fn put_nexthop(&mut self, n: Nexthop) {
        let key = nh_key(&n);
        self.by_key.insert((key.0, key.1, key.2, n.id));
        if let Some(old) = self.nexthops.insert(n.id, n)
            && nh_key(&old) != key
        {
            self.by_key
                .remove(&(old.gateway, old.ifindex, old.onlink, old.id));
        }
    }

    fn take_nexthop(&mut self, id: u32) -> bool {
        match self.nexthops.remove(&id) {
            Some(old) => {
                self.by_key
                    .remove(&(old.gateway, old.ifindex, old.onlink, old.id));
                true
            }
            None => false,
        }
    }

    /// podnet's nexthops with `key`.
    fn keyed(&self, key: NhKey) -> impl Iterator<Item = u32> + '_ {
        let (gw, dev, onlink) = key;
        self.by_key
            .range((gw, dev, onlink, 0)..=(gw, dev, onlink, u32::MAX))
            .map(|k| k.3)
    }

    /// The destinations of the routes that use nexthop `id`.
    fn users_of(&self, id: u32) -> impl Iterator<Item = Ipv4Net> + '_ {
        self.users
            .range((id, 0, 0)..=(id, u32::MAX, u8::MAX))
            .filter_map(|&(_, a, p)| Ipv4Net::new(Ipv4Addr::from(a), p).ok())
    }

    fn put_route(&mut self, r: Route) {
        if let Target::Nexthop(id) = r.target {
            self.users.insert(user(id, r.dst));
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
        {
            self.users.remove(&user(id, old.dst));
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
            ("fdb", self.fdb.len()),
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
                        let users: Vec<Ipv4Net> = self.users_of(id).collect();
                        for dst in users {
                            self.users.remove(&user(id, dst));
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
                if !self.links.contains_key(&key.0) {
                    return;
                }
                t.neighs.insert(key);
            }
            KernelEvent::Fdb { gone, fdb } => {
                if !self.owned.contains(&fdb.index) {
                    return;
                }
                let (index, mac) = (fdb.index, fdb.mac);
                if gone {
                    self.fdb.remove(&(index, mac, fdb.dst));
                } else {
                    self.fdb.insert((index, mac, fdb.dst), fdb.permanent);
                }
                // `bridge fdb replace` changes an entry's destination in place and
                // announces only the new one: when a MAC seems to have several
                // destinations, only a fresh read tells which still exist.
                if self.fdb_of(index, mac).nth(1).is_some() {
                    t.full(format!(
                        "FDB entry {} changed its destination",
                        crate::diff::mac(mac)
                    ));
                }
                if !self.links.contains_key(&index) {
                    return;
                }
                t.fdb.insert((index, mac));
            }
        }
        *t.kinds.entry(kind).or_default() += 1;
    }

    /// The FDB entries of (`index`, `mac`).
    fn fdb_of(&self, index: u32, mac: [u8; 6]) -> impl Iterator<Item = Fdb> + '_ {
        self.fdb
            .range((index, mac, None)..=(index, mac, Some(Ipv4Addr::BROADCAST)))
            .map(|(&(index, mac, dst), &permanent)| Fdb {
                index,
                mac,
                dst,
                permanent,
            })
    }

    /// The index of the link called `name`, as last observed.
    fn index_of(&self, name: &str) -> Option<u32> {
        self.links
            .values()
            .find(|l| l.name == name)
            .map(|l| l.index)
    }

    /// What differs between `old` (the plan this model aims at) and `new` among routes,
    /// neighbours and FDB entries, as the keys to repair: the changed, added and removed
    /// entries; the model aims at `new` from then on (see [`Model::replan`]). `None`, and
    /// no change, when an entry names a device the node does not have (only a full
    /// reconcile can tell what to do then). The caller checks that nothing else differs.
    pub fn change(&mut self, old: &NodePlan, new: &NodePlan) -> Option<Touched> {
        let ni = Index::of(new);
        let t = self.changed(old, new, &ni)?;
        self.index = ni;
        Some(t)
    }

    fn changed(&self, old: &NodePlan, new: &NodePlan, ni: &Index) -> Option<Touched> {
        let mut t = Touched::default();
        // Only the entries between the common head and tail of the two lists can differ:
        // an entry there is at the same place, equal, in both (a node added or removed
        // touches one window of each list, not the whole cluster).
        let (new_routes, old_routes) = differing(&new.routes, &old.routes);
        for r in new_routes {
            let same = self
                .index
                .routes
                .get(&r.dst)
                .is_some_and(|&i| old.routes.get(i as usize) == Some(r));
            if !same {
                t.routes.insert(r.dst);
            }
        }
        for r in old_routes {
            if !ni.routes.contains_key(&r.dst) {
                t.routes.insert(r.dst);
            }
        }
        let (new_neighs, old_neighs) = differing(&new.neighbours, &old.neighbours);
        let (new_fdb, old_fdb) = differing(&new.fdb, &old.fdb);
        for (other, index, neighs, fdb) in [
            (old, &self.index, new_neighs, new_fdb),
            (new, ni, old_neighs, old_fdb),
        ] {
            for n in neighs {
                let same = index
                    .neigh(&n.dev, n.ip)
                    .is_some_and(|i| other.neighbours.get(i) == Some(n));
                if !same {
                    t.neighs.insert((self.index_of(&n.dev)?, n.ip));
                }
            }
            for f in fdb {
                let same = index
                    .fdb_entries(&f.dev, f.mac.0)
                    .any(|i| other.fdb.get(i) == Some(f));
                if !same {
                    t.fdb.insert((self.index_of(&f.dev)?, f.mac.0));
                }
            }
        }
        Some(t)
    }

    /// `plan` cut down to the touched objects (links and addresses whole), the model's
    /// observation of exactly those objects, and which of its nexthops only they use.
    pub fn part(&self, plan: &NodePlan, t: &Touched) -> Part {
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
            if let Some(r) = self
                .index
                .routes
                .get(dst)
                .and_then(|&i| plan.routes.get(i as usize))
            {
                part.routes.push(r.clone());
            }
        }
        let dev_of = |index: u32| -> Option<&str> {
            let name = self.name(index)?;
            self.index.dev(name).map(|_| name)
        };
        for &(index, ip) in &t.neighs {
            if let Some(n) = dev_of(index)
                .and_then(|dev| self.index.neigh(dev, ip))
                .and_then(|i| plan.neighbours.get(i))
            {
                part.neighbours.push(n.clone());
            }
        }
        for &(index, mac) in &t.fdb {
            if let Some(dev) = dev_of(index) {
                part.fdb.extend(
                    self.index
                        .fdb_entries(dev, mac)
                        .filter_map(|i| plan.fdb.get(i))
                        .cloned(),
                );
            }
        }
        let by_name: HashMap<&str, u32> = self
            .links
            .values()
            .map(|l| (l.name.as_str(), l.index))
            .collect();
        let routes: Vec<Route> = t
            .routes
            .iter()
            .filter_map(|d| self.routes.get(d).cloned())
            .collect();
        // The nexthops those routes use, and podnet's nexthops a planned route could reuse.
        let mut wanted_keys: HashSet<NhKey> = HashSet::new();
        for r in &part.routes {
            if let Some(&i) = by_name.get(r.dev.as_str()) {
                wanted_keys.insert((r.via, i, r.onlink));
            }
        }
        // Only these nexthops matter to the cut-down diff. The ids of every other one are
        // needed only to pick a free id, i.e. when a wanted nexthop does not exist.
        let mut ids: BTreeSet<u32> = routes
            .iter()
            .filter_map(|r| match r.target {
                Target::Nexthop(id) => Some(id),
                Target::Gateway { .. } | Target::Other { .. } => None,
            })
            .collect();
        let mut missing = false;
        for k in &wanted_keys {
            let mut found = false;
            for id in self.keyed(*k) {
                found = true;
                ids.insert(id);
            }
            missing |= !found;
        }
        let nexthops: Vec<Nexthop> = ids
            .iter()
            .filter_map(|id| self.nexthops.get(id).cloned())
            .collect();
        // A nexthop that only touched routes use (or none) may go if they no longer need
        // it; one that any other route uses stays.
        let deletable: BTreeSet<u32> = nexthops
            .iter()
            .map(|n| n.id)
            .filter(|&id| self.users_of(id).all(|d| t.routes.contains(&d)))
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
            .filter_map(|key| self.neighs.get(key))
            .cloned()
            .collect();
        let fdb = t
            .fdb
            .iter()
            .flat_map(|&(index, mac)| self.fdb_of(index, mac))
            .collect();
        let observed = Observed {
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
        Part {
            plan: part,
            observed,
            deletable,
        }
    }
}
