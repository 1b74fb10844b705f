//! IPv4 addresses (RTM_*ADDR): dump parser and replace/delete requests.

use ipnet::Ipv4Net;

pub const RTM_NEWADDR: u16 = 20;
pub const RTM_DELADDR: u16 = 21;
pub const RTM_GETADDR: u16 = 22;

/// An IPv4 address with its prefix on link `index` (the local address, `IFA_LOCAL`).
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Addr {
    pub index: u32,
    pub address: Ipv4Net,
}
