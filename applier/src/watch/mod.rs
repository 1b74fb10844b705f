//! `podnet watch`: the node daemon. One event loop over a closed set of events (config
//! hints, kernel events, nftables events, planned files touched, signals, timers) keeps the
//! node converged on the newest valid config through the engine — a full
//! [`Engine::reconcile`] at start, on a config change, on the resync timer and whenever
//! the kernel changed something it does not announce in detail, and
//! [`Engine::repair`] of exactly the objects an event named otherwise. An invalid config
//! is reported (logs, `/readyz`, metrics) and the last good plan stays the one repaired.
//! Failures back off; nothing spins. SIGTERM leaves the node as it is; SIGHUP forces a
//! full resync.

pub mod config;
pub mod http;
pub mod metrics;
pub mod model;

use std::collections::BTreeSet;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::mpsc::{self, Receiver, RecvTimeoutError, Sender};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime};

use notify::RecursiveMode;
use podnet_compiler::plan::{FirewallDriver, NodePlan};
use tracing::{debug, error, info, warn};

use crate::diff::routes::RouteOp;
use crate::diff::{Diff, Op};
use crate::engine::{Access, Engine, EngineError};
use crate::kernel::events::{KernelEvent, RouteEvents, TableEvent, TableEvents};
use crate::kernel::netns::Target;
use config::{Compiled, ConfigError, DirWatcher};
use http::{Health, Shared};
use metrics::{Kind, Metrics, Mode, Outcome};
use model::{Model, Touched};

/// How the daemon runs.
#[derive(Clone, Debug)]
pub struct Options {
    pub file: PathBuf,
    pub node: Option<String>,
    pub root: Option<PathBuf>,
    pub target: Target,
    pub listen: SocketAddr,
    /// Full re-read and reconcile this often (lost events, iptables-legacy, sysctls).
    pub resync: Duration,
    /// Re-read the config's inputs this often (a backstop for missed file events).
    pub poll: Duration,
}

/// Everything that wakes the loop.
#[derive(Debug)]
pub enum Event {
    /// Something changed in a directory of the config or its includes.
    Config,
    /// Something changed in a directory of a planned file (the CNI conflist).
    Files,
    /// Kernel events, with the time they were read.
    Kernel(Vec<KernelEvent>, Instant),
    /// nftables changed these tables (`None`: events were lost).
    Tables(Option<Vec<TableEvent>>),
    Signal(Signal),
    /// An event source stopped (its socket failed).
    SourceFailed(String),
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Signal {
    /// SIGTERM, SIGINT: exit, leaving the node's state in place.
    Terminate,
    /// SIGHUP: re-read the config and resync everything.
    Resync,
}

/// Why a full reconcile runs.
#[derive(Clone, Debug, PartialEq, Eq)]
enum Why {
    Start,
    Config,
    Drift(String),
    Resync,
    Retry,
}

impl Why {
    /// Whether what it changes is drift (counted as repairs) rather than a new config.
    fn repairs(&self) -> bool {
        !matches!(self, Why::Start | Why::Config)
    }

    fn as_str(&self) -> &str {
        match self {
            Why::Start => "start",
            Why::Config => "config changed",
            Why::Drift(r) => r,
            Why::Resync => "resync",
            Why::Retry => "retry after failure",
        }
    }
}

/// Doubling delays after consecutive failures, capped.
#[derive(Debug, Default)]
struct Backoff {
    failures: u32,
}

impl Backoff {
    const FIRST: Duration = Duration::from_millis(500);
    const MAX: Duration = Duration::from_secs(60);

    fn failed(&mut self) -> Duration {
        self.failures = self.failures.saturating_add(1);
        let d = Self::FIRST.saturating_mul(1u32 << self.failures.min(8).saturating_sub(1));
        d.min(Self::MAX)
    }

