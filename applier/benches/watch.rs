//! Benchmarks `podnet watch` (issue 12) on one node of a generated N-node cluster, in network
//! namespaces this bench creates and always deletes: the release daemon runs in a node
//! namespace (veth underlay `eth0`) and this process, separately, deletes owned routes and
//! listens for their return on its own rtnetlink socket (RTNLGRP_IPV4_ROUTE) in that
//! namespace. Measured: single-route repair (delete ACK → RTM_NEWROUTE), a 1,000-route
//! `ip -batch` burst, underlay down/up against a fresh `podnet apply` of the same plan,
//! one node added by atomic rename, idle CPU and RSS. Needs root; not part of `cargo test`.
//!
//! `cargo bench -p podnet --bench watch` — environment: `PODNET_BENCH_SIZES` (default
//! `5000,20000`), `PODNET_BENCH_BACKENDS` (`host-gw,vxlan`), `PODNET_BENCH_DELETES` (1000),
//! `PODNET_BENCH_IDLE_SECS` (60), `PODNET_BENCH_KEEP_LOGS` (a directory for the daemon logs).

use std::collections::HashSet;
use std::fs::File;
use std::io::Write;
use std::net::{Ipv4Addr, UdpSocket};
use std::os::fd::AsFd;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU32, Ordering};
use std::sync::mpsc::{self, Receiver, RecvTimeoutError};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use nix::sched::{CloneFlags, setns};
use podnet_compiler::generate::{GenBackend, large_cluster, node_address, node_subnet};
use rtnetlink::sys::protocols::NETLINK_ROUTE;
use rtnetlink::sys::{Socket, SocketAddr};

type Res<T> = Result<T, String>;

const NODE: &str = "n00000.rack000";
const NODE_ADDR: &str = "172.16.0.10/12";
const LISTEN: &str = "127.0.0.1:9402";
const PER_FILE: usize = 500;
/// How long any one awaited kernel change may take before it counts as missed.
const WAIT: Duration = Duration::from_secs(5);

const RTM_NEWLINK: u16 = 16;
const RTM_NEWROUTE: u16 = 24;
const RTM_DELROUTE: u16 = 25;
const NLMSG_ERROR: u16 = 2;
const NLM_F_REQUEST: u16 = 1;
const NLM_F_ACK: u16 = 4;
const RTNLGRP_IPV4_ROUTE: u32 = 7;

static NEXT: AtomicU32 = AtomicU32::new(0);

