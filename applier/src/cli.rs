//! Command-line arguments (clap derive): one subcommand per verb, resolved into typed
//! arguments before any work is done.

use std::path::PathBuf;

use clap::{Args, Parser, Subcommand, ValueEnum};

#[derive(Debug, Parser)]
#[command(
    name = "podnet",
    version,
    about = "Declarative Kubernetes pod networking: one reviewed file, converged on every node"
)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Check cluster files and report every problem (exit 1 on errors).
    Check(CheckArgs),
    /// Format cluster files in the canonical layout (comments kept).
    Fmt(FmtArgs),
    /// Write or verify the lock file of node subnet allocations.
    Lock(LockArgs),
    /// Show what a node's kernel state and files must be (`--live`: what would change).
    Plan(PlanArgs),
    /// Converge this node's kernel state and files on its plan, then verify.
    Apply(ApplyArgs),
    /// Show the objects podnet owns on this node and whether they drifted.
    Status(StatusArgs),
    /// Remove everything podnet owns on this node and restore prior sysctls and files.
    Teardown(TeardownArgs),
    /// Build the cluster out of network namespaces on this machine (real engine, real CNI
    /// pods) and prove connectivity, source addresses and the pod MTU pair by pair.
    Lab(LabArgs),
}

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, ValueEnum)]
pub enum DiagFormat {
    /// Human-readable reports with source excerpts.
    #[default]
    Human,
    /// One JSON array of diagnostics (file, line, column, code, message, help).
    Json,
}

#[derive(Debug, Args)]
pub struct CheckArgs {
    /// Cluster files (`.podnet` or `.toml`).
    #[arg(required = true)]
    pub files: Vec<PathBuf>,
    #[arg(long, value_enum, default_value_t = DiagFormat::Human)]
    pub format: DiagFormat,
}

#[derive(Debug, Args)]
pub struct FmtArgs {
    /// Files to format in place (`-` reads standard input and writes standard output).
    #[arg(required = true)]
    pub files: Vec<PathBuf>,
    /// Do not write; exit 1 and list the files that are not formatted.
    #[arg(long)]
    pub check: bool,
}

#[derive(Debug, Args)]
pub struct LockArgs {
    /// The cluster file; the lock is written beside it as FILE.lock.
    pub file: PathBuf,
    /// Do not write; exit 1 and print what would change.
    #[arg(long)]
    pub check: bool,
}

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, ValueEnum)]
pub enum PlanFormat {
    #[default]
    Text,
    Json,
    Shell,
}

#[derive(Debug, Args)]
pub struct PlanArgs {
    /// The cluster file.
    pub file: PathBuf,
    /// The node to plan.
    #[arg(long, conflicts_with = "all", required_unless_present = "all")]
    pub node: Option<String>,
    /// Plan every node, one at a time.
    #[arg(long)]
    pub all: bool,
    #[arg(long, value_enum, default_value_t = PlanFormat::Text)]
    pub format: PlanFormat,
    /// Write one file per node into DIR instead of standard output.
    #[arg(long)]
    pub out: Option<PathBuf>,
    /// Prefix every file path of the plan with DIR (also in the shell rendering).
    #[arg(long)]
    pub root: Option<PathBuf>,
    #[arg(long, value_enum, default_value_t = DiagFormat::Human)]
    pub diagnostics: DiagFormat,
    /// Compare with this machine's kernel and files and print the `+ ~ -` changes an apply
    /// would make (needs `--node`).
    #[arg(long, requires = "node", conflicts_with_all = ["all", "out", "format"])]
    pub live: bool,
    /// With `--live`: act on network namespace NAME (`/run/netns/NAME`).
    #[arg(long, value_name = "NAME", requires = "live")]
    pub netns: Option<String>,
    /// With `--live`: exit 0 when nothing would change, 2 when changes are pending, 1 on
    /// errors.
    #[arg(long, requires = "live")]
    pub detailed_exitcode: bool,
}

