//! Reading inputs: the root file, its `include`s (globs relative to the including file,
//! confined to the root file's directory tree, cycles and repeats rejected) and the lock
//! file, through a [`Loader`] so tests and fuzzers can compile from memory. This and
//! `Loader` impls are the compiler's only IO. [`FsLoader`] reads regular files only (checked
//! before opening: opening a FIFO would block) of at most [`MAX_INPUT_BYTES`], and its globs
//! do not follow a directory symlink back into one of its own ancestors.

use std::collections::HashMap;
use std::fs;
use std::io::{self, Read as _};
use std::path::{Component, Path, PathBuf};

use crate::diag::{Code, Diagnostic};
use crate::span::{FileId, SourceKind, SourceMap, Span};
use crate::syntax::{Item, statements};

/// The largest input file (cluster file, include, lock file) podnet reads: 64 MiB, about
/// 800,000 nodes in the podnet language.
pub const MAX_INPUT_BYTES: u64 = 64 << 20;

/// How deep a `**` glob descends below the pattern's literal directory.
pub const MAX_GLOB_DEPTH: usize = 64;

/// Why an input file could not be read.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ReadError {
    #[error("no such file")]
    NotFound,
    /// A directory, FIFO, device or socket (the name of the kind).
    #[error("is a {0}, not a regular file")]
    NotAFile(&'static str),
    #[error("is {size} bytes, larger than the {} MiB limit for input files", MAX_INPUT_BYTES >> 20)]
    TooLarge { size: u64 },
    #[error("not UTF-8 (invalid byte at offset {0})")]
    NotUtf8(usize),
    #[error("{0}")]
    Io(io::Error),
}

impl From<io::Error> for ReadError {
    fn from(e: io::Error) -> Self {
        match e.kind() {
            io::ErrorKind::NotFound => ReadError::NotFound,
            io::ErrorKind::IsADirectory => ReadError::NotAFile("directory"),
            _ => ReadError::Io(e),
        }
    }
}

impl ReadError {
    /// The diagnostic code this failure is reported with.
    pub fn code(&self) -> Code {
        match self {
            ReadError::NotAFile(_) => Code::NotAFile,
            ReadError::TooLarge { .. } => Code::InputTooLarge,
            _ => Code::Io,
        }
    }

    /// What to do about it.
    pub fn hint(&self) -> String {
        match self {
            ReadError::NotFound => "check the path".to_string(),
            ReadError::NotAFile(_) => {
                "podnet reads regular files only; name the file itself".to_string()
            }
            ReadError::TooLarge { .. } => format!(
                "split the nodes into several files with `include` (each at most {} MiB)",
                MAX_INPUT_BYTES >> 20
            ),
            ReadError::NotUtf8(_) => "save the file as UTF-8".to_string(),
            ReadError::Io(_) => "check the file and its permissions".to_string(),
        }
    }
}

/// Where input files come from.
pub trait Loader {
    fn read(&self, path: &Path) -> Result<String, ReadError>;
    /// Paths matching a glob pattern, sorted; a pattern without `*`, `?` or `[` yields the
    /// path itself when it exists.
    fn glob(&self, pattern: &Path) -> Result<Vec<PathBuf>, String>;
    /// A stable identity for cycle detection and for confining includes to the root file's
    /// directory tree (the canonical path on a file system).
    fn identity(&self, path: &Path) -> PathBuf {
        path.to_path_buf()
    }
}

/// The real file system.
pub struct FsLoader;

/// `Ok` for a regular file of at most [`MAX_INPUT_BYTES`].
fn regular(meta: &fs::Metadata) -> Result<(), ReadError> {
    let t = meta.file_type();
    if !t.is_file() {
        return Err(ReadError::NotAFile(kind_name(t)));
    }
    if meta.len() > MAX_INPUT_BYTES {
        return Err(ReadError::TooLarge { size: meta.len() });
    }
    Ok(())
}

fn kind_name(t: fs::FileType) -> &'static str {
    #[cfg(unix)]
    {
        use std::os::unix::fs::FileTypeExt as _;
        if t.is_fifo() {
            return "FIFO";
        }
        if t.is_char_device() {
            return "character device";
        }
        if t.is_block_device() {
            return "block device";
        }
        if t.is_socket() {
            return "socket";
        }
    }
    if t.is_dir() {
        "directory"
    } else {
        "special file"
    }
}

fn is_glob(component: &Component<'_>) -> bool {
    component
        .as_os_str()
        .to_str()
        .is_some_and(|s| s.contains(['*', '?', '[']))
}

