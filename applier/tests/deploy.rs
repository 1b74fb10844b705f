//! The deployment files in `examples/deploy/`, checked with the real tools that consume them:
//! `systemd-analyze verify` and `security` on the unit, `systemd-tmpfiles` on its tmpfiles
//! entry, `kubernetes-validate` (offline Kubernetes schemas) on the manifests, the built
//! `podnet` on the ConfigMap's cluster file, and the installed `systemd-networkd`'s own key
//! table on the networkd drop-ins. Each check also runs on a deliberately broken copy, so a
//! tool that stops checking fails the test. A missing tool is a failure (`scripts/test`
//! installs them), never a skip.

use std::collections::BTreeSet;
use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use serde_json::Value;

#[path = "../../tests/support/examples.rs"]
mod support;
use support::{examples, repo_root};

/// The Kubernetes version whose schemas the manifests are validated against: the newest that
/// the pinned `kubernetes-validate` (see `scripts/test`) bundles.
const KUBERNETES_VERSION: &str = "1.37.0";

fn deploy_dir() -> PathBuf {
    repo_root().join("examples/deploy")
}

fn unit_path() -> PathBuf {
    deploy_dir().join("systemd/podnet.service")
}

fn s(p: &Path) -> &str {
    p.to_str().expect("utf-8 path")
}

fn run(program: &str, args: &[&str]) -> Output {
    Command::new(program)
        .args(args)
        .output()
        .unwrap_or_else(|e| panic!("running {program} (scripts/test installs it): {e}"))
}

