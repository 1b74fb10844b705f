//! The shell rendering of a plan: a POSIX `sh` script of `ip`, `bridge`, `sysctl`, `nft` (or
//! `iptables-restore`) commands and file writes that brings a node to the plan. Running it
//! again changes nothing: links are created only when missing (and then carry podnet's
//! ifalias marker, as the applier's do), everything else is replaced; routes carry the
//! plan's route protocol.
//! It adds and replaces only; removing stale objects is the applier's job.

use std::borrow::Cow;
use std::fmt::Write as _;
use std::path::Path;

use super::rooted;
use super::types::{Firewall, FirewallDriver, LinkKind, NodePlan};

/// The nftables table podnet owns (family `inet`).
pub const NFT_TABLE: &str = "podnet";
/// The iptables chains podnet owns, in the `nat` and `filter` tables.
pub const IPT_NAT_CHAIN: &str = "PODNET-POSTRTG";
pub const IPT_FILTER_CHAIN: &str = "PODNET-FWD";
/// The ifalias on every link podnet creates (the applier's ownership marker).
pub const LINK_MARKER: &str = "podnet";
/// The comment on the one jump into each owned iptables chain.
pub const IPT_COMMENT: &str = "podnet";

/// Renders `plan` as a `#!/bin/sh` script; `root` prefixes every file path.
pub fn render_shell(plan: &NodePlan, root: Option<&Path>) -> String {
    let mut s = String::new();
    // Writing to a String cannot fail.
    let _ = write_shell(&mut s, plan, root);
    s
}

fn write_shell(s: &mut String, p: &NodePlan, root: Option<&Path>) -> std::fmt::Result {
    writeln!(s, "#!/bin/sh")?;
    writeln!(
        s,
        "# podnet plan for node {} of cluster {} (plan format {}); safe to run again.",
        one_line(&p.node),
        one_line(&p.cluster),
        p.format_version
    )?;
    writeln!(s, "set -eu")?;

    if !p.sysctls.is_empty() {
        writeln!(s, "\n# sysctls")?;
    }
    for x in &p.sysctls {
        writeln!(
            s,
            "sysctl -w {} >/dev/null",
            q(&format!("{}={}", x.key, x.value))
        )?;
    }

    if !p.links.is_empty() {
        writeln!(s, "\n# links")?;
    }
    for l in &p.links {
        let name = q(&l.name);
        let add = match (l.kind, &l.vxlan) {
            (LinkKind::Vxlan, Some(v)) => format!(
                "ip link add name {name} type vxlan id {} local {} dev {} dstport {} {}",
                v.vni,
                v.local,
                q(&v.dev),
                v.port,
                if v.learning { "learning" } else { "nolearning" }
            ),
            // A vxlan without attributes cannot be created; `ip` reports the missing id.
            (LinkKind::Vxlan, None) => format!("ip link add name {name} type vxlan"),
            (LinkKind::Bridge, _) => format!("ip link add name {name} type bridge"),
        };
        // Marked like the applier marks the links it creates (the kernel ignores an
        // ifalias given on creation), so a later `podnet apply` knows them as podnet's.
        writeln!(
            s,
            "ip link show dev {name} >/dev/null 2>&1 || {{ {add} && ip link set dev {name} \
             alias {LINK_MARKER}; }}"
        )?;
        write!(s, "ip link set dev {name}")?;
        if let Some(m) = &l.mac {
            write!(s, " address {m}")?;
        }
        writeln!(s, " mtu {} {}", l.mtu, if l.up { "up" } else { "down" })?;
    }

    if !p.addresses.is_empty() {
        writeln!(s, "\n# addresses")?;
    }
    for a in &p.addresses {
        writeln!(s, "ip addr replace {} dev {}", a.address, q(&a.dev))?;
    }

    if !p.routes.is_empty() {
        writeln!(s, "\n# routes")?;
    }
    for r in &p.routes {
        writeln!(
            s,
            "ip route replace {} via {} dev {}{} proto {}",
            r.dst,
            r.via,
            q(&r.dev),
            if r.onlink { " onlink" } else { "" },
            p.route_protocol
        )?;
    }

    if !p.neighbours.is_empty() {
        writeln!(s, "\n# neighbours")?;
    }
    for n in &p.neighbours {
        writeln!(
            s,
            "ip neigh replace {} lladdr {} dev {} nud permanent",
            n.ip,
            n.mac,
            q(&n.dev)
        )?;
    }

    if !p.fdb.is_empty() {
        writeln!(s, "\n# forwarding database")?;
    }
    for f in &p.fdb {
        writeln!(
            s,
            "bridge fdb replace {} dev {} dst {} self permanent",
            f.mac,
            q(&f.dev),
            f.dst
        )?;
    }

    match p.firewall.driver {
        FirewallDriver::Nftables => nft(s, &p.firewall)?,
        FirewallDriver::Iptables => iptables(s, &p.firewall)?,
    }

    if !p.files.is_empty() {
        writeln!(s, "\n# files (written beside, then renamed into place)")?;
    }
    for f in &p.files {
        let path = rooted(root, &f.path);
        let tmp = format!("{path}.podnet-tmp");
        if let Some(dir) = Path::new(&path).parent().and_then(Path::to_str)
            && !dir.is_empty()
        {
            writeln!(s, "mkdir -p {}", q(dir))?;
        }
        let lines = || f.content.lines();
        if f.content.ends_with('\n') {
            let mut eof = "PODNET_EOF".to_string();
            while lines().any(|l| l == eof) {
                eof.push('_');
            }
            writeln!(s, "cat > {} <<'{eof}'", q(&tmp))?;
            s.push_str(&f.content);
            writeln!(s, "{eof}")?;
        } else {
            writeln!(s, "printf '%s' {} > {}", quote(&f.content), q(&tmp))?;
        }
        writeln!(s, "chmod {:04o} {}", f.mode, q(&tmp))?;
        writeln!(s, "mv -f {} {}", q(&tmp), q(&path))?;
    }
    Ok(())
}

