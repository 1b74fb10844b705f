//! Plan validation: the rules every [`NodePlan`] must satisfy before an applier acts on it,
//! the same for plans compiled from a cluster file and plans read from JSON, and the value
//! rules (link names, route protocols, CNI paths) that lowering applies to the cluster file
//! so that `podnet check` refuses what a plan would be refused for.

use std::collections::HashSet;

use ipnet::Ipv4Net;

use crate::check::{MAX_MTU, MIN_POD_MTU};
use crate::lower::WELL_KNOWN_PROTOCOLS;
use crate::plan::{FLANNEL_SUBNET_ENV, FORMAT_VERSION, IP_FORWARD, LinkKind, Mac, NodePlan};

/// Longest Linux interface name (`IFNAMSIZ` - 1).
pub const MAX_LINK_NAME: usize = 15;
/// Smallest route protocol podnet may own: 0-4 are the kernel's and `ip route`'s.
pub const MIN_ROUTE_PROTOCOL: u8 = 5;
/// Largest VXLAN network identifier (24 bits).
pub const MAX_VNI: u32 = 16_777_215;
/// The sysctls a plan may set, each with the values it may set.
pub const SYSCTLS: &[(&str, &[&str])] = &[(IP_FORWARD, &["1"])];
/// Directories a CNI config file must not be in (nor below): kernel interfaces and boot.
pub const FORBIDDEN_DIRS: &[&str] = &["/proc", "/sys", "/dev", "/boot"];
/// File suffixes of CNI config files (libcni loads `*.conflist`, `*.conf` and `*.json`;
/// podnet writes the first two).
pub const CNI_SUFFIXES: &[&str] = &[".conflist", ".conf"];
/// Permission bits a planned file must not have: setuid, setgid, sticky and world-write.
pub const FORBIDDEN_MODE_BITS: u32 = 0o7002;

/// What is wrong with a link name, if anything. Allowed: 1 to 15 bytes of ASCII letters,
/// digits, `_`, `.` and `-`, not starting with `-` or `.` (so never `.` or `..`): names the
/// kernel, nft and iptables all accept, and that need no quoting anywhere.
pub fn link_name_problem(name: &str) -> Option<&'static str> {
    if name.is_empty() {
        Some("is empty")
    } else if name.len() > MAX_LINK_NAME {
        Some("is longer than 15 bytes")
    } else if name.starts_with(['-', '.']) {
        Some("starts with `-` or `.`")
    } else if !name
        .bytes()
        .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'.' | b'-'))
    {
        Some("has a character other than A-Z, a-z, 0-9, `_`, `.` and `-`")
    } else {
        None
    }
}

/// Who owns route protocol `p` when podnet may not use it: the kernel and `ip route` (0-4),
/// or a routing daemon of iproute2's `rt_protos`. `None`: podnet may own it.
pub fn route_protocol_owner(p: u8) -> Option<&'static str> {
    if p < MIN_ROUTE_PROTOCOL {
        return Some("the kernel and `ip route` (0-4)");
    }
    WELL_KNOWN_PROTOCOLS
        .iter()
        .find(|(n, _)| *n == p)
        .map(|(_, owner)| *owner)
}

/// What is wrong with an absolute path, if anything: it must start with `/` and be
/// normalised (no `.`, `..` or empty components, no trailing `/` except for `/` itself, no
/// NUL byte).
pub fn path_problem(path: &str) -> Option<&'static str> {
    if path.contains('\0') {
        return Some("contains a NUL byte");
    }
    let Some(rest) = path.strip_prefix('/') else {
        return Some("is not absolute");
    };
    if rest.is_empty() {
        return None;
    }
    for c in rest.split('/') {
        match c {
            "" => return Some("has an empty component (`//` or a trailing `/`)"),
            "." | ".." => return Some("has a `.` or `..` component"),
            _ => {}
        }
    }
    None
}

/// What is wrong with a CNI config directory, if anything: absolute, normalised, and not
/// `/` nor [`FORBIDDEN_DIRS`] or below them.
pub fn cni_dir_problem(dir: &str) -> Option<&'static str> {
    if let Some(p) = path_problem(dir) {
        return Some(p);
    }
    if dir == "/" {
        return Some("is the root directory");
    }
    let forbidden = FORBIDDEN_DIRS.iter().any(|f| {
        dir.strip_prefix(f)
            .is_some_and(|rest| rest.is_empty() || rest.starts_with('/'))
    });
    forbidden.then_some("is in /proc, /sys, /dev or /boot")
}

