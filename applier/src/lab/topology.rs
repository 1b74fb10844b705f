//! Topology → lab plan, pure: which namespaces, switches, links and addresses a lab of a
//! cluster consists of. One namespace per node (named after it, behind the lab's prefix),
//! one switch (a bridge in its own namespace) per L2 segment of the compiler's topology, a
//! router joining the segments and an "outside" host behind the router standing for the
//! internet, with one extra address in every `masquerade except` range the lab does not
//! already contain.

use std::net::Ipv4Addr;

use ipnet::Ipv4Net;
use podnet_compiler::Cluster;
use podnet_compiler::model::MasqueradeMode;
use podnet_compiler::topology::{PeerPath, peer_path, segments};

use super::LabError;

/// The bridge inside every switch namespace.
pub const SWITCH_BRIDGE: &str = "br0";
/// The router's port towards the outside host, and the outside host's interface.
pub const ROUTER_OUTSIDE_PORT: &str = "out0";
pub const OUTSIDE_IFACE: &str = "eth0";
/// The switch's port towards the router.
pub const SWITCH_ROUTER_PORT: &str = "rtr0";
/// Networks tried, in order, for the router ↔ outside link (documentation ranges first).
const OUTSIDE_NETS: [&str; 4] = [
    "203.0.113.0/24",
    "198.51.100.0/24",
    "192.0.2.0/24",
    "100.64.0.0/24",
];
/// The longest lab id: `ID-` prefixes every namespace name.
pub const MAX_ID: usize = 12;

/// Everything a lab is made of, decided before anything is built.
#[derive(Clone, Debug)]
pub struct LabPlan {
    pub id: String,
    pub cluster: String,
    pub nodes: Vec<LabNode>,
    pub switches: Vec<Switch>,
    pub router: String,
    pub outside: Outside,
    pub pods_per_node: usize,
    pub pod_mtu: u32,
    pub pod_cidr: Ipv4Net,
}

/// A node: its namespace, underlay interface and address, and its pods' namespaces.
#[derive(Clone, Debug)]
pub struct LabNode {
    pub name: String,
    pub ns: String,
    pub iface: String,
    pub address: Ipv4Net,
    pub mtu: u32,
    /// Index into [`LabPlan::switches`].
    pub segment: usize,
    /// The node's port on its switch.
    pub port: String,
    /// The MAC of the node's underlay interface (locally administered, from its index).
    pub mac: String,
    pub subnet: Ipv4Net,
    pub pods: Vec<String>,
}

/// One L2 segment: a bridge in its own namespace, and the router's address on it.
#[derive(Clone, Debug)]
pub struct Switch {
    pub ns: String,
    pub net: Ipv4Net,
    /// The router's address on the segment (with the segment's prefix): every node's
    /// default gateway.
    pub gateway: Ipv4Net,
    /// The router's port on this segment.
    pub router_port: String,
    /// The MAC of the router's port.
    pub router_mac: String,
    pub mtu: u32,
}

/// The outside host: its namespace, the link to the router, and its `except` addresses.
#[derive(Clone, Debug)]
pub struct Outside {
    pub ns: String,
    /// The router's end of the link (with prefix).
    pub router: Ipv4Net,
    /// The outside host's main address (with prefix): "the internet".
    pub address: Ipv4Net,
    /// One address per `masquerade except` range not otherwise present in the lab.
    pub except: Vec<(Ipv4Net, Ipv4Addr)>,
    pub mtu: u32,
}

