//! The link, address, neighbour and FDB codecs against the real kernel, in namespaces the
//! tests make: podnet's bridge and vxlan created in one batch and marked by a change by name,
//! EEXIST and in-place changes, idempotent address replaces, permanent neighbours and vxlan
//! FDB entries whose dumps are filtered to one device, and foreign state left alone.

mod common;

use std::net::Ipv4Addr;

use common::{NetNs, in_ns};
use podnet::kernel::addr::{Addr, RTM_GETADDR};
use podnet::kernel::link::{
    self, KernelLinkKind, Link, LinkChange, LinkRef, MARKER, RTM_GETLINK, Vxlan, create_bridge,
    create_vxlan,
};
use podnet::kernel::neigh::{Fdb, Neigh, RTM_GETNEIGH};
use podnet::kernel::nl::{NlSocket, Outcome, Request};
use serde_json::Value;

const VXLAN_MAC: [u8; 6] = [0xde, 0xf4, 0xb4, 0x46, 0xed, 0x5c];
const PEER_MAC: [u8; 6] = [0x8a, 0x6c, 0xa5, 0x9c, 0x6c, 0x3e];
const UNDERLAY: Ipv4Addr = Ipv4Addr::new(192, 168, 56, 11);

/// A node namespace (and its veth peer) with `eth0` carrying 192.168.56.11/24.
struct Node {
    ns: NetNs,
    _peer: NetNs,
    eth0: u32,
}

fn node(tag: &str) -> Node {
    let ns = NetNs::new(tag);
    let peer = NetNs::new(&format!("{tag}p"));
    common::veth(&ns, "eth0", &peer, "eth0");
    ns.ip(&["addr", "add", "192.168.56.11/24", "dev", "eth0"]);
    let eth0 = index_of(&ns, "eth0");
    Node {
        ns,
        _peer: peer,
        eth0,
    }
}

fn index_of(ns: &NetNs, name: &str) -> u32 {
    let v = ns.ip_json(&["link", "show", name]);
    u32::try_from(v[0]["ifindex"].as_u64().expect("ifindex")).expect("u32")
}

fn vxlan(eth0: u32) -> Vxlan {
    Vxlan {
        vni: 1,
        port: 8472,
        local: Some(UNDERLAY),
        link: Some(eth0),
        learning: false,
    }
}

fn mark_up(name: &str) -> Request {
    link::change(
        &LinkRef::Name(name.into()),
        &LinkChange {
            alias: Some(MARKER.into()),
            up: Some(true),
            ..LinkChange::default()
        },
    )
}

/// podnet's two links: create + mark/up each, all in one batch.
fn create_batch(eth0: u32) -> Vec<Request> {
    vec![
        create_bridge("cni0", 1450),
        mark_up("cni0"),
        create_vxlan("flannel.1", 1450, VXLAN_MAC, &vxlan(eth0)),
        mark_up("flannel.1"),
    ]
}

fn execute(ns: &NetNs, reqs: Vec<Request>) -> Vec<Outcome> {
    in_ns(ns, move || {
        NlSocket::new()
            .expect("socket")
            .execute(&reqs)
            .expect("execute")
    })
}

fn dump<T: Send + 'static>(
    ns: &NetNs,
    kind: u16,
    req: Vec<u8>,
    parse: fn(&[u8]) -> Option<T>,
) -> Vec<T> {
    in_ns(ns, move || {
        NlSocket::new()
            .expect("socket")
            .dump(kind, &req)
            .expect("dump")
            .iter()
            .filter_map(|p| parse(p))
            .collect()
    })
}

fn links(ns: &NetNs) -> Vec<Link> {
    dump(ns, RTM_GETLINK, Link::dump_request(), Link::parse)
}

fn link_named(ns: &NetNs, name: &str) -> Link {
    links(ns)
        .into_iter()
        .find(|l| l.name == name)
        .unwrap_or_else(|| panic!("{name} in the dump"))
}

/// A node with podnet's links already created; returns (node, cni0, flannel.1).
fn node_with_links(tag: &str) -> (Node, u32, u32) {
    let n = node(tag);
    let out = execute(&n.ns, create_batch(n.eth0));
    assert!(out.iter().all(Result::is_ok), "{out:?}");
    let (cni0, flannel) = (index_of(&n.ns, "cni0"), index_of(&n.ns, "flannel.1"));
    (n, cni0, flannel)
}

fn mac_str(m: [u8; 6]) -> String {
    m.map(|b| format!("{b:02x}")).join(":")
}

