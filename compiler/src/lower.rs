//! Lowering: the generic syntax tree (from either surface form) into the typed model.
//! Reports unknown keys (with the closest known key), duplicates, wrong arity and malformed
//! values; a cluster with any invalid setting lowers to `None` so later checks do not cascade.

use std::collections::HashMap;
use std::net::Ipv4Addr;
use std::str::FromStr;

use ipnet::Ipv4Net;

use crate::check::{MAX_MTU, MIN_POD_MTU};
use crate::diag::{Code, Diagnostic};
use crate::model::{
    Backend, Cluster, Cni, FirewallKind, Masquerade, MasqueradeMode, Node, Spanned, Vxlan,
};
use crate::plan::Mac;
use crate::span::Span;
use crate::syntax::{Arg, Item, Statement, statements};
use crate::validate::{
    MAX_LINK_NAME, MIN_ROUTE_PROTOCOL, cni_dir_problem, cni_file_problem, link_name_problem,
    route_protocol_owner,
};

/// Keys of the `cluster` block. The JSON Schema in `schemas/` is tested against these tables.
pub const CLUSTER_KEYS: &[&str] = &[
    "pod-cidr",
    "subnet-len",
    "service-cidr",
    "interface",
    "underlay-mtu",
    "mtu",
    "backend",
    "masquerade",
    "firewall",
    "forward-accept",
    "route-protocol",
    "flannel-compat",
    "cni",
];
pub const NODE_KEYS: &[&str] = &["address", "interface", "subnet", "underlay-mtu", "vtep-mac"];
pub const VXLAN_KEYS: &[&str] = &["vni", "port", "device", "direct-routing"];
pub const MASQUERADE_KEYS: &[&str] = &["except", "random-fully"];
pub const CNI_KEYS: &[&str] = &[
    "name",
    "bridge",
    "hairpin",
    "portmap",
    "bandwidth",
    "dir",
    "file",
];
pub const TOP_KEYS: &[&str] = &["cluster", "node", "include"];

pub const BACKENDS: &[&str] = &["host-gw", "vxlan"];
pub const MASQUERADE_MODES: &[&str] = &["off", "all", "outbound"];
pub const FIREWALLS: &[&str] = &["nftables", "iptables"];

/// Route protocol numbers that routing daemons and DHCP clients use (iproute2's
/// `rt_protos`): podnet refuses them, since it owns every route of its protocol.
pub const WELL_KNOWN_PROTOCOLS: &[(u8, &str)] = &[
    (8, "gated"),
    (9, "ra"),
    (10, "mrt"),
    (11, "zebra"),
    (12, "bird"),
    (13, "dnrouted"),
    (14, "xorp"),
    (15, "ntk"),
    (16, "dhcp"),
    (17, "mrouted"),
    (18, "keepalived"),
    (42, "babel"),
    (99, "openr"),
    (186, "bgp"),
    (187, "isis"),
    (188, "ospf"),
    (189, "rip"),
    (192, "eigrp"),
];

/// Default values (DESIGN.md): kept here so fmt, the schema and docs agree.
pub mod defaults {
    pub const SUBNET_LEN: u8 = 24;
    pub const INTERFACE: &str = "eth0";
    pub const UNDERLAY_MTU: u32 = 1500;
    pub const VNI: u32 = 1;
    pub const PORT: u16 = 8472;
    pub const ROUTE_PROTOCOL: u8 = 77;
    pub const CNI_NAME: &str = "podnet";
    pub const CNI_BRIDGE: &str = "cni0";
    pub const CNI_DIR: &str = "/etc/cni/net.d";
    pub const CNI_FILE: &str = "10-podnet.conflist";
}

/// Which block a key list belongs to, for "did you mean" and "belongs in" hints.
const BLOCKS: &[(&str, &[&str])] = &[
    ("top level", TOP_KEYS),
    ("cluster", CLUSTER_KEYS),
    ("node", NODE_KEYS),
    ("backend vxlan", VXLAN_KEYS),
    ("masquerade", MASQUERADE_KEYS),
    ("cni", CNI_KEYS),
];

/// The closest of `known` to `word`, if it is close enough to be a likely typo.
pub fn closest<'a>(word: &str, known: impl IntoIterator<Item = &'a str>) -> Option<&'a str> {
    known
        .into_iter()
        .map(|k| (strsim::damerau_levenshtein(word, k), k))
        .filter(|&(d, k)| d <= 2.max(k.len() / 3) && d < k.len().max(word.len()))
        .min_by_key(|&(d, _)| d)
        .map(|(_, k)| k)
}

