//! flannel's firewall on a node, for `--adopt`: the iptables chains `FLANNEL-POSTRTG`
//! (nat) and `FLANNEL-FWD` (filter) with every rule of their table that jumps to them
//! (flannel appends `-m comment --comment "flanneld masq" -j FLANNEL-POSTRTG` to
//! `POSTROUTING` and `… "flanneld forward" -j FLANNEL-FWD` to `FORWARD`), in either iptables
//! backend, and flannel's nftables tables `ip flannel-ipv4` / `ip6 flannel-ipv6` (flannel
//! ≥ 0.25 with `EnableNFTables`). [`observe`] reads their exact state (the rules as
//! `iptables-save` prints them with each jump's position in its chain, each table as `nft
//! list table` prints it), which the journal keeps; [`remove`] deletes them in one
//! `iptables-restore --noflush` per backend and one `nft -f -`; [`restore`] puts them back
//! as they were (jumps at their old positions). Nothing else is named, so nothing else
//! changes. The parsing and rendering are pure functions.

use serde::{Deserialize, Serialize};

use super::{Exec, FirewallError, IptablesMode};

/// flannel's iptables chains: (table, chain).
pub const CHAINS: &[(&str, &str)] = &[("nat", "FLANNEL-POSTRTG"), ("filter", "FLANNEL-FWD")];
/// flannel's nftables tables: (family, name).
pub const TABLES: &[(&str, &str)] = &[("ip", "flannel-ipv4"), ("ip6", "flannel-ipv6")];

/// The iptables backend a chain was found in.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Backend {
    Nft,
    Legacy,
}

impl Backend {
    fn mode(self) -> IptablesMode {
        match self {
            Backend::Nft => IptablesMode::Nft,
            Backend::Legacy => IptablesMode::Legacy,
        }
    }
}

/// A rule of another chain that jumps to a flannel chain, where it was.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PriorJump {
    /// The chain it is in (`POSTROUTING`).
    pub chain: String,
    /// Its position in that chain (1 = first), as `iptables -I CHAIN N` takes it.
    pub position: usize,
    /// The rule as `iptables-save` prints it (`-A POSTROUTING … -j FLANNEL-POSTRTG`).
    pub rule: String,
}

/// One of flannel's iptables chains as it was.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PriorChain {
    pub backend: Backend,
    pub table: String,
    pub chain: String,
    /// Its rules as `iptables-save` prints them, in order.
    pub rules: Vec<String>,
    pub jumps: Vec<PriorJump>,
}

/// One of flannel's nftables tables as it was.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PriorTable {
    pub family: String,
    pub name: String,
    /// `nft list table FAMILY NAME` (valid `nft -f` input).
    pub text: String,
}

impl PriorChain {
    /// The same chain (backend, table, name), whatever its rules.
    fn is(&self, other: &PriorChain) -> bool {
        self.backend == other.backend && self.table == other.table && self.chain == other.chain
    }

    /// How the chain is named in podnet's output.
    fn object(&self) -> String {
        format!("iptables {} chain {}", self.table, self.chain)
    }
}

impl PriorTable {
    /// The same table (family, name), whatever its content.
    fn is(&self, other: &PriorTable) -> bool {
        self.family == other.family && self.name == other.name
    }

    /// How the table is named in podnet's output.
    fn object(&self) -> String {
        format!("nftables table {} {}", self.family, self.name)
    }
}

/// flannel's firewall state on a node.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PriorFirewall {
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub chains: Vec<PriorChain>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub tables: Vec<PriorTable>,
}

impl PriorFirewall {
    pub fn is_empty(&self) -> bool {
        self.chains.is_empty() && self.tables.is_empty()
    }

    /// One line per chain and table (`iptables nat chain FLANNEL-POSTRTG (7 rules, jump
    /// from POSTROUTING)`).
    pub fn lines(&self) -> Vec<String> {
        let mut out: Vec<String> = self
            .chains
            .iter()
            .map(|c| {
                let from: Vec<&str> = c.jumps.iter().map(|j| j.chain.as_str()).collect();
                format!(
                    "iptables{} {} chain {} ({} rule(s){})",
                    match c.backend {
                        Backend::Nft => "",
                        Backend::Legacy => "-legacy",
                    },
                    c.table,
                    c.chain,
                    c.rules.len(),
                    if from.is_empty() {
                        String::new()
                    } else {
                        format!(", jump from {}", from.join(" "))
                    }
                )
            })
            .collect();
        out.extend(self.tables.iter().map(|t| t.object()));
        out
    }
}

