//! Keeps `docs/language.md` equal to the compiler: each "Block:" table lists exactly the keys
//! lowering accepts in that block, its defaults are the schema's (which `schema.rs` keeps
//! equal to the compiler's), each row's podnet and TOML examples compile cleanly in a small
//! cluster, and every `podnet`/`toml` code block on the page compiles without a diagnostic.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

use podnet_compiler::lower;
use podnet_compiler::{Compilation, MemLoader, UseLock, compile};
use serde_json::Value;

fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..")
}

fn page() -> String {
    std::fs::read_to_string(root().join("docs/language.md")).expect("docs/language.md")
}

fn schema() -> Value {
    let text = std::fs::read_to_string(root().join("schemas/cluster.schema.json")).expect("schema");
    serde_json::from_str(&text).expect("schema is JSON")
}

/// One row of a key table: key, podnet example, TOML example, default (backticks removed).
#[derive(Debug)]
struct Row {
    key: String,
    podnet: String,
    toml: String,
    default: String,
}

/// `### Block: NAME` headings and the rows of the table under each.
fn tables(page: &str) -> Vec<(String, Vec<Row>)> {
    let mut out: Vec<(String, Vec<Row>)> = Vec::new();
    for line in page.lines() {
        if let Some(name) = line.strip_prefix("### Block: ") {
            out.push((name.trim().to_string(), Vec::new()));
        } else if line.starts_with('#') {
            // Any other heading ends the table.
            if let Some(last) = out.last_mut()
                && !last.1.is_empty()
            {
                out.push((String::new(), Vec::new()));
            }
        } else if let Some((_, rows)) = out.last_mut()
            && line.starts_with("| `")
        {
            let cells: Vec<&str> = line.trim_matches('|').split(" | ").map(str::trim).collect();
            assert_eq!(cells.len(), 5, "a key row has 5 cells: {line}");
            let code = |c: &str| c.trim_matches('`').to_string();
            rows.push(Row {
                key: code(cells[0]),
                podnet: code(cells[1]),
                toml: code(cells[2]),
                default: code(cells[3]),
            });
        }
    }
    out.retain(|(name, _)| !name.is_empty());
    out
}

fn block_keys(name: &str) -> &'static [&'static str] {
    match name {
        "top level" => lower::TOP_KEYS,
        "cluster" => lower::CLUSTER_KEYS,
        "node" => lower::NODE_KEYS,
        "backend vxlan" => lower::VXLAN_KEYS,
        "masquerade" => lower::MASQUERADE_KEYS,
        "cni" => lower::CNI_KEYS,
        other => panic!("docs/language.md has a table for unknown block `{other}`"),
    }
}

/// The schema's description of `key` in `block`.
fn schema_property(s: &Value, block: &str, key: &str) -> Option<Value> {
    let path = match block {
        "cluster" => format!("/$defs/cluster/properties/{key}"),
        "node" => format!("/$defs/nodeFields/properties/{key}"),
        "backend vxlan" => format!("/$defs/cluster/properties/backend/oneOf/1/properties/{key}"),
        "masquerade" => format!("/$defs/cluster/properties/masquerade/oneOf/1/properties/{key}"),
        "cni" => format!("/$defs/cluster/properties/cni/properties/{key}"),
        _ => return None,
    };
    s.pointer(&path).cloned()
}

fn required(s: &Value, block: &str) -> BTreeSet<String> {
    let path = match block {
        "cluster" => "/$defs/cluster/required",
        "node" => "/$defs/node/required",
        "top level" => "/required",
        _ => return BTreeSet::new(),
    };
    s.pointer(path)
        .and_then(Value::as_array)
        .map(|a| {
            a.iter()
                .filter_map(|v| v.as_str().map(String::from))
                .collect()
        })
        .unwrap_or_default()
}

/// A schema default as the page writes it: booleans as on/off, strings and numbers bare.
fn as_written(v: &Value) -> String {
    match v {
        Value::Bool(true) => "on".into(),
        Value::Bool(false) => "off".into(),
        Value::String(s) => s.clone(),
        other => other.to_string(),
    }
}

