//! The typed cluster model that lowering produces and the checks, lock and planner consume.
//! Values keep the span they came from; equality ignores spans, so two files that say the
//! same thing lower to equal models (the `fmt` round-trip test relies on this).

use std::fmt;

use ipnet::Ipv4Net;

use crate::plan::Mac;
use crate::span::Span;

/// A value with the place in the input it came from (the enclosing statement for defaults).
#[derive(Clone, Copy, Debug, Eq)]
pub struct Spanned<T> {
    pub value: T,
    pub span: Span,
}

impl<T> Spanned<T> {
    pub fn new(value: T, span: Span) -> Self {
        Spanned { value, span }
    }
}

impl<T: PartialEq> PartialEq for Spanned<T> {
    fn eq(&self, other: &Self) -> bool {
        self.value == other.value
    }
}

impl<T> std::ops::Deref for Spanned<T> {
    type Target = T;
    fn deref(&self) -> &T {
        &self.value
    }
}

impl<T: fmt::Display> fmt::Display for Spanned<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.value.fmt(f)
    }
}

/// The whole cluster: settings from the `cluster` block and every node.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Cluster {
    pub name: Spanned<String>,
    pub pod_cidr: Spanned<Ipv4Net>,
    pub subnet_len: Spanned<u8>,
    pub service_cidr: Option<Spanned<Ipv4Net>>,
    pub interface: Spanned<String>,
    pub underlay_mtu: Spanned<u32>,
    /// `None` is `mtu auto`.
    pub mtu: Option<Spanned<u32>>,
    pub backend: Backend,
    pub masquerade: Masquerade,
    pub firewall: FirewallKind,
    pub forward_accept: bool,
    pub route_protocol: Spanned<u8>,
    pub flannel_compat: bool,
    pub cni: Cni,
    pub nodes: Vec<Node>,
}

/// Settings of a lowered cluster that hold a placeholder because their value was invalid
/// or missing (already reported): the checks that depend on them are skipped, the others
/// still run. Such a cluster always comes with an error, so it is never planned.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Invalid {
    pub name: bool,
    pub pod_cidr: bool,
    pub subnet_len: bool,
    pub backend: bool,
    /// `mtu` or the cluster's `underlay-mtu`.
    pub mtu: bool,
    pub masquerade: bool,
    /// Any other setting (none of the checks depends on it).
    pub other: bool,
}

impl Invalid {
    pub fn any(&self) -> bool {
        *self != Invalid::default()
    }
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Backend {
    HostGw,
    Vxlan(Vxlan),
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Vxlan {
    pub vni: Spanned<u32>,
    pub port: Spanned<u16>,
    pub device: Spanned<String>,
    pub direct_routing: bool,
}

/// Bytes a VXLAN packet adds on the underlay (outer IPv4 20 + UDP 8 + VXLAN 8 + Ethernet 14).
pub const VXLAN_OVERHEAD: u32 = 50;

impl Backend {
    pub fn overhead(&self) -> u32 {
        match self {
            Backend::HostGw => 0,
            Backend::Vxlan(_) => VXLAN_OVERHEAD,
        }
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum MasqueradeMode {
    Off,
    All,
    Outbound,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Masquerade {
    pub mode: MasqueradeMode,
    /// Destinations never masqueraded (besides the pod CIDR itself in `outbound`).
    pub except: Vec<Spanned<Ipv4Net>>,
    /// SNAT with fully random source ports (`random-fully`, default on, as flannel's
    /// `--random-fully`): avoids the conntrack insertion race of sequential port choice.
    pub random_fully: bool,
}

/// kube-proxy's masquerade mark (`--iptables-masquerade-bit` 14): traffic carrying it is
/// masqueraded by kube-proxy, so podnet's rules return before SNATing it a second time.
pub const KUBE_PROXY_MASQUERADE_MARK: u32 = 0x4000;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum FirewallKind {
    Nftables,
    Iptables,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Cni {
    pub name: String,
    pub bridge: Spanned<String>,
    pub hairpin: bool,
    pub portmap: bool,
    pub bandwidth: bool,
    pub dir: String,
    pub file: String,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Node {
    pub name: Spanned<String>,
    /// The underlay address with its prefix: the prefix is the node's L2 segment.
    pub address: Spanned<Ipv4Net>,
    pub interface: Option<Spanned<String>>,
    /// From the file, or filled in from the lock file.
    pub subnet: Option<Spanned<Ipv4Net>>,
    pub underlay_mtu: Option<Spanned<u32>>,
    /// A fixed VTEP MAC (`vtep-mac`, e.g. kept from flannel), used instead of the derived one.
    pub vtep_mac: Option<Spanned<Mac>>,
}

impl Node {
    /// The node's L2 segment (its address's network).
    pub fn segment(&self) -> Ipv4Net {
        self.address.value.trunc()
    }
}

impl Cluster {
    /// The pod MTU: `mtu`, or the smallest underlay MTU of any node minus the backend's
    /// encapsulation overhead, so a packet fits every path in the cluster.
    pub fn pod_mtu(&self) -> u32 {
        self.mtu.map_or_else(
            || {
                let underlay = self
                    .nodes
                    .iter()
                    .filter_map(|n| n.underlay_mtu.map(|m| m.value))
                    .chain([self.underlay_mtu.value])
                    .min()
                    .unwrap_or(self.underlay_mtu.value);
                underlay.saturating_sub(self.backend.overhead())
            },
            |m| m.value,
        )
    }

    pub fn node(&self, name: &str) -> Option<&Node> {
        self.nodes.iter().find(|n| n.name.value == name)
    }

    pub fn node_interface<'a>(&'a self, node: &'a Node) -> &'a str {
        node.interface
            .as_ref()
            .map_or(self.interface.value.as_str(), |i| i.value.as_str())
    }
}
