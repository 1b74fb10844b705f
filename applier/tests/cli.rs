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

// ---- inputs read safely -------------------------------------------------------------------

/// Runs podnet, killing it (and failing the test) if it takes longer than `secs`.
fn podnet_within(secs: u64, args: &[&str]) -> Output {
    use std::time::{Duration, Instant};
    let mut child = Command::new(env!("CARGO_BIN_EXE_podnet"))
        .args(args)
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("spawn podnet");
    let deadline = Instant::now() + Duration::from_secs(secs);
    loop {
        if child.try_wait().expect("wait").is_some() {
            return child.wait_with_output().expect("output");
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            panic!("podnet {args:?} did not finish within {secs} s");
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

const TWO_NODES: &str = "cluster c {\n    pod-cidr 10.244.0.0/16\n}\nnode a { address 10.0.0.1/24 }\nnode b { address 10.0.0.2/24 }\n";

#[test]
fn an_unreadable_lock_is_an_error_and_is_left_untouched() {
    for case in ["directory", "not-utf8", "not-toml"] {
        let dir = tempfile::tempdir().expect("tempdir");
        let f = dir.path().join("cluster.podnet");
        std::fs::write(&f, TWO_NODES).expect("write");
        let lock = dir.path().join("cluster.podnet.lock");
        let bytes: &[u8] = match case {
            "directory" => {
                std::fs::create_dir(&lock).expect("mkdir");
                b""
            }
            "not-utf8" => b"version = 1\ncluster = \"c\xff\"\n",
            _ => b"version = 1\ncluster = [\n",
        };
        if case != "directory" {
            std::fs::write(&lock, bytes).expect("write lock");
        }
        for args in [
            vec!["lock", s(&f)],
            vec!["lock", "--check", s(&f)],
            vec!["check", s(&f)],
            vec!["plan", s(&f), "--node", "a"],
        ] {
            let out = podnet_within(30, &args);
            let err = stderr(&out);
            assert_eq!(out.status.code(), Some(1), "{case} {args:?}: {err}");
            assert!(
                err.contains("cluster.podnet.lock"),
                "{case} {args:?}: names the lock file: {err}"
            );
            if case == "directory" {
                assert!(lock.is_dir(), "{case} {args:?}: lock replaced");
            } else {
                assert_eq!(
                    std::fs::read(&lock).expect("lock"),
                    bytes,
                    "{case} {args:?}: lock rewritten"
                );
            }
        }
        let json = podnet_within(30, &["check", "--format", "json", s(&f)]);
        let v: serde_json::Value = serde_json::from_slice(&json.stdout).expect("json");
        let d = &v[0];
        assert!(
            d["file"]
                .as_str()
                .is_some_and(|p| p.ends_with("cluster.podnet.lock")),
            "{case}: located in the lock file: {v}"
        );
        assert!(d["help"].is_string() && d["line"].is_u64(), "{case}: {v}");
    }
}

#[test]
fn an_include_outside_the_cluster_directory_is_refused_unread() {
    let dir = tempfile::tempdir().expect("tempdir");
    let repo = dir.path().join("repo");
    std::fs::create_dir_all(repo.join("racks")).expect("mkdir");
    let secret = dir.path().join("secret.podnet");
    std::fs::write(&secret, "node TOP-SECRET-CONTENT { address 10.0.0.9/24 }\n").expect("write");
    std::os::unix::fs::symlink(&secret, repo.join("racks/evil.podnet")).expect("symlink");
    for include in ["../secret.podnet", "racks/evil.podnet", "racks/*.podnet"] {
        let f = repo.join("cluster.podnet");
        std::fs::write(
            &f,
            format!("cluster c {{\n    pod-cidr 10.244.0.0/16\n}}\ninclude \"{include}\"\n"),
        )
        .expect("write");
        for format in ["human", "json"] {
            let out = podnet_within(30, &["check", "--format", format, s(&f)]);
            let all = format!("{}{}", String::from_utf8_lossy(&out.stdout), stderr(&out));
            assert_eq!(out.status.code(), Some(1), "{include}: {all}");
            assert!(all.contains("podnet::include_outside"), "{include}: {all}");
            assert!(
                !all.contains("TOP-SECRET"),
                "{include}: content shown: {all}"
            );
        }
    }
}

#[test]
fn a_glob_through_a_symlink_loop_ends() {
    let dir = tempfile::tempdir().expect("tempdir");
    let racks = dir.path().join("racks");
    std::fs::create_dir_all(racks.join("r1")).expect("mkdir");
    std::os::unix::fs::symlink("..", racks.join("loop")).expect("symlink");
    std::fs::write(
        racks.join("r1/a.podnet"),
        "node a { address 10.0.0.1/24; subnet 10.244.1.0/24 }\n",
    )
    .expect("a");
    std::fs::write(
        racks.join("b.podnet"),
        "node b { address 10.0.0.2/24; subnet 10.244.2.0/24 }\n",
    )
    .expect("b");
    let f = dir.path().join("cluster.podnet");
    std::fs::write(
        &f,
        "cluster c {\n    pod-cidr 10.244.0.0/16\n}\ninclude \"racks/**/*.podnet\"\n",
    )
    .expect("write");
    let out = podnet_within(20, &["check", s(&f)]);
    let err = stderr(&out);
    assert_eq!(out.status.code(), Some(0), "{err}");
    assert!(err.contains("2 nodes"), "{err}");
}

#[test]
fn only_regular_files_are_read() {
    let dir = tempfile::tempdir().expect("tempdir");
    let fifo = dir.path().join("fifo.podnet");
    nix::unistd::mkfifo(&fifo, nix::sys::stat::Mode::from_bits_truncate(0o600)).expect("mkfifo");
    let out = podnet_within(10, &["check", s(&fifo)]);
    let err = stderr(&out);
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert!(err.contains("not a regular file"), "{err}");
    let out = podnet_within(10, &["fmt", s(&fifo)]);
    assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));

    // The same as an include, and a directory as the cluster file or an include.
    std::fs::create_dir(dir.path().join("dir.podnet")).expect("mkdir");
    let f = dir.path().join("cluster.podnet");
    for include in ["fifo.podnet", "dir.podnet"] {
        std::fs::write(
            &f,
            format!("cluster c {{\n    pod-cidr 10.244.0.0/16\n}}\ninclude \"{include}\"\n"),
        )
        .expect("write");
        let out = podnet_within(10, &["check", s(&f)]);
        let err = stderr(&out);
        assert_eq!(out.status.code(), Some(1), "{include}: {err}");
        assert!(err.contains("not a regular file"), "{include}: {err}");
    }
    let out = podnet_within(10, &["check", s(&dir.path().join("dir.podnet"))]);
    assert_eq!(out.status.code(), Some(1));
    assert!(
        stderr(&out).contains("not a regular file"),
        "{}",
        stderr(&out)
    );
}

#[test]
fn an_input_over_the_size_limit_is_refused() {
    let dir = tempfile::tempdir().expect("tempdir");
    let f = dir.path().join("huge.podnet");
    let file = std::fs::File::create(&f).expect("create");
    file.set_len(65 << 20).expect("sparse file");
    let out = podnet_within(10, &["check", s(&f)]);
    let err = stderr(&out);
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert!(err.contains("larger than the 64 MiB limit"), "{err}");
}

// ---- symlinks are written through ---------------------------------------------------------

#[test]
fn fmt_formats_a_symlink_target_and_keeps_the_link() {
    let dir = tempfile::tempdir().expect("tempdir");
    std::fs::create_dir(dir.path().join("real")).expect("mkdir");
    let target = dir.path().join("real/c.podnet");
    std::fs::write(&target, "cluster c{pod-cidr 10.244.0.0/16}\n").expect("write");
    let link = dir.path().join("c.podnet");
    std::os::unix::fs::symlink("real/c.podnet", &link).expect("symlink");
    let out = podnet(&["fmt", s(&link)]);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    assert!(
        std::fs::symlink_metadata(&link)
            .expect("link")
            .file_type()
            .is_symlink(),
        "the link was replaced by a file"
    );
    assert_eq!(
        std::fs::read_to_string(&target).expect("read"),
        "cluster c { pod-cidr 10.244.0.0/16 }\n"
    );
    assert_eq!(podnet(&["fmt", "--check", s(&link)]).status.code(), Some(0));
}

#[test]
fn lock_writes_through_a_symlinked_lock_file() {
    let dir = tempfile::tempdir().expect("tempdir");
    let f = dir.path().join("cluster.podnet");
    std::fs::write(&f, TWO_NODES).expect("write");
    std::fs::create_dir(dir.path().join("store")).expect("mkdir");
    let lock = dir.path().join("cluster.podnet.lock");
    std::os::unix::fs::symlink("store/c.lock", &lock).expect("symlink");
    // A dangling link is a lock yet to be written, at its target.
    let out = podnet(&["lock", s(&f)]);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    std::fs::write(&f, format!("{TWO_NODES}node d {{ address 10.0.0.4/24 }}\n")).expect("write");
    let out = podnet(&["lock", s(&f)]);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    assert!(
        std::fs::symlink_metadata(&lock)
            .expect("link")
            .file_type()
            .is_symlink(),
        "the link was replaced by a file"
    );
    let text = std::fs::read_to_string(dir.path().join("store/c.lock")).expect("target");
    assert!(text.contains("\"d\" = \"10.244.2.0/24\""), "{text}");
    assert_eq!(podnet(&["lock", "--check", s(&f)]).status.code(), Some(0));
}

// ---- import flannel ---------------------------------------------------------------------

fn import_data(case: &str) -> std::path::PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../tests/data/import")
        .join(case)
}