fn text(out: &Output) -> String {
    format!(
        "exit {:?}\nstdout:\n{}\nstderr:\n{}",
        out.status.code(),
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

fn podnet(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_podnet"))
        .args(args)
        .output()
        .expect("run podnet")
}

fn scratch() -> tempfile::TempDir {
    // Inside the target directory: the same file system as the built binary, so it can be
    // hard-linked into a verify root instead of copied.
    tempfile::Builder::new()
        .prefix("deploy-")
        .tempdir_in(env!("CARGO_TARGET_TMPDIR"))
        .expect("temporary directory")
}

/// A minimal root file system for `systemd-analyze --root=ROOT`: the host's unit directory
/// (for the targets the unit orders itself against), `/bin/kill` (ExecReload=) and the
/// freshly built `podnet` at `/usr/local/bin/podnet`, the path the unit's ExecStart= names.
///
/// Why a root rather than a copy of the unit with ExecStart= rewritten: verify checks that
/// each Exec*= binary exists and is executable, and the shipped unit names the installed
/// path. With a root, the file verified is the shipped file byte for byte, and the binary it
/// finds is the one this build produced.
fn verify_root(dir: &Path) -> PathBuf {
    let root = dir.join("root");
    for d in [
        "usr/local/bin",
        "usr/bin",
        "usr/lib/systemd",
        "etc/systemd/system",
    ] {
        fs::create_dir_all(root.join(d)).expect("create root directories");
    }
    // Merged /usr as on Debian 12: /bin and /lib are relative links into /usr.
    std::os::unix::fs::symlink("usr/bin", root.join("bin")).expect("bin link");
    std::os::unix::fs::symlink("usr/lib", root.join("lib")).expect("lib link");
    let bin = root.join("usr/local/bin/podnet");
    if fs::hard_link(env!("CARGO_BIN_EXE_podnet"), &bin).is_err() {
        fs::copy(env!("CARGO_BIN_EXE_podnet"), &bin).expect("copy podnet into the root");
    }
    let kill = ["/usr/bin/kill", "/bin/kill"]
        .into_iter()
        .map(Path::new)
        .find(|p| p.exists())
        .expect("kill(1) (package procps)");
    fs::copy(kill, root.join("usr/bin/kill")).expect("copy kill");
    let out = run(
        "cp",
        &[
            "-a",
            "/usr/lib/systemd/system",
            s(&root.join("usr/lib/systemd")),
        ],
    );
    assert!(out.status.success(), "copying unit files: {}", text(&out));
    root
}

fn install_unit(root: &Path, name: &str, content: &str) {
    fs::write(root.join("etc/systemd/system").join(name), content).expect("write unit");
}

#[test]
fn systemd_unit_verifies_and_a_broken_copy_does_not() {
    let dir = scratch();
    let root = verify_root(dir.path());
    let unit = fs::read_to_string(unit_path()).expect("read podnet.service");
    install_unit(&root, "podnet.service", &unit);

    let out = run(
        "systemd-analyze",
        &["verify", "--root", s(&root), "podnet.service"],
    );
    // verify exits 0 on unknown keys and unparsable values and only warns: any output is a
    // finding.
    assert!(
        out.status.success() && out.stdout.is_empty() && out.stderr.is_empty(),
        "systemd-analyze verify podnet.service: {}",
        text(&out)
    );

    // A misspelt key and an invalid value: verify names both (and still exits 0).
    let broken = unit
        .replacen("KillMode=mixed", "KilMode=mixed", 1)
        .replacen("Restart=on-failure", "Restart=sometimes", 1);
    assert_ne!(broken, unit, "the broken copy differs");
    install_unit(&root, "podnet-broken.service", &broken);
    let out = run(
        "systemd-analyze",
        &["verify", "--root", s(&root), "podnet-broken.service"],
    );
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("Unknown key")
            && stderr.contains("KilMode")
            && stderr.contains("sometimes"),
        "verify must report the broken copy: {}",
        text(&out)
    );

    // An ExecStart= binary that is not there fails outright.
    let missing = unit.replacen(
        "ExecStart=/usr/local/bin/podnet watch",
        "ExecStart=/usr/local/bin/podnet-missing watch",
        1,
    );
    assert_ne!(missing, unit, "ExecStart= is `/usr/local/bin/podnet watch`");
    install_unit(&root, "podnet-missing.service", &missing);
    let out = run(
        "systemd-analyze",
        &["verify", "--root", s(&root), "podnet-missing.service"],
    );
    assert!(
        !out.status.success() && String::from_utf8_lossy(&out.stderr).contains("podnet-missing"),
        "verify must fail on a missing binary: {}",
        text(&out)
    );
}

/// `systemd-analyze security` reads the sandbox the way systemd applies it. podnet needs
/// some of what it counts as exposure (the host network, netlink, CAP_NET_ADMIN, writable
/// net sysctls): those must stay, and everything else it does not need must be closed.
#[test]
fn systemd_unit_sandbox_is_tight_but_keeps_what_podnet_needs() {
    let dir = scratch();
    let root = verify_root(dir.path());
    let unit = fs::read_to_string(unit_path()).expect("read podnet.service");
    install_unit(&root, "podnet.service", &unit);

    let security = |name: &str, threshold: &str| {
        run(
            "systemd-analyze",
            &[
                "security",
                "--offline=yes",
                "--no-pager",
                &format!("--threshold={threshold}"),
                "--root",
                s(&root),
                name,
            ],
        )
    };
    // The threshold is on the tool's 0-100 scale: 30 = exposure 3.0 ("OK" ends at 4.9).
    let out = security("podnet.service", "30");
    let report = String::from_utf8_lossy(&out.stdout).to_string();
    assert!(out.status.success(), "exposure above 3.0: {}", text(&out));
    let level: f64 = report
        .lines()
        .find_map(|l| {
            l.split("Overall exposure level for podnet.service: ")
                .nth(1)
        })
        .and_then(|rest| rest.split_whitespace().next())
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("no overall exposure level in: {report}"));
    assert!(level <= 3.0, "exposure {level}");

    let line = |setting: &str| {
        report
            .lines()
            .find(|l| l.split_whitespace().nth(1) == Some(setting))
            .unwrap_or_else(|| panic!("security lists {setting}: {report}"))
            .trim_start()
            .chars()
            .next()
    };
    // Needed by podnet: still open (✗ = exposed).
    for needed in [
        "CapabilityBoundingSet=~CAP_NET_ADMIN",
        "RestrictAddressFamilies=~AF_NETLINK",
        "RestrictAddressFamilies=~AF_(INET|INET6)",
        "PrivateNetwork=",
        "ProtectKernelTunables=",
        "PrivateUsers=",
    ] {
        assert_eq!(
            line(needed),
            Some('✗'),
            "{needed} must stay open for podnet"
        );
    }
    // Not needed: closed (✓).
    for closed in [
        "CapabilityBoundingSet=~CAP_SYS_ADMIN",
        "CapabilityBoundingSet=~CAP_SYS_MODULE",
        "CapabilityBoundingSet=~CAP_SYS_PTRACE",
        "CapabilityBoundingSet=~CAP_(DAC_*|FOWNER|IPC_OWNER)",
        "PrivateMounts=",
        "RestrictAddressFamilies=~AF_PACKET",
        "NoNewPrivileges=",
        "ProtectSystem=",
        "ProtectHome=",
        "PrivateTmp=",
        "ProtectKernelModules=",
        "RestrictNamespaces=~net",
        "SystemCallArchitectures=",
    ] {
        assert_eq!(line(closed), Some('✓'), "{closed} should be closed");
    }

    // The same unit without its sandbox is far above the threshold: the check can fail.
    let loose: String = unit
        .lines()
        .filter(|l| !l.starts_with("Protect") && !l.starts_with("CapabilityBoundingSet"))
        .map(|l| format!("{l}\n"))
        .collect();
    install_unit(&root, "podnet-loose.service", &loose);
    let out = security("podnet-loose.service", "30");
    assert!(
        !out.status.success(),
        "a loose unit must fail: {}",
        text(&out)
    );
}

