//! The files a node needs: the CNI conflist (bridge + host-local over the node subnet, then
//! portmap and bandwidth) and, with `flannel-compat on`, flannel's `/run/flannel/subnet.env`.

use ipnet::Ipv4Net;
use serde::Serialize;

use super::types::File;
use crate::model::{Cluster, MasqueradeMode};

const CNI_VERSION: &str = "1.0.0";
/// flannel's subnet file, written with `flannel-compat on`.
pub const FLANNEL_SUBNET_ENV: &str = "/run/flannel/subnet.env";
const MODE_644: u32 = 0o644;

// The CNI network configuration list: a wire format of its own (the CNI specification), so
// its shapes derive `Serialize`; private because only the text is part of the plan.

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct ConfList<'a> {
    cni_version: &'a str,
    name: &'a str,
    plugins: Vec<Plugin<'a>>,
}

#[derive(Serialize)]
#[serde(untagged)]
enum Plugin<'a> {
    Bridge(BridgePlugin<'a>),
    Capability(CapabilityPlugin),
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct BridgePlugin<'a> {
    #[serde(rename = "type")]
    kind: &'a str,
    bridge: &'a str,
    is_gateway: bool,
    is_default_gateway: bool,
    hairpin_mode: bool,
    ip_masq: bool,
    mtu: u32,
    ipam: Ipam,
}

/// host-local IPAM over the node subnet. No `routes`: with `isDefaultGateway` the bridge
/// plugin adds the default route itself, and listing `0.0.0.0/0` too fails ("file exists").
#[derive(Serialize)]
struct Ipam {
    #[serde(rename = "type")]
    kind: &'static str,
    ranges: [[Range; 1]; 1],
}

#[derive(Serialize)]
struct Range {
    subnet: String,
    gateway: String,
}

#[derive(Serialize)]
struct CapabilityPlugin {
    #[serde(rename = "type")]
    kind: &'static str,
    capabilities: Capabilities,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct Capabilities {
    #[serde(skip_serializing_if = "Option::is_none")]
    port_mappings: Option<bool>,
    #[serde(skip_serializing_if = "Option::is_none")]
    bandwidth: Option<bool>,
}

pub(super) fn files(c: &Cluster, subnet: Ipv4Net, gateway: Ipv4Net, mtu: u32) -> Vec<File> {
    let mut out = vec![File {
        path: format!("{}/{}", c.cni.dir.trim_end_matches('/'), c.cni.file),
        mode: MODE_644,
        content: conflist(c, subnet, gateway, mtu),
    }];
    if c.flannel_compat {
        let ipmasq = c.masquerade.mode != MasqueradeMode::Off;
        out.push(File {
            path: FLANNEL_SUBNET_ENV.to_string(),
            mode: MODE_644,
            content: format!(
                "FLANNEL_NETWORK={}\nFLANNEL_SUBNET={gateway}\nFLANNEL_MTU={mtu}\nFLANNEL_IPMASQ={ipmasq}\n",
                c.pod_cidr.value
            ),
        });
    }
    out
}

fn conflist(c: &Cluster, subnet: Ipv4Net, gateway: Ipv4Net, mtu: u32) -> String {
    let mut plugins = vec![Plugin::Bridge(BridgePlugin {
        kind: "bridge",
        bridge: &c.cni.bridge.value,
        is_gateway: true,
        is_default_gateway: true,
        hairpin_mode: c.cni.hairpin,
        // podnet masquerades itself (or is told not to).
        ip_masq: false,
        mtu,
        ipam: Ipam {
            kind: "host-local",
            ranges: [[Range {
                subnet: subnet.to_string(),
                gateway: gateway.addr().to_string(),
            }]],
        },
    })];
    if c.cni.portmap {
        plugins.push(Plugin::Capability(CapabilityPlugin {
            kind: "portmap",
            capabilities: Capabilities {
                port_mappings: Some(true),
                bandwidth: None,
            },
        }));
    }
    if c.cni.bandwidth {
        plugins.push(Plugin::Capability(CapabilityPlugin {
            kind: "bandwidth",
            capabilities: Capabilities {
                port_mappings: None,
                bandwidth: Some(true),
            },
        }));
    }
    let list = ConfList {
        cni_version: CNI_VERSION,
        name: &c.cni.name,
        plugins,
    };
    // Serializing these plain structs cannot fail.
    serde_json::to_string_pretty(&list).unwrap_or_default() + "\n"
}
