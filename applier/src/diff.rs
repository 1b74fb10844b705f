//! The pure diff for a whole node: its plan × what was observed (kernel objects, sysctls,
//! files) → operations in execution order. Creates go links → addresses → neighbours/FDB →
//! nexthops/routes; deletes run in the reverse order after every create. No IO here.
//!
//! Links are compared on the attributes the plan declares (kind, MTU, up, the vxlan MAC and
//! attributes); everything the kernel or the CNI plugins set (the bridge's MAC, its ports)
//! is not drift. A vxlan whose VNI, port, local address, underlay or learning flag differs
//! cannot be changed in place: it is deleted and created again, and everything observed on
//! the old device counts as gone (the kernel removes it with the device). A link that does
//! not exist yet gets a placeholder index so the rest of the diff can still be shown; the
//! applier executes link operations first and diffs again with the real indices.

use std::collections::{BTreeMap, BTreeSet};

use ahash::{AHashMap as HashMap, AHashSet as HashSet};
use std::fmt::{self, Write as _};
use std::net::Ipv4Addr;

use podnet_compiler::plan::{self, LinkKind, NodePlan};

use crate::diff_routes::{self, RouteOp, RouteStyle, WantRoute};
use crate::kernel::addr::Addr;
use crate::kernel::link::{Link, LinkChange, MARKER, Vxlan};
use crate::kernel::neigh::{Fdb, Neigh};
use crate::kernel::nexthop::Nexthop;
use crate::kernel::route::{Route, Target};

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
    /// Destinations of routes that exist now (a route replace on them is a change, `~`).
    pub existing_routes: HashSet<ipnet::Ipv4Net>,
    pub conflicts: Vec<String>,
}