/// Lowering context: collects diagnostics.
pub struct Lower<'d> {
    pub diags: &'d mut Vec<Diagnostic>,
}

/// Statements of one block by key, after unknown and duplicate keys were reported.
struct Keys<'a> {
    map: HashMap<&'static str, &'a Statement>,
}

impl<'a> Keys<'a> {
    fn get(&self, key: &str) -> Option<&'a Statement> {
        self.map.get(key).copied()
    }
}

impl Lower<'_> {
    fn push(&mut self, d: Diagnostic) {
        self.diags.push(d);
    }

    fn keys<'a>(
        &mut self,
        stmts: impl Iterator<Item = &'a Statement>,
        known: &'static [&'static str],
        block: &str,
    ) -> Keys<'a> {
        let mut map: HashMap<&'static str, &'a Statement> = HashMap::new();
        for s in stmts {
            let Some(&key) = known.iter().find(|k| **k == s.keyword) else {
                self.unknown_key(s, known, block);
                continue;
            };
            if let Some(first) = map.get(key) {
                self.push(
                    Diagnostic::error(Code::DuplicateKey, format!("`{key}` is given twice"))
                        .at(s.keyword_span, "given again here")
                        .also(first.keyword_span, "first given here")
                        .help(format!("keep one `{key}` in this {block} block")),
                );
                continue;
            }
            map.insert(key, s);
        }
        Keys { map }
    }

    fn unknown_key(&mut self, s: &Statement, known: &[&str], block: &str) {
        let mut d = Diagnostic::error(
            Code::UnknownKey,
            format!("unknown key `{}` in {block}", s.keyword),
        );
        let help = if let Some(k) = closest(&s.keyword, known.iter().copied()) {
            d = d.at(s.keyword_span, format!("did you mean `{k}`?"));
            format!("write `{k}`")
        } else if let Some((other, _)) = BLOCKS
            .iter()
            .find(|(name, keys)| *name != block && keys.contains(&s.keyword.as_str()))
        {
            d = d.at(s.keyword_span, "not known here");
            format!("`{}` belongs in a {other} block", s.keyword)
        } else {
            d = d.at(s.keyword_span, "not known here");
            format!("known keys here: {}", known.join(", "))
        };
        self.push(d.help(help));
    }

    /// Exactly `n` arguments and no block; reports and returns `None` otherwise.
    fn args<'a>(&mut self, s: &'a Statement, n: usize, what: &str) -> Option<&'a [Arg]> {
        if let Some(b) = &s.block {
            self.push(
                Diagnostic::error(Code::Arity, format!("`{}` takes no block", s.keyword))
                    .at(b.open, "unexpected block")
                    .help(format!("write `{} {what}`", s.keyword)),
            );
            return None;
        }
        if s.args.len() != n {
            let at = if s.args.len() > n {
                s.args[n].span.to(s.args[s.args.len() - 1].span)
            } else {
                s.keyword_span
            };
            let label = if s.args.len() > n {
                "extra arguments"
            } else {
                "missing value"
            };
            self.push(
                Diagnostic::error(
                    Code::Arity,
                    format!(
                        "`{}` takes {n} argument{}, found {}",
                        s.keyword,
                        if n == 1 { "" } else { "s" },
                        s.args.len()
                    ),
                )
                .at(at, label)
                .help(format!("write `{} {what}`", s.keyword)),
            );
            return None;
        }
        Some(&s.args)
    }

    fn one<'a>(&mut self, s: &'a Statement, what: &str) -> Option<&'a Arg> {
        self.args(s, 1, what).map(|a| &a[0])
    }

    /// A network CIDR (`10.244.0.0/16`): host bits must be zero.
    pub fn network(&mut self, a: &Arg) -> Option<Ipv4Net> {
        let net = self.cidr(a)?;
        if net.trunc() != net {
            self.push(
                Diagnostic::error(Code::HostBits, format!("`{}` has host bits set", a.text))
                    .at(a.span, format!("the network is {}", net.trunc()))
                    .help(format!("write `{}`", net.trunc())),
            );
            return None;
        }
        Some(net)
    }

    /// An address with a prefix length (`10.4.7.21/24`); host bits allowed.
    pub fn cidr(&mut self, a: &Arg) -> Option<Ipv4Net> {
        let Some((addr, prefix)) = a.text.split_once('/') else {
            let (label, help) = if parse_addr(&a.text).is_some() {
                (
                    "no prefix length",
                    format!("add the prefix length, e.g. `{}/24`", a.text),
                )
            } else {
                (
                    "not a CIDR",
                    "write an IPv4 address and prefix length, e.g. `10.244.0.0/16`".to_string(),
                )
            };
            if a.text.contains(':') {
                return self.ipv6(a);
            }
            self.push(
                Diagnostic::error(Code::InvalidCidr, format!("invalid CIDR `{}`", a.text))
                    .at(a.span, label)
                    .help(help),
            );
            return None;
        };
        let Some(ip) = parse_addr(addr) else {
            if addr.contains(':') {
                return self.ipv6(a);
            }
            let span = sub_span(a, 0, addr.len());
            self.push(
                Diagnostic::error(Code::InvalidCidr, format!("invalid address `{addr}`"))
                    .at(span, "not an IPv4 address")
                    .help("write four numbers 0-255 separated by dots, e.g. `10.4.7.21`"),
            );
            return None;
        };
        let span = sub_span(a, addr.len() + 1, a.text.len());
        match prefix.parse::<u8>() {
            Ok(p) if p <= 32 && !prefix.starts_with('+') => Ipv4Net::new(ip, p).ok(),
            _ => {
                self.push(
                    Diagnostic::error(
                        Code::InvalidCidr,
                        format!("invalid prefix length `/{prefix}` in `{}`", a.text),
                    )
                    .at(span, "must be 0 to 32")
                    .help("an IPv4 prefix length is a number from 0 to 32, e.g. `/24`"),
                );
                None
            }
        }
    }

    fn ipv6(&mut self, a: &Arg) -> Option<Ipv4Net> {
        self.push(
            Diagnostic::error(Code::Ipv6Unsupported, format!("`{}` is IPv6", a.text))
                .at(a.span, "IPv6 is not supported here")
                .help("podnet builds IPv4 pod networks; use IPv4 addresses and CIDRs"),
        );
        None
    }

    fn int<T: TryFrom<u64>>(
        &mut self,
        a: &Arg,
        min: u64,
        max: u64,
        code: Code,
        what: &str,
    ) -> Option<T> {
        let Ok(v) = a.text.parse::<u64>() else {
            self.push(
                Diagnostic::error(Code::InvalidValue, format!("`{}` is not a number", a.text))
                    .at(a.span, format!("expected a {}", what.to_lowercase()))
                    .help(format!("write a whole number from {min} to {max}")),
            );
            return None;
        };
        if v < min || v > max {
            self.push(
                Diagnostic::error(code, format!("{what} {v} is out of range"))
                    .at(a.span, format!("must be {min} to {max}"))
                    .help(if code == Code::RouteProtocolReserved {
                        format!("protocols 0-4 belong to the kernel and `ip route` (podnet deletes routes of its own protocol); use {min} to {max}, e.g. 77")
                    } else {
                        format!("write a {what} from {min} to {max}")
                    }),
            );
            return None;
        }
        T::try_from(v).ok()
    }

    fn switch(&mut self, s: &Statement) -> Option<bool> {
        let a = self.one(s, "on|off")?;
        match a.text.as_str() {
            "on" => Some(true),
            "off" => Some(false),
            _ => {
                self.push(
                    Diagnostic::error(
                        Code::InvalidValue,
                        format!("`{}` takes on or off, not `{}`", s.keyword, a.text),
                    )
                    .at(a.span, "expected on or off")
                    .help(format!("write `{} on` or `{} off`", s.keyword, s.keyword)),
                );
                None
            }
        }
    }

    fn choice<'c>(&mut self, a: &Arg, keyword: &str, options: &[&'c str]) -> Option<&'c str> {
        if let Some(o) = options.iter().find(|o| **o == a.text) {
            return Some(o);
        }
        let mut d = Diagnostic::error(
            Code::InvalidValue,
            format!("`{}` is not a valid {keyword}", a.text),
        );
        d = match closest(&a.text, options.iter().copied()) {
            Some(c) => d.at(a.span, format!("did you mean `{c}`?")),
            None => d.at(a.span, "unknown value"),
        };
        self.push(d.help(format!("write one of: {}", options.join(", "))));
        None
    }

    /// A link name (the underlay `interface`, `cni { bridge }`, vxlan `device`): the rule
    /// plans are validated with ([`link_name_problem`]).
    fn ifname(&mut self, a: &Arg) -> Option<String> {
        let n = &a.text;
        let Some(p) = link_name_problem(n) else {
            return Some(n.clone());
        };
        let label = if n.is_empty() || n.len() > MAX_LINK_NAME {
            format!("{} bytes", n.len())
        } else {
            "not a valid interface name".to_string()
        };
        self.push(
            Diagnostic::error(Code::InterfaceName, format!("interface name `{n}` {p}"))
                .at(a.span, label)
                .help(
                    "interface names are 1 to 15 bytes of A-Z, a-z, 0-9, `_`, `.` and `-`, \
                     not starting with `-` or `.`",
                ),
        );
        None
    }

    fn string(&mut self, s: &Statement, what: &str) -> Option<String> {
        self.one(s, what).map(|a| a.text.clone())
    }
}