#[test]
fn every_block_table_lists_exactly_the_compilers_keys() {
    let t = tables(&page());
    let names: BTreeSet<&str> = t.iter().map(|(n, _)| n.as_str()).collect();
    let want: BTreeSet<&str> = [
        "top level",
        "cluster",
        "node",
        "backend vxlan",
        "masquerade",
        "cni",
    ]
    .into();
    assert_eq!(names, want, "the page's block tables");
    for (name, rows) in &t {
        let documented: Vec<&str> = rows.iter().map(|r| r.key.as_str()).collect();
        let unique: BTreeSet<&str> = documented.iter().copied().collect();
        assert_eq!(
            unique.len(),
            documented.len(),
            "{name}: a key is listed twice"
        );
        let known: BTreeSet<&str> = block_keys(name).iter().copied().collect();
        assert_eq!(
            unique, known,
            "block `{name}`: documented keys vs lowering's table"
        );
    }
}

#[test]
fn documented_defaults_are_the_schemas() {
    let s = schema();
    for (name, rows) in tables(&page()) {
        let req = required(&s, &name);
        for r in rows {
            let prop = schema_property(&s, &name, &r.key);
            let default = prop.as_ref().and_then(|p| p.get("default"));
            match default {
                Some(d) => assert_eq!(
                    r.default,
                    as_written(d),
                    "{name} `{}`: the page's default vs the schema's",
                    r.key
                ),
                None if req.contains(&r.key) => {
                    assert_eq!(r.default, "required", "{name} `{}` is required", r.key)
                }
                None => assert_ne!(
                    r.default, "required",
                    "{name} `{}`: the schema does not require it",
                    r.key
                ),
            }
        }
    }
}

/// A base file's statements per block, as (key, line).
type Lines = Vec<(String, String)>;

fn lines(items: &[(&str, &str)]) -> Lines {
    items
        .iter()
        .map(|(k, l)| (k.to_string(), l.to_string()))
        .collect()
}

/// Puts `line` in place of the statement of the same key, or appends it.
fn set(v: &mut Lines, key: &str, line: String) {
    match v.iter_mut().find(|(k, _)| k == key) {
        Some(slot) => slot.1 = line,
        None => v.push((key.to_string(), line)),
    }
}

fn join(v: &Lines, sep: &str) -> String {
    v.iter()
        .map(|(_, l)| l.as_str())
        .collect::<Vec<_>>()
        .join(sep)
}

/// A two-node cluster with `line` placed in `block` (replacing that block's statement of the
/// same key, if the base file has one).
fn podnet_with(block: &str, key: &str, line: &str) -> String {
    let mut cluster = lines(&[("pod-cidr", "pod-cidr 10.244.0.0/16")]);
    let mut node_a = lines(&[
        ("address", "address 10.0.0.1/24"),
        ("subnet", "subnet 10.244.1.0/24"),
    ]);
    match block {
        "cluster" => set(&mut cluster, key, line.to_string()),
        "node" => set(&mut node_a, key, line.to_string()),
        "backend vxlan" => set(
            &mut cluster,
            "backend",
            format!("backend vxlan {{ {line} }}"),
        ),
        "masquerade" => set(
            &mut cluster,
            "masquerade",
            format!("masquerade outbound {{ {line} }}"),
        ),
        "cni" => set(&mut cluster, "cni", format!("cni {{ {line} }}")),
        other => panic!("no template for block {other}"),
    }
    format!(
        "cluster c {{ {} }}\nnode a {{ {} }}\nnode b {{ address 10.0.0.2/24; subnet 10.244.2.0/24 }}\n",
        join(&cluster, "; "),
        join(&node_a, "; ")
    )
}

fn toml_with(block: &str, key: &str, line: &str) -> String {
    let mut cluster = lines(&[
        ("name", "name = \"c\""),
        ("pod-cidr", "pod-cidr = \"10.244.0.0/16\""),
    ]);
    let mut node_a = lines(&[
        ("name", "name = \"a\""),
        ("address", "address = \"10.0.0.1/24\""),
        ("subnet", "subnet = \"10.244.1.0/24\""),
    ]);
    match block {
        "cluster" => set(&mut cluster, key, line.to_string()),
        "node" => set(&mut node_a, key, line.to_string()),
        "backend vxlan" => set(
            &mut cluster,
            "backend",
            format!("backend = {{ mode = \"vxlan\", {line} }}"),
        ),
        "masquerade" => set(
            &mut cluster,
            "masquerade",
            format!("masquerade = {{ mode = \"outbound\", {line} }}"),
        ),
        "cni" => set(&mut cluster, "cni", format!("cni = {{ {line} }}")),
        other => panic!("no template for block {other}"),
    }
    format!(
        "[cluster]\n{}\n\n[[node]]\n{}\n\n[[node]]\nname = \"b\"\naddress = \"10.0.0.2/24\"\nsubnet = \"10.244.2.0/24\"\n",
        join(&cluster, "\n"),
        join(&node_a, "\n")
    )
}