/// flannel's chains in one `iptables-save` output (pure).
pub fn parse_save(backend: Backend, text: &str) -> Vec<PriorChain> {
    let mut out = Vec::new();
    for &(table, chain) in CHAINS {
        let mut current: Option<&str> = None;
        let mut exists = false;
        let mut rules = Vec::new();
        let mut jumps = Vec::new();
        let mut positions: std::collections::BTreeMap<&str, usize> = Default::default();
        for line in text.lines() {
            let line = line.trim_end();
            if let Some(name) = line.strip_prefix('*') {
                current = Some(name);
                continue;
            }
            if current != Some(table) {
                continue;
            }
            if let Some(decl) = line.strip_prefix(':') {
                exists |= decl.split_whitespace().next() == Some(chain);
                continue;
            }
            let Some(rest) = line.strip_prefix("-A ") else {
                continue;
            };
            let Some(in_chain) = rest.split_whitespace().next() else {
                continue;
            };
            let pos = positions.entry(in_chain).or_insert(0);
            *pos += 1;
            if in_chain == chain {
                rules.push(line.to_string());
            } else if targets(line, chain) {
                jumps.push(PriorJump {
                    chain: in_chain.to_string(),
                    position: *pos,
                    rule: line.to_string(),
                });
            }
        }
        if exists {
            out.push(PriorChain {
                backend,
                table: table.to_string(),
                chain: chain.to_string(),
                rules,
                jumps,
            });
        }
    }
    out
}

/// Whether a saved rule jumps or goes to `chain`.
fn targets(line: &str, chain: &str) -> bool {
    let words: Vec<&str> = line.split_whitespace().collect();
    words
        .windows(2)
        .any(|w| matches!(w[0], "-j" | "--jump" | "-g" | "--goto") && w[1] == chain)
}

/// The `iptables-restore --noflush` input that deletes `chains` (all of one backend) and
/// the jumps to them (pure).
pub fn render_remove(chains: &[&PriorChain]) -> String {
    let mut s = String::new();
    for &(table, _) in CHAINS {
        let of: Vec<&&PriorChain> = chains.iter().filter(|c| c.table == table).collect();
        if of.is_empty() {
            continue;
        }
        s.push_str(&format!("*{table}\n"));
        for c in &of {
            for j in &c.jumps {
                s.push_str(&format!(
                    "-D {}\n",
                    j.rule.strip_prefix("-A ").unwrap_or(&j.rule)
                ));
            }
        }
        for c in &of {
            s.push_str(&format!("-F {}\n-X {}\n", c.chain, c.chain));
        }
        s.push_str("COMMIT\n");
    }
    s
}

/// The `iptables-restore --noflush` input that puts `chains` back (pure): each chain with
/// its rules, then each jump inserted at its old position (clamped to one past the rules
/// its chain has now, from `now`, the backend's current `iptables-save`).
pub fn render_restore(chains: &[&PriorChain], now: &str) -> String {
    let mut s = String::new();
    for &(table, _) in CHAINS {
        let of: Vec<&&PriorChain> = chains.iter().filter(|c| c.table == table).collect();
        if of.is_empty() {
            continue;
        }
        s.push_str(&format!("*{table}\n"));
        for c in &of {
            s.push_str(&format!(":{} - [0:0]\n", c.chain));
        }
        for c in &of {
            for r in &c.rules {
                s.push_str(r);
                s.push('\n');
            }
        }
        let mut jumps: Vec<&PriorJump> = of.iter().flat_map(|c| c.jumps.iter()).collect();
        jumps.sort_by_key(|j| j.position);
        let mut added: std::collections::BTreeMap<&str, usize> = Default::default();
        for j in jumps {
            let extra = added.entry(j.chain.as_str()).or_insert(0);
            let len = rules_in(now, table, &j.chain) + *extra;
            let pos = j.position.min(len + 1);
            let spec = j
                .rule
                .strip_prefix("-A ")
                .and_then(|r| r.strip_prefix(j.chain.as_str()))
                .unwrap_or_default();
            s.push_str(&format!("-I {} {pos}{spec}\n", j.chain));
            *extra += 1;
        }
        s.push_str("COMMIT\n");
    }
    s
}