fn parse_addr(s: &str) -> Option<Ipv4Addr> {
    Ipv4Addr::from_str(s).ok()
}

/// A span inside a bare argument (e.g. the prefix part of a CIDR). Quoted arguments point
/// at the whole string, since escapes shift offsets.
fn sub_span(a: &Arg, from: usize, to: usize) -> Span {
    if a.quoted || a.span.len() != a.text.len() {
        return a.span;
    }
    Span {
        file: a.span.file,
        start: a.span.start + from as u32,
        end: a.span.start + to as u32,
    }
}

/// Lowers the statements of every file (the root file first) into a cluster.
/// `None` when the cluster block is missing or any of its settings is invalid; nodes with
/// invalid values are left out. Every problem is reported.
pub fn lower(files: &[(bool, &[Item])], diags: &mut Vec<Diagnostic>) -> Option<Cluster> {
    let mut l = Lower { diags };
    let mut cluster_stmt: Option<&Statement> = None;
    let mut nodes = Vec::new();
    let mut root_span = None;
    for &(is_root, items) in files {
        for s in statements(items) {
            root_span.get_or_insert(s.keyword_span);
            match s.keyword.as_str() {
                "cluster" if !is_root => l.push(
                    Diagnostic::error(Code::Misplaced, "`cluster` in an included file")
                        .at(s.keyword_span, "only the root file may define the cluster")
                        .help("move the cluster block into the file you pass to podnet"),
                ),
                "cluster" => match cluster_stmt {
                    Some(first) => l.push(
                        Diagnostic::error(Code::DuplicateCluster, "more than one cluster")
                            .at(s.keyword_span, "second cluster")
                            .also(first.keyword_span, "first cluster")
                            .help("a file describes one cluster; remove one of the blocks"),
                    ),
                    None => cluster_stmt = Some(s),
                },
                "node" => {
                    if let Some(n) = l.node(s) {
                        nodes.push(n);
                    }
                }
                "include" => {} // resolved by the loader
                _ => l.unknown_key(s, TOP_KEYS, "top level"),
            }
        }
    }
    let Some(cs) = cluster_stmt else {
        let mut d = Diagnostic::error(Code::NoCluster, "no `cluster` block")
            .help("add `cluster NAME { pod-cidr 10.244.0.0/16 }` to the root file");
        if let Some(span) = root_span {
            d = d.at(span, "the file starts here but defines no cluster");
        }
        l.push(d);
        return None;
    };
    let mut cluster = l.cluster(cs)?;
    cluster.nodes = nodes;
    Some(cluster)
}

