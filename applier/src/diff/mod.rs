//! The pure diff for a whole node: its plan × what was observed (kernel objects, sysctls,
//! files) → operations in execution order. No IO here.
//!
//! One module per object kind computes that kind's operations ([`sysctls`], [`links`],
//! [`addrs`], [`neigh`], [`routes`], [`files`]); this module only composes them in the
//! order the kernel needs: sysctls, recreated links (their routes and nexthops first), link
//! creates and changes, then creates of addresses → neighbours/FDB → nexthops/routes, then
//! deletes in the reverse order, stale links, and files last. [`render`] turns operations
//! into `+ ~ -` lines. A link that does not exist yet gets a placeholder index so the rest
//! of the diff can still be shown; the applier executes link operations first and diffs
//! again with the real indices.

pub mod addrs;
mod conflict;
pub mod files;
pub mod json;
pub mod links;
pub mod neigh;
pub mod render;
pub mod routes;
pub mod sysctls;
pub mod warnings;

use std::collections::{BTreeMap, BTreeSet};

use ahash::{AHashMap as HashMap, AHashSet as HashSet};

use podnet_compiler::plan::{self, NodePlan};

pub use self::conflict::{Conflict, ConflictKind};
pub use self::render::{Counts, Detail, mac};
use self::routes::{RouteOp, RouteStyle};
use crate::kernel::addr::Addr;
use crate::kernel::link::{Link, LinkChange};
use crate::kernel::neigh::{Fdb, Neigh};
use crate::kernel::nexthop::Nexthop;
use crate::kernel::route::Route;

/// Placeholder indices for links that do not exist yet: `PLACEHOLDER + position`.
pub const PLACEHOLDER: u32 = 0xffff_0000;

/// A file as found on disk.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FileState {
    pub mode: u32,
    pub content: Vec<u8>,
}

/// Everything the diff compares against: podnet's own objects plus the few foreign facts
/// it needs (every link's name and index).
#[derive(Clone, Debug)]
pub struct Observed {
    /// Every link (foreign ones too: underlay devices are looked up by name).
    pub links: Vec<Link>,
    /// Indices of the links podnet owns (ifalias marker, or recorded in the journal).
    pub owned: BTreeSet<u32>,
    /// IPv4 addresses on owned links.
    pub addrs: Vec<Addr>,
    /// Main-table routes of every protocol in `protocols`.
    pub routes: Vec<Route>,
    /// Every IPv4 nexthop object (owned ones carry a protocol in `protocols`).
    pub nexthops: Vec<Nexthop>,
    /// Ids of every other nexthop object (IPv6, groups, blackholes): not podnet's, but taken.
    pub other_nexthop_ids: Vec<u32>,
    /// Destinations of main-table routes that are not podnet's and that a planned route
    /// with the same destination would replace (TOS 0, metric 0).
    pub foreign_routes: HashSet<ipnet::Ipv4Net>,
    /// The foreign gateway routes among those (what `--adopt` may take over).
    pub foreign_gateways: Vec<Route>,
    /// Foreign routes the journal says podnet adopted and has not replaced yet: a planned
    /// route to their destination replaces them in place.
    pub adopted_routes: Vec<Route>,
    /// Whether the node has a journal (without one, routes of the plan's protocol are not
    /// known to be podnet's).
    pub journaled: bool,
    /// Whether the kernel has nexthop objects.
    pub style: RouteStyle,
    /// The route protocols podnet has used on this node (the plan's and the journal's).
    pub protocols: BTreeSet<u8>,
    /// Neighbours on owned vxlan links.
    pub neighs: Vec<Neigh>,
    /// FDB entries on owned vxlan links.
    pub fdb: Vec<Fdb>,
    /// Current values of the planned sysctls (`None`: the key does not exist).
    pub sysctls: BTreeMap<String, Option<String>>,
    /// The planned files and the files the journal says podnet wrote (`None`: absent).
    pub files: BTreeMap<String, Option<FileState>>,
    /// What the journaled files were before podnet first wrote them (`None`: absent).
    pub file_priors: BTreeMap<String, Option<FileState>>,
}

