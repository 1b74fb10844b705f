//! The node engine's refusals and exact teardown against the real kernel, one test per
//! defect class the review found: another node's plan, a missing firewall tool, a file
//! path escaping `--root`, a FIFO as input, a link planted between the engine's read and
//! its write (deterministically, through the library), status blind to firewall drift,
//! iptables-nft tables, directories and symbolic links left behind by teardown, and
//! teardown without a journal. Every namespace is the test's own and removed on drop.

mod common;

use std::os::unix::fs::symlink;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use common::node::{Node, bin};
use podnet::engine::{Access, Engine, EngineError};
use podnet::kernel::netns::Target;
use podnet_compiler::plan::{NodePlan, Planner};
use podnet_compiler::{FsLoader, UseLock, compile};

const CLUSTER: &str = "cluster t {
    pod-cidr 10.244.0.0/16
    backend host-gw
}
node a { address 10.77.0.1/24; subnet 10.244.1.0/24 }
node b { address 10.77.0.2/24; subnet 10.244.2.0/24 }
";

fn cluster_file(dir: &Path, text: &str) -> PathBuf {
    let p = dir.join("cluster.podnet");
    std::fs::write(&p, text).expect("write cluster file");
    p
}

fn plan_of(file: &Path, node: &str) -> NodePlan {
    let c = compile(&FsLoader, file, UseLock::IfPresent);
    Planner::new(c.valid_cluster().expect("valid cluster"))
        .plan_named(node)
        .expect("plan")
}