fn compile_mem(name: &str, text: &str) -> Compilation {
    let path = PathBuf::from(format!("/doc/{name}"));
    let mut loader = MemLoader::default();
    loader.files.insert(path.clone(), text.to_string());
    compile(&loader, &path, UseLock::No)
}

fn assert_clean(c: &Compilation, what: &str, text: &str) {
    let d: Vec<String> = c
        .diagnostics
        .iter()
        .map(|d| format!("{}: {}", d.code, d.message))
        .collect();
    assert!(
        d.is_empty(),
        "{what} does not compile cleanly: {d:?}\n{text}"
    );
    assert!(c.cluster.is_some(), "{what}: no cluster\n{text}");
}

#[test]
fn every_row_example_compiles_in_both_forms() {
    let mut checked = 0;
    for (name, rows) in tables(&page()) {
        if name == "top level" {
            continue; // structural statements: covered by the code blocks below
        }
        for r in rows {
            let first = r.podnet.split_whitespace().next().unwrap_or("");
            assert_eq!(
                first, r.key,
                "{name}: the podnet example of `{}` uses another key",
                r.key
            );
            let toml_key = r.toml.split([' ', '=']).next().unwrap_or("");
            assert_eq!(
                toml_key, r.key,
                "{name}: the TOML example of `{}` uses another key",
                r.key
            );

            let p = podnet_with(&name, &r.key, &r.podnet);
            assert_clean(
                &compile_mem("cluster.podnet", &p),
                &format!("{name} `{}` (podnet)", r.key),
                &p,
            );
            let t = toml_with(&name, &r.key, &r.toml);
            assert_clean(
                &compile_mem("cluster.toml", &t),
                &format!("{name} `{}` (TOML)", r.key),
                &t,
            );
            checked += 1;
        }
    }
    let expected: usize = [
        lower::CLUSTER_KEYS,
        lower::NODE_KEYS,
        lower::VXLAN_KEYS,
        lower::MASQUERADE_KEYS,
        lower::CNI_KEYS,
    ]
    .iter()
    .map(|k| k.len())
    .sum();
    assert_eq!(checked, expected);
}

/// The fenced code blocks tagged `podnet` or `toml`.
fn code_blocks(page: &str) -> Vec<(String, String)> {
    let mut out = Vec::new();
    let mut current: Option<(String, String)> = None;
    for line in page.lines() {
        match (&mut current, line.strip_prefix("```")) {
            (None, Some(tag)) => current = Some((tag.trim().to_string(), String::new())),
            (Some(_), Some("")) => {
                if let Some(b) = current.take() {
                    out.push(b);
                }
            }
            (Some((_, text)), _) => {
                text.push_str(line);
                text.push('\n');
            }
            (None, None) => {}
        }
    }
    out.into_iter()
        .filter(|(tag, _)| tag == "podnet" || tag == "toml")
        .collect()
}

#[test]
fn every_example_block_compiles() {
    let blocks = code_blocks(&page());
    assert!(blocks.iter().filter(|(t, _)| t == "podnet").count() >= 2);
    assert!(blocks.iter().any(|(t, _)| t == "toml"));
    for (i, (tag, text)) in blocks.iter().enumerate() {
        let file = if tag == "toml" {
            "cluster.toml"
        } else {
            "cluster.podnet"
        };
        assert_clean(
            &compile_mem(file, text),
            &format!("example block {i} ({tag})"),
            text,
        );
    }
}

/// The mutation the tests above exist for: a key missing from the page is noticed.
#[test]
fn a_key_missing_from_the_page_is_noticed() {
    let p = page().replace("| `bandwidth` |", "| `bandwith` |");
    let t = tables(&p);
    let cni: BTreeSet<&str> = t
        .iter()
        .find(|(n, _)| n == "cni")
        .map(|(_, rows)| rows.iter().map(|r| r.key.as_str()).collect())
        .expect("cni table");
    let known: BTreeSet<&str> = lower::CNI_KEYS.iter().copied().collect();
    assert_ne!(cni, known);
}