    fn reset(&mut self) {
        self.failures = 0;
    }
}

/// Debounce of config and file hints (an editor or a checkout writes several events per save;
/// a rename-over is one): short, because a node added to the file waits for it.
const DEBOUNCE: Duration = Duration::from_millis(50);
/// A config reload waits at most this long after the first hint, however busy the
/// directory (another file written every few ms must not hold back an edit).
const DEBOUNCE_MAX: Duration = Duration::from_secs(1);
/// Coalescing of nftables events (one transaction announces each object it touched).
const FIREWALL_DEBOUNCE: Duration = Duration::from_millis(20);
/// Freed heap goes back to the system this long after the last compile or full reconcile.
const TRIM_AFTER: Duration = Duration::from_secs(1);
/// The loop wakes at least this often (heartbeat for `/livez`).
const TICK: Duration = Duration::from_secs(5);

struct Daemon {
    opts: Options,
    engine: Engine,
    metrics: Arc<Metrics>,
    health: Shared,
    /// The newest valid config.
    wanted: Option<Compiled>,
    /// The fingerprint of the newest config seen, valid or not, and what it read.
    seen: Option<String>,
    seen_inputs: Option<crate::plan_cache::Inputs>,
    /// The next reload recompiles even if the inputs are unchanged (SIGHUP, resync, an
    /// address change while no local node was found): what the node is can change
    /// without any file changing.
    force_reload: bool,
    /// The newest config failed because no node of it is local here.
    node_unknown: bool,
    /// The plan the kernel was last converged (or partly converged) on: what repairs aim at.
    applied: Option<Arc<NodePlan>>,
    model: Option<Model>,
    touched: Touched,
    /// When the oldest unrepaired kernel event was read.
    first_event: Option<Instant>,
    full_at: Option<(Instant, Why)>,
    config_at: Option<Instant>,
    /// The first config hint since the last reload (caps the debounce).
    config_first: Option<Instant>,
    firewall_at: Option<Instant>,
    firewall_last: Option<Instant>,
    resync_at: Instant,
    poll_at: Instant,
    backoff: Backoff,
    /// The newest config was refused (a conflict, a missing tool) while the kernel is on
    /// an older plan: drift is repaired against that older plan meanwhile, and the newest
    /// is retried after this delay.
    refused: Option<Duration>,
    config_dirs: DirWatcher,
    file_dirs: DirWatcher,
    generation: i64,
    /// When to give freed heap back to the system: once things are quiet, not after each
    /// compile (the next compile would fault the same pages in again, zeroed).
    trim_at: Option<Instant>,
}

/// Runs the daemon until SIGTERM. Errors are what stops it from starting.
pub fn run(opts: Options) -> anyhow::Result<()> {
    if let Some(refusal) = config::single_file_mount(&opts.file) {
        anyhow::bail!(refusal);
    }
    let server = http::bind(opts.listen).map_err(anyhow::Error::msg)?;
    keep_freed_memory();
    let metrics = Arc::new(Metrics::new());
    let health: Shared = Arc::new(Mutex::new(Health::default()));
    {
        let (h, m) = (health.clone(), metrics.clone());
        std::thread::Builder::new()
            .name("http".into())
            .spawn(move || http::serve(server, h, m))?;
    }
    info!(listen = %opts.listen, file = %opts.file.display(), "podnet watch starting");
    let engine = Engine::open(opts.target.clone(), opts.root.as_deref(), Access::Write)?;
    let (tx, rx) = mpsc::channel();
    // Subscribed before the first apply, so that no change after it goes unseen.
    spawn_kernel_events(&opts.target, tx.clone())?;
    spawn_table_events(&opts.target, tx.clone())?;
    spawn_signals(tx.clone())?;
    let now = Instant::now();
    let mut d = Daemon {
        config_dirs: DirWatcher::new(tx.clone(), || Event::Config)?,
        file_dirs: DirWatcher::new(tx.clone(), || Event::Files)?,
        resync_at: now + opts.resync,
        poll_at: now + opts.poll,
        opts,
        engine,
        metrics,
        health,
        wanted: None,
        seen: None,
        seen_inputs: None,
        force_reload: false,
        node_unknown: false,
        applied: None,
        model: None,
        touched: Touched::default(),
        first_event: None,
        full_at: None,
        config_at: Some(now),
        config_first: None,
        firewall_at: None,
        firewall_last: None,
        backoff: Backoff::default(),
        refused: None,
        generation: 0,
        trim_at: None,
    };
    drop(tx);
    d.run(&rx)
}

impl Daemon {
    fn run(&mut self, rx: &Receiver<Event>) -> anyhow::Result<()> {
        loop {
            self.beat();
            let timeout = self
                .next_due()
                .saturating_duration_since(Instant::now())
                .min(TICK);
            match rx.recv_timeout(timeout) {
                Ok(e) => {
                    if self.handle(e) == Some(Signal::Terminate) {
                        break;
                    }
                }
                Err(RecvTimeoutError::Timeout) => {}
                Err(RecvTimeoutError::Disconnected) => anyhow::bail!("every event source stopped"),
            }
            let mut stop = false;
            while let Ok(e) = rx.try_recv() {
                stop |= self.handle(e) == Some(Signal::Terminate);
            }
            if stop {
                break;
            }
            self.act();
        }
        info!("podnet watch stopping; the node's state stays as it is");
        Ok(())
    }

