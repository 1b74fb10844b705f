//! Golden tests of the pure node diff as {desired, observed, operations} triples: the desired
//! plan comes from a cluster source, the observed state from a fresh machine, a planted
//! foreign object or a previous plan converged in a simulated kernel, and the operations'
//! `+ ~ -` rendering must equal `tests/data/diff/<case>.ops` (`PODNET_BLESS=1` rewrites).
//! Every case also checks convergence: after the operations, the diff is empty.

use std::collections::BTreeMap;
use std::net::Ipv4Addr;
use std::path::{Path, PathBuf};

use podnet::diff::routes::{RouteOp, RouteStyle};
use podnet::diff::{FileState, Observed, Op, diff};
use podnet::kernel::link::{KernelLinkKind, Link, MARKER, Vxlan};
use podnet::kernel::neigh::{Fdb, Neigh};
use podnet::kernel::nexthop::Nexthop;
use podnet::kernel::route::{Route, Target};
use podnet_compiler::plan::{NodePlan, Planner};
use podnet_compiler::{MemLoader, UseLock, compile_text};

fn data_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../tests/data/diff")
}

const HOSTGW: &str = "cluster c {
    pod-cidr 10.244.0.0/16
    backend host-gw
}
node n1 { address 192.168.56.11/24; subnet 10.244.1.0/24 }
node n2 { address 192.168.56.12/24; subnet 10.244.2.0/24 }
node n3 { address 192.168.56.13/24; subnet 10.244.3.0/24 }
";

fn plan_of(src: &str, node: &str) -> NodePlan {
    let c = compile_text(
        &MemLoader::default(),
        Path::new("c.podnet"),
        src.to_string(),
        UseLock::No,
    );
    let cluster = c
        .valid_cluster()
        .unwrap_or_else(|| panic!("valid cluster: {:?}", c.diagnostics));
    Planner::new(cluster).plan_named(node).expect("plan")
}

fn vxlan(src: &str) -> String {
    src.replace("backend host-gw", "backend vxlan")
}

/// A machine with loopback and its underlay eth0, nothing of podnet's.
fn machine() -> Observed {
    let mut o = Observed::default();
    for (index, name) in [(1, "lo"), (2, "eth0")] {
        o.links.push(Link {
            index,
            name: name.to_string(),
            kind: None,
            mtu: 1500,
            mac: Some([2, 0, 0, 0, 0, index as u8]),
            up: true,
            alias: None,
            master: None,
            vxlan: None,
        });
    }
    o.protocols.insert(77);
    o.journaled = true;
    o.sysctls
        .insert("net.ipv4.ip_forward".to_string(), Some("0".to_string()));
    o
}

