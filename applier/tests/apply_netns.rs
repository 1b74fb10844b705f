//! `podnet apply`, `plan --live`, `status` and `teardown` against the real kernel, each node
//! in a network namespace of its own with an underlay `eth0` (a veth to a peer namespace)
//! carrying the node's address, and its own `--root` directory for files and the journal.

mod common;
#[path = "../../tests/support/examples.rs"]
mod support;

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use common::NetNs;
use podnet_compiler::plan::{NodePlan, Planner};
use podnet_compiler::{FsLoader, UseLock, compile};
use serde_json::Value;

use common::node::{Node, bin};

fn plan_for(file: &Path, node: &str) -> NodePlan {
    let c = compile(&FsLoader, file, UseLock::IfPresent);
    let cluster = c.valid_cluster().expect("valid example");
    Planner::new(cluster).plan_named(node).expect("plan")
}

fn nodes_of(file: &Path) -> Vec<(String, String)> {
    let c = compile(&FsLoader, file, UseLock::IfPresent);
    let cluster = c.valid_cluster().expect("valid example");
    cluster
        .nodes
        .iter()
        .map(|n| (n.name.value.clone(), n.address.value.to_string()))
        .collect()
}

fn s(v: &Value) -> String {
    match v {
        Value::String(s) => s.clone(),
        Value::Null => String::new(),
        other => other.to_string(),
    }
}

/// Asserts that the kernel dumps of `n` show exactly `plan` (links, addresses on them,
/// routes of the plan's protocol with their nexthops, permanent neighbours and FDB
/// entries on the vxlan device, sysctls, files).
fn assert_matches_plan(n: &Node, plan: &NodePlan) {
    let links = n.json("ip", &["-j", "-d", "link", "show"]);
    let by_name: BTreeMap<String, &Value> = links
        .as_array()
        .expect("links")
        .iter()
        .map(|l| (s(&l["ifname"]), l))
        .collect();
    for l in &plan.links {
        let k = by_name
            .get(&l.name)
            .unwrap_or_else(|| panic!("link {} missing", l.name));
        assert_eq!(k["mtu"].as_u64(), Some(u64::from(l.mtu)), "{} mtu", l.name);
        assert_eq!(s(&k["ifalias"]), "podnet", "{} marker", l.name);
        let up = k["flags"]
            .as_array()
            .is_some_and(|f| f.iter().any(|x| x == "UP"));
        assert_eq!(up, l.up, "{} up", l.name);
        if let Some(m) = &l.mac {
            assert_eq!(s(&k["address"]), m.to_string(), "{} mac", l.name);
        }
        if let Some(v) = &l.vxlan {
            let d = &k["linkinfo"]["info_data"];
            assert_eq!(d["id"].as_u64(), Some(u64::from(v.vni)));
            assert_eq!(d["port"].as_u64(), Some(u64::from(v.port)));
            assert_eq!(s(&d["local"]), v.local.to_string());
            assert_eq!(s(&d["link"]), v.dev);
            assert_eq!(d["learning"].as_bool(), Some(v.learning));
        }
        let addrs: BTreeSet<String> = n.json("ip", &["-j", "-4", "addr", "show", "dev", &l.name])
            [0]["addr_info"]
            .as_array()
            .map(|a| {
                a.iter()
                    .map(|x| format!("{}/{}", s(&x["local"]), x["prefixlen"]))
                    .collect()
            })
            .unwrap_or_default();
        let want: BTreeSet<String> = plan
            .addresses
            .iter()
            .filter(|a| a.dev == l.name)
            .map(|a| a.address.to_string())
            .collect();
        assert_eq!(addrs, want, "addresses on {}", l.name);
    }
    let proto = plan.route_protocol.to_string();
    let nexthops: BTreeMap<u64, &Value> = Default::default();
    let nh_dump = n.json("ip", &["-j", "nexthop", "show"]);
    let mut nexthops = nexthops;
    for x in nh_dump.as_array().into_iter().flatten() {
        nexthops.insert(x["id"].as_u64().expect("id"), x);
    }
    let routes = n.json("ip", &["-j", "route", "show", "proto", &proto]);
    let mut got = BTreeSet::new();
    for r in routes.as_array().into_iter().flatten() {
        let nh = r["nhid"].as_u64().and_then(|id| nexthops.get(&id).copied());
        let (via, dev, flags) = match nh {
            Some(nh) => (s(&nh["gateway"]), s(&nh["dev"]), nh["flags"].clone()),
            None => (s(&r["gateway"]), s(&r["dev"]), r["flags"].clone()),
        };
        let onlink = flags
            .as_array()
            .is_some_and(|f| f.iter().any(|x| x == "onlink"));
        got.insert(format!(
            "{} via {via} dev {dev} onlink {onlink}",
            s(&r["dst"])
        ));
    }
    let want: BTreeSet<String> = plan
        .routes
        .iter()
        .map(|r| format!("{} via {} dev {} onlink {}", r.dst, r.via, r.dev, r.onlink))
        .collect();
    assert_eq!(got, want, "routes of protocol {proto}");
    for l in plan.links.iter().filter(|l| l.vxlan.is_some()) {
        let neigh: BTreeSet<String> = n
            .json(
                "ip",
                &["-j", "neigh", "show", "dev", &l.name, "nud", "permanent"],
            )
            .as_array()
            .into_iter()
            .flatten()
            .map(|x| format!("{} {}", s(&x["dst"]), s(&x["lladdr"])))
            .collect();
        let want: BTreeSet<String> = plan
            .neighbours
            .iter()
            .map(|x| format!("{} {}", x.ip, x.mac))
            .collect();
        assert_eq!(neigh, want, "neighbours on {}", l.name);
        let fdb: BTreeSet<String> = n
            .json("bridge", &["-j", "fdb", "show", "dev", &l.name])
            .as_array()
            .into_iter()
            .flatten()
            .filter(|x| x.get("dst").is_some())
            .map(|x| format!("{} {}", s(&x["mac"]), s(&x["dst"])))
            .collect();
        let want: BTreeSet<String> = plan
            .fdb
            .iter()
            .map(|x| format!("{} {}", x.mac, x.dst))
            .collect();
        assert_eq!(fdb, want, "fdb on {}", l.name);
    }
    for x in &plan.sysctls {
        let v = n.ns.sh("sysctl", &["-n", &x.key]);
        assert_eq!(v.trim(), x.value, "sysctl {}", x.key);
    }
    for f in &plan.files {
        // The plan is already rebased under the root.
        let p = Path::new(&f.path);
        assert!(p.starts_with(n.root()), "{}", p.display());
        let content = std::fs::read_to_string(p).unwrap_or_else(|e| panic!("{}: {e}", p.display()));
        assert_eq!(content, f.content, "{}", p.display());
    }
}

