//! Rendering: one terraform-like `+ ~ -` line per operation, counts by sign, and the sign
//! alone (counting a large diff must not format it).

use std::fmt::{self, Write as _};
use std::net::Ipv4Addr;

use podnet_compiler::plan::{self, LinkKind};

use super::routes::RouteOp;
use super::{Diff, Op};
use crate::kernel::link::MARKER;
use crate::kernel::route::Target;

/// An optional address in text form (`none` when absent).
pub(crate) fn opt(a: Option<Ipv4Addr>) -> String {
    a.map_or_else(|| "none".to_string(), |a| a.to_string())
}

/// A MAC in text form.
pub fn mac(m: [u8; 6]) -> String {
    plan::Mac(m).to_string()
}

impl Diff {
    fn name(&self, index: u32) -> String {
        self.names
            .get(&index)
            .cloned()
            .unwrap_or_else(|| format!("if{index}"))
    }

    /// The terraform-like rendering: one `+ ~ -` line per operation.
    pub fn render(&self) -> String {
        let mut s = String::new();
        for op in &self.ops {
            // Writing to a String cannot fail.
            let _ = writeln!(s, "{}", self.line(op));
        }
        s
    }

    /// One operation as a line.
    pub fn line(&self, op: &Op) -> String {
        match op {
            Op::Sysctl { key, value, was } => format!(
                "~ sysctl {key} = {value} (was {})",
                was.as_deref().unwrap_or("unset")
            ),
            Op::LinkCreate { link, .. } => {
                let mut l = format!("+ link {} {}", link.name, kind(link.kind));
                let _ = write!(l, " mtu {}", link.mtu);
                if let Some(m) = link.mac {
                    let _ = write!(l, " address {m}");
                }
                if let Some(v) = &link.vxlan {
                    let _ = write!(
                        l,
                        " vni {} port {} local {} dev {}",
                        v.vni, v.port, v.local, v.dev
                    );
                }
                l
            }
            Op::LinkChange { name, change, .. } => {
                let mut parts = Vec::new();
                if let Some(m) = change.mtu {
                    parts.push(format!("mtu {m}"));
                }
                if let Some(m) = change.mac {
                    parts.push(format!("address {}", mac(m)));
                }
                if let Some(up) = change.up {
                    parts.push(if up { "up" } else { "down" }.to_string());
                }
                match change.alias.as_deref() {
                    // Given back (teardown after `--adopt`): the marker goes.
                    Some("") => parts.push(format!("alias `{MARKER}` removed")),
                    Some(a) => parts.push(format!("alias {a}")),
                    None => {}
                }
                format!("~ link {name} {}", parts.join(" "))
            }
            Op::LinkDelete { name, reason, .. } => {
                if reason == "stale" {
                    format!("- link {name}")
                } else {
                    format!("- link {name} (to be created again: {reason})")
                }
            }
            Op::AddrReplace(a) => format!("+ address {} dev {}", a.address, self.name(a.index)),
            Op::AddrDelete(a) => format!("- address {} dev {}", a.address, self.name(a.index)),
            Op::NeighReplace(n) => format!(
                "+ neighbour {} lladdr {} dev {}",
                n.ip,
                n.mac.map_or_else(|| "none".to_string(), mac),
                self.name(n.index)
            ),
            Op::NeighDelete(n) => format!("- neighbour {} dev {}", n.ip, self.name(n.index)),
            Op::FdbReplace(f) => format!(
                "+ fdb {} dst {} dev {}",
                mac(f.mac),
                opt(f.dst),
                self.name(f.index)
            ),
            Op::FdbDelete(f) => format!(
                "- fdb {} dst {} dev {}",
                mac(f.mac),
                opt(f.dst),
                self.name(f.index)
            ),
            Op::Route(RouteOp::NexthopAdd(n)) => format!(
                "+ nexthop id {} via {} dev {}{}",
                n.id,
                n.gateway,
                self.name(n.ifindex),
                if n.onlink { " onlink" } else { "" }
            ),
            Op::Route(RouteOp::NexthopDelete(id)) => format!("- nexthop id {id}"),
            Op::Route(RouteOp::RouteAdd(r)) => {
                format!("+ route {} {}", r.dst, self.target(&r.target))
            }
            Op::Route(RouteOp::RouteReplace { route: r, .. }) => {
                format!("~ route {} {}", r.dst, self.target(&r.target))
            }
            Op::Route(RouteOp::RouteDelete(r)) => {
                format!(
                    "- route {} {} proto {}",
                    r.dst,
                    self.target(&r.target),
                    r.protocol
                )
            }
            Op::FileWrite(f) => format!(
                "+ file {} (mode {:04o}, {} bytes)",
                f.path,
                f.mode,
                f.content.len()
            ),
            Op::FileRestore { path, state } => format!(
                "~ file {path} (restored as before podnet: mode {:04o}, {} bytes)",
                state.mode,
                state.content.len()
            ),
            Op::FileRemove(p) => format!("- file {p}"),
        }
    }

    fn target(&self, t: &Target) -> String {
        match t {
            Target::Nexthop(id) => format!("nhid {id}"),
            Target::Gateway {
                via,
                ifindex,
                onlink,
            } => format!(
                "via {via} dev {}{}",
                self.name(*ifindex),
                if *onlink { " onlink" } else { "" }
            ),
            Target::Other { kind, ifindex } => {
                let what = match kind {
                    6 => "blackhole".to_string(),
                    7 => "unreachable".to_string(),
                    8 => "prohibit".to_string(),
                    _ => "unicast".to_string(),
                };
                match ifindex {
                    Some(i) => format!("{what} dev {}", self.name(*i)),
                    None => what,
                }
            }
        }
    }

    /// Counts by sign: (added, changed, removed).
    pub fn counts(&self) -> (usize, usize, usize) {
        let mut c = (0, 0, 0);
        for op in &self.ops {
            match self.sign(op) {
                '+' => c.0 += 1,
                '~' => c.1 += 1,
                _ => c.2 += 1,
            }
        }
        c
    }

    /// The first character of [`Diff::line`] (`+` add, `~` change, `-` remove), without
    /// formatting the line: counting a 60,000-operation diff must not render it.
    pub fn sign(&self, op: &Op) -> char {
        match op {
            Op::LinkCreate { .. }
            | Op::AddrReplace(_)
            | Op::NeighReplace(_)
            | Op::FdbReplace(_)
            | Op::Route(RouteOp::NexthopAdd(_))
            | Op::FileWrite(_) => '+',
            Op::Sysctl { .. } | Op::LinkChange { .. } | Op::FileRestore { .. } => '~',
            Op::Route(RouteOp::RouteAdd(_)) => '+',
            Op::Route(RouteOp::RouteReplace { .. }) => '~',
            Op::LinkDelete { .. }
            | Op::AddrDelete(_)
            | Op::NeighDelete(_)
            | Op::FdbDelete(_)
            | Op::Route(RouteOp::RouteDelete(_) | RouteOp::NexthopDelete(_))
            | Op::FileRemove(_) => '-',
        }
    }
}

fn kind(k: LinkKind) -> &'static str {
    match k {
        LinkKind::Bridge => "bridge",
        LinkKind::Vxlan => "vxlan",
    }
}

impl fmt::Display for Diff {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.render())
    }
}