fn stdout(o: &std::process::Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

fn stderr(o: &std::process::Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

/// The node's links other than lo and eth0.
fn extra_links(n: &Node) -> Vec<String> {
    n.ns.ip(&["-o", "link", "show"])
        .lines()
        .filter_map(|l| l.split(": ").nth(1))
        .map(|name| name.split('@').next().unwrap_or(name).to_string())
        .filter(|name| name != "lo" && name != "eth0")
        .collect()
}

fn journal_exists(n: &Node) -> bool {
    n.root.path().join("var/lib/podnet/state.json").exists()
}

#[test]
fn another_nodes_plan_changes_nothing_and_names_this_node() {
    let n = Node::new("wn", "10.77.0.1/24");
    let dir = tempfile::tempdir().expect("dir");
    let file = cluster_file(dir.path(), CLUSTER);
    let f = file.to_str().expect("utf-8");
    let out = n.podnet(&["apply", f, "--node", "b"]);
    assert_eq!(out.status.code(), Some(1), "{}", stdout(&out));
    let err = stderr(&out);
    assert!(err.contains("this is not node b"), "{err}");
    assert!(
        err.contains("10.77.0.2/24 is not configured on eth0"),
        "{err}"
    );
    assert!(err.contains("pass --node a"), "{err}");
    assert!(extra_links(&n).is_empty(), "{:?}", extra_links(&n));
    assert!(!journal_exists(&n));
    // The same from a plan JSON, and for plan --live.
    let plan = dir.path().join("b.json");
    std::fs::write(
        &plan,
        serde_json::to_string(&plan_of(&file, "b")).expect("json"),
    )
    .expect("write plan");
    let out = n.podnet(&["apply", plan.to_str().expect("utf-8")]);
    assert_eq!(out.status.code(), Some(1));
    assert!(
        stderr(&out).contains("this is not node b"),
        "{}",
        stderr(&out)
    );
    let out = n.podnet(&["plan", f, "--node", "b", "--live"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(extra_links(&n).is_empty());
    // The right node applies.
    n.ok(&["apply", f]);
    assert_eq!(extra_links(&n), ["cni0"]);
    n.ok(&["teardown"]);
}

#[test]
fn a_missing_firewall_tool_changes_nothing_and_teardown_still_completes() {
    let n = Node::new("nt", "10.77.0.1/24");
    let dir = tempfile::tempdir().expect("dir");
    let file = cluster_file(dir.path(), CLUSTER);
    // A PATH without nft (podnet itself needs no other program for this plan).
    let empty = tempfile::tempdir().expect("empty PATH dir");
    let out = Command::new("ip")
        .args(["netns", "exec", &n.ns.name, "env"])
        .arg(format!("PATH={}", empty.path().display()))
        .args([
            &bin(),
            "apply",
            file.to_str().expect("utf-8"),
            "--root",
            n.root(),
        ])
        .output()
        .expect("spawn");
    assert_eq!(out.status.code(), Some(1), "{}", stdout(&out));
    let err = stderr(&out);
    assert!(err.contains("needs `nft`"), "{err}");
    assert!(err.contains("Debian package `nftables`"), "{err}");
    assert!(err.contains("firewall iptables"), "{err}");
    assert!(extra_links(&n).is_empty(), "{:?}", extra_links(&n));
    assert!(!journal_exists(&n));
    let out = Command::new("ip")
        .args(["netns", "exec", &n.ns.name, "env"])
        .arg(format!("PATH={}", empty.path().display()))
        .args([&bin(), "teardown", "--root", n.root()])
        .output()
        .expect("spawn");
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}{}",
        stdout(&out),
        stderr(&out)
    );
}

#[test]
fn a_file_that_would_escape_the_root_through_a_symlink_changes_nothing() {
    let n = Node::new("er", "10.77.0.1/24");
    let dir = tempfile::tempdir().expect("dir");
    let file = cluster_file(dir.path(), CLUSTER);
    let outside = tempfile::tempdir().expect("outside");
    symlink(outside.path(), n.root.path().join("etc")).expect("symlink etc");
    let out = n.podnet(&["apply", file.to_str().expect("utf-8")]);
    assert_eq!(out.status.code(), Some(1), "{}", stdout(&out));
    assert!(stderr(&out).contains("outside --root"), "{}", stderr(&out));
    assert!(extra_links(&n).is_empty());
    let written: Vec<_> = walk(outside.path());
    assert!(written.is_empty(), "written outside the root: {written:?}");
}

fn walk(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    let mut todo = vec![dir.to_path_buf()];
    for _ in 0..1000 {
        let Some(d) = todo.pop() else { break };
        for e in std::fs::read_dir(&d).into_iter().flatten().flatten() {
            let p = e.path();
            if p.is_dir() {
                todo.push(p.clone());
            }
            out.push(p);
        }
    }
    out
}

#[test]
fn a_fifo_as_input_is_refused_at_once_without_taking_the_lock() {
    let n = Node::new("ff", "10.77.0.1/24");
    let dir = tempfile::tempdir().expect("dir");
    let fifo = dir.path().join("cluster.podnet");
    common::run("mkfifo", &[fifo.to_str().expect("utf-8")]);
    let start = Instant::now();
    let mut child = Command::new("ip")
        .args(["netns", "exec", &n.ns.name, &bin(), "apply"])
        .arg(&fifo)
        .args(["--root", n.root()])
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("spawn");
    let status = loop {
        if let Some(s) = child.try_wait().expect("wait") {
            break Some(s);
        }
        if start.elapsed() > Duration::from_secs(10) {
            let _ = child.kill();
            let _ = child.wait();
            break None;
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    let status = status.expect("podnet apply FIFO must not block");
    assert_eq!(status.code(), Some(1));
    assert!(!n.root.path().join("var/lib/podnet/lock").exists());
}

#[test]
fn a_link_planted_between_read_and_write_stays_foreign_and_survives_teardown() {
    let n = Node::new("rl", "10.77.0.1/24");
    let dir = tempfile::tempdir().expect("dir");
    let file = cluster_file(dir.path(), CLUSTER);
    let plan = plan_of(&file, "a");
    // The engine acts on the named namespace from this (host-namespace) thread.
    let target = Target::named(&n.ns.name).expect("target");
    let mut e = Engine::open(target.clone(), Some(n.root.path()), Access::Write).expect("open");
    let early = e.observe_kernel().expect("observe");
    // The race window, opened deterministically: someone creates the bridge now.
    n.ns.ip(&["link", "add", "cni0", "type", "bridge"]);
    let r = e.reconcile(&plan, Some(early));
    match &r {
        Ok(done) => assert!(!done.converged(), "a foreign cni0 cannot converge"),
        Err(err) => assert!(!matches!(err, EngineError::Io(_)), "{err}"),
    }
    let j = podnet::journal::Journal::load(Some(n.root.path())).expect("journal");
    assert!(
        j.as_ref().is_none_or(|j| !j.links.contains_key("cni0")),
        "the foreign cni0 must not be journaled: {j:?}"
    );
    let alias = n.ns.ip(&["-d", "link", "show", "cni0"]);
    assert!(!alias.contains("alias podnet"), "{alias}");
    drop(e);
    let mut e = Engine::open(target, Some(n.root.path()), Access::Write).expect("open");
    let t = e.teardown().expect("teardown");
    assert!(t.failures.is_empty(), "{:?}", t.failures);
    assert_eq!(
        extra_links(&n),
        ["cni0"],
        "the foreign bridge survives teardown"
    );
}

#[test]
fn status_sees_a_deleted_firewall_table_and_plan_live_a_changed_rule() {
    let n = Node::new("sf", "10.77.0.1/24");
    let dir = tempfile::tempdir().expect("dir");
    let file = cluster_file(dir.path(), CLUSTER);
    let f = file.to_str().expect("utf-8");
    n.ok(&["apply", f]);
    assert_eq!(
        n.podnet(&["status", "--detailed-exitcode"]).status.code(),
        Some(0)
    );
    n.ns.sh("nft", &["delete", "table", "inet", "podnet"]);
    let out = n.podnet(&["status", "--detailed-exitcode"]);
    assert_eq!(out.status.code(), Some(2), "{}", stdout(&out));
    assert!(stdout(&out).contains("firewall"), "{}", stdout(&out));
    // (Without `--node` this was a usage error, which exited 2 like pending changes and
    // passed; usage errors exit 1 now.)
    let out = n.podnet(&["plan", f, "--node", "a", "--live", "--detailed-exitcode"]);
    assert_eq!(
        out.status.code(),
        Some(2),
        "{}{}",
        stdout(&out),
        stderr(&out)
    );
    assert!(
        stdout(&out).contains("+ firewall table inet podnet"),
        "a missing table is +: {}",
        stdout(&out)
    );
    n.ok(&["apply", f]);
    assert_eq!(
        n.podnet(&["status", "--detailed-exitcode"]).status.code(),
        Some(0)
    );
    n.ok(&["teardown"]);
}

fn nft_tables(n: &Node) -> String {
    n.ns.sh("nft", &["list", "tables"])
}

#[test]
fn iptables_teardown_removes_the_nft_tables_its_tools_created() {
    let n = Node::new("it", "10.77.0.1/24");
    let dir = tempfile::tempdir().expect("dir");
    let text = CLUSTER.replace("backend host-gw", "backend host-gw\n    firewall iptables");
    let file = cluster_file(dir.path(), &text);
    assert_eq!(nft_tables(&n).trim(), "");
    n.ok(&["apply", file.to_str().expect("utf-8")]);
    assert!(nft_tables(&n).contains("ip nat"), "{}", nft_tables(&n));
    let out = n.ok(&["teardown"]);
    assert_eq!(nft_tables(&n).trim(), "", "teardown output:\n{out}");
    // A table that existed before stays.
    n.ns.sh("nft", &["add", "table", "ip", "nat"]);
    n.ok(&["apply", file.to_str().expect("utf-8")]);
    n.ok(&["teardown"]);
    assert!(nft_tables(&n).contains("ip nat"));
    assert!(!nft_tables(&n).contains("ip filter"), "{}", nft_tables(&n));
}

#[test]
fn teardown_removes_the_directories_it_created_and_puts_a_symlinked_conflist_back() {
    let n = Node::new("ds", "10.77.0.1/24");
    let dir = tempfile::tempdir().expect("dir");
    let file = cluster_file(dir.path(), CLUSTER);
    let f = file.to_str().expect("utf-8");
    let root = n.root.path();
    n.ok(&["apply", f]);
    assert!(root.join("etc/cni/net.d/10-podnet.conflist").is_file());
    n.ok(&["teardown"]);
    assert!(
        !root.join("etc").exists(),
        "directories podnet created stay"
    );
    // A conflist that was a symbolic link comes back as the same link.
    std::fs::create_dir_all(root.join("etc/cni/net.d")).expect("mkdir");
    std::fs::create_dir_all(root.join("shared")).expect("mkdir");
    std::fs::write(root.join("shared/net.conflist"), "{\"theirs\": true}\n").expect("write");
    let link = root.join("etc/cni/net.d/10-podnet.conflist");
    symlink("../../../shared/net.conflist", &link).expect("symlink");
    n.ok(&["apply", f]);
    assert!(
        !link.is_symlink(),
        "podnet writes its own file over the link"
    );
    n.ok(&["teardown"]);
    assert!(link.is_symlink(), "the link comes back");
    assert_eq!(
        std::fs::read_link(&link).expect("readlink"),
        Path::new("../../../shared/net.conflist")
    );
    assert_eq!(
        std::fs::read_to_string(root.join("shared/net.conflist")).expect("read"),
        "{\"theirs\": true}\n"
    );
    assert!(
        root.join("etc/cni/net.d").is_dir(),
        "a directory that existed stays"
    );
}

#[test]
fn teardown_without_a_journal_removes_marked_objects_and_says_what_it_cannot_restore() {
    let n = Node::new("nj", "10.77.0.1/24");
    let dir = tempfile::tempdir().expect("dir");
    let file = cluster_file(dir.path(), CLUSTER);
    n.ok(&["apply", file.to_str().expect("utf-8")]);
    std::fs::remove_dir_all(n.root.path().join("var/lib/podnet")).expect("rm journal");
    let out = n.podnet(&["teardown"]);
    assert_eq!(out.status.code(), Some(1), "{}", stdout(&out));
    let text = stdout(&out);
    assert!(text.contains("- link cni0"), "{text}");
    assert!(
        text.contains("not restored: sysctl net.ipv4.ip_forward"),
        "{text}"
    );
    assert!(text.contains("10-podnet.conflist"), "{text}");
    assert!(extra_links(&n).is_empty());
    assert!(!nft_tables(&n).contains("podnet"), "{}", nft_tables(&n));
}

#[test]
fn an_invalid_plan_json_changes_nothing() {
    let n = Node::new("ip", "10.77.0.1/24");
    let dir = tempfile::tempdir().expect("dir");
    let file = cluster_file(dir.path(), CLUSTER);
    let good = serde_json::to_value(plan_of(&file, "a")).expect("json");
    n.ns.ip(&["route", "add", "default", "via", "10.77.0.254"]);
    // A converged node: nothing already applied may be lost to a bad plan.
    let good_file = dir.path().join("good.json");
    std::fs::write(&good_file, good.to_string()).expect("write");
    n.ok(&["apply", good_file.to_str().expect("utf-8")]);
    let routes_before = n.ns.ip(&["route", "show", "table", "all"]);
    let addrs_before = n.ns.ip(&["-o", "addr", "show"]);
    let nexthops_before = n.ns.ip(&["nexthop", "show"]);
    // (what, JSON pointer, value, text the error must contain)
    let cases: &[(&str, &str, serde_json::Value, &str)] = &[
        (
            "route protocol 3",
            "/route_protocol",
            3.into(),
            "protocol 3",
        ),
        (
            "a path with ..",
            "/files/0/path",
            "/etc/cni/net.d/../../../tmp/x.conflist".into(),
            "..",
        ),
        ("a setuid mode", "/files/0/mode", 0o4755.into(), "mode"),
        (
            "a sysctl podnet does not plan",
            "/sysctls/0/key",
            "kernel.core_pattern".into(),
            "kernel.core_pattern",
        ),
        (
            "an address on eth0",
            "/addresses/0/dev",
            "eth0".into(),
            "eth0",
        ),
        (
            "a 16-byte link name",
            "/links/0/name",
            "abcdefghijklmnop".into(),
            "abcdefghijklmnop",
        ),
        ("MTU 0", "/links/0/mtu", 0.into(), "MTU"),
        (
            "gateway 0.0.0.0",
            "/routes/0/via",
            "0.0.0.0".into(),
            "unicast",
        ),
        (
            "gateway 255.255.255.255",
            "/routes/0/via",
            "255.255.255.255".into(),
            "unicast",
        ),
        (
            "the underlay address on the bridge",
            "/addresses/0/address",
            "10.77.0.1/24".into(),
            "underlay",
        ),
        (
            "a route to 127.0.0.0/8",
            "/routes/0/dst",
            "127.0.0.0/8".into(),
            "127",
        ),
    ];
    for (what, pointer, value, needle) in cases {
        let mut bad = good.clone();
        *bad.pointer_mut(pointer).expect("pointer") = value.clone();
        let p = dir.path().join("bad.json");
        std::fs::write(&p, bad.to_string()).expect("write");
        let out = n.podnet(&["apply", p.to_str().expect("utf-8")]);
        assert_eq!(out.status.code(), Some(1), "{what}: {}", stdout(&out));
        let err = stderr(&out);
        assert!(err.contains("the plan is invalid"), "{what}: {err}");
        assert!(err.contains(needle), "{what}: {err}");
        assert_eq!(extra_links(&n), ["cni0"], "{what}");
        assert_eq!(
            n.ns.ip(&["route", "show", "table", "all"]),
            routes_before,
            "{what}"
        );
        assert_eq!(n.ns.ip(&["-o", "addr", "show"]), addrs_before, "{what}");
        assert_eq!(n.ns.ip(&["nexthop", "show"]), nexthops_before, "{what}");
        assert!(!dir.path().join("tmp").exists());
    }
    n.ok(&["teardown"]);
}