impl Lower<'_> {
    fn name(&mut self, s: &Statement, what: &str) -> Option<Spanned<String>> {
        let mut d = match s.args.len() {
            1 => return Some(Spanned::new(s.args[0].text.clone(), s.args[0].span)),
            0 => Diagnostic::error(Code::Arity, format!("`{}` needs a name", s.keyword))
                .at(s.keyword_span, "no name"),
            _ => Diagnostic::error(Code::Arity, format!("`{}` takes one name", s.keyword))
                .at(s.args[1].span, "extra argument"),
        };
        d = d.help(format!("write `{} {what} {{ … }}`", s.keyword));
        self.push(d);
        None
    }

    fn need_block<'a>(
        &mut self,
        s: &'a Statement,
        example: &str,
    ) -> Option<&'a crate::syntax::Block> {
        if s.block.is_none() {
            self.push(
                Diagnostic::error(Code::Arity, format!("`{}` needs a block", s.keyword))
                    .at(s.span, "no `{ … }` block")
                    .help(format!("write `{example}`")),
            );
        }
        s.block.as_ref()
    }

    fn node(&mut self, s: &Statement) -> Option<Node> {
        let name = self.name(s, "NAME");
        let block = self.need_block(s, "node NAME { address 10.0.0.1/24 }")?;
        let k = self.keys(block.statements(), NODE_KEYS, "node");
        let mut ok = name.is_some();
        let address = match k.get("address") {
            Some(st) => self
                .one(st, "10.4.7.21/24")
                .and_then(|a| self.cidr(a).map(|c| Spanned::new(c, a.span))),
            None => {
                self.push(
                    Diagnostic::error(Code::MissingKey, "node has no `address`")
                        .at(
                            s.keyword_span
                                .to(s.args.first().map_or(s.keyword_span, |a| a.span)),
                            "this node",
                        )
                        .help(
                            "add `address ADDR/PREFIX`, the node's underlay address and L2 segment",
                        ),
                );
                None
            }
        };
        ok &= address.is_some();
        let interface = k.get("interface").map(|st| {
            self.one(st, "eth0")
                .and_then(|a| self.ifname(a).map(|n| Spanned::new(n, a.span)))
        });
        let subnet = k.get("subnet").map(|st| {
            self.one(st, "10.244.1.0/24")
                .and_then(|a| self.network(a).map(|n| Spanned::new(n, a.span)))
        });
        let underlay_mtu = k.get("underlay-mtu").map(|st| self.mtu_value(st));
        let vtep_mac = k.get("vtep-mac").map(|st| {
            self.one(st, "0e:2f:6a:11:22:33")
                .and_then(|a| self.vtep_mac(a).map(|m| Spanned::new(m, a.span)))
        });
        ok &= interface.as_ref().is_none_or(Option::is_some)
            && subnet.as_ref().is_none_or(Option::is_some)
            && underlay_mtu.as_ref().is_none_or(Option::is_some)
            && vtep_mac.as_ref().is_none_or(Option::is_some);
        if !ok {
            return None;
        }
        Some(Node {
            name: name?,
            address: address?,
            interface: interface.flatten(),
            subnet: subnet.flatten(),
            underlay_mtu: underlay_mtu.flatten(),
            vtep_mac: vtep_mac.flatten(),
        })
    }

    /// A VTEP MAC: six hex pairs, unicast and not all zero (the rule plans are validated
    /// with: the kernel would refuse or flood with anything else).
    fn vtep_mac(&mut self, a: &Arg) -> Option<Mac> {
        let Ok(mac) = a.text.parse::<Mac>() else {
            self.push(
                Diagnostic::error(
                    Code::InvalidMac,
                    format!("`{}` is not a MAC address", a.text),
                )
                .at(a.span, "expected six hex pairs separated by `:`")
                .help(
                    "write the VTEP MAC as flannel publishes it, e.g. `vtep-mac 0e:2f:6a:11:22:33`",
                ),
            );
            return None;
        };
        let problem = if mac.0 == [0; 6] {
            Some("all zero")
        } else if mac.0[0] & 1 != 0 {
            Some("a multicast address")
        } else {
            None
        };
        if let Some(p) = problem {
            self.push(
                Diagnostic::error(Code::InvalidMac, format!("VTEP MAC {mac} is {p}"))
                    .at(a.span, "not a unicast address")
                    .help(
                        "a VTEP MAC must be unicast (the lowest bit of the first byte clear) and \
                         not 00:00:00:00:00:00; copy the node's `VtepMAC` from flannel's \
                         `backend-data` annotation, or remove `vtep-mac` to use the derived one",
                    ),
            );
            return None;
        }
        Some(mac)
    }

    fn mtu_value(&mut self, st: &Statement) -> Option<Spanned<u32>> {
        let a = self.one(st, "1500")?;
        self.int::<u32>(
            a,
            u64::from(MIN_POD_MTU),
            u64::from(MAX_MTU),
            Code::MtuTooSmall,
            "MTU",
        )
        .map(|v| Spanned::new(v, a.span))
    }

    fn cluster(&mut self, s: &Statement) -> Option<Cluster> {
        let name = self.name(s, "NAME");
        let block = self.need_block(s, "cluster NAME { pod-cidr 10.244.0.0/16 }")?;
        let k = self.keys(block.statements(), CLUSTER_KEYS, "cluster");
        let at = s.keyword_span;
        let mut ok = name.is_some();

        macro_rules! opt {
            ($key:literal, |$st:ident| $e:expr) => {{
                match k.get($key) {
                    None => None,
                    Some($st) => {
                        let v = $e;
                        ok &= v.is_some();
                        v
                    }
                }
            }};
        }

        let pod_cidr = match k.get("pod-cidr") {
            Some(st) => self
                .one(st, "10.244.0.0/16")
                .and_then(|a| self.network(a).map(|n| Spanned::new(n, a.span))),
            None => {
                self.push(
                    Diagnostic::error(Code::MissingKey, "cluster has no `pod-cidr`")
                        .at(at.to(name.as_ref().map_or(at, |n| n.span)), "this cluster")
                        .help("add `pod-cidr 10.244.0.0/16` (the range all pod subnets come from)"),
                );
                None
            }
        };
        ok &= pod_cidr.is_some();
        let subnet_len = opt!("subnet-len", |st| self.one(st, "24").and_then(|a| {
            self.int::<u8>(a, 1, 32, Code::SubnetLenInvalid, "subnet-len")
                .map(|v| Spanned::new(v, a.span))
        }))
        .unwrap_or(Spanned::new(defaults::SUBNET_LEN, at));
        let service_cidr = opt!("service-cidr", |st| self
            .one(st, "10.96.0.0/12")
            .and_then(|a| self.network(a).map(|n| Spanned::new(n, a.span))));
        let interface = opt!("interface", |st| self
            .one(st, "eth0")
            .and_then(|a| self.ifname(a).map(|n| Spanned::new(n, a.span))))
        .unwrap_or(Spanned::new(defaults::INTERFACE.to_string(), at));
        let underlay_mtu = opt!("underlay-mtu", |st| self.mtu_value(st))
            .unwrap_or(Spanned::new(defaults::UNDERLAY_MTU, at));
        let mut mtu = None;
        if let Some(st) = k.get("mtu") {
            match self.one(st, "auto") {
                Some(a) if a.text == "auto" => {}
                Some(a) => {
                    mtu = self
                        .int::<u32>(
                            a,
                            u64::from(MIN_POD_MTU),
                            u64::from(MAX_MTU),
                            Code::MtuTooSmall,
                            "MTU",
                        )
                        .map(|v| Spanned::new(v, a.span));
                    ok &= mtu.is_some();
                }
                None => ok = false,
            }
        }
        let backend = opt!("backend", |st| self.backend(st)).unwrap_or(Backend::HostGw);
        let masquerade = opt!("masquerade", |st| self.masquerade(st)).unwrap_or(Masquerade {
            mode: MasqueradeMode::Outbound,
            except: Vec::new(),
            random_fully: true,
        });
        let firewall = opt!("firewall", |st| self
            .one(st, "nftables")
            .and_then(|a| self.choice(a, "firewall", FIREWALLS))
            .map(|f| if f == "iptables" {
                FirewallKind::Iptables
            } else {
                FirewallKind::Nftables
            }))
        .unwrap_or(FirewallKind::Nftables);
        let forward_accept = opt!("forward-accept", |st| self.switch(st)).unwrap_or(true);
        let route_protocol = opt!("route-protocol", |st| self.one(st, "77").and_then(|a| {
            let v = self.int::<u8>(
                a,
                u64::from(MIN_ROUTE_PROTOCOL),
                255,
                Code::RouteProtocolReserved,
                "route protocol",
            )?;
            if let Some(owner) = route_protocol_owner(v) {
                self.push(
                    Diagnostic::error(
                        Code::RouteProtocolReserved,
                        format!("route protocol {v} is {owner}'s"),
                    )
                    .at(a.span, format!("used by {owner} (/etc/iproute2/rt_protos)"))
                    .help(format!(
                        "podnet deletes every route of its protocol that is not in the plan, so it \
                         would delete {owner}'s routes; use a number no routing daemon uses, e.g. 77"
                    )),
                );
                return None;
            }
            Some(Spanned::new(v, a.span))
        }))
        .unwrap_or(Spanned::new(defaults::ROUTE_PROTOCOL, at));
        let flannel_compat = opt!("flannel-compat", |st| self.switch(st)).unwrap_or(false);
        let cni = match k.get("cni") {
            Some(st) => {
                let c = self.cni(st);
                ok &= c.is_some();
                c
            }
            None => None,
        }
        .unwrap_or_else(|| default_cni(at));
        if !ok {
            return None;
        }
        Some(Cluster {
            name: name?,
            pod_cidr: pod_cidr?,
            subnet_len,
            service_cidr,
            interface,
            underlay_mtu,
            mtu,
            backend,
            masquerade,
            firewall,
            forward_accept,
            route_protocol,
            flannel_compat,
            cni,
            nodes: Vec::new(),
        })
    }

    /// A statement `KEY MODE [{ … }]`, returning the mode and block statements.
    fn mode<'a>(
        &mut self,
        s: &'a Statement,
        options: &[&'static str],
    ) -> Option<(&'static str, Vec<&'a Statement>)> {
        let Some(a) = s.args.first() else {
            self.push(
                Diagnostic::error(Code::Arity, format!("`{}` needs a mode", s.keyword))
                    .at(s.keyword_span, "no mode")
                    .help(format!("write `{} {}`", s.keyword, options.join("|"))),
            );
            return None;
        };
        if let Some(extra) = s.args.get(1) {
            self.push(
                Diagnostic::error(Code::Arity, format!("`{}` takes one mode", s.keyword))
                    .at(extra.span, "extra argument")
                    .help(format!(
                        "put options in a block: `{} {} {{ … }}`",
                        s.keyword, a.text
                    )),
            );
            return None;
        }
        let mode = self.choice(a, s.keyword.as_str(), options)?;
        let stmts = s.block.iter().flat_map(|b| b.statements()).collect();
        Some((mode, stmts))
    }

    fn backend(&mut self, s: &Statement) -> Option<Backend> {
        let (mode, stmts) = self.mode(s, BACKENDS)?;
        if mode == "host-gw" {
            if let Some(b) = &s.block {
                self.push(
                    Diagnostic::error(Code::Arity, "`backend host-gw` takes no options")
                        .at(b.open, "unexpected block")
                        .help("write `backend host-gw`; options belong to `backend vxlan { … }`"),
                );
                return None;
            }
            return Some(Backend::HostGw);
        }
        let k = self.keys(stmts.into_iter(), VXLAN_KEYS, "backend vxlan");
        let at = s.keyword_span;
        let mut ok = true;
        let vni = match k.get("vni") {
            Some(st) => self.one(st, "1").and_then(|a| {
                self.int::<u32>(a, 1, 16_777_215, Code::VniRange, "VNI")
                    .map(|v| Spanned::new(v, a.span))
            }),
            None => Some(Spanned::new(defaults::VNI, at)),
        };
        ok &= vni.is_some();
        let port = match k.get("port") {
            Some(st) => self.one(st, "8472").and_then(|a| {
                self.int::<u16>(a, 1, 65535, Code::PortRange, "UDP port")
                    .map(|v| Spanned::new(v, a.span))
            }),
            None => Some(Spanned::new(defaults::PORT, at)),
        };
        ok &= port.is_some();
        let device = match k.get("device") {
            Some(st) => self
                .one(st, "flannel.1")
                .and_then(|a| self.ifname(a).map(|n| Spanned::new(n, a.span))),
            None => vni.map(|v| Spanned::new(format!("flannel.{}", v.value), v.span)),
        };
        if k.get("device").is_none()
            && let (Some(d), Some(v)) = (&device, vni)
            && d.value.len() > 15
        {
            self.push(
                Diagnostic::error(
                    Code::InterfaceName,
                    format!(
                        "the default device name `{}` is longer than 15 bytes",
                        d.value
                    ),
                )
                .at(v.span, "this VNI makes the name too long")
                .help("set `device` in the vxlan block, e.g. `device vxlan0`"),
            );
            ok = false;
        }
        ok &= device.is_some();
        let direct_routing = match k.get("direct-routing") {
            Some(st) => self.switch(st),
            None => Some(false),
        };
        ok &= direct_routing.is_some();
        if !ok {
            return None;
        }
        Some(Backend::Vxlan(Vxlan {
            vni: vni?,
            port: port?,
            device: device?,
            direct_routing: direct_routing?,
        }))
    }

    fn masquerade(&mut self, s: &Statement) -> Option<Masquerade> {
        let (mode, stmts) = self.mode(s, MASQUERADE_MODES)?;
        let mode = match mode {
            "off" => MasqueradeMode::Off,
            "all" => MasqueradeMode::All,
            _ => MasqueradeMode::Outbound,
        };
        let k = self.keys(stmts.into_iter(), MASQUERADE_KEYS, "masquerade");
        let mut except = Vec::new();
        if let Some(st) = k.get("except") {
            if mode != MasqueradeMode::Outbound {
                self.push(
                    Diagnostic::error(
                        Code::Arity,
                        "`except` applies to `masquerade outbound` only",
                    )
                    .at(st.keyword_span, "no effect in this mode")
                    .help("write `masquerade outbound { except CIDR… }`"),
                );
                return None;
            }
            if st.args.is_empty() {
                self.push(
                    Diagnostic::error(Code::Arity, "`except` needs at least one CIDR")
                        .at(st.keyword_span, "empty")
                        .help("write `except 10.0.0.0/8 192.168.0.0/16`"),
                );
                return None;
            }
            let mut ok = true;
            for a in &st.args {
                match self.network(a) {
                    Some(n) => except.push(Spanned::new(n, a.span)),
                    None => ok = false,
                }
            }
            if !ok {
                return None;
            }
        }
        let mut random_fully = true;
        if let Some(st) = k.get("random-fully") {
            if mode == MasqueradeMode::Off {
                self.push(
                    Diagnostic::error(
                        Code::Arity,
                        "`random-fully` applies to `masquerade all` and `outbound` only",
                    )
                    .at(st.keyword_span, "no effect with `masquerade off`")
                    .help("remove `random-fully`, or write `masquerade outbound { random-fully off }`"),
                );
                return None;
            }
            random_fully = self.switch(st)?;
        }
        Some(Masquerade {
            mode,
            except,
            random_fully,
        })
    }

    fn cni(&mut self, s: &Statement) -> Option<Cni> {
        if let Some(a) = s.args.first() {
            self.push(
                Diagnostic::error(Code::Arity, "`cni` takes a block, not arguments")
                    .at(a.span, "unexpected argument")
                    .help("write `cni { bridge cni0 }`"),
            );
            return None;
        }
        let block = self.need_block(s, "cni { bridge cni0 }")?;
        let k = self.keys(block.statements(), CNI_KEYS, "cni");
        let mut c = default_cni(s.keyword_span);
        let mut ok = true;
        macro_rules! set {
            ($key:literal, $field:expr, $e:expr) => {
                if let Some(st) = k.get($key) {
                    match $e(self, st) {
                        Some(v) => $field = v,
                        None => ok = false,
                    }
                }
            };
        }
        set!("name", c.name, |l: &mut Self, st| l.string(st, "podnet"));
        set!("bridge", c.bridge, |l: &mut Self, st| l
            .one(st, "cni0")
            .and_then(|a| l.ifname(a).map(|n| Spanned::new(n, a.span))));
        set!("hairpin", c.hairpin, |l: &mut Self, st| l.switch(st));
        set!("portmap", c.portmap, |l: &mut Self, st| l.switch(st));
        set!("bandwidth", c.bandwidth, |l: &mut Self, st| l.switch(st));
        set!("dir", c.dir, |l: &mut Self, st: &Statement| {
            let d = l.string(st, "/etc/cni/net.d")?;
            // One trailing `/` is harmless; the rest must be the rule plans are checked by.
            let d = if d.len() > 1 {
                d.strip_suffix('/').unwrap_or(&d)
            } else {
                &d
            };
            if let Some(p) = cni_dir_problem(d) {
                l.push(
                    Diagnostic::error(Code::CniDir, format!("CNI directory `{d}` {p}"))
                        .at(st.args[0].span, "not a directory podnet may write to")
                        .help(
                            "write an absolute, normalised directory outside /proc, /sys, /dev \
                             and /boot, e.g. `dir /etc/cni/net.d`",
                        ),
                );
                return None;
            }
            Some(d.to_string())
        });
        set!("file", c.file, |l: &mut Self, st: &Statement| {
            let f = l.string(st, "10-podnet.conflist")?;
            if let Some(p) = cni_file_problem(&f) {
                l.push(
                    Diagnostic::error(Code::CniFile, format!("CNI file name `{f}` {p}"))
                        .at(st.args[0].span, "not a plain CNI config file name")
                        .help(
                            "write a name of A-Z, a-z, 0-9, `_`, `.` and `-` ending in \
                             `.conflist` (or `.conf`), e.g. `file 10-podnet.conflist`; set the \
                             directory with `dir`",
                        ),
                );
                return None;
            }
            Some(f)
        });
        ok.then_some(c)
    }
}

fn default_cni(at: Span) -> Cni {
    Cni {
        name: defaults::CNI_NAME.to_string(),
        bridge: Spanned::new(defaults::CNI_BRIDGE.to_string(), at),
        hairpin: true,
        portmap: true,
        bandwidth: false,
        dir: defaults::CNI_DIR.to_string(),
        file: defaults::CNI_FILE.to_string(),
    }
}
