//! Semantic checks over the lowered cluster: subnets, overlaps, duplicates, L2 reachability,
//! MTU, masquerade exceptions and VTEP MACs. Every check pushes its own diagnostic code.
//! A check that depends on a setting whose value was invalid ([`Invalid`]) is skipped; every
//! other check runs, so an invalid value hides no unrelated problem.

use std::collections::HashMap;
use std::net::Ipv4Addr;

use ipnet::Ipv4Net;

use crate::diag::{Code, Diagnostic};
use crate::hint::{self, Val};
use crate::model::{Backend, Cluster, Invalid, MasqueradeMode};
use crate::span::SourceKind;

/// Longest `subnet-len` accepted: a /30 still has a gateway and one pod address.
pub const MAX_SUBNET_LEN: u8 = 30;
/// Smallest pod MTU accepted (every IPv4 host must accept 576-byte datagrams).
pub const MIN_POD_MTU: u32 = 576;
/// Largest MTU accepted anywhere (the IPv4 total-length limit).
pub const MAX_MTU: u32 = 65535;

/// Runs every check on a lowered cluster whose settings `invalid` are placeholders; help
/// lines are written in the syntax of `kind` (the cluster file's form).
pub fn check(c: &Cluster, invalid: &Invalid, kind: SourceKind, diags: &mut Vec<Diagnostic>) {
    let pod_known = !invalid.pod_cidr && !invalid.subnet_len;
    settings(c, invalid, kind, diags);
    nodes(c, pod_known, !invalid.pod_cidr, diags);
    if !invalid.backend {
        segments(c, kind, diags);
    }
    if !invalid.backend && !invalid.mtu {
        mtu(c, kind, diags);
    }
    if !invalid.backend
        && !invalid.name
        && let Backend::Vxlan(_) = c.backend
    {
        vtep_macs(c, diags, crate::mac::vtep_mac);
    }
}

fn settings(c: &Cluster, invalid: &Invalid, kind: SourceKind, diags: &mut Vec<Diagnostic>) {
    if invalid.pod_cidr {
        return;
    }
    let pod = c.pod_cidr.value;
    let len = c.subnet_len.value;
    if !invalid.subnet_len && (len < pod.prefix_len() || len > MAX_SUBNET_LEN) {
        diags.push(
            Diagnostic::error(Code::SubnetLenInvalid, format!("subnet-len {len} does not fit"))
                .at(
                    c.subnet_len.span,
                    format!("must be {} to {MAX_SUBNET_LEN}", pod.prefix_len()),
                )
                .also(c.pod_cidr.span, format!("pod CIDR is a /{}", pod.prefix_len()))
                .help(format!(
                    "node subnets are carved out of the pod CIDR: pick a length from {} to {MAX_SUBNET_LEN}, e.g. 24",
                    pod.prefix_len()
                )),
        );
    }
    if let Some(svc) = &c.service_cidr
        && overlaps(svc.value, pod)
    {
        diags.push(
            Diagnostic::error(
                Code::PodCidrOverlapsService,
                format!("pod CIDR {pod} overlaps service CIDR {}", svc.value),
            )
            .at(c.pod_cidr.span, "pod CIDR")
            .also(svc.span, "service CIDR")
            .help(format!(
                "pods and services need disjoint ranges, e.g. {} and {}",
                hint::setting(kind, "pod-cidr", Val::Str("10.244.0.0/16")),
                hint::setting(kind, "service-cidr", Val::Str("10.96.0.0/12"))
            )),
        );
    }
    if !invalid.masquerade && c.masquerade.mode == MasqueradeMode::Outbound {
        for e in &c.masquerade.except {
            if e.value.contains(&pod) {
                diags.push(
                    Diagnostic::error(
                        Code::ExceptContainsPodCidr,
                        format!("masquerade exception {} contains the pod CIDR", e.value),
                    )
                    .at(e.span, "this covers every pod address")
                    .also(c.pod_cidr.span, "pod CIDR")
                    .help(format!(
                        "the pod CIDR is never masqueraded in `outbound` mode; list only other destinations, or write {}",
                        hint::setting(kind, "masquerade", Val::Str("off"))
                    )),
                );
            }
        }
    }
}

