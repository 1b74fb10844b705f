//! iptables driver: podnet's rules live in two chains, `PODNET-POSTRTG` (nat) and
//! `PODNET-FWD` (filter), each reached by exactly one rule
//! `-m comment --comment podnet -j PODNET-…` appended to `POSTROUTING` / `FORWARD`.
//!
//! ```text
//! *nat
//! -A PODNET-POSTRTG -m mark --mark 0x4000/0x4000 -j RETURN    (kube-proxy masquerades it)
//! -A PODNET-POSTRTG -s NODE_SUBNET -d POD_CIDR -j RETURN      (one per exception)
//! -A PODNET-POSTRTG -s NODE_SUBNET ! -o BRIDGE -j MASQUERADE --random-fully
//! *filter
//! -A PODNET-FWD -s POD_CIDR -j ACCEPT
//! -A PODNET-FWD -d POD_CIDR -j ACCEPT
//! ```
//!
//! Observe: one `iptables-save` (all tables, read-only; in legacy mode it loads no table
//! module), of which only podnet's chains and the rules that jump to them are parsed.
//! Write: one `iptables-restore --noflush` holding, per table that drifted, the chain line
//! `:PODNET-… - [0:0]` (creates or flushes just that chain), the chain's rules in order,
//! `-D` for surplus or altered jumps, and the jump if it is missing. Nothing else in the
//! tables is named, so nothing else changes.
//!
//! The iptables mode (nft or legacy backend) is detected like kube-proxy's
//! iptables-wrapper does: a `KUBE-IPTABLES-HINT` / `KUBE-KUBELET-CANARY` chain decides;
//! else the backend with more rules wins; a tie (e.g. both empty) means nft.
//!
//! iptables cannot match "not in this list of destinations" in one rule, so exceptions are
//! `RETURN` rules before the `MASQUERADE`. With one masquerade rule per node (what the
//! compiler emits) this equals the nftables set match; with several rules whose sources
//! overlap, an earlier rule's exception also exempts the later rules.

use super::{
    Drift, DriftKind, Driver, Exec, FirewallDriver, FirewallError, FirewallPlan, FirewallSpec,
    RemoveReport, aggregated, dedup,
};

/// podnet's nat chain.
pub const NAT_CHAIN: &str = "PODNET-POSTRTG";
/// podnet's filter chain.
pub const FILTER_CHAIN: &str = "PODNET-FWD";
/// The comment on podnet's jump rules.
pub const COMMENT: &str = "podnet";
/// The nftables tables iptables-nft creates on first use (`nft` notation): podnet records
/// the ones that did not exist before its first write and removes them at teardown when
/// nothing else is left in them.
pub const TOOL_TABLES: &[&str] = &["ip nat", "ip filter"];

/// Which kernel backend the iptables tools drive.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum IptablesMode {
    /// `iptables-nft*`: rules kept in nftables tables `ip nat` / `ip filter`.
    Nft,
    /// `iptables-legacy*`: the x_tables kernel API.
    Legacy,
}

impl IptablesMode {
    pub fn save_program(self) -> &'static str {
        match self {
            IptablesMode::Nft => "iptables-nft-save",
            IptablesMode::Legacy => "iptables-legacy-save",
        }
    }

    pub fn restore_program(self) -> &'static str {
        match self {
            IptablesMode::Nft => "iptables-nft-restore",
            IptablesMode::Legacy => "iptables-legacy-restore",
        }
    }

    fn restore_args(self) -> &'static [&'static str] {
        match self {
            IptablesMode::Nft => &["--noflush"],
            // Legacy takes the global xtables lock: wait for it instead of failing.
            IptablesMode::Legacy => &["--noflush", "--wait=5"],
        }
    }
}

/// One of podnet's chains as observed or desired.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct ChainState {
    pub exists: bool,
    /// The chain's rules as `iptables-save` prints them (`-A PODNET-… …`), in order.
    pub rules: Vec<String>,
    /// Every rule of another chain that jumps or goes to this chain, as printed.
    pub jumps: Vec<String>,
}

