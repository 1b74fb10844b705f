//! Keeps `schemas/cluster.schema.json` and the compiler in agreement: the schema's keys,
//! enums and defaults equal lowering's tables, and every TOML example validates.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

use podnet_compiler::lower::{self, defaults};
use podnet_compiler::{FsLoader, UseLock, compile};
use serde_json::Value;

fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..")
}

fn schema() -> Value {
    let text = std::fs::read_to_string(root().join("schemas/cluster.schema.json")).expect("schema");
    serde_json::from_str(&text).expect("schema is JSON")
}

/// The object's keys, minus `name`/`mode`, which the TOML form lifts into the statement's
/// argument (except in `cni`, where `name` is a real key: see `keys_all`).
fn keys(v: &Value, path: &str) -> BTreeSet<String> {
    let mut k = keys_all(v, path);
    k.remove("name");
    k.remove("mode");
    k
}

fn keys_all(v: &Value, path: &str) -> BTreeSet<String> {
    v.pointer(path)
        .and_then(Value::as_object)
        .unwrap_or_else(|| panic!("no object at {path}"))
        .keys()
        .cloned()
        .collect()
}

fn set(keys: &[&str]) -> BTreeSet<String> {
    keys.iter().map(|k| k.to_string()).collect()
}

fn strings(v: &Value, path: &str) -> BTreeSet<String> {
    v.pointer(path)
        .and_then(Value::as_array)
        .unwrap_or_else(|| panic!("no array at {path}"))
        .iter()
        .filter_map(|x| x.as_str().map(str::to_string))
        .collect()
}

#[test]
fn schema_keys_match_the_lowering_tables() {
    let s = schema();
    assert_eq!(keys(&s, "/properties"), set(lower::TOP_KEYS));
    assert_eq!(
        keys(&s, "/$defs/cluster/properties"),
        set(lower::CLUSTER_KEYS)
    );
    assert_eq!(
        keys(&s, "/$defs/nodeFields/properties"),
        set(lower::NODE_KEYS)
    );
    let backend = "/$defs/cluster/properties/backend/oneOf";
    assert_eq!(
        keys(&s, &format!("{backend}/1/properties")),
        set(lower::VXLAN_KEYS)
    );
    assert_eq!(
        strings(&s, &format!("{backend}/0/enum")),
        set(lower::BACKENDS)
    );
    let masq = "/$defs/cluster/properties/masquerade/oneOf";
    assert_eq!(
        keys(&s, &format!("{masq}/1/properties")),
        set(lower::MASQUERADE_KEYS)
    );
    assert_eq!(
        strings(&s, &format!("{masq}/0/enum")),
        set(lower::MASQUERADE_MODES)
    );
    assert_eq!(
        strings(&s, "/$defs/cluster/properties/firewall/enum"),
        set(lower::FIREWALLS)
    );
    assert_eq!(
        keys_all(&s, "/$defs/cluster/properties/cni/properties"),
        set(lower::CNI_KEYS)
    );
}

#[test]
fn schema_defaults_match_the_compiler() {
    let s = schema();
    let d = |p: &str| {
        s.pointer(&format!("/$defs/cluster/properties/{p}/default"))
            .cloned()
    };
    assert_eq!(d("subnet-len"), Some(defaults::SUBNET_LEN.into()));
    assert_eq!(d("interface"), Some(defaults::INTERFACE.into()));
    assert_eq!(d("underlay-mtu"), Some(defaults::UNDERLAY_MTU.into()));
    assert_eq!(d("route-protocol"), Some(defaults::ROUTE_PROTOCOL.into()));
    assert_eq!(
        d("cni/properties/bridge"),
        Some(defaults::CNI_BRIDGE.into())
    );
    assert_eq!(d("cni/properties/name"), Some(defaults::CNI_NAME.into()));
    assert_eq!(d("cni/properties/dir"), Some(defaults::CNI_DIR.into()));
    assert_eq!(d("cni/properties/file"), Some(defaults::CNI_FILE.into()));
    let vx = |p: &str| {
        s.pointer(&format!(
            "/$defs/cluster/properties/backend/oneOf/1/properties/{p}/default"
        ))
        .cloned()
    };
    assert_eq!(vx("vni"), Some(defaults::VNI.into()));
    assert_eq!(vx("port"), Some(defaults::PORT.into()));
}

fn toml_files() -> Vec<PathBuf> {
    let mut out = Vec::new();
    for dir in ["examples", "tests/data/ok"] {
        for e in std::fs::read_dir(root().join(dir))
            .expect("dir")
            .filter_map(Result::ok)
        {
            let p = e.path();
            if p.extension().is_some_and(|x| x == "toml") && !p.to_string_lossy().ends_with(".lock")
            {
                out.push(p);
            }
        }
    }
    out.sort();
    out
}

#[test]
fn toml_examples_validate_and_compile() {
    let validator = jsonschema::validator_for(&schema()).expect("valid JSON Schema");
    let files = toml_files();
    assert!(!files.is_empty());
    for f in files {
        let text = std::fs::read_to_string(&f).expect("read");
        let doc: Value = toml::from_str(&text).expect("TOML");
        let errors: Vec<String> = validator.iter_errors(&doc).map(|e| e.to_string()).collect();
        assert!(errors.is_empty(), "{}: {errors:?}", f.display());
        let c = compile(&FsLoader, &f, UseLock::IfPresent);
        assert!(
            c.diagnostics.is_empty(),
            "{}: {:?}",
            f.display(),
            c.diagnostics
        );
    }
}