/// `pod_known`: `pod-cidr` and `subnet-len` are real (not placeholders); `pod_cidr`: at
/// least `pod-cidr` is.
fn nodes(c: &Cluster, pod_known: bool, pod_cidr: bool, diags: &mut Vec<Diagnostic>) {
    let pod = c.pod_cidr.value;
    let len = c.subnet_len.value;
    let mut names: HashMap<&str, &crate::model::Node> = HashMap::with_capacity(c.nodes.len());
    let mut addrs: HashMap<Ipv4Addr, &crate::model::Node> = HashMap::with_capacity(c.nodes.len());
    for n in &c.nodes {
        if let Some(first) = names.insert(&n.name.value, n) {
            diags.push(
                Diagnostic::error(
                    Code::DuplicateNodeName,
                    format!("node `{}` is defined twice", n.name),
                )
                .at(n.name.span, "defined again here")
                .also(first.name.span, "first defined here")
                .help("node names must be unique; rename or remove one"),
            );
            names.insert(&first.name.value, first);
        }
        let ip = n.address.value.addr();
        if let Some(first) = addrs.insert(ip, n) {
            diags.push(
                Diagnostic::error(
                    Code::DuplicateNodeAddress,
                    format!(
                        "nodes `{}` and `{}` have the same address {ip}",
                        first.name, n.name
                    ),
                )
                .at(n.address.span, "used again here")
                .also(first.address.span, "first used here")
                .help("each node needs its own underlay address"),
            );
            addrs.insert(ip, first);
        }
        let seg = n.segment();
        if seg.prefix_len() < 31 && (ip == seg.network() || ip == seg.broadcast()) {
            let what = if ip == seg.network() {
                "network"
            } else {
                "broadcast"
            };
            diags.push(
                Diagnostic::error(
                    Code::InvalidNodeAddress,
                    format!("{ip} is the {what} address of {seg}"),
                )
                .at(n.address.span, format!("the {what} address"))
                .help("write the node's own address with its segment's prefix, e.g. 10.4.7.21/24"),
            );
        }
        if pod_cidr && overlaps(seg, pod) {
            diags.push(
                Diagnostic::error(
                    Code::PodCidrOverlapsUnderlay,
                    format!("pod CIDR {pod} overlaps node `{}`'s underlay {seg}", n.name),
                )
                .at(n.address.span, format!("underlay segment {seg}"))
                .also(c.pod_cidr.span, "pod CIDR")
                .help(format!(
                    "choose a pod CIDR outside every node network, e.g. {}",
                    // The usual example, unless it is the range in conflict.
                    if overlaps(seg, "10.244.0.0/16".parse().unwrap_or(pod)) {
                        "172.20.0.0/16"
                    } else {
                        "10.244.0.0/16"
                    }
                )),
            );
        }
        if let Some(s) = &n.subnet
            && pod_known
        {
            if !pod.contains(&s.value) {
                diags.push(
                    Diagnostic::error(
                        Code::SubnetOutsidePodCidr,
                        format!("subnet {} of node `{}` is outside the pod CIDR {pod}", s.value, n.name),
                    )
                    .at(s.span, "not inside the pod CIDR")
                    .also(c.pod_cidr.span, "pod CIDR")
                    .help(format!(
                        "use a /{len} inside {pod}, or remove `subnet` and let `podnet lock` allocate one"
                    )),
                );
            } else if s.value.prefix_len() != len {
                diags.push(
                    Diagnostic::error(
                        Code::SubnetLenMismatch,
                        format!("subnet {} of node `{}` is not a /{len}", s.value, n.name),
                    )
                    .at(s.span, format!("a /{}", s.value.prefix_len()))
                    .also(c.subnet_len.span, format!("subnet-len is {len}"))
                    .help(format!(
                        "write a /{len} such as {}/{len}, or change subnet-len",
                        Ipv4Net::new(s.value.network(), len)
                            .map_or(s.value, |n| n.trunc())
                            .network()
                    )),
                );
            }
        }
    }
    overlapping_subnets(c, diags);
    if !pod_known {
        return;
    }
    let capacity = 1u64 << (u32::from(len.max(pod.prefix_len())) - u32::from(pod.prefix_len()));
    if c.nodes.len() as u64 > capacity {
        diags.push(
            Diagnostic::error(
                Code::PodCidrTooSmall,
                format!(
                    "pod CIDR {pod} holds {capacity} subnets of /{len} but the cluster has {} nodes",
                    c.nodes.len()
                ),
            )
            .at(c.pod_cidr.span, format!("{capacity} subnets"))
            .also(c.subnet_len.span, format!("/{len} per node"))
            .help("widen pod-cidr or lengthen subnet-len"),
        );
    }
}

