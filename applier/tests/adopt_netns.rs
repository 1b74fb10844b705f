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

/// The source address a UDP server in `server_ns` sees for a datagram sent from `from_ns`
/// to `to_ip` (`None`: nothing arrived within 2 s). A fresh client port each time, so each
/// call is a new conntrack flow that the nat hooks see.
fn source_seen(
    from_ns: &common::NetNs,
    server_ns: &common::NetNs,
    to_ip: &str,
) -> Option<std::net::IpAddr> {
    let server = common::in_ns(server_ns, || {
        std::net::UdpSocket::bind("0.0.0.0:0").expect("bind server")
    });
    let port = server.local_addr().expect("addr").port();
    server
        .set_read_timeout(Some(Duration::from_secs(2)))
        .expect("timeout");
    let client = common::in_ns(from_ns, || {
        std::net::UdpSocket::bind("0.0.0.0:0").expect("bind client")
    });
    client
        .send_to(b"probe", format!("{to_ip}:{port}"))
        .expect("send");
    let mut buf = [0u8; 16];
    server.recv_from(&mut buf).ok().map(|(_, a)| a.ip())
}

/// The packet counter of the first `iptables-save -c -t nat` rule containing all `words`.
fn nat_counter(node: &FlannelNode, words: &[&str]) -> Option<u64> {
    let save = node.ns.sh("iptables-save", &["-c", "-t", "nat"]);
    save.lines()
        .find(|l| words.iter().all(|w| l.contains(w)))
        .and_then(|l| l.strip_prefix('['))
        .and_then(|l| l.split(':').next())
        .and_then(|n| n.parse().ok())
}

fn with_firewall(file: &str, driver: &str) {
    let text = std::fs::read_to_string(file).expect("read");
    let text = text.replacen(
        "flannel-compat on\n",
        &format!("flannel-compat on\n    firewall {driver}\n"),
        1,
    );
    std::fs::write(file, text).expect("write");
}

