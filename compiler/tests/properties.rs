//! Property tests: no input makes the front ends panic, and fmt is idempotent and
//! model-preserving on every input that parses. Case counts are fixed (bounded run time);
//! raise them with `PROPTEST_CASES=N`.

use std::path::Path;

use podnet_compiler::span::FileId;
use podnet_compiler::{MemLoader, UseLock, compile_text, fmt, parse};
use proptest::prelude::*;

/// Cases per property unless PROPTEST_CASES says otherwise.
const CASES: u32 = 4000;

fn config() -> ProptestConfig {
    let cases = std::env::var("PROPTEST_CASES")
        .ok()
        .and_then(|c| c.parse().ok())
        .unwrap_or(CASES);
    ProptestConfig {
        cases,
        failure_persistence: None,
        ..ProptestConfig::default()
    }
}

/// Tokens that make up real files, so generated inputs reach deep into lowering and checks.
fn token() -> impl Strategy<Value = String> {
    prop_oneof![
        Just("cluster".to_string()),
        Just("node".to_string()),
        Just("include".to_string()),
        Just("pod-cidr".to_string()),
        Just("subnet-len".to_string()),
        Just("backend".to_string()),
        Just("vxlan".to_string()),
        Just("host-gw".to_string()),
        Just("direct-routing".to_string()),
        Just("masquerade".to_string()),
        Just("outbound".to_string()),
        Just("except".to_string()),
        Just("address".to_string()),
        Just("subnet".to_string()),
        Just("cni".to_string()),
        Just("mtu".to_string()),
        Just("vni".to_string()),
        Just("on".to_string()),
        Just("{".to_string()),
        Just("}".to_string()),
        Just(";".to_string()),
        Just("\n".to_string()),
        Just("#".to_string()),
        Just("\"".to_string()),
        Just("\\".to_string()),
        (0u8..=255, 0u8..=255, 0u8..=40).prop_map(|(a, b, p)| format!("10.{a}.{b}.0/{p}")),
        (0u32..20_000_000).prop_map(|n| n.to_string()),
        "[a-z0-9.:/-]{1,12}",
        any::<String>(),
    ]
}

fn podnet_text() -> impl Strategy<Value = String> {
    prop::collection::vec(token(), 0..60).prop_map(|t| t.join(" "))
}

/// Syntactically valid files of random shape: statements with words, quoted strings (with
/// escapes), comments, blank lines, `;` and nested blocks written inline or across lines.
fn valid_podnet_text() -> impl Strategy<Value = String> {
    let word = prop_oneof![
        prop::sample::select(vec![
            "cluster",
            "node",
            "pod-cidr",
            "subnet-len",
            "backend",
            "vxlan",
            "host-gw",
            "direct-routing",
            "masquerade",
            "outbound",
            "except",
            "address",
            "subnet",
            "cni",
            "mtu",
            "vni",
            "on",
            "off",
            "include",
        ])
        .prop_map(str::to_string),
        (0u8..=255, 0u8..=255, 0u8..=40).prop_map(|(a, b, p)| format!("10.{a}.{b}.0/{p}")),
        (0u32..20_000_000).prop_map(|n| n.to_string()),
        "[a-z][a-z0-9.:/-]{0,10}",
    ];
    let arg = prop_oneof![
        3 => word.clone(),
        1 => "[ -~]{0,8}".prop_map(|s| format!("\"{}\"", s.replace('\\', "\\\\").replace('"', "\\\""))),
    ];
    let stmt = (
        word,
        prop::collection::vec(arg, 0..3),
        prop::option::of("[ -~]{0,10}"),
    )
        .prop_map(|(k, a, c)| {
            let mut s = k;
            for x in a {
                s.push(' ');
                s.push_str(&x);
            }
            (s, c)
        });
    let leaf = prop::collection::vec(stmt.clone(), 0..4).prop_map(|v| render(&v, &[]));
    leaf.prop_recursive(4, 64, 4, move |inner| {
        (
            prop::collection::vec(stmt.clone(), 1..4),
            prop::collection::vec(inner, 0..3),
            any::<bool>(),
        )
            .prop_map(|(stmts, blocks, inline)| {
                let nested: Vec<String> = blocks
                    .into_iter()
                    .map(|b| {
                        if inline && !b.contains('#') {
                            format!("{{ {} }}", b.replace('\n', "; "))
                        } else {
                            format!("{{\n{b}\n}}")
                        }
                    })
                    .collect();
                render(&stmts, &nested)
            })
    })
}

