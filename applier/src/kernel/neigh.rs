//! Neighbours (ARP, `AF_INET`) and forwarding-database entries (`AF_BRIDGE`, `self`) on one
//! device: filtered dumps and permanent replace/delete requests (RTM_*NEIGH).

use std::net::Ipv4Addr;

pub const RTM_NEWNEIGH: u16 = 28;
pub const RTM_DELNEIGH: u16 = 29;
pub const RTM_GETNEIGH: u16 = 30;

/// An IPv4 neighbour entry.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct Neigh {
    pub index: u32,
    pub ip: Ipv4Addr,
    /// `None` for entries without a link-layer address (incomplete, failed).
    pub mac: Option<[u8; 6]>,
    /// `NUD_PERMANENT`: only permanent entries are podnet's; others are the kernel's cache.
    pub permanent: bool,
}

/// A forwarding entry on a vxlan device: frames for `mac` go to the VTEP `dst`.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct Fdb {
    pub index: u32,
    pub mac: [u8; 6],
    /// `NDA_DST`; `None` when the entry has no IPv4 destination.
    pub dst: Option<Ipv4Addr>,
    pub permanent: bool,
}