#[test]
fn import_flannel_writes_a_file_that_checks_locks_and_is_formatted() {
    let dir = tempfile::tempdir().expect("tempdir");
    let out = dir.path().join("repo");
    let case = import_data("ok/host-gw-etcd");
    let r = podnet(&[
        "import",
        "flannel",
        "--etcd",
        s(&case.join("etcd.json")),
        "--subnet-env",
        s(&case.join("subnet-21.env")),
        s(&case.join("subnet-22.env")),
        "--name",
        "hdss7",
        "--underlay-prefix",
        "24",
        "--out",
        s(&out),
    ]);
    let stderr = String::from_utf8_lossy(&r.stderr);
    assert!(r.status.success(), "{stderr}");
    assert!(
        stderr.contains("warning: ") && stderr.contains("SubnetMin"),
        "{stderr}"
    );
    let file = out.join("cluster.podnet");
    for args in [
        vec!["check", s(&file)],
        vec!["lock", "--check", s(&file)],
        vec!["fmt", "--check", s(&file)],
    ] {
        let r = podnet(&args);
        assert!(
            r.status.success(),
            "{args:?}: {}",
            String::from_utf8_lossy(&r.stderr)
        );
    }
    let text = std::fs::read_to_string(&file).expect("cluster file");
    assert!(text.contains("node 10.4.7.21 { address 10.4.7.21/24; subnet 172.7.21.0/24 }"));
    // A second import does not replace the reviewed file unless asked to.
    let again = podnet(&[
        "import",
        "flannel",
        "--etcd",
        s(&case.join("etcd.json")),
        "--ip-masq",
        "false",
        "--underlay-prefix",
        "24",
        "--out",
        s(&out),
    ]);
    assert_eq!(again.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&again.stderr).contains("--force"));
    assert_eq!(std::fs::read_to_string(&file).expect("unchanged"), text);
}