#[derive(Debug, Args)]
pub struct ApplyArgs {
    /// Act on network namespace NAME (`/run/netns/NAME`) instead of this one.
    #[arg(long, value_name = "NAME")]
    pub netns: Option<String>,
    /// A cluster file (`.podnet`, `.toml`) or a plan made by `podnet plan --format json`.
    pub target: PathBuf,
    /// The node to apply (default: the node whose address is on a local interface).
    #[arg(long)]
    pub node: Option<String>,
    /// Prefix every file path and the journal (/var/lib/podnet) with DIR.
    #[arg(long)]
    pub root: Option<PathBuf>,
    /// Print every change (default: the first 50).
    #[arg(long, short)]
    pub verbose: bool,
    #[arg(long, value_enum, default_value_t = DiagFormat::Human)]
    pub diagnostics: DiagFormat,
}

#[derive(Debug, Args)]
pub struct StatusArgs {
    /// Act on network namespace NAME (`/run/netns/NAME`) instead of this one.
    #[arg(long, value_name = "NAME")]
    pub netns: Option<String>,
    /// The root the journal lives under (as given to `apply --root`).
    #[arg(long)]
    pub root: Option<PathBuf>,
    /// Exit 2 when the node has drifted from the last applied plan.
    #[arg(long)]
    pub detailed_exitcode: bool,
}

#[derive(Debug, Args)]
pub struct TeardownArgs {
    /// Act on network namespace NAME (`/run/netns/NAME`) instead of this one.
    #[arg(long, value_name = "NAME")]
    pub netns: Option<String>,
    /// The root the journal lives under (as given to `apply --root`).
    #[arg(long)]
    pub root: Option<PathBuf>,
}

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, ValueEnum)]
pub enum LabFormat {
    /// A matrix (few endpoints) or a summary (many), the failures, one count line.
    #[default]
    Text,
    Json,
    /// JUnit XML for CI.
    Junit,
}

#[derive(Debug, Args)]
#[command(args_conflicts_with_subcommands = true, subcommand_negates_reqs = true)]
pub struct LabArgs {
    #[command(subcommand)]
    pub command: Option<LabCommand>,
    /// The cluster file to build the lab of.
    #[arg(required = true)]
    pub file: Option<PathBuf>,
    /// Pods per node.
    #[arg(long, default_value_t = 2, value_parser = clap::value_parser!(u16).range(0..=64))]
    pub pods: u16,
    /// Then converge every node on FILE2 (same machines, other configuration), check that
    /// nothing of the earlier configuration remains, and probe again; repeatable.
    #[arg(long = "then", value_name = "FILE2")]
    pub then: Vec<PathBuf>,
    #[arg(long, value_enum, default_value_t = LabFormat::Text)]
    pub format: LabFormat,
    /// Leave the lab up (namespaces ID-NODE); `podnet lab down` removes it.
    #[arg(long)]
    pub keep: bool,
    /// The lab id prefixing every namespace (default: pl + 4 hex digits).
    #[arg(long, value_name = "ID")]
    pub name: Option<String>,
    /// Where labs keep their state file and node roots.
    #[arg(long, env = "PODNET_LAB_DIR", default_value = "/run/podnet-lab")]
    pub state_dir: PathBuf,
    #[arg(long, value_enum, default_value_t = DiagFormat::Human)]
    pub diagnostics: DiagFormat,
}

#[derive(Debug, Subcommand)]
pub enum LabCommand {
    /// Remove a kept lab (ID), or every lab whose process is gone.
    Down(LabDownArgs),
}

#[derive(Debug, Args)]
pub struct LabDownArgs {
    /// The lab to remove (default: every kept or abandoned lab).
    pub id: Option<String>,
    #[arg(long, env = "PODNET_LAB_DIR", default_value = "/run/podnet-lab")]
    pub state_dir: PathBuf,
}
