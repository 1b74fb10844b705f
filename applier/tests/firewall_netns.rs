//! Firewall drivers against the real kernel, each test inside network namespaces it creates
//! and deletes: masquerade modes, idempotence, drift repair, driver switches, teardown, and
//! foreign rules (kube-proxy, Docker, a foreign nft table) left byte-for-byte untouched.
//! Needs root, `nft` and the iptables tools; without them the tests fail, they never skip.

mod common;

use common::NetNs;
use ipnet::Ipv4Net;
use podnet::firewall::{
    DriftKind, Driver, Exec, Firewall, FirewallDriver, FirewallError, FirewallSpec, IptablesDriver,
    IptablesMode, MasqueradeRule, NftDriver, iptables,
};
use serde_json::{Value, json};

const POD: &str = "172.7.0.0/16";
const NODE: &str = "172.7.21.0/24";
const BRIDGE: &str = "cni0";

fn net(s: &str) -> Ipv4Net {
    s.parse().expect("test CIDR")
}

#[derive(Clone, Copy)]
enum Masq {
    Off,
    All,
    Outbound(&'static [&'static str]),
}

fn spec(driver: Driver, masq: Masq) -> FirewallSpec {
    let rule = |not_destinations: Vec<Ipv4Net>| MasqueradeRule {
        source: net(NODE),
        not_destinations,
        not_out_interface: BRIDGE.into(),
        // The rules these tests were written for; the flannel-parity defaults have their own tests.
        random_fully: false,
        skip_mark: None,
    };
    FirewallSpec {
        driver,
        masquerade: match masq {
            Masq::Off => Vec::new(),
            Masq::All => vec![rule(Vec::new())],
            Masq::Outbound(except) => {
                let mut d = vec![net(POD)];
                d.extend(except.iter().map(|e| net(e)));
                vec![rule(d)]
            }
        },
        forward_accept: vec![net(POD)],
    }
}

const EXCEPT: &[&str] = &["10.4.7.0/24", "10.4.8.5/32"];

fn firewall(ns: &NetNs) -> Firewall {
    Firewall::new(Exec::Netns(ns.name.clone()))
}

fn apply(ns: &NetNs, s: &FirewallSpec) -> podnet::firewall::FirewallReport {
    firewall(ns)
        .apply(s)
        .unwrap_or_else(|e| panic!("apply in {}: {e}", ns.name))
}

// ---- nft inspection -------------------------------------------------------------------

/// `nft -j list table inet podnet` (with handles), or `None` when the table is missing.
fn nft_table(ns: &NetNs) -> Option<Value> {
    let out = ns.exec("nft", &["-j", "list", "table", "inet", "podnet"]);
    if !out.status.success() {
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(err.contains("No such file"), "nft list failed: {err}");
        return None;
    }
    Some(serde_json::from_slice(&out.stdout).expect("nft -j output is JSON"))
}

fn objects(v: &Value) -> Vec<Value> {
    v["nftables"].as_array().expect("nftables array").clone()
}

/// The `expr` arrays of the rules of `chain` in podnet's table, in order.
fn nft_rules(ns: &NetNs, chain: &str) -> Vec<Value> {
    let t = nft_table(ns).expect("table inet podnet exists");
    objects(&t)
        .into_iter()
        .filter_map(|o| o.get("rule").cloned())
        .filter(|r| r["chain"] == chain)
        .map(|r| r["expr"].clone())
        .collect()
}

fn nft_set(ns: &NetNs, name: &str) -> Option<Value> {
    let t = nft_table(ns)?;
    objects(&t)
        .into_iter()
        .filter_map(|o| o.get("set").cloned())
        .find(|s| s["name"] == name)
}

fn nft_chains(ns: &NetNs) -> Vec<Value> {
    let t = nft_table(ns).expect("table inet podnet exists");
    objects(&t)
        .into_iter()
        .filter_map(|o| o.get("chain").cloned())
        .collect()
}

/// The table without handles or metainfo (what two equivalent tables share).
fn without_handles(v: &Value) -> Value {
    fn strip(v: &Value) -> Value {
        match v {
            Value::Object(m) => Value::Object(
                m.iter()
                    .filter(|(k, _)| k.as_str() != "handle" && k.as_str() != "metainfo")
                    .map(|(k, v)| (k.clone(), strip(v)))
                    .collect(),
            ),
            Value::Array(a) => Value::Array(
                a.iter()
                    .filter(|o| o.get("metainfo").is_none())
                    .map(strip)
                    .collect(),
            ),
            other => other.clone(),
        }
    }
    strip(v)
}

fn saddr(prefix: Value) -> Value {
    json!({"match": {"op": "==", "left": {"payload": {"protocol": "ip", "field": "saddr"}}, "right": prefix}})
}

fn prefix(addr: &str, len: u32) -> Value {
    json!({"prefix": {"addr": addr, "len": len}})
}

