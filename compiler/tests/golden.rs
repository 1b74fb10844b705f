//! Data-driven golden tests over `tests/data`: every `err` case's diagnostics (as JSON) and
//! every `ok` case's lowered model must match the `.json` stored beside it. Regenerate with
//! `PODNET_BLESS=1 cargo test -p podnet-compiler --test golden` and review the diff.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

use podnet_compiler::model::{Backend, Cluster, MasqueradeMode};
use podnet_compiler::{Code, FsLoader, UseLock, compile};
use serde_json::{Value, json};

fn data() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../tests/data")
}

/// Each case: a file `NNNN_name.{podnet,toml}`, or a directory whose root is
/// `cluster.podnet` or `cluster.toml`. Expected output: `NNNN_name.json`.
fn cases(kind: &str) -> Vec<(PathBuf, PathBuf, PathBuf)> {
    let dir = data().join(kind);
    let mut out = Vec::new();
    let mut entries: Vec<_> = std::fs::read_dir(&dir)
        .expect("test data directory")
        .filter_map(Result::ok)
        .map(|e| e.path())
        .collect();
    entries.sort();
    for p in entries {
        let stem = p
            .file_stem()
            .and_then(|s| s.to_str())
            .unwrap_or("")
            .to_string();
        let expected = dir.join(format!("{stem}.json"));
        if p.is_dir() {
            let root = ["cluster.podnet", "cluster.toml"]
                .iter()
                .map(|f| p.join(f))
                .find(|f| f.exists())
                .expect("case directory has cluster.podnet or cluster.toml");
            out.push((root, expected, p.clone()));
        } else if matches!(
            p.extension().and_then(|e| e.to_str()),
            Some("podnet" | "toml")
        ) {
            out.push((p.clone(), expected, dir.clone()));
        }
    }
    out
}

fn compare(actual: &Value, expected_path: &Path) {
    let text = serde_json::to_string_pretty(actual).expect("json") + "\n";
    if std::env::var_os("PODNET_BLESS").is_some() {
        std::fs::write(expected_path, &text).expect("write expected");
        return;
    }
    let want = std::fs::read_to_string(expected_path).unwrap_or_else(|_| {
        panic!(
            "{} is missing; run with PODNET_BLESS=1 and review it.\nactual:\n{text}",
            expected_path.display()
        )
    });
    assert_eq!(
        want,
        text,
        "{} differs (PODNET_BLESS=1 regenerates it)",
        expected_path.display()
    );
}

/// Makes file paths in diagnostics relative to the case's base directory.
fn relative(mut v: Value, base: &Path) -> Value {
    let prefix = format!("{}/", base.display());
    fn walk(v: &mut Value, prefix: &str) {
        match v {
            Value::Object(m) => {
                for (k, x) in m.iter_mut() {
                    if k == "file"
                        && let Value::String(s) = x
                    {
                        *s = s.strip_prefix(prefix).unwrap_or(s).to_string();
                    } else {
                        walk(x, prefix);
                    }
                }
            }
            Value::Array(a) => a.iter_mut().for_each(|x| walk(x, prefix)),
            _ => {}
        }
    }
    walk(&mut v, &prefix);
    v
}

#[test]
fn err_cases_match_their_diagnostics() {
    let cases = cases("err");
    assert!(
        cases.len() >= 40,
        "expected the err corpus, found {}",
        cases.len()
    );
    for (root, expected, base) in cases {
        let c = compile(&FsLoader, &root, UseLock::IfPresent);
        assert!(
            !c.diagnostics.is_empty(),
            "{}: expected diagnostics, got none",
            root.display()
        );
        let json: Vec<_> = c
            .diagnostics
            .iter()
            .map(|d| d.to_json(&c.sources))
            .collect();
        let v = relative(serde_json::to_value(json).expect("json"), &base);
        for d in v.as_array().into_iter().flatten() {
            assert!(
                d.get("help").is_some(),
                "{}: every diagnostic has a help line: {d}",
                root.display()
            );
        }
        compare(&v, &expected);
    }
}

/// Codes that cannot come out of compiling a file, and the test that covers each instead.
const COVERED_ELSEWHERE: &[(Code, &str)] = &[
    (Code::UnknownNode, "plan tests (a CLI node name)"),
    (Code::Exhausted, "tests/lock.rs (a full pod CIDR)"),
    (
        Code::InputTooLarge,
        "applier/tests/cli.rs (a 65 MiB sparse file; too large to keep as a case)",
    ),
    (Code::VtepMacCollision, "check::tests (a forced collision)"),
];

#[test]
fn every_diagnostic_code_has_an_err_case() {
    let mut seen = BTreeSet::new();
    for (_, expected, _) in cases("err") {
        let text = std::fs::read_to_string(&expected).unwrap_or_default();
        let v: Value = serde_json::from_str(&text).unwrap_or(Value::Null);
        for d in v.as_array().into_iter().flatten() {
            if let Some(c) = d.get("code").and_then(Value::as_str) {
                seen.insert(c.to_string());
            }
        }
    }
    let missing: Vec<_> = Code::ALL
        .iter()
        .filter(|c| !seen.contains(c.as_str()))
        .filter(|c| !COVERED_ELSEWHERE.iter().any(|(e, _)| e == *c))
        .map(|c| c.as_str())
        .collect();
    assert!(missing.is_empty(), "codes without an err case: {missing:?}");
}