/// The whole `inet podnet` table, replaced in one transaction: `add` + `delete` removes any
/// previous version (nft 1.0.6 has no `destroy`), then the table is declared again.
fn nft(s: &mut String, fw: &Firewall) -> std::fmt::Result {
    writeln!(
        s,
        "\n# firewall: table inet {NFT_TABLE}, replaced atomically (as the applier writes it)"
    )?;
    writeln!(s, "nft -f - <<'PODNET_NFT'")?;
    writeln!(s, "add table inet {NFT_TABLE}")?;
    writeln!(s, "delete table inet {NFT_TABLE}")?;
    writeln!(s, "table inet {NFT_TABLE} {{")?;
    // One named interval set per masquerade rule with exceptions (`nomasq`, `nomasq_1`, …),
    // its elements merged, like the applier's driver.
    for (i, m) in fw.masquerade.iter().enumerate() {
        if m.not_destinations.is_empty() {
            continue;
        }
        let nets: Vec<String> = ipnet::Ipv4Net::aggregate(&m.not_destinations)
            .iter()
            .map(ToString::to_string)
            .collect();
        writeln!(s, "\tset {} {{", set_name(i))?;
        writeln!(s, "\t\ttype ipv4_addr")?;
        writeln!(s, "\t\tflags interval")?;
        writeln!(s, "\t\telements = {{ {} }}", nets.join(", "))?;
        writeln!(s, "\t}}")?;
    }
    // Both chains always exist while podnet manages the firewall (empty = accept all).
    writeln!(s, "\tchain postrouting {{")?;
    writeln!(
        s,
        "\t\ttype nat hook postrouting priority srcnat; policy accept;"
    )?;
    for mark in fw.skip_marks() {
        writeln!(s, "\t\tmeta mark & {mark:#x} == {mark:#x} return")?;
    }
    for (i, m) in fw.masquerade.iter().enumerate() {
        write!(s, "\t\tip saddr {}", m.source)?;
        if !m.not_destinations.is_empty() {
            write!(s, " ip daddr != @{}", set_name(i))?;
        }
        writeln!(
            s,
            " oifname != {} masquerade{}",
            nft_string(&m.not_out_interface),
            if m.random_fully { " fully-random" } else { "" }
        )?;
    }
    writeln!(s, "\t}}")?;
    writeln!(s, "\tchain forward {{")?;
    writeln!(
        s,
        "\t\ttype filter hook forward priority filter; policy accept;"
    )?;
    let mut seen = Vec::new();
    for n in &fw.forward_accept {
        if seen.contains(n) {
            continue;
        }
        seen.push(*n);
        writeln!(s, "\t\tip saddr {n} accept")?;
        writeln!(s, "\t\tip daddr {n} accept")?;
    }
    writeln!(s, "\t}}")?;
    writeln!(s, "}}")?;
    writeln!(s, "PODNET_NFT")
}