#[test]
fn links_are_created_marked_changed_and_deleted() {
    let n = node("kl");
    let out = execute(&n.ns, create_batch(n.eth0));
    assert_eq!(
        out,
        vec![Ok(()); 4],
        "one batch: create, mark, create, mark"
    );

    // iproute2's view.
    let shown = n.ns.ip_json(&["-d", "link", "show"]);
    let by_name = |name: &str| -> Value {
        shown
            .as_array()
            .expect("array")
            .iter()
            .find(|l| l["ifname"] == name)
            .cloned()
            .unwrap_or_else(|| panic!("{name} in {shown}"))
    };
    let br = by_name("cni0");
    assert_eq!(br["ifalias"], MARKER, "{br}");
    assert_eq!(br["mtu"], 1450);
    assert_eq!(br["linkinfo"]["info_kind"], "bridge");
    assert!(
        br["flags"]
            .as_array()
            .expect("flags")
            .contains(&Value::from("UP"))
    );
    let vx = by_name("flannel.1");
    assert_eq!(vx["ifalias"], MARKER, "{vx}");
    assert_eq!(vx["mtu"], 1450);
    assert_eq!(vx["address"], mac_str(VXLAN_MAC));
    let data = &vx["linkinfo"]["info_data"];
    assert_eq!(vx["linkinfo"]["info_kind"], "vxlan");
    assert_eq!(data["id"], 1, "{data}");
    assert_eq!(data["port"], 8472, "{data}");
    assert_eq!(data["local"], "192.168.56.11", "{data}");
    assert_eq!(data["link"], "eth0", "{data}");
    assert_eq!(data["learning"], false, "{data}");
    assert!(
        vx["flags"]
            .as_array()
            .expect("flags")
            .contains(&Value::from("UP"))
    );

    // Our own dump agrees.
    let all = links(&n.ns);
    let find = |name: &str| {
        all.iter()
            .find(|l| l.name == name)
            .unwrap_or_else(|| panic!("{name} in {all:?}"))
    };
    let cni0 = find("cni0");
    assert_eq!(cni0.kind, Some(KernelLinkKind::Bridge));
    assert_eq!((cni0.mtu, cni0.up, cni0.master), (1450, true, None));
    assert_eq!(cni0.vxlan, None);
    let flannel = find("flannel.1");
    assert_eq!(flannel.kind, Some(KernelLinkKind::Vxlan));
    assert_eq!(
        (flannel.mtu, flannel.up, flannel.mac),
        (1450, true, Some(VXLAN_MAC))
    );
    assert_eq!(flannel.vxlan, Some(vxlan(n.eth0)));
    assert!(cni0.owned() && flannel.owned());
    let eth0 = find("eth0");
    let lo = find("lo");
    assert!(!eth0.owned() && !lo.owned());
    assert_eq!(eth0.kind, Some(KernelLinkKind::Veth));
    assert_eq!((eth0.index, eth0.alias.as_deref()), (n.eth0, None));
    assert_eq!((&lo.kind, lo.up), (&None, true));
    assert_eq!(all.len(), 4, "{all:?}");

    // Create-exclusive a second time: EEXIST in the outcome. Changes by index work in place.
    let again = execute(&n.ns, create_batch(n.eth0));
    assert_eq!(again[0], Err(libc::EEXIST));
    assert_eq!(again[2], Err(libc::EEXIST));
    let (ci, fi) = (cni0.index, flannel.index);
    let mtu = |i: u32| {
        link::change(
            &LinkRef::Index(i),
            &LinkChange {
                mtu: Some(1400),
                ..LinkChange::default()
            },
        )
    };
    assert_eq!(execute(&n.ns, vec![mtu(ci), mtu(fi)]), vec![Ok(()); 2]);
    let cni0 = link_named(&n.ns, "cni0");
    let flannel = link_named(&n.ns, "flannel.1");
    assert_eq!((cni0.index, cni0.mtu), (ci, 1400), "same link, new MTU");
    assert_eq!((flannel.index, flannel.mtu), (fi, 1400));
    assert!(cni0.owned() && flannel.up, "other attributes untouched");

    // Down, then unknown names and indexes fail with an errno.
    let down = link::change(
        &LinkRef::Index(ci),
        &LinkChange {
            up: Some(false),
            ..LinkChange::default()
        },
    );
    let missing = link::change(&LinkRef::Name("nope0".into()), &LinkChange::default());
    let out = execute(&n.ns, vec![down, missing, link::delete(9999)]);
    assert_eq!(out, vec![Ok(()), Err(libc::ENODEV), Err(libc::ENODEV)]);
    assert!(!link_named(&n.ns, "cni0").up);

    // Delete both: gone; the underlay stays.
    let out = execute(&n.ns, vec![link::delete(ci), link::delete(fi)]);
    assert_eq!(out, vec![Ok(()); 2]);
    let names: Vec<_> = links(&n.ns).into_iter().map(|l| l.name).collect();
    assert_eq!(names.len(), 2, "{names:?}");
    assert!(names.contains(&"eth0".into()) && names.contains(&"lo".into()));
}