/// Everything observable in a namespace, with interface indices and nexthop ids replaced by
/// names and content (so namespaces can be compared), and kernel-chosen MACs left out
/// unless `macs`.
fn snapshot(n: &Node, macs: bool) -> Vec<String> {
    let mut out = Vec::new();
    let links = n.json("ip", &["-j", "-d", "link", "show"]);
    for l in links.as_array().into_iter().flatten() {
        let kind = s(&l["linkinfo"]["info_kind"]);
        // Bridge timers tick; everything else in the link data is configuration.
        let mut data = l["linkinfo"]["info_data"].clone();
        if let Some(m) = data.as_object_mut() {
            m.retain(|k, _| !k.ends_with("_timer"));
        }
        let mac = if macs || kind == "vxlan" {
            s(&l["address"])
        } else {
            String::new()
        };
        out.push(format!(
            "link {} kind {kind} mtu {} flags {} alias {} master {} mac {mac} data {}",
            s(&l["ifname"]),
            l["mtu"],
            l["flags"],
            s(&l["ifalias"]),
            s(&l["master"]),
            data
        ));
    }
    for a in n
        .json("ip", &["-j", "addr", "show"])
        .as_array()
        .into_iter()
        .flatten()
    {
        for x in a["addr_info"].as_array().into_iter().flatten() {
            if !macs && s(&x["scope"]) == "link" && s(&x["family"]) == "inet6" {
                continue; // derived from the kernel-chosen MAC
            }
            out.push(format!(
                "addr {} {} {}/{}",
                s(&a["ifname"]),
                s(&x["family"]),
                s(&x["local"]),
                x["prefixlen"]
            ));
        }
    }
    let mut nh = BTreeMap::new();
    for x in n
        .json("ip", &["-j", "nexthop", "show"])
        .as_array()
        .into_iter()
        .flatten()
    {
        let text = format!(
            "via {} dev {} flags {} proto {}",
            s(&x["gateway"]),
            s(&x["dev"]),
            x["flags"],
            s(&x["protocol"])
        );
        out.push(format!("nexthop {text}"));
        nh.insert(x["id"].as_u64().expect("nexthop id"), text);
    }
    for fam in ["-4", "-6"] {
        for r in n
            .json("ip", &["-j", fam, "route", "show", "table", "all"])
            .as_array()
            .into_iter()
            .flatten()
        {
            if !macs && s(&r["dst"]).starts_with("fe80") {
                continue;
            }
            let target = match r["nhid"].as_u64() {
                Some(id) => nh.get(&id).cloned().unwrap_or_else(|| "dangling".into()),
                None => format!(
                    "via {} dev {} flags {}",
                    s(&r["gateway"]),
                    s(&r["dev"]),
                    r["flags"]
                ),
            };
            out.push(format!(
                "route {fam} {} table {} type {} proto {} scope {} {target} src {}",
                s(&r["dst"]),
                s(&r["table"]),
                s(&r["type"]),
                s(&r["protocol"]),
                s(&r["scope"]),
                s(&r["prefsrc"])
            ));
        }
    }
    for x in n
        .json("ip", &["-j", "neigh", "show", "nud", "permanent"])
        .as_array()
        .into_iter()
        .flatten()
    {
        out.push(format!(
            "neigh {} {} {}",
            s(&x["dev"]),
            s(&x["dst"]),
            s(&x["lladdr"])
        ));
    }
    for x in n
        .json("bridge", &["-j", "fdb", "show"])
        .as_array()
        .into_iter()
        .flatten()
    {
        if x.get("dst").is_some() || macs {
            out.push(format!(
                "fdb {} {} dst {} {}",
                s(&x["ifname"]),
                s(&x["mac"]),
                s(&x["dst"]),
                x["flags"]
            ));
        }
    }
    out.push(format!(
        "sysctl ip_forward {}",
        n.ns.sh("sysctl", &["-n", "net.ipv4.ip_forward"]).trim()
    ));
    out.push(format!(
        "nft {}",
        n.ns.sh("nft", &["-s", "list", "ruleset"])
    ));
    out.sort();
    out
}