fn summary(c: &Cluster) -> Value {
    let backend = match &c.backend {
        Backend::HostGw => json!("host-gw"),
        Backend::Vxlan(v) => json!({"vxlan": {"vni": v.vni.value, "port": v.port.value,
            "device": v.device.value, "direct-routing": v.direct_routing}}),
    };
    let masq = match c.masquerade.mode {
        MasqueradeMode::Off => "off",
        MasqueradeMode::All => "all",
        MasqueradeMode::Outbound => "outbound",
    };
    json!({
        "name": c.name.value,
        "pod-cidr": c.pod_cidr.value.to_string(),
        "subnet-len": c.subnet_len.value,
        "service-cidr": c.service_cidr.map(|s| s.value.to_string()),
        "interface": c.interface.value,
        "underlay-mtu": c.underlay_mtu.value,
        "pod-mtu": c.pod_mtu(),
        "backend": backend,
        "masquerade": {"mode": masq, "except": c.masquerade.except.iter().map(|e| e.value.to_string()).collect::<Vec<_>>(), "random-fully": c.masquerade.random_fully},
        "firewall": format!("{:?}", c.firewall).to_lowercase(),
        "forward-accept": c.forward_accept,
        "route-protocol": c.route_protocol.value,
        "flannel-compat": c.flannel_compat,
        "cni": {"name": c.cni.name, "bridge": c.cni.bridge.value, "hairpin": c.cni.hairpin,
            "portmap": c.cni.portmap, "bandwidth": c.cni.bandwidth, "dir": c.cni.dir, "file": c.cni.file},
        "nodes": c.nodes.iter().map(|n| json!({
            "name": n.name.value,
            "address": n.address.value.to_string(),
            "interface": n.interface.as_ref().map(|i| i.value.clone()),
            "subnet": n.subnet.map(|s| s.value.to_string()),
            "underlay-mtu": n.underlay_mtu.map(|m| m.value),
            "vtep-mac": n.vtep_mac.map(|m| m.value.to_string()),
        })).collect::<Vec<_>>(),
    })
}

#[test]
fn ok_cases_lower_to_their_model() {
    let cases = cases("ok");
    assert!(!cases.is_empty());
    for (root, expected, _) in cases {
        let c = compile(&FsLoader, &root, UseLock::IfPresent);
        assert!(
            c.diagnostics.is_empty(),
            "{}: {:?}",
            root.display(),
            c.diagnostics
        );
        let cluster = c.cluster.as_ref().expect("lowered");
        compare(&summary(cluster), &expected);
    }
}

/// Replaces the lines between `<!-- NAME…-->` and `<!-- /NAME -->` in `text` with `body`.
fn section(text: &str, name: &str, body: &str) -> String {
    let open = format!("<!-- {name}:");
    let close = format!("<!-- /{name} -->");
    let (Some(a), Some(b)) = (text.find(&open), text.find(&close)) else {
        panic!("docs/diagnostics.md has no {open} … {close} section");
    };
    let head_end = a + text[a..].find('\n').expect("marker line") + 1;
    format!("{}{body}{}", &text[..head_end], &text[b..])
}

/// docs/diagnostics.md lists every code with its description, and every flannel word of the
/// lowering's table: regenerated with PODNET_BLESS=1, compared otherwise.
#[test]
fn diagnostics_doc_matches_the_tables() {
    use podnet_compiler::lower::{Carry, FLANNEL_WORDS};
    let path = data().join("../../docs/diagnostics.md");
    let text = std::fs::read_to_string(&path).expect("docs/diagnostics.md");
    let mut codes = String::from("| code | when |\n|---|---|\n");
    for c in Code::ALL {
        codes.push_str(&format!(
            "| `{}` | {} |\n",
            c.as_str(),
            c.description().replace('|', "\\|")
        ));
    }
    let mut words = String::from("| flannel | in | podnet |\n|---|---|---|\n");
    for (word, block, key, carry) in FLANNEL_WORDS {
        let note = match carry {
            Carry::Same => String::new(),
            Carry::IpMasq => " (`outbound` for on, `off` for off)".to_string(),
            Carry::PublicIp => " (with the node network's prefix length)".to_string(),
        };
        words.push_str(&format!("| `{word}` | {block} | `{key}`{note} |\n"));
    }
    let want = section(&section(&text, "codes", &codes), "flannel-words", &words);
    if std::env::var_os("PODNET_BLESS").is_some() {
        std::fs::write(&path, &want).expect("write docs/diagnostics.md");
        return;
    }
    assert_eq!(
        text, want,
        "docs/diagnostics.md differs from the code and flannel-word tables (PODNET_BLESS=1 regenerates it)"
    );
}
