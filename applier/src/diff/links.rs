//! Links: compared on the attributes the plan declares (kind, MTU, up, the vxlan MAC and
//! attributes); everything the kernel or the CNI plugins set (the bridge's MAC, its ports)
//! is not drift. A vxlan whose VNI, port, local address, underlay or learning flag differs
//! cannot be changed in place: it is deleted and created again, and everything observed on
//! the old device counts as gone (the kernel removes it with the device).

use ahash::AHashMap as HashMap;
use podnet_compiler::plan::{self, NodePlan};
use std::collections::BTreeSet;

use super::render::opt;
use super::{Conflict, Observed, Op, PLACEHOLDER};
use crate::kernel::link::{KernelLinkKind, Link, LinkChange, MARKER, Vxlan};

/// The link operations and what they imply for the other kinds.
#[derive(Debug, Default)]
pub struct Links {
    /// Deletes of owned links that must be created again (run before `changes`).
    pub recreate_deletes: Vec<Op>,
    /// Creates and in-place changes, in plan order.
    pub changes: Vec<Op>,
    /// Deletes of owned links that left the plan (run at the very end).
    pub stale: Vec<Op>,
    /// Indices whose addresses, neighbours and FDB entries go with the device (stale or
    /// recreated links). Routes and nexthops are always deleted explicitly first, because
    /// removing a device with thousands of routes attached costs the kernel O(N²).
    pub doomed: BTreeSet<u32>,
    /// Indices of links deleted to be created again.
    pub recreated: BTreeSet<u32>,
    /// Planned links not there yet (or recreated) and their placeholder indices.
    pub placeholders: Vec<(String, u32)>,
}

/// Computes the link operations for `plan`.
pub fn diff(plan: &NodePlan, obs: &Observed, conflicts: &mut Vec<Conflict>) -> Links {
    let by_name: HashMap<&str, &Link> = obs.links.iter().map(|l| (l.name.as_str(), l)).collect();
    let mut out = Links::default();
    for (pos, want) in plan.links.iter().enumerate() {
        let placeholder = PLACEHOLDER + pos as u32;
        let underlay = want
            .vxlan
            .as_ref()
            .and_then(|v| underlay(want, v, obs, &by_name, conflicts));
        if let Some(w) = &want.vxlan
            && let Some(other) = obs.links.iter().find(|l| {
                !obs.owned.contains(&l.index)
                    && l.vxlan
                        .as_ref()
                        .is_some_and(|x| x.vni == w.vni && x.port == w.port)
            })
        {
            conflicts.push(Conflict::ForeignVxlan {
                name: other.name.clone(),
                vni: w.vni,
                port: w.port,
            });
        }
        let create = Op::LinkCreate {
            link: want.clone(),
            underlay,
        };
        match by_name.get(want.name.as_str()) {
            None => {
                out.placeholders.push((want.name.clone(), placeholder));
                out.changes.push(create);
            }
            Some(have) if !obs.owned.contains(&have.index) => {
                conflicts.push(Conflict::ForeignLink {
                    name: want.name.clone(),
                });
            }
            Some(have) => match recreate_reason(want, have, underlay) {
                Some(reason) => {
                    out.doomed.insert(have.index);
                    out.recreated.insert(have.index);
                    out.placeholders.push((want.name.clone(), placeholder));
                    out.recreate_deletes.push(Op::LinkDelete {
                        index: have.index,
                        name: have.name.clone(),
                        reason,
                    });
                    out.changes.push(create);
                }
                None => {
                    let change = link_change(want, have);
                    if change != LinkChange::default() {
                        out.changes.push(Op::LinkChange {
                            index: have.index,
                            name: have.name.clone(),
                            change,
                        });
                    }
                }
            },
        }
    }
    let planned: BTreeSet<&str> = plan.links.iter().map(|l| l.name.as_str()).collect();
    for l in &obs.links {
        if obs.owned.contains(&l.index) && !planned.contains(l.name.as_str()) {
            out.doomed.insert(l.index);
            out.stale.push(Op::LinkDelete {
                index: l.index,
                name: l.name.clone(),
                reason: "stale".to_string(),
            });
        }
    }
    out
}

/// The index of a vxlan's underlay device, or the conflict that it is missing or podnet's.
fn underlay(
    want: &plan::Link,
    v: &plan::VxlanAttrs,
    obs: &Observed,
    by_name: &HashMap<&str, &Link>,
    conflicts: &mut Vec<Conflict>,
) -> Option<u32> {
    match by_name.get(v.dev.as_str()) {
        Some(u) if !obs.owned.contains(&u.index) => Some(u.index),
        Some(_) => {
            conflicts.push(Conflict::UnderlayIsPodnets {
                dev: v.dev.clone(),
                vxlan: want.name.clone(),
            });
            None
        }
        None => {
            conflicts.push(Conflict::MissingUnderlay {
                dev: v.dev.clone(),
                vxlan: want.name.clone(),
            });
            None
        }
    }
}

/// Why an owned link must be deleted and created again, if it must.
pub(crate) fn recreate_reason(
    want: &plan::Link,
    have: &Link,
    underlay: Option<u32>,
) -> Option<String> {
    let kind = KernelLinkKind::from(want.kind);
    if have.kind.as_ref() != Some(&kind) {
        return Some(format!(
            "kind {} → {kind}",
            have.kind.as_ref().map_or("none", KernelLinkKind::as_str)
        ));
    }
    let (Some(w), Some(h)) = (&want.vxlan, &have.vxlan) else {
        return match (&want.vxlan, &have.vxlan) {
            (Some(_), None) => Some("vxlan attributes unreadable".to_string()),
            _ => None,
        };
    };
    let want_vx = Vxlan {
        vni: w.vni,
        port: w.port,
        local: Some(w.local),
        link: underlay,
        learning: w.learning,
    };
    let mut why = Vec::new();
    if h.vni != want_vx.vni {
        why.push(format!("vni {} → {}", h.vni, want_vx.vni));
    }
    if h.port != want_vx.port {
        why.push(format!("port {} → {}", h.port, want_vx.port));
    }
    if h.local != want_vx.local {
        why.push(format!("local {} → {}", opt(h.local), w.local));
    }
    if underlay.is_some() && h.link != underlay {
        why.push(format!("underlay → {}", w.dev));
    }
    if h.learning != want_vx.learning {
        why.push(format!("learning {} → {}", h.learning, w.learning));
    }
    (!why.is_empty()).then(|| why.join(", "))
}

/// The in-place changes that make `have` match `want`.
fn link_change(want: &plan::Link, have: &Link) -> LinkChange {
    let mut c = LinkChange::default();
    if have.alias.as_deref() != Some(MARKER) {
        c.alias = Some(MARKER.to_string());
    }
    if have.mtu != want.mtu {
        c.mtu = Some(want.mtu);
    }
    if let Some(mac) = want.mac
        && have.mac != Some(mac.0)
    {
        c.mac = Some(mac.0);
    }
    if have.up != want.up {
        c.up = Some(want.up);
    }
    c
}
