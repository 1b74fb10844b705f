//! `podnet plan --format shell` against the real kernel: in network namespaces this test
//! creates (and removes on drop, also when it fails), the script of an example node is run
//! twice and the kernel state read back (`ip -j`, `bridge -j`, `nft`, `iptables`) must be
//! exactly the JSON plan. Then pods are attached through the real CNI plugins following the
//! written conflist. Needs root, iproute2, nftables, iptables, ping and
//! containernetworking-plugins; it fails (never skips) when it cannot run.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

use ipnet::Ipv4Net;
use podnet_compiler::plan::{FirewallDriver, LinkKind, NodePlan};
use podnet_compiler::{FsLoader, UseLock, compile};
use serde_json::Value;

mod common;
use common::NetNs as Netns;
use common::cni::{self, run_with};

fn example(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../examples")
        .join(name)
}

/// Runs a command; panics with its output unless it succeeds. Returns standard output.
fn run(args: &[&str]) -> String {
    run_with(args, None, &[])
}

fn json(args: &[&str]) -> Value {
    let out = run(args);
    serde_json::from_str(&out).unwrap_or_else(|e| panic!("{args:?}: not JSON ({e}): {out}"))
}

/// A node namespace whose `eth0` (one end of a veth pair; the other end lives in a second
/// namespace) has the node's underlay address, the plan's files rooted in a temp dir, and
/// the plan in both forms. Dropping it removes both namespaces and the directory.
struct NodeLab {
    plan: NodePlan,
    script: PathBuf,
    node: Netns,
    _underlay: Netns,
    dir: tempfile::TempDir,
}

impl NodeLab {
    fn new(file: &str, node: &str) -> NodeLab {
        let path = example(file);
        let c = compile(&FsLoader, &path, UseLock::IfPresent);
        assert!(!c.has_errors(), "{file}: {:#?}", c.diagnostics);
        let cluster = c.cluster.expect("cluster");
        let n = cluster.node(node).expect("node in the example");
        let iface = cluster.node_interface(n).to_string();
        let address = n.address.value;

        let dir = tempfile::tempdir().expect("temp dir");
        let root = dir.path().join("root");
        let podnet = |format: &str| {
            run(&[
                env!("CARGO_BIN_EXE_podnet"),
                "plan",
                path.to_str().expect("UTF-8 path"),
                "--node",
                node,
                "--format",
                format,
                "--root",
                root.to_str().expect("UTF-8 path"),
            ])
        };
        let plan: NodePlan = serde_json::from_str(&podnet("json")).expect("JSON plan");
        let script = dir.path().join("plan.sh");
        std::fs::write(&script, podnet("shell")).expect("write script");

        let node_ns = Netns::new("plan");
        let underlay = Netns::new("plan");
        run(&[
            "ip",
            "-n",
            &underlay.name,
            "link",
            "add",
            "u0",
            "type",
            "veth",
            "peer",
            "name",
            &iface,
            "netns",
            &node_ns.name,
        ]);
        run(&["ip", "-n", &underlay.name, "link", "set", "u0", "up"]);
        run(&[
            "ip",
            "-n",
            &node_ns.name,
            "addr",
            "add",
            &address.to_string(),
            "dev",
            &iface,
        ]);
        run(&["ip", "-n", &node_ns.name, "link", "set", &iface, "up"]);
        NodeLab {
            plan,
            script,
            node: node_ns,
            _underlay: underlay,
            dir,
        }
    }

    fn apply(&self) {
        self.node
            .sh("sh", &[self.script.to_str().expect("UTF-8 path")]);
    }

