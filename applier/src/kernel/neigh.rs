//! Neighbours (ARP, `AF_INET`) and forwarding-database entries (`AF_BRIDGE`, `self`) on one
//! device: filtered dumps and permanent replace/delete requests (RTM_*NEIGH).

use std::net::Ipv4Addr;

use super::nl::{NLM_F_CREATE, NLM_F_REPLACE, Request, attrs, push_attr};

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

const AF_INET: u8 = 2;
const AF_BRIDGE: u8 = 7;
const NDA_DST: u16 = 1;
const NDA_LLADDR: u16 = 2;
const NDA_IFINDEX: u16 = 8;
const NUD_PERMANENT: u16 = 0x80;
const NTF_SELF: u8 = 0x02;
/// `struct ndmsg`: family u8, pad u8, pad u16, ifindex i32, state u16, flags u8, type u8.
const NDMSG: usize = 12;

fn ndmsg(family: u8, index: u32, state: u16, flags: u8) -> Vec<u8> {
    let mut p = Vec::with_capacity(40);
    p.extend_from_slice(&[family, 0, 0, 0]);
    p.extend_from_slice(&index.to_ne_bytes());
    p.extend_from_slice(&state.to_ne_bytes());
    p.extend_from_slice(&[flags, 0]);
    p
}

/// The decoded `ndmsg` header and the two attributes podnet reads.
struct Parsed {
    family: u8,
    index: u32,
    state: u16,
    flags: u8,
    dst: Option<Ipv4Addr>,
    lladdr: Option<[u8; 6]>,
}

fn parse(payload: &[u8]) -> Option<Parsed> {
    let h = payload.get(..NDMSG)?;
    let mut p = Parsed {
        family: h[0],
        index: u32::from_ne_bytes([h[4], h[5], h[6], h[7]]),
        state: u16::from_ne_bytes([h[8], h[9]]),
        flags: h[10],
        dst: None,
        lladdr: None,
    };
    for (k, v) in attrs(&payload[NDMSG..]) {
        match k {
            NDA_DST => p.dst = <[u8; 4]>::try_from(v).ok().map(Ipv4Addr::from),
            NDA_LLADDR => p.lladdr = <[u8; 6]>::try_from(v).ok(),
            _ => {}
        }
    }
    Some(p)
}

impl Neigh {
    /// Create or replace a permanent entry (`NLM_F_CREATE | NLM_F_REPLACE`, `NUD_PERMANENT`).
    ///
    /// `mac: None` is an error, reported by the kernel: the request then carries an empty
    /// `NDA_LLADDR`, which it rejects with EINVAL ("Invalid link address"). Omitting the
    /// attribute instead would make the outcome depend on the ARP cache (the kernel pins a
    /// learned MAC as permanent, or fails only when it has none).
    pub fn replace(&self) -> Request {
        let mut p = ndmsg(AF_INET, self.index, NUD_PERMANENT, 0);
        push_attr(&mut p, NDA_DST, &self.ip.octets());
        match &self.mac {
            Some(mac) => push_attr(&mut p, NDA_LLADDR, mac),
            None => push_attr(&mut p, NDA_LLADDR, &[]),
        }
        Request {
            kind: RTM_NEWNEIGH,
            flags: NLM_F_CREATE | NLM_F_REPLACE,
            payload: p,
        }
    }

    /// Delete the entry for `ip` on `index` (ENOENT if there is none).
    pub fn delete(&self) -> Request {
        let mut p = ndmsg(AF_INET, self.index, 0, 0);
        push_attr(&mut p, NDA_DST, &self.ip.octets());
        Request {
            kind: RTM_DELNEIGH,
            flags: 0,
            payload: p,
        }
    }

    /// The strict-check dump request for IPv4 neighbours on link `index`: the kernel filters
    /// on `NDA_IFINDEX` (it ignores `ndm_ifindex` in neighbour dumps).
    pub fn dump_request(index: u32) -> Vec<u8> {
        let mut p = ndmsg(AF_INET, 0, 0, 0);
        push_attr(&mut p, NDA_IFINDEX, &index.to_ne_bytes());
        p
    }

    /// Parses a dumped neighbour; `None` unless it is `AF_INET` with a 4-byte `NDA_DST`.
    /// `mac` is `NDA_LLADDR` when it is 6 bytes. The caller filters by `index`.
    pub fn parse(payload: &[u8]) -> Option<Neigh> {
        let p = parse(payload)?;
        if p.family != AF_INET {
            return None;
        }
        Some(Neigh {
            index: p.index,
            ip: p.dst?,
            mac: p.lladdr,
            permanent: p.state & NUD_PERMANENT != 0,
        })
    }
}

impl Fdb {
    fn request(&self, kind: u16, flags: u16) -> Request {
        let mut p = ndmsg(AF_BRIDGE, self.index, NUD_PERMANENT, NTF_SELF);
        push_attr(&mut p, NDA_LLADDR, &self.mac);
        if let Some(dst) = self.dst {
            push_attr(&mut p, NDA_DST, &dst.octets());
        }
        Request {
            kind,
            flags,
            payload: p,
        }
    }

    /// Create or replace the device's own (`NTF_SELF`) permanent entry for `mac`: on a vxlan
    /// device a replace swaps the entry's destination in place.
    pub fn replace(&self) -> Request {
        self.request(RTM_NEWNEIGH, NLM_F_CREATE | NLM_F_REPLACE)
    }

