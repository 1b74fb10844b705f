//! The builder: turns a [`LabPlan`] into namespaces, switches, veths, addresses and routes.
//! Namespaces are made in-process ([`super::netns`]); links, addresses and routes go
//! through one `ip -n NS -batch -` per namespace (a process per namespace, not per object),
//! node namespaces in parallel. Everything made is inside the lab's own namespaces: veths
//! are created inside a switch namespace with their peer placed directly in the node's.

use std::io::Write as _;
use std::process::{Command, Stdio};

use super::topology::{
    LabPlan, OUTSIDE_IFACE, ROUTER_OUTSIDE_PORT, SWITCH_BRIDGE, SWITCH_ROUTER_PORT,
};
use super::{LabError, parallel};

/// sysctls of infrastructure namespaces (switches, router, outside): no IPv6 chatter, no
/// reverse-path filter (the router knows no pod routes), forwarding on the router.
const INFRA: &[(&str, &str)] = &[
    ("net/ipv6/conf/all/disable_ipv6", "1"),
    ("net/ipv6/conf/default/disable_ipv6", "1"),
    ("net/ipv4/conf/all/rp_filter", "0"),
    ("net/ipv4/conf/default/rp_filter", "0"),
];
const ROUTER: &[(&str, &str)] = &[("net/ipv4/ip_forward", "1")];
/// Nodes use loose reverse-path filtering (what systemd and most distributions ship), set
/// here so the lab's result does not depend on this host's defaults.
const NODE: &[(&str, &str)] = &[
    ("net/ipv4/conf/all/rp_filter", "2"),
    ("net/ipv4/conf/default/rp_filter", "2"),
];

/// How many `ip` processes or namespace creations run at once.
pub const PARALLEL: usize = 8;

/// Creates every namespace of the plan (router, outside, switches, nodes, pods). Calls
/// `made` with each name once it exists, so a guard can remove exactly what was made.
pub fn namespaces(
    plan: &LabPlan,
    made: &(dyn Fn(&str) + Sync),
    progress: &(dyn Fn(usize, usize) + Sync),
) -> Result<(), LabError> {
    super::netns::prepare_dir().map_err(|e| LabError::io("preparing /run/netns", e))?;
    let mut jobs: Vec<(String, Vec<(&str, &str)>)> = Vec::new();
    let infra_router: Vec<_> = INFRA.iter().chain(ROUTER).copied().collect();
    jobs.push((plan.router.clone(), infra_router));
    jobs.push((plan.outside.ns.clone(), INFRA.to_vec()));
    for s in &plan.switches {
        jobs.push((s.ns.clone(), INFRA.to_vec()));
    }
    for n in &plan.nodes {
        jobs.push((n.ns.clone(), NODE.to_vec()));
        for p in &n.pods {
            jobs.push((p.clone(), Vec::new()));
        }
    }
    let total = jobs.len();
    let done = std::sync::atomic::AtomicUsize::new(0);
    parallel(&jobs, PARALLEL, |(name, sysctls)| {
        super::check_interrupt()?;
        super::netns::create(name, sysctls)
            .map_err(|e| LabError::io(format!("creating namespace {name}"), e))?;
        made(name);
        let d = done.fetch_add(1, std::sync::atomic::Ordering::Relaxed) + 1;
        progress(d, total);
        Ok(())
    })
}