/// Every file a plan writes lies in a directory the unit makes writable, and the unit's
/// ExecStart= is the installed binary running `watch`.
#[test]
fn systemd_unit_writes_where_plans_write() {
    let unit = fs::read_to_string(unit_path()).expect("read podnet.service");
    let values = |key: &str| -> Vec<String> {
        unit.lines()
            .filter_map(|l| l.strip_prefix(&format!("{key}=")))
            .flat_map(|v| v.split_whitespace().map(str::to_string))
            .collect()
    };
    assert_eq!(values("ExecStart"), ["/usr/local/bin/podnet", "watch"]);
    assert_eq!(values("ExecReload"), ["/bin/kill", "-HUP", "$MAINPID"]);
    assert_eq!(values("KillSignal"), ["SIGTERM"]);
    assert_eq!(
        values("CapabilityBoundingSet"),
        ["CAP_NET_ADMIN", "CAP_NET_RAW"]
    );
    let families: BTreeSet<String> = values("RestrictAddressFamilies").into_iter().collect();
    for f in ["AF_NETLINK", "AF_UNIX", "AF_INET", "AF_INET6"] {
        assert!(families.contains(f), "RestrictAddressFamilies lacks {f}");
    }
    assert!(
        values("EnvironmentFile").contains(&"-/etc/default/podnet".to_string()),
        "EnvironmentFile=-/etc/default/podnet"
    );

    let mut writable: Vec<String> = Vec::new();
    writable.extend(
        values("StateDirectory")
            .iter()
            .map(|d| format!("/var/lib/{d}")),
    );
    writable.extend(
        values("ConfigurationDirectory")
            .iter()
            .map(|d| format!("/etc/{d}")),
    );
    writable.extend(
        values("RuntimeDirectory")
            .iter()
            .map(|d| format!("/run/{d}")),
    );
    writable.extend(
        values("ReadWritePaths")
            .iter()
            .map(|p| p.trim_start_matches('-').to_string()),
    );
    assert!(
        writable.contains(&"/var/lib/podnet".to_string()),
        "journal: {writable:?}"
    );

    for file in plan_files(&all_plans()) {
        let dir = Path::new(&file).parent().expect("absolute path");
        assert!(
            writable.iter().any(|w| dir.starts_with(w)),
            "{file} is not writable under the unit's sandbox ({writable:?})"
        );
    }
}

