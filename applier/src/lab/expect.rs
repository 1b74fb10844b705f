//! What a lab must show, pure: the endpoints (pods, nodes, the outside host and its
//! `except` addresses), the pairs probed, and for each pair the source address the receiver
//! must see under the cluster's masquerade mode. Then the checks, from what was received.

use std::net::Ipv4Addr;

use ipnet::Ipv4Net;
use podnet_compiler::Cluster;
use podnet_compiler::model::MasqueradeMode;
use podnet_compiler::topology::PeerPath;
use serde::Serialize;

use super::topology::{LabPlan, Relation, path_between};

/// One address a datagram can be sent to.
#[derive(Clone, Debug, Serialize)]
pub struct Endpoint {
    /// `node/p1` for pods, the node's name, `outside`, `outside[RANGE]`.
    pub label: String,
    #[serde(flatten)]
    pub kind: EndpointKind,
    pub address: Ipv4Addr,
    /// The socket receiving at this address (index into the lab's sockets).
    #[serde(skip)]
    pub socket: usize,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(tag = "kind", rename_all = "kebab-case")]
pub enum EndpointKind {
    Pod {
        node: usize,
    },
    Node {
        node: usize,
    },
    /// The outside host's main address ("the internet").
    Outside,
    /// The outside host's address inside a `masquerade except` range.
    Except {
        range: Ipv4Net,
    },
}

impl EndpointKind {
    pub fn node(self) -> Option<usize> {
        match self {
            EndpointKind::Pod { node } | EndpointKind::Node { node } => Some(node),
            _ => None,
        }
    }

    /// Whether it can send (every endpoint but the `except` aliases of the outside host).
    pub fn sends(self) -> bool {
        !matches!(self, EndpointKind::Except { .. })
    }
}

/// A source → destination pair and what the receiver must see.
#[derive(Clone, Copy, Debug, Serialize)]
pub struct Pair {
    pub src: usize,
    pub dst: usize,
    pub relation: Relation,
    /// The source address the receiver must see.
    pub expect: Ipv4Addr,
    /// For pod ↔ pod across nodes: direct route or tunnel.
    #[serde(skip)]
    pub path: Option<PeerPath>,
}

/// The masquerade behaviour the expectations follow.
#[derive(Clone, Debug)]
pub struct Masq {
    pub mode: MasqueradeMode,
    pub except: Vec<Ipv4Net>,
    pub pod_cidr: Ipv4Net,
}

impl Masq {
    pub fn of(c: &Cluster) -> Masq {
        Masq {
            mode: c.masquerade.mode,
            except: c.masquerade.except.iter().map(|e| e.value).collect(),
            pod_cidr: c.pod_cidr.value,
        }
    }
}

/// Every pair probed: from each pod and node to every other endpoint, and from the outside
/// host to every node (the internet does not route pod addresses: the router knows none).
pub fn pairs(plan: &LabPlan, cluster: &Cluster, eps: &[Endpoint]) -> Vec<Pair> {
    let masq = Masq::of(cluster);
    let mut out = Vec::new();
    for (s, src) in eps.iter().enumerate() {
        if !src.kind.sends() {
            continue;
        }
        for (d, dst) in eps.iter().enumerate() {
            if s == d || src.socket == dst.socket {
                continue;
            }
            if src.kind == EndpointKind::Outside && !matches!(dst.kind, EndpointKind::Node { .. }) {
                continue;
            }
            let relation = match (src.kind.node(), dst.kind.node()) {
                (Some(a), Some(b)) => plan.relation(a, b),
                _ => Relation::Outside,
            };
            let path = match (src.kind, dst.kind) {
                (EndpointKind::Pod { node: a }, EndpointKind::Pod { node: b }) if a != b => {
                    path_between(cluster, a, b)
                }
                _ => None,
            };
            out.push(Pair {
                src: s,
                dst: d,
                relation,
                expect: expected_source(plan, &masq, src, dst, path),
                path,
            });
        }
    }
    out
}

/// The source address the receiver must see for a datagram from `src` to `dst`.
pub fn expected_source(
    plan: &LabPlan,
    masq: &Masq,
    src: &Endpoint,
    dst: &Endpoint,
    path: Option<PeerPath>,
) -> Ipv4Addr {
    let EndpointKind::Pod { node } = src.kind else {
        // Nodes send from their underlay address, which no masquerade rule matches
        // (`-s NODE_SUBNET`); the outside host from its own.
        return src.address;
    };
    // Delivered on the node (its own pods, its own address): never through POSTROUTING's
    // masquerade (`! -o BRIDGE`, or local delivery).
    if dst.kind.node() == Some(node) {
        return src.address;
    }
    let underlay = plan.nodes[node].address.addr();
    let in_pods = masq.pod_cidr.contains(&dst.address);
    match masq.mode {
        MasqueradeMode::Off => src.address,
        MasqueradeMode::Outbound => {
            if in_pods || masq.except.iter().any(|e| e.contains(&dst.address)) {
                src.address
            } else {
                underlay
            }
        }
        // Everything leaving the node is rewritten to the egress device's address: the
        // vxlan device's (the subnet's network address) through the tunnel.
        MasqueradeMode::All => match path {
            Some(PeerPath::Tunnel) if in_pods => plan.nodes[node].subnet.network(),
            _ => underlay,
        },
    }
}

