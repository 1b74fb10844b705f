//! `podnet check`: compile every file and report every problem (exit 0 clean, 1 on errors).

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
                match (report::summary(&c.diagnostics), &c.cluster) {
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