/// The lines only in `a` and only in `b`.
fn delta(a: &[String], b: &[String]) -> String {
    let (a, b): (BTreeSet<&String>, BTreeSet<&String>) = (a.iter().collect(), b.iter().collect());
    format!(
        "only before/left:\n  {}\nonly after/right:\n  {}",
        a.difference(&b)
            .map(|s| s.as_str())
            .collect::<Vec<_>>()
            .join("\n  "),
        b.difference(&a)
            .map(|s| s.as_str())
            .collect::<Vec<_>>()
            .join("\n  ")
    )
}

#[test]
fn every_example_node_applies_exactly_its_plan_and_twice_changes_nothing() {
    let mut checked = 0;
    for file in support::examples() {
        let f = file.to_str().expect("utf-8 path");
        for (name, address) in nodes_of(&file) {
            let n = Node::new("ex", &address);
            // Without --node: the node whose address is local.
            let first = n.ok(&["apply", f]);
            assert!(first.contains("converged"), "{first}");
            let plan = plan_for(&file, &name).with_root(n.root.path());
            assert_matches_plan(&n, &plan);
            let before = snapshot(&n, true);
            let second = n.ok(&["apply", f, "--node", &name]);
            assert!(
                second.contains(": 0 added, 0 changed, 0 removed; converged"),
                "second apply of {name} did something:\n{second}"
            );
            assert_eq!(
                before,
                snapshot(&n, true),
                "second apply changed the kernel"
            );
            let live = n.podnet(&["plan", f, "--node", &name, "--live", "--detailed-exitcode"]);
            assert_eq!(
                live.status.code(),
                Some(0),
                "{}",
                String::from_utf8_lossy(&live.stdout)
            );
            if let Some(r) = plan.routes.first() {
                let proto = plan.route_protocol.to_string();
                n.ns.ip(&["route", "del", &r.dst.to_string(), "proto", &proto]);
                let live = n.podnet(&["plan", f, "--node", &name, "--live", "--detailed-exitcode"]);
                let text = String::from_utf8_lossy(&live.stdout);
                assert_eq!(live.status.code(), Some(2), "{text}");
                assert!(text.contains(&format!("+ route {}", r.dst)), "{text}");
                let status = n.ok(&["status"]);
                assert!(
                    status.contains("drift:      1 to add, 0 to change, 0 to remove"),
                    "{status}"
                );
                let repair = n.ok(&["apply", f, "--node", &name]);
                assert!(
                    repair.contains(": 1 added, 0 changed, 0 removed"),
                    "{repair}"
                );
                assert_matches_plan(&n, &plan);
            }
            assert!(n.ok(&["status"]).contains("drift:      none"));
            checked += 1;
        }
    }
    assert!(checked >= 10, "only {checked} example nodes");
}

const CLUSTER: &str = "cluster t {
    pod-cidr 10.244.0.0/16
    backend host-gw
}
node n1 { address 192.168.56.11/24; subnet 10.244.1.0/24 }
node n2 { address 192.168.56.12/24; subnet 10.244.2.0/24 }
node n3 { address 192.168.56.13/24; subnet 10.244.3.0/24 }
";

fn write(dir: &Path, name: &str, text: &str) -> PathBuf {
    let p = dir.join(name);
    std::fs::write(&p, text).expect("write cluster");
    p
}