#[test]
fn tmpfiles_entry_creates_the_xtables_lock() {
    let dir = scratch();
    let conf = deploy_dir().join("systemd/podnet-tmpfiles.conf");
    let out = run(
        "systemd-tmpfiles",
        &["--root", s(dir.path()), "--create", s(&conf)],
    );
    assert!(
        out.status.success() && out.stderr.is_empty(),
        "systemd-tmpfiles: {}",
        text(&out)
    );
    use std::os::unix::fs::PermissionsExt;
    let lock = fs::metadata(dir.path().join("run/xtables.lock")).expect("lock created");
    assert!(lock.is_file());
    assert_eq!(lock.permissions().mode() & 0o777, 0o600);

    let broken = dir.path().join("broken.conf");
    fs::write(&broken, "fz /run/xtables.lock 0600 root root -\n").expect("write");
    let out = run(
        "systemd-tmpfiles",
        &["--root", s(dir.path()), "--create", s(&broken)],
    );
    assert!(
        !out.status.success(),
        "a bad tmpfiles line must fail: {}",
        text(&out)
    );
}

fn manifests() -> Vec<PathBuf> {
    let mut out: Vec<PathBuf> = fs::read_dir(deploy_dir().join("kubernetes"))
        .expect("examples/deploy/kubernetes")
        .filter_map(Result::ok)
        .map(|e| e.path())
        .filter(|p| p.extension().is_some_and(|x| x == "yaml"))
        .collect();
    out.sort();
    out
}

fn kubernetes_validate(files: &[&str]) -> Output {
    let mut args = vec!["--strict", "-k", KUBERNETES_VERSION];
    args.extend_from_slice(files);
    run("kubernetes-validate", &args)
}

#[test]
fn manifests_validate_against_the_kubernetes_schema() {
    let files = manifests();
    let names: Vec<&str> = files.iter().map(|p| s(p)).collect();
    for must in ["namespace.yaml", "configmap.yaml", "daemonset.yaml"] {
        assert!(names.iter().any(|n| n.ends_with(must)), "{must} is missing");
    }
    let out = kubernetes_validate(&names);
    let report = text(&out);
    assert!(out.status.success(), "kubernetes-validate: {report}");
    let major_minor = KUBERNETES_VERSION.rsplit_once('.').expect("x.y.z").0;
    for resource in [
        "namespace/podnet-system",
        "serviceaccount/podnet",
        "configmap/podnet-config",
        "daemonset/podnet",
    ] {
        let passed = format!("passed for resource {resource} against version {major_minor}");
        assert!(
            report.contains(&passed),
            "{resource} was not validated: {report}"
        );
    }

    // Broken copies: an unknown field (strict mode) and a wrong type.
    let dir = scratch();
    let ds = fs::read_to_string(deploy_dir().join("kubernetes/daemonset.yaml")).expect("read");
    for (name, from, to, finding) in [
        (
            "typo.yaml",
            "      hostNetwork: true",
            "      hostNetwrk: true",
            "hostNetwrk",
        ),
        (
            "type.yaml",
            "            periodSeconds: 10",
            "            periodSeconds: ten",
            "periodSeconds",
        ),
    ] {
        let bad = ds.replacen(from, to, 1);
        assert_ne!(bad, ds, "{name}: the daemonset has `{from}`");
        let path = dir.path().join(name);
        fs::write(&path, bad).expect("write");
        let out = kubernetes_validate(&[s(&path)]);
        assert!(
            !out.status.success() && text(&out).contains(finding),
            "{name} must fail naming {finding}: {}",
            text(&out)
        );
    }
}

/// Every document of a YAML file, as JSON (PyYAML comes with kubernetes-validate).
fn yaml_documents(path: &Path) -> Vec<Value> {
    let out = run(
        "python3",
        &[
            "-c",
            "import json, sys, yaml; print(json.dumps(list(yaml.safe_load_all(open(sys.argv[1])))))",
            s(path),
        ],
    );
    assert!(
        out.status.success(),
        "reading {}: {}",
        path.display(),
        text(&out)
    );
    serde_json::from_slice(&out.stdout).expect("json")
}

fn one_document(file: &str, kind: &str) -> Value {
    yaml_documents(&deploy_dir().join("kubernetes").join(file))
        .into_iter()
        .find(|d| d["kind"] == kind)
        .unwrap_or_else(|| panic!("{file} has no {kind}"))
}