/// Applies operations the way the kernel would (link deletion takes everything on it).
fn sim(mut o: Observed, ops: &[Op]) -> Observed {
    for op in ops {
        match op {
            Op::Sysctl { key, value, .. } => {
                o.sysctls.insert(key.clone(), Some(value.clone()));
            }
            Op::LinkCreate { link, underlay } => {
                assert!(!o.links.iter().any(|l| l.name == link.name), "EEXIST");
                let index = o.links.iter().map(|l| l.index).max().unwrap_or(0) + 1;
                o.links.push(Link {
                    index,
                    name: link.name.clone(),
                    kind: Some(KernelLinkKind::from(link.kind)),
                    mtu: link.mtu,
                    mac: Some(link.mac.map_or([2, 0xaa, 0, 0, 0, index as u8], |m| m.0)),
                    up: link.up,
                    alias: Some(MARKER.to_string()),
                    master: None,
                    vxlan: link.vxlan.as_ref().map(|v| Vxlan {
                        vni: v.vni,
                        port: v.port,
                        local: Some(v.local),
                        link: *underlay,
                        learning: v.learning,
                    }),
                });
                o.owned.insert(index);
            }
            Op::LinkChange { index, change, .. } => {
                let l = o
                    .links
                    .iter_mut()
                    .find(|l| l.index == *index)
                    .expect("link to change exists");
                if let Some(a) = &change.alias {
                    l.alias = Some(a.clone());
                }
                if let Some(m) = change.mtu {
                    l.mtu = m;
                }
                if let Some(m) = change.mac {
                    l.mac = Some(m);
                }
                if let Some(u) = change.up {
                    l.up = u;
                }
            }
            Op::LinkDelete { index, .. } => {
                let i = *index;
                o.links.retain(|l| l.index != i);
                o.owned.remove(&i);
                o.addrs.retain(|a| a.index != i);
                o.neighs.retain(|n| n.index != i);
                o.fdb.retain(|f| f.index != i);
                let gone: Vec<u32> = o
                    .nexthops
                    .iter()
                    .filter(|n| n.ifindex == i)
                    .map(|n| n.id)
                    .collect();
                o.nexthops.retain(|n| n.ifindex != i);
                o.routes.retain(|r| match r.target {
                    Target::Nexthop(id) => !gone.contains(&id),
                    Target::Gateway { ifindex, .. } => ifindex != i,
                });
            }
            Op::AddrReplace(a) => {
                if !o.addrs.contains(a) {
                    o.addrs.push(a.clone());
                }
            }
            Op::AddrDelete(a) => o.addrs.retain(|x| x != a),
            Op::NeighReplace(n) => {
                o.neighs.retain(|x| (x.index, x.ip) != (n.index, n.ip));
                o.neighs.push(n.clone());
            }
            Op::NeighDelete(n) => o.neighs.retain(|x| (x.index, x.ip) != (n.index, n.ip)),
            Op::FdbReplace(f) => {
                o.fdb.retain(|x| (x.index, x.mac) != (f.index, f.mac));
                o.fdb.push(f.clone());
            }
            Op::FdbDelete(f) => o.fdb.retain(|x| x != f),
            Op::Route(RouteOp::NexthopAdd(n)) => {
                assert!(
                    n.ifindex < podnet::diff::PLACEHOLDER,
                    "placeholder executed"
                );
                o.nexthops.retain(|x| x.id != n.id);
                o.nexthops.push(n.clone());
            }
            Op::Route(RouteOp::RouteAdd(r)) => {
                assert!(
                    !o.routes.iter().any(|x| x.dst == r.dst) && !o.foreign_routes.contains(&r.dst),
                    "EEXIST: route to {} exists",
                    r.dst
                );
                o.routes.push(r.clone());
            }
            Op::Route(RouteOp::RouteReplace { route: r, was }) => {
                assert!(
                    o.routes.iter().any(|x| x.dst == r.dst && x.target == *was),
                    "replace of {} whose old target is not there",
                    r.dst
                );
                // The kernel replaces whatever route has that destination (any protocol).
                o.routes.retain(|x| x.dst != r.dst);
                o.routes.push(r.clone());
            }
            Op::Route(RouteOp::RouteDelete(r)) => o.routes.retain(|x| x != r),
            Op::Route(RouteOp::NexthopDelete(id)) => {
                assert!(
                    !o.routes.iter().any(|r| r.target == Target::Nexthop(*id)),
                    "nexthop {id} deleted while a route uses it"
                );
                o.nexthops.retain(|x| x.id != *id);
            }
            Op::FileWrite(f) => {
                o.files.insert(
                    f.path.clone(),
                    Some(FileState {
                        mode: f.mode,
                        content: f.content.as_bytes().to_vec(),
                    }),
                );
            }
            Op::FileRestore { path, state } => {
                o.files.insert(path.clone(), Some(state.clone()));
            }
            Op::FileRemove(p) => {
                o.files.insert(p.clone(), None);
            }
        }
    }
    o
}

/// What `apply` does: link operations, a fresh diff with real indices, the rest.
fn converge(plan: &NodePlan, o: Observed) -> Observed {
    let d = diff(plan, &o);
    assert!(d.conflicts.is_empty(), "{:?}", d.conflicts);
    let o = match d.link_stage() {
        0 => o,
        n => sim(o, &d.ops[..n]),
    };
    let d = diff(plan, &o);
    let o = sim(o, &d.ops);
    let again = diff(plan, &o);
    assert!(again.is_empty(), "not converged:\n{}", again.render());
    o
}