#[test]
fn transitions_leave_exactly_what_a_fresh_apply_leaves() {
    let dir = tempfile::tempdir().expect("dir");
    let vx = CLUSTER.replace("backend host-gw", "backend vxlan");
    let direct = CLUSTER.replace("backend host-gw", "backend vxlan { direct-routing on }");
    let fewer = vx.replace(
        "node n3 { address 192.168.56.13/24; subnet 10.244.3.0/24 }\n",
        "",
    );
    let variants = [
        ("host-gw", CLUSTER.to_string()),
        ("vxlan", vx.clone()),
        ("direct", direct),
        ("fewer", fewer),
        (
            "len25",
            vx.replace(
                "pod-cidr 10.244.0.0/16",
                "pod-cidr 10.244.0.0/16\n    subnet-len 25",
            )
            .replace("; subnet 10.244.1.0/24", "; subnet 10.244.1.0/25")
            .replace("; subnet 10.244.2.0/24", "; subnet 10.244.2.0/25")
            .replace("; subnet 10.244.3.0/24", "; subnet 10.244.3.0/25"),
        ),
        (
            "mtu",
            vx.replace(
                "pod-cidr 10.244.0.0/16",
                "pod-cidr 10.244.0.0/16\n    mtu 1400",
            ),
        ),
        (
            "vni",
            vx.replace("backend vxlan", "backend vxlan { vni 7 }"),
        ),
        (
            "port",
            vx.replace("backend vxlan", "backend vxlan { port 4789 }"),
        ),
        (
            "masq",
            vx.replace("backend vxlan", "backend vxlan\n    masquerade outbound"),
        ),
    ];
    let files: BTreeMap<&str, PathBuf> = variants
        .iter()
        .map(|(k, t)| (*k, write(dir.path(), &format!("{k}.podnet"), t)))
        .collect();
    let pairs = [
        ("host-gw", "vxlan"),
        ("vxlan", "host-gw"),
        ("vxlan", "direct"),
        ("direct", "host-gw"),
        ("host-gw", "direct"),
        ("vxlan", "fewer"),
        ("fewer", "vxlan"),
        ("vxlan", "len25"),
        ("vxlan", "mtu"),
        ("vxlan", "vni"),
        ("vxlan", "port"),
        ("port", "vxlan"),
        ("vxlan", "masq"),
    ];
    for (a, b) in pairs {
        let (fa, fb) = (
            files[a].to_str().expect("utf-8"),
            files[b].to_str().expect("utf-8"),
        );
        let t = Node::new("tr", "192.168.56.11/24");
        t.ok(&["apply", fa]);
        let out = t.ok(&["apply", fb]);
        assert!(out.contains("converged"), "{a} → {b}: {out}");
        let fresh = Node::new("fr", "192.168.56.11/24");
        fresh.ok(&["apply", fb]);
        let (x, y) = (snapshot(&t, false), snapshot(&fresh, false));
        assert!(
            x == y,
            "{a} → {b} differs from a fresh {b}:\n{}",
            delta(&x, &y)
        );
        let again = t.ok(&["apply", fb]);
        assert!(again.contains(": 0 added, 0 changed, 0 removed"), "{again}");
    }
}

#[test]
fn foreign_state_survives_apply_and_teardown_restores_the_exact_prior_dumps() {
    let dir = tempfile::tempdir().expect("dir");
    let f = write(
        dir.path(),
        "vx.podnet",
        &CLUSTER.replace("backend host-gw", "backend vxlan\n    masquerade outbound"),
    );
    let f = f.to_str().expect("utf-8");
    let n = Node::new("fo", "192.168.56.11/24");
    // Foreign state: a main-table route of another protocol, a bridge with an address and an
    // FDB entry, a neighbour on eth0, a nexthop and a route using it, an nft table.
    n.ns.ip(&[
        "route",
        "add",
        "198.51.100.0/24",
        "via",
        "192.168.56.1",
        "proto",
        "static",
    ]);
    n.ns.ip(&["link", "add", "br-foreign", "type", "bridge"]);
    n.ns.ip(&["link", "set", "br-foreign", "up"]);
    n.ns.ip(&["addr", "add", "10.99.0.1/24", "dev", "br-foreign"]);
    n.ns.sh(
        "bridge",
        &[
            "fdb",
            "add",
            "02:00:00:00:00:77",
            "dev",
            "br-foreign",
            "self",
            "permanent",
        ],
    );
    n.ns.ip(&[
        "neigh",
        "add",
        "192.168.56.99",
        "lladdr",
        "02:00:00:00:00:99",
        "dev",
        "eth0",
        "nud",
        "permanent",
    ]);
    n.ns.ip(&[
        "nexthop",
        "add",
        "id",
        "5",
        "via",
        "192.168.56.1",
        "dev",
        "eth0",
        "proto",
        "static",
    ]);
    n.ns.ip(&[
        "route",
        "add",
        "203.0.113.0/24",
        "nhid",
        "5",
        "proto",
        "static",
    ]);
    n.ns.sh("nft", &["add", "table", "inet", "foreign"]);
    n.ns.sh(
        "nft",
        &[
            "add",
            "chain",
            "inet",
            "foreign",
            "c",
            "{ type filter hook forward priority 10; }",
        ],
    );
    let prior = snapshot(&n, true);
    let foreign: Vec<String> = prior
        .iter()
        .filter(|l| {
            [
                "198.51.100.0",
                "br-foreign",
                "192.168.56.99",
                "203.0.113.0",
                "02:00:00:00:00:77",
                "nexthop via 192.168.56.1",
            ]
            .iter()
            .any(|k| l.contains(k))
        })
        .cloned()
        .collect();
    assert!(foreign.len() >= 6, "{foreign:#?}");
    n.ok(&["apply", f]);
    let applied = snapshot(&n, true);
    for l in &foreign {
        assert!(applied.contains(l), "apply touched foreign state: {l}");
    }
    assert!(
        applied
            .iter()
            .any(|l| l.starts_with("nft") && l.contains("table inet foreign"))
    );
    let out = n.ok(&["teardown"]);
    assert!(out.contains("podnet owns nothing"), "{out}");
    let after = snapshot(&n, true);
    assert!(
        prior == after,
        "teardown did not restore the prior state:\n{}",
        delta(&prior, &after)
    );
    assert!(
        !Path::new(n.root())
            .join("var/lib/podnet/state.json")
            .exists(),
        "journal removed"
    );
    assert!(
        !Path::new(n.root())
            .join("etc/cni/net.d/10-podnet.conflist")
            .exists()
    );
    // A second teardown has nothing to do.
    assert!(
        n.ok(&["teardown"])
            .contains("no journal: 0 added, 0 changed, 0 removed")
    );
}

