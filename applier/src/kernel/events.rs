//! Kernel change notifications: one rtnetlink socket subscribed to the link, IPv4 address,
//! IPv4 route, neighbour and nexthop groups (one socket, so its events arrive in the order
//! the kernel made the changes), and one nfnetlink socket on the nftables group. Events are
//! decoded with the same codecs as the dumps; an overrun (`ENOBUFS`: events were lost) is an
//! event of its own, meaning "re-read everything".

use std::io;

use rtnetlink::sys::protocols::{NETLINK_NETFILTER, NETLINK_ROUTE};
use rtnetlink::sys::{Socket, SocketAddr};

use super::addr::Addr;
use super::link::Link;
use super::neigh::{Fdb, Neigh};
use super::nexthop::Nexthop;
use super::route::Dumped;

const RTNLGRP_LINK: u32 = 1;
const RTNLGRP_NEIGH: u32 = 3;
const RTNLGRP_IPV4_IFADDR: u32 = 5;
const RTNLGRP_IPV4_ROUTE: u32 = 7;
const RTNLGRP_NEXTHOP: u32 = 32;
const NFNLGRP_NFTABLES: u32 = 7;

const RTM_NEWLINK: u16 = 16;
const RTM_DELLINK: u16 = 17;
const RTM_NEWADDR: u16 = 20;
const RTM_DELADDR: u16 = 21;
const RTM_NEWROUTE: u16 = 24;
const RTM_DELROUTE: u16 = 25;
const RTM_NEWNEIGH: u16 = 28;
const RTM_DELNEIGH: u16 = 29;
const RTM_NEWNEXTHOP: u16 = 104;
const RTM_DELNEXTHOP: u16 = 105;
const NFNL_SUBSYS_NFTABLES: u16 = 10;
const NFT_MSG_NEWGEN: u16 = 15;

/// One change the kernel announced.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum KernelEvent {
    Link {
        gone: bool,
        link: Link,
    },
    Addr {
        gone: bool,
        addr: Addr,
    },
    /// A main-table IPv4 route (any protocol).
    Route {
        gone: bool,
        route: Dumped,
    },
    /// An IPv4 gateway nexthop (`nexthop`) or any other nexthop object (only its id).
    Nexthop {
        gone: bool,
        id: u32,
        nexthop: Option<Nexthop>,
    },
    Neigh {
        gone: bool,
        neigh: Neigh,
    },
    Fdb {
        gone: bool,
        fdb: Fdb,
    },
    /// Events were lost: the receive buffer overran.
    Overrun,
}

/// A change to an nftables table (`family` as nft numbers it: 1 inet, 2 ip, …).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TableEvent {
    pub family: u8,
    pub table: String,
}

/// The socket of rtnetlink notifications, in the namespace of the thread that made it.
pub struct RouteEvents {
    sock: Socket,
    buf: Vec<u8>,
}

/// Receive buffer asked for (the kernel caps it at `rmem_max`).
const RCVBUF: usize = 8 << 20;

fn subscribed(protocol: isize, groups: &[u32]) -> io::Result<Socket> {
    let mut sock = Socket::new(protocol)?;
    sock.bind(&SocketAddr::new(0, 0))?;
    for &g in groups {
        sock.add_membership(g)?;
    }
    // A smaller buffer only means an overrun (and a full re-read) comes sooner.
    let _ = sock.set_rx_buf_sz(RCVBUF);
    Ok(sock)
}

impl RouteEvents {
    /// Subscribes in the calling thread's network namespace.
    pub fn new() -> io::Result<RouteEvents> {
        let sock = subscribed(
            NETLINK_ROUTE,
            &[
                RTNLGRP_LINK,
                RTNLGRP_NEIGH,
                RTNLGRP_IPV4_IFADDR,
                RTNLGRP_IPV4_ROUTE,
                RTNLGRP_NEXTHOP,
            ],
        )?;
        Ok(RouteEvents {
            sock,
            buf: vec![0u8; 1 << 20],
        })
    }

    /// Blocks until the kernel sends something; returns every event of that read (an
    /// overrun is returned as [`KernelEvent::Overrun`], not as an error).
    pub fn wait(&mut self) -> io::Result<Vec<KernelEvent>> {
        let n = match recv(&mut self.sock, &mut self.buf) {
            Ok(n) => n,
            Err(e) if e.raw_os_error() == Some(libc::ENOBUFS) => {
                return Ok(vec![KernelEvent::Overrun]);
            }
            Err(e) => return Err(e),
        };
        Ok(messages(&self.buf[..n])
            .filter_map(|(kind, payload)| decode(kind, payload))
            .collect())
    }
}

fn recv(sock: &mut Socket, buf: &mut [u8]) -> io::Result<usize> {
    loop {
        let mut slice = &mut buf[..];
        match sock.recv(&mut slice, 0) {
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            r => return r,
        }
    }
}