    /// What the script sets, read back from the kernel as comparable text: links (with
    /// their ifindex, so a recreated link shows), IPv4 addresses, owned routes, permanent
    /// neighbours, FDB entries with a destination, and the firewall. Leaves out what the
    /// kernel changes by itself (IPv6 link-local addresses and their DAD flags, operstate).
    fn snapshot(&self) -> String {
        let ns = &self.node;
        let mut s = Vec::new();
        for l in ns
            .ip_json(&["-d", "link", "show"])
            .as_array()
            .expect("links")
        {
            let mut data = l["linkinfo"]["info_data"].clone();
            // A bridge's running timers are not state.
            if let Some(d) = data.as_object_mut() {
                d.retain(|k, _| !k.ends_with("_timer"));
            }
            s.push(format!(
                "link {} {} {} {} {data}",
                l["ifindex"], l["ifname"], l["mtu"], l["address"]
            ));
        }
        for l in ns
            .ip_json(&["-4", "addr", "show"])
            .as_array()
            .expect("addrs")
        {
            for a in l["addr_info"].as_array().into_iter().flatten() {
                s.push(format!(
                    "addr {} {}/{}",
                    l["ifname"], a["local"], a["prefixlen"]
                ));
            }
        }
        let proto = self.plan.route_protocol.to_string();
        s.push(ns.ip_json(&["route", "show", "proto", &proto]).to_string());
        s.push(
            ns.ip_json(&["neigh", "show", "nud", "permanent"])
                .to_string(),
        );
        for l in &self.plan.links {
            if l.kind == LinkKind::Vxlan {
                s.push(ns.sh("bridge", &["-j", "fdb", "show", "dev", &l.name]));
            }
        }
        s.push(self.firewall_text());
        s.join("\n")
    }

    fn firewall_text(&self) -> String {
        match self.plan.firewall.driver {
            FirewallDriver::Nftables => self.node.sh("nft", &["list", "table", "inet", "podnet"]),
            FirewallDriver::Iptables => {
                let mut out = String::new();
                for (table, chains) in [
                    ("nat", ["POSTROUTING", "PODNET-POSTRTG"]),
                    ("filter", ["FORWARD", "PODNET-FWD"]),
                ] {
                    for chain in chains {
                        out += &self.node.sh("iptables", &["-t", table, "-S", chain]);
                    }
                }
                out
            }
        }
    }