impl LabPlan {
    /// Plans the lab of a checked cluster. `id` prefixes every namespace name.
    pub fn new(cluster: &Cluster, id: &str, pods: usize) -> Result<LabPlan, LabError> {
        check_id(id)?;
        let segs = segments(cluster);
        let mut nodes = Vec::with_capacity(cluster.nodes.len());
        for (i, n) in cluster.nodes.iter().enumerate() {
            let Some(subnet) = n.subnet.map(|s| s.value) else {
                return Err(LabError::Unallocated(n.name.value.clone()));
            };
            let name = n.name.value.clone();
            let ns = format!("{id}-{name}");
            nodes.push(LabNode {
                pods: (1..=pods).map(|k| format!("{ns}-p{k}")).collect(),
                ns,
                iface: cluster.node_interface(n).to_string(),
                address: n.address.value,
                mtu: n
                    .underlay_mtu
                    .map_or(cluster.underlay_mtu.value, |m| m.value),
                segment: segs.iter().position(|s| s.nodes.contains(&i)).unwrap_or(0),
                port: format!("p{i}"),
                mac: mac(0x6e, i),
                subnet,
                name,
            });
        }
        let mut switches = Vec::with_capacity(segs.len());
        for (k, s) in segs.iter().enumerate() {
            let used: Vec<Ipv4Addr> = s.nodes.iter().map(|&i| nodes[i].address.addr()).collect();
            let gateway = free_host(s.net, &used).ok_or(LabError::NoRouterAddress(s.net))?;
            switches.push(Switch {
                ns: format!("{id}-sw{k}"),
                net: s.net,
                gateway: Ipv4Net::new(gateway, s.net.prefix_len()).unwrap_or(s.net),
                router_port: format!("seg{k}"),
                router_mac: mac(0x72, k),
                mtu: s.nodes.iter().map(|&i| nodes[i].mtu).max().unwrap_or(1500),
            });
        }
        let taken: Vec<Ipv4Net> = segs
            .iter()
            .map(|s| s.net)
            .chain([cluster.pod_cidr.value])
            .chain(cluster.service_cidr.map(|s| s.value))
            .chain(cluster.masquerade.except.iter().map(|e| e.value))
            .collect();
        let link = OUTSIDE_NETS
            .iter()
            .filter_map(|n| n.parse::<Ipv4Net>().ok())
            .find(|n| !taken.iter().any(|t| overlaps(*t, *n)))
            .ok_or(LabError::NoOutsideAddress)?;
        let host = |k: u32| Ipv4Net::new(Ipv4Addr::from(u32::from(link.network()) + k), 24);
        let (Ok(router), Ok(address)) = (host(1), host(2)) else {
            return Err(LabError::NoOutsideAddress);
        };
        let mut except = Vec::new();
        if cluster.masquerade.mode == MasqueradeMode::Outbound {
            for e in &cluster.masquerade.except {
                let e = e.value;
                // Ranges holding a segment are probed through the nodes on it.
                if segs.iter().any(|s| overlaps(s.net, e))
                    || overlaps(e, cluster.pod_cidr.value)
                    || overlaps(e, link)
                {
                    continue;
                }
                let addr = if e.prefix_len() >= 31 {
                    e.network()
                } else {
                    Ipv4Addr::from(u32::from(e.network()) + 1)
                };
                except.push((e, addr));
            }
        }
        Ok(LabPlan {
            id: id.to_string(),
            cluster: cluster.name.value.clone(),
            outside: Outside {
                ns: format!("{id}-outside"),
                router,
                address,
                except,
                mtu: switches.iter().map(|s| s.mtu).max().unwrap_or(1500),
            },
            router: format!("{id}-router"),
            nodes,
            switches,
            pods_per_node: pods,
            pod_mtu: cluster.pod_mtu(),
            pod_cidr: cluster.pod_cidr.value,
        })
    }

    /// Every namespace the lab makes, in creation order (router and outside, switches,
    /// nodes, pods); deleted in reverse.
    pub fn namespaces(&self) -> Vec<String> {
        let mut v = vec![self.router.clone(), self.outside.ns.clone()];
        v.extend(self.switches.iter().map(|s| s.ns.clone()));
        v.extend(self.nodes.iter().map(|n| n.ns.clone()));
        v.extend(self.nodes.iter().flat_map(|n| n.pods.iter().cloned()));
        v
    }

    /// How two nodes relate: same node, same segment or across the router.
    pub fn relation(&self, a: usize, b: usize) -> Relation {
        if a == b {
            Relation::SameNode
        } else if self.nodes[a].segment == self.nodes[b].segment {
            Relation::SameSegment
        } else {
            Relation::OtherSegment
        }
    }

    /// Whether a cluster file describes the same lab topology (same nodes, addresses,
    /// interfaces and subnets): `--then` changes a running lab's configuration, not its
    /// machines.
    pub fn same_machines(&self, cluster: &Cluster) -> Result<(), LabError> {
        let other = LabPlan::new(cluster, &self.id, self.pods_per_node)?;
        let key = |n: &LabNode| (n.name.clone(), n.address, n.iface.clone(), n.mtu);
        let a: Vec<_> = self.nodes.iter().map(key).collect();
        let b: Vec<_> = other.nodes.iter().map(key).collect();
        if a != b {
            return Err(LabError::OtherMachines);
        }
        Ok(())
    }
}