/// Wires the namespaces: switches with their bridge and ports, the router with one port
/// per segment and one to the outside host, each node's underlay interface with its
/// address and default route.
pub fn links(plan: &LabPlan) -> Result<(), LabError> {
    // Switches: the bridge, a veth per node (peer = the node's underlay interface, placed
    // straight into the node's namespace) and one to the router.
    parallel(&plan.switches, PARALLEL, |s| {
        let k = plan.switches.iter().position(|x| x.ns == s.ns).unwrap_or(0);
        let mut b = Batch::default();
        b.line(format!("link add {SWITCH_BRIDGE} type bridge"));
        b.line(format!("link set {SWITCH_BRIDGE} mtu {} up", s.mtu));
        for n in plan.nodes.iter().filter(|n| n.segment == k) {
            b.line(format!(
                "link add {} mtu {} type veth peer name {} mtu {} address {} netns {}",
                n.port, n.mtu, n.iface, n.mtu, n.mac, n.ns
            ));
            b.line(format!("link set {} master {SWITCH_BRIDGE} up", n.port));
        }
        b.line(format!(
            "link add {SWITCH_ROUTER_PORT} mtu {} type veth peer name {} mtu {} address {} netns {}",
            s.mtu, s.router_port, s.mtu, s.router_mac, plan.router
        ));
        b.line(format!(
            "link set {SWITCH_ROUTER_PORT} master {SWITCH_BRIDGE} up"
        ));
        b.run(&s.ns)
    })?;
    super::check_interrupt()?;
    let o = &plan.outside;
    let mut r = Batch::default();
    r.line("link set lo up".to_string());
    for (k, s) in plan.switches.iter().enumerate() {
        r.line(format!("addr add {} dev {}", s.gateway, s.router_port));
        r.line(format!("link set {} up", s.router_port));
        for n in plan.nodes.iter().filter(|n| n.segment == k) {
            r.line(format!(
                "neigh replace {} lladdr {} dev {} nud permanent",
                n.address.addr(),
                n.mac,
                s.router_port
            ));
        }
    }
    r.line(format!(
        "link add {ROUTER_OUTSIDE_PORT} mtu {} type veth peer name {OUTSIDE_IFACE} mtu {} netns {}",
        o.mtu, o.mtu, o.ns
    ));
    r.line(format!("addr add {} dev {ROUTER_OUTSIDE_PORT}", o.router));
    r.line(format!("link set {ROUTER_OUTSIDE_PORT} up"));
    for (_, addr) in &o.except {
        r.line(format!("route add {addr}/32 via {}", o.address.addr()));
    }
    r.run(&plan.router)?;
    let mut x = Batch::default();
    x.line("link set lo up".to_string());
    x.line(format!("addr add {} dev {OUTSIDE_IFACE}", o.address));
    for (_, addr) in &o.except {
        x.line(format!("addr add {addr}/32 dev {OUTSIDE_IFACE}"));
    }
    x.line(format!("link set {OUTSIDE_IFACE} up"));
    x.line(format!("route add default via {}", o.router.addr()));
    x.run(&o.ns)?;
    parallel(&plan.nodes, PARALLEL, |n| {
        super::check_interrupt()?;
        let gw = plan.switches.get(n.segment).map(|s| s.gateway.addr());
        let mut b = Batch::default();
        b.line("link set lo up".to_string());
        b.line(format!("addr add {} dev {}", n.address, n.iface));
        b.line(format!("link set {} up", n.iface));
        if let Some(gw) = gw {
            b.line(format!("route add default via {gw} dev {}", n.iface));
        }
        // Permanent neighbours for the segment's machines (see
        // `topology::neighbour_entries`).
        if let Some(s) = plan.switches.get(n.segment) {
            b.line(format!(
                "neigh replace {} lladdr {} dev {} nud permanent",
                s.gateway.addr(),
                s.router_mac,
                n.iface
            ));
        }
        for peer in plan
            .nodes
            .iter()
            .filter(|p| p.segment == n.segment && p.ns != n.ns)
        {
            b.line(format!(
                "neigh replace {} lladdr {} dev {} nud permanent",
                peer.address.addr(),
                peer.mac,
                n.iface
            ));
        }
        b.run(&n.ns)
    })
}

/// Lines for one `ip -batch` run.
#[derive(Default)]
struct Batch {
    text: String,
}

impl Batch {
    fn line(&mut self, l: String) {
        self.text.push_str(&l);
        self.text.push('\n');
    }

    /// `ip -n NS -batch -` with the lines on standard input.
    fn run(&self, ns: &str) -> Result<(), LabError> {
        ip_batch(ns, &self.text)
    }
}

/// Runs `ip -n NS -batch -` with `text` on standard input; a failure carries ip's message.
pub fn ip_batch(ns: &str, text: &str) -> Result<(), LabError> {
    let what = format!("ip -n {ns} -batch -");
    let mut child = Command::new("ip")
        .args(["-n", ns, "-batch", "-"])
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|e| {
            if e.kind() == std::io::ErrorKind::NotFound {
                LabError::MissingTool {
                    tool: "ip".into(),
                    package: "iproute2".into(),
                }
            } else {
                LabError::io(what.clone(), e)
            }
        })?;
    if let Some(mut stdin) = child.stdin.take() {
        stdin
            .write_all(text.as_bytes())
            .map_err(|e| LabError::io(what.clone(), e))?;
    }
    let out = child
        .wait_with_output()
        .map_err(|e| LabError::io(what.clone(), e))?;
    if !out.status.success() {
        return Err(LabError::Command {
            what,
            message: String::from_utf8_lossy(&out.stderr).trim().to_string(),
        });
    }
    Ok(())
}
