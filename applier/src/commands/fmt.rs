//! `podnet fmt`: rewrite files in the canonical layout, or `--check` that they already are.
//! A symlink is formatted at its target and stays a link ([`write_through`]).

use std::io::{Read, Write};
use std::os::unix::fs::PermissionsExt as _;
use std::path::{Path, PathBuf};

use podnet_compiler::span::{FileId, SourceKind, SourceMap};
use podnet_compiler::{FsLoader, Loader as _, fmt, parse};

use crate::cli::{DiagFormat, FmtArgs};
use crate::report;

pub fn run(args: &FmtArgs) -> anyhow::Result<i32> {
    let mut code = 0;
    for file in &args.files {
        let stdin = file.as_os_str() == "-";
        let text = if stdin {
            let mut s = String::new();
            std::io::stdin().read_to_string(&mut s)?;
            s
        } else {
            // The compiler's reader: regular files only, size-limited (a FIFO does not hang).
            match FsLoader.read(file) {
                Ok(t) => t,
                Err(e) => {
                    eprintln!("error: cannot read {}: {e}", file.display());
                    code = 1;
                    continue;
                }
            }
        };
        if SourceKind::from_path(file) == SourceKind::Toml {
            eprintln!(
                "{}: TOML is left as written (fmt formats the podnet language)",
                file.display()
            );
            continue;
        }
        let Some(formatted) = format_text(file, text.clone(), args.format) else {
            code = 1;
            continue;
        };
        if stdin {
            std::io::stdout().lock().write_all(formatted.as_bytes())?;
        } else if formatted != text {
            if args.check {
                writeln!(std::io::stdout().lock(), "{}", file.display())?;
                code = 1;
            } else {
                write_through(file, formatted.as_bytes())?;
            }
        }
    }
    Ok(code)
}

/// Formats one file; on syntax errors prints them and returns `None` (nothing is written).
fn format_text(path: &Path, text: String, format: DiagFormat) -> Option<String> {
    let mut sources = SourceMap::new();
    let id: FileId = sources.add(path.to_path_buf(), text.clone(), SourceKind::Podnet);
    let mut diags = Vec::new();
    let items = parse::parse(&text, id, &mut diags);
    if diags.iter().any(|d| d.is_error()) {
        let _ = report::print(&sources, &diags, format);
        eprintln!("{}: not formatted because of syntax errors", path.display());
        return None;
    }
    Some(fmt::format(&items))
}

/// Follows `path` through symlinks (relative targets are relative to the link's directory)
/// to the file that holds the content; a dangling link gives its target. At most 40 hops,
/// as the kernel allows.
pub fn resolve_links(path: &Path) -> std::io::Result<PathBuf> {
    let mut p = path.to_path_buf();
    for _ in 0..40 {
        match std::fs::symlink_metadata(&p) {
            Ok(m) if m.file_type().is_symlink() => {
                let target = std::fs::read_link(&p)?;
                p = match p.parent() {
                    Some(dir) if target.is_relative() => dir.join(target),
                    _ => target,
                };
            }
            _ => return Ok(p),
        }
    }
    Err(std::io::Error::other(format!(
        "{}: too many levels of symbolic links",
        path.display()
    )))
}

/// Replaces the content of `path` atomically; when `path` is a symlink, the file it points
/// to is replaced and the link kept. The file keeps its permission bits (new files: 0644).
pub fn write_through(path: &Path, content: &[u8]) -> std::io::Result<()> {
    let target = resolve_links(path)?;
    let mode = std::fs::metadata(&target).map_or(0o644, |m| m.permissions().mode() & 0o7777);
    crate::journal::write_atomic(&target, content, mode)
}