/// What is wrong with a CNI config file name, if anything: `[A-Za-z0-9_.-]+` followed by
/// one of [`CNI_SUFFIXES`].
pub fn cni_file_problem(name: &str) -> Option<&'static str> {
    let Some(stem) = CNI_SUFFIXES.iter().find_map(|s| name.strip_suffix(s)) else {
        return Some("does not end in `.conflist` or `.conf`");
    };
    if stem.is_empty() {
        return Some("has nothing before the suffix");
    }
    if !stem
        .bytes()
        .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'.' | b'-'))
    {
        return Some("has a character other than A-Z, a-z, 0-9, `_`, `.` and `-`");
    }
    None
}

/// One problem of a plan. The message says what is wrong and what is allowed.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum PlanError {
    #[error(
        "plan format {found} is refused: this podnet applies format {FORMAT_VERSION} (make \
         the plan with the same podnet version)"
    )]
    FormatVersion { found: u32 },
    #[error(
        "route protocol {protocol} belongs to {owner}: podnet deletes every route of its own \
         protocol, so it must be 5-255 and not one of /etc/iproute2/rt_protos (e.g. 77)"
    )]
    RouteProtocol { protocol: u8, owner: &'static str },
    #[error(
        "{field} `{name}` {problem}: link names are 1-15 bytes of A-Z, a-z, 0-9, `_`, `.` \
         and `-`, not starting with `-` or `.`"
    )]
    LinkName {
        /// Where the name is used, e.g. `route dev`.
        field: &'static str,
        name: String,
        problem: &'static str,
    },
    #[error("link `{link}` has MTU {mtu}: allowed is {MIN_POD_MTU} to {MAX_MTU}")]
    Mtu { link: String, mtu: u32 },
    #[error("vxlan link `{link}` has VNI {vni}: allowed is 1 to {MAX_VNI}")]
    Vni { link: String, vni: u32 },
    #[error("vxlan link `{link}` has UDP port 0: allowed is 1 to 65535")]
    VxlanPort { link: String },
    #[error("the plan has {count} {kind} links: at most one bridge and one vxlan are allowed")]
    LinkCount { kind: &'static str, count: usize },
    #[error("link `{name}` is planned more than once: link names must be distinct")]
    DuplicateLink { name: String },
    #[error(
        "vxlan link `{link}` has no `vxlan` attributes: a vxlan link needs vni, port, local, \
         dev and learning"
    )]
    MissingVxlanAttrs { link: String },
    #[error("vxlan link `{link}` has no MAC: a vxlan link needs a unicast VTEP MAC")]
    MissingMac { link: String },
    #[error(
        "vxlan link `{link}` has MAC {mac}, which is multicast or all zero: a VTEP MAC must \
         be unicast"
    )]
    InvalidMac { link: String, mac: Mac },
    #[error(
        "masquerade rule for {from} has skip_mark 0: every packet matches an empty mark, so \
         nothing would be masqueraded (use a mark with at least one bit, e.g. 16384)"
    )]
    SkipMarkZero { from: Ipv4Net },
    #[error(
        "bridge `{link}` has vxlan attributes or a MAC: a bridge has neither (the kernel \
         chooses its MAC)"
    )]
    BridgeAttrs { link: String },
    #[error(
        "{what} is on `{dev}`, which the plan does not create: addresses, neighbours and FDB \
         entries go on the plan's own links only"
    )]
    ForeignDevice {
        /// The entry, e.g. `address 10.0.0.1/24`.
        what: String,
        dev: String,
    },
    #[error(
        "route to {dst} uses `{dev}`: a route's dev must be one of the plan's links or its \
         underlay interface `{underlay}`"
    )]
    RouteDevice {
        dst: Ipv4Net,
        dev: String,
        underlay: String,
    },
    #[error("route destination {dst} has host bits set: a destination is a network (here {})", dst.trunc())]
    RouteHostBits { dst: Ipv4Net },
    #[error("a route to 0.0.0.0/0 is refused: podnet routes node subnets, never the default route")]
    DefaultRoute,
    #[error("route {dst} via {via} is refused: {problem}")]
    RouteGateway {
        dst: Ipv4Net,
        via: std::net::Ipv4Addr,
        problem: &'static str,
    },
    #[error("route {dst} is refused: {problem}")]
    RouteReserved { dst: Ipv4Net, problem: &'static str },
    #[error("address {address} on {dev} is refused: {problem}")]
    AddressRange {
        address: Ipv4Net,
        dev: String,
        problem: &'static str,
    },
    #[error("sysctl `{key}` is not one podnet sets: allowed is net.ipv4.ip_forward")]
    SysctlKey { key: String },
    #[error(
        "sysctl `{key}` = `{value}` is refused: allowed values are {}",
        allowed_values(key)
    )]
    SysctlValue { key: String, value: String },
    #[error(
        "file path `{path}` {problem}: file paths are absolute and normalised (no `.`, `..` \
         or empty components, no NUL)"
    )]
    FilePath { path: String, problem: &'static str },
    #[error(
        "file `{path}` is not one podnet writes: allowed are {FLANNEL_SUBNET_ENV} and one CNI \
         config `NAME.conflist` or `NAME.conf` (NAME of A-Z, a-z, 0-9, `_`, `.`, `-`) in a \
         CNI directory"
    )]
    FileName { path: String },
    #[error(
        "CNI config `{path}` is in a directory that {problem}: a CNI directory is not `/` nor \
         /proc, /sys, /dev, /boot or below them"
    )]
    CniDir { path: String, problem: &'static str },
    #[error(
        "the plan has a second CNI config `{second}` besides `{first}`: at most one is allowed"
    )]
    TwoCniFiles { first: String, second: String },
    #[error("file `{path}` is planned more than once: file paths must be distinct")]
    DuplicateFile { path: String },
    #[error(
        "file `{path}` has mode {mode:#o}: allowed is at most 0o777 without the setuid, \
         setgid, sticky and world-write bits (e.g. 0o644)"
    )]
    FileMode { path: String, mode: u32 },
}

