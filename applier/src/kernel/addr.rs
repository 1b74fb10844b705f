//! IPv4 addresses (RTM_*ADDR): dump parser and replace/delete requests.

use std::net::IpAddr;

use ipnet::Ipv4Net;
use rtnetlink::packet_core::{Emitable, Parseable};
use rtnetlink::packet_route::AddressFamily;
use rtnetlink::packet_route::address::{AddressAttribute, AddressMessage, AddressScope};

use super::nl::{NLM_F_CREATE, NLM_F_REPLACE, Request};

pub const RTM_NEWADDR: u16 = 20;
pub const RTM_DELADDR: u16 = 21;
pub const RTM_GETADDR: u16 = 22;

/// An IPv4 address with its prefix on link `index` (the local address, `IFA_LOCAL`).
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Addr {
    pub index: u32,
    pub address: Ipv4Net,
}

impl Addr {
    fn message(&self) -> AddressMessage {
        let mut m = AddressMessage::default();
        m.header.family = AddressFamily::Inet;
        m.header.prefix_len = self.address.prefix_len();
        m.header.scope = AddressScope::Universe;
        m.header.index = self.index;
        let ip = IpAddr::V4(self.address.addr());
        // Both, as `ip addr add` does: IFA_LOCAL is the address, IFA_ADDRESS the (same) peer.
        m.attributes.push(AddressAttribute::Local(ip));
        m.attributes.push(AddressAttribute::Address(ip));
        m
    }

    fn request(&self, kind: u16, flags: u16) -> Request {
        Request::emitted(kind, flags, &self.message())
    }

    /// Create or replace (`NLM_F_CREATE | NLM_F_REPLACE`): replacing an address that is
    /// already there succeeds.
    pub fn replace(&self) -> Request {
        self.request(RTM_NEWADDR, NLM_F_CREATE | NLM_F_REPLACE)
    }

    /// Delete (EADDRNOTAVAIL if the link does not have this address and prefix).
    pub fn delete(&self) -> Request {
        self.request(RTM_DELADDR, 0)
    }

    /// The strict-check dump request for every IPv4 address (no index filter: the caller
    /// filters by index).
    pub fn dump_request() -> Vec<u8> {
        let mut m = AddressMessage::default();
        m.header.family = AddressFamily::Inet;
        let mut p = vec![0u8; m.buffer_len()];
        m.emit(&mut p);
        p
    }

    /// Parses a dumped address; `None` for other families or input the crate rejects. The
    /// address is `IFA_LOCAL`, else `IFA_ADDRESS`, with the header's prefix length.
    pub fn parse(payload: &[u8]) -> Option<Addr> {
        let m = AddressMessage::parse(payload).ok()?;
        if m.header.family != AddressFamily::Inet {
            return None;
        }
        let (mut local, mut address) = (None, None);
        for a in &m.attributes {
            match a {
                AddressAttribute::Local(IpAddr::V4(ip)) => local = Some(*ip),
                AddressAttribute::Address(IpAddr::V4(ip)) => address = Some(*ip),
                _ => {}
            }
        }
        Some(Addr {
            index: m.header.index,
            address: Ipv4Net::new(local.or(address)?, m.header.prefix_len).ok()?,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn addr(s: &str, index: u32) -> Addr {
        Addr {
            index,
            address: s.parse().expect("net"),
        }
    }

    #[test]
    fn encode_then_parse() {
        for a in [addr("10.244.1.1/24", 4), addr("10.244.1.0/32", 5)] {
            let r = a.replace();
            assert_eq!(
                (r.kind, r.flags),
                (RTM_NEWADDR, NLM_F_CREATE | NLM_F_REPLACE)
            );
            assert_eq!(Addr::parse(&r.payload), Some(a.clone()), "host bits kept");
            let d = a.delete();
            assert_eq!((d.kind, d.flags), (RTM_DELADDR, 0));
            assert_eq!(Addr::parse(&d.payload), Some(a));
        }
    }

    #[test]
    fn garbage_is_none() {
        let full = addr("10.244.1.1/24", 4).replace().payload;
        for n in 0..full.len() {
            // Never panics; anything shorter than the two attributes loses the address.
            let _ = Addr::parse(&full[..n]);
        }
        assert_eq!(Addr::parse(&full[..7]), None);
        assert_eq!(Addr::parse(&Addr::dump_request()), None, "no address");
        let mut v6 = full.clone();
        v6[0] = 10;
        assert_eq!(Addr::parse(&v6), None);
        let mut bad_prefix = full;
        bad_prefix[1] = 33;
        assert_eq!(Addr::parse(&bad_prefix), None);
        assert_eq!(Addr::parse(&[0xff; 30]), None);
    }
}
