//! `--adopt` against the real kernel: nodes built exactly as flannel's vxlan backend leaves
//! them, with pods attached by the real CNI plugins. Without `--adopt` podnet refuses them;
//! `plan --live --adopt` shows the takeover and changes nothing; `apply --adopt` takes node
//! 1 over while its pod pings the other node's pod, without one lost ping; a second apply
//! changes nothing, `status` is clean, and `teardown` gives back exactly what flannel had.
//! Every namespace is the test's own and removed on drop.

mod common;

use std::process::{Command, Stdio};
use std::time::Duration;

use common::flannel::{FlannelNode, cluster};

fn text(o: &std::process::Output) -> (String, String) {
    (
        String::from_utf8_lossy(&o.stdout).into_owned(),
        String::from_utf8_lossy(&o.stderr).into_owned(),
    )
}

fn cluster_file(dir: &std::path::Path, a: &FlannelNode, b: &FlannelNode) -> String {
    let p = dir.join("cluster.podnet");
    std::fs::write(&p, cluster(&[a, b])).expect("write cluster file");
    p.to_str().expect("utf-8").to_string()
}

#[test]
fn a_flannel_node_is_refused_without_adopt_and_plan_live_adopt_shows_the_takeover() {
    let (a, b) = FlannelNode::pair();
    let (_p1, _ip1) = a.pod("fp1");
    let dir = tempfile::tempdir().expect("dir");
    let file = cluster_file(dir.path(), &a, &b);
    let before = a.dumps();

    let out = a.podnet(&["plan", &file, "--node", "n1", "--live"]);
    let (stdout, stderr) = text(&out);
    assert_eq!(out.status.code(), Some(1), "{stdout}\n{stderr}");
    assert!(
        stdout.contains("conflict: link flannel.1 exists"),
        "{stdout}"
    );
    assert!(stdout.contains("conflict: link cni0 exists"), "{stdout}");

    let out = a.podnet(&["plan", &file, "--node", "n1", "--live", "--adopt"]);
    let (stdout, stderr) = text(&out);
    assert_eq!(out.status.code(), Some(0), "{stdout}\n{stderr}");
    assert!(!stdout.contains("conflict"), "{stdout}");
    assert!(
        stdout.contains(
            "adopt: link flannel.1 (vxlan 1, port 8472, local 10.88.0.1, mtu 1450, addresses \
             10.244.1.0/32)"
        ),
        "{stdout}"
    );
    assert!(
        stdout.contains("adopt: link cni0 (bridge, mtu 1450, addresses 10.244.1.1/24)"),
        "{stdout}"
    );
    assert!(
        stdout.contains(
            "adopt: route 10.244.2.0/24 via 10.244.2.0 dev flannel.1 onlink (protocol 3), \
             replaced in place"
        ),
        "{stdout}"
    );
    // Neither a neighbour nor an FDB entry nor an address is to be added: flannel's are
    // the plan's.
    assert!(!stdout.contains("+ neigh"), "{stdout}");
    assert!(!stdout.contains("+ fdb"), "{stdout}");
    assert!(!stdout.contains("+ address"), "{stdout}");
    // An apply without --adopt still refuses and changes nothing.
    let out = a.podnet(&["apply", &file]);
    assert_eq!(out.status.code(), Some(1), "{:?}", text(&out));
    assert_eq!(a.dumps(), before, "nothing changed");
    assert!(!a.root.path().join("var/lib/podnet/state.json").exists());
}

/// Starts `ping -c COUNT -i 0.02` from `pod` to `ip` in the background.
fn ping(pod: &common::NetNs, ip: &str, count: u32) -> std::process::Child {
    Command::new("ip")
        .args([
            "netns", "exec", &pod.name, "ping", "-n", "-q", "-W", "1", "-i", "0.02",
        ])
        .args(["-c", &count.to_string(), ip])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn ping")
}

/// The ping's `N packets transmitted, M received` line, asserting no loss.
fn no_loss(child: std::process::Child, count: u32) -> String {
    let out = child.wait_with_output().expect("ping");
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    let line = stdout
        .lines()
        .find(|l| l.contains("packets transmitted"))
        .unwrap_or_default()
        .to_string();
    assert!(
        line.starts_with(&format!(
            "{count} packets transmitted, {count} received, 0% packet loss"
        )),
        "{stdout}"
    );
    line
}

