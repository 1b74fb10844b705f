//! Test support: nodes built exactly as flannel's vxlan backend leaves them (from what
//! flannel's code creates): `flannel.1` (VNI 1, port 8472, learning off, local = the node
//! address, MTU 1450, the node's VTEP MAC) with `SUBNET_NET/32`, per peer a permanent
//! neighbour, an FDB entry `MAC dst PEER self permanent` and the onlink route
//! `PEER_SUBNET via PEER_NET dev flannel.1 onlink` (protocol boot, which flannel's netlink
//! library sets), `/run/flannel/subnet.env` and `10-flannel.conflist` under the node's
//! root, and `cni0` made by the real bridge plugin when the first pod is attached — with
//! the configuration flannel's CNI plugin delegates to the bridge plugin (the `flannel`
//! plugin binary itself is not installed here). Two nodes share one underlay veth.
//! Everything lives in the test's own namespaces, removed on drop.

use std::net::Ipv4Addr;
use std::process::Output;

use serde_json::{Value, json};

use super::{NetNs, cni, node::bin};

/// A flannel node: its namespace, address, subnet, VTEP MAC and `--root`.
pub struct FlannelNode {
    pub ns: NetNs,
    pub address: Ipv4Addr,
    /// The third octet of its subnet `10.244.N.0/24`.
    pub n: u8,
    pub mac: String,
    pub root: tempfile::TempDir,
    /// host-local's lease directory.
    pub ipam: tempfile::TempDir,
}

/// The cluster file podnet imports for the two nodes (their subnets, addresses and MACs).
pub fn cluster(nodes: &[&FlannelNode]) -> String {
    let mut s = String::from(
        "cluster f {\n    pod-cidr 10.244.0.0/16\n    backend vxlan\n    flannel-compat on\n}\n",
    );
    for (i, n) in nodes.iter().enumerate() {
        s.push_str(&format!(
            "node n{} {{ address {}/24; subnet 10.244.{}.0/24; vtep-mac {} }}\n",
            i + 1,
            n.address,
            n.n,
            n.mac
        ));
    }
    s
}

/// The cluster file for host-gw nodes (the same subnets and addresses).
pub fn cluster_host_gw(nodes: &[&FlannelNode]) -> String {
    cluster(nodes)
        .replace("backend vxlan\n", "backend host-gw\n")
        .lines()
        .map(|l| match l.find("; vtep-mac") {
            Some(i) => format!("{} }}", &l[..i]),
            None => l.to_string(),
        })
        .collect::<Vec<_>>()
        .join("\n")
        + "\n"
}

/// The subnet.env flanneld writes for a node.
pub fn subnet_env(n: u8) -> String {
    format!(
        "FLANNEL_NETWORK=10.244.0.0/16\nFLANNEL_SUBNET=10.244.{n}.1/24\nFLANNEL_MTU=1450\n\
         FLANNEL_IPMASQ=true\n"
    )
}

/// flannel's conflist as its DaemonSet installs it.
pub const CONFLIST: &str = r#"{
  "name": "cbr0",
  "cniVersion": "0.3.1",
  "plugins": [
    { "type": "flannel", "delegate": { "hairpinMode": true, "isDefaultGateway": true } },
    { "type": "portmap", "capabilities": { "portMappings": true } }
  ]
}
"#;

impl FlannelNode {
    /// Builds nodes `1..=count` on one underlay (10.88.0.N/24 on `eth0`), each with
    /// flannel's vxlan state towards every other node.
    pub fn pair() -> (FlannelNode, FlannelNode) {
        let a = FlannelNode::bare("f1", 1);
        let b = FlannelNode::bare("f2", 2);
        super::veth(&a.ns, "eth0", &b.ns, "eth0");
        for n in [&a, &b] {
            n.ns.ip(&["addr", "add", &format!("{}/24", n.address), "dev", "eth0"]);
            n.vxlan();
        }
        a.peer(&b);
        b.peer(&a);
        (a, b)
    }

    /// Two nodes as flannel's host-gw backend leaves them: no vxlan, per peer the route
    /// `PEER_SUBNET via PEER_IP dev eth0` (protocol boot, like flannel's netlink library).
    pub fn pair_host_gw() -> (FlannelNode, FlannelNode) {
        let a = FlannelNode::bare("g1", 1);
        let b = FlannelNode::bare("g2", 2);
        super::veth(&a.ns, "eth0", &b.ns, "eth0");
        for n in [&a, &b] {
            n.ns.ip(&["addr", "add", &format!("{}/24", n.address), "dev", "eth0"]);
        }
        for (n, peer) in [(&a, &b), (&b, &a)] {
            n.ns.ip(&[
                "route",
                "replace",
                &format!("10.244.{}.0/24", peer.n),
                "via",
                &peer.address.to_string(),
                "dev",
                "eth0",
                "proto",
                "boot",
            ]);
        }
        (a, b)
    }