#[test]
fn flannels_iptables_chains_and_conflist_are_adopted_masquerade_is_podnets_once_and_teardown_puts_them_back()
 {
    let (a, b) = FlannelNode::pair();
    a.iptables();
    b.iptables();
    let (p1, ip1) = a.pod("fp1");
    let (p2, ip2) = b.pod("fp2");
    let out = a.outside();
    let node_ip: std::net::IpAddr = "10.99.0.1".parse().expect("ip");
    // The fixture works: flannel masquerades the pod's outbound traffic.
    let flannel_masq = ["-A FLANNEL-POSTRTG -s 10.244.0.0/16 ! -d 224.0.0.0/4"];
    let before_count = nat_counter(&a, &flannel_masq).expect("flannel's rule");
    assert_eq!(source_seen(&p1, &out, "10.99.0.2"), Some(node_ip));
    assert_eq!(nat_counter(&a, &flannel_masq), Some(before_count + 1));
    let dir = tempfile::tempdir().expect("dir");
    let file = cluster_file(dir.path(), &a, &b);
    with_firewall(&file, "iptables");
    let before = a.dumps();

    // Without --adopt flannel's conflist is a conflict.
    let o = a.podnet(&["plan", &file, "--node", "n1", "--live"]);
    let (stdout, stderr) = text(&o);
    assert_eq!(o.status.code(), Some(1), "{stdout}\n{stderr}");
    assert!(
        stdout.contains("10-flannel.conflist is not podnet's and sorts before 10-podnet.conflist"),
        "{stdout}"
    );
    let o = a.podnet(&["plan", &file, "--node", "n1", "--live", "--adopt"]);
    let (stdout, stderr) = text(&o);
    assert_eq!(o.status.code(), Some(0), "{stdout}\n{stderr}");
    assert!(
        stdout.contains(
            "adopt: firewall iptables nat chain FLANNEL-POSTRTG (6 rule(s), jump from \
             POSTROUTING), removed once podnet's rules are in place"
        ),
        "{stdout}"
    );
    assert!(
        stdout.contains(
            "adopt: firewall iptables filter chain FLANNEL-FWD (2 rule(s), jump from FORWARD)"
        ),
        "{stdout}"
    );
    assert!(stdout.contains("adopt: file "), "{stdout}");
    assert!(stdout.contains("10-flannel.conflist ("), "{stdout}");
    assert_eq!(a.dumps(), before, "the dry run changed nothing");

    const COUNT: u32 = 200;
    let pinger = ping(&p1, &ip2, COUNT);
    std::thread::sleep(Duration::from_millis(500));
    a.ok(&["apply", &file, "--adopt"]);
    eprintln!("iptables, during adoption: {}", no_loss(pinger, COUNT));

    // Nothing of flannel's acts: no FLANNEL chain or jump, no flannel conflist.
    let save = a.iptables_save();
    assert!(!save.contains("FLANNEL"), "{save}");
    let cni = a.root.path().join("etc/cni/net.d");
    assert!(!cni.join("10-flannel.conflist").exists());
    assert!(cni.join("10-podnet.conflist").exists());
    let again = a.ok(&["apply", &file]);
    assert!(
        again.contains("node n1: 0 added, 0 changed, 0 removed;"),
        "{again}"
    );
    let status = a.podnet(&["status", "--detailed-exitcode"]);
    assert_eq!(status.status.code(), Some(0), "{:?}", text(&status));
    assert!(!text(&status).1.contains("warning"), "{:?}", text(&status));
    // Outbound: masqueraded exactly once, by podnet's rule.
    let podnet_masq = ["-A PODNET-POSTRTG -s 10.244.1.0/24", "-j MASQUERADE"];
    let n = nat_counter(&a, &podnet_masq).expect("podnet's rule");
    assert_eq!(source_seen(&p1, &out, "10.99.0.2"), Some(node_ip));
    assert_eq!(nat_counter(&a, &podnet_masq), Some(n + 1), "{save}");
    // Pod to pod across a podnet node and a flannel node, both ways, unmasqueraded.
    assert_eq!(
        source_seen(&p1, &p2, &ip2),
        Some(ip1.parse().expect("ip")),
        "podnet → flannel"
    );
    assert_eq!(
        source_seen(&p2, &p1, &ip1),
        Some(ip2.parse().expect("ip")),
        "flannel → podnet"
    );

    // A flanneld that kept running puts its chains back: status says so.
    a.iptables();
    let status = a.podnet(&["status"]);
    assert!(
        text(&status).1.contains(
            "warning: flannel's firewall is in force here: iptables nat chain FLANNEL-POSTRTG"
        ),
        "{:?}",
        text(&status)
    );
    let again = a.ok(&["apply", &file, "--adopt"]);
    assert!(
        again.contains("adopt: firewall iptables nat chain"),
        "{again}"
    );
    assert!(!a.iptables_save().contains("FLANNEL"));

    let pinger = ping(&p1, &ip2, COUNT);
    std::thread::sleep(Duration::from_millis(500));
    let down = a.ok(&["teardown"]);
    eprintln!("iptables, during teardown: {}", no_loss(pinger, COUNT));
    assert!(down.contains("FLANNEL-POSTRTG (flannel's)"), "{down}");
    assert_eq!(
        serde_json::to_string_pretty(&a.dumps()).expect("json"),
        serde_json::to_string_pretty(&before).expect("json"),
        "teardown restores flannel's chains, jumps and files exactly"
    );
    let n = nat_counter(&a, &flannel_masq).expect("flannel's rule is back");
    assert_eq!(source_seen(&p1, &out, "10.99.0.2"), Some(node_ip));
    assert_eq!(nat_counter(&a, &flannel_masq), Some(n + 1));
}

