//! `podnet watch` against the real kernel: each node a network namespace with a veth
//! underlay, the daemon started inside it (`ip netns exec`) and killed on drop. Drift of
//! every kind is made by hand (`ip`, `bridge`, `nft`, `rm`) and must come back; a chaos
//! run ends equal to a fresh apply with foreign objects untouched; invalid configs keep
//! what is applied; a restart on a converged node writes nothing and loses no ping; and the
//! cases a hostile review found (a nexthop changed in place, an FDB destination replaced, a
//! blackhole of podnet's protocol, a foreign route that came and went, a foreign vxlan with
//! podnet's name, an address that appears after start, a busy config directory, a link flap
//! while a new config conflicts; idle CPU and back-off).
//! Every wait is bounded.

mod common;

use std::io::{Read as _, Write as _};
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

use common::NetNs;
use common::node::{Node, bin};

const PORT: u16 = 9402;

/// Three nodes on 192.168.56.0/24; the daemon runs on n1.
const CLUSTER: &str = "cluster t {
    pod-cidr 10.244.0.0/16
    backend host-gw
}
node n1 { address 192.168.56.11/24; subnet 10.244.1.0/24 }
node n2 { address 192.168.56.12/24; subnet 10.244.2.0/24 }
node n3 { address 192.168.56.13/24; subnet 10.244.3.0/24 }
";

/// `podnet watch` in a namespace; SIGTERM then SIGKILL on drop.
struct Daemon {
    child: Child,
    log: PathBuf,
    ns: String,
}

impl Daemon {
    fn start(ns: &NetNs, file: &Path, root: &str, extra: &[&str]) -> Daemon {
        static STARTS: AtomicU32 = AtomicU32::new(0);
        let log = Path::new(root).join(format!(
            "watch-{}.log",
            STARTS.fetch_add(1, Ordering::SeqCst)
        ));
        let out = std::fs::File::create(&log).expect("log file");
        let listen = format!("127.0.0.1:{PORT}");
        let mut args = vec![
            "netns".to_string(),
            "exec".into(),
            ns.name.clone(),
            bin(),
            "watch".into(),
            file.to_str().expect("utf-8").into(),
            "--root".into(),
            root.into(),
            "--listen".into(),
            listen,
            "--log-format".into(),
            "json".into(),
            "--poll".into(),
            "1s".into(),
        ];
        args.extend(extra.iter().map(|s| s.to_string()));
        let child = Command::new("ip")
            .args(&args)
            .stdout(Stdio::null())
            .stderr(out)
            .spawn()
            .expect("spawn podnet watch");
        Daemon {
            child,
            log,
            ns: ns.name.clone(),
        }
    }

    fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// Waits until `/readyz` answers 200.
    fn ready(&mut self, within: Duration) {
        let ns = self.ns.clone();
        let ok = eventually(within, || {
            if let Ok(Some(status)) = self.child.try_wait() {
                panic!("podnet watch exited {status}:\n{}", self.log());
            }
            get(&ns, "/readyz").is_some_and(|(code, _)| code == 200)
        });
        assert!(
            ok,
            "not ready within {within:?}: {:?}\n{}",
            get(&ns, "/readyz?verbose"),
            self.log()
        );
    }