/// How pod traffic between two nodes travels (for reports).
pub fn path_between(cluster: &Cluster, a: usize, b: usize) -> Option<PeerPath> {
    Some(peer_path(
        cluster,
        cluster.nodes.get(a)?,
        cluster.nodes.get(b)?,
    ))
}

/// Where a destination sits relative to the source's node.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, serde::Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Relation {
    SameNode,
    SameSegment,
    OtherSegment,
    Outside,
}

impl Relation {
    pub fn as_str(self) -> &'static str {
        match self {
            Relation::SameNode => "same node",
            Relation::SameSegment => "same segment",
            Relation::OtherSegment => "other segment",
            Relation::Outside => "outside",
        }
    }
}

/// Lab ids: 1–12 bytes of `[a-z0-9]`, starting with a letter.
pub fn check_id(id: &str) -> Result<(), LabError> {
    let ok = !id.is_empty()
        && id.len() <= MAX_ID
        && id
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit())
        && id.as_bytes()[0].is_ascii_lowercase();
    if ok {
        Ok(())
    } else {
        Err(LabError::BadId(id.to_string()))
    }
}

/// `02:70:KIND:xx:yy:zz`: locally administered, unicast, unique per kind and index.
fn mac(kind: u8, i: usize) -> String {
    let i = u32::try_from(i).unwrap_or(u32::MAX).to_be_bytes();
    format!("02:70:{kind:02x}:{:02x}:{:02x}:{:02x}", i[1], i[2], i[3])
}

/// Non-permanent neighbour entries a lab needs at most: each pod resolves its gateway and
/// the other pods of its node. Lab machines (nodes, router) know each other's MACs as
/// permanent entries, and nodes their pods', because every namespace shares the kernel's
/// one neighbour table, limited by the host's `gc_thresh3`, where separate machines would
/// each have their own.
pub fn neighbour_entries(nodes: usize, pods: usize) -> usize {
    nodes * pods * pods + 4
}

fn overlaps(a: Ipv4Net, b: Ipv4Net) -> bool {
    a.contains(&b.network()) || b.contains(&a.network())
}

/// The highest host address of `net` not in `used`.
fn free_host(net: Ipv4Net, used: &[Ipv4Addr]) -> Option<Ipv4Addr> {
    net.hosts().rev().find(|a| !used.contains(a))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cluster(src: &str) -> Cluster {
        let c = podnet_compiler::compile_text(
            &podnet_compiler::MemLoader::default(),
            std::path::Path::new("c.podnet"),
            src.to_string(),
            podnet_compiler::UseLock::No,
        );
        c.valid_cluster().cloned().expect("valid cluster")
    }

    #[test]
    fn two_segments_one_router_and_except_addresses() {
        let c = cluster(
            "cluster r { pod-cidr 10.50.0.0/16; backend vxlan { direct-routing on }\n\
             masquerade outbound { except 172.16.0.0/12 10.10.1.0/24 } }\n\
             node a1 { address 10.10.1.11/24; subnet 10.50.1.0/24 }\n\
             node b1 { address 10.10.2.11/24; subnet 10.50.3.0/24 }\n\
             node a2 { address 10.10.1.254/24; subnet 10.50.2.0/24 }\n",
        );
        let p = LabPlan::new(&c, "t1", 2).expect("plan");
        assert_eq!(p.switches.len(), 2);
        assert_eq!(p.nodes[2].segment, 0);
        assert_eq!(p.nodes[1].segment, 1);
        // .254 is taken by a2: the router takes the next free address down.
        assert_eq!(p.switches[0].gateway.to_string(), "10.10.1.253/24");
        assert_eq!(p.switches[1].gateway.to_string(), "10.10.2.254/24");
        // The segment's except range is probed through its nodes; 172.16/12 gets an address.
        assert_eq!(p.outside.except.len(), 1);
        assert_eq!(p.outside.except[0].1.to_string(), "172.16.0.1");
        assert_eq!(p.nodes[0].pods, ["t1-a1-p1", "t1-a1-p2"]);
        assert_eq!(p.relation(0, 2), Relation::SameSegment);
        assert_eq!(p.relation(0, 1), Relation::OtherSegment);
        assert_eq!(p.namespaces().len(), 2 + 2 + 3 + 6);
    }

    #[test]
    fn ids_are_checked() {
        assert!(check_id("pl0a").is_ok());
        for bad in ["", "0a", "a-b", "A", "abcdefghijklm"] {
            assert!(check_id(bad).is_err(), "{bad}");
        }
    }
}
