//! `podnet lab` against the real kernel (root): every example comes up green; a deleted
//! route, a removed masquerade rule and a vxlan MTU raised to the underlay MTU each fail
//! naming exactly the broken pairs; `--then` host-gw → vxlan → host-gw stays green with no
//! leftovers; host-gw across segments is refused before anything is built; `--keep` +
//! `lab down`, a panic and a SIGINT mid-way all leave no namespace, link or file behind.
//! Faults are injected through the library between bring-up and probing.

mod common;

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

use podnet::lab::{self, Afterwards, CheckKind, Config, EngineConverge, Lab, LabOptions, Phase};
use podnet_compiler::plan::{LinkKind, NodePlan, Planner};
use podnet_compiler::{Cluster, FsLoader, UseLock, compile};

static NEXT: AtomicU32 = AtomicU32::new(0);

/// A lab id unique to this process and test: `t` + pid (hex) + a counter (≤ 12 bytes).
fn unique_id() -> String {
    format!(
        "t{:x}{}",
        std::process::id() & 0xfffff,
        NEXT.fetch_add(1, Ordering::SeqCst)
    )
}

fn examples() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../examples")
}

/// Compiles a file (with its lock) and plans every node.
fn compiled(file: &Path) -> (Cluster, Vec<NodePlan>) {
    let c = compile(&FsLoader, file, UseLock::IfPresent);
    let cluster = c
        .valid_cluster()
        .unwrap_or_else(|| panic!("{}: {:?}", file.display(), c.diagnostics))
        .clone();
    let planner = Planner::new(&cluster);
    let plans = (0..planner.len())
        .map(|i| planner.plan(i).expect("plan"))
        .collect();
    (cluster, plans)
}

/// Writes `src` to a temporary cluster file and compiles it.
fn compiled_text(dir: &Path, name: &str, src: &str) -> (PathBuf, Cluster, Vec<NodePlan>) {
    let f = dir.join(name);
    std::fs::write(&f, src).expect("write cluster file");
    let (c, p) = compiled(&f);
    (f, c, p)
}

/// Namespaces under /run/netns starting with `ID-`.
fn namespaces_of(id: &str) -> Vec<String> {
    let prefix = format!("{id}-");
    std::fs::read_dir("/run/netns")
        .map(|d| {
            d.flatten()
                .filter_map(|e| e.file_name().into_string().ok())
                .filter(|n| n.starts_with(&prefix))
                .collect()
        })
        .unwrap_or_default()
}

/// The host namespace's link names (read only).
fn host_links() -> BTreeSet<String> {
    let out = common::run("ip", &["-o", "link", "show"]);
    out.lines()
        .filter_map(|l| l.split(':').nth(1))
        .map(|n| n.trim().split('@').next().unwrap_or("").to_string())
        .collect()
}

/// Asserts that lab `id` left nothing: no namespace, no state directory, no new host link.
fn assert_gone(id: &str, state: &Path, links_before: &BTreeSet<String>) {
    assert_eq!(
        namespaces_of(id),
        Vec::<String>::new(),
        "namespaces of lab {id} left"
    );
    assert!(!state.join(id).exists(), "state directory of lab {id} left");
    let new: Vec<_> = host_links().difference(links_before).cloned().collect();
    assert!(
        new.iter().all(|l| !l.starts_with(id)),
        "host links appeared: {new:?}"
    );
}

fn options(state: &Path) -> LabOptions {
    LabOptions {
        id: Some(unique_id()),
        pods: 2,
        state_dir: state.to_path_buf(),
        ..LabOptions::default()
    }
}

/// Builds, converges and attaches (the steps `lab::run` does), for a fault to be injected
/// before probing.
fn ready(cluster: &Cluster, file: &Path, plans: &[NodePlan], opts: &LabOptions) -> Lab {
    let quiet = |_: &str, _: usize, _: usize| {};
    let mut lab = Lab::up(cluster, plans, opts, &quiet).expect("lab up");
    lab.converge(&EngineConverge, file, plans, &quiet)
        .expect("converge");
    lab.attach(plans, &quiet).expect("attach pods");
    lab
}

