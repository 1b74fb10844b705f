//! A readable text form of the diff's `Observed` for golden cases (the library type has no
//! serde on purpose): one object per line, `#` comments and blank lines ignored.
//!
//! ```text
//! journaled | unjournaled
//! style nexthops | style plain-gateways
//! protocol 77
//! link INDEX NAME [kind KIND] mtu N [mac M] up|down [alias A] [master I] [owned]
//!      [vxlan VNI PORT LOCAL|- LINK|- learning|nolearning]
//! addr INDEX CIDR
//! route DST nhid ID proto P | route DST via GW dev INDEX [onlink] proto P |
//! route DST type RTN [dev INDEX] proto P
//! nexthop ID via GW dev INDEX [onlink] proto P
//! other-nexthop ID
//! foreign-route DST
//! neigh INDEX IP lladdr MAC|- permanent|cache
//! fdb INDEX MAC dst IP|- permanent|cache
//! sysctl KEY VALUE|-
//! file PATH MODE CONTENT|-         (CONTENT: a JSON string, or hex:… when not UTF-8)
//! prior PATH MODE CONTENT|-
//! ```

use std::fmt::Write as _;
use std::net::Ipv4Addr;

use podnet::diff::routes::RouteStyle;
use podnet::diff::{FileState, Observed};
use podnet::kernel::addr::Addr;
use podnet::kernel::link::{KernelLinkKind, Link, Vxlan};
use podnet::kernel::neigh::{Fdb, Neigh};
use podnet::kernel::nexthop::Nexthop;
use podnet::kernel::route::{Route, Target};
use podnet_compiler::plan::Mac;

fn mac(m: [u8; 6]) -> String {
    Mac(m).to_string()
}

fn parse_mac(s: &str) -> Result<[u8; 6], String> {
    s.parse::<Mac>()
        .map(|m| m.0)
        .map_err(|e| format!("mac {s}: {e:?}"))
}

fn content(s: &Option<FileState>) -> String {
    match s {
        None => "0 -".to_string(),
        Some(f) => {
            let body = match std::str::from_utf8(&f.content) {
                Ok(t) => serde_json::to_string(t).unwrap_or_default(),
                Err(_) => format!(
                    "hex:{}",
                    f.content
                        .iter()
                        .map(|b| format!("{b:02x}"))
                        .collect::<String>()
                ),
            };
            format!("{:04o} {body}", f.mode)
        }
    }
}

fn parse_content(mode: &str, body: &str) -> Result<Option<FileState>, String> {
    if body == "-" {
        return Ok(None);
    }
    let mode = u32::from_str_radix(mode, 8).map_err(|e| format!("mode {mode}: {e}"))?;
    let content = match body.strip_prefix("hex:") {
        Some(h) => (0..h.len())
            .step_by(2)
            .map(|i| {
                h.get(i..i + 2)
                    .and_then(|b| u8::from_str_radix(b, 16).ok())
                    .ok_or_else(|| format!("hex {h}"))
            })
            .collect::<Result<Vec<u8>, String>>()?,
        None => serde_json::from_str::<String>(body)
            .map_err(|e| format!("content {body}: {e}"))?
            .into_bytes(),
    };
    Ok(Some(FileState { mode, content }))
}

fn target(t: &Target) -> String {
    match t {
        Target::Nexthop(id) => format!("nhid {id}"),
        Target::Gateway {
            via,
            ifindex,
            onlink,
        } => format!(
            "via {via} dev {ifindex}{}",
            if *onlink { " onlink" } else { "" }
        ),
        Target::Other { kind, ifindex } => match ifindex {
            Some(i) => format!("type {kind} dev {i}"),
            None => format!("type {kind}"),
        },
    }
}

fn opt<T: ToString>(v: Option<T>) -> String {
    v.map_or_else(|| "-".to_string(), |v| v.to_string())
}

