//! CLI transcripts: every `tests/transcripts/**/*.toml` case runs the `podnet` binary in a
//! sandbox holding the case's `<name>.in/` files and compares its exit code, stdout and
//! stderr exactly with what is stored beside it (`<name>.stdout`, `<name>.stderr`).
//! Regenerate with `TRYCMD=overwrite cargo test -p podnet --test transcripts` and review
//! the diff; the format is trycmd's (https://docs.rs/trycmd).

use std::path::{Path, PathBuf};

fn cases(dir: &Path, out: &mut Vec<PathBuf>) {
    let mut entries: Vec<PathBuf> = std::fs::read_dir(dir)
        .expect("read transcripts directory")
        .filter_map(Result::ok)
        .map(|e| e.path())
        .collect();
    entries.sort();
    for p in entries {
        if p.is_dir() {
            if p.extension().is_none_or(|e| e != "in" && e != "out") {
                cases(&p, out);
            }
        } else if p.extension().is_some_and(|e| e == "toml") {
            out.push(p);
        }
    }
}

#[test]
fn transcripts() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("../tests/transcripts");
    let mut all = Vec::new();
    cases(&root, &mut all);
    assert!(!all.is_empty(), "no transcripts under {}", root.display());
    // trycmd only compares a stream whose file exists: a missing one would let any output
    // pass, so every case must store both (empty when the command prints nothing there).
    let missing: Vec<String> = all
        .iter()
        .flat_map(|c| ["stdout", "stderr"].map(|s| c.with_extension(s)))
        .filter(|f| !f.exists())
        .map(|f| f.display().to_string())
        .collect();
    assert!(
        missing.is_empty(),
        "transcripts without their stored output (create them empty, then run with \
         TRYCMD=overwrite and review):\n{}",
        missing.join("\n")
    );
    let t = trycmd::TestCases::new();
    t.register_bin("podnet", trycmd::cargo::cargo_bin!("podnet"))
        .env("NO_COLOR", "1")
        .env("COLUMNS", "100");
    for c in &all {
        t.case(c);
    }
}
