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
    /// Run as the node daemon: apply, then keep the node converged on the file and repair
    /// drift from kernel events (health and metrics on --listen).
    Watch(WatchArgs),
    /// Write a cluster file and its lock from another tool's state (`import flannel`).
    Import(ImportArgs),
}

#[derive(Debug, Args)]
pub struct ImportArgs {
    #[command(subcommand)]
    pub from: ImportFrom,
}

#[derive(Debug, Subcommand)]
pub enum ImportFrom {
    /// From flannel: net-conf.json, the nodes (kubectl) or the etcd leases, subnet.env.
    Flannel(ImportFlannelArgs),
}

#[derive(Debug, Args)]
pub struct ImportFlannelArgs {
    /// flannel's net-conf.json (the kube-flannel-cfg ConfigMap's, or /etc/kube-flannel/net-conf.json).
    #[arg(long, value_name = "FILE")]
    pub net_conf: Option<PathBuf>,
    /// `kubectl get nodes -o json` (podCIDR and the flannel.alpha.coreos.com/* annotations).
    #[arg(long, value_name = "FILE", conflicts_with = "etcd")]
    pub nodes: Option<PathBuf>,
    /// `etcdctl get --prefix /coreos.com/network -w json` (network config and subnet leases).
    #[arg(long, value_name = "FILE")]
    pub etcd: Option<PathBuf>,
    /// /run/flannel/subnet.env of one or more nodes (FLANNEL_MTU, FLANNEL_IPMASQ, …).
    #[arg(long, value_name = "FILE", num_args = 1..)]
    pub subnet_env: Vec<PathBuf>,
    /// The directory to write cluster.podnet and cluster.podnet.lock into (created if missing).
    #[arg(long, value_name = "DIR")]
    pub out: PathBuf,
    /// The cluster's name.
    #[arg(long, default_value = "flannel")]
    pub name: String,
    /// The prefix length of the node addresses on their interface (their L2 segment):
    /// flannel records bare addresses.
    #[arg(long, value_name = "LEN")]
    pub underlay_prefix: Option<u8>,
    /// The underlay interface (flanneld's `--iface`); default: podnet's (eth0), reported.
    #[arg(long, value_name = "IFACE")]
    pub interface: Option<String>,
    /// Whether flanneld ran with `--ip-masq` (when no subnet.env says FLANNEL_IPMASQ).
    #[arg(long, value_name = "BOOL")]
    pub ip_masq: Option<bool>,
    /// Replace an existing cluster.podnet / cluster.podnet.lock in DIR.
    #[arg(long)]
    pub force: bool,
}

/// How diagnostics are printed: `text` (`human` is the old name, still accepted) or `json`.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, ValueEnum)]
pub enum DiagFormat {
    /// Human-readable reports with source excerpts.
    #[default]
    #[value(name = "text", alias = "human")]
    Human,
    /// One JSON array of diagnostics (file, line, column, code, message, help).
    Json,
}

/// `--format` of the commands that act on a node (`apply`, `status`, `teardown`): `text`
/// for people, `json` for tools (the diff as one JSON document, diagnostics as JSON).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, ValueEnum)]
pub enum OutputFormat {
    #[default]
    Text,
    Json,
}

impl OutputFormat {
    /// The diagnostics format that goes with it, unless the hidden `--diagnostics` says
    /// otherwise.
    pub fn diagnostics(self, explicit: Option<DiagFormat>) -> DiagFormat {
        explicit.unwrap_or(match self {
            OutputFormat::Text => DiagFormat::Human,
            OutputFormat::Json => DiagFormat::Json,
        })
    }
}

#[derive(Debug, Args)]
pub struct CheckArgs {
    /// Cluster files (`.podnet` or `.toml`).
    #[arg(required = true)]
    pub files: Vec<PathBuf>,
    /// `text` for people, `json` for tools (one array of every diagnostic).
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
    /// How to print diagnostics of files that do not parse: `text` or `json`.
    #[arg(long, value_enum, default_value_t = DiagFormat::Human)]
    pub format: DiagFormat,
}