#[test]
fn import_flannel_refuses_bad_input_and_writes_nothing() {
    let dir = tempfile::tempdir().expect("tempdir");
    let out = dir.path().join("repo");
    let case = import_data("err/lease-outside-network");
    let r = podnet(&[
        "import",
        "flannel",
        "--etcd",
        s(&case.join("etcd.json")),
        "--ip-masq",
        "true",
        "--underlay-prefix",
        "24",
        "--out",
        s(&out),
    ]);
    assert_eq!(r.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&r.stderr);
    assert!(
        stderr.contains("etcd.json (/coreos.com/network/subnets/10.250.1.0-24)")
            && stderr.contains("outside the flannel network 10.244.0.0/16"),
        "{stderr}"
    );
    assert!(!out.exists());
    // An invalid result prints podnet's diagnostics on the generated file.
    let case = import_data("err/duplicate-vtep-mac");
    let r = podnet(&[
        "import",
        "flannel",
        "--net-conf",
        s(&case.join("net-conf.json")),
        "--nodes",
        s(&case.join("nodes.json")),
        "--ip-masq",
        "true",
        "--underlay-prefix",
        "24",
        "--out",
        s(&out),
    ]);
    assert_eq!(r.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&r.stderr);
    assert!(stderr.contains("podnet::duplicate_vtep_mac"), "{stderr}");
    assert!(!out.exists());
}

// ---- plan --out file modes ----------------------------------------------------------------

#[test]
fn plan_out_writes_shell_scripts_executable_and_the_rest_0644() {
    use std::os::unix::fs::PermissionsExt as _;
    let dir = tempfile::tempdir().expect("tempdir");
    let f = dir.path().join("c.podnet");
    std::fs::write(
        &f,
        TWO_NODES
            .replace("node a {", "node a { subnet 10.244.1.0/24;")
            .replace("node b {", "node b { subnet 10.244.2.0/24;"),
    )
    .expect("write");
    for (format, ext, mode) in [
        ("shell", "sh", 0o755),
        ("json", "json", 0o644),
        ("text", "txt", 0o644),
    ] {
        let out_dir = dir.path().join(format);
        let out = podnet(&[
            "plan",
            s(&f),
            "--all",
            "--format",
            format,
            "--out",
            s(&out_dir),
        ]);
        assert_eq!(out.status.code(), Some(0), "{format}: {}", stderr(&out));
        for node in ["a", "b"] {
            let p = out_dir.join(format!("{node}.{ext}"));
            let m = std::fs::metadata(&p)
                .expect("plan file")
                .permissions()
                .mode()
                & 0o7777;
            assert_eq!(m, mode, "{}: mode {m:04o}", p.display());
        }
    }
}
