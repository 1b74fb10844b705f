//! Keeps `docs/plan-format.md` equal to `schemas/plan.schema.json`: each "Object:" table
//! lists exactly the properties of that object in the schema (the plan itself and each
//! object definition), and the example block is what `plan` renders for that node.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

use podnet_compiler::{FsLoader, UseLock, compile};
use serde_json::Value;

fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..")
}

fn page() -> String {
    std::fs::read_to_string(root().join("docs/plan-format.md")).expect("docs/plan-format.md")
}

/// `### Object: NAME` → the first cells of the table under it.
fn tables(page: &str) -> BTreeMap<String, Vec<String>> {
    let mut out: BTreeMap<String, Vec<String>> = BTreeMap::new();
    let mut current: Option<String> = None;
    for line in page.lines() {
        if let Some(name) = line.strip_prefix("### Object: ") {
            current = Some(name.trim().to_string());
            out.entry(name.trim().to_string()).or_default();
        } else if line.starts_with('#') {
            current = None;
        } else if let (Some(name), Some(rest)) = (&current, line.strip_prefix("| `")) {
            let field = rest.split('`').next().unwrap_or("").to_string();
            out.entry(name.clone()).or_default().push(field);
        }
    }
    out
}

/// The schema's objects and their properties: the plan itself as `plan`, every `$defs`
/// entry with properties, and inline objects (such as `underlay`) by property name.
fn schema_objects() -> BTreeMap<String, BTreeSet<String>> {
    let text = std::fs::read_to_string(root().join("schemas/plan.schema.json")).expect("schema");
    let s: Value = serde_json::from_str(&text).expect("JSON");
    let props = |v: &Value| -> BTreeSet<String> {
        v.get("properties")
            .and_then(Value::as_object)
            .map(|o| o.keys().cloned().collect())
            .unwrap_or_default()
    };
    let mut out = BTreeMap::new();
    out.insert("plan".to_string(), props(&s));
    if let Some(top) = s.get("properties").and_then(Value::as_object) {
        for (k, v) in top {
            if v.get("properties").is_some() {
                out.insert(k.clone(), props(v));
            }
        }
    }
    if let Some(defs) = s.get("$defs").and_then(Value::as_object) {
        for (k, v) in defs {
            if v.get("properties").is_some() {
                out.insert(k.clone(), props(v));
            }
        }
    }
    out
}

#[test]
fn every_object_table_lists_exactly_the_schemas_fields() {
    let page = tables(&page());
    let schema = schema_objects();
    let documented: BTreeSet<&String> = page.keys().collect();
    let objects: BTreeSet<&String> = schema.keys().collect();
    assert_eq!(documented, objects, "objects documented vs the schema's");
    for (name, fields) in &page {
        let set: BTreeSet<String> = fields.iter().cloned().collect();
        assert_eq!(set.len(), fields.len(), "{name}: a field is listed twice");
        assert_eq!(
            &set, &schema[name],
            "object `{name}`: documented fields vs the schema's"
        );
    }
}

#[test]
fn the_example_is_what_plan_renders() {
    let text = page();
    let start = text.find("```text\n").expect("an example block") + "```text\n".len();
    let end = start + text[start..].find("```").expect("end of the example");
    let shown = &text[start..end];
    let c = compile(
        &FsLoader,
        &root().join("examples/kubeadm-vxlan.podnet"),
        UseLock::IfPresent,
    );
    let cluster = c.valid_cluster().expect("the example compiles");
    let plan = podnet_compiler::plan::plan(cluster, "worker-1").expect("plan for worker-1");
    assert_eq!(shown, podnet_compiler::plan::render_text(&plan));
}
