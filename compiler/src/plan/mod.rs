//! Per-node plans: the pure data a node's kernel state and files must match, computed from
//! a checked [`Cluster`], and their renderings (text, JSON, shell). The plan is a wire
//! format (`schemas/plan.schema.json`, `format_version` 1): the applier consumes it as is.

mod files;
mod shell;
mod text;
mod types;

use std::collections::HashMap;
use std::net::Ipv4Addr;
use std::path::Path;

use ipnet::Ipv4Net;

use crate::diag::{Code, Diagnostic};
use crate::model::{
    Backend, Cluster, FirewallKind, KUBE_PROXY_MASQUERADE_MARK, MasqueradeMode, Node,
};

pub use files::FLANNEL_SUBNET_ENV;
pub use shell::{IPT_COMMENT, IPT_FILTER_CHAIN, IPT_NAT_CHAIN, NFT_TABLE, render_shell};
pub use text::render_text;
pub use types::{
    Address, FdbEntry, File, Firewall, FirewallDriver, Link, LinkKind, Mac, MasqueradeRule,
    Neighbour, NodePlan, ParseMacError, Route, Sysctl, Underlay, VxlanAttrs,
};

/// The version of the plan's JSON form; bumped on any incompatible change.
pub const FORMAT_VERSION: u32 = 2;

/// The one sysctl a plan sets (to `1`); [`crate::validate`] allows only what is planned.
pub const IP_FORWARD: &str = "net.ipv4.ip_forward";

/// How many closest node names an unknown-node diagnostic suggests.
const SUGGESTIONS: usize = 3;

/// Plans one node of a checked cluster (one without errors). Unknown names give
/// [`Code::UnknownNode`]; a node without a subnet (this one or any peer) gives
/// [`Code::Unallocated`]. To plan many nodes, build one [`Planner`] instead.
pub fn plan(cluster: &Cluster, node: &str) -> Result<NodePlan, Diagnostic> {
    Planner::new(cluster).plan_named(node)
}

/// Plans nodes of one cluster: the per-node data every plan needs about its peers (subnets,
/// VTEP MACs, the name index) is computed once, so planning all N nodes costs O(N) each.
pub struct Planner<'c> {
    cluster: &'c Cluster,
    index: HashMap<&'c str, usize>,
    /// The VTEP MAC of every node (empty for host-gw).
    macs: Vec<Mac>,
    /// The first node without a subnet, if any.
    unallocated: Option<usize>,
    pod_mtu: u32,
}

impl<'c> Planner<'c> {
    pub fn new(cluster: &'c Cluster) -> Self {
        let mut index = HashMap::with_capacity(cluster.nodes.len());
        for (i, n) in cluster.nodes.iter().enumerate() {
            index.entry(n.name.value.as_str()).or_insert(i);
        }
        let macs = match cluster.backend {
            Backend::HostGw => Vec::new(),
            Backend::Vxlan(_) => cluster
                .nodes
                .iter()
                .map(|n| {
                    n.vtep_mac.map_or_else(
                        || Mac(crate::mac::vtep_mac(&cluster.name.value, &n.name.value)),
                        |m| m.value,
                    )
                })
                .collect(),
        };
        Planner {
            cluster,
            index,
            macs,
            unallocated: cluster.nodes.iter().position(|n| n.subnet.is_none()),
            pod_mtu: cluster.pod_mtu(),
        }
    }

    /// The number of nodes (valid indexes for [`Planner::plan`] are `0..len()`).
    pub fn len(&self) -> usize {
        self.cluster.nodes.len()
    }

    pub fn is_empty(&self) -> bool {
        self.cluster.nodes.is_empty()
    }

    /// The index of the node called `name`, or a [`Code::UnknownNode`] diagnostic whose help
    /// names the closest known nodes.
    pub fn index_of(&self, name: &str) -> Result<usize, Diagnostic> {
        self.index
            .get(name)
            .copied()
            .ok_or_else(|| unknown_node(self.cluster, name))
    }

    /// Plans the node called `name`.
    pub fn plan_named(&self, name: &str) -> Result<NodePlan, Diagnostic> {
        self.plan(self.index_of(name)?)
    }