/// The ConfigMap's files written out as the kubelet would: one file per key.
fn configmap_files(dir: &Path) -> PathBuf {
    let cm = one_document("configmap.yaml", "ConfigMap");
    let data = cm["data"].as_object().expect("ConfigMap data");
    for (key, value) in data {
        assert!(!key.contains('/'), "ConfigMap keys are file names: {key}");
        fs::write(dir.join(key), value.as_str().expect("string data")).expect("write key");
    }
    dir.join("cluster.podnet")
}

#[test]
fn configmap_cluster_file_checks_and_its_lock_is_current() {
    let dir = scratch();
    let file = configmap_files(dir.path());
    for args in [
        vec!["check", s(&file)],
        vec!["lock", s(&file), "--check"],
        vec!["fmt", "--check", s(&file)],
        vec!["plan", s(&file), "--all", "--format", "json"],
    ] {
        let out = podnet(&args);
        assert_eq!(
            out.status.code(),
            Some(0),
            "podnet {args:?}: {}",
            text(&out)
        );
    }

    // A broken copy fails the same check.
    let bad = dir.path().join("bad.podnet");
    let content = fs::read_to_string(&file).expect("read");
    fs::write(&bad, content.replacen("pod-cidr", "pod-cdir", 1)).expect("write");
    let out = podnet(&["check", s(&bad)]);
    assert_eq!(
        out.status.code(),
        Some(1),
        "a typo must fail check: {}",
        text(&out)
    );
}

/// Plans (JSON) of every node of the ConfigMap's cluster and of every example.
fn all_plans() -> Vec<Value> {
    let dir = scratch();
    let mut files = vec![configmap_files(dir.path())];
    files.extend(examples());
    let mut plans = Vec::new();
    for f in files {
        let out = podnet(&["plan", s(&f), "--all", "--format", "json"]);
        assert_eq!(
            out.status.code(),
            Some(0),
            "plan {}: {}",
            f.display(),
            text(&out)
        );
        for line in String::from_utf8_lossy(&out.stdout).lines() {
            plans.push(serde_json::from_str(line).expect("plan JSON line"));
        }
    }
    assert!(!plans.is_empty());
    plans
}

fn plan_files(plans: &[Value]) -> BTreeSet<String> {
    plans
        .iter()
        .flat_map(|p| p["files"].as_array().expect("files").iter())
        .map(|f| f["path"].as_str().expect("path").to_string())
        .collect()
}

fn env_value<'a>(container: &'a Value, name: &str) -> &'a Value {
    container["env"]
        .as_array()
        .expect("env")
        .iter()
        .find(|e| e["name"] == name)
        .unwrap_or_else(|| panic!("container env lacks {name}"))
}

