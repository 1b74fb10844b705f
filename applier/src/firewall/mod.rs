//! Firewall drivers: podnet's masquerade and forward-accept rules, kept either in one
//! nftables table (`inet podnet`, the default) or in two `PODNET-*` iptables chains, each
//! converged by observe → diff → one atomic write → verify.
//!
//! Ownership: the nftables driver owns exactly the table `inet podnet`; the iptables driver
//! owns the chains `PODNET-POSTRTG` (nat) and `PODNET-FWD` (filter) and every rule that
//! jumps to them (podnet creates exactly one each, commented `podnet`, appended to
//! `POSTROUTING` / `FORWARD`). Nothing else is read for decisions or ever written.
//!
//! Both drivers keep their chains while podnet manages the firewall, also when they hold no
//! rule (masquerade `off`, forward-accept `off`): an empty chain accepts everything, and its
//! presence shows the node is managed. [`FirewallDriver::remove`] deletes them.

pub mod exec;
pub mod flannel;
pub mod iptables;
pub mod nft;

use std::fmt;

use ipnet::Ipv4Net;

pub use exec::Exec;
pub use iptables::{IptablesDriver, IptablesMode};
pub use nft::NftDriver;

/// Which firewall driver holds podnet's rules on a node.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Driver {
    /// One table `inet podnet`, written in one `nft -j -f -` transaction (default).
    Nftables,
    /// `PODNET-*` chains written with one `iptables-restore --noflush`.
    Iptables,
}

impl Driver {
    /// The other driver (whose state an apply removes).
    pub fn other(self) -> Driver {
        match self {
            Driver::Nftables => Driver::Iptables,
            Driver::Iptables => Driver::Nftables,
        }
    }
}

impl From<podnet_compiler::plan::FirewallDriver> for Driver {
    fn from(d: podnet_compiler::plan::FirewallDriver) -> Driver {
        match d {
            podnet_compiler::plan::FirewallDriver::Nftables => Driver::Nftables,
            podnet_compiler::plan::FirewallDriver::Iptables => Driver::Iptables,
        }
    }
}

impl fmt::Display for Driver {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Driver::Nftables => "nftables",
            Driver::Iptables => "iptables",
        })
    }
}

/// SNAT (masquerade) traffic from `source` unless it goes to one of `not_destinations`,
/// leaves through `not_out_interface` (the node's pod bridge) or carries `skip_mark`.
///
/// `not_destinations` empty = masquerade mode `all`; mode `outbound` lists the pod CIDR
/// followed by the user's exceptions.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MasqueradeRule {
    pub source: Ipv4Net,
    pub not_destinations: Vec<Ipv4Net>,
    pub not_out_interface: String,
    /// Fully random source ports (nft `fully-random`, iptables `--random-fully`).
    pub random_fully: bool,
    /// Packets with all these mark bits set return before any masquerade rule (kube-proxy's
    /// 0x4000: kube-proxy masquerades them itself).
    pub skip_mark: Option<u32>,
}

/// A node's desired firewall state (filled from the compiler's per-node plan).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FirewallSpec {
    pub driver: Driver,
    /// Empty = masquerade mode `off`.
    pub masquerade: Vec<MasqueradeRule>,
    /// Networks whose forwarded traffic is accepted in both directions (`saddr in`,
    /// `daddr in`); empty = forward-accept `off`.
    pub forward_accept: Vec<Ipv4Net>,
}

impl FirewallSpec {
    /// The distinct skip marks, in first-seen order (one return rule each, first in the
    /// masquerade chain).
    pub fn skip_marks(&self) -> Vec<u32> {
        podnet_compiler::plan::skip_marks(self.masquerade.iter().map(|m| m.skip_mark))
    }