/// Decodes one rtnetlink notification; `None` for what podnet never looks at (other
/// families, other tables' messages the codecs reject).
pub fn decode(kind: u16, payload: &[u8]) -> Option<KernelEvent> {
    Some(match kind {
        RTM_NEWLINK | RTM_DELLINK => KernelEvent::Link {
            gone: kind == RTM_DELLINK,
            link: Link::parse(payload)?,
        },
        RTM_NEWADDR | RTM_DELADDR => KernelEvent::Addr {
            gone: kind == RTM_DELADDR,
            addr: Addr::parse(payload)?,
        },
        RTM_NEWROUTE | RTM_DELROUTE => KernelEvent::Route {
            gone: kind == RTM_DELROUTE,
            route: Dumped::parse(payload)?,
        },
        RTM_NEWNEXTHOP | RTM_DELNEXTHOP => KernelEvent::Nexthop {
            gone: kind == RTM_DELNEXTHOP,
            id: Nexthop::parse_id(payload)?,
            nexthop: Nexthop::parse(payload),
        },
        RTM_NEWNEIGH | RTM_DELNEIGH => {
            let gone = kind == RTM_DELNEIGH;
            if let Some(neigh) = Neigh::parse(payload) {
                KernelEvent::Neigh { gone, neigh }
            } else {
                KernelEvent::Fdb {
                    gone,
                    fdb: Fdb::parse(payload)?,
                }
            }
        }
        _ => return None,
    })
}

/// The socket of nftables notifications (what `nft monitor` reads).
pub struct TableEvents {
    sock: Socket,
    buf: Vec<u8>,
}

impl TableEvents {
    /// Subscribes in the calling thread's network namespace.
    pub fn new() -> io::Result<TableEvents> {
        Ok(TableEvents {
            sock: subscribed(NETLINK_NETFILTER, &[NFNLGRP_NFTABLES])?,
            buf: vec![0u8; 1 << 20],
        })
    }

    /// Blocks until nftables announces something; returns the tables it touched (`None`
    /// for an overrun: any table may have changed).
    pub fn wait(&mut self) -> io::Result<Option<Vec<TableEvent>>> {
        let n = match recv(&mut self.sock, &mut self.buf) {
            Ok(n) => n,
            Err(e) if e.raw_os_error() == Some(libc::ENOBUFS) => return Ok(None),
            Err(e) => return Err(e),
        };
        let mut out: Vec<TableEvent> = Vec::new();
        for (kind, payload) in messages(&self.buf[..n]) {
            if kind >> 8 != NFNL_SUBSYS_NFTABLES || kind & 0xff == NFT_MSG_NEWGEN {
                continue;
            }
            if let Some(e) = table_of(payload)
                && !out.contains(&e)
            {
                out.push(e);
            }
        }
        Ok(Some(out))
    }
}

/// The table an nftables message is about: `struct nfgenmsg` (family, version, res_id),
/// then attribute 1, which is the table name in table, chain, rule, set and element
/// messages alike.
fn table_of(payload: &[u8]) -> Option<TableEvent> {
    let family = *payload.first()?;
    let (_, v) = super::nl::attrs(payload.get(4..)?).find(|&(k, _)| k == 1)?;
    let name = v.split(|&b| b == 0).next()?;
    Some(TableEvent {
        family,
        table: String::from_utf8_lossy(name).into_owned(),
    })
}

/// `(type, payload)` of every message in a receive buffer.
fn messages(buf: &[u8]) -> impl Iterator<Item = (u16, &[u8])> {
    super::nl::messages(buf).map(|(kind, _, _, payload)| (kind, payload))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::kernel::route::{Route, Target};

    #[test]
    fn decodes_what_the_codecs_encode() {
        let r = Route {
            dst: "10.244.3.0/24".parse().expect("net"),
            target: Target::Nexthop(7),
            protocol: 77,
        };
        let req = r.delete();
        match decode(RTM_DELROUTE, &req.payload) {
            Some(KernelEvent::Route { gone: true, route }) => {
                assert_eq!(route.route, Some(r));
            }
            other => panic!("unexpected {other:?}"),
        }
        assert_eq!(decode(999, &req.payload), None);
        assert_eq!(decode(RTM_NEWROUTE, &[1, 2]), None, "truncated");
    }

    #[test]
    fn nft_table_names() {
        let mut p = vec![1u8, 0, 0, 0];
        crate::kernel::nl::push_attr(&mut p, 1, b"podnet\0");
        assert_eq!(
            table_of(&p),
            Some(TableEvent {
                family: 1,
                table: "podnet".into()
            })
        );
        assert_eq!(table_of(&[1, 0]), None);
    }
}