#[test]
fn addresses_replace_dump_and_delete() {
    let (n, cni0, flannel) = node_with_links("ka");
    let gw = Addr {
        index: cni0,
        address: "10.244.1.1/24".parse().expect("net"),
    };
    let vtep = Addr {
        index: flannel,
        address: "10.244.1.0/32".parse().expect("net"),
    };
    for _ in 0..2 {
        let out = execute(&n.ns, vec![gw.replace(), vtep.replace()]);
        assert_eq!(out, vec![Ok(()); 2], "replace is idempotent");
    }
    let ours = |ns: &NetNs| -> Vec<Addr> {
        let mut v: Vec<_> = dump(ns, RTM_GETADDR, Addr::dump_request(), Addr::parse)
            .into_iter()
            .filter(|a| a.index == cni0 || a.index == flannel)
            .collect();
        v.sort();
        v
    };
    let mut want = vec![gw.clone(), vtep.clone()];
    want.sort();
    assert_eq!(ours(&n.ns), want);
    // The unfiltered dump also holds the underlay's and loopback's addresses.
    let all = dump(&n.ns, RTM_GETADDR, Addr::dump_request(), Addr::parse);
    assert!(all.contains(&Addr {
        index: n.eth0,
        address: "192.168.56.11/24".parse().expect("net"),
    }));
    assert!(all.iter().any(|a| a.address.addr() == Ipv4Addr::LOCALHOST));

    let shown = n.ns.ip_json(&["-4", "addr", "show", "dev", "flannel.1"]);
    let info = &shown[0]["addr_info"];
    assert_eq!(info.as_array().map(Vec::len), Some(1), "{shown}");
    assert_eq!(
        (&info[0]["local"], &info[0]["prefixlen"]),
        (&"10.244.1.0".into(), &32.into())
    );

    assert_eq!(execute(&n.ns, vec![vtep.delete()]), vec![Ok(())]);
    assert_eq!(ours(&n.ns), vec![gw.clone()]);
    assert_eq!(
        execute(&n.ns, vec![vtep.delete()]),
        vec![Err(libc::EADDRNOTAVAIL)]
    );
}

#[test]
fn permanent_neighbours_on_one_device() {
    let (n, _cni0, flannel) = node_with_links("kn");
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
    let nb = Neigh {
        index: flannel,
        ip: Ipv4Addr::new(10, 244, 0, 0),
        mac: Some(PEER_MAC),
        permanent: true,
    };
    for _ in 0..2 {
        assert_eq!(execute(&n.ns, vec![nb.replace()]), vec![Ok(())]);
    }
    let shown = n.ns.ip_json(&["neigh", "show", "dev", "flannel.1"]);
    assert_eq!(shown.as_array().map(Vec::len), Some(1), "{shown}");
    assert_eq!(shown[0]["dst"], "10.244.0.0");
    assert_eq!(shown[0]["lladdr"], mac_str(PEER_MAC));
    assert_eq!(shown[0]["state"], serde_json::json!(["PERMANENT"]));

    // The kernel filters the dump to flannel.1: the hand-planted eth0 entry is not in it.
    let dumped = dump(
        &n.ns,
        RTM_GETNEIGH,
        Neigh::dump_request(flannel),
        Neigh::parse,
    );
    assert_eq!(dumped, vec![nb.clone()]);
    let on_eth0 = dump(
        &n.ns,
        RTM_GETNEIGH,
        Neigh::dump_request(n.eth0),
        Neigh::parse,
    );
    assert_eq!(
        on_eth0,
        vec![Neigh {
            index: n.eth0,
            ip: Ipv4Addr::new(192, 168, 56, 99),
            mac: Some([2, 0, 0, 0, 0, 0x99]),
            permanent: true,
        }]
    );

    // No MAC is an error (never a guess from the cache); the entry stays as it was.
    let no_mac = Neigh {
        mac: None,
        ..nb.clone()
    };
    assert_eq!(
        execute(&n.ns, vec![no_mac.replace()]),
        vec![Err(libc::EINVAL)]
    );

    assert_eq!(execute(&n.ns, vec![nb.delete()]), vec![Ok(())]);
    let dumped = dump(
        &n.ns,
        RTM_GETNEIGH,
        Neigh::dump_request(flannel),
        Neigh::parse,
    );
    assert_eq!(dumped, vec![]);
    assert_eq!(
        n.ns.ip_json(&["neigh", "show", "dev", "flannel.1"])
            .as_array()
            .map(Vec::len),
        Some(0)
    );
    assert_eq!(execute(&n.ns, vec![nb.delete()]), vec![Err(libc::ENOENT)]);
}

