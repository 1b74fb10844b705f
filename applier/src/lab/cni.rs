//! Pods through the real CNI plugins: each plugin of the conflist podnet wrote for a node is
//! run inside the node's namespace (a child of a thread that entered it), with the pod's
//! namespace as `CNI_NETNS`, its entry plus `name`, `cniVersion` and `prevResult` on
//! standard input (the CNI specification's conflist rules), `ADD` in order and `DEL` in
//! reverse. host-local keeps its leases under the node's lab root, never in the host's
//! `/var/lib/cni`.

use std::io::Write as _;
use std::net::Ipv4Addr;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use ipnet::Ipv4Net;
use podnet_compiler::plan::NodePlan;
use serde_json::{Value, json};

use super::LabError;
use crate::kernel::netns::Target;

/// Where the plugins are looked for without `CNI_PATH`.
pub const DEFAULT_CNI_PATH: &str = "/usr/lib/cni";
/// The Debian package that ships them.
pub const PACKAGE: &str = "containernetworking-plugins";

/// The plugin search path: `CNI_PATH` (colon-separated) or [`DEFAULT_CNI_PATH`].
pub fn search_path() -> Vec<PathBuf> {
    match std::env::var("CNI_PATH") {
        Ok(p) if !p.is_empty() => std::env::split_paths(&p).collect(),
        _ => vec![PathBuf::from(DEFAULT_CNI_PATH)],
    }
}

/// The plugins a conflist runs (every `type`, IPAM's too), in order, without repeats.
pub fn plugin_types(conflist: &Value) -> Vec<String> {
    let mut out: Vec<String> = Vec::new();
    for p in conflist["plugins"].as_array().into_iter().flatten() {
        for t in [p["type"].as_str(), p["ipam"]["type"].as_str()]
            .into_iter()
            .flatten()
        {
            if !out.iter().any(|o| o == t) {
                out.push(t.to_string());
            }
        }
    }
    out
}

/// The conflist of a plan (the file podnet writes), parsed.
pub fn plan_conflist(plan: &NodePlan) -> Result<(String, Value), LabError> {
    let f = plan
        .files
        .iter()
        .find(|f| f.path.ends_with(".conflist") || f.path.ends_with(".conf"))
        .ok_or_else(|| LabError::Cni(format!("the plan of {} has no CNI config", plan.node)))?;
    let v =
        serde_json::from_str(&f.content).map_err(|e| LabError::Cni(format!("{}: {e}", f.path)))?;
    Ok((f.path.clone(), v))
}

/// Checks that every plugin of every conflist is installed, before anything is built.
pub fn check_plugins<'a>(
    conflists: impl IntoIterator<Item = &'a Value>,
    path: &[PathBuf],
) -> Result<(), LabError> {
    let mut missing: Vec<String> = Vec::new();
    for c in conflists {
        for t in plugin_types(c) {
            if find(&t, path).is_none() && !missing.contains(&t) {
                missing.push(t);
            }
        }
    }
    if missing.is_empty() {
        Ok(())
    } else {
        Err(LabError::MissingPlugins {
            plugins: missing,
            searched: std::env::join_paths(path)
                .map(|p| p.to_string_lossy().into_owned())
                .unwrap_or_default(),
        })
    }
}

fn find(plugin: &str, path: &[PathBuf]) -> Option<PathBuf> {
    path.iter().map(|d| d.join(plugin)).find(|p| p.is_file())
}

/// One pod's attachment: what `DEL` needs later.
#[derive(Clone, Debug)]
pub struct Attachment {
    pub pod_ns: String,
    pub container: String,
    /// The pod's address (from the final ADD result).
    pub address: Ipv4Net,
    /// The pod's interface MAC and the host-side interface it hangs off (the bridge), from
    /// the ADD result's `interfaces`.
    pub mac: Option<String>,
    pub bridge: Option<String>,
    /// The conflist it was attached with (plugin entries as invoked, without prevResult).
    pub confs: Vec<Value>,
    pub result: Value,
}

/// The conflist's entries as full network configurations; host-local leases go to
/// `data_dir`.
pub fn plugin_confs(conflist: &Value, data_dir: &Path) -> Vec<Value> {
    conflist["plugins"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|p| {
            let mut c = p.clone();
            c["name"] = conflist["name"].clone();
            c["cniVersion"] = conflist["cniVersion"].clone();
            if c.get("ipam").is_some() {
                c["ipam"]["dataDir"] = json!(data_dir);
            }
            c
        })
        .collect()
}

