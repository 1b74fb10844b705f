//! Reading inputs: the root file, its `include`s (globs relative to the including file,
//! cycles and repeats rejected) and the lock file, through a [`Loader`] so tests and fuzzers
//! can compile from memory. This and `Loader` impls are the compiler's only IO.

use std::collections::HashMap;
use std::io;
use std::path::{Path, PathBuf};

use crate::diag::{Code, Diagnostic};
use crate::span::{FileId, SourceKind, SourceMap, Span};
use crate::syntax::{Item, statements};

/// Where input files come from.
pub trait Loader {
    fn read(&self, path: &Path) -> io::Result<String>;
    /// Paths matching a glob pattern, sorted.
    fn glob(&self, pattern: &Path) -> Result<Vec<PathBuf>, String>;
    /// A stable identity for cycle detection (the canonical path on a file system).
    fn identity(&self, path: &Path) -> PathBuf {
        path.to_path_buf()
    }
}

/// The real file system.
pub struct FsLoader;

impl Loader for FsLoader {
    fn read(&self, path: &Path) -> io::Result<String> {
        let bytes = std::fs::read(path)?;
        String::from_utf8(bytes).map_err(|e| {
            io::Error::new(
                io::ErrorKind::InvalidData,
                format!(
                    "not UTF-8 (invalid byte at offset {})",
                    e.utf8_error().valid_up_to()
                ),
            )
        })
    }

    fn glob(&self, pattern: &Path) -> Result<Vec<PathBuf>, String> {
        let p = pattern.to_str().ok_or("the pattern is not UTF-8")?;
        let mut out: Vec<PathBuf> = glob::glob(p)
            .map_err(|e| e.to_string())?
            .filter_map(Result::ok)
            .filter(|p| p.is_file())
            .collect();
        out.sort();
        Ok(out)
    }

    fn identity(&self, path: &Path) -> PathBuf {
        std::fs::canonicalize(path).unwrap_or_else(|_| path.to_path_buf())
    }
}

/// In-memory files, for tests and fuzzing. Globs match with the `glob` crate's patterns.
#[derive(Default)]
pub struct MemLoader {
    pub files: HashMap<PathBuf, String>,
}

impl Loader for MemLoader {
    fn read(&self, path: &Path) -> io::Result<String> {
        self.files
            .get(path)
            .cloned()
            .ok_or_else(|| io::Error::from(io::ErrorKind::NotFound))
    }

    fn glob(&self, pattern: &Path) -> Result<Vec<PathBuf>, String> {
        let p = pattern.to_str().ok_or("the pattern is not UTF-8")?;
        let pat = glob::Pattern::new(p).map_err(|e| e.to_string())?;
        let mut out: Vec<PathBuf> = self
            .files
            .keys()
            .filter(|k| pat.matches_path(k))
            .cloned()
            .collect();
        out.sort();
        Ok(out)
    }
}

/// Every file of one cluster description, parsed.
pub struct Loaded {
    pub sources: SourceMap,
    /// Parsed files in include order; the root file first.
    pub files: Vec<(FileId, Vec<Item>)>,
}

impl Loaded {
    /// `(is_root, items)` for lowering.
    pub fn for_lowering(&self) -> Vec<(bool, &[Item])> {
        self.files
            .iter()
            .enumerate()
            .map(|(i, (_, items))| (i == 0, items.as_slice()))
            .collect()
    }
}

/// Parses text of either form into the generic tree.
pub fn parse_source(
    text: &str,
    kind: SourceKind,
    file: FileId,
    diags: &mut Vec<Diagnostic>,
) -> Vec<Item> {
    match kind {
        SourceKind::Podnet => crate::parse::parse(text, file, diags),
        SourceKind::Toml => crate::toml_front::parse(text, file, diags),
    }
}

/// Loads `root` and everything it includes. Problems become diagnostics; a root file that
/// cannot be read yields an empty `Loaded` and one `podnet::io` diagnostic.
pub fn load(loader: &dyn Loader, root: &Path, diags: &mut Vec<Diagnostic>) -> Loaded {
    let mut l = Loaded {
        sources: SourceMap::new(),
        files: Vec::new(),
    };
    let mut seen: HashMap<PathBuf, FileId> = HashMap::new();
    let mut stack: Vec<PathBuf> = Vec::new();
    match loader.read(root) {
        Ok(text) => {
            file(
                loader,
                root.to_path_buf(),
                text,
                &mut l,
                &mut seen,
                &mut stack,
                diags,
            );
        }
        Err(e) => diags.push(
            Diagnostic::error(Code::Io, format!("cannot read {}: {e}", root.display()))
                .help("check the path and its permissions"),
        ),
    }
    l
}

