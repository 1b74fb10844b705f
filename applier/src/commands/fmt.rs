//! `podnet fmt`: rewrite files in the canonical layout, or `--check` that they already are.

use std::io::{Read, Write};
use std::path::Path;

use podnet_compiler::span::{FileId, SourceKind, SourceMap};
use podnet_compiler::{fmt, parse};

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
            match std::fs::read_to_string(file) {
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
        let Some(formatted) = format_text(file, text.clone()) else {
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
                write_atomic(file, &formatted)?;
            }
        }
    }
    Ok(code)
}

/// Formats one file; on syntax errors prints them and returns `None` (nothing is written).
fn format_text(path: &Path, text: String) -> Option<String> {
    let mut sources = SourceMap::new();
    let id: FileId = sources.add(path.to_path_buf(), text.clone(), SourceKind::Podnet);
    let mut diags = Vec::new();
    let items = parse::parse(&text, id, &mut diags);
    if diags.iter().any(|d| d.is_error()) {
        let _ = report::print(&sources, &diags, DiagFormat::Human);
        eprintln!("{}: not formatted because of syntax errors", path.display());
        return None;
    }
    Some(fmt::format(&items))
}

fn write_atomic(path: &Path, content: &str) -> std::io::Result<()> {
    let dir = path
        .parent()
        .filter(|p| !p.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let tmp = dir.join(format!(".{name}.podnet-fmt.tmp"));
    {
        let mut f = std::fs::File::create(&tmp)?;
        f.write_all(content.as_bytes())?;
        f.sync_all()?;
    }
    if let Ok(meta) = std::fs::metadata(path) {
        let _ = std::fs::set_permissions(&tmp, meta.permissions());
    }
    std::fs::rename(&tmp, path)
}