fn allowed_values(key: &str) -> String {
    SYSCTLS
        .iter()
        .find(|(k, _)| *k == key)
        .map(|(_, v)| v.join(", "))
        .unwrap_or_default()
}

/// Checks every rule on a plan and returns all problems at once. Run it on the plan as
/// compiled or read from JSON — **before** [`NodePlan::with_root`]: file paths are checked
/// as the absolute paths of the node (`/etc/cni/net.d/…`), and rebasing them under
/// `--root DIR` afterwards is the applier's job, as is writing them without following
/// symlinks out of the root. Every plan the planner makes passes.
pub fn validate_plan(plan: &NodePlan) -> Result<(), Vec<PlanError>> {
    let mut e = Vec::new();
    if plan.format_version != FORMAT_VERSION {
        e.push(PlanError::FormatVersion {
            found: plan.format_version,
        });
    }
    if let Some(owner) = route_protocol_owner(plan.route_protocol) {
        e.push(PlanError::RouteProtocol {
            protocol: plan.route_protocol,
            owner,
        });
    }
    link_name(&mut e, "underlay interface", &plan.underlay.interface);
    let own = links(plan, &mut e);
    entries(plan, &own, &mut e);
    routes(plan, &own, &mut e);
    for m in &plan.firewall.masquerade {
        link_name(&mut e, "masquerade not_out_interface", &m.not_out_interface);
        if m.skip_mark == Some(0) {
            e.push(PlanError::SkipMarkZero { from: m.source });
        }
    }
    sysctls(plan, &mut e);
    files(plan, &mut e);
    if e.is_empty() { Ok(()) } else { Err(e) }
}

fn link_name(e: &mut Vec<PlanError>, field: &'static str, name: &str) {
    if let Some(problem) = link_name_problem(name) {
        e.push(PlanError::LinkName {
            field,
            name: name.to_string(),
            problem,
        });
    }
}