#[test]
fn flannels_nft_tables_are_adopted_and_teardown_puts_them_back() {
    let (a, b) = FlannelNode::pair();
    a.nftables();
    b.nftables();
    let (p1, _ip1) = a.pod("fp1");
    let (_p2, ip2) = b.pod("fp2");
    let out = a.outside();
    let node_ip: std::net::IpAddr = "10.99.0.1".parse().expect("ip");
    assert_eq!(source_seen(&p1, &out, "10.99.0.2"), Some(node_ip));
    let dir = tempfile::tempdir().expect("dir");
    let file = cluster_file(dir.path(), &a, &b);
    // Without flannel-compat podnet does not write subnet.env: flannel's is in the way.
    let cluster = std::fs::read_to_string(&file).expect("read");
    std::fs::write(&file, cluster.replace("    flannel-compat on\n", "")).expect("write");
    let before = a.dumps();
    let o = a.podnet(&["plan", &file, "--node", "n1", "--live"]);
    let (stdout, stderr) = text(&o);
    assert_eq!(o.status.code(), Some(1), "{stdout}\n{stderr}");
    assert!(
        stdout.contains("run/flannel/subnet.env is not podnet's and is flanneld's lease"),
        "{stdout}"
    );
    let o = a.podnet(&["plan", &file, "--node", "n1", "--live", "--adopt"]);
    let (stdout, stderr) = text(&o);
    assert_eq!(o.status.code(), Some(0), "{stdout}\n{stderr}");
    assert!(
        stdout.contains("run/flannel/subnet.env (") && stdout.contains("10-flannel.conflist ("),
        "{stdout}"
    );
    for t in ["ip flannel-ipv4", "ip6 flannel-ipv6"] {
        assert!(
            stdout.contains(&format!("adopt: firewall nftables table {t}, removed")),
            "{stdout}"
        );
    }
    const COUNT: u32 = 200;
    let pinger = ping(&p1, &ip2, COUNT);
    std::thread::sleep(Duration::from_millis(500));
    a.ok(&["apply", &file, "--adopt"]);
    eprintln!("nftables, during adoption: {}", no_loss(pinger, COUNT));
    let tables = a.ns.sh("nft", &["list", "tables"]);
    assert!(!tables.contains("flannel"), "{tables}");
    assert!(!a.root.path().join("run/flannel/subnet.env").exists());
    assert!(tables.contains("inet podnet"), "{tables}");
    assert_eq!(source_seen(&p1, &out, "10.99.0.2"), Some(node_ip));
    let status = a.podnet(&["status", "--detailed-exitcode"]);
    assert_eq!(status.status.code(), Some(0), "{:?}", text(&status));
    let pinger = ping(&p1, &ip2, COUNT);
    std::thread::sleep(Duration::from_millis(500));
    a.ok(&["teardown"]);
    eprintln!("nftables, during teardown: {}", no_loss(pinger, COUNT));
    assert_eq!(
        serde_json::to_string_pretty(&a.dumps()).expect("json"),
        serde_json::to_string_pretty(&before).expect("json"),
        "teardown restores flannel's nft tables exactly"
    );
}

/// A process named `flanneld` (a copy of `sleep`) in a namespace, killed on drop.
struct FakeFlanneld {
    child: std::process::Child,
    _dir: tempfile::TempDir,
}

impl FakeFlanneld {
    fn start(ns: &common::NetNs) -> FakeFlanneld {
        let dir = tempfile::tempdir().expect("dir");
        let bin = dir.path().join("flanneld");
        std::fs::copy("/bin/sleep", &bin).expect("copy sleep");
        let child = Command::new("ip")
            .args(["netns", "exec", &ns.name])
            .arg(&bin)
            .arg("120")
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("spawn flanneld");
        let comm = format!("/proc/{}/comm", child.id());
        let started = (0..100).any(|_| {
            std::thread::sleep(Duration::from_millis(20));
            std::fs::read_to_string(&comm).is_ok_and(|c| c.trim() == "flanneld")
        });
        let f = FakeFlanneld { child, _dir: dir };
        assert!(started, "the fake flanneld runs");
        f
    }
}