    /// Plans the node at index `i` (file order).
    pub fn plan(&self, i: usize) -> Result<NodePlan, Diagnostic> {
        let c = self.cluster;
        let Some(me) = c.nodes.get(i) else {
            return Err(Diagnostic::error(
                Code::UnknownNode,
                format!("no node number {i} in cluster `{}`", c.name),
            )
            .help(format!("the cluster has {} nodes", c.nodes.len())));
        };
        let Some(subnet) = me.subnet.map(|s| s.value) else {
            return Err(unallocated(me, None));
        };
        if let Some(peer) = self.unallocated.and_then(|u| c.nodes.get(u)) {
            return Err(unallocated(peer, Some(me)));
        }
        let iface = c.node_interface(me).to_string();
        let bridge = c.cni.bridge.value.clone();
        let gateway = first_host(subnet);
        let mut p = NodePlan {
            format_version: FORMAT_VERSION,
            cluster: c.name.value.clone(),
            node: me.name.value.clone(),
            underlay: Underlay {
                interface: iface.clone(),
                address: me.address.value,
            },
            route_protocol: c.route_protocol.value,
            sysctls: vec![Sysctl {
                key: IP_FORWARD.to_string(),
                value: "1".to_string(),
            }],
            links: vec![Link {
                name: bridge.clone(),
                kind: LinkKind::Bridge,
                mtu: self.pod_mtu,
                mac: None,
                up: true,
                vxlan: None,
            }],
            addresses: vec![Address {
                dev: bridge.clone(),
                address: gateway,
            }],
            routes: Vec::new(),
            neighbours: Vec::new(),
            fdb: Vec::new(),
            firewall: firewall(c, subnet, &bridge),
            files: files::files(c, subnet, gateway, self.pod_mtu),
        };
        let peers = c
            .nodes
            .iter()
            .enumerate()
            .filter(|&(j, _)| j != i)
            .filter_map(|(j, n)| n.subnet.map(|s| (j, n, s.value)));
        match &c.backend {
            Backend::HostGw => {
                for (_, n, s) in peers {
                    p.routes.push(direct_route(n, s, &iface));
                }
            }
            Backend::Vxlan(vx) => {
                let dev = vx.device.value.clone();
                p.links.push(Link {
                    name: dev.clone(),
                    kind: LinkKind::Vxlan,
                    mtu: self.pod_mtu,
                    mac: self.macs.get(i).copied(),
                    up: true,
                    vxlan: Some(VxlanAttrs {
                        vni: vx.vni.value,
                        port: vx.port.value,
                        local: me.address.value.addr(),
                        dev: iface.clone(),
                        learning: false,
                    }),
                });
                p.addresses.push(Address {
                    dev: dev.clone(),
                    address: host_net(subnet.network()),
                });
                for (j, n, s) in peers {
                    if crate::topology::peer_path(c, me, n) == crate::topology::PeerPath::Direct {
                        p.routes.push(direct_route(n, s, &iface));
                        continue;
                    }
                    let Some(mac) = self.macs.get(j).copied() else {
                        continue;
                    };
                    p.neighbours.push(Neighbour {
                        dev: dev.clone(),
                        ip: s.network(),
                        mac,
                    });
                    p.fdb.push(FdbEntry {
                        dev: dev.clone(),
                        mac,
                        dst: n.address.value.addr(),
                    });
                    p.routes.push(Route {
                        dst: s,
                        via: s.network(),
                        dev: dev.clone(),
                        onlink: true,
                    });
                }
            }
        }
        Ok(p)
    }
}

/// `SUBNET via NODE_ADDR dev IFACE`: a peer reached directly on the local L2 segment.
fn direct_route(peer: &Node, subnet: Ipv4Net, iface: &str) -> Route {
    Route {
        dst: subnet,
        via: peer.address.value.addr(),
        dev: iface.to_string(),
        onlink: false,
    }
}

/// The subnet's first host address with the subnet's prefix (the bridge's gateway address).
fn first_host(subnet: Ipv4Net) -> Ipv4Net {
    let gw = Ipv4Addr::from(u32::from(subnet.network()).saturating_add(1));
    Ipv4Net::new(gw, subnet.prefix_len()).unwrap_or(subnet)
}

fn host_net(ip: Ipv4Addr) -> Ipv4Net {
    Ipv4Net::from(ip)
}