/// Checks the links; returns the names of the links the plan creates.
fn links<'p>(plan: &'p NodePlan, e: &mut Vec<PlanError>) -> HashSet<&'p str> {
    let mut names = HashSet::new();
    for (kind, word) in [(LinkKind::Bridge, "bridge"), (LinkKind::Vxlan, "vxlan")] {
        let count = plan.links.iter().filter(|l| l.kind == kind).count();
        if count > 1 {
            e.push(PlanError::LinkCount { kind: word, count });
        }
    }
    for l in &plan.links {
        link_name(e, "link name", &l.name);
        if !names.insert(l.name.as_str()) {
            e.push(PlanError::DuplicateLink {
                name: l.name.clone(),
            });
        }
        if !(MIN_POD_MTU..=MAX_MTU).contains(&l.mtu) {
            e.push(PlanError::Mtu {
                link: l.name.clone(),
                mtu: l.mtu,
            });
        }
        match l.kind {
            LinkKind::Bridge => {
                if l.vxlan.is_some() || l.mac.is_some() {
                    e.push(PlanError::BridgeAttrs {
                        link: l.name.clone(),
                    });
                }
            }
            LinkKind::Vxlan => {
                match l.mac {
                    None => e.push(PlanError::MissingMac {
                        link: l.name.clone(),
                    }),
                    Some(mac) if mac.0[0] & 1 != 0 || mac.0 == [0; 6] => {
                        e.push(PlanError::InvalidMac {
                            link: l.name.clone(),
                            mac,
                        });
                    }
                    Some(_) => {}
                }
                let Some(vx) = &l.vxlan else {
                    e.push(PlanError::MissingVxlanAttrs {
                        link: l.name.clone(),
                    });
                    continue;
                };
                if !(1..=MAX_VNI).contains(&vx.vni) {
                    e.push(PlanError::Vni {
                        link: l.name.clone(),
                        vni: vx.vni,
                    });
                }
                if vx.port == 0 {
                    e.push(PlanError::VxlanPort {
                        link: l.name.clone(),
                    });
                }
                link_name(e, "vxlan dev", &vx.dev);
            }
        }
    }
    names
}

/// Addresses, neighbours and FDB entries: only on the plan's own links.
fn entries(plan: &NodePlan, own: &HashSet<&str>, e: &mut Vec<PlanError>) {
    let mut on_own = |field, dev: &String, what: &dyn Fn() -> String| {
        if link_name_problem(dev).is_some() {
            link_name(e, field, dev);
        } else if !own.contains(dev.as_str()) {
            e.push(PlanError::ForeignDevice {
                what: what(),
                dev: dev.clone(),
            });
        }
    };
    for a in &plan.addresses {
        on_own("address dev", &a.dev, &|| format!("address {}", a.address));
    }
    for n in &plan.neighbours {
        on_own("neighbour dev", &n.dev, &|| {
            format!("neighbour {} lladdr {}", n.ip, n.mac)
        });
    }
    for f in &plan.fdb {
        on_own("fdb dev", &f.dev, &|| {
            format!("FDB entry {} dst {}", f.mac, f.dst)
        });
    }
}

fn routes(plan: &NodePlan, own: &HashSet<&str>, e: &mut Vec<PlanError>) {
    // Addresses podnet puts on its links must be pod-network addresses, never the
    // underlay's (a second route to the segment would compete with the underlay's own).
    for a in &plan.addresses {
        let problem = reserved(a.address.trunc()).or_else(|| {
            let u = plan.underlay.address;
            (a.address.contains(&u.addr()) || u.contains(&a.address.addr()))
                .then_some("it overlaps the node's underlay segment")
        });
        if let Some(problem) = problem {
            e.push(PlanError::AddressRange {
                address: a.address,
                dev: a.dev.clone(),
                problem,
            });
        }
    }
    let underlay = plan.underlay.interface.as_str();
    for r in &plan.routes {
        if link_name_problem(&r.dev).is_some() {
            link_name(e, "route dev", &r.dev);
        } else if r.dev != underlay && !own.contains(r.dev.as_str()) {
            e.push(PlanError::RouteDevice {
                dst: r.dst,
                dev: r.dev.clone(),
                underlay: underlay.to_string(),
            });
        }
        if r.dst.prefix_len() == 0 {
            e.push(PlanError::DefaultRoute);
        } else if r.dst.trunc() != r.dst {
            e.push(PlanError::RouteHostBits { dst: r.dst });
        } else if let Some(problem) = reserved(r.dst) {
            e.push(PlanError::RouteReserved {
                dst: r.dst,
                problem,
            });
        } else if r.dst.contains(&plan.underlay.address.trunc())
            || plan.underlay.address.trunc().contains(&r.dst)
        {
            e.push(PlanError::RouteReserved {
                dst: r.dst,
                problem: "it overlaps the node's underlay segment",
            });
        }
        let via = r.via;
        let problem = if via.is_unspecified() || via.is_broadcast() {
            Some("the gateway must be a unicast address")
        } else if via.is_multicast() || via.is_loopback() || via.is_link_local() {
            Some("the gateway must be a unicast address outside 127/8, 169.254/16 and 224/4")
        } else if via == plan.underlay.address.addr() {
            Some("the gateway is this node's own address")
        } else if r.dev == underlay && !r.onlink && !plan.underlay.address.contains(&via) {
            Some("a gateway on the underlay must be on the node's segment (or the route onlink)")
        } else {
            None
        };
        if let Some(problem) = problem {
            e.push(PlanError::RouteGateway {
                dst: r.dst,
                via,
                problem,
            });
        }
    }
}