/// The DaemonSet, the ConfigMap and the plans agree: what the daemon is told to read is what
/// the ConfigMap provides, every file a plan writes reaches the host, and the probes hit
/// the address podnet listens on.
#[test]
fn daemonset_is_wired_to_the_configmap_and_the_host() {
    let ds = one_document("daemonset.yaml", "DaemonSet");
    let cm = one_document("configmap.yaml", "ConfigMap");
    let ns = one_document("namespace.yaml", "Namespace");
    let sa = one_document("namespace.yaml", "ServiceAccount");
    let pod = &ds["spec"]["template"]["spec"];
    assert_eq!(ds["metadata"]["namespace"], ns["metadata"]["name"]);
    assert_eq!(cm["metadata"]["namespace"], ns["metadata"]["name"]);
    assert_eq!(pod["serviceAccountName"], sa["metadata"]["name"]);
    assert_eq!(pod["hostNetwork"], true);
    assert_eq!(pod["priorityClassName"], "system-node-critical");
    assert_eq!(ds["spec"]["updateStrategy"]["type"], "RollingUpdate");
    assert_eq!(
        ds["spec"]["updateStrategy"]["rollingUpdate"]["maxUnavailable"],
        1
    );
    assert!(pod["terminationGracePeriodSeconds"].as_u64().is_some());
    // Tolerates every taint (not-ready, network-unavailable, control-plane, …).
    assert!(
        pod["tolerations"]
            .as_array()
            .expect("tolerations")
            .iter()
            .any(|t| t["operator"] == "Exists"
                && t.get("key").is_none()
                && t.get("effect").is_none()),
        "a toleration of every taint"
    );

    let containers = pod["containers"].as_array().expect("containers");
    let all_containers: Vec<&Value> = containers
        .iter()
        .chain(pod["initContainers"].as_array().into_iter().flatten())
        .collect();
    for c in &all_containers {
        for m in c["volumeMounts"].as_array().into_iter().flatten() {
            assert!(
                m.get("subPath").is_none() && m.get("subPathExpr").is_none(),
                "subPath never updates: {m}"
            );
        }
    }
    let main = containers
        .iter()
        .find(|c| c["name"] == "podnet")
        .expect("podnet container");
    let sc = &main["securityContext"];
    assert_eq!(sc["privileged"], false);
    assert_eq!(sc["allowPrivilegeEscalation"], false);
    assert_eq!(sc["capabilities"]["drop"], serde_json::json!(["ALL"]));
    assert_eq!(
        sc["capabilities"]["add"],
        serde_json::json!(["NET_ADMIN", "NET_RAW"])
    );
    assert!(main["resources"]["limits"]["memory"].is_string());
    assert!(main["resources"]["requests"]["memory"].is_string());

    // PODNET_FILE lies in the ConfigMap's directory mount, and the ConfigMap has that key.
    let volumes = pod["volumes"].as_array().expect("volumes");
    let mounts = main["volumeMounts"].as_array().expect("volumeMounts");
    let mount_of = |volume: &Value| {
        mounts
            .iter()
            .find(|m| m["name"] == volume["name"])
            .and_then(|m| m["mountPath"].as_str())
    };
    let config = volumes
        .iter()
        .find(|v| v["configMap"]["name"] == cm["metadata"]["name"])
        .expect("a volume of the ConfigMap");
    assert!(
        config["configMap"].get("items").is_none(),
        "every key is mounted"
    );
    let file = env_value(main, "PODNET_FILE")["value"]
        .as_str()
        .expect("PODNET_FILE");
    let (dir, key) = file.rsplit_once('/').expect("absolute PODNET_FILE");
    assert_eq!(
        mount_of(config),
        Some(dir),
        "PODNET_FILE is inside the ConfigMap mount"
    );
    assert!(cm["data"][key].is_string(), "the ConfigMap has {key}");
    assert!(
        cm["data"][format!("{key}.lock")].is_string(),
        "and its lock"
    );
    assert_eq!(
        env_value(main, "PODNET_NODE")["valueFrom"]["fieldRef"]["fieldPath"],
        "spec.nodeName"
    );

    // Host paths, mounted where podnet expects them (the same path as on the host).
    let host_paths: Vec<String> = volumes
        .iter()
        .filter_map(|v| {
            let path = v["hostPath"]["path"].as_str()?;
            assert_eq!(
                mount_of(v),
                Some(path),
                "{path} is mounted at its host path"
            );
            Some(path.to_string())
        })
        .collect();
    for needed in ["/etc/cni/net.d", "/var/lib/podnet", "/run/flannel"] {
        assert!(host_paths.iter().any(|p| p == needed), "hostPath {needed}");
    }
    for f in plan_files(&all_plans()) {
        assert!(
            host_paths.iter().any(|p| Path::new(&f).starts_with(p)),
            "{f} would be written inside the container only"
        );
    }

    // Probes: loopback, podnet's port, its endpoints.
    let listen = env_value(main, "PODNET_LISTEN")["value"]
        .as_str()
        .expect("PODNET_LISTEN");
    let (host, port) = listen.rsplit_once(':').expect("host:port");
    assert_eq!(host, "127.0.0.1", "health stays on loopback");
    for (probe, path) in [("livenessProbe", "/livez"), ("readinessProbe", "/readyz")] {
        let get = &main[probe]["httpGet"];
        assert_eq!(get["host"], host, "{probe} host");
        assert_eq!(get["port"].to_string(), port, "{probe} port");
        assert_eq!(get["path"], path, "{probe} path");
    }
}

