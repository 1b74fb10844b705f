//! Benchmarks planning one node of a generated 5,000-node cluster: the planner alone
//! (`Planner::new` + one plan) and the whole path (`compile` + plan).

use std::path::{Path, PathBuf};

use criterion::{BenchmarkId, Criterion, criterion_group, criterion_main};
use podnet_compiler::generate::{GenBackend, large_cluster};
use podnet_compiler::plan::Planner;
use podnet_compiler::{MemLoader, UseLock, compile};

fn bench_plan(c: &mut Criterion) {
    let mut g = c.benchmark_group("plan-one-node");
    g.sample_size(30);
    for (backend, name) in [
        (GenBackend::HostGw, "host-gw"),
        (GenBackend::Vxlan, "vxlan"),
    ] {
        let mut m = MemLoader::default();
        for (path, text) in large_cluster(5_000, 250, backend) {
            m.files.insert(PathBuf::from(path), text);
        }
        let root = Path::new("cluster.podnet");
        let comp = compile(&m, root, UseLock::No);
        let cluster = comp
            .valid_cluster()
            .expect("valid generated cluster")
            .clone();
        let node = cluster.nodes[2_500].name.value.clone();
        g.bench_with_input(
            BenchmarkId::new(format!("{name}/planner"), 5_000),
            &cluster,
            |b, cl| b.iter(|| Planner::new(cl).plan_named(&node).expect("plan")),
        );
        g.bench_with_input(
            BenchmarkId::new(format!("{name}/compile+plan"), 5_000),
            &m,
            |b, m| {
                b.iter(|| {
                    let comp = compile(m, root, UseLock::No);
                    let cl = comp.valid_cluster().expect("valid");
                    Planner::new(cl).plan_named(&node).expect("plan")
                })
            },
        );
    }
    g.finish();
}

criterion_group!(benches, bench_plan);
criterion_main!(benches);
