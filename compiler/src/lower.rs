//! Lowering: the generic syntax tree (from either surface form) into the typed model.
//! Reports unknown keys (with the closest known key, or the podnet name of a flannel word),
//! duplicates, wrong arity, malformed values and (in TOML) values of the wrong type, with
//! help lines in the syntax of the file at fault.
//!
//! Recovery, so that one run shows every problem and no invented one: an unknown key that
//! stands for a known key the block lacks (`pod-cdir`, flannel's `Network`, `vni=1`) is
//! reported once and its value is lowered under the known key; a setting with an invalid
//! value is reported, replaced by a placeholder and marked in [`Invalid`], so only the
//! checks that depend on it are skipped.

use std::collections::{HashMap, HashSet};
use std::net::Ipv4Addr;
use std::str::FromStr;

use ipnet::Ipv4Net;

use crate::check::{MAX_MTU, MIN_POD_MTU};
use crate::diag::{Code, Diagnostic};
use crate::hint::{self, Val};
use crate::model::{
    Backend, Cluster, Cni, FirewallKind, Invalid, Masquerade, MasqueradeMode, Node, Spanned, Vxlan,
};
use crate::plan::Mac;
use crate::span::{FileId, SourceKind, SourceMap, Span};
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

/// How a flannel word's value carries over to the podnet key.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Carry {
    /// The same value under the podnet name (`Network` → `pod-cidr`).
    Same,
    /// flanneld's `--ip-masq` (on: `masquerade outbound`, off: `masquerade off`).
    IpMasq,
    /// flanneld's `--public-ip` (an address without the segment's prefix length).
    PublicIp,
}

/// Flannel's words (net-conf.json keys, flanneld flags) for podnet keys: (flannel word,
/// block it is found in, podnet key, how the value carries over). Each gets a "podnet calls
/// this …" suggestion; a [`Carry::Same`] value is lowered under the podnet key.
pub const FLANNEL_WORDS: &[(&str, &str, &str, Carry)] = &[
    ("Network", "cluster", "pod-cidr", Carry::Same),
    ("network", "cluster", "pod-cidr", Carry::Same),
    ("SubnetLen", "cluster", "subnet-len", Carry::Same),
    ("Backend", "cluster", "backend", Carry::Same),
    ("iface", "cluster", "interface", Carry::Same),
    ("ip-masq", "cluster", "masquerade", Carry::IpMasq),
    ("iface", "node", "interface", Carry::Same),
    ("public-ip", "node", "address", Carry::PublicIp),
    ("VNI", "backend vxlan", "vni", Carry::Same),
    ("Port", "backend vxlan", "port", Carry::Same),
    (
        "DirectRouting",
        "backend vxlan",
        "direct-routing",
        Carry::Same,
    ),
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

/// Lowering context: collects diagnostics and knows which files are TOML (for help lines
/// and TOML's value types).
pub struct Lower<'d> {
    pub diags: &'d mut Vec<Diagnostic>,
    toml: HashSet<FileId>,
}

/// Statements of one block by key, after unknown and duplicate keys were reported.
#[derive(Default)]
struct Keys<'a> {
    map: HashMap<&'static str, &'a Statement>,
    /// Statements recovered from an unknown key that stands for a known one (renamed).
    owned: HashMap<&'static str, Statement>,
    /// Keys whose absence an unknown key already explains (no "missing" error for them).
    explained: HashSet<&'static str>,
}

impl Keys<'_> {
    fn get(&self, key: &str) -> Option<&Statement> {
        self.map.get(key).copied().or_else(|| self.owned.get(key))
    }

    fn has(&self, key: &str) -> bool {
        self.map.contains_key(key) || self.owned.contains_key(key)
    }

    fn explained(&self, key: &str) -> bool {
        self.explained.contains(key)
    }
}