/// `fnmatch`-style `*` globs, enough for interface-name patterns.
fn glob_match(pattern: &str, name: &str) -> bool {
    match pattern.split_once('*') {
        None => pattern == name,
        Some((head, tail)) => {
            name.starts_with(head)
                && (0..=name.len() - head.len()).any(|i| glob_match(tail, &name[head.len() + i..]))
        }
    }
}

fn planned_links() -> BTreeSet<String> {
    all_plans()
        .iter()
        .flat_map(|p| p["links"].as_array().expect("links").iter())
        .map(|l| l["name"].as_str().expect("name").to_string())
        .collect()
}

/// The drop-ins name every link podnet plans (bridge, vxlan) and the pods' veths, in the
/// syntax and with the keys the installed systemd-networkd knows.
#[test]
fn drop_ins_cover_every_planned_link() {
    let nm = fs::read_to_string(deploy_dir().join("networkmanager/podnet.conf")).expect("read");
    let nm_globs: Vec<String> = nm
        .lines()
        .filter_map(|l| l.strip_prefix("unmanaged-devices+="))
        .flat_map(|v| v.split(';'))
        .map(|spec| {
            spec.strip_prefix("interface-name:")
                .unwrap_or_else(|| panic!("only interface-name: specs: {spec}"))
                .to_string()
        })
        .collect();
    assert!(
        nm.lines().any(|l| l.trim() == "[keyfile]"),
        "[keyfile] section"
    );

    let network = fs::read_to_string(deploy_dir().join("networkd/10-podnet-unmanaged.network"))
        .expect("read");
    let networkd_globs: Vec<String> = network
        .lines()
        .filter_map(|l| l.strip_prefix("Name="))
        .flat_map(|v| v.split_whitespace().map(str::to_string))
        .collect();
    assert!(network.lines().any(|l| l == "Unmanaged=yes"));

    let mut links = planned_links();
    assert!(
        links.iter().any(|l| l.starts_with("flannel.")),
        "a vxlan among {links:?}"
    );
    assert!(links.contains("cni0"), "the default bridge among {links:?}");
    // The bridge plugin's host-side veth names.
    links.insert("veth1a2b3c4d".to_string());
    for link in &links {
        assert!(
            nm_globs.iter().any(|g| glob_match(g, link)),
            "NetworkManager manages {link}"
        );
        assert!(
            networkd_globs.iter().any(|g| glob_match(g, link)),
            "networkd manages {link}"
        );
    }
    // The matcher can say no: the underlay stays managed.
    for other in ["eth0", "ens3", "lo"] {
        assert!(
            !nm_globs.iter().any(|g| glob_match(g, other)),
            "{other} stays managed"
        );
        assert!(
            !networkd_globs.iter().any(|g| glob_match(g, other)),
            "{other} stays managed"
        );
    }
}

/// `Section.Key` of every setting in an ini-style systemd file.
fn ini_keys(content: &str) -> Vec<String> {
    let mut section = String::new();
    let mut keys = Vec::new();
    for line in content.lines().map(str::trim) {
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        if let Some(name) = line.strip_prefix('[').and_then(|l| l.strip_suffix(']')) {
            section = name.to_string();
        } else if let Some((key, _)) = line.split_once('=') {
            keys.push(format!("{section}.{key}"));
        }
    }
    keys
}