/// podnet's two chains.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct IptablesState {
    pub nat: ChainState,
    pub filter: ChainState,
}

/// Where each owned chain lives and who jumps to it.
#[derive(Debug, Clone, Copy)]
struct Owned {
    table: &'static str,
    chain: &'static str,
    hook: &'static str,
}

const NAT: Owned = Owned {
    table: "nat",
    chain: NAT_CHAIN,
    hook: "POSTROUTING",
};
const FILTER: Owned = Owned {
    table: "filter",
    chain: FILTER_CHAIN,
    hook: "FORWARD",
};

impl Owned {
    fn jump(self) -> String {
        format!(
            "-A {} -m comment --comment {COMMENT} -j {}",
            self.hook, self.chain
        )
    }

    fn of(self, s: &IptablesState) -> &ChainState {
        if self.table == "nat" {
            &s.nat
        } else {
            &s.filter
        }
    }

    fn of_mut(self, s: &mut IptablesState) -> &mut ChainState {
        if self.table == "nat" {
            &mut s.nat
        } else {
            &mut s.filter
        }
    }
}

/// The iptables driver for one target and mode.
#[derive(Debug, Clone)]
pub struct IptablesDriver {
    exec: Exec,
    mode: IptablesMode,
}

impl IptablesDriver {
    pub fn new(exec: Exec, mode: IptablesMode) -> IptablesDriver {
        IptablesDriver { exec, mode }
    }

    pub fn mode(&self) -> IptablesMode {
        self.mode
    }

    /// Reads podnet's chains and jumps (one `iptables-save`).
    pub fn observe(&self) -> Result<IptablesState, FirewallError> {
        let text = self.exec.run(self.mode.save_program(), &[], None)?;
        Ok(parse_save(&text))
    }

    fn restore(&self, script: &str) -> Result<(), FirewallError> {
        self.exec.run(
            self.mode.restore_program(),
            self.mode.restore_args(),
            Some(script.as_bytes()),
        )?;
        Ok(())
    }
}

impl FirewallDriver for IptablesDriver {
    fn driver(&self) -> Driver {
        Driver::Iptables
    }

    fn plan(&self, spec: &FirewallSpec) -> Result<FirewallPlan, FirewallError> {
        let want = desired(spec);
        let have = self.observe()?;
        let drift = diff(&want, &have);
        let script = render(&want, &have);
        Ok(FirewallPlan {
            driver: Driver::Iptables,
            drift,
            script,
        })
    }

    fn execute(&self, plan: &FirewallPlan) -> Result<(), FirewallError> {
        match &plan.script {
            Some(script) => self.restore(script),
            None => Ok(()),
        }
    }

    fn remove(&self) -> Result<RemoveReport, FirewallError> {
        let have = self.observe()?;
        let mut removed = Vec::new();
        let mut errors = Vec::new();
        // One process for both tables; if it fails, each table alone, so a problem in one
        // does not keep the other (teardown is best effort).
        if let Some(script) = render_remove(&have, &[NAT, FILTER]) {
            if self.restore(&script).is_err() {
                for o in [NAT, FILTER] {
                    if let Some(s) = render_remove(&have, &[o])
                        && let Err(e) = self.restore(&s)
                    {
                        errors.push(e);
                    }
                }
            }
            for o in [NAT, FILTER] {
                let c = o.of(&have);
                removed.extend(c.jumps.iter().map(|j| format!("{} {j}", o.table)));
                if c.exists {
                    removed.push(format!("{} chain {}", o.table, o.chain));
                }
            }
        }
        match errors.len() {
            0 => Ok(RemoveReport {
                driver: Driver::Iptables,
                removed,
            }),
            1 => Err(errors.remove(0)),
            _ => Err(FirewallError::Teardown(errors)),
        }
    }
}

