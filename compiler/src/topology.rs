//! The cluster's shape, in one place for the planner, the lab and (later) `graph`: its L2
//! segments (nodes whose address prefixes match) and, for each pair of nodes, whether pod
//! traffic goes straight to the peer on the segment or through the tunnel.

use ipnet::Ipv4Net;

use crate::model::{Backend, Cluster, Node};

/// One L2 segment: its network and the indexes (file order) of the nodes on it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Segment {
    pub net: Ipv4Net,
    pub nodes: Vec<usize>,
}

/// The cluster's segments in order of first appearance in the file.
pub fn segments(c: &Cluster) -> Vec<Segment> {
    let mut out: Vec<Segment> = Vec::new();
    for (i, n) in c.nodes.iter().enumerate() {
        let net = n.segment();
        match out.iter_mut().find(|s| s.net == net) {
            Some(s) => s.nodes.push(i),
            None => out.push(Segment {
                net,
                nodes: vec![i],
            }),
        }
    }
    out
}

/// How pod traffic from one node reaches a peer's subnet.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum PeerPath {
    /// `SUBNET via PEER_ADDR dev IFACE`: host-gw, or vxlan direct routing on one segment.
    Direct,
    /// Through the vxlan device.
    Tunnel,
}

/// The path pod traffic takes from `from` to `to`'s subnet under the cluster's backend.
pub fn peer_path(c: &Cluster, from: &Node, to: &Node) -> PeerPath {
    match &c.backend {
        Backend::HostGw => PeerPath::Direct,
        Backend::Vxlan(vx) if vx.direct_routing && from.segment() == to.segment() => {
            PeerPath::Direct
        }
        Backend::Vxlan(_) => PeerPath::Tunnel,
    }
}
