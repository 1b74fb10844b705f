//! podnet's compiler: parses `cluster.podnet` (or its TOML form), checks it, allocates node
//! subnets through the lock file, and plans each node's kernel state. Pure: no IO beyond
//! reading its inputs, no async runtime, no kernel access.

pub mod check;
pub mod diag;
pub mod hint;
pub mod import;
pub mod load;
pub mod lock;
pub mod lower;
pub mod mac;
pub mod model;
pub mod parse;
pub mod span;
pub mod syntax;
pub mod toml_front;
pub mod topology;
pub mod validate;

use std::path::Path;

pub use diag::{Code, Diagnostic, Severity};
pub use load::{FsLoader, Loader, MemLoader};
pub use model::Cluster;
pub use span::SourceMap;

/// The result of compiling one cluster description.
pub struct Compilation {
    pub sources: SourceMap,
    /// The lowered cluster, when the file has a cluster block. With errors it may hold
    /// placeholders for invalid settings: use [`Compilation::valid_cluster`] to plan.
    pub cluster: Option<Cluster>,
    pub diagnostics: Vec<Diagnostic>,
    /// The lock file, when one was read.
    pub lock: Option<lock::Lock>,
}

impl Compilation {
    pub fn has_errors(&self) -> bool {
        self.diagnostics.iter().any(Diagnostic::is_error)
    }

    /// The cluster, only when there is no error at all.
    pub fn valid_cluster(&self) -> Option<&Cluster> {
        if self.has_errors() {
            None
        } else {
            self.cluster.as_ref()
        }
    }
}

/// Whether node subnets are taken from the lock file.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum UseLock {
    /// Read `FILE.lock` when it exists and fill in node subnets from it.
    IfPresent,
    /// Ignore the lock file (what `podnet lock` itself needs).
    No,
}

/// Loads, lowers and checks `root` (and its includes and lock file). Never panics on any
/// input; every problem found is in `diagnostics`, sorted by file and position.
pub fn compile(loader: &dyn Loader, root: &Path, use_lock: UseLock) -> Compilation {
    let mut diags = Vec::new();
    let loaded = load::load(loader, root, &mut diags);
    finish(loader, root, loaded, use_lock, diags)
}

/// Like [`compile`], for text already in memory (includes and lock still go through `loader`).
pub fn compile_text(
    loader: &dyn Loader,
    root: &Path,
    text: String,
    use_lock: UseLock,
) -> Compilation {
    let mut diags = Vec::new();
    let loaded = load::load_text(loader, root, text, &mut diags);
    finish(loader, root, loaded, use_lock, diags)
}

fn finish(
    loader: &dyn Loader,
    root: &Path,
    loaded: load::Loaded,
    use_lock: UseLock,
    mut diags: Vec<Diagnostic>,
) -> Compilation {
    let lowered = if loaded.files.is_empty() {
        None
    } else {
        lower::lower(&loaded.for_lowering(), &loaded.sources, &mut diags)
    };
    let (mut cluster, invalid) = match lowered {
        Some(l) => (Some(l.cluster), l.invalid),
        None => (None, model::Invalid::default()),
    };
    let mut sources = loaded.sources;
    let mut lock = None;
    let mut unallocated = false;
    if let Some(c) = &mut cluster {
        // The lock's allocations are only meaningful for the cluster's real settings.
        if use_lock == UseLock::IfPresent && !invalid.any() {
            let lp = lock::lock_path(root);
            let before = sources.len();
            let errors = diags.len();
            lock = lock::read(loader, &lp, &mut sources, &mut diags);
            let usable = match &lock {
                Some(l) => {
                    let id = (sources.len() > before).then_some(span::FileId(before as u32));
                    lock::apply(c, l, id, &mut diags)
                }
                // Absent (no diagnostic), or unreadable (already reported).
                None => diags.len() == errors,
            };
            unallocated = usable;
        }
        let kind = sources.get(c.name.span.file).kind;
        check::check(c, &invalid, kind, &mut diags);
        // Last, and only for an otherwise valid file: the remedy, `podnet lock`, refuses a
        // file with errors, so before they are fixed this would only repeat them.
        if unallocated && !diags.iter().any(Diagnostic::is_error) {
            let name = |p: &Path| {
                p.file_name().map_or_else(
                    || p.display().to_string(),
                    |n| n.to_string_lossy().into_owned(),
                )
            };
            let lp = lock::lock_path(root);
            lock::unallocated(c, &name(root), &name(&lp), lock.is_some(), &mut diags);
        }
    }
    diag::sort(&mut diags);
    Compilation {
        sources,
        cluster,
        diagnostics: diags,
        lock,
    }
}
pub mod fmt;
pub mod generate;
pub mod plan;