fn expected_forward() -> Vec<Value> {
    vec![
        json!([saddr(prefix("172.7.0.0", 16)), {"accept": null}]),
        json!([{"match": {"op": "==", "left": {"payload": {"protocol": "ip", "field": "daddr"}}, "right": prefix("172.7.0.0", 16)}}, {"accept": null}]),
    ]
}

fn oif_not_bridge() -> Value {
    json!({"match": {"op": "!=", "left": {"meta": {"key": "oifname"}}, "right": BRIDGE}})
}

// ---- iptables inspection --------------------------------------------------------------

fn save(ns: &NetNs, program: &str) -> String {
    ns.sh(program, &[])
}

/// podnet's lines of `iptables-*-save` output, per table (chain declaration, rules, jumps).
fn ipt_podnet(ns: &NetNs, program: &str) -> Vec<String> {
    let out: Vec<String> = save(ns, program)
        .lines()
        .filter(|l| l.starts_with('*') || l.contains("PODNET"))
        .map(str::to_owned)
        .collect();
    // Keep table markers only where they hold podnet lines.
    let mut kept = Vec::new();
    for (i, l) in out.iter().enumerate() {
        if l.starts_with('*') && out.get(i + 1).is_none_or(|n| n.starts_with('*')) {
            continue;
        }
        kept.push(l.clone());
    }
    kept
}

/// Everything in `iptables-*-save` output that is not podnet's (comment lines with
/// timestamps dropped).
fn ipt_foreign(ns: &NetNs, program: &str) -> Vec<String> {
    save(ns, program)
        .lines()
        .filter(|l| !l.starts_with('#') && !l.contains("PODNET"))
        .map(str::to_owned)
        .collect()
}

fn expected_ipt(masq: Masq) -> Vec<String> {
    let mut v = vec![
        "*filter".to_owned(),
        ":PODNET-FWD - [0:0]".to_owned(),
        "-A FORWARD -m comment --comment podnet -j PODNET-FWD".to_owned(),
        "-A PODNET-FWD -s 172.7.0.0/16 -j ACCEPT".to_owned(),
        "-A PODNET-FWD -d 172.7.0.0/16 -j ACCEPT".to_owned(),
        "*nat".to_owned(),
        ":PODNET-POSTRTG - [0:0]".to_owned(),
        "-A POSTROUTING -m comment --comment podnet -j PODNET-POSTRTG".to_owned(),
    ];
    match masq {
        Masq::Off => {}
        Masq::All => v.push("-A PODNET-POSTRTG -s 172.7.21.0/24 ! -o cni0 -j MASQUERADE".into()),
        Masq::Outbound(except) => {
            assert_eq!(except, EXCEPT, "expectation written for EXCEPT");
            v.extend([
                "-A PODNET-POSTRTG -s 172.7.21.0/24 -d 10.4.7.0/24 -j RETURN".to_owned(),
                "-A PODNET-POSTRTG -s 172.7.21.0/24 -d 10.4.8.5/32 -j RETURN".to_owned(),
                "-A PODNET-POSTRTG -s 172.7.21.0/24 -d 172.7.0.0/16 -j RETURN".to_owned(),
                "-A PODNET-POSTRTG -s 172.7.21.0/24 ! -o cni0 -j MASQUERADE".to_owned(),
            ]);
        }
    }
    v
}

/// Handles and all of iptables-nft's tables as nft sees them: any write changes handles.
fn nft_ruleset_with_handles(ns: &NetNs) -> String {
    ns.sh("nft", &["-a", "list", "ruleset"])
}

// ---- masquerade modes -----------------------------------------------------------------