    /// Asserts that the kernel state and files are exactly the plan.
    fn assert_matches_plan(&self) {
        let p = &self.plan;
        let ns = &self.node;

        // sysctls
        for x in &p.sysctls {
            let got = ns.sh("sysctl", &["-n", &x.key]);
            assert_eq!(got.trim(), x.value, "sysctl {}", x.key);
        }

        // links: exactly lo, the underlay and the planned links, with every attribute
        let links = ns.ip_json(&["-d", "link", "show"]);
        let links = links.as_array().expect("link list");
        let names: BTreeSet<&str> = links.iter().filter_map(|l| l["ifname"].as_str()).collect();
        let mut want: BTreeSet<&str> = p.links.iter().map(|l| l.name.as_str()).collect();
        want.insert("lo");
        let underlay = underlay_iface(p);
        want.insert(&underlay);
        assert_eq!(names, want, "links");
        for l in &p.links {
            let got = links
                .iter()
                .find(|x| x["ifname"] == l.name.as_str())
                .expect("planned link exists");
            let kind = match l.kind {
                LinkKind::Bridge => "bridge",
                LinkKind::Vxlan => "vxlan",
            };
            assert_eq!(got["linkinfo"]["info_kind"], kind, "{} kind", l.name);
            assert_eq!(got["mtu"], l.mtu, "{} mtu", l.name);
            let up = got["flags"]
                .as_array()
                .is_some_and(|f| f.iter().any(|x| x == "UP"));
            assert_eq!(up, l.up, "{} up", l.name);
            if let Some(mac) = &l.mac {
                assert_eq!(got["address"], mac.to_string(), "{} mac", l.name);
            }
            if let Some(v) = &l.vxlan {
                let d = &got["linkinfo"]["info_data"];
                assert_eq!(d["id"], v.vni, "vni");
                assert_eq!(d["port"], v.port, "port");
                assert_eq!(d["local"], v.local.to_string(), "local");
                assert_eq!(d["link"], v.dev.as_str(), "underlay dev");
                assert_eq!(d["learning"], v.learning, "learning");
            }
        }

        // addresses on the planned links
        for l in &p.links {
            let got: BTreeSet<String> =
                ns.ip_json(&["addr", "show", "dev", &l.name])[0]["addr_info"]
                    .as_array()
                    .expect("addr_info")
                    .iter()
                    .filter(|a| a["family"] == "inet")
                    .map(|a| format!("{}/{}", a["local"].as_str().unwrap_or(""), a["prefixlen"]))
                    .collect();
            let want: BTreeSet<String> = p
                .addresses
                .iter()
                .filter(|a| a.dev == l.name)
                .map(|a| a.address.to_string())
                .collect();
            assert_eq!(got, want, "addresses of {}", l.name);
        }

        // routes with podnet's protocol: exactly the planned ones
        let proto = p.route_protocol.to_string();
        let got: BTreeSet<(String, String, String, bool)> = ns
            .ip_json(&["route", "show", "table", "main", "proto", &proto])
            .as_array()
            .expect("routes")
            .iter()
            .map(|r| {
                let onlink = r["flags"]
                    .as_array()
                    .is_some_and(|f| f.iter().any(|x| x == "onlink"));
                (
                    str_of(&r["dst"]),
                    str_of(&r["gateway"]),
                    str_of(&r["dev"]),
                    onlink,
                )
            })
            .collect();
        let want: BTreeSet<_> = p
            .routes
            .iter()
            .map(|r| {
                (
                    r.dst.to_string(),
                    r.via.to_string(),
                    r.dev.clone(),
                    r.onlink,
                )
            })
            .collect();
        assert_eq!(got, want, "routes with protocol {proto}");

        // neighbours and FDB entries on every vxlan device (none without one)
        let mut neigh = BTreeSet::new();
        let mut fdb = BTreeSet::new();
        for l in p.links.iter().filter(|l| l.kind == LinkKind::Vxlan) {
            for n in ns
                .ip_json(&["neigh", "show", "dev", &l.name])
                .as_array()
                .expect("neighbours")
            {
                let permanent = n["state"]
                    .as_array()
                    .is_some_and(|s| s.iter().any(|x| x == "PERMANENT"));
                assert!(permanent, "neighbour not permanent: {n}");
                neigh.insert((l.name.clone(), str_of(&n["dst"]), str_of(&n["lladdr"])));
            }
            let out = ns.sh("bridge", &["-j", "fdb", "show", "dev", &l.name]);
            let entries: Value = serde_json::from_str(&out).expect("fdb JSON");
            for e in entries.as_array().expect("fdb entries") {
                // The kernel's own entry for the device's address has no dst.
                if e.get("dst").is_none() {
                    continue;
                }
                let is_self = e["flags"]
                    .as_array()
                    .is_some_and(|f| f.iter().any(|x| x == "self"));
                assert!(is_self && e["state"] == "permanent", "fdb entry {e}");
                fdb.insert((l.name.clone(), str_of(&e["mac"]), str_of(&e["dst"])));
            }
        }
        let want_neigh: BTreeSet<_> = p
            .neighbours
            .iter()
            .map(|n| (n.dev.clone(), n.ip.to_string(), n.mac.to_string()))
            .collect();
        assert_eq!(neigh, want_neigh, "neighbours");
        let want_fdb: BTreeSet<_> = p
            .fdb
            .iter()
            .map(|f| (f.dev.clone(), f.mac.to_string(), f.dst.to_string()))
            .collect();
        assert_eq!(fdb, want_fdb, "fdb");

        self.assert_firewall();

        // files, under the temp root (the plan was rendered with --root)
        for f in &p.files {
            assert!(
                Path::new(&f.path).starts_with(self.dir.path()),
                "{} is outside the test root",
                f.path
            );
            let got = std::fs::read_to_string(&f.path).expect("planned file written");
            assert_eq!(got, f.content, "{}", f.path);
            let mode = std::os::unix::fs::PermissionsExt::mode(
                &std::fs::metadata(&f.path).expect("stat").permissions(),
            );
            assert_eq!(mode & 0o7777, f.mode, "mode of {}", f.path);
            assert!(
                !Path::new(&format!("{}.podnet-tmp", f.path)).exists(),
                "temporary file left behind"
            );
        }
    }