    fn beat(&self) {
        if let Ok(mut h) = self.health.lock() {
            h.heartbeat = Instant::now();
        }
    }

    fn next_due(&self) -> Instant {
        let mut due = self.resync_at.min(self.poll_at);
        for t in [
            self.config_at,
            self.firewall_at,
            self.trim_at,
            self.full_at.as_ref().map(|(t, _)| *t),
        ]
        .into_iter()
        .flatten()
        {
            due = due.min(t);
        }
        if !self.touched.is_empty() {
            due = Instant::now();
        }
        due
    }

    /// Records an event; returns the signal it carried.
    fn handle(&mut self, e: Event) -> Option<Signal> {
        match e {
            Event::Config => {
                let now = Instant::now();
                let first = *self.config_first.get_or_insert(now);
                self.config_at = Some((now + DEBOUNCE).min(first + DEBOUNCE_MAX));
            }
            Event::Files => {
                if self.applied.is_some() {
                    self.full_soon(
                        Instant::now() + DEBOUNCE,
                        Why::Drift("a planned file's directory changed".into()),
                    );
                }
            }
            Event::Kernel(events, at) => {
                if self.node_unknown && events.iter().any(|e| matches!(e, KernelEvent::Addr { .. }))
                {
                    // An address appeared or went: the local node may be known now.
                    self.force_reload = true;
                    let now = Instant::now();
                    let first = *self.config_first.get_or_insert(now);
                    self.config_at = Some((now + DEBOUNCE).min(first + DEBOUNCE_MAX));
                }
                if let Some(model) = &mut self.model {
                    for ev in events {
                        model.apply(ev, &mut self.touched);
                    }
                    if !self.touched.is_empty() && self.first_event.is_none() {
                        self.first_event = Some(at);
                    }
                    for (k, n) in std::mem::take(&mut self.touched.kinds) {
                        self.metrics
                            .kernel_events
                            .get_or_create(&Kind { kind: k.into() })
                            .inc_by(n);
                    }
                }
            }
            Event::Tables(tables) => {
                if let Some(plan) = &self.applied
                    && tables.is_none_or(|t| t.iter().any(|t| firewall_table(plan, t)))
                {
                    let earliest = self
                        .firewall_last
                        .map_or(Instant::now(), |l| l + FIREWALL_DEBOUNCE * 10);
                    let at = (Instant::now() + FIREWALL_DEBOUNCE).max(earliest);
                    self.firewall_at = Some(self.firewall_at.map_or(at, |t| t.min(at)));
                }
            }
            Event::Signal(Signal::Terminate) => return Some(Signal::Terminate),
            Event::Signal(Signal::Resync) => {
                info!("SIGHUP: re-reading the config and resyncing");
                self.force_reload = true;
                self.config_at = Some(Instant::now());
                self.full_soon(Instant::now(), Why::Resync);
            }
            Event::SourceFailed(what) => {
                // Without events, only the resync keeps the node converged: make it often.
                error!(source = %what, "an event source failed; falling back to resyncs every 10 s");
                self.opts.resync = self.opts.resync.min(Duration::from_secs(10));
                self.resync_at = self.resync_at.min(Instant::now() + self.opts.resync);
            }
        }
        None
    }

    /// Schedules a full reconcile no later than `at`.
    fn full_soon(&mut self, at: Instant, why: Why) {
        match &self.full_at {
            Some((t, _)) if *t <= at => {}
            _ => self.full_at = Some((at, why)),
        }
    }

