//! Changes that disturb running pods: podnet converges the node, but a pod's own side
//! (its veth MTU, its address, the bridge it is plugged into) was set by the CNI plugin
//! when the pod started and changes only when the pod is re-created. Pure: read from the
//! diff and the observation it was computed from ([`super::Before::pods`]).

use podnet_compiler::plan::LinkKind;

use super::{Diff, Op};
use crate::kernel::link::KernelLinkKind;

/// One warning: a stable code for tools, the message, and how many pods it concerns.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Warning {
    /// `pod_mtu`, `bridge_renamed`, `node_subnet` or `backend_switch`.
    pub code: &'static str,
    pub message: String,
    /// Pods on the node now (veths enslaved to the bridge).
    pub pods: usize,
}

/// How many pods are concerned, then what to do about them (`todo`), or that there is
/// nothing to do.
fn pods(n: usize, todo: &str) -> String {
    match n {
        0 => "no pod is on the bridge now, so there is nothing to re-create".to_string(),
        1 => format!("1 pod is on the bridge now (1 veth): {todo}"),
        n => format!("{n} pods are on the bridge now ({n} veths): {todo}"),
    }
}

/// The warnings of `d` (in a fixed order: backend, bridge, subnet, MTU).
pub fn warnings(d: &Diff) -> Vec<Warning> {
    let mut out = Vec::new();
    let mut vx_created = None;
    let mut vx_deleted = None;
    let mut bridge_created = None;
    let mut bridge_deleted = None;
    for op in &d.ops {
        match op {
            Op::LinkCreate { link, .. } => match link.kind {
                LinkKind::Vxlan => vx_created = Some(link.name.clone()),
                LinkKind::Bridge => bridge_created = Some((link.name.clone(), link.mtu)),
            },
            Op::LinkDelete {
                index,
                name,
                reason,
            } if reason == "stale" => {
                match d.before.links.get(index).and_then(|l| l.kind.as_ref()) {
                    Some(KernelLinkKind::Vxlan) => vx_deleted = Some(name.clone()),
                    Some(KernelLinkKind::Bridge) => bridge_deleted = Some((*index, name.clone())),
                    _ => {}
                }
            }
            _ => {}
        }
    }
    // The bridge podnet keeps (changed in place or losing an address), with its pods.
    let deleted: Vec<u32> = d
        .ops
        .iter()
        .filter_map(|op| match op {
            Op::LinkDelete { index, .. } => Some(*index),
            _ => None,
        })
        .collect();
    let kept_bridge = d
        .before
        .links
        .iter()
        .find(|(i, l)| l.kind == Some(KernelLinkKind::Bridge) && !deleted.contains(i))
        .map(|(i, l)| (*i, l.name.clone()));
    let bridge = kept_bridge.clone().or_else(|| bridge_deleted.clone());
    let n_pods = bridge
        .as_ref()
        .map_or(0, |(i, _)| d.before.pods.get(i).copied().unwrap_or(0));
    let backend = match (&vx_created, &vx_deleted) {
        (Some(v), None) => Some(format!("host-gw → vxlan ({v})")),
        (None, Some(v)) => Some(format!("vxlan ({v}) → host-gw")),
        _ => None,
    };
    // Without a bridge afterwards (teardown) no pod has a network left to disturb.
    if let Some(b) = backend
        && (kept_bridge.is_some() || bridge_created.is_some())
    {
        out.push(Warning {
            code: "backend_switch",
            message: format!(
                "backend {b}: the pod MTU and the path to other nodes change; {}",
                pods(
                    n_pods,
                    "re-create them (delete the pods, their controllers start new ones) once \
                     every node is switched"
                )
            ),
            pods: n_pods,
        });
    }
    if let (Some((new, _)), Some((_, old))) = (&bridge_created, &bridge_deleted) {
        out.push(Warning {
            code: "bridge_renamed",
            message: format!(
                "bridge {old} → {new}: pods stay plugged into {old}, which is removed, and \
                 lose their network; {}",
                pods(n_pods, "re-create them after the apply")
            ),
            pods: n_pods,
        });
    }
    if let Some((index, name)) = &kept_bridge {
        let dropped: Vec<String> = d
            .ops
            .iter()
            .filter_map(|op| match op {
                Op::AddrDelete(a) if a.index == *index => Some(a.address.to_string()),
                _ => None,
            })
            .collect();
        let added: Vec<String> = d
            .ops
            .iter()
            .filter_map(|op| match op {
                Op::AddrReplace(a) if a.index == *index => Some(a.address.to_string()),
                _ => None,
            })
            .collect();
        if !dropped.is_empty() && !added.is_empty() {
            out.push(Warning {
                code: "node_subnet",
                message: format!(
                    "node subnet {} → {} on {name}: running pods keep addresses of the old \
                     subnet, which no longer route here; {}",
                    dropped.join(", "),
                    added.join(", "),
                    pods(n_pods, "re-create them")
                ),
                pods: n_pods,
            });
        }
        let mtu = d.ops.iter().find_map(|op| match op {
            Op::LinkChange {
                index: i, change, ..
            } if i == index => change.mtu,
            _ => None,
        });
        if let (Some(new), Some(have)) = (mtu, d.before.links.get(index)) {
            out.push(Warning {
                code: "pod_mtu",
                message: format!(
                    "pod MTU {} → {new} on {name}: running pods keep MTU {} on their veths, \
                     so packets larger than {new} bytes between pods {}; {}",
                    have.mtu,
                    have.mtu,
                    if new < have.mtu {
                        "are lost"
                    } else {
                        "are not sent"
                    },
                    pods(n_pods, "re-create them to give them the new MTU")
                ),
                pods: n_pods,
            });
        }
    }
    out
}