#[test]
fn nftables_masquerade_modes() {
    for masq in [Masq::Off, Masq::All, Masq::Outbound(EXCEPT)] {
        let ns = NetNs::new("fwnm");
        let report = apply(&ns, &spec(Driver::Nftables, masq));
        assert!(report.applied.wrote);
        assert_eq!(report.applied.drift[0].kind, DriftKind::Missing);

        let chains = nft_chains(&ns);
        let decl = |name: &str| {
            chains
                .iter()
                .find(|c| c["name"] == name)
                .cloned()
                .unwrap_or_else(|| panic!("chain {name} in {chains:?}"))
        };
        let post = decl("postrouting");
        assert_eq!(
            (&post["type"], &post["hook"], &post["prio"], &post["policy"]),
            (
                &json!("nat"),
                &json!("postrouting"),
                &json!(100),
                &json!("accept")
            )
        );
        let fwd = decl("forward");
        assert_eq!(
            (&fwd["type"], &fwd["hook"], &fwd["prio"], &fwd["policy"]),
            (
                &json!("filter"),
                &json!("forward"),
                &json!(0),
                &json!("accept")
            )
        );
        assert_eq!(nft_rules(&ns, "forward"), expected_forward());

        let nat = nft_rules(&ns, "postrouting");
        match masq {
            Masq::Off => {
                assert_eq!(nat, Vec::<Value>::new());
                assert_eq!(nft_set(&ns, "nomasq"), None);
            }
            Masq::All => {
                assert_eq!(
                    nat,
                    vec![
                        json!([saddr(prefix("172.7.21.0", 24)), oif_not_bridge(), {"masquerade": null}])
                    ]
                );
                assert_eq!(nft_set(&ns, "nomasq"), None);
            }
            Masq::Outbound(_) => {
                assert_eq!(
                    nat,
                    vec![json!([
                        saddr(prefix("172.7.21.0", 24)),
                        {"match": {"op": "!=", "left": {"payload": {"protocol": "ip", "field": "daddr"}}, "right": "@nomasq"}},
                        oif_not_bridge(),
                        {"masquerade": null}
                    ])]
                );
                let set = nft_set(&ns, "nomasq").expect("set nomasq");
                assert_eq!(set["type"], "ipv4_addr");
                assert_eq!(set["flags"], json!(["interval"]));
                assert_eq!(
                    set["elem"],
                    json!([prefix("10.4.7.0", 24), "10.4.8.5", prefix("172.7.0.0", 16)])
                );
                let text = ns.sh("nft", &["list", "table", "inet", "podnet"]);
                assert!(
                    text.contains(
                        "ip saddr 172.7.21.0/24 ip daddr != @nomasq oifname != \"cni0\" masquerade"
                    ),
                    "{text}"
                );
            }
        }
        // Nothing was written through iptables.
        assert_eq!(ipt_podnet(&ns, "iptables-nft-save"), Vec::<String>::new());
    }
}

#[test]
fn iptables_masquerade_modes() {
    for masq in [Masq::Off, Masq::All, Masq::Outbound(EXCEPT)] {
        let ns = NetNs::new("fwim");
        let fw = firewall(&ns);
        assert_eq!(fw.iptables_mode().expect("detect"), IptablesMode::Nft);
        let report = fw
            .apply(&spec(Driver::Iptables, masq))
            .expect("iptables apply");
        assert!(report.applied.wrote);
        assert_eq!(ipt_podnet(&ns, "iptables-nft-save"), expected_ipt(masq));
        assert_eq!(
            nft_table(&ns),
            None,
            "no nft table with the iptables driver"
        );
    }
}

#[test]
fn changing_mode_equals_fresh_apply() {
    for driver in [Driver::Nftables, Driver::Iptables] {
        let walked = NetNs::new("fwwk");
        for masq in [
            Masq::Outbound(EXCEPT),
            Masq::Off,
            Masq::All,
            Masq::Outbound(EXCEPT),
        ] {
            apply(&walked, &spec(driver, masq));
        }
        let fresh = NetNs::new("fwfr");
        apply(&fresh, &spec(driver, Masq::Outbound(EXCEPT)));
        match driver {
            Driver::Nftables => assert_eq!(
                nft_table(&walked).map(|v| without_handles(&v)),
                nft_table(&fresh).map(|v| without_handles(&v))
            ),
            Driver::Iptables => assert_eq!(
                ipt_podnet(&walked, "iptables-nft-save"),
                ipt_podnet(&fresh, "iptables-nft-save")
            ),
        }
    }
}

// ---- idempotence ------------------------------------------------------------------------

#[test]
fn second_apply_writes_nothing() {
    for driver in [Driver::Nftables, Driver::Iptables] {
        let ns = NetNs::new("fwid");
        let s = spec(driver, Masq::Outbound(EXCEPT));
        assert!(apply(&ns, &s).wrote());
        let before = nft_ruleset_with_handles(&ns);
        for _ in 0..2 {
            let again = apply(&ns, &s);
            assert!(!again.wrote(), "{driver}: {again:?}");
            assert!(again.applied.drift.is_empty());
        }
        // Every write replaces objects and so changes handles (iptables-nft's too).
        assert_eq!(nft_ruleset_with_handles(&ns), before, "{driver}");
        // And the driver's own plan is empty.
        let plan = firewall(&ns)
            .driver(driver)
            .expect("driver")
            .plan(&s)
            .expect("plan");
        assert!(plan.is_empty(), "{plan:?}");
    }
}

// ---- drift ------------------------------------------------------------------------------

fn nft_rule_handles(ns: &NetNs, chain: &str) -> Vec<u64> {
    let t = nft_table(ns).expect("table");
    objects(&t)
        .into_iter()
        .filter_map(|o| o.get("rule").cloned())
        .filter(|r| r["chain"] == chain)
        .map(|r| r["handle"].as_u64().expect("handle"))
        .collect()
}