    /// Does what is due.
    fn act(&mut self) {
        let now = Instant::now();
        if self.config_at.is_some_and(|t| t <= now) {
            self.config_at = None;
            self.config_first = None;
            self.reload();
        }
        if now >= self.poll_at {
            self.poll_at = now + self.opts.poll;
            let changed = self.seen_inputs.as_ref().is_none_or(|i| i.changed());
            if changed && self.config_at.is_none() {
                debug!("poll: the config's inputs changed");
                self.reload();
            }
        }
        if now >= self.resync_at {
            self.force_reload = true;
            self.reload();
            self.full_soon(now, Why::Resync);
        }
        if let Some(why) = self.touched.full.take() {
            self.full_soon(now, Why::Drift(why));
        }
        if let Some((t, _)) = &self.full_at
            && *t <= Instant::now()
            && let Some((_, why)) = self.full_at.take()
        {
            self.full(why);
        } else if !self.touched.is_empty() {
            self.incremental();
        }
        if self.firewall_at.is_some_and(|t| t <= Instant::now()) {
            self.firewall_at = None;
            self.firewall();
        }
        if self.trim_at.is_some_and(|t| t <= Instant::now()) {
            self.trim_at = None;
            release_freed_memory();
        }
    }

    /// Frees the heap back to the system once nothing has needed it for [`TRIM_AFTER`].
    fn trim_later(&mut self) {
        self.trim_at = Some(Instant::now() + TRIM_AFTER);
    }

    /// Re-reads the config; a new valid one is reconciled at once.
    fn reload(&mut self) {
        self.reload_inner();
        self.trim_later();
    }

    fn reload_inner(&mut self) {
        let started = Instant::now();
        let loaded = config::load(
            &self.opts.file,
            self.opts.node.as_deref(),
            &self.opts.target,
        );
        let fingerprint = match &loaded {
            Ok(c) => c.fingerprint.clone(),
            Err(e) => e.inputs().fingerprint(),
        };
        self.seen_inputs = Some(match &loaded {
            Ok(c) => c.inputs.clone(),
            Err(e) => e.inputs().clone(),
        });
        let forced = std::mem::take(&mut self.force_reload);
        let same = self.seen.as_deref() == Some(fingerprint.as_str());
        // Forced, the same inputs are planned again unless they are what is wanted already
        // (the node may be local now).
        let wanted = self.wanted.as_ref().map(|c| c.fingerprint.as_str());
        if same && (!forced || wanted == Some(fingerprint.as_str())) {
            self.reloaded("unchanged");
            return;
        }
        if !same {
            self.seen = Some(fingerprint);
            self.generation += 1;
            self.metrics.generation.set(self.generation);
        }
        self.node_unknown =
            self.opts.node.is_none() && matches!(loaded, Err(ConfigError::Node { .. }));
        match loaded {
            Ok(c) => {
                self.watch_dirs(Some(&c.plan), &c.inputs);
                let first = self.wanted.is_none();
                info!(
                    generation = self.generation,
                    node = %c.plan.node,
                    compile_ms = started.elapsed().as_secs_f64() * 1000.0,
                    "config loaded"
                );
                self.wanted = Some(c);
                self.set_health(|h| {
                    h.config = Ok(());
                    h.converged = Err("the newest config is not applied yet".into());
                });
                self.reloaded("applied");
                if first || !self.apply_change() {
                    self.full_soon(Instant::now(), if first { Why::Start } else { Why::Config });
                }
            }
            Err(e) => {
                let applied = self.applied.clone();
                self.watch_dirs(applied.as_deref(), &e.inputs().clone());
                let reason = e.reason();
                match &e {
                    ConfigError::Invalid { rendered, .. } => error!(
                        generation = self.generation,
                        diagnostics = %rendered,
                        "{reason}; the last good config stays applied"
                    ),
                    ConfigError::Node { .. } => error!(
                        generation = self.generation,
                        "{reason}; the last good config stays applied"
                    ),
                }
                self.metrics.config_valid.set(0);
                self.set_health(|h| h.config = Err(reason));
                self.reloaded("invalid");
            }
        }
    }

    fn reloaded(&self, result: &str) {
        self.metrics
            .reloads
            .get_or_create(&Outcome {
                result: result.into(),
            })
            .inc();
    }

    /// Watches the config's directories and the planned files' directories.
    fn watch_dirs(&mut self, plan: Option<&NodePlan>, inputs: &crate::plan_cache::Inputs) {
        for (dir, e) in self.config_dirs.set(config::dirs(&self.opts.file, inputs)) {
            warn!(dir = %dir.display(), error = %e, "cannot watch a config directory; the poll covers it");
        }
        self.watch_files(plan);
    }

