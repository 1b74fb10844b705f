//! The human-readable rendering of a plan: a summary grouped by kind of object.

use std::fmt::Write as _;

use super::types::{FirewallDriver, LinkKind, NodePlan};

/// Renders `plan` as an indented summary, one section per kind of object.
pub fn render_text(plan: &NodePlan) -> String {
    let mut s = String::new();
    // Writing to a String cannot fail.
    let _ = write_text(&mut s, plan);
    s
}

fn write_text(s: &mut String, p: &NodePlan) -> std::fmt::Result {
    writeln!(
        s,
        "node {} (cluster {}), routes with protocol {}",
        p.node, p.cluster, p.route_protocol
    )?;
    section(s, "sysctls", p.sysctls.len())?;
    for x in &p.sysctls {
        writeln!(s, "  {} = {}", x.key, x.value)?;
    }
    section(s, "links", p.links.len())?;
    for l in &p.links {
        let kind = match l.kind {
            LinkKind::Bridge => "bridge",
            LinkKind::Vxlan => "vxlan",
        };
        write!(s, "  {} {kind} mtu {}", l.name, l.mtu)?;
        if let Some(m) = &l.mac {
            write!(s, " address {m}")?;
        }
        if let Some(v) = &l.vxlan {
            write!(
                s,
                " vni {} port {} local {} dev {} learning {}",
                v.vni,
                v.port,
                v.local,
                v.dev,
                if v.learning { "on" } else { "off" }
            )?;
        }
        writeln!(s, "{}", if l.up { " up" } else { " down" })?;
    }
    section(s, "addresses", p.addresses.len())?;
    for a in &p.addresses {
        writeln!(s, "  {} dev {}", a.address, a.dev)?;
    }
    section(s, "routes", p.routes.len())?;
    for r in &p.routes {
        let onlink = if r.onlink { " onlink" } else { "" };
        writeln!(s, "  {} via {} dev {}{onlink}", r.dst, r.via, r.dev)?;
    }
    section(s, "neighbours", p.neighbours.len())?;
    for n in &p.neighbours {
        writeln!(s, "  {} lladdr {} dev {} permanent", n.ip, n.mac, n.dev)?;
    }
    section(s, "fdb", p.fdb.len())?;
    for f in &p.fdb {
        writeln!(s, "  {} dev {} dst {} self permanent", f.mac, f.dev, f.dst)?;
    }
    let fw = &p.firewall;
    let driver = match fw.driver {
        FirewallDriver::Nftables => "nftables, table inet podnet",
        FirewallDriver::Iptables => "iptables, chains PODNET-POSTRTG and PODNET-FWD",
    };
    writeln!(s, "firewall ({driver}):")?;
    if fw.masquerade.is_empty() {
        writeln!(s, "  masquerade: none")?;
    }
    for m in &fw.masquerade {
        write!(s, "  masquerade from {}", m.source)?;
        if !m.not_destinations.is_empty() {
            let not: Vec<String> = m.not_destinations.iter().map(|d| d.to_string()).collect();
            write!(s, " except to {}", not.join(", "))?;
        }
        write!(s, ", unless out through {}", m.not_out_interface)?;
        if let Some(mark) = m.skip_mark {
            write!(s, " or marked {mark:#x} (kube-proxy's)")?;
        }
        writeln!(
            s,
            "{}",
            if m.random_fully {
                ", fully random ports"
            } else {
                ""
            }
        )?;
    }
    if fw.forward_accept.is_empty() {
        writeln!(s, "  forward accept: none")?;
    }
    for f in &fw.forward_accept {
        writeln!(s, "  forward accept from and to {f}")?;
    }
    section(s, "files", p.files.len())?;
    for f in &p.files {
        writeln!(
            s,
            "  {} (mode {:04o}, {} bytes)",
            f.path,
            f.mode,
            f.content.len()
        )?;
    }
    Ok(())
}

fn section(s: &mut String, name: &str, len: usize) -> std::fmt::Result {
    if len == 0 {
        writeln!(s, "{name}: none")
    } else {
        writeln!(s, "{name}:")
    }
}