#[test]
fn kill_9_during_a_5000_node_apply_then_apply_again_converges() {
    use podnet_compiler::generate::{GenBackend, large_cluster, node_address};
    let dir = tempfile::tempdir().expect("dir");
    for (path, text) in large_cluster(5_000, 500, GenBackend::Vxlan) {
        let p = dir.path().join(path);
        std::fs::create_dir_all(p.parent().expect("parent")).expect("mkdir");
        std::fs::write(&p, text).expect("write");
    }
    let file = dir.path().join("cluster.podnet");
    let f = file.to_str().expect("utf-8");
    let address = format!("{}/12", node_address(0));
    let n = Node::new("k9", &address);
    let prior = snapshot(&n, true);
    let mut killed_mid_way = false;
    for attempt in 0..5 {
        let mut child = Command::new("ip")
            .args([
                "netns",
                "exec",
                &n.ns.name,
                &bin(),
                "apply",
                f,
                "--root",
                n.root(),
            ])
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .expect("spawn apply");
        // Wait for the first objects, then kill at a different moment each attempt.
        let deadline = Instant::now() + Duration::from_secs(20);
        while Instant::now() < deadline {
            let out = n.ns.ip(&["link", "show"]);
            if out.contains("flannel.1") {
                break;
            }
            if child.try_wait().expect("wait").is_some() {
                break;
            }
            std::thread::sleep(Duration::from_millis(2));
        }
        std::thread::sleep(Duration::from_millis(20 * attempt));
        let _ = child.kill();
        let status = child.wait().expect("reap");
        let routes = n.ns.ip(&["route", "show", "proto", "77"]).lines().count();
        if !status.success() && routes < 4_999 {
            killed_mid_way = true;
            break;
        }
        n.ok(&["teardown"]);
    }
    assert!(killed_mid_way, "no attempt was killed mid-way");
    let out = n.ok(&["apply", f]);
    assert!(out.contains("converged"), "{out}");
    assert_matches_plan(
        &n,
        &plan_for(&file, "n00000.rack000").with_root(n.root.path()),
    );
    let fresh = Node::new("k9f", &address);
    fresh.ok(&["apply", f]);
    let (x, y) = (snapshot(&n, false), snapshot(&fresh, false));
    assert!(
        x == y,
        "re-apply after kill -9 differs from a fresh apply:\n{}",
        delta(&x, &y)
    );
    n.ok(&["teardown"]);
    let after = snapshot(&n, true);
    assert!(
        prior == after,
        "leaked after teardown:\n{}",
        delta(&prior, &after)
    );
}

#[test]
fn a_plan_json_applies_and_bad_input_changes_nothing() {
    let dir = tempfile::tempdir().expect("dir");
    let f = write(
        dir.path(),
        "vx.podnet",
        &CLUSTER.replace("backend host-gw", "backend vxlan"),
    );
    let f = f.to_str().expect("utf-8");
    let n = Node::new("pj", "192.168.56.12/24");
    let json =
        n.ns.sh(&bin(), &["plan", f, "--node", "n2", "--format", "json"]);
    let plan_file = write(dir.path(), "n2.json", &json);
    let out = n.ok(&["apply", plan_file.to_str().expect("utf-8")]);
    assert!(
        out.contains("node n2: ") && out.contains("converged"),
        "{out}"
    );
    assert_matches_plan(&n, &plan_for(Path::new(f), "n2").with_root(n.root.path()));
    let good = snapshot(&n, true);
    // A cluster file with an error, a plan for another node, a foreign link in the way:
    // each is refused with exit 1 and the applied state stays exactly as it was.
    let broken = write(
        dir.path(),
        "broken.podnet",
        &CLUSTER.replace("pod-cidr", "pod-cdir"),
    );
    let out = n.podnet(&["apply", broken.to_str().expect("utf-8"), "--node", "n2"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("pod-cidr"),
        "hint names the key"
    );
    let out = n.podnet(&["apply", plan_file.to_str().expect("utf-8"), "--node", "n1"]);
    assert_eq!(out.status.code(), Some(1));
    let other = write(
        dir.path(),
        "other.podnet",
        &CLUSTER.replace("cluster t {", "cluster t {\n    cni { bridge br-foreign }"),
    );
    n.ns.ip(&["link", "add", "br-foreign", "type", "bridge"]);
    let out = n.podnet(&["apply", other.to_str().expect("utf-8"), "--node", "n2"]);
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("br-foreign exists and is not podnet's"),
        "{err}"
    );
    n.ns.ip(&["link", "del", "br-foreign"]);
    assert!(
        good == snapshot(&n, true),
        "a refused input changed the node"
    );
}

