//! IPv4 route requests and dumps in the raw batching socket's terms, built from
//! `netlink-packet-route`'s message types. Every route podnet writes carries its protocol.

use std::net::Ipv4Addr;

use ipnet::Ipv4Net;
use rtnetlink::packet_core::Emitable;
use rtnetlink::packet_route::AddressFamily;
use rtnetlink::packet_route::route::{
    RouteAddress, RouteAttribute, RouteHeader, RouteMessage, RouteProtocol, RouteScope, RouteType,
};

use super::nl::{NLM_F_CREATE, NLM_F_EXCL, NLM_F_REPLACE, Request, attrs};

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
    /// What podnet never writes but may find under its protocol (someone's `ip route
    /// replace blackhole … proto 77`, a device route): `kind` is the `RTN_*` type, `ifindex`
    /// the output device if any. Replaced when planned, deleted otherwise.
    Other { kind: u8, ifindex: Option<u32> },
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
            Target::Other { kind, ifindex } => {
                m.header.kind = RouteType::from(*kind);
                if let Some(i) = ifindex {
                    m.attributes.push(RouteAttribute::Oif(*i));
                    if *kind == RTN_UNICAST {
                        m.header.scope = RouteScope::Link;
                    }
                }
            }
        }
        m
    }

    fn request(&self, kind: u16, flags: u16) -> Request {
        Request::emitted(kind, flags, &self.message())
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

    /// The strict-check dump request for main-table IPv4 routes of `protocol` (0: of every
    /// protocol).
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
        match Dumped::parse(payload)? {
            Dumped { route: Some(r), .. } if r.protocol == protocol => Some(r),
            _ => None,
        }
    }
}

/// Any main-table IPv4 route as dumped: podnet's kind (`route`, when it is a unicast route
/// with a nexthop id or a gateway) or another (its destination, protocol, type and metric,
/// enough to tell whether a planned route would replace it).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Dumped {
    pub dst: Ipv4Net,
    pub protocol: u8,
    /// `RTN_*` (1 unicast, 6 blackhole, …).
    pub kind: u8,
    pub tos: u8,
    /// `RTA_PRIORITY` (0 when absent).
    pub metric: u32,
    pub route: Option<Route>,
}

impl Dumped {
    /// Decoded by hand: a no-op apply parses every route of the main table, and the generic
    /// message type allocates a vector of attributes per route. `None` for other tables and
    /// families.
    pub fn parse(payload: &[u8]) -> Option<Dumped> {
        // struct rtmsg { family, dst_len, src_len, tos, table, protocol, scope, type, flags }
        let h = payload.get(..12)?;
        let (family, dst_len, tos, table8, proto, kind) = (h[0], h[1], h[3], h[4], h[5], h[7]);
        let flags = u32::from_ne_bytes([h[8], h[9], h[10], h[11]]);
        const AF_INET: u8 = 2;
        if family != AF_INET {
            return None;
        }
        let (mut dst, mut nhid, mut via, mut oif) = (Ipv4Addr::UNSPECIFIED, None, None, None);
        let mut table = u32::from(table8);
        let mut metric = 0;
        let u32_of = |v: &[u8]| {
            v.get(..4)
                .map(|b| u32::from_ne_bytes([b[0], b[1], b[2], b[3]]))
        };
        let ip_of = |v: &[u8]| v.get(..4).map(|b| Ipv4Addr::new(b[0], b[1], b[2], b[3]));
        for (k, v) in attrs(&payload[12..]) {
            match k {
                RTA_DST => dst = ip_of(v)?,
                RTA_OIF => oif = u32_of(v),
                RTA_GATEWAY => via = ip_of(v),
                RTA_PRIORITY => metric = u32_of(v)?,
                RTA_TABLE => table = u32_of(v)?,
                RTA_NH_ID => nhid = u32_of(v),
                _ => {}
            }
        }
        if table != u32::from(RouteHeader::RT_TABLE_MAIN) {
            return None;
        }
        let dst = Ipv4Net::new(dst, dst_len).ok()?;
        let target = match (nhid, via, oif) {
            (Some(id), _, _) => Some(Target::Nexthop(id)),
            (None, Some(via), Some(ifindex)) => Some(Target::Gateway {
                via,
                ifindex,
                onlink: flags & RTNH_F_ONLINK != 0,
            }),
            _ => None,
        };
        let target = match target {
            Some(t) if kind == RTN_UNICAST => Some(t),
            // Unicast without a gateway (a device route), blackhole, unreachable, prohibit.
            _ if matches!(kind, RTN_UNICAST | 6 | 7 | 8) => {
                Some(Target::Other { kind, ifindex: oif })
            }
            _ => None,
        };
        let route = target.map(|target| Route {
            dst,
            target,
            protocol: proto,
        });
        Some(Dumped {
            dst,
            protocol: proto,
            kind,
            tos,
            metric,
            route,
        })
    }
}

const RTN_UNICAST: u8 = 1;
const RTA_DST: u16 = 1;
const RTA_OIF: u16 = 4;
const RTA_GATEWAY: u16 = 5;
const RTA_PRIORITY: u16 = 6;
const RTA_TABLE: u16 = 15;
const RTA_NH_ID: u16 = 30;

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