    /// Watches the planned files' directories (they exist once the plan is applied).
    fn watch_files(&mut self, plan: Option<&NodePlan>) {
        let files: BTreeSet<(PathBuf, RecursiveMode)> = plan
            .map(|p| {
                p.files
                    .iter()
                    .filter_map(|f| Path::new(&f.path).parent())
                    .map(|d| match &self.opts.root {
                        Some(r) => r.join(d.strip_prefix("/").unwrap_or(d)),
                        None => d.to_path_buf(),
                    })
                    .map(|d| (d, RecursiveMode::NonRecursive))
                    .collect()
            })
            .unwrap_or_default();
        for (dir, e) in self.file_dirs.set(files) {
            debug!(dir = %dir.display(), error = %e, "cannot watch a planned file's directory yet");
        }
    }

    fn set_health(&self, f: impl FnOnce(&mut Health)) {
        if let Ok(mut h) = self.health.lock() {
            f(&mut h);
        }
    }

    /// A full reconcile of the newest valid config, from a fresh observation.
    fn full(&mut self, why: Why) {
        self.full_inner(why);
        self.trim_later();
    }

    fn full_inner(&mut self, why: Why) {
        let Some(c) = self.wanted.clone() else {
            return;
        };
        if let Some(delay) = self.refused
            && matches!(why, Why::Drift(_) | Why::Resync)
            && let Some(last) = self.applied.clone()
        {
            self.repair_last_good(last, why, delay);
            return;
        }
        self.resync_at = Instant::now() + self.opts.resync;
        let started = Instant::now();
        let result = self.engine.reconcile(&c.plan, None);
        let elapsed = started.elapsed();
        self.metrics
            .reconcile_duration
            .get_or_create(&Mode {
                mode: "full".into(),
            })
            .observe(elapsed.as_secs_f64());
        // The fresh observation covers whatever events said until now.
        self.touched = Touched::default();
        match result {
            Ok(mut r) => {
                self.refused = None;
                self.applied = Some(Arc::clone(&c.plan));
                let observed = std::mem::take(&mut r.observed);
                self.model = Some(Model::new(&c.plan, observed));
                self.count_owned();
                self.watch_files(Some(&c.plan));
                let mut changed = r.changes.ops.len();
                self.log_changes(&r.changes, why.repairs());
                if let Some(fw) = &r.firewall
                    && fw.wrote()
                {
                    changed += 1;
                    for d in &fw.applied.drift {
                        info!(object = %d, "firewall converged");
                    }
                    if why.repairs() {
                        self.metrics.repaired("firewall", 1);
                    }
                }
                if why.repairs()
                    && changed > 0
                    && let Some(t) = self.first_event.take()
                {
                    self.metrics
                        .repair_latency
                        .observe(t.elapsed().as_secs_f64());
                }
                self.first_event = None;
                if r.converged() {
                    self.backoff.reset();
                    let ms = elapsed.as_secs_f64() * 1000.0;
                    if changed > 0 || !why.repairs() {
                        info!(
                            reason = why.as_str(),
                            changes = changed,
                            ms,
                            "node converged"
                        );
                    } else {
                        debug!(
                            reason = why.as_str(),
                            ms, "node checked: nothing had drifted"
                        );
                    }
                    self.metrics.config_valid.set(1);
                    self.metrics.last_success.set(unix_now());
                    self.set_health(|h| {
                        h.applied = Ok(());
                        h.converged = Ok(());
                    });
                } else {
                    let delay = self.backoff.failed();
                    let failed: Vec<String> = r
                        .failures
                        .iter()
                        .map(|f| format!("{}: {}", f.op, f.error))
                        .collect();
                    let reason = format!(
                        "not converged: {} failed operation(s), {} remaining difference(s){}",
                        r.failures.len(),
                        r.remaining.ops.len(),
                        failed
                            .first()
                            .map(|f| format!(" (first: {f})"))
                            .unwrap_or_default()
                    );
                    warn!(retry_in_ms = delay.as_millis() as u64, "{reason}");
                    self.metrics
                        .reconcile_failures
                        .get_or_create(&Mode {
                            mode: "full".into(),
                        })
                        .inc();
                    self.set_health(|h| {
                        h.applied = Ok(());
                        h.converged = Err(reason);
                    });
                    self.full_soon(Instant::now() + delay, Why::Retry);
                }
            }
            Err(e) => self.failed_full(&c.plan, e),
        }
    }