fn overlapping_subnets(c: &Cluster, diags: &mut Vec<Diagnostic>) {
    let mut subs: Vec<_> = c
        .nodes
        .iter()
        .filter_map(|n| n.subnet.as_ref().map(|s| (s, n)))
        .collect();
    subs.sort_by_key(|(s, _)| (u32::from(s.value.network()), s.value.prefix_len()));
    // Sweep: the widest subnet seen so far that may still contain the next one.
    let mut open: Option<(&crate::model::Spanned<Ipv4Net>, &crate::model::Node)> = None;
    for (s, n) in subs {
        if let Some((o, on)) = open
            && overlaps(o.value, s.value)
        {
            let msg = if o.value == s.value {
                format!(
                    "nodes `{}` and `{}` have the same subnet {}",
                    on.name, n.name, s.value
                )
            } else {
                format!(
                    "subnet {} of `{}` overlaps {} of `{}`",
                    s.value, n.name, o.value, on.name
                )
            };
            diags.push(
                Diagnostic::error(Code::OverlappingSubnets, msg)
                    .at(s.span, "overlaps")
                    .also(o.span, format!("{} of `{}`", o.value, on.name))
                    .help("give each node its own subnet, or remove `subnet` and let `podnet lock` allocate one"),
            );
            if o.value.broadcast() >= s.value.broadcast() {
                continue;
            }
        }
        open = Some((s, n));
    }
}

fn segments(c: &Cluster, kind: SourceKind, diags: &mut Vec<Diagnostic>) {
    if c.backend != Backend::HostGw {
        return;
    }
    let Some(first) = c.nodes.first() else {
        return;
    };
    let mut seen: Vec<Ipv4Net> = vec![first.segment()];
    for n in &c.nodes[1..] {
        let seg = n.segment();
        if seen.contains(&seg) {
            continue;
        }
        seen.push(seg);
        diags.push(
            Diagnostic::error(
                Code::HostGwAcrossL2,
                format!(
                    "host-gw needs every node on one L2 segment, but `{}` is on {seg} and `{}` on {}",
                    n.name,
                    first.name,
                    first.segment()
                ),
            )
            .at(n.address.span, format!("segment {seg}"))
            .also(first.address.span, format!("segment {}", first.segment()))
            .help(format!(
                "host-gw routes go straight to the peer's address and break across routers; write {}",
                hint::block(kind, "cluster.backend", Some("vxlan"), "direct-routing", Val::Bool(true))
            )),
        );
    }
}

fn mtu(c: &Cluster, kind: SourceKind, diags: &mut Vec<Diagnostic>) {
    let overhead = c.backend.overhead();
    let mut underlays = vec![(c.underlay_mtu, "cluster underlay-mtu")];
    underlays.extend(
        c.nodes
            .iter()
            .filter_map(|n| n.underlay_mtu.map(|m| (m, "node underlay-mtu"))),
    );
    let Some(&(smallest, _)) = underlays.iter().min_by_key(|(m, _)| m.value) else {
        return;
    };
    match c.mtu {
        None => {
            let pod = smallest.value.saturating_sub(overhead);
            if pod < MIN_POD_MTU {
                diags.push(
                    Diagnostic::error(
                        Code::MtuTooSmall,
                        format!("pod MTU would be {pod} ({} minus {overhead} for encapsulation)", smallest.value),
                    )
                    .at(smallest.span, "underlay MTU")
                    .help(format!("pods need an MTU of at least {MIN_POD_MTU}; raise underlay-mtu to {} or more", MIN_POD_MTU + overhead)),
                );
            }
        }
        Some(m) if m.value + overhead > smallest.value => {
            diags.push(
                Diagnostic::error(
                    Code::MtuTooLarge,
                    format!(
                        "mtu {} plus {overhead} bytes of encapsulation exceeds the underlay MTU {}",
                        m.value, smallest.value
                    ),
                )
                .at(m.span, "too large")
                .also(smallest.span, "smallest underlay MTU")
                .help(format!(
                    "write {} or {}",
                    hint::setting(
                        kind,
                        "mtu",
                        Val::Int(&(smallest.value - overhead).to_string())
                    ),
                    hint::setting(kind, "mtu", Val::Str("auto"))
                )),
            );
        }
        Some(_) => {}
    }
}