/// What an unknown key stands for: the known key, and its statement under that key when
/// the value carries over.
type Stands = Option<(&'static str, Option<Statement>)>;

impl Lower<'_> {
    fn push(&mut self, d: Diagnostic) {
        self.diags.push(d);
    }

    /// The form of the file `span` is in.
    fn kind(&self, span: Span) -> SourceKind {
        if self.toml.contains(&span.file) {
            SourceKind::Toml
        } else {
            SourceKind::Podnet
        }
    }

    fn keys<'a>(
        &mut self,
        stmts: impl Iterator<Item = &'a Statement>,
        known: &'static [&'static str],
        block: &str,
    ) -> Keys<'a> {
        let stmts: Vec<&'a Statement> = stmts.collect();
        let present: HashSet<&str> = stmts
            .iter()
            .map(|s| s.keyword.as_str())
            .filter(|k| known.contains(k))
            .collect();
        let mut keys = Keys::default();
        for s in stmts {
            let Some(&key) = known.iter().find(|k| **k == s.keyword) else {
                if let Some((key, stmt)) = self.unknown_key(s, known, block)
                    && !present.contains(key)
                    && !keys.has(key)
                    && keys.explained.insert(key)
                    && let Some(stmt) = stmt
                {
                    keys.explained.remove(key);
                    keys.owned.insert(key, stmt);
                }
                continue;
            };
            if let Some(first) = keys.get(key) {
                let first = first.keyword_span;
                self.push(
                    Diagnostic::error(Code::DuplicateKey, format!("`{key}` is given twice"))
                        .at(s.keyword_span, "given again here")
                        .also(first, "first given here")
                        .help(format!("keep one `{key}` in this {block} block")),
                );
                continue;
            }
            // `vni = 1` in the podnet language: a key and its value are separated by a space.
            if let Some(eq) = s
                .args
                .first()
                .filter(|a| !a.quoted && matches!(a.text.as_str(), "=" | ":"))
            {
                let rest = &s.args[1..];
                self.push(
                    Diagnostic::error(Code::Arity, format!("`{key}` takes no `{}`", eq.text))
                        .at(
                            eq.span,
                            "podnet separates a key from its value with a space",
                        )
                        .help(format!(
                            "write {}",
                            hint::with_args(SourceKind::Podnet, key, rest)
                        )),
                );
                let mut fixed = s.clone();
                fixed.args.remove(0);
                keys.owned.insert(key, fixed);
                continue;
            }
            keys.map.insert(key, s);
        }
        keys
    }

    /// Reports an unknown key; returns the known key it stands for, if any (see [`Stands`]).
    fn unknown_key(
        &mut self,
        s: &Statement,
        known: &'static [&'static str],
        block: &str,
    ) -> Stands {
        let kind = self.kind(s.keyword_span);
        let renamed = |key: &'static str| {
            let mut r = s.clone();
            r.keyword = key.to_string();
            r
        };
        // `vni=1` (podnet): the key is known, the syntax is not.
        if let Some(at) = s.keyword.find(['=', ':'])
            && kind == SourceKind::Podnet
            && let Some(&key) = known.iter().find(|k| **k == s.keyword[..at].trim_end())
        {
            let value = &s.keyword[at + 1..];
            let mut r = renamed(key);
            if !value.is_empty() {
                let start = s.keyword_span.start + at as u32 + 1;
                r.args.insert(
                    0,
                    Arg {
                        text: value.to_string(),
                        quoted: false,
                        span: Span {
                            file: s.keyword_span.file,
                            start,
                            end: s.keyword_span.end,
                        },
                    },
                );
            }
            let sep = &s.keyword[at..=at];
            self.push(
                Diagnostic::error(
                    Code::UnknownKey,
                    format!(
                        "unknown key `{}` in {block} (podnet has no `{sep}`)",
                        s.keyword
                    ),
                )
                .at(
                    s.keyword_span,
                    "a key and its value are separated by a space",
                )
                .help(format!("write {}", hint::with_args(kind, key, &r.args))),
            );
            return Some((key, Some(r)));
        }
        let mut d = Diagnostic::error(
            Code::UnknownKey,
            format!("unknown key `{}` in {block}", s.keyword),
        );
        if let Some(&(word, _, key, carry)) = FLANNEL_WORDS
            .iter()
            .find(|(w, b, k, _)| *w == s.keyword && *b == block && known.contains(k))
        {
            let key: &'static str = known.iter().find(|k| **k == key).copied().unwrap_or("");
            d = d.at(s.keyword_span, format!("podnet calls this `{key}`"));
            let (help, stands) = match carry {
                Carry::Same if s.block.is_some() => (
                    match kind {
                        SourceKind::Toml if block == "cluster" => format!(
                            "`{word}` is flannel's name for it: write the table as `[cluster.{key}]`"
                        ),
                        _ => format!("`{word}` is flannel's name for it: rename it `{key}`"),
                    },
                    Some(renamed(key)),
                ),
                Carry::Same => (
                    format!(
                        "`{word}` is flannel's name for it: write {}",
                        hint::with_args(kind, key, &s.args)
                    ),
                    Some(renamed(key)),
                ),
                Carry::IpMasq => (
                    format!(
                        "flanneld's --ip-masq is podnet's `masquerade`: write {} (the default; \
                         unlike flannel's, it leaves pod-to-pod traffic unmasqueraded) or {}",
                        hint::setting(kind, "masquerade", Val::Str("outbound")),
                        hint::setting(kind, "masquerade", Val::Str("off"))
                    ),
                    None,
                ),
                Carry::PublicIp => (
                    format!(
                        "flanneld's --public-ip is podnet's `address`, written with the node \
                         network's prefix length: write {}",
                        hint::setting(
                            kind,
                            "address",
                            Val::Hole(&format!(
                                "{}/PREFIX",
                                s.args.first().map_or("ADDR", |a| a.text.as_str())
                            ))
                        )
                    ),
                    None,
                ),
            };
            self.push(d.help(help));
            return Some((key, stands));
        }
        let mut stands = None;
        let help = if let Some(k) = closest(&s.keyword, known.iter().copied()) {
            d = d.at(s.keyword_span, format!("did you mean `{k}`?"));
            stands = Some((k, Some(renamed(k))));
            if s.block.is_some() {
                format!("rename it `{k}`")
            } else {
                format!("write {}", hint::with_args(kind, k, &s.args))
            }
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
        stands
    }

    /// "write …" with an example value, in the file's syntax.
    fn example(&self, s: &Statement, ex: Val<'_>) -> String {
        let kind = self.kind(s.keyword_span);
        match ex {
            Val::Bool(_) => format!("write {}", hint::switch(kind, &s.keyword)),
            _ => format!("write {}", hint::setting(kind, &s.keyword, ex)),
        }
    }

    /// Exactly `n` arguments and no block; reports and returns `None` otherwise.
    fn args<'a>(&mut self, s: &'a Statement, n: usize, ex: Val<'_>) -> Option<&'a [Arg]> {
        let toml = self.kind(s.keyword_span) == SourceKind::Toml;
        if let Some(b) = &s.block {
            let msg = if toml {
                format!("`{}` is a value, not a table", s.keyword)
            } else {
                format!("`{}` takes no block", s.keyword)
            };
            let label = if toml {
                "unexpected table"
            } else {
                "unexpected block"
            };
            let help = self.example(s, ex);
            self.push(
                Diagnostic::error(Code::Arity, msg)
                    .at(b.open, label)
                    .help(help),
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
            let msg = if toml {
                format!(
                    "`{}` takes one value, found an array of {}",
                    s.keyword,
                    s.args.len()
                )
            } else {
                format!(
                    "`{}` takes {n} argument{}, found {}",
                    s.keyword,
                    if n == 1 { "" } else { "s" },
                    s.args.len()
                )
            };
            let help = self.example(s, ex);
            self.push(Diagnostic::error(Code::Arity, msg).at(at, label).help(help));
            return None;
        }
        Some(&s.args)
    }

    /// The one argument of `s`, of the TOML type `ex` has when the file is TOML.
    fn one<'a>(&mut self, s: &'a Statement, ex: Val<'_>) -> Option<&'a Arg> {
        let a = self.args(s, 1, ex).map(|a| &a[0])?;
        self.toml_type(&s.keyword, a, ex).then_some(a)
    }

    /// In a TOML file, whether `a` has the type the schema gives `key` (the type of `ex`);
    /// reports a value of another type. Always true in the podnet language, whose values
    /// are words.
    fn toml_type(&mut self, key: &str, a: &Arg, ex: Val<'_>) -> bool {
        if self.kind(a.span) != SourceKind::Toml {
            return true;
        }
        let found = if a.quoted {
            "a string"
        } else if matches!(a.text.as_str(), "on" | "off") {
            "a boolean"
        } else {
            "an integer"
        };
        let (want, fix) = match ex {
            Val::Str(_) | Val::Hole(_) if found != "a string" => {
                // A TOML boolean arrives as on/off: `masquerade = false` means the mode `off`.
                let v = match a.text.as_str() {
                    "on" if !matches!(key, "masquerade" | "mode") => "true",
                    "off" if !matches!(key, "masquerade" | "mode") => "false",
                    t => t,
                };
                (
                    "a string",
                    hint::setting(SourceKind::Toml, key, Val::Str(v)),
                )
            }
            Val::Int(e) if found != "an integer" => {
                let v = if a.text.parse::<u64>().is_ok() {
                    a.text.as_str()
                } else {
                    e
                };
                (
                    "an integer",
                    hint::setting(SourceKind::Toml, key, Val::Int(v)),
                )
            }
            Val::Bool(_) if found != "a boolean" => {
                let fix = match a.text.as_str() {
                    "on" | "true" | "yes" | "1" => {
                        hint::setting(SourceKind::Toml, key, Val::Bool(true))
                    }
                    "off" | "false" | "no" | "0" => {
                        hint::setting(SourceKind::Toml, key, Val::Bool(false))
                    }
                    _ => hint::switch(SourceKind::Toml, key),
                };
                ("a boolean", fix)
            }
            _ => return true,
        };
        let (want, how) = match want {
            "a string" => (want, "a TOML string, in quotes"),
            // `mtu` is the one key that takes a number or a word.
            "an integer" if key == "mtu" => {
                ("an integer or \"auto\"", "a TOML integer, without quotes")
            }
            "an integer" => (want, "a TOML integer, without quotes"),
            _ => (want, "a TOML boolean, without quotes"),
        };
        self.push(
            Diagnostic::error(Code::TomlValue, format!("`{key}` is {want}, not {found}"))
                .at(a.span, found)
                .help(format!("write {fix} ({how})")),
        );
        false
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
        let a = self.one(s, Val::Bool(true))?;
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
                    .help(self.example(s, Val::Bool(true))),
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

    fn string(&mut self, s: &Statement, ex: Val<'_>) -> Option<String> {
        self.one(s, ex).map(|a| a.text.clone())
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
pub fn lower(
    files: &[(bool, &[Item])],
    sources: &SourceMap,
    diags: &mut Vec<Diagnostic>,
) -> Option<Lowered> {
    let toml = sources
        .files()
        .filter(|(_, f)| f.kind == SourceKind::Toml)
        .map(|(id, _)| id)
        .collect();
    let mut l = Lower { diags, toml };
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
                _ => {
                    let _ = l.unknown_key(s, TOP_KEYS, "top level");
                }
            }
        }
    }
    let Some(cs) = cluster_stmt else {
        let toml = root_span.is_some_and(|s| l.kind(s) == SourceKind::Toml);
        let mut d = Diagnostic::error(Code::NoCluster, "no `cluster` block").help(if toml {
            "add a `[cluster]` table with `name = \"NAME\"` and `pod-cidr = \"10.244.0.0/16\"` to the root file"
        } else {
            "add `cluster NAME { pod-cidr 10.244.0.0/16 }` to the root file"
        });
        if let Some(span) = root_span {
            d = d.at(span, "the file starts here but defines no cluster");
        }
        l.push(d);
        return None;
    };
    let (mut cluster, invalid) = l.cluster(cs)?;
    cluster.nodes = nodes;
    Some(Lowered { cluster, invalid })
}

