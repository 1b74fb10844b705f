//! Links (RTM_*LINK): the dump parser every observation starts from, and the requests that
//! create, change and delete podnet's bridge and vxlan devices.

use std::net::Ipv4Addr;

use rtnetlink::packet_core::Emitable;
use rtnetlink::packet_route::AddressFamily;
use rtnetlink::packet_route::link::{
    InfoData, InfoKind, InfoVxlan, LinkAttribute, LinkExtentMask, LinkFlags, LinkInfo, LinkMessage,
};

use super::nl::{NLM_F_CREATE, NLM_F_EXCL, Request, attrs};

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
    /// `IFLA_INFO_KIND`; `None` for physical and loopback devices.
    pub kind: Option<KernelLinkKind>,
    pub mtu: u32,
    pub mac: Option<[u8; 6]>,
    /// `IFF_UP` (administratively up).
    pub up: bool,
    pub alias: Option<String>,
    /// The bridge (or other controller) this link is enslaved to.
    pub master: Option<u32>,
    pub vxlan: Option<Vxlan>,
}

/// A link's `IFLA_INFO_KIND` as the kernel reports it: the kinds podnet creates or meets,
/// and every other one by name.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub enum KernelLinkKind {
    Bridge,
    Vxlan,
    Veth,
    Other(String),
}

impl KernelLinkKind {
    /// The kind named `name` (`IFLA_INFO_KIND`).
    pub fn from_name(name: &str) -> KernelLinkKind {
        match name {
            "bridge" => KernelLinkKind::Bridge,
            "vxlan" => KernelLinkKind::Vxlan,
            "veth" => KernelLinkKind::Veth,
            other => KernelLinkKind::Other(other.to_string()),
        }
    }

    /// The kernel's name for it.
    pub fn as_str(&self) -> &str {
        match self {
            KernelLinkKind::Bridge => "bridge",
            KernelLinkKind::Vxlan => "vxlan",
            KernelLinkKind::Veth => "veth",
            KernelLinkKind::Other(s) => s,
        }
    }
}

impl From<podnet_compiler::plan::LinkKind> for KernelLinkKind {
    fn from(k: podnet_compiler::plan::LinkKind) -> KernelLinkKind {
        match k {
            podnet_compiler::plan::LinkKind::Bridge => KernelLinkKind::Bridge,
            podnet_compiler::plan::LinkKind::Vxlan => KernelLinkKind::Vxlan,
        }
    }
}

impl std::fmt::Display for KernelLinkKind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
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

const IFLA_ADDRESS: u16 = 1;
const IFLA_IFNAME: u16 = 3;
const IFLA_MTU: u16 = 4;
const IFLA_MASTER: u16 = 10;
const IFLA_LINKINFO: u16 = 18;
const IFLA_IFALIAS: u16 = 20;
const IFLA_INFO_KIND: u16 = 1;
const IFLA_INFO_DATA: u16 = 2;
const IFLA_VXLAN_ID: u16 = 1;
const IFLA_VXLAN_LINK: u16 = 3;
const IFLA_VXLAN_LOCAL: u16 = 4;
const IFLA_VXLAN_LEARNING: u16 = 7;
const IFLA_VXLAN_PORT: u16 = 15;
const IFF_UP: u32 = 1;
const AF_UNSPEC: u8 = 0;
/// `struct ifinfomsg`: family u8, pad u8, type u16, index i32, flags u32, change u32.
const IFINFOMSG: usize = 16;

fn message(index: u32, attributes: Vec<LinkAttribute>) -> LinkMessage {
    let mut m = LinkMessage::default();
    m.header.interface_family = AddressFamily::Unspec;
    m.header.index = index;
    m.attributes = attributes;
    m
}

fn request(kind: u16, flags: u16, m: &LinkMessage) -> Request {
    Request::emitted(kind, flags, m)
}

/// Create-exclusive (`NLM_F_CREATE | NLM_F_EXCL`: EEXIST if the name is taken) a link of
/// `kind` with `extra` attributes. The kernel ignores `IFLA_IFALIAS` on creation, so the
/// caller marks the link with a [`change`] by name right after, in the same batch.
fn create(name: &str, mtu: u32, extra: Vec<LinkAttribute>, info: Vec<LinkInfo>) -> Request {
    let mut attributes = vec![
        LinkAttribute::IfName(name.to_string()),
        LinkAttribute::Mtu(mtu),
    ];
    attributes.extend(extra);
    attributes.push(LinkAttribute::LinkInfo(info));
    request(
        RTM_NEWLINK,
        NLM_F_CREATE | NLM_F_EXCL,
        &message(0, attributes),
    )
}

/// Creates bridge `name` with `mtu` (down, no alias: see [`change`]).
pub fn create_bridge(name: &str, mtu: u32) -> Request {
    create(
        name,
        mtu,
        Vec::new(),
        vec![LinkInfo::Kind(InfoKind::Bridge)],
    )
}

