//! Race-safe writes against the real kernel, in namespaces the tests make: a foreign route
//! or link planted between the observation and the execution survives and is reported as a
//! conflict-typed failure, and a nexthop is never deleted while a route whose move failed
//! still uses it (new gateways that are unreachable leave the old routes working).

mod common;

use std::collections::BTreeSet;

use common::{NetNs, in_ns};
use podnet::diff::{Diff, Observed, Op, diff};
use podnet::execute::{self, FailureError, Report};
use podnet::kernel::nl::NlSocket;
use podnet::observe::{self, Scope};
use podnet_compiler::plan::NodePlan;

const HOSTGW: &str = "cluster c {
    pod-cidr 10.244.0.0/16
    backend host-gw
}
node n1 { address 192.168.56.11/24; subnet 10.244.1.0/24 }
node n2 { address 192.168.56.12/24; subnet 10.244.2.0/24 }
node n3 { address 192.168.56.13/24; subnet 10.244.3.0/24 }
";

/// A node namespace (and its veth peer) with `eth0` carrying 192.168.56.11/24.
struct Node {
    ns: NetNs,
    _peer: NetNs,
}

fn node(tag: &str) -> Node {
    let ns = NetNs::new(tag);
    let peer = NetNs::new(&format!("{tag}p"));
    common::veth(&ns, "eth0", &peer, "eth0");
    ns.ip(&["addr", "add", "192.168.56.11/24", "dev", "eth0"]);
    Node { ns, _peer: peer }
}

/// n1's plan without what would touch anything outside the namespace (files, sysctls);
/// `routes_only` also drops the bridge and its address.
fn plan(routes_only: bool) -> NodePlan {
    let mut p = common::plan_of(HOSTGW, "n1");
    p.files.clear();
    p.sysctls.clear();
    if routes_only {
        p.links.clear();
        p.addresses.clear();
    }
    p
}

/// The kernel as podnet observes it inside `ns` (journaled: the routes of protocol 77
/// there are the test's own).
fn observe_in(ns: &NetNs) -> Observed {
    let mut o = in_ns(ns, || {
        let mut sock = NlSocket::new().expect("socket");
        observe::observe_kernel(&mut sock, BTreeSet::from([77]), Scope::default()).expect("observe")
    });
    o.journaled = true;
    o
}

/// Executes all of `d` inside `ns`.
fn execute_in(ns: &NetNs, d: &Diff) -> Report {
    let d = d.clone();
    in_ns(ns, move || {
        let mut sock = NlSocket::new().expect("socket");
        execute::execute(&mut sock, &d, &d.ops).expect("execute")
    })
}

/// Converges `ns` on `p` the way apply does (link stage, then the rest), at most 3 rounds.
fn converge(ns: &NetNs, p: &NodePlan) {
    for _ in 0..3 {
        let d = diff(p, &observe_in(ns));
        assert!(d.conflicts.is_empty(), "{}", d.conflict_summary());
        if d.is_empty() {
            return;
        }
        let stage = d.link_stage();
        let ops = if stage > 0 {
            &d.ops[..stage]
        } else {
            &d.ops[..]
        };
        let staged = Diff {
            ops: ops.to_vec(),
            ..d.clone()
        };
        let r = execute_in(ns, &staged);
        assert!(r.failures.is_empty(), "{:?}", r.failures);
    }
    let d = diff(p, &observe_in(ns));
    assert!(d.is_empty(), "not converged:\n{}", d.render());
}