    /// A new config that changes nothing but routes, neighbours and FDB entries (a node
    /// added, removed or moved), applied as a plan-to-plan change: the entries that differ
    /// between the plan the node is on and the new one, repaired against the model like a
    /// kernel event's, and the journal moved on to the new plan ([`Engine::apply_change`]).
    /// Only from a node known to be converged (no full reconcile due, nothing refused, no
    /// re-read pending). Returns whether it was applied; if not, the caller reconciles in
    /// full.
    fn apply_change(&mut self) -> bool {
        if self.full_at.is_some() || self.refused.is_some() || self.touched.full.is_some() {
            return false;
        }
        let (Some(c), Some(old), Some(model)) = (&self.wanted, &self.applied, &mut self.model)
        else {
            return false;
        };
        let (new, old) = (Arc::clone(&c.plan), Arc::clone(old));
        if !crate::engine::entries_only(&old, &new) {
            return false;
        }
        let started = Instant::now();
        let Some(t) = model.change(&old, &new) else {
            return false;
        };
        let part = model.part(&new, &t);
        let result =
            self.engine
                .apply_change(&old, &new, &part.plan, &part.observed, &part.deletable);
        let elapsed = started.elapsed();
        self.metrics
            .reconcile_duration
            .get_or_create(&Mode {
                mode: "change".into(),
            })
            .observe(elapsed.as_secs_f64());
        let why = match result {
            Ok(r) if r.escalate.is_none() => {
                self.applied = Some(new);
                self.backoff.reset();
                self.log_changes(&r.changes, false);
                info!(
                    reason = Why::Config.as_str(),
                    changes = r.changes.ops.len(),
                    ms = elapsed.as_secs_f64() * 1000.0,
                    "node converged (the change applied without a full re-read)"
                );
                self.metrics.config_valid.set(1);
                self.metrics.last_success.set(unix_now());
                self.set_health(|h| {
                    h.applied = Ok(());
                    h.converged = Ok(());
                });
                return true;
            }
            Ok(r) => r.escalate.unwrap_or_default(),
            Err(e) => e.to_string(),
        };
        info!(reason = %why, "the config change needs a full reconcile");
        if let Some(m) = &mut self.model {
            m.replan(&old);
        }
        false
    }

    /// While the newest config is refused: a full reconcile of the plan the kernel is on
    /// (the last good one), so that drift never costs what was working.
    fn repair_last_good(&mut self, last: Arc<NodePlan>, why: Why, retry: Duration) {
        let started = Instant::now();
        let result = self.engine.reconcile(&last, None);
        self.metrics
            .reconcile_duration
            .get_or_create(&Mode {
                mode: "full".into(),
            })
            .observe(started.elapsed().as_secs_f64());
        self.touched = Touched::default();
        match result {
            Ok(mut r) => {
                let observed = std::mem::take(&mut r.observed);
                self.model = Some(Model::new(&last, observed));
                self.log_changes(&r.changes, true);
                info!(
                    reason = why.as_str(),
                    changes = r.changes.ops.len(),
                    "repaired against the last good config (the newest is refused)"
                );
            }
            Err(e) => warn!(error = %e, "repairing against the last good config failed"),
        }
        self.full_soon(Instant::now() + retry, Why::Retry);
    }

    fn failed_full(&mut self, plan: &Arc<NodePlan>, e: EngineError) {
        self.metrics
            .reconcile_failures
            .get_or_create(&Mode {
                mode: "full".into(),
            })
            .inc();
        let refused = e.is_refusal();
        let reason = match &e {
            EngineError::Conflicts(_) => format!("conflict: {e}"),
            _ => e.to_string(),
        };
        if !refused {
            // Something may have been written: repairs aim at the new plan from now on.
            self.applied = Some(Arc::clone(plan));
            self.model = None;
        }
        if self.applied.as_ref().is_none_or(|a| **a != **plan) {
            self.metrics.config_valid.set(0);
        }
        self.set_health(|h| h.converged = Err(reason.clone()));
        let delay = if e.retryable() {
            let delay = self.backoff.failed();
            error!(retry_in_ms = delay.as_millis() as u64, "{reason}");
            delay
        } else {
            error!("{reason}; waiting for a config change or a change on the node");
            // A node change (an address appearing) can make it right: check again slowly.
            Backoff::MAX
        };
        self.refused =
            (refused && self.applied.as_ref().is_some_and(|a| **a != **plan)).then_some(delay);
        self.full_soon(Instant::now() + delay, Why::Retry);
    }