    /// Checks everything the drivers rely on, before any command runs: networks without
    /// host bits, interface names the kernel accepts and both tools can quote safely.
    pub fn validate(&self) -> Result<(), FirewallError> {
        let invalid = |reason: String| Err(FirewallError::InvalidSpec { reason });
        let nets = self
            .masquerade
            .iter()
            .flat_map(|m| std::iter::once(&m.source).chain(m.not_destinations.iter()));
        for net in nets.chain(self.forward_accept.iter()) {
            if net.trunc() != *net {
                return invalid(format!(
                    "{net} has host bits set (did you mean {}?)",
                    net.trunc()
                ));
            }
            if net.prefix_len() == 0 {
                return invalid(format!("{net} matches every address"));
            }
        }
        if self.skip_marks().contains(&0) {
            return invalid("skip mark 0 matches every packet".to_owned());
        }
        for m in &self.masquerade {
            let name = m.not_out_interface.as_str();
            if name.is_empty() || name.len() > 15 {
                return invalid(format!(
                    "interface name {name:?} must be 1 to 15 bytes long"
                ));
            }
            if name == "." || name == ".." {
                return invalid(format!("interface name {name:?} is reserved"));
            }
            if !name
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.'))
            {
                return invalid(format!(
                    "interface name {name:?} may hold only ASCII letters, digits, '-', '_' and '.'"
                ));
            }
        }
        Ok(())
    }
}

/// Errors of the firewall drivers. Command failures keep the tool's stderr.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum FirewallError {
    /// The spec cannot be rendered safely (found before any command runs).
    #[error("invalid firewall spec: {reason}")]
    InvalidSpec { reason: String },
    /// A program could not be started or fed its input.
    #[error("cannot run `{command}`: {source}")]
    Spawn {
        command: String,
        #[source]
        source: std::io::Error,
    },
    /// A program exited unsuccessfully; `stderr` is what it said.
    #[error("`{command}` failed (exit {}): {stderr}", .status.map_or_else(|| "by signal".to_owned(), |c| c.to_string()))]
    Command {
        command: String,
        status: Option<i32>,
        stderr: String,
    },
    /// A program's output could not be understood.
    #[error("cannot understand the output of `{command}`: {reason}")]
    Parse { command: String, reason: String },
    /// The desired nft batch could not be serialized.
    #[error("cannot render the nft batch: {0}")]
    Render(#[source] serde_json::Error),
    /// After a write, observing again still found differences.
    #[error("{driver} state still differs after apply: {}", join(.remaining))]
    Verify {
        driver: Driver,
        remaining: Vec<Drift>,
    },
    /// Teardown is best effort: every failure, together.
    #[error("firewall teardown failed: {}", join(.0))]
    Teardown(Vec<FirewallError>),
}

fn join<T: fmt::Display>(items: &[T]) -> String {
    items
        .iter()
        .map(ToString::to_string)
        .collect::<Vec<_>>()
        .join("; ")
}

/// How an owned object differs from the desired state.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum DriftKind {
    /// Desired but absent.
    Missing,
    /// Present in podnet's space but not desired.
    Unexpected,
    /// Present with other content (rules, order, attributes).
    Differs,
}

/// One difference between desired and observed state, e.g. "missing table inet podnet".
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Drift {
    pub kind: DriftKind,
    /// The object, as the tool names it (`chain inet podnet postrouting`,
    /// `iptables nat chain PODNET-POSTRTG`, …).
    pub object: String,
}

impl Drift {
    pub fn new(kind: DriftKind, object: impl Into<String>) -> Drift {
        Drift {
            kind,
            object: object.into(),
        }
    }
}

impl fmt::Display for Drift {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let kind = match self.kind {
            DriftKind::Missing => "missing",
            DriftKind::Unexpected => "unexpected",
            DriftKind::Differs => "differs:",
        };
        write!(f, "{kind} {}", self.object)
    }
}

/// What a driver found and the one write that converges it (pure data, computed from one
/// observation; nothing is decided while writing).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FirewallPlan {
    pub driver: Driver,
    pub drift: Vec<Drift>,
    /// The whole write: `nft -j -f -` JSON or `iptables-restore --noflush` input.
    /// `None` exactly when `drift` is empty.
    pub script: Option<String>,
}

impl FirewallPlan {
    /// True when nothing needs to be written.
    pub fn is_empty(&self) -> bool {
        self.script.is_none()
    }
}