#[test]
fn schema_rejects_what_the_compiler_rejects() {
    let validator = jsonschema::validator_for(&schema()).expect("valid JSON Schema");
    for bad in [
        r#"[cluster]
name = "c"
pod-cidr = "10.0.0.0/16"
subnet-lenn = 24"#,
        r#"[cluster]
name = "c"
pod-cidr = "10.0.0.0/16"
backend = { mode = "vxlan", vni = 0 }"#,
        r#"[cluster]
name = "c"
pod-cidr = "10.0.0.0/16"
[[node]]
name = "a""#,
        r#"[cluster]
name = "c"
pod-cidr = "10.0.0.0/16"
cni = { dir = "../../.." }"#,
        r#"[cluster]
name = "c"
pod-cidr = "10.0.0.0/16"
cni = { dir = "/proc/sys" }"#,
        r#"[cluster]
name = "c"
pod-cidr = "10.0.0.0/16"
cni = { file = "x.sh" }"#,
        r#"[cluster]
name = "c"
pod-cidr = "10.0.0.0/16"
cni = { bridge = "br\"0" }"#,
        r#"[cluster]
name = "c"
pod-cidr = "10.0.0.0/16"
interface = "-eth0""#,
    ] {
        let doc: Value = toml::from_str(bad).expect("TOML");
        assert!(!validator.is_valid(&doc), "schema accepted:\n{bad}");
    }
}

/// The JSON type the schema gives a property (`$ref`s resolved; an enum is a string; of a
/// `oneOf`, the first alternative that is not an object: `mtu` is an integer (or "auto"),
/// `backend`'s short form a string).
fn schema_type(s: &Value, prop: &Value) -> String {
    if let Some(r) = prop.get("$ref").and_then(Value::as_str) {
        let target = s
            .pointer(r.trim_start_matches('#'))
            .unwrap_or_else(|| panic!("{r}"));
        return schema_type(s, target);
    }
    if let Some(t) = prop.get("type").and_then(Value::as_str) {
        return t.to_string();
    }
    if prop.get("enum").is_some() || prop.get("const").is_some() {
        return "string".to_string();
    }
    if let Some(alts) = prop.get("oneOf").and_then(Value::as_array) {
        return alts
            .iter()
            .map(|a| schema_type(s, a))
            .find(|t| t != "object")
            .unwrap_or_else(|| "object".to_string());
    }
    panic!("no type in {prop}")
}

/// For every scalar key of the schema, a TOML value of another type than the schema's is a
/// `podnet::syntax::toml_value` error naming the key (and the base file without it is clean).
#[test]
fn toml_values_must_have_the_schema_type() {
    let s = schema();
    // (schema object, the TOML table with the lines it needs).
    let tables: &[(&str, &str)] = &[
        (
            "/$defs/cluster/properties",
            "[cluster]\nname = \"c\"\npod-cidr = \"10.244.0.0/16\"\n",
        ),
        (
            "/$defs/cluster/properties/cni/properties",
            "[cluster.cni]\n",
        ),
        (
            "/$defs/cluster/properties/backend/oneOf/1/properties",
            "[cluster.backend]\nmode = \"vxlan\"\n",
        ),
        (
            "/$defs/cluster/properties/masquerade/oneOf/1/properties",
            "[cluster.masquerade]\nmode = \"outbound\"\n",
        ),
        (
            "/$defs/nodeFields/properties",
            "[[node]]\nname = \"a\"\naddress = \"10.0.0.1/24\"\nsubnet = \"10.244.1.0/24\"\n",
        ),
    ];
    let base_cluster = "[cluster]\nname = \"c\"\npod-cidr = \"10.244.0.0/16\"\n";
    let base_node =
        "[[node]]\nname = \"a\"\naddress = \"10.0.0.1/24\"\nsubnet = \"10.244.1.0/24\"\n";
    let compile_toml = |text: String| {
        podnet_compiler::compile_text(
            &podnet_compiler::MemLoader::default(),
            Path::new("c.toml"),
            text,
            UseLock::No,
        )
    };
    assert!(
        compile_toml(format!("{base_cluster}\n{base_node}"))
            .diagnostics
            .is_empty()
    );
    let mut tried = 0;
    for (path, header) in tables {
        let props = s
            .pointer(path)
            .and_then(Value::as_object)
            .unwrap_or_else(|| panic!("{path}"));
        for (key, prop) in props {
            let ty = schema_type(&s, prop);
            let wrong: &[&str] = match ty.as_str() {
                "boolean" => &["\"on\"", "1"],
                "integer" => &["\"24\"", "true"],
                "string" => &["1", "false"],
                "array" => &["[1]", "[true]"],
                _ => continue, // tables (`cni`, …) are covered by their own rows
            };
            for w in wrong {
                // The key replaces the header's own line of the same name, if any.
                let head: String = header
                    .lines()
                    .filter(|l| !l.starts_with(&format!("{key} =")))
                    .map(|l| format!("{l}\n"))
                    .collect();
                let text = match *path {
                    p if p.starts_with("/$defs/nodeFields") => {
                        format!("{base_cluster}\n{head}{key} = {w}\n")
                    }
                    "/$defs/cluster/properties" => format!("{head}{key} = {w}\n\n{base_node}"),
                    _ => format!("{base_cluster}\n{head}{key} = {w}\n\n{base_node}"),
                };
                let c = compile_toml(text.clone());
                let hit = c.diagnostics.iter().any(|d| {
                    d.code == podnet_compiler::Code::TomlValue
                        && d.message.starts_with(&format!("`{key}` is "))
                });
                assert!(
                    hit,
                    "{key} ({ty}) = {w} is not a TOML type error:\n{text}\n{:#?}",
                    c.diagnostics
                );
                tried += 1;
            }
        }
    }
    assert!(tried > 40, "only {tried} wrong values tried");
}
