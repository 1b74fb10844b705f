//! The raw batching netlink socket against the real kernel, in a namespace the test makes:
//! nexthop objects and routes that point at them, typed errno outcomes, dumps filtered by
//! protocol, and foreign routes left alone.

mod common;

use std::net::Ipv4Addr;

use common::{NetNs, in_ns};
use podnet::kernel::nexthop::{Nexthop, RTM_GETNEXTHOP};
use podnet::kernel::nl::NlSocket;
use podnet::kernel::route::{RTM_GETROUTE, Route, Target};

const N: u32 = 2_000;

fn gw(i: u32) -> Ipv4Addr {
    Ipv4Addr::from(u32::from(Ipv4Addr::new(10, 9, 0, 10)) + i)
}

#[test]
fn nexthop_routes_round_trip_through_the_kernel() {
    let node = NetNs::new("nl");
    let peer = NetNs::new("nlp");
    common::veth(&node, "eth0", &peer, "eth0");
    node.ip(&["addr", "add", "10.9.0.1/16", "dev", "eth0"]);
    // A foreign route that must survive: same table, another protocol.
    node.ip(&[
        "route",
        "add",
        "192.0.2.0/24",
        "via",
        "10.9.0.2",
        "proto",
        "static",
    ]);
    let links = node.ip_json(&["link", "show", "eth0"]);
    let ifindex = links[0]["ifindex"].as_u64().expect("ifindex") as u32;

    let (created, again, dumped_nh, dumped_routes, dup) = in_ns(&node, move || {
        let mut s = NlSocket::new().expect("socket");
        let nhs: Vec<_> = (1..=N)
            .map(|i| Nexthop {
                id: i,
                gateway: gw(i),
                ifindex,
                onlink: false,
                protocol: 77,
            })
            .collect();
        let routes: Vec<_> = (1..=N)
            .map(|i| Route {
                dst: ipnet::Ipv4Net::new(
                    Ipv4Addr::from((10u32 << 24) | (100 << 16) | (i << 4)),
                    28,
                )
                .expect("net")
                .trunc(),
                target: Target::Nexthop(i),
                protocol: 77,
            })
            .collect();
        let mut reqs: Vec<_> = nhs.iter().map(Nexthop::replace).collect();
        reqs.extend(routes.iter().map(Route::replace));
        let created = s.execute(&reqs).expect("execute");
        let again = s.execute(&reqs).expect("execute again");
        let dumped_nh: Vec<_> = s
            .dump(RTM_GETNEXTHOP, &Nexthop::dump_request())
            .expect("dump nexthops")
            .iter()
            .filter_map(|p| Nexthop::parse(p))
            .filter(|n| n.protocol == 77)
            .collect();
        let dumped_routes: Vec<_> = s
            .dump(RTM_GETROUTE, &Route::dump_request(77))
            .expect("dump routes")
            .iter()
            .filter_map(|p| Route::parse(p, 77))
            .collect();
        let dup = s.execute(&[routes[0].add()]).expect("add existing");
        (created, again, dumped_nh.len(), dumped_routes, dup)
    });
    assert!(
        created.iter().all(Result::is_ok),
        "{:?}",
        created.iter().find(|r| r.is_err())
    );
    assert!(again.iter().all(Result::is_ok), "replace is idempotent");
    assert_eq!(dumped_nh, N as usize);
    assert_eq!(dumped_routes.len(), N as usize);
    assert!(
        dumped_routes
            .iter()
            .all(|r| matches!(r.target, Target::Nexthop(_)))
    );
    assert_eq!(
        dup,
        vec![Err(libc_eexist())],
        "create-exclusive reports EEXIST"
    );

    // The kernel agrees, seen through iproute2.
    let listed = node.ip_json(&["route", "show", "proto", "77"]);
    assert_eq!(listed.as_array().map(Vec::len), Some(N as usize));
    assert!(listed[0]["nhid"].is_u64(), "{}", listed[0]);

    // Delete routes before their nexthops; the foreign route stays.
    let routes = dumped_routes.clone();
    let deleted = in_ns(&node, move || {
        let mut s = NlSocket::new().expect("socket");
        let mut reqs: Vec<_> = routes.iter().map(Route::delete).collect();
        reqs.extend((1..=N).map(Nexthop::delete));
        s.execute(&reqs).expect("delete")
    });
    assert!(deleted.iter().all(Result::is_ok));
    assert_eq!(
        node.ip_json(&["route", "show", "proto", "77"])
            .as_array()
            .map(Vec::len),
        Some(0)
    );
    let foreign = node.ip_json(&["route", "show", "192.0.2.0/24"]);
    assert_eq!(foreign[0]["protocol"], "static", "{foreign}");
}

fn libc_eexist() -> i32 {
    17
}