    fn assert_firewall(&self) {
        let fw = &self.plan.firewall;
        match fw.driver {
            FirewallDriver::Nftables => {
                let t = json(&[
                    "ip",
                    "netns",
                    "exec",
                    &self.node.name,
                    "nft",
                    "-j",
                    "list",
                    "table",
                    "inet",
                    "podnet",
                ]);
                let items = t["nftables"].as_array().expect("nftables list");
                let rules: Vec<&Value> = items.iter().filter_map(|i| i.get("rule")).collect();
                let text = self.firewall_text();
                let masq = rules.iter().filter(|r| r["chain"] == "postrouting").count();
                let fwd = rules.iter().filter(|r| r["chain"] == "forward").count();
                // One return per kube-proxy skip mark, then the masquerade rules.
                assert_eq!(
                    masq,
                    fw.skip_marks().len() + fw.masquerade.len(),
                    "masquerade rules:\n{text}"
                );
                assert_eq!(fwd, 2 * fw.forward_accept.len(), "forward rules:\n{text}");
                for m in &fw.masquerade {
                    assert!(text.contains(&format!("ip saddr {}", m.source)), "{text}");
                    assert!(
                        text.contains(&format!("oifname != \"{}\"", m.not_out_interface)),
                        "{text}"
                    );
                    for d in &m.not_destinations {
                        assert!(text.contains(&d.to_string()), "{d} not excepted:\n{text}");
                    }
                }
            }
            FirewallDriver::Iptables => {
                let s = |table: &str, chain: &str| {
                    self.node.sh("iptables", &["-t", table, "-S", chain])
                };
                let jumps = s("nat", "POSTROUTING")
                    .lines()
                    .filter(|l| l.contains("-j PODNET-POSTRTG"))
                    .count();
                assert_eq!(jumps, 1, "one jump into PODNET-POSTRTG");
                let jumps = s("filter", "FORWARD")
                    .lines()
                    .filter(|l| l.contains("-j PODNET-FWD"))
                    .count();
                assert_eq!(jumps, 1, "one jump into PODNET-FWD");
                let nat = s("nat", "PODNET-POSTRTG");
                let masq = nat.lines().filter(|l| l.contains("-j MASQUERADE")).count();
                assert_eq!(masq, fw.masquerade.len(), "{nat}");
                for m in &fw.masquerade {
                    for d in &m.not_destinations {
                        let r = format!("-A PODNET-POSTRTG -s {} -d {d} -j RETURN", m.source);
                        assert!(nat.lines().any(|l| l == r), "missing `{r}` in\n{nat}");
                    }
                }
                let fwd = s("filter", "PODNET-FWD");
                let accepts = fwd.lines().filter(|l| l.ends_with("-j ACCEPT")).count();
                assert_eq!(accepts, 2 * fw.forward_accept.len(), "{fwd}");
            }
        }
    }
}

fn str_of(v: &Value) -> String {
    v.as_str().unwrap_or_default().to_string()
}

/// The underlay interface the plan uses (every example node's is in a route or the vxlan).
fn underlay_iface(p: &NodePlan) -> String {
    p.links
        .iter()
        .find_map(|l| l.vxlan.as_ref().map(|v| v.dev.clone()))
        .or_else(|| p.routes.iter().find(|r| !r.onlink).map(|r| r.dev.clone()))
        .unwrap_or_else(|| "eth0".to_string())
}