/// (check, source label, destination label) of every failure.
fn failures(p: &Phase) -> BTreeSet<(CheckKind, String, String)> {
    p.failures()
        .iter()
        .map(|f| {
            (
                f.kind,
                p.endpoints[f.pair.src].label.clone(),
                p.endpoints[f.pair.dst].label.clone(),
            )
        })
        .collect()
}

fn quiet(_: &str, _: usize, _: usize) {}

#[test]
fn every_example_comes_up_green() {
    let state = tempfile::tempdir().expect("state dir");
    let links = host_links();
    let mut files: Vec<PathBuf> = std::fs::read_dir(examples())
        .expect("examples")
        .flatten()
        .map(|e| e.path())
        .filter(|p| p.extension().is_some_and(|e| e == "podnet" || e == "toml"))
        .collect();
    files.sort();
    assert!(files.len() >= 5, "examples: {files:?}");
    for f in &files {
        let (cluster, plans) = compiled(f);
        let opts = options(state.path());
        let id = opts.id.clone().expect("id");
        let r = lab::run(
            Config {
                file: f,
                cluster: &cluster,
                plans: &plans,
            },
            &[],
            &opts,
            Afterwards::Down,
            &EngineConverge,
            &quiet,
        )
        .unwrap_or_else(|e| panic!("{}: {e}", f.display()));
        assert!(r.ok(), "{}:\n{}", f.display(), lab::report::text(&r));
        // JUnit and JSON come from the same result.
        let junit = lab::report::junit(&r);
        assert!(junit.contains("failures=\"0\""), "{junit}");
        assert!(!junit.contains("<failure"), "{junit}");
        assert_eq!(lab::report::json(&r)["checks"], r.counts().1);
        let (failed, checks, lost, probes) = r.counts();
        assert_eq!((failed, lost), (0, 0));
        // pods × (pods + nodes + outside) at least.
        assert!(
            checks > 3 * plans.len() * 2,
            "{}: {checks} checks",
            f.display()
        );
        assert!(probes > 0);
        assert_gone(&id, state.path(), &links);
    }
}

#[test]
fn vxlan_direct_example_routes_inside_a_segment_and_tunnels_across() {
    // The example this test relies on: two segments, vxlan with direct routing.
    let f = examples().join("vxlan-direct.podnet");
    let (cluster, plans) = compiled(&f);
    let segs = podnet_compiler::topology::segments(&cluster);
    assert_eq!(segs.len(), 2);
    let a1 = &plans[0];
    // a2 (same segment) by a plain route on eth0, b1 (other segment) through the tunnel.
    assert!(
        a1.routes
            .iter()
            .any(|r| r.dst.to_string() == "10.50.2.0/24" && r.dev == "eth0")
    );
    assert!(
        a1.routes
            .iter()
            .any(|r| r.dst.to_string() == "10.50.3.0/24" && r.dev != "eth0" && r.onlink)
    );
}