#[test]
fn adopting_a_flannel_node_loses_no_ping_and_teardown_gives_it_back_exactly() {
    let (a, b) = FlannelNode::pair();
    let (p1, _ip1) = a.pod("fp1");
    let (p2, ip2) = b.pod("fp2");
    assert!(common::cni::ping(&p1, &ip2, 5), "flannel pods talk before");
    let dir = tempfile::tempdir().expect("dir");
    // A third node flannel does not know yet: podnet adds its neighbour, FDB entry and
    // route on the adopted flannel.1, and teardown must take them away again.
    let file = cluster_file(dir.path(), &a, &b);
    let mut text3 = std::fs::read_to_string(&file).expect("read");
    text3.push_str(
        "node n3 { address 10.88.0.3/24; subnet 10.244.3.0/24; vtep-mac 0a:f1:00:00:00:03 }\n",
    );
    std::fs::write(&file, text3).expect("write");
    let before = a.dumps();

    const COUNT: u32 = 200;
    let pinger = ping(&p1, &ip2, COUNT);
    std::thread::sleep(Duration::from_millis(500));
    let out = a.ok(&["apply", &file, "--adopt"]);
    assert!(out.contains("adopt: link flannel.1"), "{out}");
    assert!(out.contains("adopt: route 10.244.2.0/24"), "{out}");
    let line = no_loss(pinger, COUNT);
    eprintln!("during adoption: {line}");

    // Owned now: the marker, the route of podnet's protocol; nothing else changes.
    let link = a.ns.ip(&["-d", "link", "show", "flannel.1"]);
    assert!(link.contains("alias podnet"), "{link}");
    let bridge = a.ns.ip(&["-d", "link", "show", "cni0"]);
    assert!(bridge.contains("alias podnet"), "{bridge}");
    let routes = a.ns.ip(&["route", "show", "10.244.2.0/24"]);
    assert!(routes.contains("proto 77"), "{routes}");
    let neigh = a.ns.ip(&["neigh", "show", "dev", "flannel.1"]);
    assert!(
        neigh.contains("10.244.3.0 lladdr 0a:f1:00:00:00:03"),
        "{neigh}"
    );
    let journal =
        std::fs::read_to_string(a.root.path().join("var/lib/podnet/state.json")).expect("journal");
    assert!(journal.contains("\"adopted\""), "{journal}");
    let again = a.ok(&["apply", &file]);
    assert!(
        again.contains("node n1: 0 added, 0 changed, 0 removed;"),
        "{again}"
    );
    let status = a.podnet(&["status", "--detailed-exitcode"]);
    assert_eq!(status.status.code(), Some(0), "{:?}", text(&status));
    assert!(common::cni::ping(&p1, &ip2, 3), "pods talk after adoption");

    // Teardown gives everything back, with pods pinging meanwhile.
    let pinger = ping(&p1, &ip2, COUNT);
    std::thread::sleep(Duration::from_millis(500));
    let down = a.ok(&["teardown"]);
    let line = no_loss(pinger, COUNT);
    eprintln!("during teardown: {line}\n{down}");
    let after = a.dumps();
    assert_eq!(
        serde_json::to_string_pretty(&after).expect("json"),
        serde_json::to_string_pretty(&before).expect("json"),
        "teardown restores the flannel node exactly"
    );
    assert!(!a.root.path().join("var/lib/podnet/state.json").exists());
    assert!(common::cni::ping(&p2, &_ip1, 3), "pods talk after teardown");
    drop((p1, p2));
}

#[test]
fn what_matches_nothing_known_stays_a_conflict_under_adopt_and_nothing_changes() {
    let (a, b) = FlannelNode::pair();
    let (_p1, _ip1) = a.pod("fp1");
    let dir = tempfile::tempdir().expect("dir");
    let file = cluster_file(dir.path(), &a, &b);
    // A route to node 2's subnet through the underlay instead of flannel.1: not flannel's
    // shape, so not adopted.
    a.ns.ip(&[
        "route",
        "replace",
        "10.244.2.0/24",
        "via",
        "10.88.0.2",
        "dev",
        "eth0",
        "proto",
        "boot",
    ]);
    let before = a.dumps();
    let out = a.podnet(&["plan", &file, "--node", "n1", "--live", "--adopt"]);
    let (stdout, stderr) = text(&out);
    assert_eq!(out.status.code(), Some(1), "{stdout}\n{stderr}");
    assert!(
        stdout.contains("conflict: a route to 10.244.2.0/24 that is not podnet's"),
        "{stdout}"
    );
    assert!(stdout.contains("adopt: link flannel.1"), "{stdout}");
    assert!(!stdout.contains("adopt: route"), "{stdout}");
    let out = a.podnet(&["apply", &file, "--adopt"]);
    let (stdout, stderr) = text(&out);
    assert_eq!(out.status.code(), Some(1), "{stdout}\n{stderr}");
    assert!(stderr.contains("nothing was changed"), "{stderr}");
    assert_eq!(a.dumps(), before, "nothing changed");
    assert!(!a.root.path().join("var/lib/podnet/state.json").exists());
}

#[test]
fn adopting_one_node_then_the_other_loses_no_ping_in_either_direction() {
    let (a, b) = FlannelNode::pair();
    let (p1, ip1) = a.pod("fp1");
    let (p2, ip2) = b.pod("fp2");
    let dir = tempfile::tempdir().expect("dir");
    let file = cluster_file(dir.path(), &a, &b);
    const COUNT: u32 = 150;
    for node in [&a, &b] {
        let there = ping(&p1, &ip2, COUNT);
        let back = ping(&p2, &ip1, COUNT);
        std::thread::sleep(Duration::from_millis(300));
        let out = node.ok(&["apply", &file, "--adopt"]);
        assert!(out.contains("adopt: link flannel.1"), "{out}");
        eprintln!("{} there: {}", node.ns.name, no_loss(there, COUNT));
        eprintln!("{} back: {}", node.ns.name, no_loss(back, COUNT));
    }
    for node in [&a, &b] {
        let status = node.podnet(&["status", "--detailed-exitcode"]);
        assert_eq!(status.status.code(), Some(0), "{:?}", text(&status));
    }
    for node in [&b, &a] {
        let there = ping(&p1, &ip2, COUNT);
        std::thread::sleep(Duration::from_millis(300));
        node.ok(&["teardown"]);
        no_loss(there, COUNT);
    }
}