/// Applies the node's shell plan twice: the state after each run is exactly the plan, and
/// the second run changes nothing.
fn applies_exactly_and_idempotently(file: &str, node: &str) -> NodeLab {
    let lab = NodeLab::new(file, node);
    lab.apply();
    lab.assert_matches_plan();
    let first = lab.snapshot();
    lab.apply();
    lab.assert_matches_plan();
    assert_eq!(first, lab.snapshot(), "the second run changed state");
    lab
}

#[test]
fn host_gw_node_hdss7_21() {
    let lab = applies_exactly_and_idempotently("hdss7.podnet", "hdss7-21.host.com");
    assert!(
        lab.plan
            .routes
            .iter()
            .any(|r| r.dst.to_string() == "172.7.22.0/24"
                && r.via.to_string() == "10.4.7.22"
                && r.dev == "eth0"),
        "hdss7-21 routes to hdss7-22's subnet"
    );
}

#[test]
fn vxlan_node_with_flannel_compat() {
    let lab = applies_exactly_and_idempotently("kubeadm-vxlan.podnet", "worker-1");
    assert_eq!(lab.plan.neighbours.len(), 2);
    assert!(
        lab.plan
            .files
            .iter()
            .any(|f| f.path.ends_with("/run/flannel/subnet.env"))
    );
}

#[test]
fn vxlan_direct_routing_node() {
    let lab = applies_exactly_and_idempotently("vxlan-direct.podnet", "a1");
    assert_eq!(lab.plan.routes.iter().filter(|r| !r.onlink).count(), 1);
    assert_eq!(lab.plan.fdb.len(), 2);
}

#[test]
fn vxlan_node_with_iptables() {
    let lab = applies_exactly_and_idempotently("edge.toml", "edge-1");
    assert_eq!(lab.plan.firewall.driver, FirewallDriver::Iptables);
}

#[test]
fn cni_plugins_attach_a_pod_through_the_conflist() {
    let lab = applies_exactly_and_idempotently("hdss7.podnet", "hdss7-21.host.com");
    let file = lab
        .plan
        .files
        .iter()
        .find(|f| f.path.ends_with(".conflist"))
        .expect("conflist in the plan");
    let conflist: Value =
        serde_json::from_str(&std::fs::read_to_string(&file.path).expect("written conflist"))
            .expect("conflist is JSON");
    assert!(
        !conflist.to_string().contains("dataDir"),
        "the plan itself sets no dataDir"
    );
    let data_dir = lab.dir.path().join("cni-data");
    let confs = cni::plugin_confs(&conflist, &data_dir);
    let subnet: Ipv4Net = "172.7.21.0/24".parse().expect("subnet");
    let gateway = "172.7.21.1";

    let pod = Netns::new("plan");
    let container = format!("podnet-test-{}", pod.name);
    let result = cni::add(&lab.node, &confs, &pod, &container);

    let addrs = pod.ip_json(&["addr", "show", "dev", "eth0"]);
    let ips: Vec<std::net::Ipv4Addr> = addrs[0]["addr_info"]
        .as_array()
        .expect("addr_info")
        .iter()
        .filter(|a| a["family"] == "inet")
        .filter_map(|a| a["local"].as_str()?.parse().ok())
        .collect();
    assert!(
        ips.iter()
            .any(|ip| subnet.contains(ip) && ip.to_string() != gateway),
        "pod addresses {ips:?} not in {subnet}; result {result}"
    );
    let routes = pod.ip_json(&["route", "show", "default"]);
    assert_eq!(routes[0]["gateway"], gateway, "pod default route");

    assert!(
        cni::ping(&pod, gateway, 5),
        "the pod cannot ping its gateway {gateway}"
    );
    cni::del(&lab.node, &confs, &pod, &container, &result);
    let left = pod.ip_json(&["link", "show"]);
    assert!(
        left.as_array()
            .is_some_and(|l| l.iter().all(|x| x["ifname"] != "eth0")),
        "DEL removed the pod's interface"
    );
}
