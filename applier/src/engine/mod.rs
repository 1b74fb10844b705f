//! The node engine: the one value every command, `watch` and `lab` use to act on a node.
//! It holds the target (this network namespace or a named one), the `--root`, the journal
//! and (for writers) the applier lock, and offers [`Engine::drift`] (kernel objects,
//! sysctls, files and the firewall, typed, in one result), [`Engine::reconcile`] and
//! [`Engine::teardown`]. Nobody else runs observe → diff → execute.
//!
//! Every call runs inside the target namespace (see [`Target::run`]): the netlink sockets,
//! the `/proc/sys` files and the firewall tools all act there. Plans are given as compiled
//! (file paths not rooted); the engine validates them before rooting them under `--root`.

mod preflight;
mod reconcile;
mod repair;
pub mod takeover;
mod teardown;

use std::collections::BTreeSet;
use std::fmt;
use std::io;
use std::net::Ipv4Addr;
use std::path::{Path, PathBuf};

use ipnet::Ipv4Net;
use podnet_compiler::lower::defaults::ROUTE_PROTOCOL;
use podnet_compiler::plan::{Firewall as PlanFirewall, FirewallDriver, NodePlan, Underlay};
use podnet_compiler::validate::PlanError;

use crate::adopt::{self, Adopted};
use crate::diff::{Conflict, Diff, Observed, diff};
use crate::firewall::{self, Exec, Firewall, FirewallError, FirewallSpec};
use crate::journal::{self, Journal};
use crate::kernel::addr::{Addr, RTM_GETADDR};
use crate::kernel::netns::Target;
use crate::kernel::nl::NlSocket;
use crate::observe::{self, Scope};

pub use preflight::{Tool, missing_tool};
pub use reconcile::Reconciled;
pub use repair::{Repaired, entries_only};
pub use teardown::TornDown;

/// Whether the engine takes the applier lock (writers) or only reads.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Access {
    /// `plan --live`, `status`: no lock, no write.
    Read,
    /// `apply`, `teardown`, `watch`: waits for the applier lock and holds it.
    Write,
}

/// Whether the engine converges the firewall too.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum FirewallMode {
    #[default]
    Managed,
    /// Kernel objects, sysctls and files only (library callers that test those).
    Untouched,
}

/// Why the engine refused to act or could not finish. Refusals come before any change.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum EngineError {
    /// The plan breaks a rule every plan must follow (nothing was changed).
    #[error("nothing was changed: the plan is invalid:{}", list(.0))]
    InvalidPlan(Vec<PlanError>),
    /// The plan is another node's: its address is not configured here.
    #[error("nothing was changed: {0}")]
    WrongNode(Box<WrongNode>),
    /// A tool the plan's firewall driver needs is missing.
    #[error("nothing was changed: {0}")]
    MissingTool(Tool),
    /// Foreign objects in the way or missing prerequisites, found by the diff.
    #[error("nothing was changed: {}", conflicts(.0))]
    Conflicts(Vec<Conflict>),
    /// A planned file would be written outside `--root` (through a symbolic link).
    #[error("nothing was changed: {path} resolves to {resolved}, outside --root {root}")]
    EscapesRoot {
        path: String,
        resolved: PathBuf,
        root: PathBuf,
    },
    #[error(transparent)]
    Firewall(#[from] FirewallError),
    #[error(transparent)]
    Io(#[from] io::Error),
}

impl EngineError {
    /// Whether the same call may succeed later without a change of plan or of the node
    /// (watch backs off and retries these).
    pub fn retryable(&self) -> bool {
        match self {
            EngineError::Io(e) => matches!(
                e.raw_os_error(),
                Some(libc::ENOBUFS | libc::EBUSY | libc::EAGAIN | libc::EINTR | libc::ENOMEM)
            ),
            EngineError::Conflicts(_) | EngineError::Firewall(_) => true,
            _ => false,
        }
    }

    /// Whether nothing was changed because of it (a refusal before the first write).
    pub fn is_refusal(&self) -> bool {
        matches!(
            self,
            EngineError::InvalidPlan(_)
                | EngineError::WrongNode(_)
                | EngineError::MissingTool(_)
                | EngineError::Conflicts(_)
                | EngineError::EscapesRoot { .. }
        )
    }
}

/// Conflicts separated by `; `.
fn conflicts(c: &[Conflict]) -> String {
    c.iter()
        .map(ToString::to_string)
        .collect::<Vec<_>>()
        .join("; ")
}

/// Problems one per line, indented.
fn list(problems: &[PlanError]) -> String {
    problems.iter().map(|p| format!("\n  {p}")).collect()
}

/// A plan whose node address is not configured on its underlay interface here.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct WrongNode {
    pub node: String,
    pub underlay: Underlay,
    /// Whether the interface exists here at all.
    pub interface_exists: bool,
    /// Every IPv4 address configured here (to tell the user which node this machine is).
    pub local: Vec<Ipv4Net>,
    /// The interface that has the node's address here, if one has it.
    pub holder: Option<String>,
}