#[derive(Debug, Args)]
pub struct LockArgs {
    /// The cluster file; the lock is written beside it as FILE.lock.
    pub file: PathBuf,
    /// Do not write; exit 1 and print what would change.
    #[arg(long)]
    pub check: bool,
    /// How to print diagnostics: `text` or `json`.
    #[arg(long, value_enum, default_value_t = DiagFormat::Human)]
    pub format: DiagFormat,
}

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, ValueEnum)]
pub enum PlanFormat {
    #[default]
    Text,
    Json,
    Shell,
}

impl PlanFormat {
    /// The diagnostics format that goes with it (JSON for `json`), unless the hidden
    /// `--diagnostics` says otherwise.
    pub fn diagnostics(self, explicit: Option<DiagFormat>) -> DiagFormat {
        explicit.unwrap_or(match self {
            PlanFormat::Json => DiagFormat::Json,
            PlanFormat::Text | PlanFormat::Shell => DiagFormat::Human,
        })
    }
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
    /// `text`, `json` (the plan; with `--live` the diff; diagnostics as JSON too) or `shell`
    /// (`ip`/`bridge`/`nft` commands; not with `--live`).
    #[arg(long, value_enum, default_value_t = PlanFormat::Text)]
    pub format: PlanFormat,
    /// Write one file per node into DIR instead of standard output (shell scripts are
    /// written executable).
    #[arg(long)]
    pub out: Option<PathBuf>,
    /// Prefix every file path of the plan with DIR (also in the shell rendering).
    #[arg(long)]
    pub root: Option<PathBuf>,
    /// The diagnostics format alone (old flag; `--format` sets both).
    #[arg(long, value_enum, hide = true)]
    pub diagnostics: Option<DiagFormat>,
    /// Compare with this machine's kernel and files and print the `+ ~ -` changes an apply
    /// would make (needs `--node`).
    #[arg(long, requires = "node", conflicts_with_all = ["all", "out"])]
    pub live: bool,
    /// With `--live`: show nexthop ids and every change (default: the first 50).
    #[arg(long, short, requires = "live")]
    pub verbose: bool,
    /// With `--live`: act on network namespace NAME (`/run/netns/NAME`).
    #[arg(long, value_name = "NAME", requires = "live")]
    pub netns: Option<String>,
    /// With `--live`: exit 0 when nothing would change, 2 when changes are pending, 1 on
    /// errors.
    #[arg(long, requires = "live")]
    pub detailed_exitcode: bool,
    /// With `--live`: show the foreign objects that match the plan (flannel's device,
    /// bridge and routes) as taken over in place, as `apply --adopt` would.
    #[arg(long, requires = "live")]
    pub adopt: bool,
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
    /// Print every change and nexthop ids (default: the first 50 changes).
    #[arg(long, short)]
    pub verbose: bool,
    /// `text` for people, `json` for tools (the changes made as one JSON document,
    /// diagnostics as JSON).
    #[arg(long, value_enum, default_value_t = OutputFormat::Text)]
    pub format: OutputFormat,
    /// The diagnostics format alone (old flag; `--format` sets both).
    #[arg(long, value_enum, hide = true)]
    pub diagnostics: Option<DiagFormat>,
    /// Take over, in place, the foreign objects that match the plan (a link of the
    /// planned name and kind that needs no recreation, a gateway route to a planned
    /// destination through the planned device) instead of refusing them; their prior
    /// state goes into the journal first, and `teardown` puts it back.
    #[arg(long)]
    pub adopt: bool,
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
    /// `text` for people, `json` for tools (the drift as one JSON document).
    #[arg(long, value_enum, default_value_t = OutputFormat::Text)]
    pub format: OutputFormat,
    /// Show nexthop ids and every change (default: the first 50).
    #[arg(long, short)]
    pub verbose: bool,
}