/// Loads text already in memory as the root file (fuzzing, stdin).
pub fn load_text(
    loader: &dyn Loader,
    path: &Path,
    text: String,
    diags: &mut Vec<Diagnostic>,
) -> Loaded {
    let mut l = Loaded {
        sources: SourceMap::new(),
        files: Vec::new(),
    };
    file(
        loader,
        path.to_path_buf(),
        text,
        &mut l,
        &mut HashMap::new(),
        &mut Vec::new(),
        diags,
    );
    l
}

fn file(
    loader: &dyn Loader,
    path: PathBuf,
    text: String,
    l: &mut Loaded,
    seen: &mut HashMap<PathBuf, FileId>,
    stack: &mut Vec<PathBuf>,
    diags: &mut Vec<Diagnostic>,
) {
    let kind = SourceKind::from_path(&path);
    let ident = loader.identity(&path);
    let id = l.sources.add(path.clone(), text, kind);
    seen.insert(ident.clone(), id);
    stack.push(ident);
    let text = l.sources.get(id).text.clone();
    let items = parse_source(&text, kind, id, diags);
    let slot = l.files.len();
    l.files.push((id, Vec::new()));
    let dir = path.parent().map(Path::to_path_buf).unwrap_or_default();
    for s in statements(&items) {
        if s.keyword != "include" {
            continue;
        }
        if s.block.is_some() || s.args.is_empty() {
            diags.push(
                Diagnostic::error(Code::Arity, "`include` takes one or more file patterns")
                    .at(s.span, "expected `include \"PATTERN\"`")
                    .help(r#"write `include "nodes/*.podnet"` (relative to this file)"#),
            );
            continue;
        }
        for a in &s.args {
            include(loader, &dir, &a.text, a.span, l, seen, stack, diags);
        }
    }
    l.files[slot].1 = items;
    stack.pop();
}

#[allow(clippy::too_many_arguments)]
fn include(
    loader: &dyn Loader,
    dir: &Path,
    pattern: &str,
    at: Span,
    l: &mut Loaded,
    seen: &mut HashMap<PathBuf, FileId>,
    stack: &mut Vec<PathBuf>,
    diags: &mut Vec<Diagnostic>,
) {
    let full = dir.join(pattern);
    let is_glob = pattern.contains(['*', '?', '[']);
    let matches = match loader.glob(&full) {
        Ok(m) => m,
        Err(e) => {
            diags.push(
                Diagnostic::error(
                    Code::IncludeNotFound,
                    format!("invalid include pattern: {e}"),
                )
                .at(at, "invalid pattern")
                .help("use `*`, `?` and `[…]` as in shell globs"),
            );
            return;
        }
    };
    if matches.is_empty() {
        let d = if is_glob {
            Diagnostic::warning(Code::IncludeEmpty, format!("`{pattern}` matches no file"))
                .at(at, "nothing matches")
                .help("patterns are relative to the including file; check the directory")
        } else {
            Diagnostic::error(
                Code::IncludeNotFound,
                format!("included file `{pattern}` not found"),
            )
            .at(at, "no such file")
            .help("paths are relative to the including file")
        };
        diags.push(d);
        return;
    }
    for m in matches {
        // Messages name files relative to the including file, as the user wrote them.
        let shown = m.strip_prefix(dir).unwrap_or(&m).display().to_string();
        let ident = loader.identity(&m);
        if stack.contains(&ident) {
            diags.push(
                Diagnostic::error(Code::IncludeCycle, format!("{shown} includes itself"))
                    .at(at, "this include closes a cycle")
                    .help("remove the include that leads back to an including file"),
            );
            continue;
        }
        if let Some(&prev) = seen.get(&ident) {
            diags.push(
                Diagnostic::error(Code::IncludeTwice, format!("{shown} is included twice"))
                    .at(at, "included again here")
                    .help(format!(
                        "it was already loaded as file {} of this cluster; include each file once",
                        prev.0 + 1
                    )),
            );
            continue;
        }
        match loader.read(&m) {
            Ok(text) => file(loader, m, text, l, seen, stack, diags),
            Err(e) => diags.push(
                Diagnostic::error(Code::Io, format!("cannot read {shown}: {e}"))
                    .at(at, "included here")
                    .help("check the file and its permissions"),
            ),
        }
    }
}