#[test]
fn nftables_drift_is_repaired() {
    let ns = NetNs::new("fwnd");
    let s = spec(Driver::Nftables, Masq::Outbound(EXCEPT));
    apply(&ns, &s);
    let reference = nft_table(&ns).map(|v| without_handles(&v));

    let repaired = |what: &str| {
        let r = apply(&ns, &s);
        assert!(r.applied.wrote, "{what}: not repaired");
        assert!(!r.applied.drift.is_empty(), "{what}");
        assert_eq!(
            nft_table(&ns).map(|v| without_handles(&v)),
            reference,
            "{what}"
        );
        r
    };

    // A deleted rule.
    let h = nft_rule_handles(&ns, "forward")[1].to_string();
    ns.sh(
        "nft",
        &["delete", "rule", "inet", "podnet", "forward", "handle", &h],
    );
    repaired("deleted rule");

    // A flushed chain.
    ns.sh("nft", &["flush", "chain", "inet", "podnet", "postrouting"]);
    repaired("flushed chain");

    // A deleted table.
    ns.sh("nft", &["delete", "table", "inet", "podnet"]);
    let r = repaired("deleted table");
    assert_eq!(r.applied.drift[0].kind, DriftKind::Missing);

    // An element removed from the set, a foreign rule and chain inside podnet's table.
    ns.sh(
        "nft",
        &[
            "delete",
            "element",
            "inet",
            "podnet",
            "nomasq",
            "{ 10.4.8.5 }",
        ],
    );
    repaired("set element");
    ns.sh(
        "nft",
        &[
            "add", "rule", "inet", "podnet", "forward", "ip", "saddr", "1.1.1.1", "drop",
        ],
    );
    repaired("planted rule");
    ns.sh("nft", &["add", "chain", "inet", "podnet", "extra"]);
    let r = repaired("planted chain");
    assert!(
        r.applied
            .drift
            .iter()
            .any(|d| d.kind == DriftKind::Unexpected)
    );

    // Reordered rules (daddr before saddr).
    let h = nft_rule_handles(&ns, "forward")[0].to_string();
    ns.sh(
        "nft",
        &["delete", "rule", "inet", "podnet", "forward", "handle", &h],
    );
    ns.sh(
        "nft",
        &[
            "add", "rule", "inet", "podnet", "forward", "ip", "saddr", POD, "accept",
        ],
    );
    repaired("reordered rules");
}

fn ipt(ns: &NetNs, args: &[&str]) {
    ns.sh("iptables-nft", args);
}

#[test]
fn iptables_drift_is_repaired() {
    let ns = NetNs::new("fwid");
    let masq = Masq::Outbound(EXCEPT);
    let s = spec(Driver::Iptables, masq);
    apply(&ns, &s);
    let reference = expected_ipt(masq);
    assert_eq!(ipt_podnet(&ns, "iptables-nft-save"), reference);

    let repaired = |what: &str| {
        let r = apply(&ns, &s);
        assert!(r.applied.wrote, "{what}: not repaired");
        assert!(!r.applied.drift.is_empty(), "{what}");
        assert_eq!(ipt_podnet(&ns, "iptables-nft-save"), reference, "{what}");
        assert!(!apply(&ns, &s).wrote(), "{what}: repair not idempotent");
    };

    ipt(&ns, &["-t", "nat", "-D", "PODNET-POSTRTG", "2"]);
    repaired("deleted rule");

    ipt(&ns, &["-t", "filter", "-F", "PODNET-FWD"]);
    repaired("flushed chain");

    // Reordered: the MASQUERADE rule moved before the RETURNs.
    ipt(
        &ns,
        &[
            "-t",
            "nat",
            "-D",
            "PODNET-POSTRTG",
            "-s",
            NODE,
            "!",
            "-o",
            BRIDGE,
            "-j",
            "MASQUERADE",
        ],
    );
    ipt(
        &ns,
        &[
            "-t",
            "nat",
            "-I",
            "PODNET-POSTRTG",
            "1",
            "-s",
            NODE,
            "!",
            "-o",
            BRIDGE,
            "-j",
            "MASQUERADE",
        ],
    );
    repaired("reordered chain");

    // A planted rule inside podnet's chain.
    ipt(
        &ns,
        &[
            "-t",
            "filter",
            "-A",
            "PODNET-FWD",
            "-s",
            "1.1.1.1",
            "-j",
            "DROP",
        ],
    );
    repaired("planted rule");

    // The jump deleted; then duplicated; then altered.
    ipt(
        &ns,
        &[
            "-t",
            "nat",
            "-D",
            "POSTROUTING",
            "-m",
            "comment",
            "--comment",
            "podnet",
            "-j",
            "PODNET-POSTRTG",
        ],
    );
    repaired("deleted jump");
    ipt(
        &ns,
        &[
            "-t",
            "filter",
            "-A",
            "FORWARD",
            "-m",
            "comment",
            "--comment",
            "podnet",
            "-j",
            "PODNET-FWD",
        ],
    );
    repaired("duplicated jump");
    ipt(
        &ns,
        &[
            "-t",
            "filter",
            "-I",
            "FORWARD",
            "1",
            "-s",
            "9.9.9.9",
            "-j",
            "PODNET-FWD",
        ],
    );
    repaired("altered jump");

    // The whole chain deleted (jump first, as the kernel requires).
    ipt(
        &ns,
        &[
            "-t",
            "filter",
            "-D",
            "FORWARD",
            "-m",
            "comment",
            "--comment",
            "podnet",
            "-j",
            "PODNET-FWD",
        ],
    );
    ipt(&ns, &["-t", "filter", "-F", "PODNET-FWD"]);
    ipt(&ns, &["-t", "filter", "-X", "PODNET-FWD"]);
    repaired("deleted chain");
}

