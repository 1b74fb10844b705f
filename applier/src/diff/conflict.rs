//! Conflicts: what the diff found that forbids applying at all (a foreign object in the
//! way, a missing prerequisite). Typed, so the engine can tell them apart; the Display
//! text is the message and hint people read.

use std::fmt;

use ipnet::Ipv4Net;

use crate::kernel::link::MARKER;

/// How many foreign routes in the way are reported one by one; the last of them carries
/// the count of the rest.
pub const ROUTES_LISTED: usize = 5;

/// One reason the plan cannot be applied on this node as it is.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum Conflict {
    /// A link with a planned name exists and is not podnet's.
    ForeignLink { name: String },
    /// A vxlan device that is not podnet's already uses the planned VNI and port.
    ForeignVxlan { name: String, vni: u32, port: u16 },
    /// The underlay device of a planned vxlan does not exist.
    MissingUnderlay { dev: String, vxlan: String },
    /// The underlay device of a planned vxlan is one of podnet's own devices.
    UnderlayIsPodnets { dev: String, vxlan: String },
    /// The device an object (address, neighbour, FDB entry, route) is planned on does
    /// not exist and is not planned.
    MissingDevice { dev: String, object: String },
    /// A route of another protocol to a planned destination, which a planned route would
    /// replace; `more` counts the further ones not listed.
    ForeignRoute { dst: Ipv4Net, more: usize },
    /// Routes or nexthops of the plan's protocol exist, but podnet has no journal here.
    UnjournaledRoutes {
        routes: usize,
        nexthops: usize,
        protocol: u8,
    },
    /// A planned sysctl does not exist on this kernel.
    MissingSysctl { key: String },
    /// A file that is not podnet's acts against the plan (a CNI configuration sorting
    /// before podnet's conflist, a stale `subnet.env`); `adoptable`: it is flannel's, so
    /// `--adopt` takes it over (found by the engine, which reads the files).
    ForeignFile {
        path: String,
        why: String,
        adoptable: bool,
    },
    /// The plan is for another node: this machine does not have the plan's underlay
    /// address on its interface (checked by the engine, which reads the underlay).
    WrongNode {
        node: String,
        interface: String,
        address: Ipv4Net,
    },
}

/// What kind of obstacle a [`Conflict`] is.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum ConflictKind {
    /// Something that is not podnet's is where the plan puts something of podnet's.
    ForeignObject,
    /// Something the plan needs (a device, a sysctl) is missing or unusable.
    MissingPrerequisite,
    /// The plan was made for another node.
    WrongNode,
}

impl Conflict {
    pub fn kind(&self) -> ConflictKind {
        match self {
            Conflict::ForeignLink { .. }
            | Conflict::ForeignVxlan { .. }
            | Conflict::ForeignRoute { .. }
            | Conflict::UnjournaledRoutes { .. }
            | Conflict::ForeignFile { .. } => ConflictKind::ForeignObject,
            Conflict::MissingUnderlay { .. }
            | Conflict::UnderlayIsPodnets { .. }
            | Conflict::MissingDevice { .. }
            | Conflict::MissingSysctl { .. } => ConflictKind::MissingPrerequisite,
            Conflict::WrongNode { .. } => ConflictKind::WrongNode,
        }
    }
}

impl fmt::Display for Conflict {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Conflict::ForeignLink { name } => write!(
                f,
                "link {name} exists and is not podnet's (its ifalias is not `{MARKER}`): delete \
                 it or rename the link in the cluster file (`cni {{ bridge NAME }}`, vxlan \
                 `device`)"
            ),
            Conflict::ForeignVxlan { name, vni, port } => write!(
                f,
                "vxlan {name} (not podnet's) already uses VNI {vni} on UDP port {port}: the \
                 kernel refuses a second device for it; delete {name} or choose another vni/port"
            ),
            Conflict::MissingUnderlay { dev, vxlan } => {
                write!(
                    f,
                    "underlay interface {dev} of vxlan {vxlan} does not exist"
                )
            }
            Conflict::UnderlayIsPodnets { dev, vxlan } => write!(
                f,
                "vxlan {vxlan} cannot use {dev}, a device podnet owns, as its underlay"
            ),
            Conflict::MissingDevice { dev, object } => {
                write!(f, "device {dev} of {object} does not exist")
            }
            Conflict::ForeignRoute { dst, more } => {
                write!(
                    f,
                    "a route to {dst} that is not podnet's exists in the main table (another \
                     protocol); podnet would replace it: delete it or change the cluster file"
                )?;
                if *more > 0 {
                    write!(f, " (… and {more} more foreign routes in the way)")?;
                }
                Ok(())
            }
            Conflict::UnjournaledRoutes {
                routes,
                nexthops,
                protocol: p,
            } => write!(
                f,
                "{routes} route(s) and {nexthops} nexthop(s) of protocol {p} exist but podnet \
                 has no journal here, so they may be another tool's: choose another \
                 route-protocol, or run `podnet teardown` to delete every route of protocol {p}"
            ),
            Conflict::MissingSysctl { key } => write!(
                f,
                "sysctl {key} does not exist on this kernel (is its module loaded?)"
            ),
            Conflict::ForeignFile {
                path,
                why,
                adoptable,
            } => write!(
                f,
                "file {path} is not podnet's and {why}: {}",
                if *adoptable {
                    "it is flannel's: `--adopt` journals and removes it (teardown puts it back)"
                } else {
                    "move it away or rename podnet's (`cni { file NAME }`)"
                }
            ),
            Conflict::WrongNode {
                node,
                interface,
                address,
            } => write!(
                f,
                "this plan is for node {node}, whose underlay address {address} is not on \
                 {interface} here: apply the plan of this machine's node"
            ),
        }
    }
}