/// The text form of `o` (sorted where the order carries no meaning for the diff).
pub fn render(o: &Observed) -> String {
    let mut s = String::new();
    let w = &mut s;
    let _ = writeln!(
        w,
        "{}",
        if o.journaled {
            "journaled"
        } else {
            "unjournaled"
        }
    );
    let _ = writeln!(
        w,
        "style {}",
        match o.style {
            RouteStyle::Nexthops => "nexthops",
            RouteStyle::PlainGateways => "plain-gateways",
        }
    );
    for p in &o.protocols {
        let _ = writeln!(w, "protocol {p}");
    }
    for l in &o.links {
        let mut line = format!("link {} {}", l.index, l.name);
        if let Some(k) = &l.kind {
            let _ = write!(line, " kind {k}");
        }
        let _ = write!(line, " mtu {}", l.mtu);
        if let Some(m) = l.mac {
            let _ = write!(line, " mac {}", mac(m));
        }
        line.push_str(if l.up { " up" } else { " down" });
        if let Some(a) = &l.alias {
            let _ = write!(line, " alias {a}");
        }
        if let Some(m) = l.master {
            let _ = write!(line, " master {m}");
        }
        if o.owned.contains(&l.index) {
            line.push_str(" owned");
        }
        if let Some(x) = &l.vxlan {
            let _ = write!(
                line,
                " vxlan {} {} {} {} {}",
                x.vni,
                x.port,
                opt(x.local),
                opt(x.link),
                if x.learning { "learning" } else { "nolearning" }
            );
        }
        let _ = writeln!(w, "{line}");
    }
    for a in &o.addrs {
        let _ = writeln!(w, "addr {} {}", a.index, a.address);
    }
    for r in &o.routes {
        let _ = writeln!(
            w,
            "route {} {} proto {}",
            r.dst,
            target(&r.target),
            r.protocol
        );
    }
    for n in &o.nexthops {
        let _ = writeln!(
            w,
            "nexthop {} via {} dev {}{} proto {}",
            n.id,
            n.gateway,
            n.ifindex,
            if n.onlink { " onlink" } else { "" },
            n.protocol
        );
    }
    for id in &o.other_nexthop_ids {
        let _ = writeln!(w, "other-nexthop {id}");
    }
    let mut foreign: Vec<_> = o.foreign_routes.iter().collect();
    foreign.sort();
    for d in foreign {
        let _ = writeln!(w, "foreign-route {d}");
    }
    for n in &o.neighs {
        let _ = writeln!(
            w,
            "neigh {} {} lladdr {} {}",
            n.index,
            n.ip,
            opt(n.mac.map(mac)),
            if n.permanent { "permanent" } else { "cache" }
        );
    }
    for f in &o.fdb {
        let _ = writeln!(
            w,
            "fdb {} {} dst {} {}",
            f.index,
            mac(f.mac),
            opt(f.dst),
            if f.permanent { "permanent" } else { "cache" }
        );
    }
    for (k, v) in &o.sysctls {
        let _ = writeln!(w, "sysctl {k} {}", opt(v.as_deref()));
    }
    for (p, f) in &o.files {
        let _ = writeln!(w, "file {p} {}", content(f));
    }
    for (p, f) in &o.file_priors {
        let _ = writeln!(w, "prior {p} {}", content(f));
    }
    s
}

fn num<T: std::str::FromStr>(s: Option<&str>, what: &str) -> Result<T, String> {
    let s = s.ok_or_else(|| format!("missing {what}"))?;
    s.parse().map_err(|_| format!("bad {what}: {s}"))
}

fn word<'a>(w: &mut impl Iterator<Item = &'a str>, expect: &str) -> Result<(), String> {
    match w.next() {
        Some(x) if x == expect => Ok(()),
        other => Err(format!("expected `{expect}`, found {other:?}")),
    }
}

fn parse_target<'a>(
    w: &mut std::iter::Peekable<impl Iterator<Item = &'a str>>,
) -> Result<Target, String> {
    match w.next() {
        Some("nhid") => Ok(Target::Nexthop(num(w.next(), "nhid")?)),
        Some("via") => {
            let via = num(w.next(), "gateway")?;
            word(w, "dev")?;
            let ifindex = num(w.next(), "dev")?;
            let onlink = w.next_if_eq(&"onlink").is_some();
            Ok(Target::Gateway {
                via,
                ifindex,
                onlink,
            })
        }
        Some("type") => {
            let kind = num(w.next(), "type")?;
            let ifindex = match w.next_if_eq(&"dev") {
                Some(_) => Some(num(w.next(), "dev")?),
                None => None,
            };
            Ok(Target::Other { kind, ifindex })
        }
        other => Err(format!("route target {other:?}")),
    }
}

