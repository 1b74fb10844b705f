//! The `podnet` binary's front-end commands, end to end: exit codes, diagnostics output,
//! fmt and lock behaviour on real files in temporary directories.

use std::path::Path;
use std::process::{Command, Output};

#[path = "../../tests/support/examples.rs"]
mod support;
use support::examples;

fn podnet(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_podnet"))
        .args(args)
        .output()
        .expect("run podnet")
}

fn s(p: &Path) -> &str {
    p.to_str().expect("utf-8 path")
}

#[test]
fn check_passes_on_every_example() {
    for e in examples() {
        let out = podnet(&["check", s(&e)]);
        assert_eq!(
            out.status.code(),
            Some(0),
            "{}: {}",
            e.display(),
            String::from_utf8_lossy(&out.stderr)
        );
    }
}

#[test]
fn fmt_check_passes_on_every_example() {
    let podnet_files: Vec<_> = examples()
        .into_iter()
        .filter(|e| e.extension().is_some_and(|x| x == "podnet"))
        .collect();
    let mut args = vec!["fmt", "--check"];
    args.extend(podnet_files.iter().map(|p| s(p)));
    let out = podnet(&args);
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stdout)
    );
}

const FOUR_ERRORS: &str = "cluster demo {
    pod-cidr    10.244.0.0/16
    subnet-lenn 24
}
node a { address 10.0.0.1/24; subnet 10.244.1.0/24 }
node b { address 10.0.0.2/24; subnet 10.244.1.0/24 }
node c { address 10.0.0.3/24; subnet 10.99.1.0/24 }
node d { address 10.0.0.4/33; subnet 10.244.4.0/24 }
";

#[test]
fn check_reports_all_four_errors_in_one_run() {
    let dir = tempfile::tempdir().expect("tempdir");
    let f = dir.path().join("bad.podnet");
    std::fs::write(&f, FOUR_ERRORS).expect("write");

    let out = podnet(&["check", "--format", "json", s(&f)]);
    assert_eq!(out.status.code(), Some(1));
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).expect("json");
    let got: Vec<(String, u64, u64)> = v
        .as_array()
        .expect("array")
        .iter()
        .map(|d| {
            assert!(d["help"].is_string() && d["label"].is_string(), "{d}");
            (
                d["code"].as_str().unwrap_or("").to_string(),
                d["line"].as_u64().unwrap_or(0),
                d["column"].as_u64().unwrap_or(0),
            )
        })
        .collect();
    assert_eq!(
        got,
        vec![
            ("podnet::unknown_key".to_string(), 3, 5),
            ("podnet::overlapping_subnets".to_string(), 6, 38),
            ("podnet::subnet_outside_pod_cidr".to_string(), 7, 38),
            ("podnet::invalid_cidr".to_string(), 8, 27),
        ]
    );

    let human = podnet(&["check", s(&f)]);
    assert_eq!(human.status.code(), Some(1));
    let text = String::from_utf8_lossy(&human.stderr);
    assert!(text.contains("bad.podnet:3:5"), "{text}");
    assert!(text.contains("did you mean `subnet-len`?"), "{text}");
    assert!(text.contains("help:"), "{text}");
    assert!(text.contains("4 errors"), "{text}");
}

#[test]
fn host_gw_across_segments_suggests_vxlan_direct_routing() {
    let dir = tempfile::tempdir().expect("tempdir");
    let f = dir.path().join("l3.podnet");
    std::fs::write(
        &f,
        "cluster c {\n    pod-cidr 10.244.0.0/16\n    backend  host-gw\n}\nnode a { address 10.4.7.21/24 }\nnode b { address 10.4.8.22/24 }\n",
    )
    .expect("write");
    let out = podnet(&["check", "--format", "json", s(&f)]);
    assert_eq!(out.status.code(), Some(1));
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).expect("json");
    let d = &v[0];
    assert_eq!(d["code"], "podnet::host_gw_across_l2");
    assert!(
        d["help"]
            .as_str()
            .unwrap_or("")
            .contains("backend vxlan { direct-routing on }"),
        "{d}"
    );
}

#[test]
fn fmt_rewrites_and_then_checks_clean() {
    let dir = tempfile::tempdir().expect("tempdir");
    let f = dir.path().join("c.podnet");
    std::fs::write(&f, "cluster c{pod-cidr 10.244.0.0/16 # pods\n}\n").expect("write");
    assert_eq!(podnet(&["fmt", "--check", s(&f)]).status.code(), Some(1));
    assert_eq!(podnet(&["fmt", s(&f)]).status.code(), Some(0));
    assert_eq!(
        std::fs::read_to_string(&f).expect("read"),
        "cluster c {\n    pod-cidr 10.244.0.0/16  # pods\n}\n"
    );
    assert_eq!(podnet(&["fmt", "--check", s(&f)]).status.code(), Some(0));
    // A file with syntax errors is reported and left untouched.
    std::fs::write(&f, "cluster c {\n").expect("write");
    assert_eq!(podnet(&["fmt", s(&f)]).status.code(), Some(1));
    assert_eq!(std::fs::read_to_string(&f).expect("read"), "cluster c {\n");
}

#[test]
fn adding_a_node_changes_only_its_lock_entry() {
    let dir = tempfile::tempdir().expect("tempdir");
    let f = dir.path().join("cluster.podnet");
    let base = "cluster c {\n    pod-cidr 10.244.0.0/16\n}\nnode b { address 10.0.0.2/24 }\nnode a { address 10.0.0.1/24 }\n";
    std::fs::write(&f, base).expect("write");
    assert_eq!(
        podnet(&["lock", "--check", s(&f)]).status.code(),
        Some(1),
        "no lock yet"
    );
    assert_eq!(podnet(&["lock", s(&f)]).status.code(), Some(0));
    let lock = dir.path().join("cluster.podnet.lock");
    let before = std::fs::read_to_string(&lock).expect("lock written");
    assert_eq!(podnet(&["lock", "--check", s(&f)]).status.code(), Some(0));

    std::fs::write(&f, format!("{base}node c {{ address 10.0.0.3/24 }}\n")).expect("write");
    let check = podnet(&["lock", "--check", s(&f)]);
    assert_eq!(check.status.code(), Some(1));
    assert_eq!(
        String::from_utf8_lossy(&check.stdout),
        "+ c = 10.244.2.0/24\n"
    );
    assert_eq!(podnet(&["lock", s(&f)]).status.code(), Some(0));
    let after = std::fs::read_to_string(&lock).expect("lock");
    let removed: Vec<_> = before
        .lines()
        .filter(|l| !after.lines().any(|a| a == *l))
        .collect();
    let added: Vec<_> = after
        .lines()
        .filter(|l| !before.lines().any(|b| b == *l))
        .collect();
    assert!(removed.is_empty(), "{removed:?}");
    assert_eq!(added, vec!["\"c\" = \"10.244.2.0/24\""]);
    // check now uses the lock: every node has a subnet and the file is clean.
    assert_eq!(podnet(&["check", s(&f)]).status.code(), Some(0));
}
