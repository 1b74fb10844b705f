//! Links (RTM_*LINK): the dump parser every observation starts from, and the requests that
//! create, change and delete podnet's bridge and vxlan devices.

use std::net::Ipv4Addr;

/// podnet's ownership marker: the ifalias of every link podnet creates.
pub const MARKER: &str = "podnet";

pub const RTM_NEWLINK: u16 = 16;
pub const RTM_DELLINK: u16 = 17;
pub const RTM_GETLINK: u16 = 18;

/// One link as the kernel reports it (only what the applier compares or needs).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Link {
    pub index: u32,
    pub name: String,
    /// `IFLA_INFO_KIND` (`bridge`, `vxlan`, `veth`, …); `None` for physical and loopback.
    pub kind: Option<String>,
    pub mtu: u32,
    pub mac: Option<[u8; 6]>,
    /// `IFF_UP` (administratively up).
    pub up: bool,
    pub alias: Option<String>,
    /// The bridge (or other controller) this link is enslaved to.
    pub master: Option<u32>,
    pub vxlan: Option<Vxlan>,
}

/// A vxlan device's attributes.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Vxlan {
    pub vni: u32,
    /// UDP destination port (host order).
    pub port: u16,
    pub local: Option<Ipv4Addr>,
    /// The underlay device's ifindex.
    pub link: Option<u32>,
    pub learning: bool,
}

/// How a change request names its link: by index, or by name for a link created earlier
/// in the same batch (whose index is not known yet).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum LinkRef {
    Index(u32),
    Name(String),
}

/// In-place changes (each `None` leaves that attribute alone).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct LinkChange {
    pub alias: Option<String>,
    pub mtu: Option<u32>,
    pub mac: Option<[u8; 6]>,
    pub up: Option<bool>,
}