/// The observable state with indices and nexthop ids replaced by names and content, so a
/// transition can be compared with a fresh apply.
fn normal(o: &Observed) -> Vec<String> {
    let name = |i: u32| {
        o.links
            .iter()
            .find(|l| l.index == i)
            .map_or(format!("if{i}"), |l| l.name.clone())
    };
    let nh: BTreeMap<u32, String> = o
        .nexthops
        .iter()
        .map(|n| {
            (
                n.id,
                format!(
                    "via {} dev {} onlink {}",
                    n.gateway,
                    name(n.ifindex),
                    n.onlink
                ),
            )
        })
        .collect();
    let mut v = Vec::new();
    for l in &o.links {
        v.push(format!(
            "link {} {:?} mtu {} up {} alias {:?} vxlan {:?}",
            l.name,
            l.kind,
            l.mtu,
            l.up,
            l.alias,
            l.vxlan
                .as_ref()
                .map(|x| (x.vni, x.port, x.local, x.link.map(name), x.learning))
        ));
    }
    v.extend(
        o.addrs
            .iter()
            .map(|a| format!("addr {} {}", name(a.index), a.address)),
    );
    v.extend(o.routes.iter().map(|r| match &r.target {
        Target::Nexthop(id) => format!("route {} {} proto {}", r.dst, nh[id], r.protocol),
        Target::Gateway {
            via,
            ifindex,
            onlink,
        } => format!(
            "route {} via {via} dev {} onlink {onlink} proto {}",
            r.dst,
            name(*ifindex),
            r.protocol
        ),
    }));
    v.extend(nh.values().map(|n| format!("nexthop {n}")));
    v.extend(o.neighs.iter().map(|n| {
        format!(
            "neigh {} {} {:?} {}",
            name(n.index),
            n.ip,
            n.mac,
            n.permanent
        )
    }));
    v.extend(
        o.fdb
            .iter()
            .map(|f| format!("fdb {} {:?} {:?}", name(f.index), f.mac, f.dst)),
    );
    v.extend(o.sysctls.iter().map(|(k, x)| format!("sysctl {k} {x:?}")));
    v.extend(o.files.iter().map(|(p, s)| {
        format!(
            "file {p} {:?}",
            s.as_ref().map(|s| (s.mode, s.content.len()))
        )
    }));
    v.sort();
    v
}

/// Compares `diff(plan, observed)` with the golden file `case.ops`.
fn golden(case: &str, plan: &NodePlan, observed: &Observed) {
    let d = diff(plan, observed);
    for op in &d.ops {
        assert!(d.line(op).starts_with(d.sign(op)), "sign of {}", d.line(op));
    }
    let mut got = d.render();
    for c in &d.conflicts {
        got.push_str(&format!("conflict: {c}\n"));
    }
    let path = data_dir().join(format!("{case}.ops"));
    if std::env::var_os("PODNET_BLESS").is_some() {
        std::fs::create_dir_all(data_dir()).expect("mkdir");
        std::fs::write(&path, &got).expect("bless");
    }
    let want = std::fs::read_to_string(&path)
        .unwrap_or_else(|e| panic!("{}: {e} (run with PODNET_BLESS=1)", path.display()));
    assert_eq!(got, want, "case {case}");
}

/// apply(A) then apply(B) must leave exactly what a fresh apply(B) leaves.
fn transition(case: &str, a: &NodePlan, b: &NodePlan) {
    let after_a = converge(a, machine());
    golden(case, b, &after_a);
    let via_a = converge(b, after_a);
    let fresh = converge(b, machine());
    assert_eq!(normal(&via_a), normal(&fresh), "case {case}");
}

#[test]
fn fresh_host_gw_node() {
    let p = plan_of(HOSTGW, "n1");
    golden("fresh-host-gw", &p, &machine());
    let o = converge(&p, machine());
    assert!(diff(&p, &o).is_empty());
}

#[test]
fn fresh_vxlan_node() {
    golden("fresh-vxlan", &plan_of(&vxlan(HOSTGW), "n1"), &machine());
}