/// Why `net` cannot be a pod network destination or address, if it cannot.
fn reserved(net: Ipv4Net) -> Option<&'static str> {
    let a = net.network();
    if a.is_loopback() || a.octets()[0] == 0 {
        Some("0.0.0.0/8 and 127.0.0.0/8 are not pod networks")
    } else if a.is_multicast() || a.is_broadcast() || a.octets()[0] >= 240 {
        Some("multicast and reserved addresses are not pod networks")
    } else {
        None
    }
}

fn sysctls(plan: &NodePlan, e: &mut Vec<PlanError>) {
    for s in &plan.sysctls {
        match SYSCTLS.iter().find(|(k, _)| *k == s.key) {
            None => e.push(PlanError::SysctlKey { key: s.key.clone() }),
            Some((_, values)) if !values.contains(&s.value.as_str()) => {
                e.push(PlanError::SysctlValue {
                    key: s.key.clone(),
                    value: s.value.clone(),
                });
            }
            Some(_) => {}
        }
    }
}

fn files(plan: &NodePlan, e: &mut Vec<PlanError>) {
    let mut seen = HashSet::new();
    let mut cni: Option<&str> = None;
    for f in &plan.files {
        if f.mode > 0o777 || f.mode & FORBIDDEN_MODE_BITS != 0 {
            e.push(PlanError::FileMode {
                path: f.path.clone(),
                mode: f.mode,
            });
        }
        if let Some(problem) = path_problem(&f.path) {
            e.push(PlanError::FilePath {
                path: f.path.clone(),
                problem,
            });
            continue;
        }
        if !seen.insert(f.path.as_str()) {
            e.push(PlanError::DuplicateFile {
                path: f.path.clone(),
            });
            continue;
        }
        if f.path == FLANNEL_SUBNET_ENV {
            continue;
        }
        // Absolute and normalised, so there is a last `/`.
        let (dir, name) = f.path.rsplit_once('/').unwrap_or(("", &f.path));
        if cni_file_problem(name).is_some() {
            e.push(PlanError::FileName {
                path: f.path.clone(),
            });
            continue;
        }
        if let Some(problem) = cni_dir_problem(if dir.is_empty() { "/" } else { dir }) {
            e.push(PlanError::CniDir {
                path: f.path.clone(),
                problem,
            });
            continue;
        }
        match cni {
            None => cni = Some(&f.path),
            Some(first) => e.push(PlanError::TwoCniFiles {
                first: first.to_string(),
                second: f.path.clone(),
            }),
        }
    }
}

#[cfg(test)]
mod tests {
    use std::path::Path;

    use serde_json::{Value, json};

    use super::*;
    use crate::{MemLoader, UseLock, compile_text};

    /// A valid vxlan plan with every kind of entry (and the flannel file), as JSON.
    fn base() -> Value {
        let c = compile_text(
            &MemLoader::default(),
            Path::new("t.podnet"),
            "cluster c { pod-cidr 10.244.0.0/16; backend vxlan; flannel-compat on }
             node a { address 10.0.0.1/24; subnet 10.244.0.0/24 }
             node b { address 10.0.1.2/24; subnet 10.244.1.0/24 }"
                .to_string(),
            UseLock::No,
        );
        assert!(!c.has_errors(), "{:#?}", c.diagnostics);
        let p = crate::plan::plan(c.cluster.as_ref().expect("cluster"), "a").expect("plan");
        assert_eq!(validate_plan(&p), Ok(()));
        serde_json::to_value(&p).expect("json")
    }

    /// The errors of the plan `edit` makes of the base plan (through its JSON form).
    fn errors(edit: impl FnOnce(&mut Value)) -> Vec<PlanError> {
        let mut v = base();
        edit(&mut v);
        let plan: NodePlan = serde_json::from_value(v).expect("still a plan");
        validate_plan(&plan).expect_err("refused")
    }

