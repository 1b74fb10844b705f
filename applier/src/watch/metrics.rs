//! The daemon's Prometheus metrics (`prometheus-client`, OpenMetrics text): repairs by
//! object kind, repair latency from kernel event to repaired, reconcile durations, config
//! reloads, config generation and validity, owned objects, the last successful reconcile
//! and build info. Names follow Prometheus conventions (`podnet_…`, `_total`, `_seconds`).

use std::sync::atomic::AtomicU64;

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::Registry;

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct Kind {
    pub kind: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct Mode {
    /// `full` or `incremental`.
    pub mode: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct Outcome {
    /// `applied`, `unchanged` or `invalid`.
    pub result: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct Build {
    version: String,
}

type Hist = Family<Mode, Histogram, fn() -> Histogram>;

/// Every metric, shared by the loop (which updates them) and the HTTP thread.
pub struct Metrics {
    pub registry: Registry,
    pub repairs: Family<Kind, Counter>,
    pub repair_latency: Histogram,
    pub reconcile_duration: Hist,
    pub reconcile_failures: Family<Mode, Counter>,
    pub reloads: Family<Outcome, Counter>,
    pub kernel_events: Family<Kind, Counter>,
    pub generation: Gauge,
    pub config_valid: Gauge,
    pub owned: Family<Kind, Gauge>,
    pub last_success: Gauge<f64, AtomicU64>,
}

fn durations() -> Histogram {
    // 100 µs … ~6.5 s
    Histogram::new(exponential_buckets(0.0001, 2.0, 17))
}

impl Metrics {
    pub fn new() -> Metrics {
        let mut registry = Registry::default();
        let m = Metrics {
            repairs: Family::default(),
            repair_latency: Histogram::new(exponential_buckets(0.00005, 2.0, 16)),
            reconcile_duration: Family::new_with_constructor(durations),
            reconcile_failures: Family::default(),
            reloads: Family::default(),
            kernel_events: Family::default(),
            generation: Gauge::default(),
            config_valid: Gauge::default(),
            owned: Family::default(),
            last_success: Gauge::default(),
            registry: Registry::default(),
        };
        registry.register(
            "podnet_drift_repairs",
            "Objects podnet found drifted and repaired, by kind",
            m.repairs.clone(),
        );
        registry.register(
            "podnet_repair_latency_seconds",
            "Time from the kernel event that announced a drift to its repair",
            m.repair_latency.clone(),
        );
        registry.register(
            "podnet_reconcile_duration_seconds",
            "Duration of reconciles: full (observe everything) or incremental (what events named)",
            m.reconcile_duration.clone(),
        );
        registry.register(
            "podnet_reconcile_failures",
            "Reconciles that failed or did not converge",
            m.reconcile_failures.clone(),
        );
        registry.register(
            "podnet_config_reloads",
            "Config changes seen, by result",
            m.reloads.clone(),
        );
        registry.register(
            "podnet_kernel_events",
            "Kernel events about podnet's objects, by kind",
            m.kernel_events.clone(),
        );
        registry.register(
            "podnet_config_generation",
            "Number of distinct configs loaded since start (valid or not)",
            m.generation.clone(),
        );
        registry.register(
            "podnet_config_valid",
            "Whether the newest config compiled and is the one applied (1) or not (0)",
            m.config_valid.clone(),
        );
        registry.register(
            "podnet_owned_objects",
            "Kernel objects podnet owns on this node, by kind",
            m.owned.clone(),
        );
        registry.register(
            "podnet_last_successful_reconcile_timestamp_seconds",
            "Unix time of the last reconcile that converged",
            m.last_success.clone(),
        );
        let build: Family<Build, Gauge> = Family::default();
        build
            .get_or_create(&Build {
                version: env!("CARGO_PKG_VERSION").to_string(),
            })
            .set(1);
        registry.register("podnet_build_info", "podnet build information", build);
        Metrics { registry, ..m }
    }

    /// The exposition text.
    pub fn encode(&self) -> String {
        let mut out = String::new();
        let _ = prometheus_client::encoding::text::encode(&mut out, &self.registry);
        out
    }

    pub fn repaired(&self, kind: &str, n: u64) {
        self.repairs
            .get_or_create(&Kind {
                kind: kind.to_string(),
            })
            .inc_by(n);
    }
}

impl Default for Metrics {
    fn default() -> Self {
        Metrics::new()
    }
}