fn parse_line(o: &mut Observed, line: &str) -> Result<(), String> {
    let mut w = line.split(' ').filter(|x| !x.is_empty()).peekable();
    match w.next() {
        None => {}
        Some("journaled") => o.journaled = true,
        Some("unjournaled") => o.journaled = false,
        Some("style") => {
            o.style = match w.next() {
                Some("nexthops") => RouteStyle::Nexthops,
                Some("plain-gateways") => RouteStyle::PlainGateways,
                other => return Err(format!("style {other:?}")),
            }
        }
        Some("protocol") => {
            o.protocols.insert(num(w.next(), "protocol")?);
        }
        Some("link") => {
            let index = num(w.next(), "index")?;
            let name = w.next().ok_or("link name")?.to_string();
            let mut l = Link {
                index,
                name,
                kind: None,
                mtu: 0,
                mac: None,
                up: false,
                alias: None,
                master: None,
                vxlan: None,
            };
            while let Some(k) = w.next() {
                match k {
                    "kind" => l.kind = Some(KernelLinkKind::from_name(w.next().ok_or("kind")?)),
                    "mtu" => l.mtu = num(w.next(), "mtu")?,
                    "mac" => l.mac = Some(parse_mac(w.next().ok_or("mac")?)?),
                    "up" => l.up = true,
                    "down" => l.up = false,
                    "alias" => l.alias = Some(w.next().ok_or("alias")?.to_string()),
                    "master" => l.master = Some(num(w.next(), "master")?),
                    "owned" => {
                        o.owned.insert(index);
                    }
                    "vxlan" => {
                        let vni = num(w.next(), "vni")?;
                        let port = num(w.next(), "port")?;
                        let local = match w.next() {
                            Some("-") => None,
                            s => Some(num(s, "local")?),
                        };
                        let link = match w.next() {
                            Some("-") => None,
                            s => Some(num(s, "underlay")?),
                        };
                        let learning = w.next() == Some("learning");
                        l.vxlan = Some(Vxlan {
                            vni,
                            port,
                            local,
                            link,
                            learning,
                        });
                    }
                    other => return Err(format!("link attribute {other}")),
                }
            }
            o.links.push(l);
        }
        Some("addr") => o.addrs.push(Addr {
            index: num(w.next(), "index")?,
            address: num(w.next(), "address")?,
        }),
        Some("route") => {
            let dst = num(w.next(), "destination")?;
            let target = parse_target(&mut w)?;
            word(&mut w, "proto")?;
            o.routes.push(Route {
                dst,
                target,
                protocol: num(w.next(), "proto")?,
            });
        }
        Some("nexthop") => {
            let id = num(w.next(), "id")?;
            let Target::Gateway {
                via,
                ifindex,
                onlink,
            } = parse_target(&mut w)?
            else {
                return Err("nexthop without gateway".into());
            };
            word(&mut w, "proto")?;
            o.nexthops.push(Nexthop {
                id,
                gateway: via,
                ifindex,
                onlink,
                protocol: num(w.next(), "proto")?,
            });
        }
        Some("other-nexthop") => o.other_nexthop_ids.push(num(w.next(), "id")?),
        Some("foreign-route") => {
            o.foreign_routes.insert(num(w.next(), "destination")?);
        }
        Some("neigh") => {
            let index = num(w.next(), "index")?;
            let ip: Ipv4Addr = num(w.next(), "ip")?;
            word(&mut w, "lladdr")?;
            let mac = match w.next() {
                Some("-") => None,
                s => Some(parse_mac(s.ok_or("lladdr")?)?),
            };
            o.neighs.push(Neigh {
                index,
                ip,
                mac,
                permanent: w.next() == Some("permanent"),
            });
        }
        Some("fdb") => {
            let index = num(w.next(), "index")?;
            let mac = parse_mac(w.next().ok_or("fdb mac")?)?;
            word(&mut w, "dst")?;
            let dst = match w.next() {
                Some("-") => None,
                s => Some(num(s, "dst")?),
            };
            o.fdb.push(Fdb {
                index,
                mac,
                dst,
                permanent: w.next() == Some("permanent"),
            });
        }
        Some("sysctl") => {
            let key = w.next().ok_or("sysctl key")?.to_string();
            let value = match w.next() {
                Some("-") | None => None,
                Some(v) => Some(v.to_string()),
            };
            o.sysctls.insert(key, value);
        }
        Some(k @ ("file" | "prior")) => {
            // The content (JSON) may contain spaces: split the line into 4 fields only.
            let mut f = line.splitn(4, ' ');
            f.next();
            let path = f.next().ok_or("path")?.to_string();
            let mode = f.next().ok_or("mode")?;
            let state = parse_content(mode, f.next().ok_or("content")?)?;
            if k == "file" {
                o.files.insert(path, state);
            } else {
                o.file_priors.insert(path, state);
            }
        }
        Some(other) => return Err(format!("unknown object {other}")),
    }
    Ok(())
}

/// Parses the text form; errors name the line.
pub fn parse(text: &str) -> Result<Observed, String> {
    let mut o = Observed::default();
    for (n, line) in text.lines().enumerate() {
        let line = line.trim();
        if line.starts_with('#') {
            continue;
        }
        parse_line(&mut o, line).map_err(|e| format!("line {}: {e}: {line}", n + 1))?;
    }
    Ok(o)
}