impl Default for Observed {
    fn default() -> Self {
        Observed {
            links: Vec::new(),
            owned: BTreeSet::new(),
            addrs: Vec::new(),
            routes: Vec::new(),
            nexthops: Vec::new(),
            other_nexthop_ids: Vec::new(),
            foreign_routes: HashSet::new(),
            foreign_gateways: Vec::new(),
            adopted_routes: Vec::new(),
            journaled: false,
            style: RouteStyle::Nexthops,
            protocols: BTreeSet::new(),
            neighs: Vec::new(),
            fdb: Vec::new(),
            sysctls: BTreeMap::new(),
            files: BTreeMap::new(),
            file_priors: BTreeMap::new(),
        }
    }
}

/// One change, in execution order.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Op {
    Sysctl {
        key: String,
        value: String,
        was: Option<String>,
    },
    /// Create a link (exclusive: EEXIST if the name was taken since the observation).
    LinkCreate {
        link: plan::Link,
        /// The vxlan underlay device's index.
        underlay: Option<u32>,
    },
    LinkChange {
        index: u32,
        name: String,
        change: LinkChange,
    },
    LinkDelete {
        index: u32,
        name: String,
        /// Why: `stale` (not in the plan) or the attribute that forces recreation.
        reason: String,
    },
    AddrReplace(Addr),
    AddrDelete(Addr),
    NeighReplace(Neigh),
    NeighDelete(Neigh),
    FdbReplace(Fdb),
    FdbDelete(Fdb),
    Route(RouteOp),
    FileWrite(plan::File),
    /// Write back what a file was before podnet first wrote it (it left the plan).
    FileRestore {
        path: String,
        state: FileState,
    },
    FileRemove(String),
}

impl Op {
    /// Whether this is a link operation (executed first, before indices are known).
    pub fn is_link(&self) -> bool {
        matches!(
            self,
            Op::LinkCreate { .. } | Op::LinkChange { .. } | Op::LinkDelete { .. }
        )
    }
}

/// The diff's result: operations, the index → name map to render them, and conflicts that
/// forbid applying at all (a foreign link in the way, a missing underlay device).
#[derive(Clone, Debug, Default)]
pub struct Diff {
    pub ops: Vec<Op>,
    pub names: BTreeMap<u32, String>,
    pub conflicts: Vec<Conflict>,
    /// What the changed objects are now, so a change renders as `old → new`.
    pub before: Before,
    /// Which node each peer route, nexthop, neighbour and FDB entry belongs to (filled by
    /// whoever knows the cluster; empty for a plan read from JSON).
    pub nodes: NodeNames,
}

/// The observed state of exactly the objects the operations touch (links changed or
/// deleted, nexthops routes point at or that are deleted, files rewritten), and what goes
/// with each deleted link. Only rendering and counting read it.
#[derive(Clone, Debug, Default)]
pub struct Before {
    /// Links changed or deleted, by index.
    pub links: BTreeMap<u32, Link>,
    /// Nexthops (observed or about to be added) by id.
    pub nexthops: BTreeMap<u32, Nexthop>,
    /// Files written or restored: what is there now (`None`: absent).
    pub files: BTreeMap<String, Option<FileState>>,
    /// Objects the kernel removes with a deleted link: addresses, permanent neighbours and
    /// FDB entries on it.
    pub on_link: BTreeMap<u32, OnLink>,
    /// Pods on each bridge changed or deleted: links enslaved to it (their veths).
    pub pods: BTreeMap<u32, usize>,
}

/// What the kernel removes together with a link.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct OnLink {
    pub addresses: usize,
    pub neighbours: usize,
    pub fdb: usize,
}

impl OnLink {
    pub fn total(self) -> usize {
        self.addresses + self.neighbours + self.fdb
    }
}

/// Node names by the addresses that identify a peer: its subnet, its subnet's network
/// address (vxlan gateways and neighbours) and its underlay address (host-gw gateways, FDB
/// destinations).
#[derive(Clone, Debug, Default)]
pub struct NodeNames {
    by_subnet: HashMap<ipnet::Ipv4Net, String>,
    by_addr: HashMap<std::net::Ipv4Addr, String>,
}

impl NodeNames {
    /// Records node `name` with its underlay `address` and `subnet`.
    pub fn insert(
        &mut self,
        name: &str,
        address: std::net::Ipv4Addr,
        subnet: Option<ipnet::Ipv4Net>,
    ) {
        self.by_addr.insert(address, name.to_string());
        if let Some(s) = subnet {
            self.by_subnet.insert(s, name.to_string());
            self.by_addr.insert(s.network(), name.to_string());
        }
    }