    fn bare(tag: &str, n: u8) -> FlannelNode {
        let ns = NetNs::new(tag);
        ns.sh("sysctl", &["-qw", "net.ipv6.conf.default.accept_dad=0"]);
        let root = tempfile::tempdir().expect("root dir");
        let env = root.path().join("run/flannel/subnet.env");
        std::fs::create_dir_all(env.parent().expect("parent")).expect("mkdir");
        std::fs::write(&env, subnet_env(n)).expect("subnet.env");
        let cni = root.path().join("etc/cni/net.d/10-flannel.conflist");
        std::fs::create_dir_all(cni.parent().expect("parent")).expect("mkdir");
        std::fs::write(&cni, CONFLIST).expect("conflist");
        FlannelNode {
            ns,
            address: Ipv4Addr::new(10, 88, 0, n),
            n,
            mac: format!("0a:f1:00:00:00:{n:02x}"),
            root,
            ipam: tempfile::tempdir().expect("ipam dir"),
        }
    }

    /// flannel's `flannel.1` and its `/32` address.
    fn vxlan(&self) {
        let local = self.address.to_string();
        self.ns.ip(&[
            "link",
            "add",
            "flannel.1",
            "address",
            &self.mac,
            "mtu",
            "1450",
            "type",
            "vxlan",
            "id",
            "1",
            "local",
            &local,
            "dev",
            "eth0",
            "dstport",
            "8472",
            "nolearning",
        ]);
        self.ns.ip(&[
            "addr",
            "add",
            &format!("10.244.{}.0/32", self.n),
            "dev",
            "flannel.1",
        ]);
        self.ns.ip(&["link", "set", "flannel.1", "up"]);
    }

    /// What flannel adds on this node for `peer`'s lease.
    fn peer(&self, peer: &FlannelNode) {
        let net = format!("10.244.{}.0", peer.n);
        self.ns.ip(&[
            "neigh",
            "replace",
            &net,
            "lladdr",
            &peer.mac,
            "dev",
            "flannel.1",
            "nud",
            "permanent",
        ]);
        let mut fdb = vec!["netns", "exec", self.ns.name.as_str(), "bridge", "fdb"];
        let dst = peer.address.to_string();
        fdb.extend([
            "append",
            peer.mac.as_str(),
            "dev",
            "flannel.1",
            "dst",
            dst.as_str(),
            "self",
            "permanent",
        ]);
        super::run("ip", &fdb);
        self.ns.ip(&[
            "route",
            "replace",
            &format!("{net}/24"),
            "via",
            &net,
            "dev",
            "flannel.1",
            "onlink",
            "proto",
            "boot",
        ]);
    }

    /// flannel's iptables rules for this node (`--ip-masq`), as flannel's iptables manager
    /// makes them: `ClearChain` creates `nat FLANNEL-POSTRTG` and `filter FLANNEL-FWD`, then
    /// one `iptables-restore --noflush` appends the jumps and the rules, in flannel's order
    /// and with its comments (`--random-fully`: this iptables supports it).
    pub fn iptables(&self) {
        self.ns
            .sh("iptables", &["-t", "nat", "-N", "FLANNEL-POSTRTG"]);
        self.ns
            .sh("iptables", &["-t", "filter", "-N", "FLANNEL-FWD"]);
        let (cluster, pod) = ("10.244.0.0/16", format!("10.244.{}.0/24", self.n));
        let m = "-m comment --comment \"flanneld masq\"";
        let f = "-m comment --comment \"flanneld forward\"";
        let script = format!(
            "*nat\n\
             -A POSTROUTING {m} -j FLANNEL-POSTRTG\n\
             -A FLANNEL-POSTRTG -m mark --mark 0x4000/0x4000 {m} -j RETURN\n\
             -A FLANNEL-POSTRTG -s {pod} -d {cluster} {m} -j RETURN\n\
             -A FLANNEL-POSTRTG -s {cluster} -d {pod} {m} -j RETURN\n\
             -A FLANNEL-POSTRTG ! -s {cluster} -d {pod} {m} -j RETURN\n\
             -A FLANNEL-POSTRTG -s {cluster} ! -d 224.0.0.0/4 {m} -j MASQUERADE --random-fully\n\
             -A FLANNEL-POSTRTG ! -s {cluster} -d {cluster} {m} -j MASQUERADE --random-fully\n\
             COMMIT\n\
             *filter\n\
             -A FORWARD {f} -j FLANNEL-FWD\n\
             -A FLANNEL-FWD -s {cluster} {f} -j ACCEPT\n\
             -A FLANNEL-FWD -d {cluster} {f} -j ACCEPT\n\
             COMMIT\n"
        );
        self.restore("iptables-restore", &["--noflush"], &script);
    }