    /// Repairs what the kernel events named.
    fn incremental(&mut self) {
        let t = std::mem::take(&mut self.touched);
        let (Some(plan), Some(model)) = (&self.applied, &self.model) else {
            return;
        };
        let started = Instant::now();
        let part = model.part(plan, &t);
        let result = self
            .engine
            .repair(&part.plan, &part.observed, &part.deletable);
        let elapsed = started.elapsed();
        self.metrics
            .reconcile_duration
            .get_or_create(&Mode {
                mode: "incremental".into(),
            })
            .observe(elapsed.as_secs_f64());
        match result {
            Ok(r) if r.escalate.is_none() => {
                if !r.changes.ops.is_empty() {
                    self.log_changes(&r.changes, true);
                    if let Some(t) = self.first_event.take() {
                        self.metrics
                            .repair_latency
                            .observe(t.elapsed().as_secs_f64());
                    }
                    debug!(
                        ops = r.changes.ops.len(),
                        us = elapsed.as_micros() as u64,
                        "incremental repair"
                    );
                }
                self.first_event = None;
            }
            Ok(r) => {
                let why = r.escalate.unwrap_or_default();
                info!(reason = %why, "a full reconcile is needed");
                self.full_soon(Instant::now(), Why::Drift(why));
            }
            Err(e) => {
                warn!(error = %e, "incremental repair failed; reconciling in full");
                self.metrics
                    .reconcile_failures
                    .get_or_create(&Mode {
                        mode: "incremental".into(),
                    })
                    .inc();
                self.full_soon(Instant::now(), Why::Drift(e.to_string()));
            }
        }
    }

    /// Converges the firewall alone (nftables said podnet's tables changed).
    fn firewall(&mut self) {
        let Some(plan) = self.applied.clone() else {
            return;
        };
        self.firewall_last = Some(Instant::now());
        match self.engine.reconcile_firewall(&plan) {
            Ok(Some(r)) if r.wrote() => {
                for d in &r.applied.drift {
                    info!(kind = "firewall", drifted = %d, "repaired drift");
                }
                self.metrics.repaired("firewall", 1);
            }
            Ok(_) => {}
            Err(e) => {
                warn!(error = %e, "firewall repair failed; reconciling in full");
                let delay = self.backoff.failed();
                self.full_soon(Instant::now() + delay, Why::Drift(format!("firewall: {e}")));
            }
        }
    }

    fn count_owned(&self) {
        if let Some(m) = &self.model {
            for (kind, n) in m.owned_counts() {
                self.metrics
                    .owned
                    .get_or_create(&Kind { kind: kind.into() })
                    .set(i64::try_from(n).unwrap_or(i64::MAX));
            }
        }
    }

    /// Logs each change (the first few of a large batch one by one) and counts repairs.
    fn log_changes(&self, d: &Diff, repairs: bool) {
        const LOGGED: usize = 20;
        for (i, op) in d.ops.iter().enumerate() {
            let kind = op_kind(op);
            if repairs {
                self.metrics.repaired(kind, 1);
            }
            if i < LOGGED {
                if repairs {
                    info!(kind, change = %d.line(op), "repaired drift");
                } else {
                    info!(kind, change = %d.line(op), "applied");
                }
            }
        }
        if d.ops.len() > LOGGED {
            info!(
                more = d.ops.len() - LOGGED,
                "further changes not logged one by one"
            );
        }
    }
}

/// Whether an nftables table is one the plan's firewall driver writes.
fn firewall_table(plan: &NodePlan, t: &TableEvent) -> bool {
    const INET: u8 = 1;
    const IP: u8 = 2;
    match plan.firewall.driver {
        FirewallDriver::Nftables => t.family == INET && t.table == crate::firewall::nft::TABLE,
        FirewallDriver::Iptables => t.family == IP && matches!(t.table.as_str(), "nat" | "filter"),
    }
}

/// The object kind an operation repairs (the metrics' `kind` label).
pub fn op_kind(op: &Op) -> &'static str {
    match op {
        Op::Sysctl { .. } => "sysctl",
        Op::LinkCreate { .. } | Op::LinkChange { .. } | Op::LinkDelete { .. } => "link",
        Op::AddrReplace(_) | Op::AddrDelete(_) => "address",
        Op::NeighReplace(_) | Op::NeighDelete(_) => "neighbour",
        Op::FdbReplace(_) | Op::FdbDelete(_) => "fdb",
        Op::Route(RouteOp::NexthopAdd(_) | RouteOp::NexthopDelete(_)) => "nexthop",
        Op::Route(_) => "route",
        Op::FileWrite(_) | Op::FileRestore { .. } | Op::FileRemove(_) => "file",
    }
}