/// podnet's desired chains for `spec` (pure).
pub fn desired(spec: &FirewallSpec) -> IptablesState {
    let mut nat = Vec::new();
    for mark in spec.skip_marks() {
        nat.push(format!(
            "-A {NAT_CHAIN} -m mark --mark {mark:#x}/{mark:#x} -j RETURN"
        ));
    }
    for m in &spec.masquerade {
        for d in aggregated(&m.not_destinations) {
            nat.push(format!("-A {NAT_CHAIN} -s {} -d {d} -j RETURN", m.source));
        }
        nat.push(format!(
            "-A {NAT_CHAIN} -s {} ! -o {} -j MASQUERADE{}",
            m.source,
            m.not_out_interface,
            if m.random_fully {
                " --random-fully"
            } else {
                ""
            }
        ));
    }
    let mut filter = Vec::new();
    for net in dedup(&spec.forward_accept) {
        filter.push(format!("-A {FILTER_CHAIN} -s {net} -j ACCEPT"));
        filter.push(format!("-A {FILTER_CHAIN} -d {net} -j ACCEPT"));
    }
    IptablesState {
        nat: ChainState {
            exists: true,
            rules: nat,
            jumps: vec![NAT.jump()],
        },
        filter: ChainState {
            exists: true,
            rules: filter,
            jumps: vec![FILTER.jump()],
        },
    }
}

/// Extracts podnet's chains and the jumps to them from `iptables-save` output (pure).
pub fn parse_save(text: &str) -> IptablesState {
    let mut state = IptablesState::default();
    let mut table: Option<Owned> = None;
    for line in text.lines() {
        let line = line.trim_end();
        if let Some(name) = line.strip_prefix('*') {
            table = [NAT, FILTER].into_iter().find(|o| o.table == name);
            continue;
        }
        let Some(o) = table else { continue };
        if let Some(decl) = line.strip_prefix(':') {
            if decl.split_whitespace().next() == Some(o.chain) {
                o.of_mut(&mut state).exists = true;
            }
            continue;
        }
        let Some(rest) = line.strip_prefix("-A ") else {
            continue;
        };
        let chain = rest.split_whitespace().next().unwrap_or_default();
        if chain == o.chain {
            o.of_mut(&mut state).rules.push(line.to_owned());
        } else if targets(line, o.chain) {
            o.of_mut(&mut state).jumps.push(line.to_owned());
        }
    }
    state
}

/// Whether a saved rule jumps or goes to `chain`.
fn targets(line: &str, chain: &str) -> bool {
    let words: Vec<&str> = line.split_whitespace().collect();
    words
        .windows(2)
        .any(|w| matches!(w[0], "-j" | "--jump" | "-g" | "--goto") && w[1] == chain)
}

/// Everything that differs between desired and observed chains (pure).
pub fn diff(desired: &IptablesState, observed: &IptablesState) -> Vec<Drift> {
    let mut drift = Vec::new();
    for o in [NAT, FILTER] {
        let (want, have) = (o.of(desired), o.of(observed));
        let name = format!("iptables {} chain {}", o.table, o.chain);
        if !have.exists {
            drift.push(Drift::new(DriftKind::Missing, name.clone()));
        }
        if have.exists && have.rules != want.rules {
            drift.push(Drift::new(
                DriftKind::Differs,
                format!(
                    "rules of {name} ({} desired, {} found)",
                    want.rules.len(),
                    have.rules.len()
                ),
            ));
        }
        let canonical = o.jump();
        if !have.jumps.contains(&canonical) {
            drift.push(Drift::new(
                DriftKind::Missing,
                format!("{} rule `{canonical}`", o.table),
            ));
        }
        for j in surplus_jumps(have, &canonical) {
            drift.push(Drift::new(
                DriftKind::Unexpected,
                format!("{} rule `{j}`", o.table),
            ));
        }
    }
    drift
}