    /// SIGTERM; waits (bounded) for the exit status.
    fn stop(&mut self) -> Option<i32> {
        let pid = self.child.id().to_string();
        let _ = Command::new("kill").args(["-TERM", &pid]).status();
        let deadline = Instant::now() + Duration::from_secs(10);
        while Instant::now() < deadline {
            if let Ok(Some(s)) = self.child.try_wait() {
                return s.code();
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
        None
    }
}

impl Drop for Daemon {
    fn drop(&mut self) {
        if let Ok(None) = self.child.try_wait() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

/// Polls `f` every 10 ms until it holds or `within` passes.
fn eventually(within: Duration, mut f: impl FnMut() -> bool) -> bool {
    let deadline = Instant::now() + within;
    loop {
        if f() {
            return true;
        }
        if Instant::now() >= deadline {
            return false;
        }
        std::thread::sleep(Duration::from_millis(10));
    }
}

/// An HTTP GET to the daemon inside `ns`: (status, body).
fn get(ns: &str, path: &str) -> Option<(u16, String)> {
    let (ns, path) = (ns.to_string(), path.to_string());
    std::thread::spawn(move || -> Option<(u16, String)> {
        let fd = std::fs::File::open(format!("/run/netns/{ns}")).ok()?;
        nix::sched::setns(&fd, nix::sched::CloneFlags::CLONE_NEWNET).ok()?;
        let mut s = TcpStream::connect(("127.0.0.1", PORT)).ok()?;
        s.set_read_timeout(Some(Duration::from_secs(2))).ok()?;
        write!(
            s,
            "GET {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"
        )
        .ok()?;
        let mut text = String::new();
        s.read_to_string(&mut text).ok()?;
        let code = text.split(' ').nth(1)?.parse().ok()?;
        let body = text.split_once("\r\n\r\n").map(|(_, b)| b.to_string())?;
        Some((code, body))
    })
    .join()
    .ok()
    .flatten()
}

/// The value of a metric sample (`name{labels}` exactly as exposed), if present.
fn metric(ns: &str, sample: &str) -> Option<f64> {
    let (_, body) = get(ns, "/metrics")?;
    body.lines().find_map(|l| {
        l.strip_prefix(sample)?
            .strip_prefix(' ')?
            .trim()
            .parse()
            .ok()
    })
}

fn write(dir: &Path, name: &str, text: &str) -> PathBuf {
    let p = dir.join(name);
    std::fs::write(&p, text).expect("write");
    p
}

/// Replaces `path` by atomic rename, as an editor or a git checkout does.
fn replace(path: &Path, text: &str) {
    let tmp = path.with_extension("tmp~");
    std::fs::write(&tmp, text).expect("write tmp");
    std::fs::rename(&tmp, path).expect("rename");
}

/// podnet's objects on a node, normalised (no nexthop ids, no handles): routes of the
/// route protocol, permanent neighbours and FDB entries on flannel.1, owned links, the
/// nft table and the conflist.
fn owned_state(n: &Node) -> Vec<String> {
    let mut out: Vec<String> =
        n.ns.ip(&["route", "show", "proto", "77"])
            .lines()
            .map(|l| {
                let mut w: Vec<&str> = l.split_whitespace().collect();
                if let Some(i) = w.iter().position(|x| *x == "nhid") {
                    w.drain(i..i + 2);
                }
                format!("route {}", w.join(" "))
            })
            .collect();
    let links = n.ns.ip(&["-o", "-d", "link", "show"]);
    for l in links.lines() {
        if l.contains("flannel.1") || l.contains(" cni0") {
            let fields: Vec<&str> = l.split_whitespace().collect();
            let mtu = fields
                .iter()
                .position(|x| *x == "mtu")
                .and_then(|i| fields.get(i + 1))
                .copied()
                .unwrap_or("?");
            let up = l.contains(",UP") || l.contains("<UP");
            out.push(format!("link {} mtu {mtu} up {up}", fields[1]));
        }
    }
    if links.contains("flannel.1") {
        for l in
            n.ns.ip(&["neigh", "show", "dev", "flannel.1", "nud", "permanent"])
                .lines()
        {
            out.push(format!("neigh {l}"));
        }
        let fdb = n.ns.sh("bridge", &["fdb", "show", "dev", "flannel.1"]);
        for l in fdb.lines().filter(|l| l.contains(" dst ")) {
            out.push(format!("fdb {l}"));
        }
    }
    let nft = n.ns.exec("nft", &["list", "table", "inet", "podnet"]);
    out.push(format!("nft {}", String::from_utf8_lossy(&nft.stdout)));
    let conflist = Path::new(n.root()).join("etc/cni/net.d/10-podnet.conflist");
    out.push(format!(
        "conflist {}",
        std::fs::read_to_string(conflist).unwrap_or_else(|_| "(missing)".into())
    ));
    out.sort();
    out
}

fn wait_state(n: &Node, want: &[String], within: Duration, what: &str, d: &Daemon) {
    let mut last = Vec::new();
    let ok = eventually(within, || {
        last = owned_state(n);
        last == want
    });
    assert!(
        ok,
        "{what}: not repaired within {within:?}\nwant: {want:#?}\nhave: {last:#?}\nlog:\n{}",
        d.log()
    );
}

#[test]
fn every_kind_of_drift_is_repaired() {
    for backend in ["host-gw", "vxlan"] {
        let dir = tempfile::tempdir().expect("dir");
        let text = CLUSTER.replace("backend host-gw", &format!("backend {backend}"));
        let file = write(dir.path(), "cluster.podnet", &text);
        let n = Node::new("w1", "192.168.56.11/24");
        let mut d = Daemon::start(&n.ns, &file, n.root(), &[]);
        d.ready(Duration::from_secs(10));
        let want = owned_state(&n);
        assert!(
            want.iter().filter(|l| l.starts_with("route ")).count() == 2,
            "{backend}: two peer routes: {want:#?}"
        );
        let budget = Duration::from_secs(3);
        let mut drifts: Vec<(&str, Drift)> = vec![
            (
                "a deleted route",
                Box::new(|n: &Node| {
                    n.ns.ip(&["route", "del", "10.244.2.0/24"]);
                }),
            ),
            (
                "a deleted nexthop",
                Box::new(|n: &Node| {
                    let r = n.ns.ip(&["route", "show", "10.244.3.0/24"]);
                    let id = r
                        .split_whitespace()
                        .skip_while(|w| *w != "nhid")
                        .nth(1)
                        .expect("route uses a nexthop")
                        .to_string();
                    n.ns.ip(&["nexthop", "del", "id", &id]);
                }),
            ),
            (
                "the nft table deleted",
                Box::new(|n: &Node| {
                    n.ns.sh("nft", &["delete", "table", "inet", "podnet"]);
                }),
            ),
            (
                "a rule inside the nft table changed",
                Box::new(|n: &Node| {
                    let t = n.ns.sh("nft", &["-j", "list", "table", "inet", "podnet"]);
                    let v: serde_json::Value = serde_json::from_str(&t).expect("json");
                    let chain = v["nftables"]
                        .as_array()
                        .expect("list")
                        .iter()
                        .find_map(|o| o["rule"]["chain"].as_str())
                        .expect("a rule")
                        .to_string();
                    n.ns.sh("nft", &["flush", "chain", "inet", "podnet", &chain]);
                }),
            ),
            (
                "the conflist deleted",
                Box::new(|n: &Node| {
                    std::fs::remove_file(
                        Path::new(n.root()).join("etc/cni/net.d/10-podnet.conflist"),
                    )
                    .expect("rm");
                }),
            ),
            (
                "the underlay link down and up",
                Box::new(|n: &Node| {
                    n.ns.ip(&["link", "set", "eth0", "down"]);
                    std::thread::sleep(Duration::from_millis(50));
                    n.ns.ip(&["link", "set", "eth0", "up"]);
                }),
            ),
        ];
        if backend == "vxlan" {
            drifts.push((
                "a deleted neighbour",
                Box::new(|n: &Node| {
                    n.ns.ip(&["neigh", "del", "10.244.2.0", "dev", "flannel.1"]);
                }),
            ));
            drifts.push((
                "a deleted FDB entry",
                Box::new(|n: &Node| {
                    let fdb = n.ns.sh("bridge", &["fdb", "show", "dev", "flannel.1"]);
                    let line = fdb
                        .lines()
                        .find(|l| l.contains("dst 192.168.56.12"))
                        .expect("fdb entry for n2");
                    let mac = line.split_whitespace().next().expect("mac");
                    n.ns.sh(
                        "bridge",
                        &[
                            "fdb",
                            "del",
                            mac,
                            "dev",
                            "flannel.1",
                            "dst",
                            "192.168.56.12",
                        ],
                    );
                }),
            ));
            drifts.push((
                "the vxlan MTU changed",
                Box::new(|n: &Node| {
                    n.ns.ip(&["link", "set", "flannel.1", "mtu", "1400"]);
                }),
            ));
            drifts.push((
                "the vxlan device deleted",
                Box::new(|n: &Node| {
                    n.ns.ip(&["link", "del", "flannel.1"]);
                }),
            ));
        }
        for (what, make) in &drifts {
            make(&n);
            wait_state(&n, &want, budget, &format!("{backend}: {what}"), &d);
        }
        // Everything repaired was counted, and the node has no drift left.
        let route = metric(&d.ns, "podnet_drift_repairs_total{kind=\"route\"}").unwrap_or(0.0);
        assert!(route >= 2.0, "{backend}: route repairs counted: {route}");
        let fw = metric(&d.ns, "podnet_drift_repairs_total{kind=\"firewall\"}").unwrap_or(0.0);
        assert!(fw >= 2.0, "{backend}: firewall repairs counted: {fw}");
        let status = n.podnet(&["status", "--detailed-exitcode"]);
        assert_eq!(
            status.status.code(),
            Some(0),
            "{backend}: status after the repairs:\n{}",
            String::from_utf8_lossy(&status.stdout)
        );
        assert_eq!(d.stop(), Some(0), "{backend}: SIGTERM exits 0");
        // SIGTERM leaves the node's state in place.
        assert_eq!(owned_state(&n), want, "{backend}: state after SIGTERM");
    }
}

/// A way to make the node drift.
type Drift = Box<dyn Fn(&Node)>;

/// A tiny deterministic generator (the seed is printed on failure).
struct Rng(u64);

impl Rng {
    fn below(&mut self, n: usize) -> usize {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        (self.0 % n as u64) as usize
    }
}

fn foreign_state(n: &Node) -> Vec<String> {
    vec![
        n.ns.ip(&["route", "show", "proto", "static"]),
        n.ns.ip(&["-o", "link", "show", "fx0"])
            .split_whitespace()
            .skip(1)
            .take(3)
            .collect::<Vec<_>>()
            .join(" "),
        n.ns.sh("nft", &["list", "table", "inet", "foreign"]),
        std::fs::read_to_string(Path::new(n.root()).join("etc/cni/net.d/99-other.conflist"))
            .unwrap_or_default(),
    ]
}

#[test]
fn chaos_ends_equal_to_a_fresh_apply_and_foreign_objects_survive() {
    let seed = 0x9e37_79b9_7f4a_7c15_u64 ^ u64::from(std::process::id());
    let mut rng = Rng(seed | 1);
    let dir = tempfile::tempdir().expect("dir");
    let vx = CLUSTER.replace("backend host-gw", "backend vxlan");
    let configs = [
        vx.clone(),
        vx.replace(
            "node n3 { address 192.168.56.13/24; subnet 10.244.3.0/24 }\n",
            "",
        ),
        format!("{vx}node n4 {{ address 192.168.56.14/24; subnet 10.244.4.0/24 }}\n"),
    ];
    let file = write(dir.path(), "cluster.podnet", &configs[0]);
    let n = Node::new("wc", "192.168.56.11/24");
    // Foreign objects planted before podnet starts.
    n.ns.ip(&[
        "route",
        "add",
        "10.99.0.0/24",
        "via",
        "192.168.56.1",
        "proto",
        "static",
    ]);
    n.ns.ip(&["link", "add", "fx0", "type", "veth", "peer", "name", "fx1"]);
    n.ns.sh("nft", &["add", "table", "inet", "foreign"]);
    n.ns.sh(
        "nft",
        &[
            "add", "chain", "inet", "foreign", "c", "{", "type", "filter", "hook", "input",
            "priority", "0", ";", "}",
        ],
    );
    std::fs::create_dir_all(Path::new(n.root()).join("etc/cni/net.d")).expect("mkdir");
    std::fs::write(
        Path::new(n.root()).join("etc/cni/net.d/99-other.conflist"),
        "{\"other\": true}\n",
    )
    .expect("write");
    let foreign = foreign_state(&n);
    let mut d = Daemon::start(&n.ns, &file, n.root(), &[]);
    d.ready(Duration::from_secs(10));
    let mut current = 0;
    let rounds = 40;
    for round in 0..rounds {
        match rng.below(8) {
            0 => {
                let routes = n.ns.ip(&["route", "show", "proto", "77"]);
                if let Some(dst) = routes
                    .lines()
                    .nth(rng.below(3))
                    .and_then(|l| l.split_whitespace().next())
                {
                    let _ = n.ns.exec("ip", &["route", "del", dst]);
                }
            }
            1 => {
                let _ = n.ns.exec("ip", &["nexthop", "flush", "proto", "77"]);
            }
            2 => {
                let _ = n.ns.exec(
                    "ip",
                    &["neigh", "flush", "dev", "flannel.1", "nud", "permanent"],
                );
            }
            3 => {
                let _ =
                    n.ns.exec("ip", &["link", "set", "flannel.1", "mtu", "1300"]);
            }
            4 => {
                let _ = n.ns.exec("nft", &["delete", "table", "inet", "podnet"]);
            }
            5 => {
                let _ = std::fs::remove_file(
                    Path::new(n.root()).join("etc/cni/net.d/10-podnet.conflist"),
                );
            }
            6 => {
                let _ = n.ns.exec("ip", &["link", "del", "flannel.1"]);
            }
            _ => {
                current = (current + 1 + rng.below(2)) % configs.len();
                replace(&file, &configs[current]);
            }
        }
        // Sometimes at once, sometimes after the daemon had time to act.
        if round % 3 == 0 {
            std::thread::sleep(Duration::from_millis(30 + rng.below(100) as u64));
        }
    }
    // The end state: the last config, as a fresh apply on a fresh node leaves it.
    let fresh = Node::new("wf", "192.168.56.11/24");
    let fresh_file = write(dir.path(), "fresh.podnet", &configs[current]);
    fresh.ok(&["apply", fresh_file.to_str().expect("utf-8")]);
    let want = owned_state(&fresh);
    let mut have = Vec::new();
    let ok = eventually(Duration::from_secs(10), || {
        have = owned_state(&n);
        have == want
    });
    assert!(
        ok,
        "seed {seed:#x}: after {rounds} rounds the node differs from a fresh apply\n\
         want: {want:#?}\nhave: {have:#?}\nlog:\n{}",
        d.log()
    );
    assert_eq!(
        foreign_state(&n),
        foreign,
        "seed {seed:#x}: foreign objects changed"
    );
    let live = n.podnet(&[
        "plan",
        file.to_str().expect("utf-8"),
        "--node",
        "n1",
        "--live",
        "--detailed-exitcode",
    ]);
    assert_eq!(
        live.status.code(),
        Some(0),
        "seed {seed:#x}: plan --live after chaos:\n{}{}",
        String::from_utf8_lossy(&live.stdout),
        String::from_utf8_lossy(&live.stderr)
    );
}

#[test]
fn a_bad_config_keeps_what_is_applied_and_edits_by_rename_or_configmap_swap_converge() {
    let dir = tempfile::tempdir().expect("dir");
    // A ConfigMap volume: the file is a symlink through `..data` into a timestamped dir.
    let cm = dir.path().join("cm");
    let gen1 = cm.join("..2026_12_02_01");
    std::fs::create_dir_all(&gen1).expect("mkdir");
    std::fs::write(gen1.join("cluster.podnet"), CLUSTER).expect("write");
    std::os::unix::fs::symlink("..2026_12_02_01", cm.join("..data")).expect("symlink");
    std::os::unix::fs::symlink("..data/cluster.podnet", cm.join("cluster.podnet"))
        .expect("symlink");
    let file = cm.join("cluster.podnet");
    let n = Node::new("wb", "192.168.56.11/24");
    let mut d = Daemon::start(&n.ns, &file, n.root(), &[]);
    d.ready(Duration::from_secs(10));
    let good = owned_state(&n);

    // A swap to an invalid config: everything stays, readiness says why.
    let swap = |generation: &str, text: &str| {
        let g = cm.join(generation);
        std::fs::create_dir_all(&g).expect("mkdir");
        std::fs::write(g.join("cluster.podnet"), text).expect("write");
        let tmp = cm.join("..data_tmp");
        let _ = std::fs::remove_file(&tmp);
        std::os::unix::fs::symlink(generation, &tmp).expect("symlink");
        std::fs::rename(&tmp, cm.join("..data")).expect("swap");
    };
    swap(
        "..2026_12_02_02",
        &CLUSTER.replace("pod-cidr 10.244.0.0/16", "pod-cidr 10.244.0.0/33"),
    );
    let ok = eventually(Duration::from_secs(5), || {
        get(&d.ns, "/readyz").is_some_and(|(c, b)| c == 503 && b.contains("invalid config"))
    });
    assert!(
        ok,
        "readyz after an invalid config: {:?}\n{}",
        get(&d.ns, "/readyz"),
        d.log()
    );
    assert_eq!(metric(&d.ns, "podnet_config_valid"), Some(0.0));
    assert!(
        d.log().contains("the last good config stays applied"),
        "{}",
        d.log()
    );
    // Drift is still repaired against the last good plan.
    n.ns.ip(&["route", "del", "10.244.2.0/24"]);
    wait_state(
        &n,
        &good,
        Duration::from_secs(3),
        "repair while the config is invalid",
        &d,
    );

    // Fixed by the next swap (n3 removed): converges on it.
    swap(
        "..2026_12_02_03",
        &CLUSTER.replace(
            "node n3 { address 192.168.56.13/24; subnet 10.244.3.0/24 }\n",
            "",
        ),
    );
    let ok = eventually(Duration::from_secs(5), || {
        !n.ns
            .ip(&["route", "show", "proto", "77"])
            .contains("10.244.3.0")
            && get(&d.ns, "/readyz").is_some_and(|(c, _)| c == 200)
    });
    assert!(ok, "after the ConfigMap swap:\n{}", d.log());
    let ok = eventually(Duration::from_secs(2), || {
        metric(&d.ns, "podnet_config_valid") == Some(1.0)
    });
    assert!(ok, "podnet_config_valid after the fix");

    // A plain file edited by atomic rename (an editor's save) converges too.
    let plain = write(dir.path(), "plain.podnet", CLUSTER);
    d.stop();
    let mut d = Daemon::start(&n.ns, &plain, n.root(), &[]);
    d.ready(Duration::from_secs(10));
    assert!(
        n.ns.ip(&["route", "show", "proto", "77"])
            .contains("10.244.3.0")
    );
    replace(&plain, &CLUSTER.replace("backend host-gw", "backend vxlan"));
    let ok = eventually(Duration::from_secs(5), || {
        n.ns.ip(&["-o", "link", "show"]).contains("flannel.1")
            && n.ns
                .ip(&["route", "show", "proto", "77"])
                .contains("dev flannel.1")
    });
    assert!(ok, "after the rename:\n{}", d.log());
    // An unreadable edit (a syntax error) in place keeps every route and rule.
    let before = owned_state(&n);
    std::fs::write(&plain, "cluster t {\n  pod-cidr\n").expect("write");
    let ok = eventually(Duration::from_secs(5), || {
        get(&d.ns, "/readyz").is_some_and(|(c, _)| c == 503)
    });
    assert!(ok, "readyz after a syntax error:\n{}", d.log());
    std::thread::sleep(Duration::from_millis(300));
    assert_eq!(
        owned_state(&n),
        before,
        "an invalid config changed the node"
    );
    assert_eq!(d.stop(), Some(0));
}

#[test]
fn a_subpath_mount_is_refused_at_start() {
    let dir = tempfile::tempdir().expect("dir");
    let src = write(dir.path(), "src.podnet", CLUSTER);
    let target = write(dir.path(), "cluster.podnet", "");
    let n = Node::new("ws", "192.168.56.11/24");
    // A single-file bind mount, as kubelet makes for a subPath, in a private mount
    // namespace so the host's mounts are never touched.
    let out = Command::new("unshare")
        .args([
            "--mount",
            "--propagation",
            "private",
            "sh",
            "-c",
            &format!(
                "mount --bind {} {} && ip netns exec {} {} watch {} --root {} --listen 127.0.0.1:{PORT}",
                src.display(),
                target.display(),
                n.ns.name,
                bin(),
                target.display(),
                n.root()
            ),
        ])
        .output()
        .expect("unshare");
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert!(
        err.contains("subPath") && err.contains("as a directory"),
        "{err}"
    );
}

#[test]
fn a_restart_on_a_converged_node_writes_nothing_and_loses_no_ping() {
    use common::cni;
    let dir = tempfile::tempdir().expect("dir");
    let text = CLUSTER.replace(
        "node n3 { address 192.168.56.13/24; subnet 10.244.3.0/24 }\n",
        "",
    );
    let file = write(dir.path(), "cluster.podnet", &text);
    let underlay = NetNs::new("wul");
    underlay.ip(&["link", "add", "br0", "type", "bridge"]);
    underlay.ip(&["link", "set", "br0", "up"]);
    let mut nodes = Vec::new();
    for (i, name) in ["n1", "n2"].into_iter().enumerate() {
        let ns = NetNs::new(&format!("w{name}"));
        ns.sh("sysctl", &["-qw", "net.ipv6.conf.default.accept_dad=0"]);
        let port = format!("p{i}");
        common::veth(&ns, "eth0", &underlay, &port);
        underlay.ip(&["link", "set", &port, "master", "br0"]);
        ns.ip(&[
            "addr",
            "add",
            &format!("192.168.56.{}/24", 11 + i),
            "dev",
            "eth0",
        ]);
        let root = tempfile::tempdir().expect("root");
        let r = root.path().to_str().expect("utf-8").to_string();
        let mut d = Daemon::start(&ns, &file, &r, &[]);
        d.ready(Duration::from_secs(10));
        let conflist: serde_json::Value = serde_json::from_str(
            &std::fs::read_to_string(root.path().join("etc/cni/net.d/10-podnet.conflist"))
                .expect("conflist"),
        )
        .expect("json");
        let confs = cni::plugin_confs(&conflist, &root.path().join("cni-data"));
        let pod = NetNs::new(&format!("w{name}p"));
        let container = format!("podnet-test-{}", pod.name);
        let result = cni::add(&ns, &confs, &pod, &container);
        let ip = result["ips"][0]["address"]
            .as_str()
            .and_then(|a| a.split('/').next())
            .expect("pod address")
            .to_string();
        nodes.push((ns, pod, root, confs, container, result, ip, d, r));
    }
    assert!(
        cni::ping(&nodes[0].1, &nodes[1].6, 5),
        "pods reach each other"
    );
    // Watch every kernel and nftables change on both nodes during the restarts.
    let monitors: Vec<Child> = nodes
        .iter()
        .flat_map(|n| {
            [
                Command::new("ip")
                    .args([
                        "-n", &n.0.name, "monitor", "link", "address", "route", "neigh", "nexthop",
                    ])
                    .stdout(Stdio::piped())
                    .stderr(Stdio::null())
                    .spawn()
                    .expect("ip monitor"),
                Command::new("ip")
                    .args(["netns", "exec", &n.0.name, "nft", "monitor"])
                    .stdout(Stdio::piped())
                    .stderr(Stdio::null())
                    .spawn()
                    .expect("nft monitor"),
            ]
        })
        .collect();
    let mut monitors = Guarded(monitors);
    std::thread::sleep(Duration::from_millis(200));
    // 200 pings 20 ms apart (4 s) from the pod on n1 to the pod on n2.
    let ping = Command::new("ip")
        .args([
            "netns",
            "exec",
            &nodes[0].1.name,
            "ping",
            "-q",
            "-c",
            "200",
            "-i",
            "0.02",
            "-W",
            "1",
            &nodes[1].6,
        ])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("ping");
    for n in &mut nodes {
        std::thread::sleep(Duration::from_millis(300));
        assert_eq!(n.7.stop(), Some(0), "SIGTERM exits 0");
        let mut d = Daemon::start(&n.0, &file, &n.8, &[]);
        d.ready(Duration::from_secs(10));
        let log = d.log();
        assert!(
            !log.contains("\"applied\"") && log.contains("\"changes\":0"),
            "the restart changed something:\n{log}"
        );
        n.7 = d;
    }
    let out = ping.wait_with_output().expect("ping");
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        text.contains("200 packets transmitted, 200 received"),
        "pings lost across the restarts:\n{text}"
    );
    for m in &mut monitors.0 {
        let _ = m.kill();
    }
    for m in std::mem::take(&mut monitors.0) {
        let out = m.wait_with_output().expect("monitor");
        let seen = String::from_utf8_lossy(&out.stdout);
        // The pod's own traffic refreshes ARP entries of the kernel's cache, and the kernel
        // finishes IPv6 link-local set-up on its own; anything else (an IPv4 address, a
        // link, route, nexthop, permanent neighbour or nft change) is a write.
        let kernel_own = |l: &str| {
            [
                "REACHABLE",
                "STALE",
                "DELAY",
                "PROBE",
                "NOARP",
                "inet6",
                "valid_lft",
                "fe80:",
                "ff02:",
                "ff00:",
            ]
            .iter()
            .any(|k| l.contains(k))
        };
        let writes: Vec<&str> = seen
            .lines()
            .filter(|l| !l.trim().is_empty() && !kernel_own(l))
            .collect();
        assert!(writes.is_empty(), "the restarts wrote: {writes:#?}");
    }
    for (ns, pod, _root, confs, container, result, ..) in &nodes {
        cni::del(ns, confs, pod, container, result);
    }
}

/// Child processes killed on drop.
struct Guarded(Vec<Child>);

impl Drop for Guarded {
    fn drop(&mut self) {
        for c in &mut self.0 {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

// Found by a hostile review: drift the model can mis-track, and what the daemon must not
// do (spin while idle, retry a persistent conflict in a tight loop).

/// The nexthop id the route to `dst` uses.
fn nhid(n: &Node, dst: &str) -> String {
    let r = n.ns.ip(&["route", "show", dst]);
    r.split_whitespace()
        .skip_while(|w| *w != "nhid")
        .nth(1)
        .unwrap_or_else(|| panic!("route {dst} uses a nexthop: {r:?}"))
        .to_string()
}

/// User plus system CPU ticks of `pid` so far (`/proc/PID/stat` fields 14 and 15).
fn cpu_ticks(pid: u32) -> u64 {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).expect("stat");
    let after = &stat[stat.rfind(')').expect("comm") + 2..];
    let f: Vec<&str> = after.split_whitespace().collect();
    // Fields from the state on: utime is the 14th field overall, the 12th here.
    f[11].parse::<u64>().expect("utime") + f[12].parse::<u64>().expect("stime")
}

/// A node running the daemon on `text`, converged.
fn started(tag: &str, text: &str) -> (tempfile::TempDir, Node, Daemon) {
    let dir = tempfile::tempdir().expect("dir");
    let file = write(dir.path(), "cluster.podnet", text);
    let n = Node::new(tag, "192.168.56.11/24");
    let mut d = Daemon::start(&n.ns, &file, n.root(), &[]);
    d.ready(Duration::from_secs(10));
    (dir, n, d)
}

/// `ip nexthop replace id N via OTHER` changes podnet's nexthop in place: the kernel
/// announces the nexthop (RTM_NEWNEXTHOP), not the routes that use it, and every route
/// through it now goes to the wrong gateway. The model records the new nexthop but marks
/// nothing touched, so nothing is repaired until the resync (5 min).
#[test]
fn a_nexthop_changed_in_place_is_repaired() {
    let (_dir, n, d) = started("rnh", CLUSTER);
    let want = owned_state(&n);
    let id = nhid(&n, "10.244.2.0/24");
    n.ns.ip(&[
        "nexthop",
        "replace",
        "id",
        &id,
        "via",
        "192.168.56.99",
        "dev",
        "eth0",
        "proto",
        "77",
    ]);
    wait_state(
        &n,
        &want,
        Duration::from_secs(3),
        "a nexthop's gateway changed in place",
        &d,
    );
}

/// `bridge fdb replace MAC dev flannel.1 dst OTHER` changes the entry's remote in place:
/// the kernel announces the new destination (RTM_NEWNEIGH) but never the old one's
/// removal. The model then holds both; the diff sees the planned destination still
/// present and deletes the "extra" one — which is the only entry, so the peer's FDB entry
/// is gone and, with the model still showing the stale one, never comes back.
#[test]
fn an_fdb_entry_whose_destination_was_replaced_is_repaired() {
    let (_dir, n, d) = started("rfdb", &CLUSTER.replace("host-gw", "vxlan"));
    let want = owned_state(&n);
    let fdb = n.ns.sh("bridge", &["fdb", "show", "dev", "flannel.1"]);
    let mac = fdb
        .lines()
        .find(|l| l.contains("dst 192.168.56.12"))
        .and_then(|l| l.split_whitespace().next())
        .expect("fdb entry for n2")
        .to_string();
    n.ns.sh(
        "bridge",
        &[
            "fdb",
            "replace",
            &mac,
            "dev",
            "flannel.1",
            "dst",
            "192.168.56.99",
            "self",
            "permanent",
        ],
    );
    wait_state(
        &n,
        &want,
        Duration::from_secs(3),
        "an FDB entry's destination replaced",
        &d,
    );
}

/// A planned route replaced by one of podnet's own protocol that has neither a gateway
/// nor a nexthop (a blackhole, or `dev X` only): the event decoder and the observation
/// both drop such a route (not "ours", since it has no target; not foreign, since it has
/// podnet's protocol), so the daemon ignores the event, and a full reconcile plans a
/// create-exclusive add that fails with EEXIST, forever. Traffic to the peer is dropped.
#[test]
fn a_planned_route_turned_into_a_blackhole_of_podnets_protocol_is_repaired() {
    let (_dir, n, d) = started("rbh", CLUSTER);
    let want = owned_state(&n);
    n.ns.ip(&[
        "route",
        "replace",
        "blackhole",
        "10.244.2.0/24",
        "proto",
        "77",
    ]);
    wait_state(
        &n,
        &want,
        Duration::from_secs(3),
        "a planned route replaced by a blackhole of protocol 77",
        &d,
    );
    n.ns.ip(&[
        "route",
        "replace",
        "10.244.3.0/24",
        "dev",
        "eth0",
        "proto",
        "77",
    ]);
    wait_state(
        &n,
        &want,
        Duration::from_secs(3),
        "a planned route replaced by a device route of protocol 77",
        &d,
    );
}

/// A foreign tool replaces a planned route (`ip route replace … proto static`): a
/// conflict, reported by `/readyz`. The replace is announced as a new foreign route only,
/// so the model keeps podnet's old route as if it were still there (a refused full
/// reconcile does not rebuild the model). When the foreign route goes away, the event's
/// repair finds "podnet's route" in the model and does nothing: the destination stays
/// without a route until the conflict's back-off retry, which has grown to seconds.
#[test]
fn a_foreign_route_that_replaced_a_planned_one_and_went_away_is_repaired_at_once() {
    let (_dir, n, d) = started("rfr", CLUSTER);
    let want = owned_state(&n);
    n.ns.ip(&[
        "route",
        "replace",
        "10.244.2.0/24",
        "via",
        "192.168.56.99",
        "dev",
        "eth0",
        "proto",
        "static",
    ]);
    let ok = eventually(Duration::from_secs(5), || {
        get(&d.ns, "/readyz").is_some_and(|(c, b)| c == 503 && b.contains("conflict"))
    });
    assert!(
        ok,
        "readyz with a foreign route in the way: {:?}\n{}",
        get(&d.ns, "/readyz"),
        d.log()
    );
    // The conflict persists for a while (the back-off grows), then the tool goes away.
    std::thread::sleep(Duration::from_secs(8));
    n.ns.ip(&["route", "del", "10.244.2.0/24", "proto", "static"]);
    wait_state(
        &n,
        &want,
        Duration::from_secs(2),
        "the planned route after the foreign one was deleted",
        &d,
    );
    let ok = eventually(Duration::from_secs(2), || {
        get(&d.ns, "/readyz").is_some_and(|(c, _)| c == 200)
    });
    assert!(ok, "readyz after the conflict cleared:\n{}", d.log());
}

/// Idle, the daemon must not spin.
#[test]
fn idle_costs_nothing() {
    let (_dir, _n, mut d) = started("ridle", &CLUSTER.replace("host-gw", "vxlan"));
    let pid = d.child.id();
    let t0 = cpu_ticks(pid);
    std::thread::sleep(Duration::from_secs(3));
    let idle = cpu_ticks(pid) - t0;
    assert!(idle <= 3, "idle CPU over 3 s: {idle} ticks\n{}", d.log());
    assert_eq!(d.stop(), Some(0), "SIGTERM exits 0");
}

/// A persistent conflict (a foreign route where a planned one goes, there before the
/// daemon starts) is reported and retried with back-off, not in a tight loop.
#[test]
fn a_persistent_conflict_backs_off() {
    let dir = tempfile::tempdir().expect("dir");
    let file = write(dir.path(), "cluster.podnet", CLUSTER);
    let n = Node::new("rback", "192.168.56.11/24");
    n.ns.ip(&[
        "route",
        "add",
        "blackhole",
        "10.244.2.0/24",
        "proto",
        "static",
    ]);
    let d = Daemon::start(&n.ns, &file, n.root(), &[]);
    let ok = eventually(Duration::from_secs(5), || {
        get(&d.ns, "/readyz").is_some_and(|(c, b)| c == 503 && b.contains("conflict"))
    });
    assert!(ok, "readyz: {:?}\n{}", get(&d.ns, "/readyz"), d.log());
    std::thread::sleep(Duration::from_secs(2));
    let lines = |d: &Daemon| d.log().lines().filter(|l| l.contains("conflict")).count();
    let (before, t1) = (lines(&d), cpu_ticks(d.child.id()));
    std::thread::sleep(Duration::from_secs(4));
    let (retries, busy) = (lines(&d) - before, cpu_ticks(d.child.id()) - t1);
    assert!(retries <= 4, "{retries} conflict lines in 4 s\n{}", d.log());
    assert!(busy <= 10, "CPU during the conflict: {busy} ticks in 4 s");
}

/// A foreign tool deletes podnet's vxlan and creates its own `flannel.1` (no ifalias
/// marker, VNI 42): that is a conflict to report, never a device to take over (invariant
/// 10). But the observation counts any unmarked link whose name and kind the journal
/// lists as podnet's ("created but not marked before a crash") — and the journal lists
/// every planned link forever — so the daemon deletes the foreign device and recreates
/// its own in its place, and `/readyz` says ok. `podnet apply` does the same.
#[test]
fn a_foreign_vxlan_with_podnets_name_is_a_conflict_not_taken_over() {
    let (_dir, n, d) = started("rfvx", &CLUSTER.replace("host-gw", "vxlan"));
    // Done while the daemon is stopped (SIGSTOP): it would otherwise recreate its own
    // device between the two commands.
    let signal = |sig: &str| {
        let _ = Command::new("kill")
            .args([sig, &d.child.id().to_string()])
            .status();
    };
    signal("-STOP");
    n.ns.ip(&["link", "del", "flannel.1"]);
    n.ns.ip(&[
        "link",
        "add",
        "flannel.1",
        "type",
        "vxlan",
        "id",
        "42",
        "dstport",
        "4789",
        "dev",
        "eth0",
    ]);
    signal("-CONT");
    std::thread::sleep(Duration::from_secs(1));
    let link = n.ns.ip(&["-d", "link", "show", "flannel.1"]);
    assert!(
        link.contains("vxlan id 42"),
        "the foreign flannel.1 was replaced: {link}\n{}",
        d.log()
    );
    let ok = eventually(Duration::from_secs(3), || {
        get(&d.ns, "/readyz").is_some_and(|(c, b)| c == 503 && b.contains("conflict"))
    });
    assert!(
        ok,
        "readyz with a foreign flannel.1: {:?}\n{}",
        get(&d.ns, "/readyz"),
        d.log()
    );
}

/// The daemon starts before the node's address is configured (a boot where DHCP or
/// networkd is slower than podnet): the config compiles but no node is local, so it is
/// reported as invalid. When the address appears the node must converge — but the
/// config's fingerprint covers only its files, the address event is dropped (no model
/// yet), the poll sees the same files, the resync has no plan to reconcile, and even
/// SIGHUP's re-read finds the fingerprint "unchanged": the node stays unconfigured.
#[test]
fn a_node_address_that_appears_after_start_converges() {
    let dir = tempfile::tempdir().expect("dir");
    let file = write(dir.path(), "cluster.podnet", CLUSTER);
    let n = Node::new("raddr", "192.168.56.11/24");
    n.ns.ip(&["addr", "del", "192.168.56.11/24", "dev", "eth0"]);
    let d = Daemon::start(&n.ns, &file, n.root(), &[]);
    let ok = eventually(Duration::from_secs(5), || {
        get(&d.ns, "/readyz").is_some_and(|(c, b)| c == 503 && b.contains("invalid config"))
    });
    assert!(
        ok,
        "readyz without a local node: {:?}\n{}",
        get(&d.ns, "/readyz"),
        d.log()
    );
    n.ns.ip(&["addr", "add", "192.168.56.11/24", "dev", "eth0"]);
    let ready = |d: &Daemon, within: Duration| {
        eventually(within, || {
            get(&d.ns, "/readyz").is_some_and(|(c, _)| c == 200)
        })
    };
    if !ready(&d, Duration::from_secs(4)) {
        let _ = Command::new("kill")
            .args(["-HUP", &d.child.id().to_string()])
            .status();
        let after_hup = ready(&d, Duration::from_secs(3));
        panic!(
            "not converged 4 s after the node's address appeared (then after SIGHUP: {}): \
             {:?}\n{}",
            if after_hup {
                "ready"
            } else {
                "still not ready"
            },
            get(&d.ns, "/readyz"),
            d.log()
        );
    }
    assert!(
        n.ns.ip(&["route", "show", "proto", "77"])
            .contains("10.244.2.0/24")
    );
}

/// The config's debounce is trailing without a cap: each event in the directory moves
/// the reload 100 ms further, and the poll skips while a reload is pending. Another file
/// in the same directory written more often than every 100 ms (a log, a sidecar's
/// heartbeat) then holds back every config change for as long as it keeps writing.
#[test]
fn a_busy_config_directory_does_not_hold_back_an_edit() {
    let dir = tempfile::tempdir().expect("dir");
    let file = write(dir.path(), "cluster.podnet", CLUSTER);
    let n = Node::new("rbusy", "192.168.56.11/24");
    let mut d = Daemon::start(&n.ns, &file, n.root(), &[]);
    d.ready(Duration::from_secs(10));
    replace(
        &file,
        &CLUSTER.replace(
            "node n3 { address 192.168.56.13/24; subnet 10.244.3.0/24 }\n",
            "",
        ),
    );
    let started = Instant::now();
    let mut applied = None;
    // Another file in the directory, written every 50 ms for at most 4 s.
    for i in 0..80 {
        std::fs::write(dir.path().join("heartbeat"), i.to_string()).expect("write");
        if !n
            .ns
            .ip(&["route", "show", "proto", "77"])
            .contains("10.244.3.0")
        {
            applied = Some(started.elapsed());
            break;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    assert!(
        applied.is_some_and(|t| t < Duration::from_secs(2)),
        "the edit was applied after {applied:?} while another file was written every 50 ms\n{}",
        d.log()
    );
}

/// A new config that cannot be applied (a foreign route in the way of the node it adds)
/// must leave the last good plan the one repaired (invariant 19). But a drift that needs
/// a full reconcile — the underlay going down and up, which drops every route through it
/// without an event — runs the full reconcile of the *new* config, which is refused for
/// the conflict before any write, again and again: the old plan's routes never come back
/// and the node loses its pod network for as long as the conflict lasts.
#[test]
fn a_link_flap_while_a_new_config_conflicts_restores_the_last_good_routes() {
    let dir = tempfile::tempdir().expect("dir");
    let file = write(dir.path(), "cluster.podnet", CLUSTER);
    let n = Node::new("rflap", "192.168.56.11/24");
    let mut d = Daemon::start(&n.ns, &file, n.root(), &[]);
    d.ready(Duration::from_secs(10));
    let good = owned_state(&n);
    // A foreign route where the next config's new node n4 goes (a blackhole: it survives
    // the underlay flap).
    n.ns.ip(&[
        "route",
        "add",
        "blackhole",
        "10.244.4.0/24",
        "proto",
        "static",
    ]);
    replace(
        &file,
        &format!("{CLUSTER}node n4 {{ address 192.168.56.14/24; subnet 10.244.4.0/24 }}\n"),
    );
    let ok = eventually(Duration::from_secs(5), || {
        get(&d.ns, "/readyz").is_some_and(|(c, b)| c == 503 && b.contains("conflict"))
    });
    assert!(
        ok,
        "readyz with the new config in conflict: {:?}\n{}",
        get(&d.ns, "/readyz"),
        d.log()
    );
    assert_eq!(owned_state(&n), good, "the refused config changed the node");
    n.ns.ip(&["link", "set", "eth0", "down"]);
    std::thread::sleep(Duration::from_millis(50));
    n.ns.ip(&["link", "set", "eth0", "up"]);
    wait_state(
        &n,
        &good,
        Duration::from_secs(3),
        "the last good plan's routes after an underlay flap during a conflict",
        &d,
    );
}

/// A config change that only adds, removes or moves nodes goes the short way (the changed
/// routes, neighbours and FDB entries repaired against the daemon's model, no full
/// re-read): after each edit the node equals a fresh apply of that config, nothing is
/// stale (no nexthop of a removed node left), `status` is clean against the journaled
/// plan, and a full resync afterwards finds nothing to change.
#[test]
fn a_change_of_nodes_only_is_applied_as_a_change_equal_to_a_fresh_apply() {
    let base = "cluster t {
    pod-cidr 10.244.0.0/16
    backend vxlan { direct-routing on }
}
node n1 { address 192.168.56.11/24; subnet 10.244.1.0/24 }
node n2 { address 192.168.56.12/24; subnet 10.244.2.0/24 }
node n3 { address 192.168.57.13/24; subnet 10.244.3.0/24 }
";
    let n4 = "node n4 { address 192.168.57.14/24; subnet 10.244.4.0/24 }\n";
    let n5 = "node n5 { address 192.168.56.15/24; subnet 10.244.5.0/24 }\n";
    let n3 = "node n3 { address 192.168.57.13/24; subnet 10.244.3.0/24 }\n";
    let configs = [
        // a tunnelled node added
        format!("{base}{n4}"),
        // a direct node added
        format!("{base}{n4}{n5}"),
        // a tunnelled node removed
        format!("{base}{n4}{n5}").replace(n3, ""),
        // a node moved: its address (tunnel → direct) and its subnet change
        format!("{base}{n4}{n5}").replace(n3, "").replace(
            "192.168.57.14/24; subnet 10.244.4.0/24",
            "192.168.56.14/24; subnet 10.244.9.0/24",
        ),
        // a direct node moved behind the tunnel, and the removed node back
        format!("{base}{n5}").replace("192.168.56.15/24", "192.168.57.15/24"),
    ];
    let dir = tempfile::tempdir().expect("dir");
    let file = write(dir.path(), "cluster.podnet", base);
    let n = Node::new("wq", "192.168.56.11/24");
    let mut d = Daemon::start(&n.ns, &file, n.root(), &[]);
    d.ready(Duration::from_secs(10));
    const SHORT: &str = "the change applied without a full re-read";
    for (i, text) in configs.iter().enumerate() {
        let fresh = Node::new(&format!("wq{i}"), "192.168.56.11/24");
        let fresh_file = write(dir.path(), &format!("fresh{i}.podnet"), text);
        fresh.ok(&["apply", fresh_file.to_str().expect("utf-8")]);
        let want = owned_state(&fresh);
        replace(&file, text);
        wait_state(&n, &want, Duration::from_secs(5), &format!("edit {i}"), &d);
        let ok = eventually(Duration::from_secs(2), || {
            d.log().matches(SHORT).count() == i + 1
        });
        assert!(ok, "edit {i} did not go the short way:\n{}", d.log());
        let live = n.podnet(&[
            "plan",
            file.to_str().expect("utf-8"),
            "--node",
            "n1",
            "--live",
            "--detailed-exitcode",
        ]);
        assert_eq!(
            live.status.code(),
            Some(0),
            "edit {i}: plan --live:\n{}{}",
            String::from_utf8_lossy(&live.stdout),
            String::from_utf8_lossy(&live.stderr)
        );
        let status = n.podnet(&["status", "--detailed-exitcode"]);
        assert_eq!(
            status.status.code(),
            Some(0),
            "edit {i}: status:\n{}{}",
            String::from_utf8_lossy(&status.stdout),
            String::from_utf8_lossy(&status.stderr)
        );
    }
    assert!(
        !d.log()
            .contains("\"message\":\"node converged\",\"reason\":\"config changed\""),
        "a config change was reconciled in full:\n{}",
        d.log()
    );
    // A full resync (SIGHUP) afterwards finds nothing to do.
    let full = "podnet_reconcile_duration_seconds_count{mode=\"full\"}";
    let before = metric(&d.ns, full).expect("full reconciles counted");
    let logged = d.log().len();
    let _ = Command::new("kill")
        .args(["-HUP", &d.child.id().to_string()])
        .status();
    let ok = eventually(Duration::from_secs(5), || {
        metric(&d.ns, full).is_some_and(|v| v > before)
    });
    assert!(ok, "no full reconcile after SIGHUP:\n{}", d.log());
    let after = d.log();
    let tail = after.get(logged..).unwrap_or_default();
    assert!(
        !tail.contains("repaired drift") && !tail.contains("\"message\":\"applied\""),
        "the resync after the short way changed something:\n{tail}"
    );
    assert_eq!(d.stop(), Some(0));
}
