//! Test support: attaching a pod namespace to a node namespace with the real CNI plugins
//! (`containernetworking-plugins` in /usr/lib/cni), following a conflist as podnet writes it.

use std::io::Write as _;
use std::path::Path;
use std::process::{Command, Stdio};

use serde_json::Value;

use super::NetNs;

pub const CNI_PATH: &str = "/usr/lib/cni";

/// Runs a command with optional standard input and environment; panics with its output
/// unless it succeeds. Returns standard output.
pub fn run_with(args: &[&str], stdin: Option<&str>, env: &[(&str, &str)]) -> String {
    let (prog, rest) = args.split_first().expect("a command");
    let mut cmd = Command::new(prog);
    cmd.args(rest)
        .envs(env.iter().copied())
        .stdin(if stdin.is_some() {
            Stdio::piped()
        } else {
            Stdio::null()
        })
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let mut child = cmd
        .spawn()
        .unwrap_or_else(|e| panic!("cannot run {args:?}: {e}"));
    if let Some(input) = stdin {
        child
            .stdin
            .take()
            .expect("stdin")
            .write_all(input.as_bytes())
            .expect("write stdin");
    }
    let out = child.wait_with_output().expect("wait");
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(
        out.status.success(),
        "{args:?} failed ({}):\nstdout: {stdout}\nstderr: {}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    stdout
}

/// One CNI plugin invocation in `node`: the conflist entry plus `name`, `cniVersion` and
/// `prevResult`.
pub fn invoke(
    node: &NetNs,
    command: &str,
    conf: &Value,
    pod: &NetNs,
    container: &str,
) -> Option<Value> {
    let kind = conf["type"].as_str().expect("plugin type").to_string();
    let plugin = format!("{CNI_PATH}/{kind}");
    let out = run_with(
        &["ip", "netns", "exec", &node.name, &plugin],
        Some(&conf.to_string()),
        &[
            ("CNI_COMMAND", command),
            ("CNI_CONTAINERID", container),
            ("CNI_NETNS", &pod.path()),
            ("CNI_IFNAME", "eth0"),
            ("CNI_PATH", CNI_PATH),
        ],
    );
    if out.trim().is_empty() {
        None
    } else {
        Some(serde_json::from_str(&out).expect("plugin result is JSON"))
    }
}

/// The conflist's plugin entries as full network configurations for one invocation;
/// host-local keeps its leases in `data_dir`, not in the host's /var/lib/cni (the lab's
/// own function; a conflist without plugins is a test failure here).
pub fn plugin_confs(conflist: &Value, data_dir: &Path) -> Vec<Value> {
    assert!(conflist["plugins"].is_array(), "plugins: {conflist}");
    podnet::lab::cni::plugin_confs(conflist, data_dir)
}

/// Runs ADD through every plugin of `confs` in order; returns the final result.
pub fn add(node: &NetNs, confs: &[Value], pod: &NetNs, container: &str) -> Value {
    let mut prev: Option<Value> = None;
    for conf in confs {
        let mut c = conf.clone();
        if let Some(p) = &prev {
            c["prevResult"] = p.clone();
        }
        prev = invoke(node, "ADD", &c, pod, container).or(prev);
    }
    prev.expect("an ADD result")
}

/// Runs DEL through every plugin of `confs` in reverse order.
pub fn del(node: &NetNs, confs: &[Value], pod: &NetNs, container: &str, result: &Value) {
    for conf in confs.iter().rev() {
        let mut c = conf.clone();
        c["prevResult"] = result.clone();
        invoke(node, "DEL", &c, pod, container);
    }
}

/// Pings `target` from `pod`: at most `tries` single pings of one second each.
pub fn ping(pod: &NetNs, target: &str, tries: usize) -> bool {
    (0..tries).any(|_| {
        Command::new("ip")
            .args([
                "netns", "exec", &pod.name, "ping", "-c", "1", "-W", "1", target,
            ])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .expect("run ping")
            .success()
    })
}