/// How many rules `chain` of `table` has in an `iptables-save` output.
fn rules_in(save: &str, table: &str, chain: &str) -> usize {
    let mut current = None;
    let mut n = 0;
    for line in save.lines() {
        if let Some(name) = line.strip_prefix('*') {
            current = Some(name);
        } else if current == Some(table)
            && line
                .strip_prefix("-A ")
                .and_then(|r| r.split_whitespace().next())
                == Some(chain)
        {
            n += 1;
        }
    }
    n
}

/// `iptables-save` of one backend, or `None` when its tool is not installed or cannot
/// read that backend (as the iptables mode detection counts it: empty).
fn save(exec: &Exec, backend: Backend) -> Result<Option<String>, FirewallError> {
    let program = backend.mode().save_program();
    match exec.output(program, &[], None) {
        Ok(out) if out.status.success() => {
            Ok(Some(String::from_utf8_lossy(&out.stdout).into_owned()))
        }
        Ok(_) => Ok(None),
        Err(FirewallError::Spawn { source, .. })
            if source.kind() == std::io::ErrorKind::NotFound =>
        {
            Ok(None)
        }
        Err(e) => Err(e),
    }
}

/// Reads flannel's firewall state in `exec`'s namespace (read-only).
pub fn observe(exec: &Exec) -> Result<PriorFirewall, FirewallError> {
    let mut fw = PriorFirewall::default();
    for backend in [Backend::Nft, Backend::Legacy] {
        if let Some(text) = save(exec, backend)? {
            fw.chains.extend(parse_save(backend, &text));
        }
    }
    if nft_installed(exec) {
        for &(family, name) in TABLES {
            let out = exec.output("nft", &["list", "table", family, name], None)?;
            if out.status.success() {
                fw.tables.push(PriorTable {
                    family: family.to_string(),
                    name: name.to_string(),
                    text: String::from_utf8_lossy(&out.stdout).into_owned(),
                });
            }
        }
    }
    Ok(fw)
}

fn nft_installed(exec: &Exec) -> bool {
    exec.output("nft", &["--version"], None)
        .is_ok_and(|o| o.status.success())
}

/// Deletes what `fw` lists (as it is now: chains and tables already gone are skipped).
/// Returns one line per object removed.
pub fn remove(exec: &Exec, fw: &PriorFirewall) -> Result<Vec<String>, FirewallError> {
    let now = observe(exec)?;
    let mut done = Vec::new();
    for backend in [Backend::Nft, Backend::Legacy] {
        let chains: Vec<&PriorChain> = now
            .chains
            .iter()
            .filter(|c| c.backend == backend)
            .filter(|c| fw.chains.iter().any(|p| p.is(c)))
            .collect();
        if chains.is_empty() {
            continue;
        }
        let mode = backend.mode();
        exec.run(
            mode.restore_program(),
            &["--noflush"],
            Some(render_remove(&chains).as_bytes()),
        )?;
        done.extend(chains.iter().map(|c| c.object()));
    }
    let tables: Vec<&PriorTable> = now
        .tables
        .iter()
        .filter(|t| fw.tables.iter().any(|p| p.is(t)))
        .collect();
    if !tables.is_empty() {
        let script: String = tables
            .iter()
            .map(|t| format!("delete table {} {}\n", t.family, t.name))
            .collect();
        exec.run("nft", &["-f", "-"], Some(script.as_bytes()))?;
        done.extend(tables.iter().map(|t| t.object()));
    }
    Ok(done)
}

