//! A simulated node for CLI-level namespace tests: a namespace with an underlay `eth0` (a
//! veth to a peer namespace) carrying the node's address, and a `--root` directory for
//! files and the journal. `podnet` runs inside it through `ip netns exec`.

use std::process::Output;
use std::time::{Duration, Instant};

use serde_json::Value;

use super::NetNs;

/// The `podnet` under test: this build's, or `PODNET_TEST_BIN` (to show that a test fails
/// against an older build).
pub fn bin() -> String {
    std::env::var("PODNET_TEST_BIN").unwrap_or_else(|_| env!("CARGO_BIN_EXE_podnet").to_string())
}

/// A simulated node: its namespace, the underlay peer and a root directory.
pub struct Node {
    pub ns: NetNs,
    pub peer: NetNs,
    pub root: tempfile::TempDir,
}

impl Node {
    pub fn new(tag: &str, address: &str) -> Node {
        let ns = NetNs::new(tag);
        let peer = NetNs::new(&format!("{tag}u"));
        // No IPv6 duplicate address detection: eth0's link-local address (and its local
        // route) is then complete before the first snapshot instead of appearing later.
        ns.sh("sysctl", &["-qw", "net.ipv6.conf.default.accept_dad=0"]);
        super::veth(&ns, "eth0", &peer, "eth0");
        ns.ip(&["addr", "add", address, "dev", "eth0"]);
        let deadline = Instant::now() + Duration::from_secs(5);
        while ns
            .ip(&["-6", "route", "show", "table", "local", "dev", "eth0"])
            .is_empty()
        {
            assert!(
                Instant::now() < deadline,
                "eth0 link-local address never appeared"
            );
            std::thread::sleep(Duration::from_millis(10));
        }
        Node {
            ns,
            peer,
            root: tempfile::tempdir().expect("root dir"),
        }
    }

    pub fn root(&self) -> &str {
        self.root.path().to_str().expect("utf-8 root")
    }

    /// Runs `podnet ARGS… --root ROOT` in the namespace.
    pub fn podnet(&self, args: &[&str]) -> Output {
        let mut a: Vec<&str> = args.to_vec();
        a.extend(["--root", self.root()]);
        self.ns.exec(&bin(), &a)
    }

    /// Like `podnet`, asserting exit 0; returns stdout.
    pub fn ok(&self, args: &[&str]) -> String {
        let out = self.podnet(args);
        assert!(
            out.status.success(),
            "podnet {args:?} in {} exited {:?}\nstdout:\n{}\nstderr:\n{}",
            self.ns.name,
            out.status.code(),
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    pub fn json(&self, program: &str, args: &[&str]) -> Value {
        let out = self.ns.sh(program, args);
        if out.trim().is_empty() {
            Value::Array(Vec::new())
        } else {
            serde_json::from_str(&out).expect("JSON dump")
        }
    }
}