/// The outcome of [`FirewallDriver::apply`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ApplyReport {
    pub driver: Driver,
    /// What had drifted (empty when nothing was written).
    pub drift: Vec<Drift>,
    /// Whether anything was written.
    pub wrote: bool,
}

/// The outcome of [`FirewallDriver::remove`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RemoveReport {
    pub driver: Driver,
    /// The owned objects that were deleted (empty when there was nothing to delete).
    pub removed: Vec<String>,
}

/// A firewall backend holding podnet's rules.
pub trait FirewallDriver {
    /// Which driver this is.
    fn driver(&self) -> Driver;

    /// Observes podnet's owned state and compares it with `spec`: returns the drift and the
    /// single write that restores the desired state. Performs no write.
    fn plan(&self, spec: &FirewallSpec) -> Result<FirewallPlan, FirewallError>;

    /// Performs a plan's write as one process and one transaction.
    fn execute(&self, plan: &FirewallPlan) -> Result<(), FirewallError>;

    /// Deletes every object this driver owns (and nothing else); writes nothing when there
    /// is nothing to delete.
    fn remove(&self) -> Result<RemoveReport, FirewallError>;

    /// Validate → observe → diff → one atomic write (only if something differs) → verify.
    fn apply(&self, spec: &FirewallSpec) -> Result<ApplyReport, FirewallError> {
        spec.validate()?;
        let plan = self.plan(spec)?;
        if plan.is_empty() {
            return Ok(ApplyReport {
                driver: self.driver(),
                drift: Vec::new(),
                wrote: false,
            });
        }
        self.execute(&plan)?;
        let after = self.plan(spec)?;
        if !after.is_empty() {
            return Err(FirewallError::Verify {
                driver: self.driver(),
                remaining: after.drift,
            });
        }
        Ok(ApplyReport {
            driver: self.driver(),
            drift: plan.drift,
            wrote: true,
        })
    }
}

/// The outcome of [`Firewall::apply`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FirewallReport {
    /// The spec's driver, converged.
    pub applied: ApplyReport,
    /// The other driver's state, removed (switching drivers leaves no trace of the old one).
    pub removed: RemoveReport,
}

impl FirewallReport {
    /// Whether anything was written by either driver.
    pub fn wrote(&self) -> bool {
        self.applied.wrote || !self.removed.removed.is_empty()
    }
}

/// Both drivers for one target: applies a spec with its driver and removes the other's state.
#[derive(Debug)]
pub struct Firewall {
    exec: Exec,
    iptables_mode: std::sync::OnceLock<IptablesMode>,
}

impl Firewall {
    /// Drivers for `exec`; the iptables mode is detected on first use.
    pub fn new(exec: Exec) -> Firewall {
        Firewall {
            exec,
            iptables_mode: std::sync::OnceLock::new(),
        }
    }

    /// Drivers for `exec` with a known iptables mode (no detection).
    pub fn with_iptables_mode(exec: Exec, mode: IptablesMode) -> Firewall {
        let f = Firewall::new(exec);
        let _ = f.iptables_mode.set(mode);
        f
    }

    /// The target.
    pub fn exec(&self) -> &Exec {
        &self.exec
    }

    /// The iptables mode in use (detected once, like kube-proxy does).
    pub fn iptables_mode(&self) -> Result<IptablesMode, FirewallError> {
        if let Some(m) = self.iptables_mode.get() {
            return Ok(*m);
        }
        let m = iptables::detect_mode(&self.exec)?;
        Ok(*self.iptables_mode.get_or_init(|| m))
    }

    /// The driver `driver` for this target.
    pub fn driver(&self, driver: Driver) -> Result<Box<dyn FirewallDriver>, FirewallError> {
        Ok(match driver {
            Driver::Nftables => Box::new(NftDriver::new(self.exec.clone())),
            Driver::Iptables => Box::new(IptablesDriver::new(
                self.exec.clone(),
                self.iptables_mode()?,
            )),
        })
    }