/// Joins statements (with optional trailing comments) and attaches blocks to the last ones.
fn render(stmts: &[(String, Option<String>)], blocks: &[String]) -> String {
    let mut out = Vec::new();
    for (i, (s, c)) in stmts.iter().enumerate() {
        let mut line = s.clone();
        if let Some(b) = blocks.get(i) {
            line.push(' ');
            line.push_str(b);
        }
        if let Some(c) = c.as_ref().filter(|_| !line.contains("; ")) {
            line.push_str(" # ");
            line.push_str(c);
        }
        out.push(line);
        if i % 3 == 2 {
            out.push(String::new());
        }
    }
    out.join("\n")
}

fn toml_text() -> impl Strategy<Value = String> {
    let key = prop_oneof![
        Just("name"),
        Just("pod-cidr"),
        Just("backend"),
        Just("mode"),
        Just("vni"),
        Just("address"),
        Just("subnet"),
        Just("except"),
        Just("include"),
    ];
    let value = prop_oneof![
        Just("\"10.244.0.0/16\"".to_string()),
        Just("\"vxlan\"".to_string()),
        Just("true".to_string()),
        Just("1.5".to_string()),
        Just("[\"a\", 1]".to_string()),
        Just("{ mode = \"vxlan\", vni = 0 }".to_string()),
        (0i64..100_000_000).prop_map(|n| n.to_string()),
        any::<String>(),
    ];
    let line = prop_oneof![
        (key, value).prop_map(|(k, v)| format!("{k} = {v}")),
        Just("[cluster]".to_string()),
        Just("[[node]]".to_string()),
        Just("[node.\"a.b\"]".to_string()),
        any::<String>(),
    ];
    prop::collection::vec(line, 0..30).prop_map(|l| l.join("\n"))
}

fn compile(path: &str, text: String) {
    let c = compile_text(&MemLoader::default(), Path::new(path), text, UseLock::No);
    // Rendering every diagnostic exercises span arithmetic on arbitrary input.
    for d in &c.diagnostics {
        let _ = d.to_json(&c.sources);
        let _ = d.to_report(&c.sources);
    }
}

proptest! {
    #![proptest_config(config())]

    #[test]
    fn podnet_front_end_never_panics(text in podnet_text()) {
        compile("c.podnet", text);
    }

    #[test]
    fn arbitrary_bytes_never_panic(text in any::<String>()) {
        compile("c.podnet", text.clone());
        compile("c.toml", text);
    }

    #[test]
    fn toml_front_end_never_panics(text in toml_text()) {
        compile("c.toml", text);
    }

    #[test]
    fn fmt_is_idempotent_and_preserves_the_model(text in valid_podnet_text()) {
        let mut d = Vec::new();
        let items = parse::parse(&text, FileId(0), &mut d);
        prop_assert!(d.is_empty(), "generator made invalid syntax: {d:?}\n{text}");
        let once = fmt::format(&items);
        let mut d2 = Vec::new();
        let again = parse::parse(&once, FileId(0), &mut d2);
        prop_assert!(d2.is_empty(), "formatted output must parse: {d2:?}\n{once}");
        prop_assert_eq!(fmt::format(&again), once.clone());
        let a = compile_text(&MemLoader::default(), Path::new("a.podnet"), text, UseLock::No);
        let b = compile_text(&MemLoader::default(), Path::new("a.podnet"), once, UseLock::No);
        prop_assert_eq!(&a.cluster, &b.cluster);
        let codes = |c: &podnet_compiler::Compilation| c.diagnostics.iter().map(|d| d.code).collect::<Vec<_>>();
        prop_assert_eq!(codes(&a), codes(&b));
    }
}