/// Reports nodes with the same VTEP MAC: derived ones that collide
/// ([`Code::VtepMacCollision`]), and any duplicate involving a `vtep-mac`
/// ([`Code::DuplicateVtepMac`]). `mac` is the derivation (tests force a collision).
fn vtep_macs(c: &Cluster, diags: &mut Vec<Diagnostic>, mac: impl Fn(&str, &str) -> [u8; 6]) {
    let mut seen: HashMap<[u8; 6], &crate::model::Node> = HashMap::with_capacity(c.nodes.len());
    let effective = |n: &crate::model::Node| {
        n.vtep_mac
            .map_or_else(|| mac(&c.name.value, &n.name.value), |m| m.value.0)
    };
    // The place to point at: the `vtep-mac` value if set, else the node's name.
    let place = |n: &crate::model::Node| n.vtep_mac.map_or(n.name.span, |m| m.span);
    for n in &c.nodes {
        let m = effective(n);
        let Some(first) = seen.get(&m) else {
            seen.insert(m, n);
            continue;
        };
        let shown = crate::mac::format_mac(m);
        let d = if n.vtep_mac.is_none() && first.vtep_mac.is_none() {
            Diagnostic::error(
                Code::VtepMacCollision,
                format!(
                    "nodes `{}` and `{}` derive the same VTEP MAC {shown}",
                    first.name, n.name,
                ),
            )
            .at(n.name.span, "same MAC")
            .also(first.name.span, "as this node")
            .help("rename one of the nodes")
        } else {
            let how = |x: &crate::model::Node| {
                if x.vtep_mac.is_some() {
                    "set with `vtep-mac`"
                } else {
                    "derived"
                }
            };
            Diagnostic::error(
                Code::DuplicateVtepMac,
                format!(
                    "nodes `{}` and `{}` have the same VTEP MAC {shown}",
                    first.name, n.name,
                ),
            )
            .at(place(n), format!("{} here", how(n)))
            .also(place(first), format!("{} for `{}`", how(first), first.name))
            .help(
                "every node needs its own VTEP MAC (peers tell nodes apart by it): copy each \
                 node's `VtepMAC` from its own flannel annotation, or remove `vtep-mac` to derive one",
            )
        };
        diags.push(d);
    }
}

/// Whether two networks share any address.
pub fn overlaps(a: Ipv4Net, b: Ipv4Net) -> bool {
    a.contains(&b.network()) || b.contains(&a.network())
}

#[cfg(test)]
mod tests {
    use std::path::Path;

    use super::*;
    use crate::{MemLoader, UseLock, compile_text};

    #[test]
    fn colliding_vtep_macs_are_reported() {
        let text = "cluster c {\n    pod-cidr 10.244.0.0/16\n    backend vxlan\n}\nnode a { address 10.0.0.1/24; subnet 10.244.1.0/24 }\nnode b { address 10.0.0.2/24; subnet 10.244.2.0/24 }\n";
        let comp = compile_text(
            &MemLoader::default(),
            Path::new("c.podnet"),
            text.into(),
            UseLock::No,
        );
        assert!(comp.diagnostics.is_empty(), "{:?}", comp.diagnostics);
        let cluster = comp.cluster.as_ref().expect("lowered");
        let mut diags = Vec::new();
        vtep_macs(cluster, &mut diags, |_, _| [2, 0, 0, 0, 0, 1]);
        assert_eq!(diags.len(), 1);
        assert_eq!(diags[0].code, Code::VtepMacCollision);
        assert!(
            diags[0].message.contains("`a` and `b`"),
            "{}",
            diags[0].message
        );
        let mut none = Vec::new();
        vtep_macs(cluster, &mut none, crate::mac::vtep_mac);
        assert!(none.is_empty());
    }

    #[test]
    fn a_fixed_mac_equal_to_a_derived_one_is_a_duplicate() {
        let derived = crate::mac::format_mac(crate::mac::vtep_mac("c", "a"));
        let text = format!(
            "cluster c {{\n    pod-cidr 10.244.0.0/16\n    backend vxlan\n}}\nnode a {{ address 10.0.0.1/24; subnet 10.244.1.0/24 }}\nnode b {{ address 10.0.0.2/24; subnet 10.244.2.0/24; vtep-mac {derived} }}\n"
        );
        let comp = compile_text(
            &MemLoader::default(),
            Path::new("c.podnet"),
            text,
            UseLock::No,
        );
        let codes: Vec<Code> = comp.diagnostics.iter().map(|d| d.code).collect();
        assert_eq!(codes, [Code::DuplicateVtepMac]);
        let d = &comp.diagnostics[0];
        assert_eq!(
            d.primary.as_ref().map(|l| l.message.as_str()),
            Some("set with `vtep-mac` here")
        );
        assert_eq!(d.secondary[0].message, "derived for `a`");
    }
}