    /// Every node of a compiled cluster.
    pub fn of_cluster(cluster: &podnet_compiler::Cluster) -> NodeNames {
        let mut n = NodeNames::default();
        for node in &cluster.nodes {
            n.insert(
                &node.name.value,
                node.address.value.addr(),
                node.subnet.as_ref().map(|s| s.value),
            );
        }
        n
    }

    /// Adds the names of `other` that this one lacks (e.g. nodes that left the file).
    pub fn merge(&mut self, other: NodeNames) {
        for (k, v) in other.by_subnet {
            self.by_subnet.entry(k).or_insert(v);
        }
        for (k, v) in other.by_addr {
            self.by_addr.entry(k).or_insert(v);
        }
    }

    pub fn is_empty(&self) -> bool {
        self.by_addr.is_empty()
    }

    /// The node whose subnet is `dst`.
    pub fn subnet(&self, dst: &ipnet::Ipv4Net) -> Option<&str> {
        self.by_subnet.get(dst).map(String::as_str)
    }

    /// The node an address identifies.
    pub fn addr(&self, a: &std::net::Ipv4Addr) -> Option<&str> {
        self.by_addr.get(a).map(String::as_str)
    }

    /// `(name, address, subnet)` of every node recorded, sorted by name (for saving).
    pub fn entries(&self) -> Vec<(String, Option<std::net::Ipv4Addr>, Option<ipnet::Ipv4Net>)> {
        let mut by_name: BTreeMap<&str, (Option<std::net::Ipv4Addr>, Option<ipnet::Ipv4Net>)> =
            BTreeMap::new();
        for (s, n) in &self.by_subnet {
            by_name.entry(n).or_default().1 = Some(*s);
        }
        for (a, n) in &self.by_addr {
            let e = by_name.entry(n).or_default();
            if e.1.is_none_or(|s| s.network() != *a) {
                e.0 = Some(*a);
            }
        }
        by_name
            .into_iter()
            .map(|(n, (a, s))| (n.to_string(), a, s))
            .collect()
    }
}

impl Diff {
    pub fn is_empty(&self) -> bool {
        self.ops.is_empty()
    }

    /// Every conflict's message, joined by `; `.
    pub fn conflict_summary(&self) -> String {
        let texts: Vec<String> = self.conflicts.iter().map(ToString::to_string).collect();
        texts.join("; ")
    }

    /// How many leading operations (sysctls, then link creates, changes and recreations)
    /// must run before the rest can name links by index; 0 when no link is created or
    /// changed. Stale links are deleted at the very end and are not part of it.
    pub fn link_stage(&self) -> usize {
        let lead = self
            .ops
            .iter()
            .take_while(|o| {
                o.is_link()
                    || matches!(
                        o,
                        Op::Sysctl { .. }
                            | Op::Route(RouteOp::RouteDelete(_) | RouteOp::NexthopDelete(_))
                    )
            })
            .count();
        if self.ops[..lead].iter().any(Op::is_link) {
            lead
        } else {
            0
        }
    }
}

/// One kind's operations: creates and changes run in the forward pass, deletes in the
/// reverse pass after every create.
#[derive(Debug, Default)]
pub struct Changes {
    pub creates: Vec<Op>,
    pub deletes: Vec<Op>,
}

/// The index every device name resolves to: observed links by their index, planned links
/// not created yet by their placeholder.
pub struct Devices<'a> {
    index_of: HashMap<&'a str, u32>,
}

impl Devices<'_> {
    /// The index of `dev`, or a [`Conflict::MissingDevice`]. `what` describes the object;
    /// it is only called when the device is missing (no formatting per object on the hot
    /// path: a 20,000-node plan has 60,000 of them).
    pub fn resolve(
        &self,
        conflicts: &mut Vec<Conflict>,
        dev: &str,
        what: &dyn Fn() -> String,
    ) -> Option<u32> {
        let i = self.index_of.get(dev).copied();
        if i.is_none() {
            conflicts.push(Conflict::MissingDevice {
                dev: dev.to_string(),
                object: what(),
            });
        }
        i
    }
}