/// The name of the exception set of masquerade rule `i` (the applier's driver names them
/// the same way).
fn set_name(i: usize) -> String {
    if i == 0 {
        "nomasq".to_string()
    } else {
        format!("nomasq_{i}")
    }
}

/// The owned chains, each declared (created or flushed) and filled in one
/// `iptables-restore --noflush` per table, then one commented jump to each, added only when
/// missing. `! -d` takes one network, so each exception is a `RETURN` before the masquerade.
fn iptables(s: &mut String, fw: &Firewall) -> std::fmt::Result {
    writeln!(
        s,
        "\n# firewall: chains {IPT_NAT_CHAIN} (nat) and {IPT_FILTER_CHAIN} (filter)"
    )?;
    writeln!(s, "iptables-restore --noflush <<'PODNET_IPT'")?;
    writeln!(s, "*nat")?;
    writeln!(s, ":{IPT_NAT_CHAIN} - [0:0]")?;
    for mark in fw.skip_marks() {
        writeln!(
            s,
            "-A {IPT_NAT_CHAIN} -m mark --mark {mark:#x}/{mark:#x} -j RETURN"
        )?;
    }
    for m in &fw.masquerade {
        for d in &m.not_destinations {
            writeln!(s, "-A {IPT_NAT_CHAIN} -s {} -d {d} -j RETURN", m.source)?;
        }
        writeln!(
            s,
            "-A {IPT_NAT_CHAIN} -s {} ! -o {} -j MASQUERADE{}",
            m.source,
            ipt_word(&m.not_out_interface),
            if m.random_fully {
                " --random-fully"
            } else {
                ""
            }
        )?;
    }
    writeln!(s, "COMMIT")?;
    writeln!(s, "*filter")?;
    writeln!(s, ":{IPT_FILTER_CHAIN} - [0:0]")?;
    for n in &fw.forward_accept {
        writeln!(s, "-A {IPT_FILTER_CHAIN} -s {n} -j ACCEPT")?;
        writeln!(s, "-A {IPT_FILTER_CHAIN} -d {n} -j ACCEPT")?;
    }
    writeln!(s, "COMMIT")?;
    writeln!(s, "PODNET_IPT")?;
    for (table, chain, from, insert) in [
        ("nat", IPT_NAT_CHAIN, "POSTROUTING", "-A"),
        // First in FORWARD, before rules (or a DROP policy) of other tools.
        ("filter", IPT_FILTER_CHAIN, "FORWARD", "-I"),
    ] {
        let jump = format!("{from} -m comment --comment {IPT_COMMENT} -j {chain}");
        writeln!(
            s,
            "iptables -t {table} -C {jump} 2>/dev/null || iptables -t {table} {insert} {jump}"
        )?;
    }
    Ok(())
}

/// A shell word: bare when it has only safe characters, else single-quoted.
fn q(s: &str) -> Cow<'_, str> {
    let safe = |c: char| c.is_ascii_alphanumeric() || "._-/:=@%+,".contains(c);
    if !s.is_empty() && s.chars().all(safe) {
        Cow::Borrowed(s)
    } else {
        Cow::Owned(quote(s))
    }
}

/// Always single-quoted (`'` becomes `'\''`).
fn quote(s: &str) -> String {
    format!("'{}'", s.replace('\'', r"'\''"))
}

/// An nft string literal (nft has no escapes: a `"` in a name makes `nft` reject the script,
/// which `set -e` turns into a failure rather than a wrong rule).
fn nft_string(s: &str) -> String {
    format!("\"{s}\"")
}

/// An iptables-restore word (quoted when it has characters the restore parser splits on).
fn ipt_word(s: &str) -> Cow<'_, str> {
    if s.chars()
        .any(|c| c.is_whitespace() || c == '"' || c == '\'')
    {
        Cow::Owned(format!("\"{s}\""))
    } else {
        Cow::Borrowed(s)
    }
}

/// A value for a comment line: line breaks replaced.
fn one_line(s: &str) -> String {
    s.replace(['\n', '\r'], " ")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quoting() {
        assert_eq!(q("eth0"), "eth0");
        assert_eq!(
            q("/etc/cni/net.d/10-podnet.conflist"),
            "/etc/cni/net.d/10-podnet.conflist"
        );
        assert_eq!(q("it's"), r"'it'\''s'");
        assert_eq!(q("a$b"), "'a$b'");
        assert_eq!(q(""), "''");
    }
}
