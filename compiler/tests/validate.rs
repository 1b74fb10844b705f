//! Every plan the planner makes passes plan validation: every node of every example, of
//! clusters covering the settings that shape a plan, and of generated large clusters.

use std::path::{Path, PathBuf};

use podnet_compiler::generate::{GenBackend, large_cluster};
use podnet_compiler::plan::Planner;
use podnet_compiler::validate::validate_plan;
use podnet_compiler::{Cluster, FsLoader, MemLoader, UseLock, compile, compile_text};

#[path = "../../tests/support/examples.rs"]
mod support;
use support::examples;

fn all_pass(c: &Cluster, what: &str) -> usize {
    let planner = Planner::new(c);
    for i in 0..planner.len() {
        let p = planner.plan(i).expect("plan");
        if let Err(e) = validate_plan(&p) {
            panic!("{what}: node {}: {e:#?}", p.node);
        }
    }
    planner.len()
}

#[test]
fn every_example_plan_passes() {
    let mut n = 0;
    for f in examples() {
        let c = compile(&FsLoader, &f, UseLock::IfPresent);
        assert!(!c.has_errors(), "{}: {:#?}", f.display(), c.diagnostics);
        n += all_pass(
            c.cluster.as_ref().expect("cluster"),
            &f.display().to_string(),
        );
    }
    assert!(n > 0);
}

#[test]
fn every_setting_that_shapes_a_plan_passes() {
    let nodes = "node n1 { address 10.0.0.1/24; subnet 10.244.0.0/24 }
        node n2 { address 10.0.0.2/24; subnet 10.244.1.0/24; interface ens3 }
        node n3 { address 10.0.1.3/24; subnet 10.244.2.0/24; underlay-mtu 9000 }";
    for settings in [
        "backend vxlan; masquerade off; forward-accept off; firewall iptables",
        "backend vxlan { vni 16777215; port 65535; device vx0; direct-routing on }; masquerade all",
        "backend vxlan; flannel-compat on; cni { bandwidth on; portmap off; hairpin off }",
        "backend vxlan; mtu 576; route-protocol 255; cni { name k8s; dir /etc/cni/x/; file a.conf }",
        "backend vxlan { direct-routing on }; mtu 8950; underlay-mtu 65535; interface br-lan.10; cni { bridge _b-0.x }",
    ] {
        let text = format!("cluster c {{ pod-cidr 10.244.0.0/16; {settings} }}\n{nodes}");
        let c = compile_text(
            &MemLoader::default(),
            Path::new("t.podnet"),
            text.clone(),
            UseLock::No,
        );
        assert!(!c.has_errors(), "{text}\n{:#?}", c.diagnostics);
        all_pass(c.cluster.as_ref().expect("cluster"), &text);
    }
}

#[test]
fn generated_large_cluster_plans_pass() {
    for backend in [GenBackend::HostGw, GenBackend::Vxlan] {
        let mut mem = MemLoader::default();
        for (path, text) in large_cluster(600, 100, backend) {
            mem.files.insert(PathBuf::from(path), text);
        }
        let c = compile(&mem, Path::new("cluster.podnet"), UseLock::No);
        assert!(!c.has_errors(), "{:#?}", c.diagnostics);
        assert_eq!(
            all_pass(c.cluster.as_ref().expect("cluster"), "generated"),
            600
        );
    }
}