/// Computes the operations that make the node exactly `plan`.
pub fn diff(plan: &NodePlan, obs: &Observed) -> Diff {
    let mut d = Diff::default();
    for l in &obs.links {
        d.names.insert(l.index, l.name.clone());
    }
    d.ops.extend(sysctls::diff(plan, obs, &mut d.conflicts));

    let links = links::diff(plan, obs, &mut d.conflicts);
    let mut index_of: HashMap<&str, u32> = obs
        .links
        .iter()
        .map(|l| (l.name.as_str(), l.index))
        .collect();
    for (name, placeholder) in &links.placeholders {
        index_of.insert(name.as_str(), *placeholder);
        d.names.insert(*placeholder, name.clone());
    }
    let devices = Devices { index_of };
    d.ops.extend(links.recreate_deletes);
    d.ops.extend(links.changes);

    let addrs = addrs::diff(plan, obs, &links.doomed, &devices, &mut d.conflicts);
    let neigh = neigh::diff(plan, obs, &links.doomed, &devices, &mut d.conflicts);
    let routes = routes::node(plan, obs, &links.recreated, &devices, &mut d.conflicts);

    // Routes and nexthops on a link about to be recreated go before it (the recreated
    // link's stage), so the route diff sees them as gone.
    let at = d
        .ops
        .iter()
        .position(|o| matches!(o, Op::LinkDelete { .. }))
        .unwrap_or(d.ops.len());
    d.ops.splice(at..at, routes.pre);

    d.ops.extend(addrs.creates);
    d.ops.extend(neigh.creates);
    d.ops.extend(routes.changes.creates);
    d.ops.extend(routes.changes.deletes);
    d.ops.extend(neigh.deletes);
    d.ops.extend(addrs.deletes);
    d.ops.extend(links.stale);
    d.ops.extend(files::diff(plan, obs));
    d.before = before(&d.ops, obs);
    d
}

/// The observed state of what `ops` touch (see [`Before`]); nothing when nothing changes.
fn before(ops: &[Op], obs: &Observed) -> Before {
    let mut b = Before::default();
    if ops.is_empty() {
        return b;
    }
    let link = |i: u32| obs.links.iter().find(|l| l.index == i).cloned();
    let mut nh_ids = BTreeSet::new();
    for op in ops {
        match op {
            Op::LinkChange { index, .. } => {
                if let Some(l) = link(*index) {
                    b.links.insert(*index, l);
                }
            }
            Op::LinkDelete { index, .. } => {
                if let Some(l) = link(*index) {
                    b.links.insert(*index, l);
                }
                b.on_link.insert(*index, OnLink::default());
            }
            // A bridge losing its address: the node subnet moves under running pods.
            Op::AddrDelete(a) => {
                if let Some(l) = link(a.index) {
                    b.links.insert(a.index, l);
                }
            }
            Op::Route(RouteOp::NexthopAdd(n)) => {
                b.nexthops.insert(n.id, n.clone());
            }
            Op::Route(RouteOp::NexthopDelete(id)) => {
                nh_ids.insert(*id);
            }
            Op::Route(
                RouteOp::RouteAdd(r)
                | RouteOp::RouteDelete(r)
                | RouteOp::RouteReplace { route: r, .. },
            ) => {
                if let crate::kernel::route::Target::Nexthop(id) = r.target {
                    nh_ids.insert(id);
                }
                if let Op::Route(RouteOp::RouteReplace {
                    was: crate::kernel::route::Target::Nexthop(id),
                    ..
                }) = op
                {
                    nh_ids.insert(*id);
                }
            }
            Op::FileWrite(f) => {
                b.files
                    .insert(f.path.clone(), obs.files.get(&f.path).cloned().flatten());
            }
            Op::FileRestore { path, .. } => {
                b.files
                    .insert(path.clone(), obs.files.get(path).cloned().flatten());
            }
            _ => {}
        }
    }
    if !nh_ids.is_empty() {
        for n in &obs.nexthops {
            if nh_ids.contains(&n.id) {
                b.nexthops.entry(n.id).or_insert_with(|| n.clone());
            }
        }
    }
    for (index, l) in &b.links {
        if l.kind == Some(crate::kernel::link::KernelLinkKind::Bridge) {
            let n = obs
                .links
                .iter()
                .filter(|p| p.master == Some(*index))
                .count();
            b.pods.insert(*index, n);
        }
    }
    if !b.on_link.is_empty() {
        for a in &obs.addrs {
            if let Some(c) = b.on_link.get_mut(&a.index) {
                c.addresses += 1;
            }
        }
        for n in obs.neighs.iter().filter(|n| n.permanent) {
            if let Some(c) = b.on_link.get_mut(&n.index) {
                c.neighbours += 1;
            }
        }
        for f in obs.fdb.iter().filter(|f| f.dst.is_some()) {
            if let Some(c) = b.on_link.get_mut(&f.index) {
                c.fdb += 1;
            }
        }
    }
    b
}