/// Jumps to delete: every altered one, and every copy of the canonical one after the first.
fn surplus_jumps<'a>(have: &'a ChainState, canonical: &str) -> Vec<&'a str> {
    let mut seen = false;
    let mut out = Vec::new();
    for j in &have.jumps {
        if j == canonical && !seen {
            seen = true;
        } else {
            out.push(j.as_str());
        }
    }
    out
}

/// The one `iptables-restore --noflush` input that converges the drifted tables, or `None`
/// when nothing differs (pure).
pub fn render(desired: &IptablesState, observed: &IptablesState) -> Option<String> {
    let mut out = String::new();
    for o in [NAT, FILTER] {
        let (want, have) = (o.of(desired), o.of(observed));
        let canonical = o.jump();
        let surplus = surplus_jumps(have, &canonical);
        let jump_ok = have.jumps.contains(&canonical);
        if have.exists && have.rules == want.rules && jump_ok && surplus.is_empty() {
            continue;
        }
        out.push_str(&format!("*{}\n:{} - [0:0]\n", o.table, o.chain));
        for r in &want.rules {
            out.push_str(r);
            out.push('\n');
        }
        for j in surplus {
            out.push_str(&delete_line(j));
            out.push('\n');
        }
        if !jump_ok {
            out.push_str(&canonical);
            out.push('\n');
        }
        out.push_str("COMMIT\n");
    }
    (!out.is_empty()).then_some(out)
}

/// The restore input that deletes podnet's jumps and chains in `tables`, or `None` when
/// none of them exists (pure).
fn render_remove(observed: &IptablesState, tables: &[Owned]) -> Option<String> {
    let mut out = String::new();
    for &o in tables {
        let have = o.of(observed);
        if !have.exists && have.jumps.is_empty() {
            continue;
        }
        out.push_str(&format!("*{}\n", o.table));
        for j in &have.jumps {
            out.push_str(&delete_line(j));
            out.push('\n');
        }
        if have.exists {
            out.push_str(&format!(":{} - [0:0]\n-X {}\n", o.chain, o.chain));
        }
        out.push_str("COMMIT\n");
    }
    (!out.is_empty()).then_some(out)
}

/// `-A CHAIN spec…` → `-D CHAIN spec…`.
fn delete_line(saved: &str) -> String {
    format!("-D {}", saved.strip_prefix("-A ").unwrap_or(saved))
}

/// Chooses the iptables mode from `iptables-legacy-save` and `iptables-nft-save` output
/// (pure): a kubelet hint chain decides; else the backend with more rules; a tie means nft.
pub fn decide_mode(legacy_save: &str, nft_save: &str) -> IptablesMode {
    let hinted = |text: &str| {
        text.lines().any(|l| {
            let name = l
                .strip_prefix(':')
                .and_then(|d| d.split_whitespace().next());
            matches!(name, Some("KUBE-IPTABLES-HINT" | "KUBE-KUBELET-CANARY"))
        })
    };
    if hinted(nft_save) {
        return IptablesMode::Nft;
    }
    if hinted(legacy_save) {
        return IptablesMode::Legacy;
    }
    let rules = |text: &str| text.lines().filter(|l| l.starts_with('-')).count();
    if rules(legacy_save) > rules(nft_save) {
        IptablesMode::Legacy
    } else {
        IptablesMode::Nft
    }
}

/// Detects the iptables mode of `exec`'s namespace (two read-only `*-save` runs). A backend
/// whose tool is missing or fails counts as empty.
pub fn detect_mode(exec: &Exec) -> Result<IptablesMode, FirewallError> {
    let save = |mode: IptablesMode| -> Result<String, FirewallError> {
        match exec.output(mode.save_program(), &[], None) {
            Ok(out) if out.status.success() => {
                Ok(String::from_utf8_lossy(&out.stdout).into_owned())
            }
            Ok(_) => Ok(String::new()),
            Err(FirewallError::Spawn { source, .. })
                if source.kind() == std::io::ErrorKind::NotFound =>
            {
                Ok(String::new())
            }
            Err(e) => Err(e),
        }
    };
    Ok(decide_mode(
        &save(IptablesMode::Legacy)?,
        &save(IptablesMode::Nft)?,
    ))
}