#[test]
fn foreign_objects_in_the_way_stop_the_apply_and_foreign_nexthop_ids_are_avoided() {
    let dir = tempfile::tempdir().expect("dir");
    let vx = CLUSTER.replace("backend host-gw", "backend vxlan");
    let v1 = write(dir.path(), "v1.podnet", &vx);
    let v7 = write(
        dir.path(),
        "v7.podnet",
        &vx.replace("backend vxlan", "backend vxlan { vni 7 }"),
    );
    let (v1, v7) = (v1.to_str().expect("utf-8"), v7.to_str().expect("utf-8"));

    // A foreign vxlan on the VNI and port a changed plan wants: refused, flannel.1 kept.
    let n = Node::new("iw", "192.168.56.11/24");
    n.ok(&["apply", v1]);
    n.ns.ip(&[
        "link", "add", "vxfor", "type", "vxlan", "id", "7", "dstport", "8472", "dev", "eth0",
    ]);
    let before = snapshot(&n, true);
    let out = n.podnet(&["apply", v7]);
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("vxfor (not podnet's) already uses VNI 7"),
        "{err}"
    );
    assert!(
        before == snapshot(&n, true),
        "a refused apply changed the node"
    );

    // A foreign route to a planned destination: refused, the route stays as it was.
    let m = Node::new("iw2", "192.168.56.11/24");
    m.ns.ip(&[
        "route",
        "add",
        "10.244.2.0/24",
        "via",
        "192.168.56.99",
        "proto",
        "static",
    ]);
    let before = snapshot(&m, true);
    let out = m.podnet(&["apply", v1]);
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("route to 10.244.2.0/24 that is not podnet's"),
        "{err}"
    );
    assert!(
        before == snapshot(&m, true),
        "a refused apply changed the node"
    );

    // Routes of podnet's protocol on a node without a journal may be another tool's:
    // refused until `teardown` (which owns protocol 77 by definition) removes them.
    let u = Node::new("iw4", "192.168.56.11/24");
    u.ns.ip(&[
        "route",
        "add",
        "10.9.9.0/24",
        "via",
        "192.168.56.1",
        "proto",
        "77",
    ]);
    let out = u.podnet(&["apply", v1]);
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("no journal"), "{err}");
    assert!(
        u.ns.ip(&["route", "show", "proto", "77"])
            .contains("10.9.9.0/24")
    );
    u.ok(&["teardown"]);
    u.ok(&["apply", v1]);
    assert!(
        !u.ns
            .ip(&["route", "show", "proto", "77"])
            .contains("10.9.9.0/24")
    );

    // Nexthop ids in podnet's range taken by objects of other kinds (a device-only IPv4
    // nexthop with a route on it, an IPv6 nexthop): podnet picks other ids and never
    // touches them, also not in teardown.
    let k = Node::new("iw3", "192.168.56.11/24");
    let base = podnet::diff::routes::id_range(77).0;
    let (id0, id1) = (base.to_string(), (base + 1).to_string());
    k.ns.ip(&[
        "nexthop", "add", "id", &id0, "dev", "eth0", "proto", "static",
    ]);
    k.ns.ip(&[
        "route",
        "add",
        "198.51.100.0/24",
        "nhid",
        &id0,
        "proto",
        "static",
    ]);
    k.ns.ip(&[
        "-6", "nexthop", "add", "id", &id1, "dev", "eth0", "proto", "static",
    ]);
    let prior = snapshot(&k, true);
    let foreign: Vec<&String> = prior
        .iter()
        .filter(|l| {
            l.contains("198.51.100.0") || (l.starts_with("nexthop") && l.contains("static"))
        })
        .collect();
    assert_eq!(foreign.len(), 3, "{foreign:#?}");
    k.ok(&["apply", v1]);
    let applied = snapshot(&k, true);
    for l in &foreign {
        assert!(applied.contains(l), "apply touched {l}");
    }
    k.ok(&["teardown"]);
    let after = snapshot(&k, true);
    assert!(
        prior == after,
        "teardown did not restore:\n{}",
        delta(&prior, &after)
    );
}