    /// flannel's nftables tables (flannel ≥ 0.25, `EnableNFTables`), as its nftables manager
    /// makes them through knftables: `ip flannel-ipv4` and `ip6 flannel-ipv6`, each with a
    /// comment, a `forward` filter chain and a `postrtg` nat chain; IPv4 rules only (the
    /// cluster has no IPv6 network, so the ip6 table stays empty).
    pub fn nftables(&self) {
        let (cluster, pod) = ("10.244.0.0/16", format!("10.244.{}.0/24", self.n));
        let script = format!(
            "add table ip flannel-ipv4 {{ comment \"rules for flannel-ipv4\" ; }}\n\
             add table ip6 flannel-ipv6 {{ comment \"rules for flannel-ipv6\" ; }}\n\
             add chain ip flannel-ipv4 forward {{ comment \"chain to accept flannel traffic\" ; \
             type filter hook forward priority filter ; }}\n\
             flush chain ip flannel-ipv4 forward\n\
             add rule ip flannel-ipv4 forward ip saddr {cluster} accept\n\
             add rule ip flannel-ipv4 forward ip daddr {cluster} accept\n\
             add chain ip flannel-ipv4 postrtg {{ comment \"chain to manage traffic masquerading \
             by flannel\" ; type nat hook postrouting priority srcnat ; }}\n\
             flush chain ip flannel-ipv4 postrtg\n\
             add rule ip flannel-ipv4 postrtg meta mark 0x4000 return\n\
             add rule ip flannel-ipv4 postrtg ip saddr {pod} ip daddr {cluster} return\n\
             add rule ip flannel-ipv4 postrtg ip saddr {cluster} ip daddr {pod} return\n\
             add rule ip flannel-ipv4 postrtg ip saddr != {pod} ip daddr {cluster} return\n\
             add rule ip flannel-ipv4 postrtg ip saddr {cluster} ip daddr != 224.0.0.0/4 \
             masquerade fully-random\n\
             add rule ip flannel-ipv4 postrtg ip saddr != {cluster} ip daddr {cluster} \
             masquerade fully-random\n"
        );
        self.restore("nft", &["-f", "-"], &script);
    }

    /// Runs `program args` in the node with `input` on standard input, asserting success.
    fn restore(&self, program: &str, args: &[&str], input: &str) {
        use std::io::Write as _;
        let mut child = std::process::Command::new("ip")
            .args(["netns", "exec", &self.ns.name, program])
            .args(args)
            .stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .expect("spawn");
        child
            .stdin
            .take()
            .expect("stdin")
            .write_all(input.as_bytes())
            .expect("write");
        let out = child.wait_with_output().expect("wait");
        assert!(
            out.status.success(),
            "{program} failed: {}\n{input}",
            String::from_utf8_lossy(&out.stderr)
        );
    }

    /// An "outside" network beyond the node: `eth1` 10.99.0.1/24 here, 10.99.0.2/24 in a new
    /// namespace that has no route to the pod network (a reply reaches a pod only if its
    /// traffic was masqueraded to the node's address).
    pub fn outside(&self) -> NetNs {
        let out = NetNs::new("out");
        super::veth(&self.ns, "eth1", &out, "eth0");
        self.ns.ip(&["addr", "add", "10.99.0.1/24", "dev", "eth1"]);
        out.ip(&["addr", "add", "10.99.0.2/24", "dev", "eth0"]);
        out
    }

    /// `iptables-save` (nat and filter) without comments and counters.
    pub fn iptables_save(&self) -> String {
        let text = self.ns.sh("iptables-save", &[]);
        text.lines()
            .filter(|l| !l.starts_with('#'))
            .map(|l| match l.rfind(" [") {
                Some(i) if l.starts_with(':') => format!("{} [0:0]", &l[..i]),
                _ => l.to_string(),
            })
            .collect::<Vec<_>>()
            .join("\n")
    }