#[test]
fn a_deleted_route_fails_exactly_the_pairs_behind_it() {
    let state = tempfile::tempdir().expect("state dir");
    let links = host_links();
    let f = examples().join("vxlan-direct.podnet");
    let (cluster, plans) = compiled(&f);
    let opts = options(state.path());
    let id = opts.id.clone().expect("id");
    {
        let mut lab = ready(&cluster, &f, &plans, &opts);
        // a1 loses its tunnel route to b1's pods.
        let a1 = lab.plan().nodes[0].ns.clone();
        common::run("ip", &["-n", &a1, "route", "del", "10.50.3.0/24"]);
        let start = Instant::now();
        let p = lab.probe(&cluster, &f, &quiet).expect("probe");
        assert!(
            start.elapsed() < Duration::from_secs(3),
            "a broken pair must fail fast: {:?}",
            start.elapsed()
        );
        let fails = failures(&p);
        assert!(!fails.is_empty());
        for (kind, src, dst) in &fails {
            assert!(
                src.starts_with("a1") && dst.starts_with("b1/p"),
                "unexpected failure {kind:?} {src} → {dst}"
            );
        }
        // Every source on a1 fails to reach each of b1's pods; nothing else breaks.
        for src in ["a1/p1", "a1/p2", "a1"] {
            for dst in ["b1/p1", "b1/p2"] {
                assert!(
                    fails.contains(&(CheckKind::Reach, src.to_string(), dst.to_string())),
                    "{src} → {dst} not reported: {fails:?}"
                );
            }
        }
        assert_eq!(
            fails.iter().filter(|f| f.0 == CheckKind::Reach).count(),
            6,
            "{fails:?}"
        );
        let text = lab::report::text(&lab::LabResult {
            lab: id.clone(),
            cluster: cluster.name.value.clone(),
            phases: vec![p],
            bring_up: Duration::ZERO,
            down: None,
            kept: None,
        });
        assert!(text.contains("FAIL reach  a1/p1 (10.50.1."), "{text}");
        assert!(text.contains("18/"), "{text}");
        lab.down().expect("down");
    }
    assert_gone(&id, state.path(), &links);
}

#[test]
fn a_removed_masquerade_rule_shows_pod_ips_outside() {
    let state = tempfile::tempdir().expect("state dir");
    let links = host_links();
    let f = examples().join("hdss7.podnet");
    let (cluster, plans) = compiled(&f);
    let opts = options(state.path());
    let id = opts.id.clone().expect("id");
    {
        let mut lab = ready(&cluster, &f, &plans, &opts);
        let n21 = lab.plan().nodes[0].ns.clone();
        common::run(
            "ip",
            &[
                "netns",
                "exec",
                &n21,
                "nft",
                "flush",
                "chain",
                "inet",
                "podnet",
                "postrouting",
            ],
        );
        let p = lab.probe(&cluster, &f, &quiet).expect("probe");
        let fails = failures(&p);
        let expected: BTreeSet<_> = ["hdss7-21.host.com/p1", "hdss7-21.host.com/p2"]
            .iter()
            .map(|s| (CheckKind::Source, s.to_string(), "outside".to_string()))
            .collect();
        assert_eq!(fails, expected);
        // The outside host saw the pods' own addresses.
        for f in p.failures() {
            let seen = p.seen[f.index].small.expect("arrived");
            assert_eq!(seen, p.endpoints[f.pair.src].address);
            assert!(f.why.contains("expected 10.4.7.21"), "{}", f.why);
        }
    }
    assert_gone(&id, state.path(), &links);
}

#[test]
fn a_vxlan_mtu_raised_to_the_underlay_mtu_fails_the_df_probe() {
    let state = tempfile::tempdir().expect("state dir");
    let links = host_links();
    let dir = tempfile::tempdir().expect("dir");
    let (f, cluster, mut plans) = compiled_text(
        dir.path(),
        "vx.podnet",
        "cluster vx { pod-cidr 10.70.0.0/16; backend vxlan }\n\
         node v1 { address 10.30.0.11/24; subnet 10.70.1.0/24 }\n\
         node v2 { address 10.30.0.12/24; subnet 10.70.2.0/24 }\n",
    );
    // The fault: the pod network's MTU raised to the underlay's (the bridge and the pods,
    // through the conflist). The vxlan device itself cannot follow: the kernel refuses a
    // vxlan MTU above the underlay MTU minus its 50 bytes (EINVAL), so it stays at 1450.
    for p in &mut plans {
        for l in &mut p.links {
            if l.kind == LinkKind::Bridge {
                l.mtu = 1500;
            }
        }
        for file in &mut p.files {
            file.content = file.content.replace("\"mtu\": 1450", "\"mtu\": 1500");
        }
    }
    let opts = options(state.path());
    let id = opts.id.clone().expect("id");
    {
        let mut lab = ready(&cluster, &f, &plans, &opts);
        let p = lab.probe(&cluster, &f, &quiet).expect("probe");
        assert_eq!(p.pod_mtu, 1500);
        let fails = failures(&p);
        assert!(!fails.is_empty(), "the DF probe crossed a too-small tunnel");
        // Only MTU checks fail, and only towards pods of another node (through the
        // tunnel); anything to a node or the outside goes over the underlay and fits.
        for (kind, src, dst) in &fails {
            assert_eq!(*kind, CheckKind::Mtu, "{src} → {dst}");
            assert!(dst.contains("/p"), "{src} → {dst}");
            assert_ne!(
                src.split('/').next(),
                dst.split('/').next(),
                "{src} → {dst}"
            );
        }
        // Every tunnel pair fails: per node, its 2 pods and itself × the other's 2 pods.
        assert_eq!(fails.len(), 12, "{fails:?}");
    }
    assert_gone(&id, state.path(), &links);
}

