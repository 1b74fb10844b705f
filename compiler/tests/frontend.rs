//! Front-end behaviour over the examples and generated clusters: fmt is idempotent and
//! round-trips to the same model, and the lock never moves an existing allocation.

use std::path::{Path, PathBuf};

use podnet_compiler::generate::{GenBackend, large_cluster};
use podnet_compiler::lock::{self, Change};
use podnet_compiler::span::{FileId, SourceKind};
use podnet_compiler::{
    Cluster, Code, FsLoader, MemLoader, UseLock, compile, compile_text, fmt, parse,
};

#[path = "../../tests/support/examples.rs"]
mod support;
use support::examples;

fn format(text: &str) -> String {
    let mut d = Vec::new();
    let items = parse::parse(text, FileId(0), &mut d);
    assert!(d.is_empty(), "{d:?}");
    fmt::format(&items)
}

fn lowered(text: &str) -> Cluster {
    let c = compile_text(
        &MemLoader::default(),
        Path::new("x.podnet"),
        text.to_string(),
        UseLock::No,
    );
    assert!(!c.has_errors(), "{:?}", c.diagnostics);
    c.cluster.expect("cluster")
}

#[test]
fn every_example_checks_clean() {
    let ex = examples();
    assert!(ex.len() >= 5, "{ex:?}");
    for p in ex {
        let c = compile(&FsLoader, &p, UseLock::IfPresent);
        assert!(
            c.diagnostics.is_empty(),
            "{}: {:?}",
            p.display(),
            c.diagnostics
        );
        let cluster = c.cluster.expect("cluster");
        assert!(
            cluster.nodes.iter().all(|n| n.subnet.is_some()),
            "{}: every example node has a subnet (file or lock)",
            p.display()
        );
    }
}

#[test]
fn fmt_is_idempotent_and_round_trips_every_example() {
    for p in examples() {
        if SourceKind::from_path(&p) != SourceKind::Podnet {
            continue;
        }
        let text = std::fs::read_to_string(&p).expect("read");
        let once = format(&text);
        assert_eq!(
            once,
            text,
            "{} is in canonical form (podnet fmt --check)",
            p.display()
        );
        assert_eq!(format(&once), once, "{}: idempotent", p.display());
        assert_eq!(
            lowered(&once),
            lowered(&text),
            "{}: same model",
            p.display()
        );
    }
}

#[test]
fn fmt_round_trips_messy_input() {
    let messy = "#c\ncluster   x{pod-cidr 10.244.0.0/16;backend vxlan{vni 7}\n\n\n   masquerade outbound {\nexcept \"10.9.0.0/16\" # keep\n}}\nnode \"n 1\"{address 10.0.0.1/24;subnet 10.244.3.0/24}";
    let once = format(messy);
    assert_eq!(format(&once), once);
    assert_eq!(lowered(&once), lowered(messy));
    assert!(once.contains("# keep"), "comments are kept:\n{once}");
}

#[test]
fn fmt_round_trips_a_generated_cluster() {
    let files = large_cluster(600, 200, GenBackend::Vxlan);
    let mut mem = MemLoader::default();
    let mut formatted = MemLoader::default();
    for (path, text) in &files {
        mem.files.insert(PathBuf::from(path), text.clone());
        let f = format(text);
        assert_eq!(format(&f), f);
        formatted.files.insert(PathBuf::from(path), f);
    }
    let a = compile(&mem, Path::new("cluster.podnet"), UseLock::No);
    let b = compile(&formatted, Path::new("cluster.podnet"), UseLock::No);
    assert!(a.diagnostics.is_empty(), "{:?}", a.diagnostics);
    assert_eq!(a.cluster.expect("a").nodes.len(), 600);
    assert_eq!(
        compile(&mem, Path::new("cluster.podnet"), UseLock::No).cluster,
        b.cluster
    );
}

fn cluster_with(nodes: &[&str]) -> Cluster {
    let mut text =
        String::from("cluster c {\n    pod-cidr   10.244.0.0/22\n    subnet-len 24\n}\n");
    for (i, n) in nodes.iter().enumerate() {
        text.push_str(&format!("node {n} {{ address 10.0.0.{}/24 }}\n", i + 1));
    }
    lowered(&text)
}

fn alloc(c: &Cluster, old: Option<&lock::Lock>) -> lock::Lock {
    let mut d = Vec::new();
    let l = lock::allocate(c, old, &mut d);
    assert!(d.is_empty(), "{d:?}");
    l.expect("allocated")
}

#[test]
fn lock_never_moves_existing_allocations() {
    let first = alloc(&cluster_with(&["a", "b", "c"]), None);
    let subnet = |l: &lock::Lock, n: &str| l.nodes.get(n).map(|s| s.value.to_string());
    assert_eq!(subnet(&first, "a").as_deref(), Some("10.244.0.0/24"));
    assert_eq!(subnet(&first, "c").as_deref(), Some("10.244.2.0/24"));

    // Adding a node changes only the new node's entry.
    let added = alloc(&cluster_with(&["a", "b", "c", "d"]), Some(&first));
    assert_eq!(
        first.diff(&added),
        vec![Change::Added {
            node: "d".into(),
            subnet: "10.244.3.0/24".parse().expect("net")
        }]
    );

    // Removing a node frees its subnet; nothing else moves; a newcomer takes the lowest free.
    let removed = alloc(&cluster_with(&["a", "c", "d"]), Some(&added));
    assert_eq!(added.diff(&removed).len(), 1);
    let refill = alloc(&cluster_with(&["a", "c", "d", "e"]), Some(&removed));
    assert_eq!(subnet(&refill, "e").as_deref(), Some("10.244.1.0/24"));

    // Reordering nodes moves nothing.
    let reordered = alloc(&cluster_with(&["e", "d", "c", "a"]), Some(&refill));
    assert!(refill.diff(&reordered).is_empty());

    // The lock round-trips through its file form.
    let mut sources = podnet_compiler::SourceMap::new();
    let id = sources.add("c.lock".into(), reordered.render(), SourceKind::Toml);
    let mut d = Vec::new();
    let back = lock::Lock::parse(&sources, id, &mut d).expect("parses");
    assert!(back.diff(&reordered).is_empty() && d.is_empty());

    // A full pod CIDR is a clear error at the node that does not fit.
    // (`check` reports this first as pod_cidr_too_small; allocation must not rely on that.)
    let text = "cluster c {\n    pod-cidr 10.244.0.0/23\n}\nnode a { address 10.0.0.1/24 }\nnode b { address 10.0.0.2/24; subnet 10.244.1.0/24 }\nnode e { address 10.0.0.3/24 }\n";
    let comp = compile_text(
        &MemLoader::default(),
        Path::new("x.podnet"),
        text.into(),
        UseLock::No,
    );
    let full = comp.cluster.expect("lowered despite check errors");
    let mut d = Vec::new();
    assert!(lock::allocate(&full, None, &mut d).is_none());
    assert_eq!(d.len(), 1);
    assert_eq!(d[0].code, Code::Exhausted);
}