fn firewall(c: &Cluster, subnet: Ipv4Net, bridge: &str) -> Firewall {
    let pod = c.pod_cidr.value;
    let rule = |not_destinations| MasqueradeRule {
        source: subnet,
        not_destinations,
        not_out_interface: bridge.to_string(),
        random_fully: c.masquerade.random_fully,
        skip_mark: Some(KUBE_PROXY_MASQUERADE_MARK),
    };
    let masquerade = match c.masquerade.mode {
        MasqueradeMode::Off => Vec::new(),
        MasqueradeMode::All => vec![rule(Vec::new())],
        MasqueradeMode::Outbound => {
            let mut not = vec![pod];
            for e in &c.masquerade.except {
                if !not.contains(&e.value) {
                    not.push(e.value);
                }
            }
            vec![rule(not)]
        }
    };
    Firewall {
        driver: match c.firewall {
            FirewallKind::Nftables => FirewallDriver::Nftables,
            FirewallKind::Iptables => FirewallDriver::Iptables,
        },
        masquerade,
        forward_accept: if c.forward_accept {
            vec![pod]
        } else {
            Vec::new()
        },
    }
}

fn unallocated(node: &Node, planned: Option<&Node>) -> Diagnostic {
    let message = match planned {
        None => format!("node `{}` has no subnet", node.name),
        Some(p) => format!(
            "node `{}` (a peer of `{}`) has no subnet",
            node.name, p.name
        ),
    };
    Diagnostic::error(Code::Unallocated, message)
        .at(node.name.span, "no subnet in the file nor in the lock file")
        .help("run `podnet lock` to allocate one, and review the lock file")
}

fn unknown_node(c: &Cluster, name: &str) -> Diagnostic {
    let mut scored: Vec<(usize, usize, &str)> = c
        .nodes
        .iter()
        .enumerate()
        .map(|(i, n)| {
            let k = n.name.value.as_str();
            (strsim::damerau_levenshtein(name, k), i, k)
        })
        .collect();
    scored.sort_unstable();
    let near: Vec<String> = scored
        .iter()
        .take(SUGGESTIONS)
        .map(|&(_, _, k)| format!("`{k}`"))
        .collect();
    let d = Diagnostic::error(
        Code::UnknownNode,
        format!("no node named `{name}` in cluster `{}`", c.name),
    );
    if near.is_empty() {
        d.help("the cluster has no nodes: add a `node` statement")
    } else {
        d.help(format!("the closest known nodes: {}", near.join(", ")))
    }
}

/// `path` under `root` (`/etc/x` under `/tmp/r` is `/tmp/r/etc/x`), or `path` itself.
pub fn rooted(root: Option<&Path>, path: &str) -> String {
    match root {
        None => path.to_string(),
        Some(r) => r
            .join(path.trim_start_matches('/'))
            .to_string_lossy()
            .into_owned(),
    }
}

impl Firewall {
    /// The distinct `skip_mark`s of the masquerade rules, in first-seen order: each is one
    /// return rule at the top of the masquerade chain, in both drivers.
    pub fn skip_marks(&self) -> Vec<u32> {
        skip_marks(self.masquerade.iter().map(|m| m.skip_mark))
    }
}

/// Distinct marks of `marks` (ignoring `None`), in first-seen order.
pub fn skip_marks(marks: impl IntoIterator<Item = Option<u32>>) -> Vec<u32> {
    let mut out = Vec::new();
    for m in marks.into_iter().flatten() {
        if !out.contains(&m) {
            out.push(m);
        }
    }
    out
}

impl NodePlan {
    /// The same plan with every file path prefixed by `root` (what `--root DIR` does).
    pub fn with_root(mut self, root: &Path) -> NodePlan {
        for f in &mut self.files {
            f.path = rooted(Some(root), &f.path);
        }
        self
    }

    /// Pretty JSON (the `--format json` rendering of one node), ending in a newline.
    pub fn to_json_pretty(&self) -> serde_json::Result<String> {
        serde_json::to_string_pretty(self).map(|s| s + "\n")
    }

    /// One-line JSON, ending in a newline (one JSON Lines record).
    pub fn to_json_line(&self) -> serde_json::Result<String> {
        serde_json::to_string(self).map(|s| s + "\n")
    }
}

#[cfg(test)]
mod tests {
    use std::path::Path;

    use super::*;
    use crate::{MemLoader, UseLock, compile_text};

    fn cluster(text: &str) -> Cluster {
        let c = compile_text(
            &MemLoader::default(),
            Path::new("t.podnet"),
            text.to_string(),
            UseLock::No,
        );
        assert!(!c.has_errors(), "{:#?}", c.diagnostics);
        c.cluster.expect("cluster")
    }

