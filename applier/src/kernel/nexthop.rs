//! Nexthop objects (`ip nexthop`, RTM_NEWNEXTHOP): the codec `netlink-packet-route` lacks.
//! Routes that point at a nexthop id avoid the kernel's O(N²) per-gateway fib_info cost.

use std::net::Ipv4Addr;

use super::nl::{Request, attrs, push_attr};

pub const RTM_NEWNEXTHOP: u16 = 104;
pub const RTM_DELNEXTHOP: u16 = 105;
pub const RTM_GETNEXTHOP: u16 = 106;

const NHA_ID: u16 = 1;
const NHA_OIF: u16 = 5;
const NHA_GATEWAY: u16 = 6;
const RTNH_F_ONLINK: u32 = 4;
const AF_INET: u8 = 2;

/// An IPv4 nexthop object: `id N via GW dev IFINDEX [onlink] proto P`.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct Nexthop {
    pub id: u32,
    pub gateway: Ipv4Addr,
    pub ifindex: u32,
    pub onlink: bool,
    pub protocol: u8,
}

impl Nexthop {
    fn header(&self) -> Vec<u8> {
        let flags = if self.onlink { RTNH_F_ONLINK } else { 0 };
        let mut p = Vec::with_capacity(40);
        // struct nhmsg { family, scope, protocol, resvd, flags }
        p.extend_from_slice(&[AF_INET, 0, self.protocol, 0]);
        p.extend_from_slice(&flags.to_ne_bytes());
        p
    }

    /// Create or replace (`NLM_F_CREATE | NLM_F_REPLACE`).
    pub fn replace(&self) -> Request {
        let mut p = self.header();
        push_attr(&mut p, NHA_ID, &self.id.to_ne_bytes());
        push_attr(&mut p, NHA_OIF, &self.ifindex.to_ne_bytes());
        push_attr(&mut p, NHA_GATEWAY, &self.gateway.octets());
        Request {
            kind: RTM_NEWNEXTHOP,
            flags: super::nl::NLM_F_CREATE | super::nl::NLM_F_REPLACE,
            payload: p,
        }
    }

    /// Create only (`NLM_F_CREATE | NLM_F_EXCL`): EEXIST when the id is taken, so a new
    /// nexthop can never overwrite one that podnet did not see.
    pub fn add(&self) -> Request {
        let mut r = self.replace();
        r.flags = super::nl::NLM_F_CREATE | super::nl::NLM_F_EXCL;
        r
    }

    /// Delete by id.
    pub fn delete(id: u32) -> Request {
        let mut p = vec![AF_INET, 0, 0, 0, 0, 0, 0, 0];
        push_attr(&mut p, NHA_ID, &id.to_ne_bytes());
        Request {
            kind: RTM_DELNEXTHOP,
            flags: 0,
            payload: p,
        }
    }

    /// The dump request payload for nexthops of every family and kind (podnet's are IPv4
    /// gateways; the others matter because their ids are taken).
    pub fn dump_request() -> Vec<u8> {
        vec![0, 0, 0, 0, 0, 0, 0, 0]
    }

    /// The id of any dumped nexthop (IPv6, groups, blackholes included).
    pub fn parse_id(payload: &[u8]) -> Option<u32> {
        attrs(payload.get(8..)?).find_map(|(k, v)| match (k, v.len()) {
            (NHA_ID, 4) => Some(u32::from_ne_bytes([v[0], v[1], v[2], v[3]])),
            _ => None,
        })
    }

    /// Parses a dumped nexthop; `None` for groups, blackholes and non-IPv4 entries.
    pub fn parse(payload: &[u8]) -> Option<Nexthop> {
        let hdr = payload.get(..8)?;
        if hdr[0] != AF_INET {
            return None;
        }
        let flags = u32::from_ne_bytes([hdr[4], hdr[5], hdr[6], hdr[7]]);
        let (mut id, mut oif, mut gw) = (None, None, None);
        for (k, v) in attrs(&payload[8..]) {
            match (k, v.len()) {
                (NHA_ID, 4) => id = Some(u32::from_ne_bytes([v[0], v[1], v[2], v[3]])),
                (NHA_OIF, 4) => oif = Some(u32::from_ne_bytes([v[0], v[1], v[2], v[3]])),
                (NHA_GATEWAY, 4) => gw = Some(Ipv4Addr::new(v[0], v[1], v[2], v[3])),
                _ => {}
            }
        }
        Some(Nexthop {
            id: id?,
            gateway: gw?,
            ifindex: oif?,
            onlink: flags & RTNH_F_ONLINK != 0,
            protocol: hdr[2],
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn encode_then_parse() {
        let nh = Nexthop {
            id: 77_001,
            gateway: Ipv4Addr::new(10, 4, 7, 22),
            ifindex: 3,
            onlink: true,
            protocol: 77,
        };
        let r = nh.replace();
        assert_eq!(r.kind, RTM_NEWNEXTHOP);
        assert_eq!(Nexthop::parse(&r.payload), Some(nh));
        assert_eq!(Nexthop::parse(&[2, 0]), None);
        assert_eq!(
            Nexthop::parse(&Nexthop::delete(5).payload),
            None,
            "no gateway"
        );
    }
}