#[test]
fn a_foreign_route_planted_after_the_observation_survives_and_is_a_conflict() {
    let n = node("rr");
    let p = plan(true);
    let d = diff(&p, &observe_in(&n.ns));
    assert!(d.conflicts.is_empty(), "{}", d.conflict_summary());
    // Someone else's route to a planned destination appears before podnet writes.
    n.ns.ip(&[
        "route",
        "add",
        "10.244.2.0/24",
        "via",
        "192.168.56.99",
        "proto",
        "static",
    ]);
    let r = execute_in(&n.ns, &d);
    let shown = n.ns.ip(&["route", "show", "10.244.2.0/24"]);
    assert!(
        shown.contains("via 192.168.56.99") && shown.contains("proto static"),
        "the foreign route was overwritten: {shown}"
    );
    let conflicts: Vec<_> = r.failures.iter().filter(|f| f.is_conflict()).collect();
    assert_eq!(conflicts.len(), 1, "{:?}", r.failures);
    assert!(conflicts[0].op.contains("10.244.2.0/24"), "{:?}", conflicts);
    assert_eq!(conflicts[0].error, FailureError::Exists);
    assert!(!conflicts[0].retryable);
    // The other planned route was created, and the next diff names the foreign route.
    assert!(
        n.ns.ip(&["route", "show", "proto", "77"])
            .contains("10.244.3.0/24")
    );
    let again = diff(&p, &observe_in(&n.ns));
    assert!(
        again
            .conflict_summary()
            .contains("route to 10.244.2.0/24 that is not podnet's"),
        "{}",
        again.conflict_summary()
    );
}

#[test]
fn a_foreign_link_planted_after_the_observation_survives_and_is_reported() {
    let n = node("rl");
    let p = plan(false);
    let d = diff(&p, &observe_in(&n.ns));
    assert!(
        d.ops
            .iter()
            .any(|o| matches!(o, Op::LinkCreate { link, .. } if link.name == "cni0"))
    );
    n.ns.ip(&["link", "add", "cni0", "type", "bridge"]);
    n.ns.ip(&["link", "set", "cni0", "alias", "docker"]);
    let staged = Diff {
        ops: d.ops[..d.link_stage()].to_vec(),
        ..d.clone()
    };
    let r = execute_in(&n.ns, &staged);
    assert_eq!(
        r.existing_links,
        vec!["cni0".to_string()],
        "{:?}",
        r.failures
    );
    assert!(
        r.failures
            .iter()
            .any(|f| f.is_conflict() && f.op.starts_with("+ link cni0")),
        "{:?}",
        r.failures
    );
    let shown = n.ns.ip(&["-d", "link", "show", "cni0"]);
    assert!(
        shown.contains("alias docker") && !shown.contains("alias podnet"),
        "the foreign link was marked: {shown}"
    );
}

#[test]
fn unreachable_new_gateways_leave_the_old_routes_working() {
    let n = node("ru");
    let a = plan(true);
    converge(&n.ns, &a);
    let before = n.ns.ip(&["route", "show", "proto", "77"]);
    assert!(before.contains("10.244.2.0/24 nhid"), "{before}");
    // Plan B moves every route to a gateway on no segment of this node (not onlink): the
    // kernel refuses the new nexthops, so the routes cannot move.
    let mut b = a.clone();
    for (i, r) in b.routes.iter_mut().enumerate() {
        r.via = std::net::Ipv4Addr::new(10, 99, 0, 10 + i as u8);
    }
    let d = diff(&b, &observe_in(&n.ns));
    assert!(d.conflicts.is_empty(), "{}", d.conflict_summary());
    let r = execute_in(&n.ns, &d);
    assert!(
        !r.failures.is_empty(),
        "the unreachable gateways were accepted"
    );
    let after = n.ns.ip(&["route", "show", "proto", "77"]);
    assert_eq!(before, after, "the old routes changed");
    for (dst, via) in [
        ("10.244.2.5", "192.168.56.12"),
        ("10.244.3.5", "192.168.56.13"),
    ] {
        let got = n.ns.ip(&["route", "get", dst]);
        assert!(got.contains(&format!("via {via} dev eth0")), "{dst}: {got}");
    }
    let skipped: Vec<_> = r
        .failures
        .iter()
        .filter(|f| matches!(f.error, FailureError::StillUsed { routes: 1 }))
        .collect();
    assert_eq!(skipped.len(), 2, "{:#?}", r.failures);
    assert!(skipped.iter().all(|f| f.op.starts_with("- nexthop id")));
    // Once the plan is good again, nothing is left over.
    converge(&n.ns, &a);
    assert_eq!(n.ns.ip(&["route", "show", "proto", "77"]), before);
}