// ---- foreign rules, driver switch, teardown -------------------------------------------

const FOREIGN_IPTABLES: &str = "*nat
:KUBE-POSTROUTING - [0:0]
:DOCKER - [0:0]
-A POSTROUTING -m comment --comment \"kubernetes postrouting rules\" -j KUBE-POSTROUTING
-A POSTROUTING -s 172.17.0.0/16 ! -o docker0 -j MASQUERADE
-A KUBE-POSTROUTING -m mark ! --mark 0x4000/0x4000 -j RETURN
-A KUBE-POSTROUTING -j MARK --set-xmark 0x4000/0x0
-A KUBE-POSTROUTING -m mark --mark 0x4000/0x4000 -j MASQUERADE
-A DOCKER -i docker0 -j RETURN
COMMIT
*filter
:FORWARD DROP [0:0]
:DOCKER - [0:0]
:DOCKER-USER - [0:0]
-A FORWARD -j DOCKER-USER
-A FORWARD -o docker0 -j DOCKER
-A FORWARD -i docker0 ! -o docker0 -j ACCEPT
-A DOCKER-USER -j RETURN
COMMIT
";

const FOREIGN_NFT: &str = "table inet foreign {
    set blocked { type ipv4_addr; elements = { 192.0.2.1 } }
    chain input { type filter hook input priority 0; policy accept; ip saddr @blocked drop; tcp dport 22 accept; }
    chain post { type nat hook postrouting priority 50; ip saddr 10.9.0.0/16 masquerade; }
}
";

struct Foreign {
    iptables: Vec<String>,
    nft_text: String,
    nft_json: String,
}