    /// `nft list ruleset` without the tables iptables-nft keeps
    /// (those are compared through `iptables-save`, which is their own view of them).
    pub fn nft_ruleset(&self) -> String {
        let text = self.ns.sh("nft", &["list", "ruleset"]);
        let mut out = Vec::new();
        let mut skip = false;
        for line in text.lines() {
            if line.starts_with("table ") {
                skip = ["ip", "ip6", "inet"].iter().any(|f| {
                    ["filter", "nat", "mangle", "raw", "security"]
                        .iter()
                        .any(|t| line.starts_with(&format!("table {f} {t} ")))
                });
            }
            if !skip {
                out.push(line.to_string());
            }
            if line == "}" {
                skip = false;
            }
        }
        out.join("\n")
    }

    /// The configuration flannel's CNI plugin hands to the bridge plugin for this node.
    pub fn delegate(&self) -> Value {
        json!({
            "name": "cbr0",
            "cniVersion": "0.3.1",
            "plugins": [{
                "type": "bridge",
                "bridge": "cni0",
                "mtu": 1450,
                "isGateway": true,
                "isDefaultGateway": true,
                "hairpinMode": true,
                "ipMasq": false,
                "ipam": {
                    "type": "host-local",
                    "ranges": [[{ "subnet": format!("10.244.{}.0/24", self.n) }]],
                    "routes": [{ "dst": "10.244.0.0/16" }]
                }
            }]
        })
    }

    /// Attaches a new pod with the real bridge and host-local plugins; returns it and its
    /// address.
    pub fn pod(&self, tag: &str) -> (NetNs, String) {
        let pod = NetNs::new(tag);
        let confs = cni::plugin_confs(&self.delegate(), self.ipam.path());
        let result = cni::add(&self.ns, &confs, &pod, tag);
        let ip = result["ips"][0]["address"]
            .as_str()
            .expect("pod address")
            .split('/')
            .next()
            .expect("address")
            .to_string();
        (pod, ip)
    }

    pub fn root(&self) -> &str {
        self.root.path().to_str().expect("utf-8 root")
    }

    /// Runs `podnet ARGS… --root ROOT` in the node.
    pub fn podnet(&self, args: &[&str]) -> Output {
        let mut a: Vec<&str> = args.to_vec();
        a.extend(["--root", self.root()]);
        self.ns.exec(&bin(), &a)
    }

    /// Like `podnet`, asserting exit 0; returns stdout.
    pub fn ok(&self, args: &[&str]) -> String {
        let out = self.podnet(args);
        assert!(
            out.status.success(),
            "podnet {args:?} in {} exited {:?}\nstdout:\n{}\nstderr:\n{}",
            self.ns.name,
            out.status.code(),
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    /// The node's kernel state as `ip -j` and `bridge -j` dump it, without counters and
    /// timers: links (`-d`), IPv4 routes of every table, nexthops, permanent neighbours,
    /// flannel.1's FDB, and the files flannel wrote.
    pub fn dumps(&self) -> Value {
        let bridge = |args: &[&str]| -> Value {
            let mut a = vec!["-j"];
            a.extend_from_slice(args);
            let out = self.ns.exec("bridge", &a);
            // No flannel.1 on a host-gw node: no FDB.
            let out = String::from_utf8_lossy(&out.stdout).into_owned();
            serde_json::from_str(if out.trim().is_empty() { "[]" } else { &out })
                .expect("bridge -j is JSON")
        };
        let file = |p: &str| std::fs::read_to_string(self.root.path().join(p)).ok();
        scrub(json!({
            "links": self.ns.ip_json(&["-d", "link", "show"]),
            "addresses": self.ns.ip_json(&["-4", "addr", "show"]),
            "routes": self.ns.ip_json(&["-4", "route", "show", "table", "all"]),
            "nexthops": self.ns.ip_json(&["nexthop", "show"]),
            "neighbours": self.ns.ip_json(&["-4", "neigh", "show", "nud", "permanent"]),
            "fdb": bridge(&["fdb", "show", "dev", "flannel.1"]),
            "iptables": self.iptables_save(),
            "nft": self.nft_ruleset(),
            "subnet.env": file("run/flannel/subnet.env"),
            "10-flannel.conflist": file("etc/cni/net.d/10-flannel.conflist"),
        }))
    }
}

/// `v` without counters and timers (`stats*`, `*_timer`, address lifetimes).
pub fn scrub(v: Value) -> Value {
    match v {
        Value::Object(m) => Value::Object(
            m.into_iter()
                .filter(|(k, _)| {
                    !(k.starts_with("stats")
                        || k.ends_with("_timer")
                        || k == "valid_life_time"
                        || k == "preferred_life_time"
                        || k == "used"
                        || k == "updated")
                })
                .map(|(k, v)| (k, scrub(v)))
                .collect(),
        ),
        Value::Array(a) => Value::Array(a.into_iter().map(scrub).collect()),
        other => other,
    }
}