/// What arrived for one pair.
#[derive(Clone, Debug, Default, Serialize)]
pub struct Seen {
    /// The source address of the small datagram, if it arrived.
    pub small: Option<Ipv4Addr>,
    /// The source address of the MTU-sized DF datagram, if it arrived.
    pub mtu: Option<Ipv4Addr>,
    /// The last send error of either datagram.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

/// The kinds of checks, one of each per pair.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum CheckKind {
    /// A datagram arrived.
    Reach,
    /// The receiver saw the expected source address.
    Source,
    /// A datagram of exactly the pod MTU, DF set, arrived.
    Mtu,
}

impl CheckKind {
    pub const ALL: [CheckKind; 3] = [CheckKind::Reach, CheckKind::Source, CheckKind::Mtu];

    pub fn as_str(self) -> &'static str {
        match self {
            CheckKind::Reach => "reach",
            CheckKind::Source => "source",
            CheckKind::Mtu => "mtu",
        }
    }
}

/// Whether a check of `kind` holds for a pair that saw `seen`; `Err(why)` otherwise.
pub fn check(kind: CheckKind, pair: &Pair, seen: &Seen, mtu: u32) -> Result<(), String> {
    let err = || seen.error.clone().unwrap_or_default();
    let why = |what: &str| {
        let e = err();
        if e.is_empty() {
            what.to_string()
        } else {
            format!("{what} ({e})")
        }
    };
    match kind {
        CheckKind::Reach => seen
            .small
            .map(|_| ())
            .ok_or_else(|| why("no datagram arrived")),
        CheckKind::Mtu => seen
            .mtu
            .map(|_| ())
            .ok_or_else(|| why(&format!("no {mtu}-byte DF datagram arrived"))),
        CheckKind::Source => match seen.small.or(seen.mtu) {
            None => Err(why("nothing arrived to see the source of")),
            Some(a) if a == pair.expect => Ok(()),
            Some(a) => Err(format!("receiver saw {a}, expected {}", pair.expect)),
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn lab(src: &str) -> (LabPlan, Cluster) {
        let c = podnet_compiler::compile_text(
            &podnet_compiler::MemLoader::default(),
            std::path::Path::new("c.podnet"),
            src.to_string(),
            podnet_compiler::UseLock::No,
        );
        let c = c.valid_cluster().cloned().expect("valid");
        (LabPlan::new(&c, "t", 1).expect("plan"), c)
    }

    fn ep(kind: EndpointKind, a: &str, socket: usize) -> Endpoint {
        Endpoint {
            label: a.to_string(),
            kind,
            address: a.parse().expect("addr"),
            socket,
        }
    }

    #[test]
    fn outbound_keeps_pod_ips_inside_and_rewrites_outside() {
        let (p, c) = lab("cluster h { pod-cidr 172.7.0.0/16; backend host-gw\n\
             masquerade outbound { except 10.4.7.0/24 } }\n\
             node a { address 10.4.7.21/24; subnet 172.7.21.0/24 }\n\
             node b { address 10.4.7.22/24; subnet 172.7.22.0/24 }\n");
        let eps = vec![
            ep(EndpointKind::Pod { node: 0 }, "172.7.21.2", 0),
            ep(EndpointKind::Pod { node: 1 }, "172.7.22.2", 1),
            ep(EndpointKind::Node { node: 0 }, "10.4.7.21", 2),
            ep(EndpointKind::Node { node: 1 }, "10.4.7.22", 3),
            ep(EndpointKind::Outside, "203.0.113.2", 4),
        ];
        let ps = pairs(&p, &c, &eps);
        let find = |s, d| {
            ps.iter()
                .find(|x| x.src == s && x.dst == d)
                .map(|x| x.expect)
        };
        let pod_a: Ipv4Addr = "172.7.21.2".parse().expect("a");
        assert_eq!(find(0, 1), Some(pod_a), "pod → pod: kept");
        assert_eq!(find(0, 2), Some(pod_a), "pod → own node: kept");
        assert_eq!(find(0, 3), Some(pod_a), "pod → node in except: kept");
        assert_eq!(
            find(0, 4),
            "10.4.7.21".parse().ok(),
            "pod → outside: node address"
        );
        assert_eq!(find(4, 0), None, "the outside does not reach pods");
        assert_eq!(find(4, 2), "203.0.113.2".parse().ok());
        // 2 pods × 4 destinations + 2 nodes × 4 + outside → 2 nodes.
        assert_eq!(ps.len(), 18);
    }

    #[test]
    fn all_rewrites_tunnel_traffic_to_the_vxlan_address() {
        let (p, c) = lab(
            "cluster v { pod-cidr 10.244.0.0/16; backend vxlan; masquerade all }\n\
             node a { address 10.0.0.1/24; subnet 10.244.0.0/24 }\n\
             node b { address 10.0.0.2/24; subnet 10.244.1.0/24 }\n",
        );
        let eps = vec![
            ep(EndpointKind::Pod { node: 0 }, "10.244.0.2", 0),
            ep(EndpointKind::Pod { node: 1 }, "10.244.1.2", 1),
        ];
        let ps = pairs(&p, &c, &eps);
        assert_eq!(ps[0].expect, "10.244.0.0".parse::<Ipv4Addr>().expect("a"));
        assert_eq!(ps[0].path, Some(PeerPath::Tunnel));
    }
}
