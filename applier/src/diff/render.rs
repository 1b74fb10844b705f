//! Rendering: one terraform-like line per operation — `+` created, `~` changed (every
//! changed attribute as `old → new`, a file as a unified content diff), `-` removed —
//! counts by sign, and the sign alone (counting a large diff must not format it). Peer
//! objects name the node they belong to; nexthop ids show only in [`Detail::Verbose`].

use std::fmt::{self, Write as _};
use std::net::Ipv4Addr;

use podnet_compiler::plan::{self, LinkKind};

use super::routes::RouteOp;
use super::{Diff, FileState, Op};
use crate::kernel::route::{Route, Target};

/// Lines of context around each changed part of a file.
const FILE_CONTEXT: usize = 3;

/// An optional address in text form (`none` when absent).
pub(crate) fn opt(a: Option<Ipv4Addr>) -> String {
    a.map_or_else(|| "none".to_string(), |a| a.to_string())
}

/// A MAC in text form.
pub fn mac(m: [u8; 6]) -> String {
    plan::Mac(m).to_string()
}

/// How much a line says: nexthop ids only when verbose.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Detail {
    #[default]
    Normal,
    Verbose,
}

/// Counts by sign, with what goes with a deleted link counted as removed.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Counts {
    pub add: usize,
    pub change: usize,
    pub remove: usize,
}

impl Counts {
    pub fn total(self) -> usize {
        self.add + self.change + self.remove
    }