fn run(program: &str, args: &[&str]) -> Res<String> {
    let out = Command::new(program)
        .args(args)
        .output()
        .map_err(|e| format!("{program}: {e}"))?;
    if !out.status.success() {
        return Err(format!(
            "{program} {args:?}: {}",
            String::from_utf8_lossy(&out.stderr).trim()
        ));
    }
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

/// A network namespace, deleted on drop.
struct Ns(String);

impl Ns {
    fn new(tag: &str) -> Res<Ns> {
        let n = NEXT.fetch_add(1, Ordering::SeqCst);
        let name = format!("podnet-wb-{}-{n}{tag}", std::process::id());
        run("ip", &["netns", "add", &name])?;
        let ns = Ns(name);
        ns.ip(&["link", "set", "lo", "up"])?;
        Ok(ns)
    }

    fn ip(&self, args: &[&str]) -> Res<String> {
        let mut a = vec!["-n", self.0.as_str()];
        a.extend_from_slice(args);
        run("ip", &a)
    }

    fn exec(&self, program: &str, args: &[&str]) -> Res<String> {
        let mut a = vec!["netns", "exec", self.0.as_str(), program];
        a.extend_from_slice(args);
        run("ip", &a)
    }
}

impl Drop for Ns {
    fn drop(&mut self) {
        let _ = Command::new("ip").args(["netns", "del", &self.0]).status();
    }
}

/// A node namespace with its underlay peer (`eth0` on both ends, the node address on it).
struct NodeNs {
    ns: Ns,
    _peer: Ns,
}

impl NodeNs {
    fn new() -> Res<NodeNs> {
        let ns = Ns::new("n")?;
        let peer = Ns::new("p")?;
        ns.exec("sysctl", &["-qw", "net.ipv6.conf.default.accept_dad=0"])?;
        ns.ip(&[
            "link", "add", "eth0", "type", "veth", "peer", "name", "eth0", "netns", &peer.0,
        ])?;
        ns.ip(&["link", "set", "eth0", "up"])?;
        peer.ip(&["link", "set", "eth0", "up"])?;
        ns.ip(&["addr", "add", NODE_ADDR, "dev", "eth0"])?;
        Ok(NodeNs { ns, _peer: peer })
    }
}

/// The daemon process (`ip netns exec` execs it, so the child's pid is podnet's). Stopped
/// with SIGTERM on drop, killed if it does not exit within 5 s.
struct Daemon {
    child: Child,
}

impl Daemon {
    fn pid(&self) -> u32 {
        self.child.id()
    }

    fn stop(&mut self) {
        if matches!(self.child.try_wait(), Ok(Some(_))) {
            return;
        }
        let _ = Command::new("kill")
            .args(["-TERM", &self.pid().to_string()])
            .status();
        let deadline = Instant::now() + Duration::from_secs(5);
        while Instant::now() < deadline {
            if matches!(self.child.try_wait(), Ok(Some(_))) {
                return;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for Daemon {
    fn drop(&mut self) {
        self.stop();
    }
}

/// Runs `f` on a short-lived thread inside namespace `ns` (sockets made there stay there).
fn in_ns<T: Send + 'static>(ns: &str, f: impl FnOnce() -> Res<T> + Send + 'static) -> Res<T> {
    let path = format!("/run/netns/{ns}");
    std::thread::spawn(move || {
        let fd = File::open(&path).map_err(|e| format!("{path}: {e}"))?;
        setns(fd.as_fd(), CloneFlags::CLONE_NEWNET).map_err(|e| format!("setns {path}: {e}"))?;
        f()
    })
    .join()
    .map_err(|_| "namespace thread panicked".to_string())?
}

/// A netlink socket as a std socket, for `recv` with a timeout.
fn timed(sock: &Socket, timeout: Duration) -> Res<UdpSocket> {
    let fd = sock
        .as_fd()
        .try_clone_to_owned()
        .map_err(|e| e.to_string())?;
    let s = UdpSocket::from(fd);
    s.set_read_timeout(Some(timeout))
        .map_err(|e| e.to_string())?;
    Ok(s)
}

/// What the listener saw, with the time it read it.
#[derive(Clone, Copy, Debug)]
enum Seen {
    Route { new: bool, dst: u32, at: Instant },
    Overrun,
}

/// The separate listener: a thread reading RTNLGRP_IPV4_ROUTE in the node namespace.
struct Listener {
    rx: Receiver<Seen>,
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

impl Listener {
    fn new(ns: &str) -> Res<Listener> {
        let sock = in_ns(ns, || {
            let mut s = Socket::new(NETLINK_ROUTE).map_err(|e| e.to_string())?;
            s.bind(&SocketAddr::new(0, 0)).map_err(|e| e.to_string())?;
            s.add_membership(RTNLGRP_IPV4_ROUTE)
                .map_err(|e| e.to_string())?;
            let _ = s.set_rx_buf_sz(4 << 20);
            timed(&s, Duration::from_millis(100))
        })?;
        let (tx, rx) = mpsc::channel();
        let stop = Arc::new(AtomicBool::new(false));
        let flag = stop.clone();
        let thread = std::thread::spawn(move || {
            let mut buf = vec![0u8; 1 << 20];
            // Bounded: the stop flag is checked at least every 100 ms; at most 4 hours.
            let deadline = Instant::now() + Duration::from_secs(4 * 3600);
            while !flag.load(Ordering::Relaxed) && Instant::now() < deadline {
                let n = match sock.recv(&mut buf) {
                    Ok(n) => n,
                    Err(e) if e.raw_os_error() == Some(libc::ENOBUFS) => {
                        let _ = tx.send(Seen::Overrun);
                        continue;
                    }
                    Err(_) => continue,
                };
                let at = Instant::now();
                for (kind, p) in messages(&buf[..n]) {
                    if (kind == RTM_NEWROUTE || kind == RTM_DELROUTE)
                        && let Some(dst) = route_dst(p)
                    {
                        let new = kind == RTM_NEWROUTE;
                        if tx.send(Seen::Route { new, dst, at }).is_err() {
                            return;
                        }
                    }
                }
            }
        });
        Ok(Listener {
            rx,
            stop,
            thread: Some(thread),
        })
    }

    fn drain(&self) {
        while self.rx.try_recv().is_ok() {}
    }

    /// Waits until every dst in `want` has come back (RTM_NEWROUTE); returns the time the
    /// last one was read and when the last RTM_DELROUTE of one of them was read.
    fn until_back(
        &self,
        want: &HashSet<u32>,
        deadline: Instant,
    ) -> (Option<Instant>, Option<Instant>, usize) {
        let mut missing = want.clone();
        let (mut last_new, mut last_del) = (None, None);
        while !missing.is_empty() {
            let left = deadline.saturating_duration_since(Instant::now());
            match self.rx.recv_timeout(left) {
                Ok(Seen::Route { new, dst, at }) if want.contains(&dst) => {
                    if new {
                        if missing.remove(&dst) {
                            last_new = Some(at);
                        }
                    } else {
                        missing.insert(dst);
                        last_del = Some(at);
                    }
                }
                Ok(Seen::Overrun) => eprintln!("  listener overrun"),
                Ok(_) => {}
                Err(RecvTimeoutError::Timeout | RecvTimeoutError::Disconnected) => break,
            }
        }
        (last_new, last_del, missing.len())
    }
}

impl Drop for Listener {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// Splits a netlink receive buffer into `(type, payload)`.
fn messages(mut buf: &[u8]) -> impl Iterator<Item = (u16, &[u8])> {
    std::iter::from_fn(move || {
        if buf.len() < 16 {
            return None;
        }
        let len = u32::from_ne_bytes([buf[0], buf[1], buf[2], buf[3]]) as usize;
        if len < 16 || len > buf.len() {
            return None;
        }
        let kind = u16::from_ne_bytes([buf[4], buf[5]]);
        let payload = &buf[16..len];
        buf = &buf[((len + 3) & !3).min(buf.len())..];
        Some((kind, payload))
    })
}

/// The destination of a main-table IPv4 /24 route message (`struct rtmsg` + attributes).
fn route_dst(p: &[u8]) -> Option<u32> {
    if p.len() < 12 || p[0] != libc::AF_INET as u8 || p[1] != 24 || p[4] != 254 {
        return None;
    }
    let mut a = &p[12..];
    while a.len() >= 4 {
        let len = u16::from_ne_bytes([a[0], a[1]]) as usize;
        let kind = u16::from_ne_bytes([a[2], a[3]]);
        if len < 4 || len > a.len() {
            return None;
        }
        if kind == 1 && len == 8 {
            return Some(u32::from_be_bytes([a[4], a[5], a[6], a[7]]));
        }
        a = &a[((len + 3) & !3).min(a.len())..];
    }
    None
}

/// The request socket: foreign deletes and link changes, each awaited to its ACK.
struct Requests {
    sock: Socket,
    rx: UdpSocket,
    seq: u32,
}

impl Requests {
    fn new(ns: &str) -> Res<Requests> {
        let (sock, rx) = in_ns(ns, || {
            let mut s = Socket::new(NETLINK_ROUTE).map_err(|e| e.to_string())?;
            s.bind_auto().map_err(|e| e.to_string())?;
            let rx = timed(&s, Duration::from_secs(2))?;
            Ok((s, rx))
        })?;
        Ok(Requests { sock, rx, seq: 1 })
    }

    /// Sends one request; returns when it was sent and when its ACK was read (Err: the
    /// kernel's error).
    fn request(&mut self, kind: u16, body: &[u8]) -> Res<(Instant, Instant)> {
        self.seq += 1;
        let mut m = Vec::with_capacity(16 + body.len());
        m.extend_from_slice(&((16 + body.len()) as u32).to_ne_bytes());
        m.extend_from_slice(&kind.to_ne_bytes());
        m.extend_from_slice(&(NLM_F_REQUEST | NLM_F_ACK).to_ne_bytes());
        m.extend_from_slice(&self.seq.to_ne_bytes());
        m.extend_from_slice(&0u32.to_ne_bytes());
        m.extend_from_slice(body);
        let sent = Instant::now();
        self.sock.send(&m, 0).map_err(|e| e.to_string())?;
        let mut buf = vec![0u8; 64 << 10];
        for _ in 0..100 {
            let n = self.rx.recv(&mut buf).map_err(|e| format!("ACK: {e}"))?;
            let at = Instant::now();
            for (k, p) in messages(&buf[..n]) {
                if k == NLMSG_ERROR && p.len() >= 16 {
                    let seq = u32::from_ne_bytes([p[12], p[13], p[14], p[15]]);
                    if seq != self.seq {
                        continue;
                    }
                    let err = i32::from_ne_bytes([p[0], p[1], p[2], p[3]]);
                    return if err == 0 {
                        Ok((sent, at))
                    } else {
                        Err(format!("errno {}", -err))
                    };
                }
            }
        }
        Err("no ACK".into())
    }

    /// `ip route del DST/24` in the main table, any protocol.
    fn delete_route(&mut self, dst: u32) -> Res<(Instant, Instant)> {
        let mut b = vec![libc::AF_INET as u8, 24, 0, 0, 254, 0, 255, 0, 0, 0, 0, 0];
        b.extend_from_slice(&8u16.to_ne_bytes());
        b.extend_from_slice(&1u16.to_ne_bytes());
        b.extend_from_slice(&dst.to_be_bytes());
        self.request(RTM_DELROUTE, &b)
    }

    fn set_link(&mut self, index: i32, up: bool) -> Res<(Instant, Instant)> {
        let mut b = vec![0u8, 0, 0, 0];
        b.extend_from_slice(&index.to_ne_bytes());
        b.extend_from_slice(&u32::from(up).to_ne_bytes());
        b.extend_from_slice(&1u32.to_ne_bytes());
        self.request(RTM_NEWLINK, &b)
    }
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}

fn quantile(sorted: &[f64], q: f64) -> f64 {
    if sorted.is_empty() {
        return f64::NAN;
    }
    let i = ((q * sorted.len() as f64).ceil() as usize).clamp(1, sorted.len()) - 1;
    sorted[i]
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    quantile(&v, 0.5)
}

/// utime + stime of a process, in seconds.
fn cpu_secs(pid: u32, tick: f64) -> Res<f64> {
    let s = std::fs::read_to_string(format!("/proc/{pid}/stat")).map_err(|e| e.to_string())?;
    let rest = s.rsplit_once(')').map(|(_, r)| r).ok_or("stat")?;
    let f: Vec<&str> = rest.split_whitespace().collect();
    let num = |i: usize| -> f64 { f.get(i).and_then(|x| x.parse().ok()).unwrap_or(0.0) };
    // After the command: state is field 3, utime 14, stime 15 (1-based) → index 11, 12.
    Ok((num(11) + num(12)) / tick)
}

fn status_kib(pid: u32, key: &str) -> Option<u64> {
    let s = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    s.lines()
        .find(|l| l.starts_with(key))
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|v| v.parse().ok())
}

fn dst_u32(i: usize) -> u32 {
    u32::from(node_subnet(i).network())
}

fn dst_str(d: u32) -> String {
    format!("{}/24", Ipv4Addr::from(d))
}

struct Row {
    n: usize,
    backend: &'static str,
    single: Vec<f64>,
    from_send: Vec<f64>,
    before_ack: usize,
    single_missed: usize,
    burst_ms: f64,
    burst_from_start_ms: f64,
    burst_missed: usize,
    flap_lost: usize,
    flap_ms: Vec<f64>,
    fresh_ms: f64,
    add_ms: Vec<f64>,
    idle_secs: u64,
    idle_pct: f64,
    hwm_kib: u64,
    rss_kib: u64,
    metrics: String,
}

struct Env {
    bin: String,
    work: PathBuf,
    deletes: usize,
    idle: u64,
    tick: f64,
    logs: Option<PathBuf>,
}

fn metric_lines(text: &str) -> String {
    text.lines()
        .filter(|l| {
            (l.starts_with("podnet_repair_latency_seconds_")
                && (l.contains("_sum") || l.contains("_count")))
                || (l.starts_with("podnet_reconcile_duration_seconds_")
                    && (l.contains("_sum") || l.contains("_count")))
        })
        .collect::<Vec<_>>()
        .join("; ")
}

fn readyz(ns: &Ns, path: &str) -> Res<String> {
    ns.exec(
        "curl",
        &[
            "-s",
            "-m",
            "2",
            "-w",
            "\n%{http_code}",
            &format!("http://{LISTEN}{path}"),
        ],
    )
}

fn wait_ready(ns: &Ns, d: &mut Daemon, within: Duration) -> Res<()> {
    let deadline = Instant::now() + within;
    while Instant::now() < deadline {
        if let Ok(Some(s)) = d.child.try_wait() {
            return Err(format!("podnet watch exited: {s}"));
        }
        if readyz(ns, "/readyz").is_ok_and(|o| o.ends_with("200")) {
            return Ok(());
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    Err(format!(
        "not ready within {within:?}: {}",
        readyz(ns, "/readyz?verbose").unwrap_or_default()
    ))
}

/// A fresh `podnet apply plan.json` in a new node namespace, in ms (median of 3).
fn fresh_apply(env: &Env, plan: &Path) -> Res<f64> {
    let mut v = Vec::new();
    for i in 0..3 {
        let node = NodeNs::new()?;
        let root = env.work.join(format!("fresh-root-{i}"));
        let _ = std::fs::remove_dir_all(&root);
        std::fs::create_dir_all(&root).map_err(|e| e.to_string())?;
        let plan = plan.to_str().ok_or("path")?;
        let root_s = root.to_str().ok_or("path")?;
        let t = Instant::now();
        node.ns.exec(&env.bin, &["apply", plan, "--root", root_s])?;
        v.push(ms(t.elapsed()));
    }
    Ok(median(v))
}

fn bench(env: &Env, n: usize, backend: &'static str) -> Res<Row> {
    let dir = env.work.join(format!("{n}-{backend}"));
    let _ = std::fs::remove_dir_all(&dir);
    let gen_backend = if backend == "vxlan" {
        GenBackend::Vxlan
    } else {
        GenBackend::HostGw
    };
    let files = large_cluster(n, PER_FILE, gen_backend);
    let last_rack = files.last().map(|(p, _)| p.clone()).ok_or("no files")?;
    for (p, text) in &files {
        let p = dir.join(p);
        std::fs::create_dir_all(p.parent().ok_or("parent")?).map_err(|e| e.to_string())?;
        std::fs::write(&p, text).map_err(|e| e.to_string())?;
    }
    let cluster = dir.join("cluster.podnet");
    let cluster_s = cluster.to_str().ok_or("path")?.to_string();
    let plan_json = run(
        &env.bin,
        &["plan", &cluster_s, "--node", NODE, "--format", "json"],
    )?;
    let plan_path = dir.join("plan.json");
    std::fs::write(&plan_path, &plan_json).map_err(|e| e.to_string())?;
    let fresh_ms = fresh_apply(env, &plan_path)?;
    eprintln!("{n} {backend}: fresh apply {fresh_ms:.1} ms (median of 3)");

    let node = NodeNs::new()?;
    let ns = &node.ns;
    let root = dir.join("root");
    std::fs::create_dir_all(&root).map_err(|e| e.to_string())?;
    let listener = Listener::new(&ns.0)?;
    let mut req = Requests::new(&ns.0)?;
    let log_path = env
        .logs
        .clone()
        .unwrap_or_else(|| dir.clone())
        .join(format!("watch-{n}-{backend}.log"));
    let log = File::create(&log_path).map_err(|e| e.to_string())?;
    let child = Command::new("ip")
        .args(["netns", "exec", &ns.0, &env.bin, "watch", &cluster_s])
        .args(["--node", NODE, "--root"])
        .arg(&root)
        .args(["--listen", LISTEN, "--log-format", "json"])
        .stdin(Stdio::null())
        .stdout(log.try_clone().map_err(|e| e.to_string())?)
        .stderr(log)
        .spawn()
        .map_err(|e| e.to_string())?;
    let mut daemon = Daemon { child };
    let started = Instant::now();
    wait_ready(ns, &mut daemon, Duration::from_secs(120))?;
    eprintln!(
        "{n} {backend}: daemon ready after {:.0} ms",
        ms(started.elapsed())
    );
    std::thread::sleep(Duration::from_millis(500));

    // 1. single deletions
    let peers = n - 1;
    let mut single = Vec::with_capacity(env.deletes);
    let mut single_missed = 0;
    let mut from_send = Vec::with_capacity(env.deletes);
    let mut before_ack = 0;
    for k in 0..env.deletes {
        let i = 1 + (k * 7919 + 13) % peers;
        let dst = dst_u32(i);
        listener.drain();
        let (sent, acked) = match req.delete_route(dst) {
            Ok(t) => t,
            Err(e) => {
                eprintln!("  delete {} failed: {e}", dst_str(dst));
                single_missed += 1;
                std::thread::sleep(Duration::from_millis(50));
                continue;
            }
        };
        let want: HashSet<u32> = [dst].into();
        match listener.until_back(&want, acked + WAIT) {
            (Some(at), _, 0) => {
                single.push(ms(at.saturating_duration_since(acked)));
                from_send.push(ms(at.saturating_duration_since(sent)));
                if at < acked {
                    before_ack += 1;
                }
            }
            _ => single_missed += 1,
        }
        std::thread::sleep(Duration::from_millis(2));
    }
    single.sort_by(f64::total_cmp);
    from_send.sort_by(f64::total_cmp);
    eprintln!(
        "{n} {backend}: from the delete's send: median {:.3} ms p99 {:.3} ms max {:.3} ms; {before_ack} returns read before the ACK",
        quantile(&from_send, 0.5),
        quantile(&from_send, 0.99),
        quantile(&from_send, 1.0),
    );
    eprintln!(
        "{n} {backend}: single repair median {:.3} ms p99 {:.3} ms max {:.3} ms ({} missed)",
        quantile(&single, 0.5),
        quantile(&single, 0.99),
        quantile(&single, 1.0),
        single_missed
    );

    // 2. a burst of 1,000 deletions in one ip -batch
    std::thread::sleep(Duration::from_millis(300));
    let burst: Vec<u32> = (0..1000.min(peers))
        .map(|k| dst_u32(1 + (k * 104_729 + 7) % peers))
        .collect();
    let want: HashSet<u32> = burst.iter().copied().collect();
    let batch = dir.join("burst.batch");
    let mut text = String::new();
    for d in &want {
        text.push_str(&format!("route del {}\n", dst_str(*d)));
    }
    std::fs::write(&batch, text).map_err(|e| e.to_string())?;
    listener.drain();
    let t0 = Instant::now();
    ns.ip(&["-batch", batch.to_str().ok_or("path")?])?;
    let (last_new, last_del, missing) = listener.until_back(&want, Instant::now() + WAIT);
    let (burst_ms, burst_from_start_ms) = match (last_new, last_del) {
        (Some(b), Some(d)) if missing == 0 => (
            ms(b.saturating_duration_since(d)),
            ms(b.saturating_duration_since(t0)),
        ),
        _ => (f64::NAN, f64::NAN),
    };
    eprintln!(
        "{n} {backend}: burst of {}: last delete → all back {burst_ms:.1} ms, batch start → all back {burst_from_start_ms:.1} ms, {missing} missing",
        want.len()
    );

    // 3. underlay down/up
    std::thread::sleep(Duration::from_millis(500));
    let ifindex: i32 = ns
        .ip(&["-o", "link", "show", "eth0"])?
        .split(':')
        .next()
        .and_then(|s| s.trim().parse().ok())
        .ok_or("eth0 ifindex")?;
    let planned: HashSet<u32> = (1..n).map(dst_u32).collect();
    let mut flap_ms = Vec::new();
    let mut flap_lost = 0;
    for _ in 0..3 {
        req.set_link(ifindex, false)?;
        std::thread::sleep(Duration::from_millis(1000));
        let listed = ns.ip(&["route", "show", "proto", "77"])?;
        let present: HashSet<u32> = listed
            .lines()
            .filter_map(|l| l.split_whitespace().next())
            .filter_map(|d| d.strip_suffix("/24"))
            .filter_map(|d| d.parse::<Ipv4Addr>().ok())
            .map(u32::from)
            .collect();
        let lost: HashSet<u32> = planned.difference(&present).copied().collect();
        flap_lost = lost.len();
        listener.drain();
        let (_, up) = req.set_link(ifindex, true)?;
        if lost.is_empty() {
            flap_ms.push(0.0);
        } else {
            match listener.until_back(&lost, up + Duration::from_secs(30)) {
                (Some(at), _, 0) => flap_ms.push(ms(at.saturating_duration_since(up))),
                (_, _, m) => {
                    // The listener overran (20,000 events at once): fall back to listings.
                    eprintln!("  link up: {m} routes not seen back; polling the table");
                    let mut back = f64::NAN;
                    for _ in 0..300 {
                        let l = ns.ip(&["route", "show", "proto", "77"])?;
                        if l.lines().count() >= planned.len() {
                            back = ms(up.elapsed());
                            break;
                        }
                        std::thread::sleep(Duration::from_millis(10));
                    }
                    flap_ms.push(back);
                }
            }
        }
        std::thread::sleep(Duration::from_millis(1500));
    }
    eprintln!(
        "{n} {backend}: link down/up: {flap_lost} routes lost, back after {flap_ms:?} ms (fresh apply {fresh_ms:.1} ms)"
    );

    // 4. nodes added by atomic rename
    let mut add_ms = Vec::new();
    let rack = dir.join(&last_rack);
    let mut rack_text = std::fs::read_to_string(&rack).map_err(|e| e.to_string())?;
    for k in 0..10 {
        let i = n + k;
        let rack_no = (n - 1) / PER_FILE;
        rack_text.push_str(&format!(
            "node n{i:05}.rack{rack_no:03} {{ address {}/12; subnet {} }}\n",
            node_address(i),
            node_subnet(i)
        ));
        let tmp = rack.with_extension("tmp");
        {
            let mut f = File::create(&tmp).map_err(|e| e.to_string())?;
            f.write_all(rack_text.as_bytes())
                .map_err(|e| e.to_string())?;
        }
        listener.drain();
        std::fs::rename(&tmp, &rack).map_err(|e| e.to_string())?;
        let t = Instant::now();
        let want: HashSet<u32> = [dst_u32(i)].into();
        match listener.until_back(&want, t + WAIT) {
            (Some(at), _, 0) => add_ms.push(ms(at.saturating_duration_since(t))),
            _ => add_ms.push(f64::NAN),
        }
        std::thread::sleep(Duration::from_millis(700));
    }
    eprintln!("{n} {backend}: node added → route in kernel: {add_ms:.1?} ms");

    // 5. idle CPU, 6. RSS
    std::thread::sleep(Duration::from_secs(2));
    let pid = daemon.pid();
    let c0 = cpu_secs(pid, env.tick)?;
    let t0 = Instant::now();
    std::thread::sleep(Duration::from_secs(env.idle));
    let c1 = cpu_secs(pid, env.tick)?;
    let idle_pct = (c1 - c0) / t0.elapsed().as_secs_f64() * 100.0;
    let hwm_kib = status_kib(pid, "VmHWM:").unwrap_or(0);
    let rss_kib = status_kib(pid, "VmRSS:").unwrap_or(0);
    eprintln!(
        "{n} {backend}: idle CPU {idle_pct:.3} % over {} s ({:.2} s CPU), VmHWM {hwm_kib} KiB, VmRSS {rss_kib} KiB",
        env.idle,
        c1 - c0
    );
    let metrics = metric_lines(&readyz(ns, "/metrics").unwrap_or_default());
    eprintln!("{n} {backend}: metrics: {metrics}");
    daemon.stop();
    drop(listener);
    drop(req);
    Ok(Row {
        n,
        backend,
        single,
        from_send,
        before_ack,
        single_missed,
        burst_ms,
        burst_from_start_ms,
        burst_missed: missing,
        flap_lost,
        flap_ms,
        fresh_ms,
        add_ms,
        idle_secs: env.idle,
        idle_pct,
        hwm_kib,
        rss_kib,
        metrics,
    })
}

fn env_list(key: &str, default: &str) -> Vec<String> {
    std::env::var(key)
        .unwrap_or_else(|_| default.into())
        .split(',')
        .map(|s| s.trim().to_string())
        .filter(|s| !s.is_empty())
        .collect()
}

fn main() {
    let sizes: Vec<usize> = env_list("PODNET_BENCH_SIZES", "5000,20000")
        .iter()
        .filter_map(|s| s.parse().ok())
        .collect();
    let backends: Vec<&'static str> = env_list("PODNET_BENCH_BACKENDS", "host-gw,vxlan")
        .iter()
        .map(|b| if b == "vxlan" { "vxlan" } else { "host-gw" })
        .collect();
    let num = |k: &str, d: u64| -> u64 {
        std::env::var(k)
            .ok()
            .and_then(|v| v.parse().ok())
            .unwrap_or(d)
    };
    let tick: f64 = run("getconf", &["CLK_TCK"])
        .ok()
        .and_then(|s| s.trim().parse().ok())
        .unwrap_or(100.0);
    let work = tempfile::tempdir().expect("work dir");
    let env = Env {
        bin: env!("CARGO_BIN_EXE_podnet").to_string(),
        work: work.path().to_path_buf(),
        deletes: num("PODNET_BENCH_DELETES", 1000) as usize,
        idle: num("PODNET_BENCH_IDLE_SECS", 60),
        tick,
        logs: std::env::var("PODNET_BENCH_KEEP_LOGS")
            .ok()
            .map(PathBuf::from),
    };
    let mut rows: Vec<Row> = Vec::new();
    let mut failed = false;
    for &n in &sizes {
        for &b in &backends {
            match bench(&env, n, b) {
                Ok(r) => rows.push(r),
                Err(e) => {
                    eprintln!("{n} {b}: FAILED: {e}");
                    failed = true;
                }
            }
        }
    }
    println!(
        "| nodes | backend | single repair from ACK: median / p99 / max (n) | from send: median / p99 / max (returns before ACK) | burst 1,000: last delete → all back (batch start → all back) | link up → all back (routes lost; fresh apply) | node added → route (median / max of 10) | idle CPU | VmHWM / VmRSS |"
    );
    println!("|---|---|---|---|---|---|---|---|---|");
    for r in rows.iter() {
        let flap: Vec<String> = r.flap_ms.iter().map(|v| format!("{v:.0}")).collect();
        let mut add = r.add_ms.clone();
        add.sort_by(f64::total_cmp);
        println!(
            "| {} | {} | {:.2} / {:.2} / {:.2} ms ({}{}) | {:.2} / {:.2} / {:.2} ms ({}) | {:.1} ms ({:.1} ms){} | {} ms ({} lost; fresh {:.0} ms) | {:.0} / {:.0} ms | {:.3} % ({} s) | {:.1} / {:.1} MiB |",
            r.n,
            r.backend,
            quantile(&r.single, 0.5),
            quantile(&r.single, 0.99),
            quantile(&r.single, 1.0),
            r.single.len(),
            if r.single_missed > 0 {
                format!(", {} missed", r.single_missed)
            } else {
                String::new()
            },
            quantile(&r.from_send, 0.5),
            quantile(&r.from_send, 0.99),
            quantile(&r.from_send, 1.0),
            r.before_ack,
            r.burst_ms,
            r.burst_from_start_ms,
            if r.burst_missed > 0 {
                format!(", {} missing", r.burst_missed)
            } else {
                String::new()
            },
            flap.join(", "),
            r.flap_lost,
            r.fresh_ms,
            quantile(&add, 0.5),
            quantile(&add, 1.0),
            r.idle_pct,
            r.idle_secs,
            r.hwm_kib as f64 / 1024.0,
            r.rss_kib as f64 / 1024.0,
        );
    }
    for r in rows.iter() {
        println!("<!-- {} {} metrics: {} -->", r.n, r.backend, r.metrics);
    }
    if failed {
        std::process::exit(1);
    }
}