    /// Delete the entry for `mac` with destination `dst` (`NTF_SELF`).
    pub fn delete(&self) -> Request {
        self.request(RTM_DELNEIGH, 0)
    }

    /// The strict-check bridge-family dump request for link `index` (`ndm_ifindex` is the
    /// device filter there; header flags must be zero in strict mode).
    pub fn dump_request(index: u32) -> Vec<u8> {
        ndmsg(AF_BRIDGE, index, 0, 0)
    }

    /// Parses a dumped FDB entry; `None` unless it is `AF_BRIDGE`, the device's own entry
    /// (`NTF_SELF`: a bridge port also reports its bridge's `master` entries, which are not
    /// podnet's), with a 6-byte `NDA_LLADDR`. `dst` is `NDA_DST` when it is 4 raw bytes.
    /// The caller filters by `index`.
    pub fn parse(payload: &[u8]) -> Option<Fdb> {
        let p = parse(payload)?;
        if p.family != AF_BRIDGE || p.flags & NTF_SELF == 0 {
            return None;
        }
        Some(Fdb {
            index: p.index,
            mac: p.lladdr?,
            dst: p.dst,
            permanent: p.state & NUD_PERMANENT != 0,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MAC: [u8; 6] = [0x8a, 0x6c, 0xa5, 0x9c, 0x6c, 0x3e];

    #[test]
    fn neighbour_encode_then_parse() {
        let n = Neigh {
            index: 5,
            ip: Ipv4Addr::new(10, 244, 0, 0),
            mac: Some(MAC),
            permanent: true,
        };
        let r = n.replace();
        assert_eq!(
            (r.kind, r.flags),
            (RTM_NEWNEIGH, NLM_F_CREATE | NLM_F_REPLACE)
        );
        assert_eq!(Neigh::parse(&r.payload), Some(n.clone()));
        let d = n.delete();
        assert_eq!(d.kind, RTM_DELNEIGH);
        assert_eq!(
            Neigh::parse(&d.payload),
            Some(Neigh {
                mac: None,
                permanent: false,
                ..n.clone()
            })
        );
        assert_eq!(Fdb::parse(&r.payload), None, "not bridge family");
        // No MAC: an empty NDA_LLADDR (the kernel's EINVAL), never a 6-byte one.
        let none = Neigh { mac: None, ..n }.replace();
        assert_eq!(Neigh::parse(&none.payload).map(|p| p.mac), Some(None));
        assert!(none.payload.ends_with(&[4, 0, 2, 0]));
        // The dump filter is an attribute, not the header's ifindex.
        let q = Neigh::dump_request(5);
        assert_eq!(q.len(), NDMSG + 8);
        assert_eq!(&q[4..8], &[0, 0, 0, 0]);
        assert_eq!(&q[NDMSG..], &[8, 0, 8, 0, 5, 0, 0, 0]);
    }

    #[test]
    fn fdb_encode_then_parse() {
        let f = Fdb {
            index: 5,
            mac: MAC,
            dst: Some(Ipv4Addr::new(192, 168, 56, 10)),
            permanent: true,
        };
        let r = f.replace();
        assert_eq!(
            (r.kind, r.flags),
            (RTM_NEWNEIGH, NLM_F_CREATE | NLM_F_REPLACE)
        );
        assert_eq!(r.payload[10], NTF_SELF);
        assert_eq!(Fdb::parse(&r.payload), Some(f.clone()));
        let d = f.delete();
        assert_eq!((d.kind, d.flags), (RTM_DELNEIGH, 0));
        assert_eq!(Fdb::parse(&d.payload), Some(f.clone()));
        assert_eq!(Neigh::parse(&r.payload), None, "not inet family");
        let q = Fdb::dump_request(5);
        assert_eq!(q, vec![7, 0, 0, 0, 5, 0, 0, 0, 0, 0, 0, 0]);
        // A bridge's own `master` entry (no NTF_SELF) is not podnet's.
        let mut master = r.payload.clone();
        master[10] = 0x04;
        assert_eq!(Fdb::parse(&master), None);
    }

    #[test]
    fn garbage_is_none() {
        let n = Neigh {
            index: 5,
            ip: Ipv4Addr::new(10, 244, 0, 0),
            mac: Some(MAC),
            permanent: true,
        }
        .replace()
        .payload;
        let f = Fdb {
            index: 5,
            mac: MAC,
            dst: None,
            permanent: true,
        }
        .replace()
        .payload;
        for cut in 0..n.len() {
            let _ = Neigh::parse(&n[..cut]);
        }
        for cut in 0..f.len() {
            let _ = Fdb::parse(&f[..cut]);
        }
        assert_eq!(Neigh::parse(&n[..NDMSG + 4]), None, "no destination");
        assert_eq!(Fdb::parse(&f[..NDMSG + 4]), None, "no MAC");
        assert_eq!(Neigh::parse(&[2, 0, 0]), None);
        assert_eq!(Fdb::parse(&[0xff; 64]), None);
        let mut bad_len = n.clone();
        bad_len[NDMSG] = 0xff;
        assert_eq!(
            Neigh::parse(&bad_len),
            None,
            "malformed attribute ends parsing"
        );
    }
}
