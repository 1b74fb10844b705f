//! Hostile review of `podnet watch`: drift the daemon's model can mis-track (a nexthop
//! changed in place, an FDB entry's destination replaced, a route of podnet's protocol
//! turned into a blackhole, a foreign route that replaced a planned one and went away),
//! each made by hand in a namespace and expected to be repaired within a bound; and what
//! the daemon must not do (spin while idle, retry a persistent conflict in a tight loop).
//! The helpers are those of `watch_netns.rs`. Every wait is bounded; namespaces and
//! daemons are removed on drop.

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