#[test]
fn then_host_gw_vxlan_host_gw_stays_green_without_leftovers() {
    let state = tempfile::tempdir().expect("state dir");
    let links = host_links();
    let dir = tempfile::tempdir().expect("dir");
    let hg = "cluster live { pod-cidr 10.80.0.0/16; backend host-gw; masquerade outbound }\n\
              node l1 { address 10.40.0.11/24; subnet 10.80.1.0/24 }\n\
              node l2 { address 10.40.0.12/24; subnet 10.80.2.0/24 }\n\
              node l3 { address 10.40.0.13/24; subnet 10.80.3.0/24 }\n";
    let (f1, c1, p1) = compiled_text(dir.path(), "hg.podnet", hg);
    let (f2, c2, p2) = compiled_text(
        dir.path(),
        "vx.podnet",
        &hg.replace("backend host-gw", "backend vxlan"),
    );
    let opts = options(state.path());
    let id = opts.id.clone().expect("id");
    let hostgw = Config {
        file: &f1,
        cluster: &c1,
        plans: &p1,
    };
    let vxlan = Config {
        file: &f2,
        cluster: &c2,
        plans: &p2,
    };
    let r = lab::run(
        hostgw,
        &[vxlan, hostgw],
        &opts,
        Afterwards::Down,
        &EngineConverge,
        &quiet,
    )
    .expect("lab run");
    assert_eq!(r.phases.len(), 3);
    assert!(r.ok(), "{}", lab::report::text(&r));
    assert_eq!(r.phases[1].pod_mtu, 1450);
    assert_eq!(r.phases[2].pod_mtu, 1500);
    for p in &r.phases[1..] {
        assert_eq!(p.leftovers.len(), 3, "every node checked");
        assert!(p.leftovers.iter().all(|(_, l)| l.is_empty()));
    }
    assert_gone(&id, state.path(), &links);
}

#[test]
fn leftovers_of_an_earlier_configuration_are_reported() {
    // The leftover check itself: a foreign-to-the-plan route of podnet's protocol planted
    // after converging is reported as drift of that node.
    let state = tempfile::tempdir().expect("state dir");
    let f = examples().join("hdss7.podnet");
    let (cluster, plans) = compiled(&f);
    let opts = options(state.path());
    let lab = ready(&cluster, &f, &plans, &opts);
    assert!(
        lab.leftovers(&plans)
            .expect("drift")
            .iter()
            .all(|(_, l)| l.is_empty())
    );
    let n22 = lab.plan().nodes[1].ns.clone();
    common::run(
        "ip",
        &[
            "-n",
            &n22,
            "route",
            "add",
            "172.7.99.0/24",
            "via",
            "10.4.7.21",
            "proto",
            "77",
        ],
    );
    let left = lab.leftovers(&plans).expect("drift");
    assert!(left[0].1.is_empty());
    assert!(
        left[1].1.iter().any(|l| l.contains("172.7.99.0/24")),
        "{left:?}"
    );
}