fn plant_foreign(ns: &NetNs, restore: &str) {
    let out = {
        use std::io::Write;
        use std::process::{Command, Stdio};
        let mut args = vec!["netns", "exec", ns.name.as_str(), restore, "--noflush"];
        if restore.contains("legacy") {
            args.push("--wait=5"); // the global xtables lock, shared with parallel tests
        }
        let mut child = Command::new("ip")
            .args(&args)
            .stdin(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("spawn restore");
        child
            .stdin
            .take()
            .expect("stdin")
            .write_all(FOREIGN_IPTABLES.as_bytes())
            .expect("write restore input");
        child.wait_with_output().expect("restore")
    };
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let path = std::env::temp_dir().join(format!("{}-foreign.nft", ns.name));
    std::fs::write(&path, FOREIGN_NFT).expect("write nft file");
    let file = path.to_string_lossy().into_owned();
    ns.sh("nft", &["-f", &file]);
    let _ = std::fs::remove_file(&path);
}

fn foreign(ns: &NetNs, save_program: &str) -> Foreign {
    Foreign {
        iptables: ipt_foreign(ns, save_program),
        nft_text: ns.sh("nft", &["-a", "list", "table", "inet", "foreign"]),
        nft_json: ns.sh("nft", &["-a", "-j", "list", "table", "inet", "foreign"]),
    }
}

fn assert_untouched(ns: &NetNs, save_program: &str, before: &Foreign, step: &str) {
    let now = foreign(ns, save_program);
    assert_eq!(now.iptables, before.iptables, "iptables after {step}");
    assert_eq!(now.nft_text, before.nft_text, "nft text after {step}");
    assert_eq!(now.nft_json, before.nft_json, "nft json after {step}");
}

fn foreign_untouched(mode: IptablesMode) {
    let ns = NetNs::new("fwfg");
    let (restore, save) = match mode {
        IptablesMode::Nft => ("iptables-nft-restore", "iptables-nft-save"),
        IptablesMode::Legacy => ("iptables-legacy-restore", "iptables-legacy-save"),
    };
    plant_foreign(&ns, restore);
    let before = foreign(&ns, save);
    assert!(
        before
            .iptables
            .iter()
            .any(|l| l.contains("KUBE-POSTROUTING -m mark --mark 0x4000/0x4000 -j MASQUERADE"))
    );
    assert!(before.iptables.iter().any(|l| l == ":DOCKER-USER - [0:0]"));
    assert!(before.nft_text.contains("tcp dport 22 accept"));

    let fw = firewall(&ns);
    assert_eq!(fw.iptables_mode().expect("detect"), mode, "mode detection");
    let nft_spec = spec(Driver::Nftables, Masq::Outbound(EXCEPT));
    let ipt_spec = spec(Driver::Iptables, Masq::Outbound(EXCEPT));

    assert!(fw.apply(&nft_spec).expect("nft apply").wrote());
    assert_untouched(&ns, save, &before, "nft apply");
    assert!(!fw.apply(&nft_spec).expect("nft re-apply").wrote());

    let sw = fw.apply(&ipt_spec).expect("switch to iptables");
    assert_eq!(sw.removed.removed, vec!["table inet podnet".to_owned()]);
    assert_eq!(nft_table(&ns), None);
    assert_eq!(ipt_podnet(&ns, save), expected_ipt(Masq::Outbound(EXCEPT)));
    assert_untouched(&ns, save, &before, "switch to iptables");
    assert!(!fw.apply(&ipt_spec).expect("iptables re-apply").wrote());

    let back = fw.apply(&nft_spec).expect("switch back to nftables");
    assert_eq!(back.removed.removed.len(), 4, "{back:?}"); // two jumps, two chains
    assert_eq!(ipt_podnet(&ns, save), Vec::<String>::new());
    assert!(nft_table(&ns).is_some());
    assert_untouched(&ns, save, &before, "switch back to nftables");

    fw.apply(&ipt_spec).expect("iptables again");
    let removed = fw.remove().expect("remove");
    assert_eq!(removed.len(), 2);
    assert_eq!(ipt_podnet(&ns, save), Vec::<String>::new());
    assert_eq!(nft_table(&ns), None);
    assert_untouched(&ns, save, &before, "remove");
    // A second teardown finds nothing and writes nothing.
    let again = fw.remove().expect("second remove");
    assert!(again.iter().all(|r| r.removed.is_empty()), "{again:?}");
    assert_untouched(&ns, save, &before, "second remove");
}

#[test]
fn foreign_rules_untouched_nft_backend() {
    foreign_untouched(IptablesMode::Nft);
}

#[test]
fn foreign_rules_untouched_legacy_backend() {
    foreign_untouched(IptablesMode::Legacy);
}

#[test]
fn remove_deletes_only_podnet_state() {
    for driver in [Driver::Nftables, Driver::Iptables] {
        let ns = NetNs::new("fwrm");
        apply(&ns, &spec(driver, Masq::All));
        let fw = firewall(&ns);
        let reports = fw.remove().expect("remove");
        let removed: usize = reports.iter().map(|r| r.removed.len()).sum();
        assert_eq!(removed, if driver == Driver::Nftables { 1 } else { 4 });
        assert_eq!(nft_table(&ns), None);
        assert_eq!(ipt_podnet(&ns, "iptables-nft-save"), Vec::<String>::new());
    }
}

// ---- iptables mode detection ------------------------------------------------------------

#[test]
fn iptables_mode_detection_on_this_machine() {
    // A fresh namespace: both backends empty → nft (the default).
    let ns = NetNs::new("fwmd");
    let exec = Exec::Netns(ns.name.clone());
    assert_eq!(
        iptables::detect_mode(&exec).expect("detect"),
        IptablesMode::Nft
    );

    // Legacy rules only (as on a host whose kube-proxy uses legacy) → legacy.
    ns.sh(
        "iptables-legacy",
        &[
            "-w",
            "-t",
            "nat",
            "-A",
            "POSTROUTING",
            "-s",
            "10.1.0.0/16",
            "-j",
            "MASQUERADE",
        ],
    );
    assert_eq!(
        iptables::detect_mode(&exec).expect("detect"),
        IptablesMode::Legacy
    );
    // The legacy driver writes through iptables-legacy-restore and is idempotent there.
    let drv = IptablesDriver::new(exec.clone(), IptablesMode::Legacy);
    let s = spec(Driver::Iptables, Masq::Outbound(EXCEPT));
    assert!(drv.apply(&s).expect("legacy apply").wrote);
    assert!(!drv.apply(&s).expect("legacy re-apply").wrote);
    assert_eq!(
        ipt_podnet(&ns, "iptables-legacy-save"),
        expected_ipt(Masq::Outbound(EXCEPT))
    );
    assert_eq!(ipt_podnet(&ns, "iptables-nft-save"), Vec::<String>::new());

    // More nft rules than legacy ones → nft; a kubelet hint chain overrides the counts.
    let ns2 = NetNs::new("fwm2");
    let exec2 = Exec::Netns(ns2.name.clone());
    ns2.sh(
        "iptables-nft",
        &[
            "-t",
            "nat",
            "-A",
            "POSTROUTING",
            "-s",
            "10.1.0.0/16",
            "-j",
            "MASQUERADE",
        ],
    );
    assert_eq!(
        iptables::detect_mode(&exec2).expect("detect"),
        IptablesMode::Nft
    );
    ns2.sh(
        "iptables-legacy",
        &["-w", "-t", "mangle", "-N", "KUBE-IPTABLES-HINT"],
    );
    assert_eq!(
        iptables::detect_mode(&exec2).expect("detect"),
        IptablesMode::Legacy
    );
}

// ---- errors -----------------------------------------------------------------------------

#[test]
fn invalid_spec_is_rejected_before_any_command() {
    // The namespace does not exist: any command would fail, validation must come first.
    let fw = Firewall::new(Exec::Netns("podnet-t-no-such-ns".into()));
    let mut s = spec(Driver::Nftables, Masq::All);
    s.masquerade[0].not_out_interface = "bridge\"; flush ruleset".into();
    assert!(matches!(
        fw.apply(&s),
        Err(FirewallError::InvalidSpec { .. })
    ));
    s.masquerade[0].not_out_interface = "averyveryverylongname".into();
    assert!(matches!(
        fw.apply(&s),
        Err(FirewallError::InvalidSpec { .. })
    ));
    let mut s = spec(Driver::Iptables, Masq::All);
    s.forward_accept = vec![net("172.7.0.1/16")];
    assert!(matches!(
        fw.apply(&s),
        Err(FirewallError::InvalidSpec { .. })
    ));
}

#[test]
fn command_errors_keep_stderr() {
    let drv = NftDriver::new(Exec::Netns("podnet-t-no-such-ns".into()));
    match drv.apply(&spec(Driver::Nftables, Masq::All)) {
        Err(FirewallError::Command {
            stderr, command, ..
        }) => {
            assert!(command.contains("nft"), "{command}");
            assert!(stderr.contains("podnet-t-no-such-ns"), "{stderr}");
        }
        other => panic!("expected a command error, got {other:?}"),
    }
    // nft's own complaint survives too: feed it a transaction it rejects (a rule for a
    // chain that does not exist).
    let ns = NetNs::new("fwer");
    let drv = NftDriver::new(Exec::Netns(ns.name.clone()));
    let plan = podnet::firewall::FirewallPlan {
        driver: Driver::Nftables,
        drift: Vec::new(),
        script: Some(r#"{"nftables":[{"add":{"rule":{"family":"inet","table":"podnet","chain":"nope","expr":[{"accept":null}]}}}]}"#.into()),
    };
    match drv.execute(&plan) {
        Err(FirewallError::Command { stderr, .. }) => {
            assert!(stderr.contains("No such file or directory"), "{stderr}");
        }
        other => panic!("expected nft's error, got {other:?}"),
    }
}

// ---- masquerade parity with flannel ------------------------------------------------------

/// The firewall spec of node `n1` of a one-pod-subnet cluster with `masq` as its masquerade
/// statement (compiled from the language, so the defaults are the compiler's).
fn compiled_spec(driver: &str, masq: &str) -> FirewallSpec {
    let src = format!(
        "cluster c {{\n    pod-cidr 172.7.0.0/16\n    firewall {driver}\n    masquerade {masq}\n}}\n\
         node n1 {{ address 10.4.7.21/24; subnet 172.7.21.0/24 }}\n\
         node n2 {{ address 10.4.7.22/24; subnet 172.7.22.0/24 }}\n"
    );
    FirewallSpec::from(&common::plan_of(&src, "n1").firewall)
}

fn mark_return() -> Value {
    json!({"match": {"op": "==", "left": {"&": [{"meta": {"key": "mark"}}, 16384]}, "right": 16384}})
}

#[test]
fn nftables_masquerade_defaults_match_flannel() {
    let ns = NetNs::new("fwnp");
    apply(&ns, &compiled_spec("nftables", "outbound"));
    let nat = nft_rules(&ns, "postrouting");
    assert_eq!(
        nat,
        vec![
            json!([mark_return(), {"return": null}]),
            json!([
                saddr(prefix("172.7.21.0", 24)),
                {"match": {"op": "!=", "left": {"payload": {"protocol": "ip", "field": "daddr"}}, "right": "@nomasq"}},
                oif_not_bridge(),
                {"masquerade": {"flags": "fully-random"}}
            ]),
        ]
    );
    let text = ns.sh("nft", &["list", "chain", "inet", "podnet", "postrouting"]);
    assert!(
        text.contains("meta mark & 0x00004000 == 0x00004000 return"),
        "{text}"
    );
    assert!(text.contains("masquerade fully-random"), "{text}");
    // The read-back compares equal: a second apply writes nothing.
    assert!(!apply(&ns, &compiled_spec("nftables", "outbound")).wrote());

    // The opt-out: plain masquerade, the kube-proxy return kept.
    let off = compiled_spec("nftables", "outbound { random-fully off }");
    assert!(apply(&ns, &off).wrote());
    let nat = nft_rules(&ns, "postrouting");
    assert_eq!(nat.len(), 2, "{nat:?}");
    assert_eq!(nat[0], json!([mark_return(), {"return": null}]));
    assert_eq!(nat[1][3], json!({"masquerade": null}));
    assert!(!apply(&ns, &off).wrote());
}

#[test]
fn iptables_masquerade_defaults_match_flannel() {
    let ns = NetNs::new("fwip");
    apply(&ns, &compiled_spec("iptables", "outbound"));
    let nat: Vec<String> = ipt_podnet(&ns, "iptables-nft-save")
        .into_iter()
        .filter(|l| l.starts_with("-A PODNET-POSTRTG"))
        .collect();
    assert_eq!(
        nat,
        [
            "-A PODNET-POSTRTG -m mark --mark 0x4000/0x4000 -j RETURN",
            "-A PODNET-POSTRTG -s 172.7.21.0/24 -d 172.7.0.0/16 -j RETURN",
            "-A PODNET-POSTRTG -s 172.7.21.0/24 ! -o cni0 -j MASQUERADE --random-fully",
        ]
    );
    assert!(!apply(&ns, &compiled_spec("iptables", "outbound")).wrote());
    let off = compiled_spec("iptables", "all { random-fully off }");
    assert!(apply(&ns, &off).wrote());
    let nat: Vec<String> = ipt_podnet(&ns, "iptables-nft-save")
        .into_iter()
        .filter(|l| l.starts_with("-A PODNET-POSTRTG"))
        .collect();
    assert_eq!(
        nat,
        [
            "-A PODNET-POSTRTG -m mark --mark 0x4000/0x4000 -j RETURN",
            "-A PODNET-POSTRTG -s 172.7.21.0/24 ! -o cni0 -j MASQUERADE",
        ]
    );
    assert!(!apply(&ns, &off).wrote());
}

/// Traffic: a pod namespace behind a node namespace sends to an outside namespace. Unmarked
/// traffic arrives from the node's address (podnet masqueraded it once); traffic a
/// kube-proxy stand-in marked 0x4000 arrives from the address that stand-in's own SNAT
/// (priority after podnet's) chose, so podnet did not SNAT it first.
fn masquerade_traffic(driver: &str) {
    let node = NetNs::new("fwtn");
    let pod = NetNs::new("fwtp");
    let ext = NetNs::new("fwte");
    common::veth(&pod, "eth0", &node, "vpod");
    common::veth(&node, "eth0", &ext, "eth0");
    pod.ip(&["addr", "add", "172.7.21.2/24", "dev", "eth0"]);
    pod.ip(&["route", "add", "default", "via", "172.7.21.1"]);
    node.ip(&["addr", "add", "172.7.21.1/24", "dev", "vpod"]);
    node.ip(&["addr", "add", "10.4.7.21/24", "dev", "eth0"]);
    node.ip(&["addr", "add", "10.4.7.99/24", "dev", "eth0"]);
    ext.ip(&["addr", "add", "10.4.7.1/24", "dev", "eth0"]);
    ext.ip(&["addr", "add", "198.51.100.1/32", "dev", "eth0"]);
    ext.ip(&["addr", "add", "198.51.100.2/32", "dev", "eth0"]);
    node.ip(&["route", "add", "198.51.100.0/24", "via", "10.4.7.1"]);
    node.sh("sysctl", &["-qw", "net.ipv4.ip_forward=1"]);
    // kube-proxy stand-in: marks traffic to 198.51.100.2 and SNATs marked traffic itself,
    // to an address of its own so the receiver can tell whose SNAT won.
    let kp = "table ip kp {
        chain pre { type filter hook prerouting priority -150; ip daddr 198.51.100.2 meta mark set 0x4000; }
        chain post { type nat hook postrouting priority 110; meta mark & 0x4000 == 0x4000 snat to 10.4.7.99; }
    }
    ";
    let counters = "table ip count {
        chain input { type filter hook input priority 0;
            ip saddr 10.4.7.21 ip daddr 198.51.100.1 counter
            ip saddr 10.4.7.99 ip daddr 198.51.100.2 counter
            ip saddr 172.7.21.2 counter
            ip saddr 10.4.7.21 ip daddr 198.51.100.2 counter
        }
    }
    ";
    for (ns, text) in [(&node, kp), (&ext, counters)] {
        let path = std::env::temp_dir().join(format!("{}-t.nft", ns.name));
        std::fs::write(&path, text).expect("write nft file");
        ns.sh("nft", &["-f", &path.to_string_lossy()]);
        let _ = std::fs::remove_file(&path);
    }
    apply(&node, &compiled_spec(driver, "outbound"));
    for dst in ["198.51.100.1", "198.51.100.2"] {
        pod.sh("ping", &["-c", "2", "-i", "0.2", "-W", "2", dst]);
    }
    let listed: Value =
        serde_json::from_str(&ext.sh("nft", &["-j", "list", "table", "ip", "count"]))
            .expect("json");
    let packets: Vec<u64> = objects(&listed)
        .into_iter()
        .filter_map(|o| o.get("rule").cloned())
        .map(|r| {
            r["expr"]
                .as_array()
                .and_then(|e| e.iter().find_map(|s| s["counter"]["packets"].as_u64()))
                .expect("counter")
        })
        .collect();
    // [outbound from the node address, marked from kube-proxy's address, un-NATed pod
    // address, marked but SNATed by podnet]
    assert_eq!(packets, [2, 2, 0, 0], "{driver}");
}

#[test]
fn masquerade_traffic_nftables() {
    masquerade_traffic("nftables");
}

#[test]
fn masquerade_traffic_iptables() {
    masquerade_traffic("iptables");
}