/// Puts back what `fw` lists that is not there now. Returns one line per object restored.
pub fn restore(exec: &Exec, fw: &PriorFirewall) -> Result<Vec<String>, FirewallError> {
    let now = observe(exec)?;
    let mut done = Vec::new();
    for backend in [Backend::Nft, Backend::Legacy] {
        let chains: Vec<&PriorChain> = fw
            .chains
            .iter()
            .filter(|c| c.backend == backend)
            .filter(|c| !now.chains.iter().any(|p| p.is(c)))
            .collect();
        if chains.is_empty() {
            continue;
        }
        let current = save(exec, backend)?.unwrap_or_default();
        let mode = backend.mode();
        exec.run(
            mode.restore_program(),
            &["--noflush"],
            Some(render_restore(&chains, &current).as_bytes()),
        )?;
        done.extend(chains.iter().map(|c| c.object()));
    }
    let tables: Vec<&PriorTable> = fw
        .tables
        .iter()
        .filter(|t| !now.tables.iter().any(|p| p.is(t)))
        .collect();
    if !tables.is_empty() {
        let script: String = tables.iter().map(|t| t.text.clone() + "\n").collect();
        exec.run("nft", &["-f", "-"], Some(script.as_bytes()))?;
        done.extend(tables.iter().map(|t| t.object()));
    }
    Ok(done)
}

#[cfg(test)]
mod tests {
    use super::*;

    const SAVE: &str = "# Generated by iptables-nft-save v1.8.9\n*nat\n:PREROUTING ACCEPT [0:0]\n\
:POSTROUTING ACCEPT [0:0]\n:FLANNEL-POSTRTG - [0:0]\n:KUBE-POSTROUTING - [0:0]\n\
-A POSTROUTING -j KUBE-POSTROUTING\n\
-A POSTROUTING -m comment --comment \"flanneld masq\" -j FLANNEL-POSTRTG\n\
-A FLANNEL-POSTRTG -m mark --mark 0x4000/0x4000 -m comment --comment \"flanneld masq\" -j RETURN\n\
-A FLANNEL-POSTRTG -s 10.244.0.0/16 ! -d 224.0.0.0/4 -m comment --comment \"flanneld masq\" -j MASQUERADE --random-fully\n\
COMMIT\n*filter\n:FORWARD DROP [0:0]\n:FLANNEL-FWD - [0:0]\n\
-A FORWARD -m comment --comment \"flanneld forward\" -j FLANNEL-FWD\n\
-A FLANNEL-FWD -s 10.244.0.0/16 -m comment --comment \"flanneld forward\" -j ACCEPT\nCOMMIT\n";

    #[test]
    fn chains_jumps_and_positions_are_read_and_rendered_back() {
        let chains = parse_save(Backend::Nft, SAVE);
        assert_eq!(chains.len(), 2);
        assert_eq!(chains[0].chain, "FLANNEL-POSTRTG");
        assert_eq!(chains[0].rules.len(), 2);
        assert_eq!(chains[0].jumps[0].position, 2);
        assert_eq!(chains[1].jumps[0].chain, "FORWARD");
        let refs: Vec<&PriorChain> = chains.iter().collect();
        let rm = render_remove(&refs);
        assert!(rm.contains(
            "*nat\n-D POSTROUTING -m comment --comment \"flanneld masq\" -j FLANNEL-POSTRTG\n\
             -F FLANNEL-POSTRTG\n-X FLANNEL-POSTRTG\nCOMMIT\n"
        ));
        // With the jump gone, POSTROUTING holds one rule: position 2 stays 2.
        let now = "*nat\n-A POSTROUTING -j KUBE-POSTROUTING\nCOMMIT\n";
        let back = render_restore(&refs, now);
        assert!(
            back.contains(
                ":FLANNEL-POSTRTG - [0:0]\n-A FLANNEL-POSTRTG -m mark --mark 0x4000/0x4000"
            )
        );
        assert!(back.contains(
            "-I POSTROUTING 2 -m comment --comment \"flanneld masq\" -j FLANNEL-POSTRTG\n"
        ));
        // An emptied FORWARD: position 1 at most.
        assert!(back.contains("-I FORWARD 1 -m comment"), "{back}");
        assert!(parse_save(Backend::Nft, "*nat\n:POSTROUTING ACCEPT [0:0]\nCOMMIT\n").is_empty());
    }
}