#[test]
fn vxlan_fdb_entries_on_one_device() {
    let (n, _cni0, flannel) = node_with_links("kf");
    // A foreign bridge with a hand-planted entry on its own port.
    n.ns.ip(&["link", "add", "br-x", "type", "bridge"]);
    n.ns.ip(&[
        "link",
        "add",
        "vx-x",
        "type",
        "vxlan",
        "id",
        "9",
        "dstport",
        "4789",
        "local",
        "192.168.56.11",
        "dev",
        "eth0",
    ]);
    n.ns.ip(&["link", "set", "vx-x", "master", "br-x"]);
    n.ns.sh(
        "bridge",
        &[
            "fdb",
            "add",
            "02:00:00:00:00:77",
            "dev",
            "vx-x",
            "dst",
            "192.168.56.77",
            "self",
            "permanent",
        ],
    );
    n.ns.sh(
        "bridge",
        &[
            "fdb",
            "add",
            "02:00:00:00:00:78",
            "dev",
            "vx-x",
            "master",
            "static",
        ],
    );
    let fdb_dump =
        |ns: &NetNs, index: u32| dump(ns, RTM_GETNEIGH, Fdb::dump_request(index), Fdb::parse);

    let entry = Fdb {
        index: flannel,
        mac: PEER_MAC,
        dst: Some(Ipv4Addr::new(192, 168, 56, 10)),
        permanent: true,
    };
    assert_eq!(execute(&n.ns, vec![entry.replace()]), vec![Ok(())]);
    let shown: Value = serde_json::from_str(
        &n.ns
            .sh("bridge", &["-j", "fdb", "show", "dev", "flannel.1"]),
    )
    .expect("bridge -j output is JSON");
    let rows: Vec<_> = shown
        .as_array()
        .expect("array")
        .iter()
        .filter(|r| r["mac"] == mac_str(PEER_MAC))
        .collect();
    assert_eq!(rows.len(), 1, "{shown}");
    assert_eq!(rows[0]["dst"], "192.168.56.10");
    assert_eq!(rows[0]["state"], "permanent");
    assert!(
        rows[0]["flags"]
            .as_array()
            .expect("flags")
            .contains(&"self".into())
    );
    assert_eq!(fdb_dump(&n.ns, flannel), vec![entry.clone()]);

    // Same MAC, new VTEP: replaced in place, still one entry.
    let moved = Fdb {
        dst: Some(Ipv4Addr::new(192, 168, 56, 12)),
        ..entry.clone()
    };
    assert_eq!(execute(&n.ns, vec![moved.replace()]), vec![Ok(())]);
    assert_eq!(fdb_dump(&n.ns, flannel), vec![moved.clone()]);

    // The foreign device's entries are not in flannel.1's dump; its own dump has only the
    // `self` entry (the bridge's `master` entry for the port is not an Fdb).
    let vx_x = index_of(&n.ns, "vx-x");
    let foreign = fdb_dump(&n.ns, vx_x);
    assert!(
        foreign
            .iter()
            .any(|f| f.mac == [2, 0, 0, 0, 0, 0x77]
                && f.dst == Some(Ipv4Addr::new(192, 168, 56, 77))),
        "{foreign:?}"
    );
    assert!(
        foreign
            .iter()
            .all(|f| f.index == vx_x && f.mac != [2, 0, 0, 0, 0, 0x78])
    );
    let br_x = index_of(&n.ns, "br-x");
    assert!(fdb_dump(&n.ns, br_x).iter().all(|f| f.index == br_x));

    assert_eq!(execute(&n.ns, vec![moved.delete()]), vec![Ok(())]);
    assert_eq!(fdb_dump(&n.ns, flannel), vec![]);
    assert_eq!(
        execute(&n.ns, vec![moved.delete()]),
        vec![Err(libc::ENOENT)]
    );
}
