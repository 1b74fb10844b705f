//! `podnet check`: compile every file with its lock and report every problem, including what
//! `plan` would refuse (a node without a subnet); exit 0 when clean or with warnings only, 1
//! on errors.

use podnet_compiler::{FsLoader, UseLock, compile};
use std::io::Write as _;

use crate::cli::{CheckArgs, DiagFormat};
use crate::report;

pub fn run(args: &CheckArgs) -> anyhow::Result<i32> {
    let mut failed = false;
    let mut all_json = Vec::new();
    for file in &args.files {
        let c = compile(&FsLoader, file, UseLock::IfPresent);
        failed |= c.has_errors();
        match args.format {
            DiagFormat::Json => {
                all_json.extend(c.diagnostics.iter().map(|d| d.to_json(&c.sources)))
            }
            DiagFormat::Human => {
                report::print(&c.sources, &c.diagnostics, args.format)?;
                let warnings = c.diagnostics.iter().filter(|d| !d.is_error()).count();
                match (report::summary(&c.diagnostics), &c.cluster) {
                    // Warnings alone do not fail the check: say so, with the count.
                    (Some(_), Some(cl)) if !c.has_errors() => eprintln!(
                        "{}: ok with {warnings} warning{} (cluster {}, {} nodes)",
                        file.display(),
                        if warnings == 1 { "" } else { "s" },
                        cl.name,
                        cl.nodes.len()
                    ),
                    (Some(s), _) => eprintln!("{}: {s}", file.display()),
                    (None, Some(cl)) => eprintln!(
                        "{}: ok (cluster {}, {} nodes)",
                        file.display(),
                        cl.name,
                        cl.nodes.len()
                    ),
                    (None, None) => {}
                }
            }
        }
    }
    if args.format == DiagFormat::Json {
        writeln!(
            std::io::stdout().lock(),
            "{}",
            serde_json::to_string_pretty(&all_json)?
        )?;
    }
    Ok(i32::from(failed))
}
