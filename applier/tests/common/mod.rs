//! Test support: network namespaces that tests create and always delete (on drop, also when
//! the test fails), and bounded command helpers. Never touches the host namespace.

#![allow(dead_code)]

pub mod cni;
pub mod flannel;
pub mod node;

use std::fs::File;
use std::process::{Command, Output};
use std::sync::atomic::{AtomicU32, Ordering};

static NEXT: AtomicU32 = AtomicU32::new(0);

/// A uniquely named network namespace, deleted on drop.
pub struct NetNs {
    pub name: String,
}

impl NetNs {
    /// Creates `podnet-t-<pid>-<n>-<tag>` (at most 15 + a few bytes; netns names are free-form).
    pub fn new(tag: &str) -> NetNs {
        let n = NEXT.fetch_add(1, Ordering::SeqCst);
        let name = format!("podnet-t-{}-{n}-{tag}", std::process::id());
        run("ip", &["netns", "add", &name]);
        let ns = NetNs { name };
        ns.ip(&["link", "set", "lo", "up"]);
        ns
    }

    /// The namespace's bind mount, as CNI_NETNS and `setns` want it.
    pub fn path(&self) -> String {
        format!("/run/netns/{}", self.name)
    }

    /// `ip -n NS ARGS…`, asserting success.
    pub fn ip(&self, args: &[&str]) -> String {
        let mut a = vec!["-n", self.name.as_str()];
        a.extend_from_slice(args);
        run("ip", &a)
    }

    /// Runs a program inside the namespace (`ip netns exec`), returning its output.
    pub fn exec(&self, program: &str, args: &[&str]) -> Output {
        let mut a = vec!["netns", "exec", self.name.as_str(), program];
        a.extend_from_slice(args);
        Command::new("ip")
            .args(&a)
            .output()
            .expect("spawn ip netns exec")
    }

    /// Like `exec`, asserting success; returns stdout.
    pub fn sh(&self, program: &str, args: &[&str]) -> String {
        let out = self.exec(program, args);
        assert!(
            out.status.success(),
            "{program} {args:?} in {} failed: {}",
            self.name,
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    /// `ip -j -n NS ARGS…` parsed as JSON.
    pub fn ip_json(&self, args: &[&str]) -> serde_json::Value {
        let mut a = vec!["-j"];
        a.extend_from_slice(args);
        let out = self.ip(&a);
        if out.trim().is_empty() {
            return serde_json::Value::Array(Vec::new());
        }
        serde_json::from_str(&out).expect("ip -j output is JSON")
    }
}

impl Drop for NetNs {
    fn drop(&mut self) {
        let _ = Command::new("ip")
            .args(["netns", "del", &self.name])
            .status();
    }
}

/// Runs `f` on a fresh thread that has entered `ns` (sockets made there live in `ns`; the
/// calling thread, and so the host namespace, is never switched).
pub fn in_ns<T: Send + 'static>(ns: &NetNs, f: impl FnOnce() -> T + Send + 'static) -> T {
    let path = ns.path();
    std::thread::spawn(move || {
        let fd = File::open(&path).expect("open netns");
        nix::sched::setns(&fd, nix::sched::CloneFlags::CLONE_NEWNET).expect("setns");
        f()
    })
    .join()
    .expect("namespace thread")
}

/// The plan of `node` in the cluster `src` (compiled in memory, no lock).
pub fn plan_of(src: &str, node: &str) -> podnet_compiler::plan::NodePlan {
    let c = podnet_compiler::compile_text(
        &podnet_compiler::MemLoader::default(),
        std::path::Path::new("c.podnet"),
        src.to_string(),
        podnet_compiler::UseLock::No,
    );
    let cluster = c
        .valid_cluster()
        .unwrap_or_else(|| panic!("valid cluster: {:?}", c.diagnostics));
    podnet_compiler::plan::Planner::new(cluster)
        .plan_named(node)
        .expect("plan")
}

/// Runs a command, asserting success; returns stdout.
pub fn run(program: &str, args: &[&str]) -> String {
    let out = Command::new(program).args(args).output().expect("spawn");
    assert!(
        out.status.success(),
        "{program} {args:?} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// Connects `a` and `b` with a veth pair named `a_if` (in `a`) and `b_if` (in `b`), both up.
pub fn veth(a: &NetNs, a_if: &str, b: &NetNs, b_if: &str) {
    let tmp_a = format!(
        "pt{}a{}",
        std::process::id() % 100_000,
        NEXT.fetch_add(1, Ordering::SeqCst)
    );
    let tmp_b = format!("{tmp_a}b");
    a.ip(&[
        "link", "add", &tmp_a, "type", "veth", "peer", "name", &tmp_b, "netns", &b.name,
    ]);
    a.ip(&["link", "set", &tmp_a, "name", a_if]);
    b.ip(&["link", "set", &tmp_b, "name", b_if]);
    a.ip(&["link", "set", a_if, "up"]);
    b.ip(&["link", "set", b_if, "up"]);
}