    /// Converges `spec.driver`, then removes the other driver's state (in this order, so
    /// a driver switch never leaves a moment without rules).
    pub fn apply(&self, spec: &FirewallSpec) -> Result<FirewallReport, FirewallError> {
        spec.validate()?;
        let applied = self.driver(spec.driver)?.apply(spec)?;
        let removed = self.driver(spec.driver.other())?.remove()?;
        Ok(FirewallReport { applied, removed })
    }

    /// Like [`Firewall::apply`], but looks for the other driver's state only when
    /// `other_may_exist` (the journal knows which drivers podnet has written on a node, and
    /// asking iptables costs several processes).
    pub fn apply_known(
        &self,
        spec: &FirewallSpec,
        other_may_exist: bool,
    ) -> Result<FirewallReport, FirewallError> {
        if other_may_exist {
            return self.apply(spec);
        }
        spec.validate()?;
        let applied = self.driver(spec.driver)?.apply(spec)?;
        Ok(FirewallReport {
            applied,
            removed: RemoveReport {
                driver: spec.driver.other(),
                removed: Vec::new(),
            },
        })
    }

    /// Teardown: removes both drivers' state, best effort; every failure is reported.
    pub fn remove(&self) -> Result<Vec<RemoveReport>, FirewallError> {
        let mut reports = Vec::new();
        let mut errors = Vec::new();
        for d in [Driver::Nftables, Driver::Iptables] {
            match self.driver(d).and_then(|drv| drv.remove()) {
                Ok(r) => reports.push(r),
                Err(e) => errors.push(e),
            }
        }
        if errors.is_empty() {
            Ok(reports)
        } else {
            Err(FirewallError::Teardown(errors))
        }
    }
}

/// The masquerade exceptions of a rule, sorted and merged (overlapping or adjacent
/// networks collapse), as both drivers render them.
pub(crate) fn aggregated(nets: &[Ipv4Net]) -> Vec<Ipv4Net> {
    Ipv4Net::aggregate(&nets.to_vec())
}

/// `nets` without duplicates, in first-seen order.
pub(crate) fn dedup(nets: &[Ipv4Net]) -> Vec<Ipv4Net> {
    let mut out: Vec<Ipv4Net> = Vec::with_capacity(nets.len());
    for n in nets {
        if !out.contains(n) {
            out.push(*n);
        }
    }
    out
}

impl From<&podnet_compiler::plan::Firewall> for FirewallSpec {
    /// The firewall section of a node's plan, as the drivers take it.
    fn from(f: &podnet_compiler::plan::Firewall) -> Self {
        FirewallSpec {
            driver: Driver::from(f.driver),
            masquerade: f
                .masquerade
                .iter()
                .map(|m| MasqueradeRule {
                    source: m.source,
                    not_destinations: m.not_destinations.clone(),
                    not_out_interface: m.not_out_interface.clone(),
                    random_fully: m.random_fully,
                    skip_mark: m.skip_mark,
                })
                .collect(),
            forward_accept: f.forward_accept.clone(),
        }
    }
}

#[cfg(test)]
mod plan_tests {
    use std::path::Path;

    use podnet_compiler::plan::plan;
    use podnet_compiler::{FsLoader, UseLock, compile};

    use super::*;

    #[test]
    fn the_hdss7_plan_becomes_the_expected_spec() {
        let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("../examples/hdss7.podnet");
        let c = compile(&FsLoader, &root, UseLock::IfPresent);
        let cluster = c.valid_cluster().expect("example is valid");
        let p = plan(cluster, "hdss7-21.host.com").expect("plan");
        let spec = FirewallSpec::from(&p.firewall);
        let net = |s: &str| s.parse::<Ipv4Net>().expect("net");
        assert_eq!(
            spec,
            FirewallSpec {
                driver: Driver::Nftables,
                masquerade: vec![MasqueradeRule {
                    source: net("172.7.21.0/24"),
                    not_destinations: vec![net("172.7.0.0/16"), net("10.4.7.0/24")],
                    not_out_interface: "docker0".into(),
                    random_fully: true,
                    skip_mark: Some(0x4000),
                }],
                forward_accept: vec![net("172.7.0.0/16")],
            }
        );
        assert!(spec.validate().is_ok());
    }
}