/// A lowered cluster and which of its settings are placeholders for invalid values.
pub struct Lowered {
    pub cluster: Cluster,
    pub invalid: Invalid,
}

impl Lower<'_> {
    fn name(&mut self, s: &Statement, what: &str) -> Option<Spanned<String>> {
        let mut d = match s.args.len() {
            1 => {
                let a = &s.args[0];
                return self
                    .toml_type("name", a, Val::Str(what))
                    .then(|| Spanned::new(a.text.clone(), a.span));
            }
            0 => Diagnostic::error(Code::Arity, format!("`{}` needs a name", s.keyword))
                .at(s.keyword_span, "no name"),
            _ => Diagnostic::error(Code::Arity, format!("`{}` takes one name", s.keyword))
                .at(s.args[1].span, "extra argument"),
        };
        d = d.help(match self.kind(s.keyword_span) {
            SourceKind::Podnet => format!("write `{} {what} {{ … }}`", s.keyword),
            SourceKind::Toml => format!("write `name = \"{what}\"` in this table"),
        });
        self.push(d);
        None
    }

    fn need_block<'a>(
        &mut self,
        s: &'a Statement,
        example: &str,
    ) -> Option<&'a crate::syntax::Block> {
        if s.block.is_none() {
            let d = match self.kind(s.keyword_span) {
                SourceKind::Podnet => {
                    Diagnostic::error(Code::Arity, format!("`{}` needs a block", s.keyword))
                        .at(s.span, "no `{ … }` block")
                        .help(format!("write `{example}`"))
                }
                SourceKind::Toml => {
                    Diagnostic::error(Code::Arity, format!("`{}` must be a table", s.keyword))
                        .at(s.span, "not a table")
                        .help(format!(
                            "write a `[{}]` table (see schemas/cluster.schema.json)",
                            if s.keyword == "node" {
                                "[node]"
                            } else {
                                &s.keyword
                            }
                        ))
                }
            };
            self.push(d);
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
                .one(st, Val::Str("10.4.7.21/24"))
                .and_then(|a| self.cidr(a).map(|c| Spanned::new(c, a.span))),
            None if k.explained("address") => None,
            None => {
                let kind = self.kind(s.keyword_span);
                let named = name.as_ref().map(|n| format!(" `{n}`")).unwrap_or_default();
                // TOML: the node's own `[[node]]` header; podnet: `node NAME`.
                let at = match kind {
                    SourceKind::Toml => s.keyword_span,
                    SourceKind::Podnet => s
                        .keyword_span
                        .to(s.args.first().map_or(s.keyword_span, |a| a.span)),
                };
                self.push(
                    Diagnostic::error(Code::MissingKey, format!("node{named} has no `address`"))
                        .at(at, format!("node{named}"))
                        .help(format!(
                            "add {}, the node's underlay address with the prefix length of its network (its L2 segment)",
                            hint::setting(kind, "address", Val::Hole("ADDR/PREFIX"))
                        )),
                );
                None
            }
        };
        ok &= address.is_some();
        let interface = k.get("interface").map(|st| {
            self.one(st, Val::Str("eth0"))
                .and_then(|a| self.ifname(a).map(|n| Spanned::new(n, a.span)))
        });
        let subnet = k.get("subnet").map(|st| {
            self.one(st, Val::Str("10.244.1.0/24"))
                .and_then(|a| self.network(a).map(|n| Spanned::new(n, a.span)))
        });
        let underlay_mtu = k.get("underlay-mtu").map(|st| self.mtu_value(st));
        let vtep_mac = k.get("vtep-mac").map(|st| {
            self.one(st, Val::Str("0e:2f:6a:11:22:33"))
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
                .help(format!(
                    "write the VTEP MAC as flannel publishes it, e.g. {}",
                    hint::setting(self.kind(a.span), "vtep-mac", Val::Str("0e:2f:6a:11:22:33"))
                )),
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
        let a = self.one(st, Val::Int("1500"))?;
        self.int::<u32>(
            a,
            u64::from(MIN_POD_MTU),
            u64::from(MAX_MTU),
            Code::MtuTooSmall,
            "MTU",
        )
        .map(|v| Spanned::new(v, a.span))
    }

    /// The cluster block. Invalid settings are reported and replaced by their defaults
    /// (a missing or invalid `pod-cidr` by 0.0.0.0/0) and marked in [`Invalid`]; `None` only
    /// without a block.
    fn cluster(&mut self, s: &Statement) -> Option<(Cluster, Invalid)> {
        let name = self.name(s, "NAME");
        let block = self.need_block(s, "cluster NAME { pod-cidr 10.244.0.0/16 }")?;
        let k = self.keys(block.statements(), CLUSTER_KEYS, "cluster");
        let at = s.keyword_span;
        let kind = self.kind(at);
        let mut invalid = Invalid {
            name: name.is_none(),
            ..Invalid::default()
        };

        macro_rules! opt {
            ($flag:ident, $key:literal, |$st:ident| $e:expr) => {{
                match k.get($key) {
                    None => None,
                    Some($st) => {
                        let v = $e;
                        invalid.$flag |= v.is_none();
                        v
                    }
                }
            }};
        }

        let pod_cidr = match k.get("pod-cidr") {
            Some(st) => self
                .one(st, Val::Str("10.244.0.0/16"))
                .and_then(|a| self.network(a).map(|n| Spanned::new(n, a.span))),
            // An unknown key standing for it (flannel's `Network`, a typo) was reported.
            None if k.explained("pod-cidr") => None,
            None => {
                let here = match kind {
                    SourceKind::Toml => at,
                    SourceKind::Podnet => at.to(name.as_ref().map_or(at, |n| n.span)),
                };
                self.push(
                    Diagnostic::error(Code::MissingKey, "cluster has no `pod-cidr`")
                        .at(here, "this cluster")
                        .help(format!(
                            "add {}: the range every node's subnet is taken from, outside the \
                             node and service networks (flannel's default is 10.244.0.0/16)",
                            hint::setting(kind, "pod-cidr", Val::Hole("CIDR"))
                        )),
                );
                None
            }
        };
        invalid.pod_cidr = pod_cidr.is_none();
        let pod_cidr = pod_cidr.unwrap_or(Spanned::new(Ipv4Net::default(), at));
        let subnet_len = opt!(subnet_len, "subnet-len", |st| self
            .one(st, Val::Int("24"))
            .and_then(|a| {
                self.int::<u8>(
                    a,
                    1,
                    crate::check::MAX_SUBNET_LEN.into(),
                    Code::SubnetLenInvalid,
                    "subnet-len",
                )
                .map(|v| Spanned::new(v, a.span))
            }))
        .unwrap_or(Spanned::new(defaults::SUBNET_LEN, at));
        let service_cidr = opt!(other, "service-cidr", |st| self
            .one(st, Val::Str("10.96.0.0/12"))
            .and_then(|a| self.network(a).map(|n| Spanned::new(n, a.span))));
        let interface = opt!(other, "interface", |st| self
            .one(st, Val::Str("eth0"))
            .and_then(|a| self.ifname(a).map(|n| Spanned::new(n, a.span))))
        .unwrap_or(Spanned::new(defaults::INTERFACE.to_string(), at));
        let underlay_mtu = opt!(mtu, "underlay-mtu", |st| self.mtu_value(st))
            .unwrap_or(Spanned::new(defaults::UNDERLAY_MTU, at));
        let mut mtu = None;
        if let Some(st) = k.get("mtu") {
            match self.one(st, Val::Any("auto")) {
                Some(a) if a.text == "auto" => {}
                // TOML: a number, or the string "auto".
                Some(a) if !self.toml_type("mtu", a, Val::Int("1450")) => invalid.mtu = true,
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
                    invalid.mtu |= mtu.is_none();
                }
                None => invalid.mtu = true,
            }
        }
        let backend = opt!(backend, "backend", |st| self.backend(st)).unwrap_or(Backend::HostGw);
        let masquerade =
            opt!(masquerade, "masquerade", |st| self.masquerade(st)).unwrap_or(Masquerade {
                mode: MasqueradeMode::Outbound,
                except: Vec::new(),
                random_fully: true,
            });
        let firewall = opt!(other, "firewall", |st| self
            .one(st, Val::Str("nftables"))
            .and_then(|a| self.choice(a, "firewall", FIREWALLS))
            .map(|f| if f == "iptables" {
                FirewallKind::Iptables
            } else {
                FirewallKind::Nftables
            }))
        .unwrap_or(FirewallKind::Nftables);
        let forward_accept = opt!(other, "forward-accept", |st| self.switch(st)).unwrap_or(true);
        let route_protocol = opt!(other, "route-protocol", |st| self.one(st, Val::Int("77")).and_then(|a| {
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
        let flannel_compat = opt!(other, "flannel-compat", |st| self.switch(st)).unwrap_or(false);
        let cni = match k.get("cni") {
            Some(st) => {
                let c = self.cni(st);
                invalid.other |= c.is_none();
                c
            }
            None => None,
        }
        .unwrap_or_else(|| default_cni(at));
        let cluster = Cluster {
            name: name.unwrap_or(Spanned::new(String::new(), at)),
            pod_cidr,
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
        };
        Some((cluster, invalid))
    }

    /// A statement `KEY MODE [{ … }]`, returning the mode and block statements.
    fn mode<'a>(
        &mut self,
        s: &'a Statement,
        options: &[&'static str],
    ) -> Option<(&'static str, Vec<&'a Statement>)> {
        let kind = self.kind(s.keyword_span);
        let Some(a) = s.args.first() else {
            // flannel's `"Backend": {"Type": "vxlan", …}`: its `Type` is the mode.
            let stmts: Vec<&'a Statement> = s.block.iter().flat_map(|b| b.statements()).collect();
            if let Some(t) = stmts
                .iter()
                .copied()
                .find(|t| matches!(t.keyword.as_str(), "Type" | "type") && t.args.len() == 1)
            {
                let v = &t.args[0];
                let write = match kind {
                    SourceKind::Podnet => format!("`{} {}`", s.keyword, v.text),
                    SourceKind::Toml => hint::setting(kind, "mode", Val::Str(&v.text)),
                };
                self.push(
                    Diagnostic::error(
                        Code::UnknownKey,
                        format!("unknown key `{}` in {}", t.keyword, s.keyword),
                    )
                    .at(
                        t.keyword_span,
                        match kind {
                            SourceKind::Podnet => "podnet writes the mode after the keyword",
                            SourceKind::Toml => "podnet calls this `mode`",
                        },
                    )
                    .help(format!(
                        "`{}` is flannel's name for it: write {write}",
                        t.keyword
                    )),
                );
                let mode = self.choice(v, s.keyword.as_str(), options)?;
                let rest = stmts.into_iter().filter(|x| !std::ptr::eq(*x, t)).collect();
                return Some((mode, rest));
            }
            let help = match kind {
                SourceKind::Podnet => format!("write `{} {}`", s.keyword, options.join("|")),
                SourceKind::Toml => format!(
                    "write {} (or `mode = …` in its table), one of: {}",
                    hint::setting(kind, &s.keyword, Val::Str(options[options.len() - 1])),
                    options.join(", ")
                ),
            };
            self.push(
                Diagnostic::error(Code::Arity, format!("`{}` needs a mode", s.keyword))
                    .at(s.keyword_span, "no mode")
                    .help(help),
            );
            return None;
        };
        // TOML: `backend = "vxlan"`, or `mode = "vxlan"` in a `[cluster.backend]` table.
        let key = if s.block.is_some() {
            "mode"
        } else {
            s.keyword.as_str()
        };
        // flannel's `--ip-masq` is a switch; podnet's masquerade is a mode. Turning it "on"
        // means `outbound` (what flannel does), never the closest spelling, `off`.
        if options.contains(&"outbound") && matches!(a.text.as_str(), "on" | "true" | "yes") {
            let write = match kind {
                SourceKind::Podnet => format!("`{} outbound`", s.keyword),
                SourceKind::Toml => hint::setting(kind, key, Val::Str("outbound")),
            };
            self.push(
                Diagnostic::error(
                    Code::InvalidValue,
                    format!(
                        "`{}` is not a valid {}: it takes a mode, not a switch",
                        if kind == SourceKind::Toml && !a.quoted { "true" } else { a.text.as_str() },
                        s.keyword
                    ),
                )
                .at(a.span, "a mode: outbound, all or off")
                .help(format!(
                    "write {write} to masquerade pod traffic that leaves the pod CIDR (what flannel's --ip-masq does), or `all` / `off`"
                )),
            );
            return None;
        }
        if !self.toml_type(key, a, Val::Str(options[0])) {
            return None;
        }
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
            // (A TOML `[cluster.backend]` table with only `mode` is a block without options.)
            let first = stmts.first().map(|f| f.keyword_span);
            if let Some(at) = s.block.as_ref().filter(|_| first.is_some()).map(|_| first) {
                let help = match self.kind(s.keyword_span) {
                    SourceKind::Podnet => {
                        "write `backend host-gw`; options belong to `backend vxlan { … }`"
                    }
                    SourceKind::Toml => {
                        "remove the options: host-gw has none (they belong to `mode = \"vxlan\"`)"
                    }
                };
                self.push(
                    Diagnostic::error(Code::Arity, "`backend host-gw` takes no options")
                        .at(at.unwrap_or(s.keyword_span), "unexpected option")
                        .help(help),
                );
                return None;
            }
            return Some(Backend::HostGw);
        }
        let k = self.keys(stmts.into_iter(), VXLAN_KEYS, "backend vxlan");
        let at = s.keyword_span;
        let mut ok = true;
        let vni = match k.get("vni") {
            Some(st) => self.one(st, Val::Int("1")).and_then(|a| {
                self.int::<u32>(a, 1, 16_777_215, Code::VniRange, "VNI")
                    .map(|v| Spanned::new(v, a.span))
            }),
            None => Some(Spanned::new(defaults::VNI, at)),
        };
        ok &= vni.is_some();
        let port = match k.get("port") {
            Some(st) => self.one(st, Val::Int("8472")).and_then(|a| {
                self.int::<u16>(a, 1, 65535, Code::PortRange, "UDP port")
                    .map(|v| Spanned::new(v, a.span))
            }),
            None => Some(Spanned::new(defaults::PORT, at)),
        };
        ok &= port.is_some();
        let device = match k.get("device") {
            Some(st) => self
                .one(st, Val::Str("flannel.1"))
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
                .help(format!(
                    "set `device` in the vxlan block, e.g. {}",
                    hint::setting(self.kind(v.span), "device", Val::Str("vxlan0"))
                )),
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
                    .help(format!(
                        "write {}",
                        hint::block(
                            self.kind(st.keyword_span),
                            "cluster.masquerade",
                            Some("outbound"),
                            "except",
                            Val::Hole("CIDR…")
                        )
                    )),
                );
                return None;
            }
            if st.args.is_empty() {
                self.push(
                    Diagnostic::error(Code::Arity, "`except` needs at least one CIDR")
                        .at(st.keyword_span, "empty")
                        .help(match self.kind(st.keyword_span) {
                            SourceKind::Podnet => "write `except 10.0.0.0/8 192.168.0.0/16`",
                            SourceKind::Toml => {
                                "write `except = [\"10.0.0.0/8\", \"192.168.0.0/16\"]`"
                            }
                        }),
                );
                return None;
            }
            let mut ok = true;
            for a in &st.args {
                if !self.toml_type("except", a, Val::Str("10.0.0.0/8")) {
                    ok = false;
                    continue;
                }
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
                    .help(format!(
                        "remove `random-fully`, or write {}",
                        hint::block(
                            self.kind(st.keyword_span),
                            "cluster.masquerade",
                            Some("outbound"),
                            "random-fully",
                            Val::Bool(false)
                        )
                    )),
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
                    .help(format!(
                        "write {}",
                        hint::block(
                            self.kind(s.keyword_span),
                            "cluster.cni",
                            None,
                            "bridge",
                            Val::Str("cni0")
                        )
                    )),
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
        set!("name", c.name, |l: &mut Self, st| l
            .string(st, Val::Str("podnet")));
        set!("bridge", c.bridge, |l: &mut Self, st| l
            .one(st, Val::Str("cni0"))
            .and_then(|a| l.ifname(a).map(|n| Spanned::new(n, a.span))));
        set!("hairpin", c.hairpin, |l: &mut Self, st| l.switch(st));
        set!("portmap", c.portmap, |l: &mut Self, st| l.switch(st));
        set!("bandwidth", c.bandwidth, |l: &mut Self, st| l.switch(st));
        set!("dir", c.dir, |l: &mut Self, st: &Statement| {
            let d = l.string(st, Val::Str("/etc/cni/net.d"))?;
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
                        .help(format!(
                            "write an absolute, normalised directory outside /proc, /sys, /dev \
                             and /boot, e.g. {}",
                            hint::setting(
                                l.kind(st.keyword_span),
                                "dir",
                                Val::Str("/etc/cni/net.d")
                            )
                        )),
                );
                return None;
            }
            Some(d.to_string())
        });
        set!("file", c.file, |l: &mut Self, st: &Statement| {
            let f = l.string(st, Val::Str("10-podnet.conflist"))?;
            if let Some(p) = cni_file_problem(&f) {
                l.push(
                    Diagnostic::error(Code::CniFile, format!("CNI file name `{f}` {p}"))
                        .at(st.args[0].span, "not a plain CNI config file name")
                        .help(format!(
                            "write a name of A-Z, a-z, 0-9, `_`, `.` and `-` ending in \
                             `.conflist` (or `.conf`), e.g. {}; set the directory with `dir`",
                            hint::setting(
                                l.kind(st.keyword_span),
                                "file",
                                Val::Str("10-podnet.conflist")
                            )
                        )),
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