impl fmt::Display for WrongNode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let u = &self.underlay;
        if self.interface_exists {
            write!(
                f,
                "this is not node {}: its address {} is not configured on {}",
                self.node, u.address, u.interface
            )?;
        } else {
            write!(
                f,
                "this is not node {}: its underlay interface {} does not exist here",
                self.node, u.interface
            )?;
        }
        if let Some(h) = &self.holder {
            // The right machine, the wrong interface name.
            return write!(
                f,
                "; help: the node's address {} is on {h}: set `interface {h}` for node {} \
                 (or for the cluster)",
                u.address.addr(),
                self.node
            );
        }
        let local: Vec<String> = self.local.iter().map(ToString::to_string).collect();
        write!(
            f,
            " (local addresses: {})",
            if local.is_empty() {
                "none".to_string()
            } else {
                local.join(", ")
            }
        )
    }
}

/// Everything that differs between a plan and the node, in one typed result.
#[derive(Debug)]
pub struct Drift {
    /// With `--adopt`: the foreign objects taken over in place (their state now).
    pub adopt: Adopted,
    /// Kernel objects, sysctls and files (with the diff's conflicts).
    pub kernel: Diff,
    /// The firewall of the plan's driver (`None` when the engine leaves it alone).
    pub firewall: Option<Vec<firewall::Drift>>,
    /// What is not drift but wants attention (a flanneld still running here).
    pub warnings: Vec<String>,
}

impl Drift {
    /// Nothing differs and nothing is in the way.
    pub fn is_empty(&self) -> bool {
        self.adopt.is_empty()
            && self.kernel.is_empty()
            && self.kernel.conflicts.is_empty()
            && self.firewall.as_ref().is_none_or(Vec::is_empty)
    }
}

/// One node: where it is, where its files and journal live, and what it has applied.
pub struct Engine {
    target: Target,
    root: Option<PathBuf>,
    firewall: FirewallMode,
    adopt: bool,
    journal: Option<Journal>,
    /// The hash of the plan (as given, not rooted) this engine last applied and verified
    /// in full: what [`Engine::apply_change`] may start from.
    applied: Option<String>,
    /// Called with the first diff of a reconcile once every check passed and before
    /// anything is written (`apply` prints the pod warnings there).
    announce: Option<Announce>,
    _lock: Option<journal::Lock>,
}

/// What [`Engine::with_announce`] calls before a reconcile writes anything.
pub type Announce = std::sync::Arc<dyn Fn(&Diff) + Send + Sync>;

impl Engine {
    /// Opens the node: with [`Access::Write`] waits for the applier lock; reads the journal.
    pub fn open(
        target: Target,
        root: Option<&Path>,
        access: Access,
    ) -> Result<Engine, EngineError> {
        let lock = match access {
            Access::Write => Some(journal::lock(root)?),
            Access::Read => None,
        };
        Ok(Engine {
            target,
            root: root.map(Path::to_path_buf),
            firewall: FirewallMode::Managed,
            adopt: false,
            journal: Journal::load(root)?,
            applied: None,
            announce: None,
            _lock: lock,
        })
    }

    /// The same engine with the firewall managed or left alone.
    pub fn with_firewall(mut self, mode: FirewallMode) -> Engine {
        self.firewall = mode;
        self
    }

    /// The same engine taking over foreign objects that match the plan (`--adopt`)
    /// instead of refusing them as conflicts.
    pub fn with_adopt(mut self, adopt: bool) -> Engine {
        self.adopt = adopt;
        self
    }

