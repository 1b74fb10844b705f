//! Shared by the test suites of both crates (included with `#[path]`): where the repository
//! and its example clusters are.

use std::path::{Path, PathBuf};

/// The repository root (both crates sit one level below it).
pub fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..")
}

/// Every example cluster (`examples/*.podnet` and `examples/*.toml`), sorted.
pub fn examples() -> Vec<PathBuf> {
    let mut out: Vec<PathBuf> = std::fs::read_dir(repo_root().join("examples"))
        .expect("examples directory")
        .filter_map(Result::ok)
        .map(|e| e.path())
        .filter(|p| {
            matches!(
                p.extension().and_then(|e| e.to_str()),
                Some("podnet" | "toml")
            )
        })
        .collect();
    out.sort();
    out
}