    /// Counts one more object of sign `sign`.
    pub fn count(&mut self, sign: char) {
        match sign {
            '+' => self.add += 1,
            '~' => self.change += 1,
            _ => self.remove += 1,
        }
    }
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
        self.render_as(Detail::Normal)
    }

    /// [`Diff::render`] with the given detail.
    pub fn render_as(&self, detail: Detail) -> String {
        let mut s = String::new();
        for op in &self.ops {
            // Writing to a String cannot fail.
            let _ = writeln!(s, "{}", self.line_as(op, detail));
        }
        s
    }

    /// One operation as a line (a file change adds its content diff on the lines below).
    pub fn line(&self, op: &Op) -> String {
        self.line_as(op, Detail::Normal)
    }

    /// ` (node N)` when the node an address identifies is known.
    fn node_of(&self, a: &Ipv4Addr) -> String {
        self.nodes
            .addr(a)
            .map_or_else(String::new, |n| format!(" (node {n})"))
    }

    fn node_of_dst(&self, dst: &ipnet::Ipv4Net) -> String {
        self.nodes
            .subnet(dst)
            .map_or_else(String::new, |n| format!(" (node {n})"))
    }

    /// [`Diff::line`] with the given detail.
    pub fn line_as(&self, op: &Op, detail: Detail) -> String {
        let verbose = detail == Detail::Verbose;
        match op {
            Op::Sysctl { key, value, was } => format!(
                "~ sysctl {key}: {} → {value}",
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
            Op::LinkChange {
                index,
                name,
                change,
            } => {
                let have = self.before.links.get(index);
                let mut parts = Vec::new();
                if let Some(m) = change.mtu {
                    parts.push(match have {
                        Some(h) => format!("mtu {} → {m}", h.mtu),
                        None => format!("mtu → {m}"),
                    });
                }
                if let Some(m) = change.mac {
                    let was = have.and_then(|h| h.mac).map_or_else(|| "none".into(), mac);
                    parts.push(format!("address {was} → {}", mac(m)));
                }
                if let Some(up) = change.up {
                    parts.push(if up { "down → up" } else { "up → down" }.to_string());
                }
                let was_alias = have
                    .and_then(|h| h.alias.clone())
                    .unwrap_or_else(|| "none".to_string());
                match change.alias.as_deref() {
                    // Given back (teardown after `--adopt`): the marker goes.
                    Some("") => parts.push(format!("alias {was_alias} → none")),
                    Some(a) => parts.push(format!("alias {was_alias} → {a}")),
                    None => {}
                }
                format!("~ link {name}: {}", parts.join(", "))
            }
            Op::LinkDelete {
                index,
                name,
                reason,
            } => {
                let mut l = format!("- link {name}");
                if let Some(k) = self.before.links.get(index).and_then(|h| h.kind.as_ref()) {
                    let _ = write!(l, " {}", k.as_str());
                }
                if reason != "stale" {
                    let _ = write!(l, " (to be created again: {reason})");
                }
                if let Some(on) = self.before.on_link.get(index)
                    && on.total() > 0
                {
                    let mut with = Vec::new();
                    for (n, one, many) in [
                        (on.addresses, "address", "addresses"),
                        (on.neighbours, "neighbour", "neighbours"),
                        (on.fdb, "fdb entry", "fdb entries"),
                    ] {
                        if n > 0 {
                            with.push(format!("{n} {}", if n == 1 { one } else { many }));
                        }
                    }
                    let _ = write!(l, " with its {}", with.join(", "));
                }
                l
            }
            Op::AddrReplace(a) => format!("+ address {} dev {}", a.address, self.name(a.index)),
            Op::AddrDelete(a) => format!("- address {} dev {}", a.address, self.name(a.index)),
            Op::NeighReplace(n) => format!(
                "+ neighbour {} lladdr {} dev {}{}",
                n.ip,
                n.mac.map_or_else(|| "none".to_string(), mac),
                self.name(n.index),
                self.node_of(&n.ip)
            ),
            Op::NeighDelete(n) => format!(
                "- neighbour {} lladdr {} dev {}{}",
                n.ip,
                n.mac.map_or_else(|| "none".to_string(), mac),
                self.name(n.index),
                self.node_of(&n.ip)
            ),
            Op::FdbReplace(f) => format!(
                "+ fdb {} dst {} dev {}{}",
                mac(f.mac),
                opt(f.dst),
                self.name(f.index),
                f.dst.map_or_else(String::new, |d| self.node_of(&d))
            ),
            Op::FdbDelete(f) => format!(
                "- fdb {} dst {} dev {}{}",
                mac(f.mac),
                opt(f.dst),
                self.name(f.index),
                f.dst.map_or_else(String::new, |d| self.node_of(&d))
            ),
            Op::Route(RouteOp::NexthopAdd(n)) => format!(
                "+ nexthop {}via {} dev {}{}{}",
                if verbose {
                    format!("id {} ", n.id)
                } else {
                    String::new()
                },
                n.gateway,
                self.name(n.ifindex),
                if n.onlink { " onlink" } else { "" },
                self.node_of(&n.gateway)
            ),
            Op::Route(RouteOp::NexthopDelete(id)) => match self.before.nexthops.get(id) {
                Some(n) => format!(
                    "- nexthop {}via {} dev {}{}{}",
                    if verbose {
                        format!("id {id} ")
                    } else {
                        String::new()
                    },
                    n.gateway,
                    self.name(n.ifindex),
                    if n.onlink { " onlink" } else { "" },
                    self.node_of(&n.gateway)
                ),
                None => format!("- nexthop id {id}"),
            },
            Op::Route(RouteOp::RouteAdd(r)) => format!(
                "+ route {} {}{}",
                r.dst,
                self.target(&r.target, detail),
                self.node_of_dst(&r.dst)
            ),
            Op::Route(RouteOp::RouteReplace { route: r, was }) => {
                let (old, new) = (self.target(was, detail), self.target(&r.target, detail));
                let change = if old == new {
                    // Same gateway and device, another nexthop object (or protocol).
                    format!("{new}, proto → {}", r.protocol)
                } else {
                    format!("{old} → {new}")
                };
                format!("~ route {}{}: {change}", r.dst, self.node_of_dst(&r.dst))
            }
            Op::Route(RouteOp::RouteDelete(r)) => self.route_delete(r, detail),
            Op::FileWrite(f) => match self.before.files.get(&f.path) {
                Some(Some(now)) => self.file_change(&f.path, "", now, f.mode, f.content.as_bytes()),
                _ => format!(
                    "+ file {} (mode {:04o}, {} bytes)",
                    f.path,
                    f.mode,
                    f.content.len()
                ),
            },
            Op::FileRestore { path, state } => match self.before.files.get(path) {
                Some(Some(now)) => self.file_change(
                    path,
                    " (restored as it was before podnet)",
                    now,
                    state.mode,
                    &state.content,
                ),
                _ => format!(
                    "+ file {path} (restored as it was before podnet: mode {:04o}, {} bytes)",
                    state.mode,
                    state.content.len()
                ),
            },
            Op::FileRemove(p) => match self.before.files.get(p) {
                Some(Some(now)) => format!("- file {p} ({} bytes)", now.content.len()),
                _ => format!("- file {p}"),
            },
        }
    }

    fn route_delete(&self, r: &Route, detail: Detail) -> String {
        format!(
            "- route {} {} proto {}{}",
            r.dst,
            self.target(&r.target, detail),
            r.protocol,
            self.node_of_dst(&r.dst)
        )
    }

    /// `~ file PATH` with `mode a → b` if it changes, then the unified diff of the content
    /// (indented), or a byte count for content that is not text.
    fn file_change(
        &self,
        path: &str,
        note: &str,
        now: &FileState,
        mode: u32,
        content: &[u8],
    ) -> String {
        let mut l = format!("~ file {path}{note}");
        if now.mode != mode {
            let _ = write!(l, ": mode {:04o} → {mode:04o}", now.mode);
        }
        if now.content == content {
            return l;
        }
        match (
            std::str::from_utf8(&now.content),
            std::str::from_utf8(content),
        ) {
            (Ok(old), Ok(new)) => {
                let diff = similar::TextDiff::from_lines(old, new);
                let unified = diff
                    .unified_diff()
                    .context_radius(FILE_CONTEXT)
                    .header("now", "planned")
                    .to_string();
                for line in unified.lines() {
                    let _ = write!(l, "\n    {line}");
                }
            }
            _ => {
                let _ = write!(
                    l,
                    " (content not text: {} → {} bytes)",
                    now.content.len(),
                    content.len()
                );
            }
        }
        l
    }

    /// A route's target: a nexthop object shows as its gateway and device (its id only
    /// when verbose).
    fn target(&self, t: &Target, detail: Detail) -> String {
        match t {
            Target::Nexthop(id) => match self.before.nexthops.get(id) {
                Some(n) => format!(
                    "via {} dev {}{}{}",
                    n.gateway,
                    self.name(n.ifindex),
                    if n.onlink { " onlink" } else { "" },
                    if detail == Detail::Verbose {
                        format!(" nhid {id}")
                    } else {
                        String::new()
                    }
                ),
                None => format!("nhid {id}"),
            },
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

    /// Counts by sign: (added, changed, removed); the addresses, neighbours and FDB entries
    /// the kernel removes with a deleted link count as removed, so an apply and the
    /// teardown after it count the same objects.
    pub fn counts(&self) -> (usize, usize, usize) {
        let c = self.tally();
        (c.add, c.change, c.remove)
    }

    /// [`Diff::counts`] as [`Counts`].
    pub fn tally(&self) -> Counts {
        let mut c = Counts::default();
        for op in &self.ops {
            c.count(self.sign(op));
            if let Op::LinkDelete { index, .. } = op
                && let Some(on) = self.before.on_link.get(index)
            {
                c.remove += on.total();
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
            | Op::Route(RouteOp::NexthopAdd(_)) => '+',
            Op::FileWrite(f) => match self.before.files.get(&f.path) {
                Some(Some(_)) => '~',
                _ => '+',
            },
            Op::FileRestore { path, .. } => match self.before.files.get(path) {
                Some(Some(_)) => '~',
                _ => '+',
            },
            Op::Sysctl { .. } | Op::LinkChange { .. } => '~',
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