/// Two nodes on one underlay bridge (in a namespace of its own), each applied with podnet,
/// each with a pod attached by the real CNI plugins through podnet's conflist: the pods
/// reach each other across the nodes with every backend.
#[test]
fn pods_on_two_nodes_reach_each_other_with_every_backend() {
    use common::cni;
    let dir = tempfile::tempdir().expect("dir");
    let two = CLUSTER.replace(
        "node n3 { address 192.168.56.13/24; subnet 10.244.3.0/24 }\n",
        "",
    );
    for (name, text) in [
        ("host-gw", two.clone()),
        ("vxlan", two.replace("backend host-gw", "backend vxlan")),
        (
            "direct",
            two.replace("backend host-gw", "backend vxlan { direct-routing on }"),
        ),
    ] {
        let file = write(dir.path(), &format!("{name}.podnet"), &text);
        let f = file.to_str().expect("utf-8");
        let underlay = NetNs::new("ul");
        underlay.ip(&["link", "add", "br0", "type", "bridge"]);
        underlay.ip(&["link", "set", "br0", "up"]);
        let mut nodes = Vec::new();
        for (i, node) in ["n1", "n2"].into_iter().enumerate() {
            let ns = NetNs::new(node);
            let port = format!("p{i}");
            common::veth(&ns, "eth0", &underlay, &port);
            underlay.ip(&["link", "set", &port, "master", "br0"]);
            ns.ip(&[
                "addr",
                "add",
                &format!("192.168.56.{}/24", 11 + i),
                "dev",
                "eth0",
            ]);
            let root = tempfile::tempdir().expect("root");
            let out = ns.exec(
                &bin(),
                &["apply", f, "--root", root.path().to_str().expect("utf-8")],
            );
            assert!(
                out.status.success(),
                "{name}: apply on {node}: {}",
                String::from_utf8_lossy(&out.stderr)
            );
            let conflist: Value = serde_json::from_str(
                &std::fs::read_to_string(root.path().join("etc/cni/net.d/10-podnet.conflist"))
                    .expect("conflist written"),
            )
            .expect("conflist is JSON");
            let confs = cni::plugin_confs(&conflist, &root.path().join("cni-data"));
            let pod = NetNs::new(&format!("{node}p"));
            let container = format!("podnet-test-{}", pod.name);
            let result = cni::add(&ns, &confs, &pod, &container);
            let ip = result["ips"][0]["address"]
                .as_str()
                .and_then(|a| a.split('/').next())
                .expect("pod address")
                .to_string();
            nodes.push((ns, pod, root, confs, container, result, ip));
        }
        let (a, b) = (&nodes[0], &nodes[1]);
        assert!(
            cni::ping(&a.1, &b.6, 5),
            "{name}: pod {} on n1 cannot reach pod {} on n2",
            a.6,
            b.6
        );
        assert!(cni::ping(&b.1, &a.6, 5), "{name}: n2 → n1");
        for (ns, pod, _root, confs, container, result, _) in &nodes {
            cni::del(ns, confs, pod, container, result);
        }
    }
}