impl Loader for FsLoader {
    fn read(&self, path: &Path) -> Result<String, ReadError> {
        // The type is checked before opening (opening a FIFO blocks until a writer comes),
        // and again on the open file in case the path was swapped in between.
        regular(&fs::metadata(path)?)?;
        let file = fs::File::open(path)?;
        let meta = file.metadata()?;
        regular(&meta)?;
        let mut bytes = Vec::with_capacity(usize::try_from(meta.len()).unwrap_or(0));
        file.take(MAX_INPUT_BYTES + 1).read_to_end(&mut bytes)?;
        if bytes.len() as u64 > MAX_INPUT_BYTES {
            return Err(ReadError::TooLarge {
                size: bytes.len() as u64,
            });
        }
        String::from_utf8(bytes).map_err(|e| ReadError::NotUtf8(e.utf8_error().valid_up_to()))
    }

    fn glob(&self, pattern: &Path) -> Result<Vec<PathBuf>, String> {
        let comps: Vec<Component<'_>> = pattern.components().collect();
        let Some(split) = comps.iter().position(is_glob) else {
            // A literal path: whatever exists (a directory or FIFO is reported when read).
            return Ok(if fs::metadata(pattern).is_ok() {
                vec![pattern.to_path_buf()]
            } else {
                Vec::new()
            });
        };
        let full: PathBuf = comps.iter().collect();
        let text = full.to_str().ok_or("the pattern is not UTF-8")?;
        let pat = glob::Pattern::new(text).map_err(|e| e.to_string())?;
        let base: PathBuf = comps[..split].iter().collect();
        let rest = &comps[split..];
        let depth = if rest.iter().any(|c| c.as_os_str() == "**") {
            MAX_GLOB_DEPTH
        } else {
            rest.len()
        };
        let mut out = Vec::new();
        walk(&base, depth, &pat, &mut out);
        out.sort();
        Ok(out)
    }

    fn identity(&self, path: &Path) -> PathBuf {
        fs::canonicalize(path).unwrap_or_else(|_| path.to_path_buf())
    }
}

/// Collects the non-directories under `dir` (down to `depth` levels) that match `pat`.
/// A directory whose real path is `dir`'s own or an ancestor's (a symlink loop such as
/// `racks/loop -> ..`) is not entered, so the walk always ends.
fn walk(dir: &Path, depth: usize, pat: &glob::Pattern, out: &mut Vec<PathBuf>) {
    if depth == 0 {
        return;
    }
    let opts = glob::MatchOptions {
        case_sensitive: true,
        require_literal_separator: true,
        require_literal_leading_dot: false,
    };
    let read_from = if dir.as_os_str().is_empty() {
        Path::new(".")
    } else {
        dir
    };
    let Ok(real) = fs::canonicalize(read_from) else {
        return;
    };
    let Ok(entries) = fs::read_dir(read_from) else {
        return;
    };
    for e in entries.filter_map(Result::ok) {
        let path = dir.join(e.file_name());
        let Ok(meta) = fs::metadata(&path) else {
            continue; // dangling symlink
        };
        if meta.is_dir() {
            let inside = fs::canonicalize(&path).is_ok_and(|t| !real.starts_with(&t));
            if inside {
                walk(&path, depth - 1, pat, out);
            }
        } else if pat.matches_path_with(&path, opts) {
            out.push(path);
        }
    }
}

/// In-memory files, for tests and fuzzing. Globs match with the `glob` crate's patterns;
/// identities are the paths with `.` and `dir/..` resolved lexically.
#[derive(Default)]
pub struct MemLoader {
    pub files: HashMap<PathBuf, String>,
}

impl Loader for MemLoader {
    fn read(&self, path: &Path) -> Result<String, ReadError> {
        self.files.get(path).cloned().ok_or(ReadError::NotFound)
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

    fn identity(&self, path: &Path) -> PathBuf {
        let mut out: Vec<Component<'_>> = Vec::new();
        for c in path.components() {
            match c {
                Component::CurDir => {}
                Component::ParentDir if matches!(out.last(), Some(Component::Normal(_))) => {
                    out.pop();
                }
                c => out.push(c),
            }
        }
        out.iter().collect()
    }
}

/// Whether `path` (an identity) lies in the directory tree `tree` (an identity).
fn within(tree: &Path, path: &Path) -> bool {
    path.strip_prefix(tree)
        .is_ok_and(|rest| !rest.components().any(|c| c == Component::ParentDir))
}

/// A diagnostic for an input that could not be read, located at the file itself (the path
/// is added to `sources` with no text, so the location is the file's line 1, column 1).
pub fn unreadable(sources: &mut SourceMap, path: &Path, what: &str, e: &ReadError) -> Diagnostic {
    let id = sources.add(
        path.to_path_buf(),
        String::new(),
        SourceKind::from_path(path),
    );
    // The location names the whole path; the message names the file.
    let name = path
        .file_name()
        .unwrap_or(path.as_os_str())
        .to_string_lossy();
    Diagnostic::error(e.code(), format!("cannot read {what} {name}: {e}"))
        .at(Span::new(id, 0, 0), "this file")
        .help(e.hint())
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
/// cannot be read yields an empty `Loaded` and one diagnostic located at that file.
pub fn load(loader: &dyn Loader, root: &Path, diags: &mut Vec<Diagnostic>) -> Loaded {
    let mut w = Walker::new(loader, root, diags);
    match loader.read(root) {
        Ok(text) => w.file(root.to_path_buf(), text),
        Err(e) => {
            let d = unreadable(&mut w.l.sources, root, "the cluster file", &e);
            w.diags.push(d);
        }
    }
    w.l
}

/// Loads text already in memory as the root file (fuzzing, stdin).
pub fn load_text(
    loader: &dyn Loader,
    path: &Path,
    text: String,
    diags: &mut Vec<Diagnostic>,
) -> Loaded {
    let mut w = Walker::new(loader, path, diags);
    w.file(path.to_path_buf(), text);
    w.l
}

/// The state of one load: what was read, the include stack, and the directory tree
/// includes must stay in.
struct Walker<'a> {
    loader: &'a dyn Loader,
    l: Loaded,
    seen: HashMap<PathBuf, FileId>,
    stack: Vec<PathBuf>,
    /// The identity of the root file's directory.
    tree: PathBuf,
    diags: &'a mut Vec<Diagnostic>,
}

impl<'a> Walker<'a> {
    fn new(loader: &'a dyn Loader, root: &Path, diags: &'a mut Vec<Diagnostic>) -> Self {
        let dir = root.parent().filter(|p| !p.as_os_str().is_empty());
        Walker {
            loader,
            l: Loaded {
                sources: SourceMap::new(),
                files: Vec::new(),
            },
            seen: HashMap::new(),
            stack: Vec::new(),
            tree: loader.identity(dir.unwrap_or(Path::new("."))),
            diags,
        }
    }