#[test]
fn a_panic_removes_the_lab() {
    let state = tempfile::tempdir().expect("state dir");
    let links = host_links();
    let f = examples().join("hdss7.podnet");
    let (cluster, plans) = compiled(&f);
    let opts = options(state.path());
    let id = opts.id.clone().expect("id");
    let r = std::panic::catch_unwind(|| {
        let _lab = ready(&cluster, &f, &plans, &opts);
        assert!(!namespaces_of(opts.id.as_deref().expect("id")).is_empty());
        panic!("a bug between bring-up and probing");
    });
    assert!(r.is_err());
    assert_gone(&id, state.path(), &links);
}

fn bin() -> String {
    common::node::bin()
}

#[test]
fn host_gw_across_segments_is_refused_before_anything_is_built() {
    let state = tempfile::tempdir().expect("state dir");
    let dir = tempfile::tempdir().expect("dir");
    let f = dir.path().join("bad.podnet");
    std::fs::write(
        &f,
        "cluster bad { pod-cidr 10.90.0.0/16; backend host-gw }\n\
         node x1 { address 10.41.1.11/24; subnet 10.90.1.0/24 }\n\
         node x2 { address 10.41.2.11/24; subnet 10.90.2.0/24 }\n",
    )
    .expect("write");
    let id = unique_id();
    let out = Command::new(bin())
        .args(["lab", f.to_str().expect("utf-8"), "--name", &id])
        .env("PODNET_LAB_DIR", state.path())
        .output()
        .expect("run podnet lab");
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("podnet::host_gw_across_l2"), "{err}");
    assert!(err.contains("nothing was built"), "{err}");
    assert!(namespaces_of(&id).is_empty());
    assert!(!state.path().join(&id).exists());
}

#[test]
fn keep_leaves_the_lab_up_and_lab_down_removes_it() {
    let state = tempfile::tempdir().expect("state dir");
    let links = host_links();
    let id = unique_id();
    let f = examples().join("hdss7.podnet");
    let out = Command::new(bin())
        .args([
            "lab",
            f.to_str().expect("utf-8"),
            "--keep",
            "--name",
            &id,
            "--format",
            "json",
        ])
        .env("PODNET_LAB_DIR", state.path())
        .output()
        .expect("run podnet lab");
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).expect("json");
    assert_eq!(v["ok"], true);
    assert_eq!(v["kept"], id.as_str());
    let mut ns = namespaces_of(&id);
    ns.sort();
    assert!(ns.contains(&format!("{id}-hdss7-21.host.com")), "{ns:?}");
    assert!(ns.contains(&format!("{id}-hdss7-22.host.com-p2")), "{ns:?}");
    // The kept node still has its pods' network.
    common::run(
        "ip",
        &[
            "-n",
            &format!("{id}-hdss7-21.host.com"),
            "link",
            "show",
            "docker0",
        ],
    );
    let down = Command::new(bin())
        .args(["lab", "down", &id])
        .env("PODNET_LAB_DIR", state.path())
        .output()
        .expect("run podnet lab down");
    assert_eq!(
        down.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&down.stderr)
    );
    assert!(String::from_utf8_lossy(&down.stdout).contains(&format!("lab {id} removed")));
    assert_gone(&id, state.path(), &links);
}