/// Creates vxlan device `name` with `mtu`, MAC `mac` and `vx`'s attributes (down, no
/// alias: see [`change`]). The port goes on the wire in network byte order.
pub fn create_vxlan(name: &str, mtu: u32, mac: [u8; 6], vx: &Vxlan) -> Request {
    let mut data = vec![InfoVxlan::Id(vx.vni)];
    if let Some(local) = vx.local {
        data.push(InfoVxlan::Local(local));
    }
    if let Some(link) = vx.link {
        data.push(InfoVxlan::Link(link));
    }
    // The crate emits IFLA_VXLAN_PORT big-endian from a host-order value.
    data.push(InfoVxlan::Port(vx.port));
    data.push(InfoVxlan::Learning(vx.learning));
    create(
        name,
        mtu,
        vec![LinkAttribute::Address(mac.to_vec())],
        vec![
            LinkInfo::Kind(InfoKind::Vxlan),
            LinkInfo::Data(InfoData::Vxlan(data)),
        ],
    )
}

/// Changes an existing link in place (`RTM_NEWLINK` without `NLM_F_CREATE`: ENODEV if it
/// does not exist). By name, the index in the header is 0 and `IFLA_IFNAME` selects it.
pub fn change(target: &LinkRef, c: &LinkChange) -> Request {
    let (index, mut attributes) = match target {
        LinkRef::Index(i) => (*i, Vec::new()),
        LinkRef::Name(n) => (0, vec![LinkAttribute::IfName(n.clone())]),
    };
    if let Some(alias) = &c.alias {
        attributes.push(LinkAttribute::IfAlias(alias.clone()));
    }
    if let Some(mtu) = c.mtu {
        attributes.push(LinkAttribute::Mtu(mtu));
    }
    if let Some(mac) = c.mac {
        attributes.push(LinkAttribute::Address(mac.to_vec()));
    }
    let mut m = message(index, attributes);
    if let Some(up) = c.up {
        m.header.change_mask = LinkFlags::Up;
        if up {
            m.header.flags = LinkFlags::Up;
        }
    }
    request(RTM_NEWLINK, 0, &m)
}

/// Deletes link `index`.
pub fn delete(index: u32) -> Request {
    request(RTM_DELLINK, 0, &message(index, Vec::new()))
}

impl Link {
    /// The strict-check dump request for every link (`AF_UNSPEC`, no filter; statistics
    /// skipped to keep the replies small).
    pub fn dump_request() -> Vec<u8> {
        let m = message(
            0,
            vec![LinkAttribute::ExtMask(vec![LinkExtentMask::SkipStats])],
        );
        let mut p = vec![0u8; m.buffer_len()];
        m.emit(&mut p);
        p
    }

    /// Parses a dumped (or event) link; `None` for truncated input, a missing name, or a
    /// message of another family (bridge-family port messages are partial views).
    ///
    /// Decoded by hand from the attributes podnet reads: the crate's `LinkMessage` parser
    /// rejects a whole message when any one attribute fails to decode (an exotic driver or a
    /// newer kernel), and a link that silently vanishes from the observation is worse than
    /// an attribute podnet never looks at.
    pub fn parse(payload: &[u8]) -> Option<Link> {
        let hdr = payload.get(..IFINFOMSG)?;
        if hdr[0] != AF_UNSPEC {
            return None;
        }
        let index = u32::from_ne_bytes([hdr[4], hdr[5], hdr[6], hdr[7]]);
        let flags = u32::from_ne_bytes([hdr[8], hdr[9], hdr[10], hdr[11]]);
        let mut link = Link {
            index,
            name: String::new(),
            kind: None,
            mtu: 0,
            mac: None,
            up: flags & IFF_UP != 0,
            alias: None,
            master: None,
            vxlan: None,
        };
        let mut named = false;
        for (k, v) in attrs(&payload[IFINFOMSG..]) {
            match k {
                IFLA_IFNAME => {
                    link.name = c_string(v);
                    named = !link.name.is_empty();
                }
                IFLA_MTU => link.mtu = u32_of(v).unwrap_or(0),
                IFLA_ADDRESS => link.mac = <[u8; 6]>::try_from(v).ok(),
                IFLA_IFALIAS => link.alias = Some(c_string(v)).filter(|a| !a.is_empty()),
                IFLA_MASTER => link.master = u32_of(v).filter(|&m| m != 0),
                IFLA_LINKINFO => {
                    let mut data = None;
                    for (ik, iv) in attrs(v) {
                        match ik {
                            IFLA_INFO_KIND => {
                                link.kind = Some(KernelLinkKind::from_name(&c_string(iv)));
                            }
                            IFLA_INFO_DATA => data = Some(iv),
                            _ => {}
                        }
                    }
                    if let (Some(KernelLinkKind::Vxlan), Some(data)) = (&link.kind, data) {
                        link.vxlan = parse_vxlan(data);
                    }
                }
                _ => {}
            }
        }
        named.then_some(link)
    }

    /// podnet created this link: its ifalias is [`MARKER`].
    pub fn owned(&self) -> bool {
        self.alias.as_deref() == Some(MARKER)
    }
}