#[test]
fn host_gw_to_vxlan_and_back() {
    let h = plan_of(HOSTGW, "n1");
    let v = plan_of(&vxlan(HOSTGW), "n1");
    transition("host-gw-to-vxlan", &h, &v);
    transition("vxlan-to-host-gw", &v, &h);
}

#[test]
fn vxlan_to_direct_routing() {
    let v = plan_of(&vxlan(HOSTGW), "n1");
    let dr = plan_of(
        &HOSTGW.replace("backend host-gw", "backend vxlan { direct-routing on }"),
        "n1",
    );
    transition("vxlan-to-direct-routing", &v, &dr);
}

#[test]
fn node_leaves_and_joins() {
    let all = vxlan(HOSTGW);
    let fewer = all.replace(
        "node n3 { address 192.168.56.13/24; subnet 10.244.3.0/24 }\n",
        "",
    );
    transition("node-leaves", &plan_of(&all, "n1"), &plan_of(&fewer, "n1"));
    transition("node-joins", &plan_of(&fewer, "n1"), &plan_of(&all, "n1"));
}

#[test]
fn vni_and_port_changes_recreate_the_vxlan() {
    let v = vxlan(HOSTGW);
    let vni = v.replace("backend vxlan", "backend vxlan { vni 7 }");
    let port = v.replace("backend vxlan", "backend vxlan { port 4789 }");
    transition("vni-change", &plan_of(&v, "n1"), &plan_of(&vni, "n1"));
    transition("port-change", &plan_of(&v, "n1"), &plan_of(&port, "n1"));
}

#[test]
fn mtu_and_subnet_changes_happen_in_place() {
    let v = vxlan(HOSTGW);
    let mtu = v.replace(
        "pod-cidr 10.244.0.0/16",
        "pod-cidr 10.244.0.0/16\n    mtu 1400",
    );
    transition("mtu-change", &plan_of(&v, "n1"), &plan_of(&mtu, "n1"));
    let h = HOSTGW.to_string();
    let moved = h.replace("subnet 10.244.1.0/24", "subnet 10.244.9.0/24");
    transition("subnet-change", &plan_of(&h, "n1"), &plan_of(&moved, "n1"));
}

#[test]
fn drift_is_repaired_with_work_proportional_to_it() {
    let p = plan_of(&vxlan(HOSTGW), "n1");
    let mut o = converge(&p, machine());
    // A route deleted by hand, a neighbour with a wrong MAC, an FDB entry of an old MAC,
    // the bridge's MTU changed.
    o.routes.remove(0);
    o.neighs[0].mac = Some([2, 0, 0, 0, 0, 0x99]);
    let vx = o.fdb[0].index;
    o.fdb.push(Fdb {
        index: vx,
        mac: [2, 0, 0, 0, 0, 0x98],
        dst: Some(Ipv4Addr::new(192, 168, 56, 99)),
        permanent: true,
    });
    let br = o
        .links
        .iter_mut()
        .find(|l| l.name == "cni0")
        .expect("bridge");
    br.mtu = 1500;
    golden("drift", &p, &o);
    converge(&p, o);
}

#[test]
fn foreign_objects_are_left_alone_or_block() {
    let p = plan_of(&vxlan(HOSTGW), "n1");
    let mut o = machine();
    // A foreign bridge, a neighbour on eth0, a route and a nexthop of other protocols.
    o.links.push(Link {
        index: 9,
        name: "br-foreign".into(),
        kind: Some(KernelLinkKind::Bridge),
        mtu: 1500,
        mac: None,
        up: true,
        alias: None,
        master: None,
        vxlan: None,
    });
    o.neighs.push(Neigh {
        index: 2,
        ip: Ipv4Addr::new(192, 168, 56, 1),
        mac: Some([2, 0, 0, 0, 0, 1]),
        permanent: true,
    });
    o.nexthops.push(Nexthop {
        id: 1,
        gateway: Ipv4Addr::new(192, 168, 56, 1),
        ifindex: 2,
        onlink: false,
        protocol: 4,
    });
    o.routes.push(Route {
        dst: "198.51.100.0/24".parse().expect("net"),
        target: Target::Nexthop(1),
        protocol: 4,
    });
    golden("foreign-untouched", &p, &o);
    let after = converge(&p, o.clone());
    assert!(after.links.iter().any(|l| l.name == "br-foreign"));
    assert!(after.nexthops.iter().any(|n| n.protocol == 4));
    assert!(after.routes.iter().any(|r| r.protocol == 4));
    // A foreign link with a planned name blocks the apply before anything changes.
    let mut blocked = machine();
    blocked.links.push(Link {
        index: 5,
        name: "cni0".into(),
        kind: Some(KernelLinkKind::Bridge),
        mtu: 1500,
        mac: None,
        up: true,
        alias: Some("docker".into()),
        master: None,
        vxlan: None,
    });
    golden("foreign-link-conflict", &p, &blocked);
}

