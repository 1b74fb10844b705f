//! IPv4 route requests and dumps in the raw batching socket's terms, built from
//! `netlink-packet-route`'s message types. Every route podnet writes carries its protocol.

use std::net::Ipv4Addr;

use ipnet::Ipv4Net;
use rtnetlink::packet_core::{Emitable, Parseable};
use rtnetlink::packet_route::AddressFamily;
use rtnetlink::packet_route::route::{
    RouteAddress, RouteAttribute, RouteHeader, RouteMessage, RouteProtocol, RouteScope, RouteType,
};

use super::nl::{NLM_F_CREATE, NLM_F_EXCL, NLM_F_REPLACE, Request};

pub const RTM_NEWROUTE: u16 = 24;
pub const RTM_DELROUTE: u16 = 25;
pub const RTM_GETROUTE: u16 = 26;

/// Where a route sends traffic.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub enum Target {
    /// A nexthop object id (`nhid N`).
    Nexthop(u32),
    /// A gateway on an interface (`via GW dev IFINDEX [onlink]`): the fallback for kernels
    /// without nexthop objects.
    Gateway {
        via: Ipv4Addr,
        ifindex: u32,
        onlink: bool,
    },
}

/// A main-table unicast IPv4 route of protocol `protocol`.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct Route {
    pub dst: Ipv4Net,
    pub target: Target,
    pub protocol: u8,
}

const RTNH_F_ONLINK: u32 = 4;

impl Route {
    fn message(&self) -> RouteMessage {
        let mut m = RouteMessage::default();
        m.header = RouteHeader {
            address_family: AddressFamily::Inet,
            destination_prefix_length: self.dst.prefix_len(),
            table: RouteHeader::RT_TABLE_MAIN,
            protocol: RouteProtocol::from(self.protocol),
            scope: RouteScope::Universe,
            kind: RouteType::Unicast,
            ..RouteHeader::default()
        };
        m.attributes
            .push(RouteAttribute::Destination(RouteAddress::Inet(
                self.dst.network(),
            )));
        match &self.target {
            Target::Nexthop(id) => m.attributes.push(RouteAttribute::NhId(*id)),
            Target::Gateway {
                via,
                ifindex,
                onlink,
            } => {
                m.attributes
                    .push(RouteAttribute::Gateway(RouteAddress::Inet(*via)));
                m.attributes.push(RouteAttribute::Oif(*ifindex));
                if *onlink {
                    m.header.flags =
                        rtnetlink::packet_route::route::RouteFlags::from_bits_retain(RTNH_F_ONLINK);
                }
            }
        }
        m
    }

    fn request(&self, kind: u16, flags: u16) -> Request {
        let m = self.message();
        let mut payload = vec![0u8; m.buffer_len()];
        m.emit(&mut payload);
        Request {
            kind,
            flags,
            payload,
        }
    }

    /// Create or replace the route for `dst` (one message: never delete-then-add).
    pub fn replace(&self) -> Request {
        self.request(RTM_NEWROUTE, NLM_F_CREATE | NLM_F_REPLACE)
    }

    /// Create only (EEXIST if a route for `dst` exists).
    pub fn add(&self) -> Request {
        self.request(RTM_NEWROUTE, NLM_F_CREATE | NLM_F_EXCL)
    }

    /// Delete this route (protocol, table and type must match what the kernel has).
    pub fn delete(&self) -> Request {
        self.request(RTM_DELROUTE, 0)
    }

    /// The strict-check dump request for main-table IPv4 routes of `protocol`.
    pub fn dump_request(protocol: u8) -> Vec<u8> {
        let mut m = RouteMessage::default();
        m.header.address_family = AddressFamily::Inet;
        m.header.table = RouteHeader::RT_TABLE_MAIN;
        m.header.protocol = RouteProtocol::from(protocol);
        m.header.kind = RouteType::Unspec;
        let mut p = vec![0u8; m.buffer_len()];
        m.emit(&mut p);
        p
    }

    /// Parses a dumped route; `None` unless it is a main-table IPv4 unicast route of
    /// `protocol` (the kernel filter is a hint, so filter again here).
    pub fn parse(payload: &[u8], protocol: u8) -> Option<Route> {
        let m = RouteMessage::parse(payload).ok()?;
        let h = &m.header;
        let table = m
            .attributes
            .iter()
            .find_map(|a| match a {
                RouteAttribute::Table(t) => Some(*t),
                _ => None,
            })
            .unwrap_or(u32::from(h.table));
        if h.address_family != AddressFamily::Inet
            || u8::from(h.protocol) != protocol
            || table != u32::from(RouteHeader::RT_TABLE_MAIN)
            || h.kind != RouteType::Unicast
        {
            return None;
        }
        let (mut dst, mut nhid, mut via, mut oif) = (Ipv4Addr::UNSPECIFIED, None, None, None);
        for a in &m.attributes {
            match a {
                RouteAttribute::Destination(RouteAddress::Inet(d)) => dst = *d,
                RouteAttribute::NhId(id) => nhid = Some(*id),
                RouteAttribute::Gateway(RouteAddress::Inet(g)) => via = Some(*g),
                RouteAttribute::Oif(i) => oif = Some(*i),
                _ => {}
            }
        }
        let target = match (nhid, via, oif) {
            (Some(id), _, _) => Target::Nexthop(id),
            (None, Some(via), Some(ifindex)) => Target::Gateway {
                via,
                ifindex,
                onlink: h.flags.bits() & RTNH_F_ONLINK != 0,
            },
            _ => return None,
        };
        Some(Route {
            dst: Ipv4Net::new(dst, h.destination_prefix_length).ok()?,
            target,
            protocol,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn encode_then_parse() {
        for target in [
            Target::Nexthop(9),
            Target::Gateway {
                via: Ipv4Addr::new(10, 4, 7, 22),
                ifindex: 2,
                onlink: true,
            },
        ] {
            let r = Route {
                dst: "172.7.22.0/24".parse().expect("net"),
                target,
                protocol: 77,
            };
            assert_eq!(Route::parse(&r.replace().payload, 77), Some(r.clone()));
            assert_eq!(
                Route::parse(&r.replace().payload, 78),
                None,
                "other protocol"
            );
        }
    }
}
