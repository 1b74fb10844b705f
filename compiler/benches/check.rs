//! Benchmarks `check` (load, parse, lower, all checks) of generated clusters, through the
//! same in-memory loader for every size so only the compiler's own work is measured.

use std::path::{Path, PathBuf};

use criterion::{BenchmarkId, Criterion, criterion_group, criterion_main};
use podnet_compiler::generate::{GenBackend, large_cluster};
use podnet_compiler::{MemLoader, UseLock, compile};

fn loader(nodes: usize, backend: GenBackend) -> MemLoader {
    let mut m = MemLoader::default();
    for (path, text) in large_cluster(nodes, 250, backend) {
        m.files.insert(PathBuf::from(path), text);
    }
    m
}

fn bench_check(c: &mut Criterion) {
    let mut g = c.benchmark_group("check");
    g.sample_size(30);
    for (nodes, backend, name) in [
        (5_000, GenBackend::HostGw, "host-gw"),
        (5_000, GenBackend::Vxlan, "vxlan"),
        (20_000, GenBackend::HostGw, "host-gw"),
    ] {
        let m = loader(nodes, backend);
        let root = Path::new("cluster.podnet");
        let probe = compile(&m, root, UseLock::No);
        assert!(
            probe.diagnostics.is_empty(),
            "{:?}",
            probe.diagnostics.first()
        );
        g.bench_with_input(BenchmarkId::new(name, nodes), &m, |b, m| {
            b.iter(|| compile(m, root, UseLock::No))
        });
    }
    g.finish();
}

criterion_group!(benches, bench_check);
criterion_main!(benches);
