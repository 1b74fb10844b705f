//! Printing compiler diagnostics: miette's graphical reports for people, JSON for CI.

use std::io::Write;

use miette::{GraphicalReportHandler, GraphicalTheme};
use podnet_compiler::{Diagnostic, SourceMap};

use crate::cli::DiagFormat;

/// Prints diagnostics to standard error (human) or standard output (JSON).
pub fn print(sources: &SourceMap, diags: &[Diagnostic], format: DiagFormat) -> std::io::Result<()> {
    match format {
        DiagFormat::Human => {
            let theme = if std::io::IsTerminal::is_terminal(&std::io::stderr()) {
                GraphicalTheme::unicode()
            } else {
                GraphicalTheme::unicode_nocolor()
            };
            let handler = GraphicalReportHandler::new_themed(theme);
            let mut out = String::new();
            for d in diags {
                let report = d.to_report(sources);
                let _ = handler.render_report(&mut out, &report);
                out.push('\n');
            }
            std::io::stderr().write_all(out.as_bytes())
        }
        DiagFormat::Json => {
            let json: Vec<_> = diags.iter().map(|d| d.to_json(sources)).collect();
            let mut out = serde_json::to_string_pretty(&json).map_err(std::io::Error::other)?;
            out.push('\n');
            std::io::stdout().write_all(out.as_bytes())
        }
    }
}

/// Diagnostics as plain text (no colours), for logs.
pub fn render(sources: &SourceMap, diags: &[Diagnostic]) -> String {
    let handler = GraphicalReportHandler::new_themed(GraphicalTheme::unicode_nocolor());
    let mut out = String::new();
    for d in diags {
        let _ = handler.render_report(&mut out, &d.to_report(sources));
    }
    out
}

/// A one-line summary such as `error: 4 errors, 1 warning in cluster.podnet`.
pub fn summary(diags: &[Diagnostic]) -> Option<String> {
    let errors = diags.iter().filter(|d| d.is_error()).count();
    let warnings = diags.len() - errors;
    if diags.is_empty() {
        return None;
    }
    let plural = |n: usize, w: &str| format!("{n} {w}{}", if n == 1 { "" } else { "s" });
    Some(format!(
        "{}, {}",
        plural(errors, "error"),
        plural(warnings, "warning")
    ))
}