    const HDSS7: &str = "cluster hdss7 {
        pod-cidr 172.7.0.0/16
        backend host-gw
        masquerade outbound { except 10.4.7.0/24 }
        cni { bridge docker0 }
    }
    node hdss7-21.host.com { address 10.4.7.21/24; subnet 172.7.21.0/24 }
    node hdss7-22.host.com { address 10.4.7.22/24; subnet 172.7.22.0/24 }
    ";

    #[test]
    fn host_gw_routes_and_masquerade() {
        let c = cluster(HDSS7);
        let p = plan(&c, "hdss7-21.host.com").expect("plan");
        assert_eq!(p.routes.len(), 1);
        let r = &p.routes[0];
        assert_eq!(
            (
                r.dst.to_string(),
                r.via.to_string(),
                r.dev.as_str(),
                r.onlink
            ),
            ("172.7.22.0/24".into(), "10.4.7.22".into(), "eth0", false)
        );
        let m = &p.firewall.masquerade;
        assert_eq!(m.len(), 1);
        assert_eq!(m[0].source.to_string(), "172.7.21.0/24");
        assert!(
            m[0].not_destinations
                .iter()
                .any(|d| d.to_string() == "172.7.0.0/16")
        );
        assert_eq!(m[0].not_out_interface, "docker0");
        assert_eq!(p.addresses[0].address.to_string(), "172.7.21.1/24");
        assert_eq!(p.addresses[0].dev, "docker0");
        assert!(p.neighbours.is_empty() && p.fdb.is_empty());
        assert_eq!(p.links.len(), 1);
        assert_eq!(p.links[0].mtu, 1500);
    }

    #[test]
    fn unknown_node_suggests_closest_names() {
        let c = cluster(HDSS7);
        let d = plan(&c, "hdss7-23.host.com").expect_err("unknown");
        assert_eq!(d.code, Code::UnknownNode);
        let help = d.help.unwrap_or_default();
        assert!(help.contains("`hdss7-21.host.com`"), "{help}");
        assert!(help.contains("`hdss7-22.host.com`"), "{help}");
    }

    #[test]
    fn missing_subnets_are_unallocated() {
        let c = cluster(
            "cluster c { pod-cidr 10.244.0.0/16 }
            node a { address 10.0.0.1/24; subnet 10.244.0.0/24 }
            node b { address 10.0.0.2/24 }",
        );
        for n in ["a", "b"] {
            let d = plan(&c, n).expect_err("unallocated");
            assert_eq!(d.code, Code::Unallocated);
            assert!(d.message.contains("`b`"), "{}", d.message);
            assert!(d.help.unwrap_or_default().contains("podnet lock"));
        }
    }

    #[test]
    fn vxlan_direct_routing_across_two_segments() {
        let c = cluster(
            "cluster racks {
                pod-cidr 10.50.0.0/16
                backend vxlan { direct-routing on }
            }
            node a1 { address 10.10.1.11/24; subnet 10.50.1.0/24 }
            node a2 { address 10.10.1.12/24; subnet 10.50.2.0/24 }
            node b1 { address 10.10.2.11/24; subnet 10.50.3.0/24 }
            node b2 { address 10.10.2.12/24; subnet 10.50.4.0/24 }",
        );
        let p = plan(&c, "a1").expect("plan");
        let routes: Vec<String> = p
            .routes
            .iter()
            .map(|r| format!("{} via {} dev {} onlink={}", r.dst, r.via, r.dev, r.onlink))
            .collect();
        assert_eq!(
            routes,
            [
                "10.50.2.0/24 via 10.10.1.12 dev eth0 onlink=false",
                "10.50.3.0/24 via 10.50.3.0 dev flannel.1 onlink=true",
                "10.50.4.0/24 via 10.50.4.0 dev flannel.1 onlink=true",
            ]
        );
        let b1 = Mac(crate::mac::vtep_mac("racks", "b1"));
        let b2 = Mac(crate::mac::vtep_mac("racks", "b2"));
        let neigh: Vec<_> = p
            .neighbours
            .iter()
            .map(|n| (n.ip.to_string(), n.mac))
            .collect();
        assert_eq!(
            neigh,
            [("10.50.3.0".to_string(), b1), ("10.50.4.0".to_string(), b2)]
        );
        let fdb: Vec<_> = p.fdb.iter().map(|f| (f.mac, f.dst.to_string())).collect();
        assert_eq!(
            fdb,
            [
                (b1, "10.10.2.11".to_string()),
                (b2, "10.10.2.12".to_string())
            ]
        );
        assert!(p.fdb.iter().all(|f| f.dev == "flannel.1"));
        // The other segment sees the mirror image.
        let p = plan(&c, "b2").expect("plan");
        assert_eq!(p.neighbours.len(), 2);
        assert_eq!(p.routes.iter().filter(|r| !r.onlink).count(), 1);
        assert_eq!(p.routes[2].via.to_string(), "10.10.2.11");
    }

    #[test]
    fn vxlan_link_defaults() {
        let c = cluster(
            "cluster k { pod-cidr 10.244.0.0/16; backend vxlan }
            node n1 { address 192.168.56.10/24; subnet 10.244.0.0/24 }
            node n2 { address 192.168.56.11/24; subnet 10.244.1.0/24 }",
        );
        let p = plan(&c, "n1").expect("plan");
        let vx = p
            .links
            .iter()
            .find(|l| l.kind == LinkKind::Vxlan)
            .expect("vxlan link");
        assert_eq!(vx.name, "flannel.1");
        assert_eq!(vx.mtu, 1450);
        assert_eq!(vx.mac, Some(Mac(crate::mac::vtep_mac("k", "n1"))));
        let a = vx.vxlan.as_ref().expect("attrs");
        assert_eq!(
            (
                a.vni,
                a.port,
                a.local.to_string(),
                a.dev.as_str(),
                a.learning
            ),
            (1, 8472, "192.168.56.10".to_string(), "eth0", false)
        );
        assert_eq!(p.links[0].mtu, 1450, "bridge carries the pod MTU");
        assert!(
            p.addresses
                .iter()
                .any(|a| a.dev == "flannel.1" && a.address.to_string() == "10.244.0.0/32")
        );
        assert_eq!(p.routes[0].via.to_string(), "10.244.1.0");
        assert!(p.routes[0].onlink);
    }

    #[test]
    fn fixed_vtep_macs_replace_derived_ones() {
        let c = cluster(
            "cluster k { pod-cidr 10.244.0.0/16; backend vxlan }
            node n1 { address 192.168.56.10/24; subnet 10.244.0.0/24; vtep-mac 0e:2f:6a:11:22:33 }
            node n2 { address 192.168.56.11/24; subnet 10.244.1.0/24 }",
        );
        let fixed: Mac = "0e:2f:6a:11:22:33".parse().expect("mac");
        let derived = Mac(crate::mac::vtep_mac("k", "n2"));
        let p1 = plan(&c, "n1").expect("plan");
        assert_eq!(p1.links[1].mac, Some(fixed));
        assert_eq!(p1.neighbours[0].mac, derived);
        let p2 = plan(&c, "n2").expect("plan");
        assert_eq!(p2.links[1].mac, Some(derived));
        assert_eq!((p2.neighbours[0].mac, p2.fdb[0].mac), (fixed, fixed));
        assert!(crate::validate::validate_plan(&p1).is_ok());
    }

    #[test]
    fn masquerade_defaults_are_flannel_s_and_random_fully_opts_out() {
        let c = cluster(HDSS7);
        let m = &plan(&c, "hdss7-21.host.com")
            .expect("plan")
            .firewall
            .masquerade[0];
        assert!(m.random_fully);
        assert_eq!(m.skip_mark, Some(0x4000));
        let c =
            cluster(&HDSS7.replace("except 10.4.7.0/24", "except 10.4.7.0/24; random-fully off"));
        let m = &plan(&c, "hdss7-21.host.com")
            .expect("plan")
            .firewall
            .masquerade[0];
        assert!(!m.random_fully);
        assert_eq!(m.skip_mark, Some(0x4000), "the kube-proxy return stays");
        // A plan JSON written before these fields existed keeps the rules it had.
        let old =
            r#"{"source": "172.7.21.0/24", "not_destinations": [], "not_out_interface": "cni0"}"#;
        let r: MasqueradeRule = serde_json::from_str(old).expect("old rule");
        assert!(!r.random_fully && r.skip_mark.is_none());
    }

    #[test]
    fn planner_plans_every_node_and_json_round_trips() {
        let c = cluster(HDSS7);
        let planner = Planner::new(&c);
        assert_eq!(planner.len(), 2);
        for i in 0..planner.len() {
            let p = planner.plan(i).expect("plan");
            let back: NodePlan =
                serde_json::from_str(&p.to_json_pretty().expect("json")).expect("parse");
            assert_eq!(back, p);
        }
        assert_eq!(planner.plan(2).expect_err("range").code, Code::UnknownNode);
    }

    #[test]
    fn root_prefixes_file_paths() {
        let c = cluster(HDSS7);
        let p = plan(&c, "hdss7-22.host.com")
            .expect("plan")
            .with_root(Path::new("/tmp/r"));
        assert_eq!(p.files[0].path, "/tmp/r/etc/cni/net.d/10-podnet.conflist");
    }
}