    fn refused(edit: impl FnOnce(&mut Value), is: impl Fn(&PlanError) -> bool) {
        let e = errors(edit);
        assert!(e.iter().any(&is), "{e:#?}");
        for x in &e {
            let msg = x.to_string();
            assert!(msg.contains(':'), "says what is allowed: {msg}");
        }
    }

    #[test]
    fn each_rule_refuses_its_plan() {
        refused(
            |v| v["format_version"] = json!(1),
            |e| matches!(e, PlanError::FormatVersion { found: 1 }),
        );
        refused(
            |v| v["route_protocol"] = json!(2),
            |e| matches!(e, PlanError::RouteProtocol { protocol: 2, .. }),
        );
        refused(
            |v| v["route_protocol"] = json!(186),
            |e| matches!(e, PlanError::RouteProtocol { owner: "bgp", .. }),
        );
        for (bad, field) in [
            ("a\"b", "link name"),
            ("-x", "link name"),
            (".", "link name"),
            ("averyveryverylongname", "link name"),
            ("", "link name"),
        ] {
            refused(
                |v| v["links"][0]["name"] = json!(bad),
                |e| matches!(e, PlanError::LinkName { field: f, name, .. } if *f == field && name == bad),
            );
        }
        refused(
            |v| v["underlay"]["interface"] = json!("eth 0"),
            |e| {
                matches!(
                    e,
                    PlanError::LinkName {
                        field: "underlay interface",
                        ..
                    }
                )
            },
        );
        refused(
            |v| v["firewall"]["masquerade"][0]["not_out_interface"] = json!("cni0;drop"),
            |e| {
                matches!(
                    e,
                    PlanError::LinkName {
                        field: "masquerade not_out_interface",
                        ..
                    }
                )
            },
        );
        refused(
            |v| v["firewall"]["masquerade"][0]["skip_mark"] = json!(0),
            |e| matches!(e, PlanError::SkipMarkZero { .. }),
        );
        refused(
            |v| v["links"][1]["vxlan"]["dev"] = json!("../x"),
            |e| {
                matches!(
                    e,
                    PlanError::LinkName {
                        field: "vxlan dev",
                        ..
                    }
                )
            },
        );
        refused(
            |v| v["routes"][0]["dev"] = json!("a/b"),
            |e| {
                matches!(
                    e,
                    PlanError::LinkName {
                        field: "route dev",
                        ..
                    }
                )
            },
        );
        refused(
            |v| v["links"][0]["mtu"] = json!(67),
            |e| matches!(e, PlanError::Mtu { mtu: 67, .. }),
        );
        refused(
            |v| v["links"][0]["mtu"] = json!(65536),
            |e| matches!(e, PlanError::Mtu { mtu: 65536, .. }),
        );
        refused(
            |v| v["links"][1]["vxlan"]["vni"] = json!(0),
            |e| matches!(e, PlanError::Vni { vni: 0, .. }),
        );
        refused(
            |v| v["links"][1]["vxlan"]["vni"] = json!(16_777_216),
            |e| matches!(e, PlanError::Vni { .. }),
        );
        refused(
            |v| v["links"][1]["vxlan"]["port"] = json!(0),
            |e| matches!(e, PlanError::VxlanPort { .. }),
        );
        refused(
            |v| {
                let l = v["links"][0].clone();
                v["links"].as_array_mut().expect("links").push(l);
            },
            |e| {
                matches!(
                    e,
                    PlanError::LinkCount {
                        kind: "bridge",
                        count: 2
                    }
                )
            },
        );
        refused(
            |v| v["links"][1]["name"] = v["links"][0]["name"].clone(),
            |e| matches!(e, PlanError::DuplicateLink { .. }),
        );
        refused(
            |v| {
                v["links"][1].as_object_mut().expect("link").remove("vxlan");
            },
            |e| matches!(e, PlanError::MissingVxlanAttrs { .. }),
        );
        refused(
            |v| {
                v["links"][1].as_object_mut().expect("link").remove("mac");
            },
            |e| matches!(e, PlanError::MissingMac { .. }),
        );
        refused(
            |v| v["links"][1]["mac"] = json!("03:00:00:00:00:01"),
            |e| matches!(e, PlanError::InvalidMac { .. }),
        );
        refused(
            |v| v["links"][1]["mac"] = json!("00:00:00:00:00:00"),
            |e| matches!(e, PlanError::InvalidMac { .. }),
        );
        refused(
            |v| v["links"][0]["mac"] = json!("02:00:00:00:00:01"),
            |e| matches!(e, PlanError::BridgeAttrs { .. }),
        );
        for list in ["addresses", "neighbours", "fdb"] {
            refused(
                |v| v[list][0]["dev"] = json!("eth0"),
                |e| matches!(e, PlanError::ForeignDevice { dev, .. } if dev == "eth0"),
            );
        }
        refused(
            |v| v["routes"][0]["dev"] = json!("docker0"),
            |e| matches!(e, PlanError::RouteDevice { dev, .. } if dev == "docker0"),
        );
        refused(
            |v| v["routes"][0]["dst"] = json!("10.244.1.1/24"),
            |e| matches!(e, PlanError::RouteHostBits { .. }),
        );
        refused(
            |v| v["routes"][0]["dst"] = json!("0.0.0.0/0"),
            |e| matches!(e, PlanError::DefaultRoute),
        );
        refused(
            |v| v["sysctls"][0]["key"] = json!("kernel.modprobe"),
            |e| matches!(e, PlanError::SysctlKey { .. }),
        );
        refused(
            |v| v["sysctls"][0]["value"] = json!("0"),
            |e| matches!(e, PlanError::SysctlValue { .. }),
        );
        for bad in [
            "etc/cni/net.d/10-podnet.conflist",
            "/etc/cni/../../root/.ssh/authorized_keys",
            "/etc/cni//x.conflist",
            "/etc/cni/./x.conflist",
            "/etc/cni/x.conflist\0",
        ] {
            refused(
                |v| v["files"][0]["path"] = json!(bad),
                |e| matches!(e, PlanError::FilePath { path, .. } if path == bad),
            );
        }
        for bad in [
            "/etc/cni/net.d/x.sh",
            "/etc/passwd",
            "/etc/cni/net.d/a b.conflist",
        ] {
            refused(
                |v| v["files"][0]["path"] = json!(bad),
                |e| matches!(e, PlanError::FileName { path, .. } if path == bad),
            );
        }
        for bad in [
            "/x.conflist",
            "/proc/x.conflist",
            "/sys/fs/x.conf",
            "/dev/shm/x.conflist",
            "/boot/x.conf",
        ] {
            refused(
                |v| v["files"][0]["path"] = json!(bad),
                |e| matches!(e, PlanError::CniDir { path, .. } if path == bad),
            );
        }
        refused(
            |v| v["files"][1]["path"] = json!("/etc/cni/net.d/99-other.conf"),
            |e| matches!(e, PlanError::TwoCniFiles { .. }),
        );
        refused(
            |v| v["files"][1]["path"] = v["files"][0]["path"].clone(),
            |e| matches!(e, PlanError::DuplicateFile { .. }),
        );
        for mode in [0o4755, 0o2755, 0o1777, 0o666, 0o10644] {
            refused(
                |v| v["files"][0]["mode"] = json!(mode),
                |e| matches!(e, PlanError::FileMode { mode: m, .. } if *m == mode),
            );
        }
    }