    /// Calls `f` with the changes a reconcile is about to make, after every check and
    /// before the first write.
    pub fn with_announce(mut self, f: Announce) -> Engine {
        self.announce = Some(f);
        self
    }

    pub fn target(&self) -> &Target {
        &self.target
    }

    pub fn root(&self) -> Option<&Path> {
        self.root.as_deref()
    }

    /// The journal as last read or written (`None`: podnet has applied nothing here).
    pub fn journal(&self) -> Option<&Journal> {
        self.journal.as_ref()
    }

    /// The last plan applied and verified in full (rooted as it was applied).
    pub fn last_plan(&self) -> Result<Option<NodePlan>, EngineError> {
        if self.journal.as_ref().is_none_or(|j| j.plan_hash.is_none()) {
            return Ok(None);
        }
        Ok(Journal::load_plan(self.root())?)
    }

    /// Where the firewall tools run: inside the target, because the whole call does.
    fn firewall_tools(&self) -> Firewall {
        Firewall::new(Exec::Host)
    }

    /// The route protocols an observation made before the plan is known must cover.
    pub fn protocols(&self) -> BTreeSet<u8> {
        let mut set = observe::protocols(None, self.journal.as_ref());
        if set.is_empty() {
            set.insert(ROUTE_PROTOCOL);
        }
        set
    }

    /// Reads the kernel objects podnet owns (no plan needed): `reconcile` can take this
    /// observation when it was made under the lock while the plan was being compiled.
    pub fn observe_kernel(&self) -> Result<Observed, EngineError> {
        let protocols = self.protocols();
        let journal = self.journal.as_ref();
        Ok(self.target.run(|| {
            let mut sock = NlSocket::new()?;
            observe::observe_kernel(&mut sock, protocols, Scope { journal })
        })??)
    }

    /// The plan with its file paths under `--root`.
    fn rooted(&self, plan: &NodePlan) -> NodePlan {
        match self.root() {
            Some(r) => plan.clone().with_root(r),
            None => plan.clone(),
        }
    }

    /// What differs between `plan` (as compiled) and the node: kernel objects, sysctls,
    /// files and the firewall. Refuses an invalid plan or another node's plan like
    /// `reconcile` does, so `plan --live` shows exactly what an apply would do.
    pub fn drift(&self, plan: &NodePlan) -> Result<Drift, EngineError> {
        preflight::validate(plan)?;
        let rooted = self.rooted(plan);
        let journal = self.journal.as_ref();
        self.target.run(|| {
            let mut sock = NlSocket::new()?;
            preflight::identity(&mut sock, plan)?;
            let obs = observe::observe(&mut sock, Some(&rooted), Scope { journal }, 0)?;
            let managed = self.firewall == FirewallMode::Managed;
            let (adopt, obs) = if self.adopt {
                let (adopt, _, obs) =
                    adoption(&mut sock, &rooted, self.root(), managed, journal, obs)?;
                (adopt, obs)
            } else {
                (Adopted::default(), obs)
            };
            let firewall = self.firewall_drift(&plan.firewall)?;
            let mut kernel = diff(&rooted, &obs);
            let files = takeover::foreign_files(&rooted, self.root())?;
            kernel
                .conflicts
                .extend(takeover::conflicts(&files, self.adopt));
            Ok(Drift {
                adopt,
                kernel,
                firewall,
                warnings: takeover::warnings(),
            })
        })?
    }

    /// The drift from the last applied plan (what `status` shows); without one, only the
    /// conflicts of what podnet owns against an empty plan.
    pub fn drift_from_last(&self) -> Result<Option<Drift>, EngineError> {
        let Some(plan) = self.last_plan()? else {
            return Ok(None);
        };
        let journal = self.journal.as_ref();
        self.target.run(|| {
            let mut sock = NlSocket::new()?;
            let obs = observe::observe(&mut sock, Some(&plan), Scope { journal }, 0)?;
            let firewall = self.firewall_drift(&plan.firewall)?;
            let mut kernel = diff(&plan, &obs);
            let files = takeover::foreign_files(&plan, self.root())?;
            kernel.conflicts.extend(takeover::conflicts(&files, false));
            let mut warnings = takeover::warnings();
            if self.firewall == FirewallMode::Managed {
                let back = firewall::flannel::observe(&Exec::Host)?;
                if !back.is_empty() {
                    warnings.push(format!(
                        "flannel's firewall is in force here: {} (flanneld re-creates it \
                         while it runs); `podnet apply --adopt` removes it again",
                        back.lines().join(", ")
                    ));
                }
            }
            Ok(Some(Drift {
                adopt: Adopted::default(),
                kernel,
                firewall,
                warnings,
            }))
        })?
    }