#[derive(Debug, Args)]
pub struct TeardownArgs {
    /// Act on network namespace NAME (`/run/netns/NAME`) instead of this one.
    #[arg(long, value_name = "NAME")]
    pub netns: Option<String>,
    /// The root the journal lives under (as given to `apply --root`).
    #[arg(long)]
    pub root: Option<PathBuf>,
    /// `text` for people, `json` for tools (what was removed as one JSON document).
    #[arg(long, value_enum, default_value_t = OutputFormat::Text)]
    pub format: OutputFormat,
    /// Show nexthop ids and every change (default: the first 50).
    #[arg(long, short)]
    pub verbose: bool,
}

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, ValueEnum)]
pub enum LogFormat {
    #[default]
    Text,
    Json,
}

#[derive(Debug, Args)]
pub struct WatchArgs {
    /// The cluster file (its directory, includes and lock are watched).
    #[arg(env = "PODNET_FILE")]
    pub file: PathBuf,
    /// The node to converge (default: the node whose address is on a local interface).
    #[arg(long, env = "PODNET_NODE")]
    pub node: Option<String>,
    /// Prefix every file path and the journal (/var/lib/podnet) with DIR.
    #[arg(long, env = "PODNET_ROOT")]
    pub root: Option<PathBuf>,
    /// Act on network namespace NAME (`/run/netns/NAME`) instead of this one.
    #[arg(long, value_name = "NAME", env = "PODNET_NETNS")]
    pub netns: Option<String>,
    /// Address for /livez, /healthz, /readyz and /metrics.
    #[arg(long, default_value = "127.0.0.1:9402", env = "PODNET_LISTEN")]
    pub listen: std::net::SocketAddr,
    /// Full re-read and reconcile this often (e.g. `30s`, `5m`): catches what no event
    /// announces (iptables-legacy, sysctls).
    #[arg(long, default_value = "5m", value_parser = duration, env = "PODNET_RESYNC")]
    pub resync: std::time::Duration,
    /// Re-read the config's files this often, as a backstop for missed file events.
    #[arg(long, default_value = "10s", value_parser = duration, env = "PODNET_POLL")]
    pub poll: std::time::Duration,
    #[arg(long, value_enum, default_value_t = LogFormat::Text, env = "PODNET_LOG_FORMAT")]
    pub log_format: LogFormat,
}

/// A duration such as `300ms`, `30s`, `5m` or `1h` (at least 10 ms).
fn duration(s: &str) -> Result<std::time::Duration, String> {
    let d =
        humantime::parse_duration(s).map_err(|e| format!("`{s}`: {e} (write e.g. 30s or 5m)"))?;
    if d < std::time::Duration::from_millis(10) {
        return Err(format!("`{s}` is too short (at least 10ms)"));
    }
    Ok(d)
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
    /// Run `podnet watch` on every node on one shared cluster file; each configuration
    /// (the first, then every `--then`) is published by atomic rename, as a GitOps pull
    /// would, and the daemons converge the nodes.
    #[arg(long)]
    pub watch: bool,
    /// The lab id prefixing every namespace (default: pl + 4 hex digits).
    #[arg(long, value_name = "ID")]
    pub name: Option<String>,
    /// Where labs keep their state file and node roots.
    #[arg(long, env = "PODNET_LAB_DIR", default_value = "/run/podnet-lab")]
    pub state_dir: PathBuf,
    /// The diagnostics format alone (old flag; `--format json` prints them as JSON).
    #[arg(long, value_enum, hide = true)]
    pub diagnostics: Option<DiagFormat>,
}

impl LabArgs {
    /// How to print the cluster file's diagnostics.
    pub fn diagnostics(&self) -> DiagFormat {
        self.diagnostics.unwrap_or(match self.format {
            LabFormat::Json => DiagFormat::Json,
            LabFormat::Text | LabFormat::Junit => DiagFormat::Human,
        })
    }
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
