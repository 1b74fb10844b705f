//! Golden plans: the JSON plan of every node of every example must equal
//! `tests/data/plans/<example-stem>/<node>.json`. Regenerate with
//! `PODNET_BLESS=1 cargo test -p podnet-compiler --test plan_golden` and review the diff.

use std::collections::BTreeSet;

use podnet_compiler::plan::Planner;
use podnet_compiler::{FsLoader, UseLock, compile};

#[path = "../../tests/support/examples.rs"]
mod support;
use support::examples;
use support::repo_root as root;

#[test]
fn example_plans_match_their_golden_files() {
    let bless = std::env::var_os("PODNET_BLESS").is_some();
    let base = root().join("tests/data/plans");
    let mut failures = Vec::new();
    let mut seen_dirs = BTreeSet::new();
    let files = examples();
    assert!(!files.is_empty(), "no examples found");
    for f in files {
        let stem = f
            .file_stem()
            .and_then(|s| s.to_str())
            .expect("UTF-8 example name")
            .to_string();
        let c = compile(&FsLoader, &f, UseLock::IfPresent);
        assert!(!c.has_errors(), "{}: {:#?}", f.display(), c.diagnostics);
        let cluster = c.cluster.expect("cluster");
        let dir = base.join(&stem);
        assert!(seen_dirs.insert(stem.clone()), "two examples named {stem}");
        if bless {
            std::fs::create_dir_all(&dir).expect("create golden directory");
        }
        let planner = Planner::new(&cluster);
        let mut expected_files = BTreeSet::new();
        for i in 0..planner.len() {
            let plan = planner.plan(i).expect("plan");
            let text = plan.to_json_pretty().expect("JSON");
            let name = format!("{}.json", plan.node);
            let path = dir.join(&name);
            expected_files.insert(name);
            if bless {
                std::fs::write(&path, &text).expect("write golden plan");
                continue;
            }
            match std::fs::read_to_string(&path) {
                Err(_) => failures.push(format!("{} is missing", path.display())),
                Ok(want) if want != text => {
                    failures.push(format!("{} differs; actual plan:\n{text}", path.display()))
                }
                Ok(_) => {}
            }
        }
        // A golden file for a node that no longer exists is stale.
        if let Ok(entries) = std::fs::read_dir(&dir) {
            for e in entries.filter_map(Result::ok) {
                let name = e.file_name().to_string_lossy().into_owned();
                if !expected_files.contains(&name) {
                    if bless {
                        std::fs::remove_file(e.path()).expect("remove stale golden plan");
                    } else {
                        failures.push(format!("{} is stale", e.path().display()));
                    }
                }
            }
        }
    }
    if let Ok(entries) = std::fs::read_dir(&base) {
        for e in entries.filter_map(Result::ok) {
            let name = e.file_name().to_string_lossy().into_owned();
            if !seen_dirs.contains(&name) {
                failures.push(format!("{} belongs to no example", e.path().display()));
            }
        }
    }
    assert!(
        failures.is_empty(),
        "{}\n\nrun `PODNET_BLESS=1 cargo test -p podnet-compiler --test plan_golden` and review the diff",
        failures.join("\n")
    );
}