    /// The firewall drift of `fw`'s driver (run inside the target).
    fn firewall_drift(
        &self,
        fw: &PlanFirewall,
    ) -> Result<Option<Vec<firewall::Drift>>, EngineError> {
        if self.firewall == FirewallMode::Untouched {
            return Ok(None);
        }
        let spec = FirewallSpec::from(fw);
        if let Some(t) = missing_tool(fw.driver) {
            return Err(EngineError::MissingTool(t));
        }
        let tools = self.firewall_tools();
        Ok(Some(tools.driver(spec.driver)?.plan(&spec)?.drift))
    }

    /// The warnings about the node (a flanneld running in the target), read inside it.
    pub fn warnings(&self) -> Vec<String> {
        self.target.run(takeover::warnings).unwrap_or_default()
    }

    /// Everything podnet owns here, observed without a plan (for `status`).
    pub fn owned(&self) -> Result<Observed, EngineError> {
        let journal = self.journal.as_ref();
        let protocol = self
            .protocols()
            .into_iter()
            .next()
            .unwrap_or(ROUTE_PROTOCOL);
        Ok(self.target.run(|| {
            let mut sock = NlSocket::new()?;
            observe::observe(&mut sock, None, Scope { journal }, protocol)
        })??)
    }
}

/// `--adopt`: what of the foreign objects in `obs` can be taken over for `plan` (rooted;
/// only what the journal does not hold yet), the journal that records it, and the
/// observation made as if it were podnet's. With `firewall`, flannel's chains and tables
/// are taken too (podnet's firewall replaces them); flannel's files always. Reads only.
pub(crate) fn adoption(
    sock: &mut NlSocket,
    plan: &NodePlan,
    root: Option<&Path>,
    firewall: bool,
    journal: Option<&Journal>,
    obs: Observed,
) -> Result<(Adopted, Journal, Observed), EngineError> {
    let mut j = journal.cloned().unwrap_or_default();
    let addrs: Vec<Addr> = sock
        .dump(RTM_GETADDR, &Addr::dump_request())?
        .iter()
        .filter_map(|m| Addr::parse(m))
        .collect();
    let mut found = adopt::candidates(plan, &obs, &addrs);
    if firewall {
        found.firewall = firewall::flannel::observe(&Exec::Host)?;
    }
    found.files = takeover::adoptable(takeover::foreign_files(plan, root)?);
    let own = found.own_routes > 0;
    if found.is_empty() {
        return Ok((found, j, obs));
    }
    let mut obs = obs;
    obs.journaled |= own;
    let mut with = j.clone();
    with.adopted.merge(&found);
    let mut again = observe::observe(
        sock,
        Some(plan),
        Scope {
            journal: Some(&with),
        },
        plan.route_protocol,
    )?;
    again.journaled = obs.journaled;
    adopt::record_tables(&mut found, &again);
    j.adopted.merge(&found);
    Ok((found, j, again))
}

/// A plan that wants nothing: the diff against it removes everything podnet owns.
pub fn empty_plan(protocol: u8) -> NodePlan {
    NodePlan {
        format_version: podnet_compiler::plan::FORMAT_VERSION,
        cluster: String::new(),
        node: String::new(),
        underlay: Underlay {
            interface: String::new(),
            address: Ipv4Net::new(Ipv4Addr::UNSPECIFIED, 0).unwrap_or_default(),
        },
        route_protocol: protocol,
        sysctls: Vec::new(),
        links: Vec::new(),
        addresses: Vec::new(),
        routes: Vec::new(),
        neighbours: Vec::new(),
        fdb: Vec::new(),
        firewall: PlanFirewall {
            driver: FirewallDriver::Nftables,
            masquerade: Vec::new(),
            forward_accept: Vec::new(),
        },
        files: Vec::new(),
    }
}