/// The jump rule podnet keeps for the chain of `table` (`nat` or `filter`).
pub fn jump_rule(table: &str) -> Option<String> {
    [NAT, FILTER]
        .into_iter()
        .find(|o| o.table == table)
        .map(Owned::jump)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::firewall::MasqueradeRule;
    use ipnet::Ipv4Net;

    fn net(s: &str) -> Ipv4Net {
        s.parse().expect("test CIDR")
    }

    fn spec() -> FirewallSpec {
        FirewallSpec {
            driver: Driver::Iptables,
            masquerade: vec![MasqueradeRule {
                source: net("172.7.21.0/24"),
                not_destinations: vec![net("172.7.0.0/16"), net("10.4.8.5/32")],
                not_out_interface: "cni0".into(),
                random_fully: true,
                skip_mark: Some(0x4000),
            }],
            forward_accept: vec![net("172.7.0.0/16")],
        }
    }

    const SAVED: &str = "# Generated by iptables-nft-save v1.8.9 (nf_tables)
*filter
:INPUT ACCEPT [0:0]
:FORWARD ACCEPT [0:0]
:OUTPUT ACCEPT [0:0]
:PODNET-FWD - [0:0]
-A FORWARD -m comment --comment podnet -j PODNET-FWD
-A PODNET-FWD -s 172.7.0.0/16 -j ACCEPT
-A PODNET-FWD -d 172.7.0.0/16 -j ACCEPT
COMMIT
*nat
:PREROUTING ACCEPT [0:0]
:POSTROUTING ACCEPT [0:0]
:PODNET-POSTRTG - [0:0]
-A POSTROUTING -s 1.2.3.0/24 -j MASQUERADE
-A POSTROUTING -m comment --comment podnet -j PODNET-POSTRTG
-A PODNET-POSTRTG -m mark --mark 0x4000/0x4000 -j RETURN
-A PODNET-POSTRTG -s 172.7.21.0/24 -d 10.4.8.5/32 -j RETURN
-A PODNET-POSTRTG -s 172.7.21.0/24 -d 172.7.0.0/16 -j RETURN
-A PODNET-POSTRTG -s 172.7.21.0/24 ! -o cni0 -j MASQUERADE --random-fully
COMMIT
";

    #[test]
    fn saved_state_matches_desired() {
        let have = parse_save(SAVED);
        assert_eq!(diff(&desired(&spec()), &have), Vec::<Drift>::new());
        assert_eq!(render(&desired(&spec()), &have), None);
    }

    #[test]
    fn surplus_jump_is_deleted_and_only_its_table_rewritten() {
        let text = SAVED.replace(
            "-A FORWARD -m comment --comment podnet -j PODNET-FWD\n",
            "-A FORWARD -m comment --comment podnet -j PODNET-FWD\n-A FORWARD -s 9.9.9.9/32 -j PODNET-FWD\n",
        );
        let script = render(&desired(&spec()), &parse_save(&text)).expect("drift");
        assert!(
            script.contains("-D FORWARD -s 9.9.9.9/32 -j PODNET-FWD\n"),
            "{script}"
        );
        assert!(!script.contains("*nat"), "{script}");
    }

    #[test]
    fn mode_detection() {
        assert_eq!(decide_mode("", ""), IptablesMode::Nft);
        assert_eq!(decide_mode(SAVED, ""), IptablesMode::Legacy);
        assert_eq!(decide_mode(SAVED, SAVED), IptablesMode::Nft);
        assert_eq!(
            decide_mode(":KUBE-IPTABLES-HINT - [0:0]\n", SAVED),
            IptablesMode::Legacy
        );
    }
}
