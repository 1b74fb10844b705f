//! `podnet watch` under a real Prometheus server (Debian's `prometheus`): inside a node
//! namespace the server scrapes `/metrics`, its API shows the target up and a deleted route's
//! repair counted, `promtool check metrics` passes on the body, and `/livez`, `/readyz`
//! (`?verbose`) and an unknown path answer as documented, `/readyz` turning 503 on an invalid
//! config and 200 again once it is fixed.

mod common;

use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use common::NetNs;
use common::node::{Node, bin};
use serde_json::Value;

/// Every wait in this file gives up after this long.
const WAIT: Duration = Duration::from_secs(10);
/// The daemon's and Prometheus's ports on the namespace's own loopback (a fresh namespace:
/// nothing else listens there).
const DAEMON: u16 = 9402;
const PROM: u16 = 9090;

const CLUSTER: &str = "cluster t {
    pod-cidr 10.244.0.0/16
    interface eth0
    backend host-gw
}
node n1 { address 192.168.56.11/24; subnet 10.244.1.0/24 }
node n2 { address 192.168.56.12/24; subnet 10.244.2.0/24 }
";

/// The route n1 owns towards n2.
const ROUTE: &str = "10.244.2.0/24";

/// A child process killed and reaped on drop (also when the test fails); its output goes to
/// a file so that a failure can show it.
struct Proc {
    what: &'static str,
    child: Child,
    log: std::path::PathBuf,
}

impl Proc {
    /// Starts `program args…` inside `ns` (`ip netns exec` execs it: the pid is the program's).
    fn spawn(what: &'static str, ns: &NetNs, log: &Path, program: &str, args: &[&str]) -> Proc {
        let out = std::fs::File::create(log).expect("log file");
        let err = out.try_clone().expect("log file");
        let child = Command::new("ip")
            .args(["netns", "exec", &ns.name, program])
            .args(args)
            .stdin(Stdio::null())
            .stdout(out)
            .stderr(err)
            .spawn()
            .unwrap_or_else(|e| panic!("spawn {what} ({program}): {e}"));
        Proc {
            what,
            child,
            log: log.to_path_buf(),
        }
    }

