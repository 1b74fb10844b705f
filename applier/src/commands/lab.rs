//! `podnet lab FILE [--then FILE2]… [--pods K] [--format text|json|junit] [--keep]` and
//! `podnet lab down [ID]`: compile every file first (a file with errors, e.g. host-gw
//! across segments, is refused before anything is built), run the lab, print the result,
//! exit 0 only when every check held.

use std::io::{IsTerminal as _, Write as _};
use std::path::Path;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use podnet_compiler::plan::{NodePlan, Planner};
use podnet_compiler::{Cluster, FsLoader, UseLock, compile};

use crate::cli::{DiagFormat, LabArgs, LabCommand, LabFormat};
use crate::lab::{self, Afterwards, Config, EngineConverge, LabOptions, WatchConverge};
use crate::report;

pub fn run(args: &LabArgs) -> anyhow::Result<i32> {
    if let Some(LabCommand::Down(d)) = &args.command {
        let removed = lab::down(&d.state_dir, d.id.as_deref())?;
        if removed.is_empty() {
            eprintln!("no kept or abandoned lab under {}", d.state_dir.display());
        }
        for id in removed {
            println!("lab {id} removed");
        }
        return Ok(0);
    }
    let Some(file) = args.file.as_deref() else {
        anyhow::bail!("a cluster file is needed: podnet lab FILE");
    };
    let mut compiled = Vec::new();
    for f in std::iter::once(file).chain(args.then.iter().map(|p| p.as_path())) {
        match compile_all(f, args.diagnostics())? {
            Ok(c) => compiled.push((f, c.0, c.1)),
            Err(code) => return Ok(code),
        }
    }
    lab::install_signal_handlers()?;
    let configs: Vec<Config<'_>> = compiled
        .iter()
        .map(|(f, c, p)| Config {
            file: f,
            cluster: c,
            plans: p,
        })
        .collect();
    let opts = LabOptions {
        id: args.name.clone(),
        pods: usize::from(args.pods),
        state_dir: args.state_dir.clone(),
        ..LabOptions::default()
    };
    let nodes = compiled.first().map_or(0, |c| c.1.nodes.len());
    let printer = ProgressPrinter::new(nodes);
    let progress = |stage: &str, done: usize, total: usize| printer.report(stage, done, total);
    let afterwards = if args.keep {
        Afterwards::Keep
    } else {
        Afterwards::Down
    };
    let (first, then) = configs
        .split_first()
        .ok_or_else(|| anyhow::anyhow!("no file"))?;
    let result = if args.watch {
        let conv = WatchConverge::new(&args.state_dir)?;
        lab::run(*first, then, &opts, afterwards, &conv, &progress)
    } else {
        lab::run(*first, then, &opts, afterwards, &EngineConverge, &progress)
    };
    printer.finish();
    let result = result?;
    let mut out = std::io::stdout().lock();
    match args.format {
        LabFormat::Text => out.write_all(lab::report::text(&result).as_bytes())?,
        LabFormat::Json => writeln!(out, "{:#}", lab::report::json(&result))?,
        LabFormat::Junit => out.write_all(lab::report::junit(&result).as_bytes())?,
    }
    Ok(if result.ok() { 0 } else { 1 })
}

/// Compiles `file` and plans every node; `Err(code)` once the diagnostics are printed.
fn compile_all(
    file: &Path,
    diagnostics: DiagFormat,
) -> anyhow::Result<Result<(Cluster, Vec<NodePlan>), i32>> {
    crate::commands::apply::regular_file(file)?;
    let c = compile(&FsLoader, file, UseLock::IfPresent);
    let Some(cluster) = c.valid_cluster() else {
        report::print(&c.sources, &c.diagnostics, diagnostics)?;
        eprintln!("error: nothing was built: {} has errors", file.display());
        return Ok(Err(1));
    };
    let planner = Planner::new(cluster);
    let mut plans = Vec::with_capacity(planner.len());
    for i in 0..planner.len() {
        match planner.plan(i) {
            Ok(p) => plans.push(p),
            Err(d) => {
                report::print(&c.sources, &[d], diagnostics)?;
                return Ok(Err(1));
            }
        }
    }
    Ok(Ok((cluster.clone(), plans)))
}

/// Progress on stderr: a live line on a terminal; stage totals for labs of more than
/// `QUIET_NODES` nodes otherwise; nothing for small labs off a terminal.
struct ProgressPrinter {
    tty: bool,
    verbose: bool,
    start: Instant,
    last: Mutex<(Instant, String)>,
}

const QUIET_NODES: usize = 10;

impl ProgressPrinter {
    fn new(nodes: usize) -> ProgressPrinter {
        ProgressPrinter {
            tty: std::io::stderr().is_terminal(),
            verbose: nodes > QUIET_NODES,
            start: Instant::now(),
            last: Mutex::new((Instant::now(), String::new())),
        }
    }

    fn report(&self, stage: &str, done: usize, total: usize) {
        let Ok(mut last) = self.last.lock() else {
            return;
        };
        let finished = done >= total;
        let t = self.start.elapsed().as_secs_f64();
        if self.tty {
            if finished || last.0.elapsed() > Duration::from_millis(100) {
                eprint!("\r\x1b[K[{t:6.2} s] {stage} {done}/{total}");
                last.0 = Instant::now();
            }
        } else if self.verbose && finished && last.1 != stage {
            eprintln!("[{t:6.2} s] {stage} {done}/{total}");
            last.1 = stage.to_string();
        }
    }

    fn finish(&self) {
        if self.tty {
            eprint!("\r\x1b[K");
        }
    }
}
