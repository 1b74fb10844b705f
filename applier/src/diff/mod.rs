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
pub mod links;
pub mod neigh;
pub mod render;
pub mod routes;
pub mod sysctls;

use std::collections::{BTreeMap, BTreeSet};

use ahash::{AHashMap as HashMap, AHashSet as HashSet};

use podnet_compiler::plan::{self, NodePlan};

pub use self::conflict::{Conflict, ConflictKind};
pub use self::render::mac;
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
    d
}