#[test]
fn teardown_is_the_diff_against_nothing() {
    let p = plan_of(&vxlan(HOSTGW), "n1");
    let o = converge(&p, machine());
    let nothing = podnet::apply::empty_plan(77);
    golden("teardown", &nothing, &o);
    let d = diff(&nothing, &o);
    let after = sim(o, &d.ops);
    assert!(after.owned.is_empty());
    assert!(after.routes.is_empty() && after.nexthops.is_empty());
}

#[test]
fn old_protocol_and_plain_gateways() {
    let p = plan_of(HOSTGW, "n1");
    let mut old = p.clone();
    old.route_protocol = 78;
    let mut o = converge(&old, machine());
    o.protocols.insert(78);
    golden("protocol-change", &p, &o);
    let o = converge(&p, o);
    assert!(o.routes.iter().all(|r| r.protocol == 77));
    let mut plain = machine();
    plain.style = RouteStyle::PlainGateways;
    golden("plain-gateways", &p, &plain);
    converge(&p, plain);
}

#[test]
fn foreign_objects_in_the_way_are_conflicts() {
    let p = plan_of(&vxlan(HOSTGW), "n1");
    // A foreign route to a planned destination, a foreign vxlan on the planned VNI and port,
    // nexthop ids podnet would pick taken by objects it cannot parse (IPv6, groups).
    let mut o = machine();
    o.foreign_routes
        .insert("10.244.2.0/24".parse().expect("net"));
    o.links.push(Link {
        index: 7,
        name: "vx-other".into(),
        kind: Some(KernelLinkKind::Vxlan),
        mtu: 1450,
        mac: None,
        up: true,
        alias: None,
        master: None,
        vxlan: Some(Vxlan {
            vni: 1,
            port: 8472,
            local: None,
            link: None,
            learning: true,
        }),
    });
    golden("foreign-in-the-way", &p, &o);
    let mut ids = machine();
    let base = podnet::diff::routes::id_range(77).0;
    ids.other_nexthop_ids = vec![base, base + 1];
    let d = diff(&p, &ids);
    assert!(d.conflicts.is_empty());
    let converged = converge(&p, ids);
    assert!(converged.nexthops.iter().all(|n| n.id > base + 1));
    // Routes of podnet's protocol on a node without a journal may be another tool's.
    let mut unjournaled = converge(&p, machine());
    unjournaled.journaled = false;
    let d = diff(&p, &unjournaled);
    assert_eq!(d.conflicts.len(), 1, "{:?}", d.conflicts);
    assert!(
        d.conflicts[0].to_string().contains("no journal"),
        "{:?}",
        d.conflicts
    );
}

#[test]
fn a_file_leaving_the_plan_gets_its_prior_content_back() {
    let p = plan_of(HOSTGW, "n1");
    let conflist = p.files[0].path.clone();
    let mut o = machine();
    let prior = FileState {
        mode: 0o600,
        content: b"operator's own \xe9 conflist".to_vec(),
    };
    o.files.insert(conflist.clone(), Some(prior.clone()));
    let mut o = converge(&p, o);
    o.file_priors.insert(conflist.clone(), Some(prior.clone()));
    let mut moved = p.clone();
    moved.files[0].path = "/etc/cni/net.d/20-other.conflist".into();
    golden("file-leaves-plan", &moved, &o);
    let o = converge(&moved, o);
    assert_eq!(o.files.get(&conflist), Some(&Some(prior)));
}