impl Diff {
    pub fn is_empty(&self) -> bool {
        self.ops.is_empty()
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

/// Computes the operations that make the node exactly `plan`.
pub fn diff(plan: &NodePlan, obs: &Observed) -> Diff {
    let mut d = Diff::default();
    let by_name: HashMap<&str, &Link> = obs.links.iter().map(|l| (l.name.as_str(), l)).collect();
    for l in &obs.links {
        d.names.insert(l.index, l.name.clone());
    }
    // Indices whose addresses, neighbours and FDB entries go with the device (stale or
    // recreated links); routes and nexthops are always deleted explicitly first, because
    // removing a device with thousands of routes attached costs the kernel O(N²).
    let mut doomed: BTreeSet<u32> = BTreeSet::new();
    let mut recreated: BTreeSet<u32> = BTreeSet::new();
    // The index each planned link will have (real, or a placeholder until created).
    let mut index_of: HashMap<&str, u32> = HashMap::new();
    for l in &obs.links {
        index_of.insert(l.name.as_str(), l.index);
    }

    // Sysctls.
    for s in &plan.sysctls {
        match obs.sysctls.get(&s.key) {
            Some(Some(v)) if v.trim() == s.value.trim() => {}
            Some(Some(v)) => d.ops.push(Op::Sysctl {
                key: s.key.clone(),
                value: s.value.clone(),
                was: Some(v.trim().to_string()),
            }),
            _ => d.conflicts.push(format!(
                "sysctl {} does not exist on this kernel (is its module loaded?)",
                s.key
            )),
        }
    }

    // Links.
    let mut recreate_deletes = Vec::new();
    let mut link_ops = Vec::new();
    for (pos, want) in plan.links.iter().enumerate() {
        let placeholder = PLACEHOLDER + pos as u32;
        let underlay = match &want.vxlan {
            Some(v) => match by_name.get(v.dev.as_str()) {
                Some(u) if !obs.owned.contains(&u.index) => Some(u.index),
                Some(_) => {
                    d.conflicts.push(format!(
                        "vxlan {} cannot use {}, a device podnet owns, as its underlay",
                        want.name, v.dev
                    ));
                    None
                }
                None => {
                    d.conflicts.push(format!(
                        "underlay interface {} of vxlan {} does not exist",
                        v.dev, want.name
                    ));
                    None
                }
            },
            None => None,
        };
        if let Some(w) = &want.vxlan
            && let Some(other) = obs.links.iter().find(|l| {
                !obs.owned.contains(&l.index)
                    && l.vxlan
                        .as_ref()
                        .is_some_and(|x| x.vni == w.vni && x.port == w.port)
            })
        {
            d.conflicts.push(format!(
                "vxlan {} (not podnet's) already uses VNI {} on UDP port {}: the kernel \
                 refuses a second device for it; delete {} or choose another vni/port",
                other.name, w.vni, w.port, other.name
            ));
        }
        let create = Op::LinkCreate {
            link: want.clone(),
            underlay,
        };
        match by_name.get(want.name.as_str()) {
            None => {
                index_of.insert(want.name.as_str(), placeholder);
                d.names.insert(placeholder, want.name.clone());
                link_ops.push(create);
            }
            Some(have) if !obs.owned.contains(&have.index) => d.conflicts.push(format!(
                "link {} exists and is not podnet's (its ifalias is not `{MARKER}`): delete it or \
                 rename the link in the cluster file (`cni {{ bridge NAME }}`, vxlan `device`)",
                want.name
            )),
            Some(have) => match recreate_reason(want, have, underlay) {
                Some(reason) => {
                    doomed.insert(have.index);
                    recreated.insert(have.index);
                    index_of.insert(want.name.as_str(), placeholder);
                    d.names.insert(placeholder, want.name.clone());
                    recreate_deletes.push(Op::LinkDelete {
                        index: have.index,
                        name: have.name.clone(),
                        reason,
                    });
                    link_ops.push(create);
                }
                None => {
                    let change = link_change(want, have);
                    if change != LinkChange::default() {
                        link_ops.push(Op::LinkChange {
                            index: have.index,
                            name: have.name.clone(),
                            change,
                        });
                    }
                }
            },
        }
    }
    let planned: BTreeSet<&str> = plan.links.iter().map(|l| l.name.as_str()).collect();
    let mut stale_links = Vec::new();
    for l in &obs.links {
        if obs.owned.contains(&l.index) && !planned.contains(l.name.as_str()) {
            doomed.insert(l.index);
            stale_links.push(Op::LinkDelete {
                index: l.index,
                name: l.name.clone(),
                reason: "stale".to_string(),
            });
        }
    }
    d.ops.extend(recreate_deletes);
    d.ops.extend(link_ops);

    // `what` describes the object only when its device is missing (no formatting per
    // object on the hot path: a 20,000-node plan has 60,000 of them).
    let idx = |d: &mut Diff, dev: &str, what: &dyn Fn() -> String| -> Option<u32> {
        let i = index_of.get(dev).copied();
        if i.is_none() {
            d.conflicts
                .push(format!("device {dev} of {} does not exist", what()));
        }
        i
    };

    // Addresses: every IPv4 address on an owned link is podnet's.
    let mut want_addrs = BTreeSet::new();
    for a in &plan.addresses {
        if let Some(index) = idx(&mut d, &a.dev, &|| format!("address {}", a.address)) {
            want_addrs.insert(Addr {
                index,
                address: a.address,
            });
        }
    }
    let have_addrs: BTreeSet<&Addr> = obs
        .addrs
        .iter()
        .filter(|a| obs.owned.contains(&a.index) && !doomed.contains(&a.index))
        .collect();
    for a in &want_addrs {
        if !have_addrs.contains(a) {
            d.ops.push(Op::AddrReplace(a.clone()));
        }
    }
    let addr_deletes: Vec<Op> = have_addrs
        .iter()
        .filter(|a| !want_addrs.contains(**a))
        .map(|a| Op::AddrDelete((*a).clone()))
        .collect();

    // Neighbours: permanent entries on owned vxlan links are podnet's; the kernel's own
    // cache entries are left alone unless a planned entry replaces them.
    let live = |i: &u32| obs.owned.contains(i) && !doomed.contains(i);
    let mut want_neigh: Vec<(u32, Ipv4Addr, [u8; 6])> = Vec::with_capacity(plan.neighbours.len());
    for n in &plan.neighbours {
        if let Some(index) = idx(&mut d, &n.dev, &|| format!("neighbour {}", n.ip)) {
            want_neigh.push((index, n.ip, n.mac.0));
        }
    }
    let wanted_neigh: HashSet<(u32, Ipv4Addr)> =
        want_neigh.iter().map(|&(i, ip, _)| (i, ip)).collect();
    let have_neigh: HashMap<(u32, Ipv4Addr), &Neigh> = obs
        .neighs
        .iter()
        .filter(|n| live(&n.index))
        .map(|n| ((n.index, n.ip), n))
        .collect();
    for &(index, ip, mac) in &want_neigh {
        let ok = have_neigh
            .get(&(index, ip))
            .is_some_and(|n| n.permanent && n.mac == Some(mac));
        if !ok {
            d.ops.push(Op::NeighReplace(Neigh {
                index,
                ip,
                mac: Some(mac),
                permanent: true,
            }));
        }
    }
    let mut neigh_deletes: Vec<Op> = obs
        .neighs
        .iter()
        .filter(|n| live(&n.index) && n.permanent && !wanted_neigh.contains(&(n.index, n.ip)))
        .map(|n| Op::NeighDelete(n.clone()))
        .collect();

    // FDB: every entry with a destination on an owned vxlan link is podnet's.
    let mut want_fdb: Vec<(u32, [u8; 6], Ipv4Addr)> = Vec::with_capacity(plan.fdb.len());
    for f in &plan.fdb {
        if let Some(index) = idx(&mut d, &f.dev, &|| format!("fdb entry {}", f.mac)) {
            want_fdb.push((index, f.mac.0, f.dst));
        }
    }
    let have_fdb: HashSet<(u32, [u8; 6], Ipv4Addr)> = obs
        .fdb
        .iter()
        .filter(|f| live(&f.index) && f.permanent)
        .filter_map(|f| f.dst.map(|dst| (f.index, f.mac, dst)))
        .collect();
    for &(index, mac, dst) in &want_fdb {
        if !have_fdb.contains(&(index, mac, dst)) {
            d.ops.push(Op::FdbReplace(Fdb {
                index,
                mac,
                dst: Some(dst),
                permanent: true,
            }));
        }
    }
    let want_fdb: HashSet<(u32, [u8; 6], Ipv4Addr)> = want_fdb.into_iter().collect();
    let mut fdb_deletes: Vec<Op> = obs
        .fdb
        .iter()
        .filter(|f| live(&f.index))
        .filter(|f| {
            f.dst
                .is_some_and(|dst| !want_fdb.contains(&(f.index, f.mac, dst)))
        })
        .map(|f| Op::FdbDelete(f.clone()))
        .collect();

    // Routes and nexthops.
    let mut want_routes = Vec::with_capacity(plan.routes.len());
    let mut in_the_way = 0;
    for r in &plan.routes {
        if obs.foreign_routes.contains(&r.dst) {
            if in_the_way < 5 {
                d.conflicts.push(format!(
                    "a route to {} that is not podnet's exists in the main table (another \
                     protocol); podnet would replace it: delete it or change the cluster file",
                    r.dst
                ));
            }
            in_the_way += 1;
        }
        if let Some(ifindex) = idx(&mut d, &r.dev, &|| format!("route {}", r.dst)) {
            want_routes.push(WantRoute {
                dst: r.dst,
                via: r.via,
                ifindex,
                onlink: r.onlink,
            });
        }
    }
    // Routes and nexthops on a link about to be recreated are deleted before it (the
    // recreated link's stage), so the route diff below sees them as gone.
    if in_the_way > 5 {
        d.conflicts.push(format!(
            "… and {} more foreign routes in the way",
            in_the_way - 5
        ));
    }
    if !obs.journaled {
        let p = plan.route_protocol;
        let routes = obs.routes.iter().filter(|r| r.protocol == p).count();
        let nexthops = obs.nexthops.iter().filter(|n| n.protocol == p).count();
        if routes + nexthops > 0 {
            d.conflicts.push(format!(
                "{routes} route(s) and {nexthops} nexthop(s) of protocol {p} exist but podnet has \
                 no journal here, so they may be another tool's: choose another route-protocol, \
                 or run `podnet teardown` to delete every route of protocol {p}"
            ));
        }
    }
    let gone_nh: BTreeSet<u32> = obs
        .nexthops
        .iter()
        .filter(|n| recreated.contains(&n.ifindex) && obs.protocols.contains(&n.protocol))
        .map(|n| n.id)
        .collect();
    let on_recreated = |r: &Route| match r.target {
        Target::Nexthop(id) => gone_nh.contains(&id),
        Target::Gateway { ifindex, .. } => recreated.contains(&ifindex),
    };
    let alive = |r: &&Route| !on_recreated(r);
    let mut pre: Vec<Op> = obs
        .routes
        .iter()
        .filter(|r| on_recreated(r))
        .map(|r| Op::Route(RouteOp::RouteDelete(r.clone())))
        .collect();
    pre.extend(
        gone_nh
            .iter()
            .map(|id| Op::Route(RouteOp::NexthopDelete(*id))),
    );
    let at = d
        .ops
        .iter()
        .position(|o| matches!(o, Op::LinkDelete { .. }))
        .unwrap_or(d.ops.len());
    d.ops.splice(at..at, pre);
    d.existing_routes = obs
        .routes
        .iter()
        .filter(|r| r.protocol == plan.route_protocol)
        .map(|r| r.dst)
        .collect();
    let current = diff_routes::Observed {
        routes: obs
            .routes
            .iter()
            .filter(|r| r.protocol == plan.route_protocol)
            .filter(alive)
            .cloned()
            .collect(),
        nexthops: obs
            .nexthops
            .iter()
            .filter(|n| !gone_nh.contains(&n.id))
            .cloned()
            .collect(),
        other_ids: obs.other_nexthop_ids.clone(),
    };
    let route_ops = diff_routes::diff(&want_routes, &current, plan.route_protocol, obs.style);
    let (creates, deletes): (Vec<RouteOp>, Vec<RouteOp>) = route_ops
        .into_iter()
        .partition(|o| matches!(o, RouteOp::NexthopAdd(_) | RouteOp::RouteReplace(_)));
    d.ops.extend(creates.into_iter().map(Op::Route));
    // Routes of protocols podnet used before go too, before their nexthops.
    let old = |p: u8| p != plan.route_protocol && obs.protocols.contains(&p);
    let mut old_routes: Vec<&Route> = obs
        .routes
        .iter()
        .filter(|r| old(r.protocol))
        .filter(alive)
        .collect();
    old_routes.sort_by_key(|r| r.dst);
    let (route_deletes, nh_deletes): (Vec<RouteOp>, Vec<RouteOp>) = deletes
        .into_iter()
        .partition(|o| matches!(o, RouteOp::RouteDelete(_)));
    d.ops.extend(route_deletes.into_iter().map(Op::Route));
    d.ops.extend(
        old_routes
            .into_iter()
            .map(|r| Op::Route(RouteOp::RouteDelete(r.clone()))),
    );
    d.ops.extend(nh_deletes.into_iter().map(Op::Route));
    let mut old_nh: Vec<u32> = obs
        .nexthops
        .iter()
        .filter(|n| old(n.protocol) && !gone_nh.contains(&n.id))
        .map(|n| n.id)
        .collect();
    old_nh.sort_unstable();
    d.ops.extend(
        old_nh
            .into_iter()
            .map(|id| Op::Route(RouteOp::NexthopDelete(id))),
    );

    fdb_deletes.sort_by_key(|o| match o {
        Op::FdbDelete(f) => (f.index, f.mac, f.dst),
        _ => (0, [0; 6], None),
    });
    d.ops.extend(fdb_deletes);
    neigh_deletes.sort_by_key(|o| match o {
        Op::NeighDelete(n) => (n.index, n.ip),
        _ => (0, Ipv4Addr::UNSPECIFIED),
    });
    d.ops.extend(neigh_deletes);
    d.ops.extend(addr_deletes);
    d.ops.extend(stale_links);

    // Files.
    let planned_files: BTreeSet<&str> = plan.files.iter().map(|f| f.path.as_str()).collect();
    for f in &plan.files {
        let same = obs.files.get(&f.path).is_some_and(|s| {
            s.as_ref()
                .is_some_and(|s| s.mode == f.mode && s.content == f.content.as_bytes())
        });
        if !same {
            d.ops.push(Op::FileWrite(f.clone()));
        }
    }
    // A journaled file that left the plan goes back to what it was before podnet.
    for (path, state) in &obs.files {
        if planned_files.contains(path.as_str()) {
            continue;
        }
        match obs.file_priors.get(path) {
            Some(Some(prior)) if state.as_ref() != Some(prior) => d.ops.push(Op::FileRestore {
                path: path.clone(),
                state: prior.clone(),
            }),
            Some(Some(_)) => {}
            _ if state.is_some() => d.ops.push(Op::FileRemove(path.clone())),
            _ => {}
        }
    }
    d
}

/// Why an owned link must be deleted and created again, if it must.
fn recreate_reason(want: &plan::Link, have: &Link, underlay: Option<u32>) -> Option<String> {
    let kind = match want.kind {
        LinkKind::Bridge => "bridge",
        LinkKind::Vxlan => "vxlan",
    };
    if have.kind.as_deref() != Some(kind) {
        return Some(format!(
            "kind {} → {kind}",
            have.kind.as_deref().unwrap_or("none")
        ));
    }
    let (Some(w), Some(h)) = (&want.vxlan, &have.vxlan) else {
        return match (&want.vxlan, &have.vxlan) {
            (Some(_), None) => Some("vxlan attributes unreadable".to_string()),
            _ => None,
        };
    };
    let want_vx = Vxlan {
        vni: w.vni,
        port: w.port,
        local: Some(w.local),
        link: underlay,
        learning: w.learning,
    };
    let mut why = Vec::new();
    if h.vni != want_vx.vni {
        why.push(format!("vni {} → {}", h.vni, want_vx.vni));
    }
    if h.port != want_vx.port {
        why.push(format!("port {} → {}", h.port, want_vx.port));
    }
    if h.local != want_vx.local {
        why.push(format!("local {} → {}", opt(h.local), w.local));
    }
    if underlay.is_some() && h.link != underlay {
        why.push(format!("underlay → {}", w.dev));
    }
    if h.learning != want_vx.learning {
        why.push(format!("learning {} → {}", h.learning, w.learning));
    }
    (!why.is_empty()).then(|| why.join(", "))
}

fn opt(a: Option<Ipv4Addr>) -> String {
    a.map_or_else(|| "none".to_string(), |a| a.to_string())
}

/// The in-place changes that make `have` match `want`.
fn link_change(want: &plan::Link, have: &Link) -> LinkChange {
    let mut c = LinkChange::default();
    if have.alias.as_deref() != Some(MARKER) {
        c.alias = Some(MARKER.to_string());
    }
    if have.mtu != want.mtu {
        c.mtu = Some(want.mtu);
    }
    if let Some(mac) = want.mac
        && have.mac != Some(mac.0)
    {
        c.mac = Some(mac.0);
    }
    if have.up != want.up {
        c.up = Some(want.up);
    }
    c
}

/// A MAC in text form.
pub fn mac(m: [u8; 6]) -> String {
    plan::Mac(m).to_string()
}

impl Diff {
    fn name(&self, index: u32) -> String {
        self.names
            .get(&index)
            .cloned()
            .unwrap_or_else(|| format!("if{index}"))
    }

    /// The terraform-like rendering: one `+ ~ -` line per operation.
    pub fn render(&self) -> String {
        let mut s = String::new();
        for op in &self.ops {
            // Writing to a String cannot fail.
            let _ = writeln!(s, "{}", self.line(op));
        }
        s
    }

    /// One operation as a line.
    pub fn line(&self, op: &Op) -> String {
        match op {
            Op::Sysctl { key, value, was } => format!(
                "~ sysctl {key} = {value} (was {})",
                was.as_deref().unwrap_or("unset")
            ),
            Op::LinkCreate { link, .. } => {
                let mut l = format!("+ link {} {}", link.name, kind(link.kind));
                let _ = write!(l, " mtu {}", link.mtu);
                if let Some(m) = link.mac {
                    let _ = write!(l, " address {m}");
                }
                if let Some(v) = &link.vxlan {
                    let _ = write!(
                        l,
                        " vni {} port {} local {} dev {}",
                        v.vni, v.port, v.local, v.dev
                    );
                }
                l
            }
            Op::LinkChange { name, change, .. } => {
                let mut parts = Vec::new();
                if let Some(m) = change.mtu {
                    parts.push(format!("mtu {m}"));
                }
                if let Some(m) = change.mac {
                    parts.push(format!("address {}", mac(m)));
                }
                if let Some(up) = change.up {
                    parts.push(if up { "up" } else { "down" }.to_string());
                }
                if change.alias.is_some() {
                    parts.push(format!("alias {MARKER}"));
                }
                format!("~ link {name} {}", parts.join(" "))
            }
            Op::LinkDelete { name, reason, .. } => {
                if reason == "stale" {
                    format!("- link {name}")
                } else {
                    format!("- link {name} (to be created again: {reason})")
                }
            }
            Op::AddrReplace(a) => format!("+ address {} dev {}", a.address, self.name(a.index)),
            Op::AddrDelete(a) => format!("- address {} dev {}", a.address, self.name(a.index)),
            Op::NeighReplace(n) => format!(
                "+ neighbour {} lladdr {} dev {}",
                n.ip,
                n.mac.map_or_else(|| "none".to_string(), mac),
                self.name(n.index)
            ),
            Op::NeighDelete(n) => format!("- neighbour {} dev {}", n.ip, self.name(n.index)),
            Op::FdbReplace(f) => format!(
                "+ fdb {} dst {} dev {}",
                mac(f.mac),
                opt(f.dst),
                self.name(f.index)
            ),
            Op::FdbDelete(f) => format!(
                "- fdb {} dst {} dev {}",
                mac(f.mac),
                opt(f.dst),
                self.name(f.index)
            ),
            Op::Route(RouteOp::NexthopAdd(n)) => format!(
                "+ nexthop id {} via {} dev {}{}",
                n.id,
                n.gateway,
                self.name(n.ifindex),
                if n.onlink { " onlink" } else { "" }
            ),
            Op::Route(RouteOp::NexthopDelete(id)) => format!("- nexthop id {id}"),
            Op::Route(RouteOp::RouteReplace(r)) => {
                let sign = if self.existing_routes.contains(&r.dst) {
                    "~"
                } else {
                    "+"
                };
                format!("{sign} route {} {}", r.dst, self.target(&r.target))
            }
            Op::Route(RouteOp::RouteDelete(r)) => {
                format!(
                    "- route {} {} proto {}",
                    r.dst,
                    self.target(&r.target),
                    r.protocol
                )
            }
            Op::FileWrite(f) => format!(
                "+ file {} (mode {:04o}, {} bytes)",
                f.path,
                f.mode,
                f.content.len()
            ),
            Op::FileRestore { path, state } => format!(
                "~ file {path} (restored as before podnet: mode {:04o}, {} bytes)",
                state.mode,
                state.content.len()
            ),
            Op::FileRemove(p) => format!("- file {p}"),
        }
    }

    fn target(&self, t: &Target) -> String {
        match t {
            Target::Nexthop(id) => format!("nhid {id}"),
            Target::Gateway {
                via,
                ifindex,
                onlink,
            } => format!(
                "via {via} dev {}{}",
                self.name(*ifindex),
                if *onlink { " onlink" } else { "" }
            ),
        }
    }

    /// Counts by sign: (added, changed, removed).
    pub fn counts(&self) -> (usize, usize, usize) {
        let mut c = (0, 0, 0);
        for op in &self.ops {
            match self.sign(op) {
                '+' => c.0 += 1,
                '~' => c.1 += 1,
                _ => c.2 += 1,
            }
        }
        c
    }

    /// The first character of [`Diff::line`] (`+` add, `~` change, `-` remove), without
    /// formatting the line: counting a 60,000-operation diff must not render it.
    pub fn sign(&self, op: &Op) -> char {
        match op {
            Op::LinkCreate { .. }
            | Op::AddrReplace(_)
            | Op::NeighReplace(_)
            | Op::FdbReplace(_)
            | Op::Route(RouteOp::NexthopAdd(_))
            | Op::FileWrite(_) => '+',
            Op::Sysctl { .. } | Op::LinkChange { .. } | Op::FileRestore { .. } => '~',
            Op::Route(RouteOp::RouteReplace(r)) if self.existing_routes.contains(&r.dst) => '~',
            Op::Route(RouteOp::RouteReplace(_)) => '+',
            Op::LinkDelete { .. }
            | Op::AddrDelete(_)
            | Op::NeighDelete(_)
            | Op::FdbDelete(_)
            | Op::Route(RouteOp::RouteDelete(_) | RouteOp::NexthopDelete(_))
            | Op::FileRemove(_) => '-',
        }
    }
}

fn kind(k: LinkKind) -> &'static str {
    match k {
        LinkKind::Bridge => "bridge",
        LinkKind::Vxlan => "vxlan",
    }
}

impl fmt::Display for Diff {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.render())
    }
}