    /// Fails the test (with the log) if the process has exited.
    fn alive(&mut self) {
        if let Some(status) = self.child.try_wait().expect("try_wait") {
            panic!(
                "{} exited early ({status}); its log:\n{}",
                self.what,
                std::fs::read_to_string(&self.log).unwrap_or_default()
            );
        }
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// An HTTP response: status, Content-Type and body.
#[derive(Debug)]
struct Resp {
    status: u16,
    content_type: String,
    body: String,
}

/// `GET path` on `127.0.0.1:port` inside `ns` (HTTP/1.0, so the server closes the
/// connection after the body), with an optional Accept header; bounded by timeouts.
fn get(ns: &NetNs, port: u16, path: &str, accept: Option<&str>) -> std::io::Result<Resp> {
    let req = format!(
        "GET {path} HTTP/1.0\r\nHost: 127.0.0.1:{port}\r\n{}\r\n",
        accept
            .map(|a| format!("Accept: {a}\r\n"))
            .unwrap_or_default()
    );
    common::in_ns(ns, move || {
        let addr = std::net::SocketAddr::from(([127, 0, 0, 1], port));
        let mut s = TcpStream::connect_timeout(&addr, Duration::from_secs(2))?;
        s.set_read_timeout(Some(Duration::from_secs(5)))?;
        s.set_write_timeout(Some(Duration::from_secs(5)))?;
        s.write_all(req.as_bytes())?;
        let mut raw = Vec::new();
        s.read_to_end(&mut raw)?;
        let text = String::from_utf8_lossy(&raw).into_owned();
        let bad = |m: &str| std::io::Error::new(std::io::ErrorKind::InvalidData, m.to_string());
        let (head, body) = text.split_once("\r\n\r\n").ok_or_else(|| bad(&text))?;
        let mut lines = head.lines();
        let status = lines
            .next()
            .and_then(|l| l.split_whitespace().nth(1))
            .and_then(|c| c.parse().ok())
            .ok_or_else(|| bad(head))?;
        let content_type = lines
            .filter_map(|l| l.split_once(':'))
            .find(|(k, _)| k.trim().eq_ignore_ascii_case("content-type"))
            .map(|(_, v)| v.trim().to_string())
            .unwrap_or_default();
        Ok(Resp {
            status,
            content_type,
            body: body.to_string(),
        })
    })
}

/// Like `get`, failing the test on a transport error.
fn must_get(ns: &NetNs, port: u16, path: &str) -> Resp {
    get(ns, port, path, None).unwrap_or_else(|e| panic!("GET {path} on :{port}: {e}"))
}

/// Polls `probe` every 100 ms until it returns `Ok`, at most `WAIT` (and 200 tries); else
/// fails with `what` and the last `Err`.
fn wait_for<T>(what: &str, mut probe: impl FnMut() -> Result<T, String>) -> T {
    let deadline = Instant::now() + WAIT;
    let mut tries = 0;
    loop {
        tries += 1;
        match probe() {
            Ok(v) => return v,
            Err(last) if Instant::now() >= deadline || tries > 200 => {
                panic!("timed out after {tries} tries waiting for {what}; last: {last}")
            }
            Err(_) => std::thread::sleep(Duration::from_millis(100)),
        }
    }
}

/// `/readyz` until it answers `code`; returns the body.
fn readyz_becomes(ns: &NetNs, daemon: &mut Proc, code: u16) -> String {
    wait_for(&format!("/readyz = {code}"), || {
        daemon.alive();
        match get(ns, DAEMON, "/readyz", None) {
            Ok(r) if r.status == code => Ok(r.body),
            Ok(r) => Err(format!("{} {:?}", r.status, r.body)),
            Err(e) => Err(e.to_string()),
        }
    })
}

/// Prometheus's API at `path`, asserting a successful JSON answer; returns `data`.
fn api(ns: &NetNs, path: &str) -> Result<Value, String> {
    let r = get(ns, PROM, path, None).map_err(|e| e.to_string())?;
    if r.status != 200 {
        return Err(format!("{} {}", r.status, r.body));
    }
    let v: Value = serde_json::from_str(&r.body).map_err(|e| format!("{e}: {}", r.body))?;
    if v["status"] != "success" {
        return Err(r.body);
    }
    Ok(v["data"].clone())
}

/// `promtool check metrics` on `text` (stdin); returns (passed, its output).
fn promtool(text: &str) -> (bool, String) {
    let mut child = Command::new("promtool")
        .args(["check", "metrics"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("promtool (Debian package prometheus) is required: spawn promtool");
    child
        .stdin
        .take()
        .expect("stdin")
        .write_all(text.as_bytes())
        .expect("write to promtool");
    let out = child.wait_with_output().expect("promtool");
    let said = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    (out.status.success(), said)
}

fn has_route(n: &Node) -> bool {
    n.ns.ip(&["route", "show", ROUTE, "proto", "77"])
        .contains("via 192.168.56.12 dev eth0")
}

/// Atomic save (as editors do): write a sibling, rename it over the file.
fn save(file: &Path, text: &str) {
    let tmp = file.with_extension("tmp");
    std::fs::write(&tmp, text).expect("write");
    std::fs::rename(&tmp, file).expect("rename");
}

#[test]
fn prometheus_scrapes_the_daemon_and_counts_a_repaired_route() {
    for tool in ["prometheus", "promtool"] {
        assert!(
            Command::new(tool)
                .arg("--version")
                .output()
                .is_ok_and(|o| o.status.success()),
            "`{tool}` is missing: install Debian's `prometheus` package (scripts/test does)"
        );
    }
    let dir = tempfile::tempdir().expect("dir");
    let file = dir.path().join("cluster.podnet");
    std::fs::write(&file, CLUSTER).expect("write cluster");
    let f = file.to_str().expect("utf-8");
    let n = Node::new("wp", "192.168.56.11/24");

    let listen = format!("127.0.0.1:{DAEMON}");
    let mut daemon = Proc::spawn(
        "podnet watch",
        &n.ns,
        &dir.path().join("watch.log"),
        &bin(),
        &["watch", f, "--root", n.root(), "--listen", &listen],
    );
    readyz_becomes(&n.ns, &mut daemon, 200);
    assert!(has_route(&n), "watch did not apply the route to n2");

    // Prometheus in the same namespace, scraping the daemon every second.
    let storage = dir.path().join("tsdb");
    let config = dir.path().join("prometheus.yml");
    std::fs::write(
        &config,
        format!(
            "global:\n  scrape_interval: 1s\n  scrape_timeout: 1s\n  evaluation_interval: 1s\n\
             scrape_configs:\n  - job_name: podnet\n    static_configs:\n      - targets: ['{listen}']\n"
        ),
    )
    .expect("write prometheus.yml");
    let mut prom = Proc::spawn(
        "prometheus",
        &n.ns,
        &dir.path().join("prometheus.log"),
        "prometheus",
        &[
            &format!("--config.file={}", config.display()),
            &format!("--storage.tsdb.path={}", storage.display()),
            &format!("--web.listen-address=127.0.0.1:{PROM}"),
            "--storage.tsdb.retention.time=1h",
        ],
    );
    wait_for("Prometheus /-/ready", || {
        prom.alive();
        match get(&n.ns, PROM, "/-/ready", None) {
            Ok(r) if r.status == 200 => Ok(()),
            Ok(r) => Err(format!("{} {}", r.status, r.body)),
            Err(e) => Err(e.to_string()),
        }
    });

    // Drift: a foreign deletion of the owned route; the daemon puts it back.
    n.ns.ip(&["route", "del", ROUTE, "proto", "77"]);
    wait_for("the deleted route to be repaired", || {
        daemon.alive();
        if has_route(&n) {
            Ok(())
        } else {
            Err(n.ns.ip(&["route", "show"]))
        }
    });

    // Prometheus's view: the target up, scraped without error, the repair counted.
    let target = wait_for("the podnet target to be up in /api/v1/targets", || {
        prom.alive();
        let data = api(&n.ns, "/api/v1/targets")?;
        let t = data["activeTargets"]
            .as_array()
            .and_then(|a| a.iter().find(|t| t["labels"]["job"] == "podnet"))
            .cloned()
            .ok_or_else(|| data.to_string())?;
        if t["health"] == "up" {
            Ok(t)
        } else {
            Err(t.to_string())
        }
    });
    assert_eq!(target["scrapeUrl"], format!("http://{listen}/metrics"));
    assert_eq!(target["lastError"], "", "{target}");
    let repairs = wait_for("podnet_drift_repairs_total{kind=\"route\"} >= 1", || {
        let data = api(
            &n.ns,
            "/api/v1/query?query=podnet_drift_repairs_total%7Bkind%3D%22route%22%7D",
        )?;
        let v: f64 = data["result"][0]["value"][1]
            .as_str()
            .and_then(|s| s.parse().ok())
            .ok_or_else(|| data.to_string())?;
        if v >= 1.0 {
            Ok(v)
        } else {
            Err(data.to_string())
        }
    });
    assert!(repairs >= 1.0);
    // The rest of the exposition arrived too: build info and the config gauges.
    let up = api(&n.ns, "/api/v1/query?query=podnet_config_valid").expect("query");
    assert_eq!(up["result"][0]["value"][1], "1", "{up}");
    let build = api(&n.ns, "/api/v1/query?query=podnet_build_info").expect("query");
    assert_eq!(
        build["result"][0]["metric"]["version"],
        env!("CARGO_PKG_VERSION"),
        "{build}"
    );

    // promtool on the body a plain client gets (no Accept header, as `curl URL | promtool`).
    let m = must_get(&n.ns, DAEMON, "/metrics");
    assert_eq!(m.status, 200, "{m:?}");
    assert!(
        m.body
            .contains("podnet_drift_repairs_total{kind=\"route\"} "),
        "{}",
        m.body
    );
    let (ok, said) = promtool(&m.body);
    assert!(
        ok,
        "promtool check metrics failed on /metrics ({}):\n{said}\nbody:\n{}",
        m.content_type, m.body
    );

    assert!(
        m.content_type.starts_with("text/plain; version=0.0.4"),
        "{m:?}"
    );
    // A client asking for OpenMetrics (as Prometheus does, first) gets OpenMetrics.
    let om = get(
        &n.ns,
        DAEMON,
        "/metrics",
        Some("application/openmetrics-text;version=1.0.0,text/plain;version=0.0.4;q=0.5"),
    )
    .expect("GET /metrics (OpenMetrics)");
    assert_eq!(om.status, 200, "{om:?}");
    assert!(
        om.content_type
            .starts_with("application/openmetrics-text; version=1.0.0"),
        "{om:?}"
    );
    assert!(om.body.ends_with("# EOF\n"), "{}", om.body);
    assert!(
        om.body.contains("# TYPE podnet_drift_repairs counter\n"),
        "{}",
        om.body
    );

    // The health endpoints.
    let live = must_get(&n.ns, DAEMON, "/livez");
    assert_eq!((live.status, live.body.as_str()), (200, "ok\n"), "{live:?}");
    let healthz = must_get(&n.ns, DAEMON, "/healthz");
    assert_eq!(healthz.status, 200, "{healthz:?}");
    let v = must_get(&n.ns, DAEMON, "/readyz?verbose");
    assert_eq!(v.status, 200, "{v:?}");
    for check in ["[+]applied ok", "[+]config ok", "[+]converged ok"] {
        assert!(v.body.contains(check), "no {check:?} in {:?}", v.body);
    }
    let nf = must_get(&n.ns, DAEMON, "/no-such-path");
    assert_eq!(nf.status, 404, "{nf:?}");

    // An invalid config: not ready, with the reason; the last good route stays.
    save(
        &file,
        &CLUSTER.replace("backend host-gw", "backend warp-drive"),
    );
    let why = readyz_becomes(&n.ns, &mut daemon, 503);
    assert!(why.contains("config"), "no reason in {why:?}");
    let v = must_get(&n.ns, DAEMON, "/readyz?verbose");
    assert_eq!(v.status, 503, "{v:?}");
    assert!(v.body.contains("[-]config failed: "), "{:?}", v.body);
    assert!(v.body.contains("[+]applied ok"), "{:?}", v.body);
    assert!(has_route(&n), "the invalid config removed the route");
    // Fixed: ready again.
    save(&file, CLUSTER);
    readyz_becomes(&n.ns, &mut daemon, 200);
    assert!(has_route(&n));
    daemon.alive();
    prom.alive();
}