#[test]
fn sigint_mid_way_leaves_nothing_behind() {
    let state = tempfile::tempdir().expect("state dir");
    let links = host_links();
    let dir = tempfile::tempdir().expect("dir");
    // Large enough to be interrupted while it is being built.
    let f = dir.path().join("big.podnet");
    let mut src = String::from("cluster big { pod-cidr 10.100.0.0/16; backend vxlan }\n");
    for i in 0..40 {
        src.push_str(&format!(
            "node b{i} {{ address 10.42.0.{}/24; subnet 10.100.{i}.0/24 }}\n",
            i + 10
        ));
    }
    std::fs::write(&f, src).expect("write");
    let id = unique_id();
    let mut child = Command::new(bin())
        .args(["lab", f.to_str().expect("utf-8"), "--name", &id])
        .env("PODNET_LAB_DIR", state.path())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn podnet lab");
    // Wait (bounded) until its first namespaces exist, then interrupt it.
    let deadline = Instant::now() + Duration::from_secs(20);
    while namespaces_of(&id).len() < 5 {
        assert!(Instant::now() < deadline, "the lab never started");
        assert!(
            child.try_wait().expect("wait").is_none(),
            "the lab ended early"
        );
        std::thread::sleep(Duration::from_millis(5));
    }
    let pid = nix::unistd::Pid::from_raw(i32::try_from(child.id()).expect("pid"));
    nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGINT).expect("SIGINT");
    let deadline = Instant::now() + Duration::from_secs(30);
    let status = loop {
        if let Some(s) = child.try_wait().expect("wait") {
            break s;
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            panic!("the lab did not stop after SIGINT");
        }
        std::thread::sleep(Duration::from_millis(10));
    };
    let err = child
        .stderr
        .take()
        .map(|mut e| {
            let mut s = String::new();
            let _ = std::io::Read::read_to_string(&mut e, &mut s);
            s
        })
        .unwrap_or_default();
    assert_eq!(status.code(), Some(1), "{err}");
    assert!(err.contains("interrupted"), "{err}");
    assert_gone(&id, state.path(), &links);
}

/// The `podnet watch` processes whose root lies under `dir`.
fn daemons_under(dir: &Path) -> Vec<String> {
    let d = dir.to_string_lossy().to_string();
    std::fs::read_dir("/proc")
        .into_iter()
        .flatten()
        .flatten()
        .filter_map(|e| std::fs::read(e.path().join("cmdline")).ok())
        .map(|c| String::from_utf8_lossy(&c).replace('\0', " "))
        .filter(|c| c.contains(" watch ") && c.contains(&d))
        .collect()
}

#[test]
fn watch_daemons_follow_a_published_file_through_host_gw_vxlan_host_gw() {
    let state = tempfile::tempdir().expect("state dir");
    let links = host_links();
    let dir = tempfile::tempdir().expect("dir");
    let hg = "cluster live { pod-cidr 10.81.0.0/16; backend host-gw; masquerade outbound }\n\
              node w1 { address 10.41.0.11/24; subnet 10.81.1.0/24 }\n\
              node w2 { address 10.41.0.12/24; subnet 10.81.2.0/24 }\n";
    let f1 = dir.path().join("hg.podnet");
    let f2 = dir.path().join("vx.podnet");
    std::fs::write(&f1, hg).expect("write");
    std::fs::write(&f2, hg.replace("backend host-gw", "backend vxlan")).expect("write");
    let id = unique_id();
    let out = Command::new(bin())
        .args([
            "lab",
            f1.to_str().expect("utf-8"),
            "--watch",
            "--then",
            f2.to_str().expect("utf-8"),
            "--then",
            f1.to_str().expect("utf-8"),
            "--name",
            &id,
            "--format",
            "json",
        ])
        .env("PODNET_LAB_DIR", state.path())
        .output()
        .expect("podnet lab --watch");
    let text = String::from_utf8_lossy(&out.stdout);
    assert_eq!(
        out.status.code(),
        Some(0),
        "{text}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let v: serde_json::Value = serde_json::from_str(&text).expect("json");
    let phases = v["phases"].as_array().expect("phases");
    assert_eq!(phases.len(), 3, "{v:#}");
    // The daemons, not the lab, moved the nodes: vxlan's pod MTU, then host-gw's again,
    // each checked for leftovers of the configuration before.
    let mtus: Vec<u64> = phases
        .iter()
        .filter_map(|p| p["pod_mtu"].as_u64())
        .collect();
    assert_eq!(mtus, vec![1500, 1450, 1500], "{v:#}");
    assert!(
        phases
            .iter()
            .all(|p| p["ok"] == true && p["leftovers"] == serde_json::json!([])),
        "{v:#}"
    );
    assert_eq!(
        daemons_under(state.path()),
        Vec::<String>::new(),
        "daemons left running"
    );
    assert_gone(&id, state.path(), &links);
}