/// The output a person reads, against the real kernel: a missing firewall table is `+`;
/// host-gw → vxlan warns (before the change lines) that the pods on the bridge — veths
/// enslaved to it here — keep MTU 1500, with their count; routes show old → new gateway
/// and the node; a node leaving the file is still named; `--format json` carries the same
/// changes; teardown names the sysctl with its value now and after, lists the firewall
/// table it removed, and counts as many objects as the applies added.
#[test]
fn live_diffs_show_old_and_new_values_nodes_pod_warnings_and_a_symmetric_teardown() {
    let n = Node::new("pnlive", "192.168.56.11/24");
    n.ns.sh("sysctl", &["-qw", "net.ipv4.ip_forward=0"]);
    let dir = tempfile::tempdir().expect("dir");
    let f = write(dir.path(), "c.podnet", CLUSTER);
    let f = f.to_str().expect("utf-8");
    let first = n.ok(&["apply", f, "--node", "n1"]);
    assert!(
        first.contains("~ sysctl net.ipv4.ip_forward: 0 → 1\n"),
        "{first}"
    );
    assert!(first.contains("+ firewall table inet podnet\n"), "{first}");
    assert!(
        first.contains("+ route 10.244.2.0/24 via 192.168.56.12 dev eth0 (node n2)\n"),
        "{first}"
    );
    assert!(!first.contains("nhid"), "ids only with -v: {first}");
    for i in 0..3 {
        let (a, b) = (format!("pv{i}"), format!("pw{i}"));
        n.ns.ip(&["link", "add", &a, "type", "veth", "peer", "name", &b]);
        n.ns.ip(&["link", "set", &a, "master", "cni0"]);
    }
    let vx = write(
        dir.path(),
        "c.podnet",
        &CLUSTER.replace("backend host-gw", "backend vxlan"),
    );
    let vx = vx.to_str().expect("utf-8");
    let live = n.podnet(&["plan", vx, "--node", "n1", "--live", "--detailed-exitcode"]);
    let text = String::from_utf8_lossy(&live.stdout).into_owned();
    assert_eq!(live.status.code(), Some(2), "{text}");
    let warning = text
        .lines()
        .position(|l| l.starts_with("warning: pod MTU 1500 → 1450 on cni0"))
        .unwrap_or_else(|| panic!("no pod MTU warning:\n{text}"));
    let first_change = text
        .lines()
        .position(|l| l.starts_with(['+', '~', '-']))
        .expect("changes");
    assert!(warning < first_change, "warnings come first:\n{text}");
    assert!(
        text.contains("3 pods are on the bridge now (3 veths)"),
        "{text}"
    );
    assert!(text.contains("~ link cni0: mtu 1500 → 1450\n"), "{text}");
    assert!(
        text.contains(
            "~ route 10.244.2.0/24 (node n2): via 192.168.56.12 dev eth0 → via 10.244.2.0 dev flannel.1 onlink\n"
        ),
        "{text}"
    );
    assert!(
        text.contains("-      \"mtu\": 1500,"),
        "conflist diff: {text}"
    );
    let json = n.podnet(&["plan", vx, "--node", "n1", "--live", "--format", "json"]);
    let doc: Value = serde_json::from_slice(&json.stdout).expect("JSON diff");
    assert_eq!(doc["pending"], true);
    assert_eq!(doc["warnings"][0]["pods"], 3, "{doc:#}");
    let cni0 = doc["changes"]
        .as_array()
        .expect("changes")
        .iter()
        .find(|c| c["kind"] == "link" && c["id"] == "cni0")
        .expect("cni0 change");
    assert_eq!(
        (
            cni0["before"]["mtu"].as_u64(),
            cni0["after"]["mtu"].as_u64()
        ),
        (Some(1500), Some(1450))
    );
    let applied = n.ok(&["apply", vx, "--node", "n1"]);
    // Said once, before anything was written (the engine announces the diff after its
    // checks), so it precedes every change line.
    let lines: Vec<&str> = applied.lines().collect();
    let warned: Vec<usize> = (0..lines.len())
        .filter(|&i| lines[i].starts_with("warning: pod MTU 1500 → 1450"))
        .collect();
    assert_eq!(warned.len(), 1, "{applied}");
    let first_change = lines
        .iter()
        .position(|l| l.starts_with(['+', '~', '-']))
        .expect("changes");
    assert!(warned[0] < first_change, "{applied}");
    // n3 leaves the file: its objects are still named after it.
    let fewer = write(
        dir.path(),
        "c.podnet",
        &CLUSTER.replace("backend host-gw", "backend vxlan").replace(
            "node n3 { address 192.168.56.13/24; subnet 10.244.3.0/24 }\n",
            "",
        ),
    );
    let left = n.ok(&["apply", fewer.to_str().expect("utf-8"), "--node", "n1"]);
    assert!(
        left.contains(
            "- route 10.244.3.0/24 via 10.244.3.0 dev flannel.1 onlink proto 77 (node n3)\n"
        ),
        "{left}"
    );
    // What the applies added, net of what they removed, is what podnet owns: teardown
    // removes exactly that many objects.
    let owned: i64 = [&first, &applied, &left]
        .iter()
        .map(|o| count(o, " added") - count(o, " removed"))
        .sum();
    let down = n.ok(&["teardown"]);
    assert!(
        down.contains("~ sysctl net.ipv4.ip_forward: 1 → 0\n"),
        "{down}"
    );
    assert!(down.contains("- firewall table inet podnet\n"), "{down}");
    assert!(
        down.contains("- link flannel.1 vxlan with its 1 address, 1 neighbour, 1 fdb entry\n"),
        "{down}"
    );
    assert!(down.contains("podnet owns nothing on this node"), "{down}");
    assert_eq!(
        count(&down, " removed"),
        owned,
        "{first}{applied}{left}{down}"
    );
    assert_eq!(
        n.ns.sh("sysctl", &["-n", "net.ipv4.ip_forward"]).trim(),
        "0"
    );
}

/// The number before `what` (` added`, ` removed`) on the summary line (`node …: …`).
fn count(output: &str, what: &str) -> i64 {
    let line = output
        .lines()
        .rfind(|l| l.starts_with("node "))
        .unwrap_or_else(|| panic!("no summary line:\n{output}"));
    let at = line
        .find(what)
        .unwrap_or_else(|| panic!("no `{what}` in {line}"));
    line[..at]
        .rsplit([' ', ':', ','])
        .find(|w| !w.is_empty())
        .and_then(|w| w.parse().ok())
        .unwrap_or_else(|| panic!("no count before `{what}` in {line}"))
}

/// A wrong underlay interface name: the error names the interface that has the node's
/// address (looked up in the target namespace), and nothing is changed.
#[test]
fn a_missing_underlay_interface_names_the_one_with_the_nodes_address() {
    let n = Node::new("pnifc", "192.168.56.11/24");
    let dir = tempfile::tempdir().expect("dir");
    let f = write(
        dir.path(),
        "c.podnet",
        &CLUSTER.replace("backend host-gw", "backend host-gw\n    interface ens3"),
    );
    let out = n.podnet(&["apply", f.to_str().expect("utf-8"), "--node", "n1"]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert!(
        err.contains("its underlay interface ens3 does not exist here; help: the node's address 192.168.56.11 is on eth0: set `interface eth0` for node n1"),
        "{err}"
    );
    assert!(
        !n.ns.ip(&["link", "show"]).contains("cni0"),
        "nothing created"
    );
}