    fn file(&mut self, path: PathBuf, text: String) {
        let kind = SourceKind::from_path(&path);
        let ident = self.loader.identity(&path);
        let id = self.l.sources.add(path.clone(), text, kind);
        self.seen.insert(ident.clone(), id);
        self.stack.push(ident);
        let text = self.l.sources.get(id).text.clone();
        let items = parse_source(&text, kind, id, self.diags);
        let slot = self.l.files.len();
        self.l.files.push((id, Vec::new()));
        let dir = path.parent().map(Path::to_path_buf).unwrap_or_default();
        for s in statements(&items) {
            if s.keyword != "include" {
                continue;
            }
            if s.block.is_some() || s.args.is_empty() {
                self.diags.push(
                    Diagnostic::error(Code::Arity, "`include` takes one or more file patterns")
                        .at(s.span, "expected `include \"PATTERN\"`")
                        .help(match kind {
                            SourceKind::Podnet => {
                                r#"write `include "nodes/*.podnet"` (relative to this file)"#
                            }
                            SourceKind::Toml => {
                                r#"write `include = ["nodes/*.toml"]` (relative to this file)"#
                            }
                        }),
                );
                continue;
            }
            for a in &s.args {
                self.include(&dir, &a.text, a.span);
            }
        }
        self.l.files[slot].1 = items;
        self.stack.pop();
    }

    fn include(&mut self, dir: &Path, pattern: &str, at: Span) {
        let full = dir.join(pattern);
        let is_glob = pattern.contains(['*', '?', '[']);
        let matches = match self.loader.glob(&full) {
            Ok(m) => m,
            Err(e) => {
                self.diags.push(
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
            self.diags.push(d);
            return;
        }
        for m in matches {
            // Messages name files relative to the including file, as the user wrote them.
            let shown = m.strip_prefix(dir).unwrap_or(&m).display().to_string();
            let ident = self.loader.identity(&m);
            if !within(&self.tree, &ident) {
                // Never read: a cluster file must not pull in (and show) files from
                // elsewhere on the machine.
                self.diags.push(
                    Diagnostic::error(
                        Code::IncludeOutside,
                        format!("{shown} is outside the cluster file's directory"),
                    )
                    .at(at, "leads outside the cluster file's directory tree")
                    .help(
                        "includes must stay in the cluster file's directory or below it \
                         (symlinks resolved); move the file into that tree",
                    ),
                );
                continue;
            }
            if self.stack.contains(&ident) {
                self.diags.push(
                    Diagnostic::error(Code::IncludeCycle, format!("{shown} includes itself"))
                        .at(at, "this include closes a cycle")
                        .help("remove the include that leads back to an including file"),
                );
                continue;
            }
            if let Some(&prev) = self.seen.get(&ident) {
                self.diags.push(
                    Diagnostic::error(Code::IncludeTwice, format!("{shown} is included twice"))
                        .at(at, "included again here")
                        .help(format!(
                            "it was already loaded as file {} of this cluster; include each file once",
                            prev.0 + 1
                        )),
                );
                continue;
            }
            match self.loader.read(&m) {
                Ok(text) => self.file(m, text),
                Err(e) => self.diags.push(
                    Diagnostic::error(e.code(), format!("cannot read {shown}: {e}"))
                        .at(at, "included here")
                        .help(e.hint()),
                ),
            }
        }
    }
}