    #[test]
    fn all_problems_are_reported_at_once() {
        let e = errors(|v| {
            v["format_version"] = json!(9);
            v["links"][0]["mtu"] = json!(1);
            v["files"][0]["mode"] = json!(0o777);
        });
        assert_eq!(e.len(), 3, "{e:#?}");
    }

    #[test]
    fn value_rules() {
        for ok in ["eth0", "flannel.1", "br-lan", "cni_0", "A9"] {
            assert_eq!(link_name_problem(ok), None, "{ok}");
        }
        for ok in ["/etc/cni/net.d", "/opt/cni", "/devices", "/var/lib/proc"] {
            assert_eq!(cni_dir_problem(ok), None, "{ok}");
        }
        for bad in ["../../..", "/", "/proc", "/sys/x", "/etc/../x", "/etc/", ""] {
            assert!(cni_dir_problem(bad).is_some(), "{bad}");
        }
        for ok in ["10-podnet.conflist", "x.conf", "a.b.conflist"] {
            assert_eq!(cni_file_problem(ok), None, "{ok}");
        }
        for bad in [".conflist", "x.json", "../x.conflist", "x y.conf", "x"] {
            assert!(cni_file_problem(bad).is_some(), "{bad}");
        }
        assert_eq!(route_protocol_owner(77), None);
        assert!(route_protocol_owner(4).is_some() && route_protocol_owner(16).is_some());
    }
}