#[test]
fn networkd_drop_ins_use_keys_networkd_knows() {
    // networkd's configuration parser is a table of `Section.Key` strings compiled into the
    // daemon: a key missing from it is an "Unknown key" warning at load time.
    let daemon = [
        "/usr/lib/systemd/systemd-networkd",
        "/lib/systemd/systemd-networkd",
    ]
    .into_iter()
    .map(Path::new)
    .find(|p| p.exists())
    .expect("systemd-networkd (Debian package systemd)");
    let binary = fs::read(daemon).expect("read systemd-networkd");
    let known = |key: &str| {
        binary
            .windows(key.len() + 2)
            .any(|w| w[0] == 0 && &w[1..=key.len()] == key.as_bytes() && w[key.len() + 1] == 0)
    };
    let version: u32 = String::from_utf8_lossy(&run("systemd-analyze", &["--version"]).stdout)
        .split_whitespace()
        .nth(1)
        .and_then(|v| v.parse().ok())
        .expect("systemd version");

    let network = fs::read_to_string(deploy_dir().join("networkd/10-podnet-unmanaged.network"))
        .expect("read");
    let conf =
        fs::read_to_string(deploy_dir().join("networkd/podnet-networkd.conf")).expect("read");
    let mut keys = ini_keys(&network);
    keys.extend(ini_keys(&conf));
    assert!(keys.contains(&"Network.ManageForeignRoutes".to_string()));
    assert!(keys.contains(&"Network.ManageForeignRoutingPolicyRules".to_string()));
    for key in &keys {
        // Documented in the file: added in systemd 256, ignored with a warning before.
        if key == "Network.ManageForeignNextHops" && version < 256 {
            continue;
        }
        assert!(known(key), "systemd-networkd {version} does not know {key}");
    }
    assert!(!known("Network.ManageForeignRoutez"), "the lookup can fail");
}

/// The image is built from the workspace and starts `podnet watch` with the firewall tools
/// installed. (No image build here: it needs a container engine and the network.)
#[test]
fn containerfile_runs_watch_with_the_firewall_tools() {
    let cf = fs::read_to_string(deploy_dir().join("Containerfile")).expect("read Containerfile");
    let froms: Vec<&str> = cf.lines().filter(|l| l.starts_with("FROM ")).collect();
    assert_eq!(
        froms.len(),
        2,
        "a build stage and a runtime stage: {froms:?}"
    );
    assert!(froms[0].ends_with(" AS build"));
    assert!(cf.contains("cargo build --release --locked -p podnet"));
    assert!(cf.contains("COPY --from=build /out/podnet /usr/local/bin/podnet"));
    for pkg in ["nftables", "iptables", "iproute2"] {
        assert!(cf.contains(pkg), "runtime installs {pkg}");
    }
    assert_eq!(
        cf.lines()
            .filter(|l| l.starts_with("ENTRYPOINT "))
            .collect::<Vec<_>>(),
        [r#"ENTRYPOINT ["/usr/local/bin/podnet", "watch"]"#]
    );
    let ignore = fs::read_to_string(repo_root().join(".dockerignore")).expect(".dockerignore");
    assert!(
        ignore.lines().any(|l| l == "target/"),
        "the build context leaves out target/"
    );
}

#[test]
fn glob_matcher() {
    assert!(glob_match("flannel.*", "flannel.1"));
    assert!(glob_match("veth*", "veth"));
    assert!(glob_match("a*b*c", "axxbyyc"));
    assert!(!glob_match("cni0", "cni01"));
    assert!(!glob_match("flannel.*", "flannel"));
}

/// Every file under `dir`, recursively.
fn files_under(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    let mut todo = vec![dir.to_path_buf()];
    while let Some(d) = todo.pop() {
        for e in fs::read_dir(&d).expect("read deploy dir").flatten() {
            let p = e.path();
            if p.is_dir() {
                todo.push(p);
            } else {
                out.push(p);
            }
        }
    }
    out
}

#[test]
fn every_podnet_variable_the_deployments_set_is_one_watch_reads() {
    let help = text(&podnet(&["watch", "--help"]));
    let mut used = BTreeSet::new();
    for f in files_under(&deploy_dir()) {
        let content = fs::read_to_string(&f).unwrap_or_default();
        for (i, _) in content.match_indices("PODNET_") {
            let name: String = content[i..]
                .chars()
                .take_while(|c| c.is_ascii_uppercase() || *c == '_')
                .collect();
            // `PODNET_*` in prose names the family, not a variable.
            if name.len() > "PODNET_".len() {
                used.insert((name, f.clone()));
            }
        }
    }
    assert!(
        used.iter().any(|(n, _)| n == "PODNET_FILE"),
        "the deployments set PODNET_FILE"
    );
    for (name, file) in &used {
        assert!(
            help.contains(&format!("[env: {name}=")),
            "{} sets {name}, which `podnet watch` does not read:\n{help}",
            file.display()
        );
    }
}