impl Drop for FakeFlanneld {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

#[test]
fn a_running_flanneld_is_reported_and_status_exits_1_on_a_conflict() {
    let (a, b) = FlannelNode::pair();
    let (_p1, _ip1) = a.pod("fp1");
    let dir = tempfile::tempdir().expect("dir");
    let file = cluster_file(dir.path(), &a, &b);
    let flanneld = FakeFlanneld::start(&a.ns);
    let warning = format!(
        "warning: flanneld is running here (pid {}",
        flanneld.child.id()
    );
    let o = a.podnet(&["plan", &file, "--node", "n1", "--live", "--adopt"]);
    let (stdout, stderr) = text(&o);
    assert_eq!(o.status.code(), Some(0), "{stdout}\n{stderr}");
    assert!(stderr.contains(&warning), "{stderr}");
    assert!(stderr.contains("stop it"), "{stderr}");
    // Only a flanneld in the node's own namespace counts.
    let o = b.podnet(&["plan", &file, "--node", "n2", "--live", "--adopt"]);
    let (_, stderr) = text(&o);
    assert!(!stderr.contains("flanneld is running"), "{stderr}");
    let o = a.podnet(&["apply", &file, "--adopt"]);
    let (stdout, stderr) = text(&o);
    assert_eq!(o.status.code(), Some(0), "{stdout}\n{stderr}");
    assert!(stderr.contains(&warning), "{stderr}");
    let o = a.podnet(&["status"]);
    let (stdout, stderr) = text(&o);
    assert_eq!(o.status.code(), Some(0), "{stdout}\n{stderr}");
    assert!(stderr.contains(&warning), "{stderr}");
    drop(flanneld);
    let o = a.podnet(&["status", "--detailed-exitcode"]);
    let (stdout, stderr) = text(&o);
    assert_eq!(o.status.code(), Some(0), "{stdout}\n{stderr}");
    assert!(!stderr.contains("flanneld"), "{stderr}");
    // flannel's install-cni puts its conflist back: a conflict, and status exits 1 (not 2,
    // which means drift), with or without --detailed-exitcode.
    let conflist = a.root.path().join("etc/cni/net.d/10-flannel.conflist");
    std::fs::write(&conflist, common::flannel::CONFLIST).expect("write");
    for args in [&["status"][..], &["status", "--detailed-exitcode"][..]] {
        let o = a.podnet(args);
        let (stdout, stderr) = text(&o);
        assert_eq!(o.status.code(), Some(1), "{args:?}\n{stdout}\n{stderr}");
        assert!(
            stdout.contains("conflict: file ") && stdout.contains("10-flannel.conflist"),
            "{stdout}"
        );
    }
    std::fs::remove_file(&conflist).expect("remove");
    a.ok(&["teardown"]);
}

#[test]
fn adopting_a_host_gw_flannel_node_loses_no_ping_and_teardown_gives_it_back_exactly() {
    let (a, b) = FlannelNode::pair_host_gw();
    a.iptables();
    b.iptables();
    let (p1, ip1) = a.pod("gp1");
    let (p2, ip2) = b.pod("gp2");
    assert!(
        common::cni::ping(&p1, &ip2, 5),
        "flannel host-gw pods talk before"
    );
    let dir = tempfile::tempdir().expect("dir");
    let file = dir.path().join("cluster.podnet");
    std::fs::write(&file, common::flannel::cluster_host_gw(&[&a, &b])).expect("write");
    let file = file.to_str().expect("utf-8").to_string();
    let before = a.dumps();
    let o = a.podnet(&["plan", &file, "--node", "n1", "--live"]);
    assert_eq!(o.status.code(), Some(1), "{:?}", text(&o));
    let o = a.podnet(&["plan", &file, "--node", "n1", "--live", "--adopt"]);
    let (stdout, stderr) = text(&o);
    assert_eq!(o.status.code(), Some(0), "{stdout}\n{stderr}");
    assert!(
        stdout.contains(
            "adopt: route 10.244.2.0/24 via 10.88.0.2 dev eth0 (protocol 3), replaced in place"
        ),
        "{stdout}"
    );
    assert!(stdout.contains("adopt: link cni0 (bridge"), "{stdout}");
    assert_eq!(a.dumps(), before, "the dry run changed nothing");

    const COUNT: u32 = 200;
    let there = ping(&p1, &ip2, COUNT);
    let back = ping(&p2, &ip1, COUNT);
    std::thread::sleep(Duration::from_millis(500));
    a.ok(&["apply", &file, "--adopt"]);
    eprintln!("host-gw, during adoption, there: {}", no_loss(there, COUNT));
    eprintln!("host-gw, during adoption, back: {}", no_loss(back, COUNT));
    let routes = a.ns.ip(&["route", "show", "10.244.2.0/24"]);
    assert!(routes.contains("proto 77"), "{routes}");
    assert!(!a.iptables_save().contains("FLANNEL"));
    let again = a.ok(&["apply", &file]);
    assert!(
        again.contains("node n1: 0 added, 0 changed, 0 removed;"),
        "{again}"
    );
    let status = a.podnet(&["status", "--detailed-exitcode"]);
    assert_eq!(status.status.code(), Some(0), "{:?}", text(&status));
    // The podnet node and the flannel node, both ways, pod addresses kept.
    assert_eq!(source_seen(&p1, &p2, &ip2), Some(ip1.parse().expect("ip")));
    assert_eq!(source_seen(&p2, &p1, &ip1), Some(ip2.parse().expect("ip")));

    let there = ping(&p1, &ip2, COUNT);
    std::thread::sleep(Duration::from_millis(500));
    a.ok(&["teardown"]);
    eprintln!("host-gw, during teardown: {}", no_loss(there, COUNT));
    assert_eq!(
        serde_json::to_string_pretty(&a.dumps()).expect("json"),
        serde_json::to_string_pretty(&before).expect("json"),
        "teardown restores the host-gw flannel node exactly"
    );
}

/// A bare node `10.88.0.1/24` on `eth0` (a veth to a peer namespace), with a `--root`.
fn bare_node(tag: &str) -> (common::NetNs, common::NetNs, tempfile::TempDir) {
    let ns = common::NetNs::new(tag);
    let peer = common::NetNs::new("peer");
    common::veth(&ns, "eth0", &peer, "eth0");
    ns.ip(&["addr", "add", "10.88.0.1/24", "dev", "eth0"]);
    peer.ip(&["addr", "add", "10.88.0.2/24", "dev", "eth0"]);
    (ns, peer, tempfile::tempdir().expect("root"))
}

fn podnet_in(ns: &common::NetNs, root: &std::path::Path, args: &[&str]) -> std::process::Output {
    let mut a: Vec<&str> = args.to_vec();
    a.extend(["--root", root.to_str().expect("utf-8")]);
    ns.exec(&common::node::bin(), &a)
}

const SCRIPT_CLUSTER: &str = "cluster s {\n    pod-cidr 10.244.0.0/16\n    backend host-gw\n    \
    cni { bridge BRIDGE }\n}\nnode n1 { address 10.88.0.1/24; subnet 10.244.1.0/24 }\n\
    node n2 { address 10.88.0.2/24; subnet 10.244.2.0/24 }\n";

#[test]
fn a_node_set_up_by_the_shell_plan_is_podnets_to_apply_and_an_unmarked_one_is_adopted() {
    let (ns, _peer, root) = bare_node("sh");
    let dir = tempfile::tempdir().expect("dir");
    let file = dir.path().join("cluster.podnet");
    std::fs::write(&file, SCRIPT_CLUSTER.replace("BRIDGE", "cni0")).expect("write");
    let file = file.to_str().expect("utf-8").to_string();
    let out = podnet_in(
        &ns,
        root.path(),
        &["plan", &file, "--node", "n1", "--format", "shell"],
    );
    assert!(out.status.success(), "{:?}", text(&out));
    let script = dir.path().join("n1.sh");
    std::fs::write(&script, &out.stdout).expect("write script");
    let sh = ns.exec("sh", &[script.to_str().expect("utf-8")]);
    assert!(sh.status.success(), "{:?}", text(&sh));
    let link = ns.ip(&["-d", "link", "show", "cni0"]);
    assert!(
        link.contains("alias podnet"),
        "the script marks its bridge: {link}"
    );
    let routes = ns.ip(&["route", "show", "10.244.2.0/24"]);
    assert!(routes.contains("proto 77"), "{routes}");

    // podnet knows the script's objects: nothing is in the way, no link is created.
    let o = podnet_in(
        &ns,
        root.path(),
        &["plan", &file, "--node", "n1", "--live", "--adopt"],
    );
    let (stdout, stderr) = text(&o);
    assert_eq!(o.status.code(), Some(0), "{stdout}\n{stderr}");
    assert!(!stdout.contains("conflict"), "{stdout}");
    assert!(!stdout.contains("+ link"), "{stdout}");
    let o = podnet_in(&ns, root.path(), &["apply", &file, "--adopt"]);
    let (stdout, stderr) = text(&o);
    assert_eq!(o.status.code(), Some(0), "{stdout}\n{stderr}");
    eprintln!("first apply after the script:\n{stdout}");
    assert!(
        !stdout.contains("+ link") && !stdout.contains("+ address"),
        "{stdout}"
    );
    let o = podnet_in(&ns, root.path(), &["apply", &file]);
    let (stdout, _) = text(&o);
    assert!(
        stdout.contains("node n1: 0 added, 0 changed, 0 removed;"),
        "{stdout}"
    );
    let o = podnet_in(&ns, root.path(), &["status", "--detailed-exitcode"]);
    assert_eq!(o.status.code(), Some(0), "{:?}", text(&o));
    let o = podnet_in(&ns, root.path(), &["teardown"]);
    assert!(o.status.success(), "{:?}", text(&o));
    let links = ns.ip(&["link", "show"]);
    assert!(
        !links.contains("cni0"),
        "teardown removes the script's bridge: {links}"
    );
    let addrs = ns.ip(&["-4", "addr", "show"]);
    assert!(!addrs.contains("10.244.1.1"), "{addrs}");
    let routes = ns.ip(&["route", "show", "proto", "77"]);
    assert!(routes.trim().is_empty(), "{routes}");
    let conflist = root.path().join("etc/cni/net.d/10-podnet.conflist");
    assert!(!conflist.exists(), "teardown removes the script's conflist");

    // An older script's node: the same objects without the marker.
    let sh = ns.exec("sh", &[script.to_str().expect("utf-8")]);
    assert!(sh.status.success(), "{:?}", text(&sh));
    ns.ip(&["link", "set", "dev", "cni0", "alias", ""]);
    let before = ns.ip_json(&["-d", "link", "show", "cni0"]);
    let o = podnet_in(&ns, root.path(), &["apply", &file]);
    let (stdout, stderr) = text(&o);
    assert_eq!(o.status.code(), Some(1), "{stdout}\n{stderr}");
    assert!(
        stderr.contains("link cni0 exists and is not podnet's"),
        "{stderr}"
    );
    let o = podnet_in(&ns, root.path(), &["apply", &file, "--adopt"]);
    let (stdout, stderr) = text(&o);
    assert_eq!(o.status.code(), Some(0), "{stdout}\n{stderr}");
    assert!(
        stdout.contains("adopt: link cni0 (bridge, mtu 1500, addresses 10.244.1.1/24)"),
        "{stdout}"
    );
    let o = podnet_in(&ns, root.path(), &["status", "--detailed-exitcode"]);
    assert_eq!(o.status.code(), Some(0), "{:?}", text(&o));
    let o = podnet_in(&ns, root.path(), &["teardown"]);
    assert!(o.status.success(), "{:?}", text(&o));
    // An adopted bridge is given back as it was.
    assert_eq!(
        common::flannel::scrub(ns.ip_json(&["-d", "link", "show", "cni0"])),
        common::flannel::scrub(before)
    );
}

#[test]
fn a_docker_hosts_docker0_is_adopted_and_given_back_exactly() {
    let (ns, peer, root) = bare_node("dk");
    // What dockerd --bip=10.244.1.1/24 --mtu=1500 makes (the gateway of flannel's
    // subnet.env), and a container on it.
    ns.ip(&["link", "add", "docker0", "type", "bridge"]);
    ns.ip(&["addr", "add", "10.244.1.1/24", "dev", "docker0"]);
    ns.ip(&["link", "set", "docker0", "up"]);
    let c = common::NetNs::new("ctr");
    common::veth(&ns, "vethc1", &c, "eth0");
    ns.ip(&["link", "set", "vethc1", "master", "docker0"]);
    c.ip(&["addr", "add", "10.244.1.2/24", "dev", "eth0"]);
    c.ip(&["route", "add", "default", "via", "10.244.1.1"]);
    ns.sh("sysctl", &["-qw", "net.ipv4.ip_forward=1"]);
    peer.ip(&["route", "add", "10.244.1.0/24", "via", "10.88.0.1"]);
    assert!(
        common::cni::ping(&c, "10.88.0.2", 5),
        "the container reaches the peer"
    );
    // The bridge's operstate settles to UP once its port forwards.
    let up = (0..100).any(|_| {
        let l = ns.ip_json(&["link", "show", "docker0"]);
        let settled = l[0]["operstate"] == "UP";
        if !settled {
            std::thread::sleep(Duration::from_millis(50));
        }
        settled
    });
    assert!(up, "docker0 is up");
    let dump = |ns: &common::NetNs| {
        common::flannel::scrub(serde_json::json!({
            "links": ns.ip_json(&["-d", "link", "show"]),
            "addresses": ns.ip_json(&["-4", "addr", "show"]),
            "routes": ns.ip_json(&["-4", "route", "show", "table", "all"]),
        }))
    };
    let before = dump(&ns);
    let dir = tempfile::tempdir().expect("dir");
    let file = dir.path().join("cluster.podnet");
    std::fs::write(&file, SCRIPT_CLUSTER.replace("BRIDGE", "docker0")).expect("write");
    let file = file.to_str().expect("utf-8").to_string();
    let o = podnet_in(&ns, root.path(), &["apply", &file]);
    assert_eq!(o.status.code(), Some(1), "{:?}", text(&o));
    assert_eq!(
        dump(&ns),
        before,
        "refused without --adopt, nothing changed"
    );

    const COUNT: u32 = 200;
    let pinger = ping(&c, "10.88.0.2", COUNT);
    std::thread::sleep(Duration::from_millis(500));
    let o = podnet_in(&ns, root.path(), &["apply", &file, "--adopt"]);
    let (stdout, stderr) = text(&o);
    assert_eq!(o.status.code(), Some(0), "{stdout}\n{stderr}");
    assert!(
        stdout.contains("adopt: link docker0 (bridge, mtu 1500, addresses 10.244.1.1/24)"),
        "{stdout}"
    );
    eprintln!("docker0, during adoption: {}", no_loss(pinger, COUNT));
    let link = ns.ip(&["-d", "link", "show", "docker0"]);
    assert!(link.contains("alias podnet"), "{link}");
    let o = podnet_in(&ns, root.path(), &["status", "--detailed-exitcode"]);
    assert_eq!(o.status.code(), Some(0), "{:?}", text(&o));
    let pinger = ping(&c, "10.88.0.2", COUNT);
    std::thread::sleep(Duration::from_millis(500));
    let o = podnet_in(&ns, root.path(), &["teardown"]);
    assert!(o.status.success(), "{:?}", text(&o));
    eprintln!("docker0, during teardown: {}", no_loss(pinger, COUNT));
    assert_eq!(
        serde_json::to_string_pretty(&dump(&ns)).expect("json"),
        serde_json::to_string_pretty(&before).expect("json"),
        "teardown gives docker0 back exactly"
    );
}
