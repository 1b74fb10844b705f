//! The plan's wire types (serde; documented by `schemas/plan.schema.json`). Addresses and
//! CIDRs serialize as strings (`10.4.7.22`, `172.7.21.1/24`), MACs as `02:ab:…`.

use std::fmt;
use std::net::Ipv4Addr;
use std::str::FromStr;

use ipnet::Ipv4Net;
use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// Everything one node's kernel state and files must be. Lists are in a deterministic order
/// (peers in file order), so equal clusters give byte-identical plans.
#[derive(Clone, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NodePlan {
    /// [`super::FORMAT_VERSION`].
    pub format_version: u32,
    pub cluster: String,
    pub node: String,
    /// The node's own underlay interface and address (with the segment prefix): the
    /// applier refuses a plan whose address is not configured on that interface here.
    pub underlay: Underlay,
    /// The protocol number every planned route carries (podnet's ownership mark).
    pub route_protocol: u8,
    pub sysctls: Vec<Sysctl>,
    /// Links podnet creates: the CNI bridge first, then the vxlan device (if any).
    pub links: Vec<Link>,
    pub addresses: Vec<Address>,
    pub routes: Vec<Route>,
    /// Permanent neighbour (ARP) entries on the vxlan device.
    pub neighbours: Vec<Neighbour>,
    /// Permanent `self` forwarding entries on the vxlan device.
    pub fdb: Vec<FdbEntry>,
    pub firewall: Firewall,
    pub files: Vec<File>,
}

/// The planned node's underlay: where its address must be configured.
#[derive(Clone, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Underlay {
    pub interface: String,
    /// The node's address with its L2 segment prefix, e.g. `10.4.7.21/24`.
    pub address: Ipv4Net,
}

#[derive(Clone, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Sysctl {
    /// Dotted form, e.g. `net.ipv4.ip_forward`.
    pub key: String,
    pub value: String,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum LinkKind {
    Bridge,
    Vxlan,
}

#[derive(Clone, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Link {
    pub name: String,
    pub kind: LinkKind,
    pub mtu: u32,
    /// The derived VTEP MAC (vxlan only; a bridge's MAC is left to the kernel).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mac: Option<Mac>,
    pub up: bool,
    /// VXLAN attributes (vxlan only).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub vxlan: Option<VxlanAttrs>,
}

#[derive(Clone, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct VxlanAttrs {
    pub vni: u32,
    /// UDP destination port.
    pub port: u16,
    /// The node's underlay address (the tunnel's source).
    pub local: Ipv4Addr,
    /// The underlay interface.
    pub dev: String,
    pub learning: bool,
}

#[derive(Clone, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Address {
    pub dev: String,
    /// The address with its prefix length, e.g. `172.7.21.1/24`.
    pub address: Ipv4Net,
}

#[derive(Clone, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Route {
    pub dst: Ipv4Net,
    pub via: Ipv4Addr,
    pub dev: String,
    /// The gateway is on the link even though no address covers it (vxlan routes).
    pub onlink: bool,
}

#[derive(Clone, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Neighbour {
    pub dev: String,
    pub ip: Ipv4Addr,
    pub mac: Mac,
}

#[derive(Clone, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FdbEntry {
    pub dev: String,
    pub mac: Mac,
    /// The remote VTEP's underlay address.
    pub dst: Ipv4Addr,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum FirewallDriver {
    Nftables,
    Iptables,
}

/// The firewall state: with nftables, table `inet podnet`; with iptables, chains
/// `PODNET-POSTRTG` (nat) and `PODNET-FWD` (filter), each jumped to once.
#[derive(Clone, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Firewall {
    pub driver: FirewallDriver,
    pub masquerade: Vec<MasqueradeRule>,
    /// Forwarding accepted from and to each of these networks.
    pub forward_accept: Vec<Ipv4Net>,
}

/// Masquerade traffic from `source` unless it goes to one of `not_destinations`, leaves
/// through `not_out_interface`, or carries every bit of `skip_mark` (kube-proxy's mark: it
/// masquerades that traffic itself).
#[derive(Clone, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MasqueradeRule {
    pub source: Ipv4Net,
    pub not_destinations: Vec<Ipv4Net>,
    pub not_out_interface: String,
    /// SNAT with fully random source ports (nft `fully-random`, iptables `--random-fully`).
    /// Absent in older plans: off.
    #[serde(default)]
    pub random_fully: bool,
    /// Packets whose mark has all these bits set are not masqueraded (a return before the
    /// masquerade rule). Absent in older plans: none.
    #[serde(default)]
    pub skip_mark: Option<u32>,
}

#[derive(Clone, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct File {
    /// Absolute path (unless the plan was rebased under a root directory).
    pub path: String,
    /// Permission bits, e.g. 420 (0o644).
    pub mode: u32,
    pub content: String,
}

/// A MAC address; its text form is six lowercase hex pairs separated by `:`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Mac(pub [u8; 6]);

impl fmt::Display for Mac {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&crate::mac::format_mac(self.0))
    }
}

/// A string that is not six `:`-separated hex pairs.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("`{0}` is not a MAC address (six hex pairs separated by `:`)")]
pub struct ParseMacError(pub String);

impl FromStr for Mac {
    type Err = ParseMacError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let err = || ParseMacError(s.to_string());
        let mut mac = [0u8; 6];
        let mut parts = s.split(':');
        for b in &mut mac {
            let p = parts.next().ok_or_else(err)?;
            if p.len() != 2 || !p.bytes().all(|b| b.is_ascii_hexdigit()) {
                return Err(err());
            }
            *b = u8::from_str_radix(p, 16).map_err(|_| err())?;
        }
        if parts.next().is_some() {
            return Err(err());
        }
        Ok(Mac(mac))
    }
}

impl Serialize for Mac {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for Mac {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        s.parse().map_err(serde::de::Error::custom)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mac_text_round_trips() {
        let m: Mac = "02:00:ab:01:02:ff".parse().expect("mac");
        assert_eq!(m, Mac([2, 0, 0xab, 1, 2, 0xff]));
        assert_eq!(m.to_string(), "02:00:ab:01:02:ff");
        for bad in [
            "",
            "02:00:ab:01:02",
            "02:00:ab:01:02:ff:00",
            "2:00:ab:01:02:ff",
            "zz:00:ab:01:02:ff",
            "+f:00:ab:01:02:ff",
        ] {
            assert!(bad.parse::<Mac>().is_err(), "{bad}");
        }
    }
}