/// `IFLA_INFO_DATA` of a vxlan device; `None` without a VNI.
fn parse_vxlan(data: &[u8]) -> Option<Vxlan> {
    let (mut vni, mut port, mut local, mut link, mut learning) = (None, 0, None, None, false);
    for (k, v) in attrs(data) {
        match k {
            IFLA_VXLAN_ID => vni = u32_of(v),
            IFLA_VXLAN_PORT => {
                if let Ok(b) = <[u8; 2]>::try_from(v) {
                    port = u16::from_be_bytes(b);
                }
            }
            IFLA_VXLAN_LOCAL => local = <[u8; 4]>::try_from(v).ok().map(Ipv4Addr::from),
            IFLA_VXLAN_LINK => link = u32_of(v).filter(|&l| l != 0),
            IFLA_VXLAN_LEARNING => learning = v.first().is_some_and(|&b| b != 0),
            _ => {}
        }
    }
    Some(Vxlan {
        vni: vni?,
        port,
        local,
        link,
        learning,
    })
}

fn u32_of(v: &[u8]) -> Option<u32> {
    <[u8; 4]>::try_from(v).ok().map(u32::from_ne_bytes)
}

/// A NUL-terminated (or not) netlink string; invalid UTF-8 is replaced, not fatal.
fn c_string(v: &[u8]) -> String {
    let end = v.iter().position(|&b| b == 0).unwrap_or(v.len());
    String::from_utf8_lossy(&v[..end]).into_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn vx() -> Vxlan {
        Vxlan {
            vni: 1,
            port: 8472,
            local: Some(Ipv4Addr::new(192, 168, 56, 11)),
            link: Some(2),
            learning: false,
        }
    }

    const MAC: [u8; 6] = [0xde, 0xf4, 0xb4, 0x46, 0xed, 0x5c];

    #[test]
    fn create_requests_parse_back() {
        let r = create_vxlan("flannel.1", 1450, MAC, &vx());
        assert_eq!((r.kind, r.flags), (RTM_NEWLINK, NLM_F_CREATE | NLM_F_EXCL));
        let l = Link::parse(&r.payload).expect("parses");
        assert_eq!(
            l,
            Link {
                index: 0,
                name: "flannel.1".into(),
                kind: Some(KernelLinkKind::Vxlan),
                mtu: 1450,
                mac: Some(MAC),
                up: false,
                alias: None,
                master: None,
                vxlan: Some(vx()),
            }
        );
        // The port is big-endian on the wire: 8472 = 0x2118.
        let at = r
            .payload
            .windows(6)
            .position(|w| w == [6, 0, 15, 0, 0x21, 0x18])
            .is_some();
        assert!(at, "IFLA_VXLAN_PORT in network byte order");

        let b = Link::parse(&create_bridge("cni0", 1450).payload).expect("parses");
        assert_eq!(b.kind, Some(KernelLinkKind::Bridge));
        assert_eq!((b.name.as_str(), b.mtu, &b.vxlan), ("cni0", 1450, &None));
        assert!(!b.owned());
    }

    #[test]
    fn change_requests_parse_back() {
        let c = LinkChange {
            alias: Some(MARKER.into()),
            mtu: Some(1400),
            mac: Some(MAC),
            up: Some(true),
        };
        let r = change(&LinkRef::Name("cni0".into()), &c);
        assert_eq!((r.kind, r.flags), (RTM_NEWLINK, 0));
        let l = Link::parse(&r.payload).expect("parses");
        assert_eq!((l.index, l.name.as_str()), (0, "cni0"));
        assert_eq!((l.mtu, l.mac, l.up), (1400, Some(MAC), true));
        assert!(l.owned());
        // ifi_change carries IFF_UP for up and for down.
        assert_eq!(&r.payload[12..16], &IFF_UP.to_ne_bytes());
        let down = change(
            &LinkRef::Index(7),
            &LinkChange {
                up: Some(false),
                ..LinkChange::default()
            },
        );
        assert_eq!(&down.payload[4..8], &7u32.to_ne_bytes());
        assert_eq!(&down.payload[8..16], &[0, 0, 0, 0, 1, 0, 0, 0]);
        // By index there is no name: not a parseable link.
        assert_eq!(Link::parse(&down.payload), None);
        let d = delete(7);
        assert_eq!(
            (d.kind, &d.payload[4..8]),
            (RTM_DELLINK, &7u32.to_ne_bytes()[..])
        );
    }

    #[test]
    fn garbage_is_none() {
        let full = create_vxlan("flannel.1", 1450, MAC, &vx()).payload;
        for n in 0..full.len() {
            // Never panics; a cut inside the header is None.
            let got = Link::parse(&full[..n]);
            if n < IFINFOMSG {
                assert_eq!(got, None);
            }
        }
        let mut other_family = full.clone();
        other_family[0] = 7;
        assert_eq!(Link::parse(&other_family), None);
        assert_eq!(Link::parse(&[0xff; 40]), None);
        assert_eq!(Link::parse(&Link::dump_request()), None, "no name");
    }
}
