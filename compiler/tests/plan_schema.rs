//! Keeps `schemas/plan.schema.json` and the plan types in agreement: the plan of every node
//! of every example, and of inline clusters covering every setting that shapes a plan,
//! validates; plans the schema must refuse are refused.

use std::path::Path;

use podnet_compiler::plan::{NodePlan, Planner};
use podnet_compiler::{Cluster, FsLoader, MemLoader, UseLock, compile, compile_text};
use serde_json::{Value, json};

#[path = "../../tests/support/examples.rs"]
mod support;
use support::examples;
use support::repo_root as root;

fn validator() -> jsonschema::Validator {
    let text =
        std::fs::read_to_string(root().join("schemas/plan.schema.json")).expect("plan schema");
    let schema: Value = serde_json::from_str(&text).expect("schema is JSON");
    jsonschema::validator_for(&schema).expect("valid JSON Schema")
}

fn plans(c: &Cluster) -> Vec<NodePlan> {
    let planner = Planner::new(c);
    (0..planner.len())
        .map(|i| planner.plan(i).expect("plan"))
        .collect()
}

fn inline(text: &str) -> Cluster {
    let c = compile_text(
        &MemLoader::default(),
        Path::new("t.podnet"),
        text.to_string(),
        UseLock::No,
    );
    assert!(!c.has_errors(), "{text}\n{:#?}", c.diagnostics);
    c.cluster.expect("cluster")
}

fn assert_valid(v: &jsonschema::Validator, p: &NodePlan, what: &str) {
    let doc = serde_json::to_value(p).expect("plan as JSON");
    let errors: Vec<String> = v.iter_errors(&doc).map(|e| e.to_string()).collect();
    assert!(errors.is_empty(), "{what} node {}: {errors:#?}", p.node);
    let back: NodePlan = serde_json::from_value(doc).expect("plan parses back");
    assert_eq!(&back, p, "{what}: JSON round trip");
}

#[test]
fn every_example_plan_validates() {
    let v = validator();
    let files = examples();
    assert!(!files.is_empty(), "no examples found");
    let mut planned = 0;
    for f in files {
        let c = compile(&FsLoader, &f, UseLock::IfPresent);
        assert!(!c.has_errors(), "{}: {:#?}", f.display(), c.diagnostics);
        let cluster = c.cluster.expect("cluster");
        for p in plans(&cluster) {
            assert_valid(&v, &p, &f.display().to_string());
            planned += 1;
        }
    }
    assert!(planned > 0);
}

#[test]
fn every_setting_that_shapes_a_plan_validates() {
    let v = validator();
    let nodes = "node n1 { address 10.0.0.1/24; subnet 10.244.0.0/24 }
        node n2 { address 10.0.0.2/24; subnet 10.244.1.0/24; interface ens3 }
        node n3 { address 10.0.1.3/24; subnet 10.244.2.0/24; underlay-mtu 9000 }";
    for settings in [
        "backend vxlan; masquerade off; forward-accept off; firewall iptables",
        "backend vxlan { vni 4096; port 4789; device vx0; direct-routing on }; masquerade all",
        "backend vxlan; flannel-compat on; cni { bandwidth on; portmap off; hairpin off }",
        "backend vxlan; mtu 1400; route-protocol 200; cni { name k8s; dir /etc/cni/x/; file a.conflist }",
    ] {
        let text = format!("cluster c {{ pod-cidr 10.244.0.0/16; {settings} }}\n{nodes}");
        for p in plans(&inline(&text)) {
            assert_valid(&v, &p, settings);
        }
    }
    let hostgw = inline(
        "cluster h { pod-cidr 10.244.0.0/16; backend host-gw; masquerade outbound { except 192.168.0.0/16 } }
        node a { address 10.0.0.1/24; subnet 10.244.0.0/24 }
        node b { address 10.0.0.2/24; subnet 10.244.1.0/24 }",
    );
    for p in plans(&hostgw) {
        assert_valid(&v, &p, "host-gw");
    }
}

#[test]
fn the_schema_refuses_malformed_plans() {
    let v = validator();
    let c = inline(
        "cluster c { pod-cidr 10.244.0.0/16; backend vxlan }
        node a { address 10.0.0.1/24; subnet 10.244.0.0/24 }
        node b { address 10.0.0.2/24; subnet 10.244.1.0/24 }",
    );
    let good = serde_json::to_value(&plans(&c)[0]).expect("json");
    assert!(v.is_valid(&good));
    // (what, JSON pointer, new value or `None` to remove the key)
    let broken = [
        ("unknown key", "/extra", Some(json!(1))),
        ("missing key", "/routes", None),
        ("format version", "/format_version", Some(json!(1))),
        (
            "bridge with a MAC",
            "/links/0/mac",
            Some(json!("02:00:00:00:00:01")),
        ),
        ("vxlan without attributes", "/links/1/vxlan", None),
        (
            "bad MAC",
            "/neighbours/0/mac",
            Some(json!("02:00:00:00:00")),
        ),
        ("bad address", "/routes/0/via", Some(json!("10.244.1.256"))),
        ("bad CIDR", "/routes/0/dst", Some(json!("10.244.1.0/33"))),
        (
            "long interface name",
            "/routes/0/dev",
            Some(json!("a-very-long-name0")),
        ),
        ("bad driver", "/firewall/driver", Some(json!("pf"))),
        ("bad VNI", "/links/1/vxlan/vni", Some(json!(0))),
    ];
    for (what, pointer, value) in broken {
        let mut p = good.clone();
        let (parent, key) = pointer.rsplit_once('/').expect("pointer");
        let obj = p
            .pointer_mut(parent)
            .and_then(Value::as_object_mut)
            .unwrap_or_else(|| panic!("no object at {parent}"));
        match value {
            Some(x) => drop(obj.insert(key.to_string(), x)),
            None => assert!(obj.remove(key).is_some(), "{pointer} exists"),
        }
        assert!(!v.is_valid(&p), "the schema accepts a plan with: {what}");
    }
}