/// `ADD` through every plugin of `confs` in `node_ns` for the pod namespace `pod_ns`.
pub fn add(
    node_ns: &str,
    confs: Vec<Value>,
    pod_ns: &str,
    container: &str,
    path: &[PathBuf],
) -> Result<Attachment, LabError> {
    let mut prev: Option<Value> = None;
    for conf in &confs {
        let mut c = conf.clone();
        if let Some(p) = &prev {
            c["prevResult"] = p.clone();
        }
        if let Some(r) = invoke(node_ns, "ADD", &c, pod_ns, container, path)? {
            prev = Some(r);
        }
    }
    let result = prev.ok_or_else(|| LabError::Cni(format!("ADD of {pod_ns} gave no result")))?;
    let address = result["ips"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|ip| ip["address"].as_str())
        .find_map(|a| a.parse::<Ipv4Net>().ok())
        .ok_or_else(|| LabError::Cni(format!("ADD of {pod_ns} gave no IPv4 address: {result}")))?;
    let ifaces = result["interfaces"].as_array().cloned().unwrap_or_default();
    let mac = ifaces
        .iter()
        .find(|i| i["sandbox"].as_str().is_some_and(|s| !s.is_empty()))
        .and_then(|i| i["mac"].as_str())
        .map(str::to_string);
    let bridge = ifaces
        .first()
        .filter(|i| i["sandbox"].as_str().is_none_or(str::is_empty))
        .and_then(|i| i["name"].as_str())
        .map(str::to_string);
    Ok(Attachment {
        pod_ns: pod_ns.to_string(),
        container: container.to_string(),
        address,
        mac,
        bridge,
        confs,
        result,
    })
}

/// `DEL` through every plugin in reverse order (every plugin runs; the first error is
/// returned).
pub fn del(node_ns: &str, a: &Attachment, path: &[PathBuf]) -> Result<(), LabError> {
    let mut first = None;
    for conf in a.confs.iter().rev() {
        let mut c = conf.clone();
        c["prevResult"] = a.result.clone();
        if let Err(e) = invoke(node_ns, "DEL", &c, &a.pod_ns, &a.container, path) {
            first.get_or_insert(e);
        }
    }
    first.map_or(Ok(()), Err)
}

/// The pod's address as a plain IPv4 address.
pub fn pod_ip(a: &Attachment) -> Ipv4Addr {
    a.address.addr()
}

/// Runs one plugin inside `node_ns`; its JSON result, if it printed one.
fn invoke(
    node_ns: &str,
    command: &str,
    conf: &Value,
    pod_ns: &str,
    container: &str,
    path: &[PathBuf],
) -> Result<Option<Value>, LabError> {
    let kind = conf["type"].as_str().unwrap_or_default().to_string();
    let plugin = find(&kind, path).ok_or_else(|| LabError::MissingPlugins {
        plugins: vec![kind.clone()],
        searched: std::env::join_paths(path)
            .map(|p| p.to_string_lossy().into_owned())
            .unwrap_or_default(),
    })?;
    let cni_path = std::env::join_paths(path)
        .map(|p| p.to_string_lossy().into_owned())
        .unwrap_or_default();
    let netns = format!("{}/{pod_ns}", super::netns::NETNS_DIR);
    let input = conf.to_string();
    let what = format!("CNI {command} {kind} for {pod_ns}");
    let target = Target::named(node_ns).map_err(|e| LabError::io(what.clone(), e))?;
    let out = target
        .run(|| -> std::io::Result<std::process::Output> {
            let mut child = Command::new(&plugin)
                .env("CNI_COMMAND", command)
                .env("CNI_CONTAINERID", container)
                .env("CNI_NETNS", &netns)
                .env("CNI_IFNAME", "eth0")
                .env("CNI_PATH", &cni_path)
                .stdin(Stdio::piped())
                .stdout(Stdio::piped())
                .stderr(Stdio::piped())
                .spawn()?;
            if let Some(mut stdin) = child.stdin.take() {
                stdin.write_all(input.as_bytes())?;
            }
            child.wait_with_output()
        })
        .and_then(|r| r)
        .map_err(|e| LabError::io(what.clone(), e))?;
    let stdout = String::from_utf8_lossy(&out.stdout);
    if !out.status.success() {
        return Err(LabError::Command {
            what,
            message: format!(
                "{} {}",
                stdout.trim(),
                String::from_utf8_lossy(&out.stderr).trim()
            )
            .trim()
            .to_string(),
        });
    }
    if stdout.trim().is_empty() {
        return Ok(None);
    }
    serde_json::from_str(&stdout)
        .map(Some)
        .map_err(|e| LabError::Cni(format!("{what}: result is not JSON ({e}): {stdout}")))
}