/// Gives the memory freed since the last call back to the system. Compiling a 20,000-node
/// cluster and reconciling it take tens of MiB for a moment, and glibc keeps freed heap
/// for reuse; a daemon that lives for months on a few MiB of plan and model should not.
#[allow(unsafe_code)]
fn release_freed_memory() {
    // SAFETY: malloc_trim has no preconditions; it only returns free heap pages to the
    // kernel and may be called at any time from any thread.
    unsafe {
        libc::malloc_trim(0);
    }
}

/// Makes glibc keep freed heap (no trimming on `free`, large blocks from the heap rather
/// than their own mappings) until [`release_freed_memory`] gives it back when the daemon is
/// quiet. Otherwise every compile of a large cluster faults in, and zeroes, tens of MiB
/// of fresh pages just after the previous one returned them — time a node being added
/// waits for.
#[allow(unsafe_code)]
fn keep_freed_memory() {
    // SAFETY: mallopt only changes allocator tunables; called before the other threads
    // start allocating much, and valid at any time anyway.
    unsafe {
        libc::mallopt(libc::M_TRIM_THRESHOLD, 1 << 30);
        libc::mallopt(libc::M_MMAP_THRESHOLD, 32 << 20);
    }
}

fn unix_now() -> f64 {
    SystemTime::now()
        .duration_since(SystemTime::UNIX_EPOCH)
        .map_or(0.0, |d| d.as_secs_f64())
}

/// The rtnetlink subscription (opened inside the target) and its reader thread.
fn spawn_kernel_events(target: &Target, tx: Sender<Event>) -> anyhow::Result<()> {
    let mut sock = target.run(RouteEvents::new)??;
    std::thread::Builder::new()
        .name("kernel-events".into())
        .spawn(move || {
            loop {
                match sock.wait() {
                    Ok(events) if events.is_empty() => {}
                    Ok(events) => {
                        if tx.send(Event::Kernel(events, Instant::now())).is_err() {
                            return;
                        }
                    }
                    Err(e) => {
                        let _ = tx.send(Event::SourceFailed(format!("kernel events: {e}")));
                        return;
                    }
                }
            }
        })?;
    Ok(())
}

/// The nftables subscription and its reader thread.
fn spawn_table_events(target: &Target, tx: Sender<Event>) -> anyhow::Result<()> {
    let mut sock = target.run(TableEvents::new)??;
    std::thread::Builder::new()
        .name("nft-events".into())
        .spawn(move || {
            loop {
                match sock.wait() {
                    Ok(Some(t)) if t.is_empty() => {}
                    Ok(t) => {
                        if tx.send(Event::Tables(t)).is_err() {
                            return;
                        }
                    }
                    Err(e) => {
                        let _ = tx.send(Event::SourceFailed(format!("nftables events: {e}")));
                        return;
                    }
                }
            }
        })?;
    Ok(())
}

/// SIGTERM/SIGINT and SIGHUP as events.
fn spawn_signals(tx: Sender<Event>) -> anyhow::Result<()> {
    use signal_hook::consts::{SIGHUP, SIGINT, SIGTERM};
    let mut signals = signal_hook::iterator::Signals::new([SIGTERM, SIGINT, SIGHUP])?;
    std::thread::Builder::new()
        .name("signals".into())
        .spawn(move || {
            for s in signals.forever() {
                let sig = if s == SIGHUP {
                    Signal::Resync
                } else {
                    Signal::Terminate
                };
                if tx.send(Event::Signal(sig)).is_err() {
                    return;
                }
            }
        })?;
    Ok(())
}
