//! The daemon's Prometheus metrics (`prometheus-client`): repairs by object kind, repair
//! latency from kernel event to repaired, reconcile durations, config reloads, config
//! generation and validity, owned objects, the last successful reconcile and build info.
//! Names follow Prometheus conventions (`podnet_…`, `_total`, `_seconds`).
//!
//! Two exposition formats, chosen by the client's Accept header ([`Format::negotiate`]):
//! OpenMetrics 1.0 (what Prometheus asks for first) and the Prometheus text format 0.0.4
//! (what plain clients, `curl URL | promtool check metrics` and older scrapers get). The
//! crate encodes only OpenMetrics; [`to_prometheus_text`] rewrites it: OpenMetrics names a
//! counter family without its `_total` suffix (`# TYPE podnet_drift_repairs counter` over
//! samples `podnet_drift_repairs_total`), which a text-format parser reads as a family with
//! no samples next to an undocumented one, and it ends with `# EOF`.

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

    /// The OpenMetrics exposition text.
    pub fn encode(&self) -> String {
        let mut out = String::new();
        let _ = prometheus_client::encoding::text::encode(&mut out, &self.registry);
        out
    }

    /// The exposition in `format`.
    pub fn encode_as(&self, format: Format) -> String {
        match format {
            Format::OpenMetrics => self.encode(),
            Format::Text => to_prometheus_text(&self.encode()),
        }
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

/// An exposition format and its Content-Type.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Format {
    /// OpenMetrics 1.0 text.
    OpenMetrics,
    /// The Prometheus text format 0.0.4.
    Text,
}

impl Format {
    pub fn content_type(self) -> &'static str {
        match self {
            Format::OpenMetrics => "application/openmetrics-text; version=1.0.0; charset=utf-8",
            Format::Text => "text/plain; version=0.0.4; charset=utf-8",
        }
    }

    /// OpenMetrics when the Accept header asks for it at least as strongly as for plain
    /// text (Prometheus sends `application/openmetrics-text;version=1.0.0,…,
    /// text/plain;version=0.0.4;q=0.5,*/*;q=0.1`), else the text format (also with no
    /// header).
    pub fn negotiate(accept: Option<&str>) -> Format {
        let (mut om, mut text) = (0.0f32, 0.0f32);
        for range in accept.unwrap_or("").split(',') {
            let mut parts = range.split(';').map(str::trim);
            let media = parts.next().unwrap_or("").to_ascii_lowercase();
            let q = parts
                .filter_map(|p| p.strip_prefix("q="))
                .find_map(|q| q.parse::<f32>().ok())
                .unwrap_or(1.0);
            match media.as_str() {
                "application/openmetrics-text" => om = om.max(q),
                "text/plain" | "text/*" | "*/*" => text = text.max(q),
                _ => {}
            }
        }
        if om > 0.0 && om >= text {
            Format::OpenMetrics
        } else {
            Format::Text
        }
    }
}

/// Rewrites OpenMetrics text (as `prometheus-client` writes it) into the Prometheus text
/// format 0.0.4: counter families take their samples' `_total` name, info families their
/// `_info` name as gauges, `unknown` becomes `untyped`; `# UNIT` lines, exemplars and
/// `# EOF` go (the text format has none of them), and HELP drops the `\"` escape.
pub fn to_prometheus_text(openmetrics: &str) -> String {
    let mut renamed: std::collections::HashMap<&str, (String, &str)> = Default::default();
    for line in openmetrics.lines() {
        if let Some(rest) = line.strip_prefix("# TYPE ")
            && let Some((name, kind)) = rest.split_once(' ')
        {
            let to = match kind {
                "counter" => (format!("{name}_total"), "counter"),
                "info" => (format!("{name}_info"), "gauge"),
                "unknown" => (name.to_string(), "untyped"),
                other => (name.to_string(), other),
            };
            renamed.insert(name, to);
        }
    }
    let name_of = |name: &str| -> String {
        renamed
            .get(name)
            .map_or_else(|| name.to_string(), |(n, _)| n.clone())
    };
    let mut out = String::with_capacity(openmetrics.len());
    for line in openmetrics.lines() {
        if line == "# EOF" || line.starts_with("# UNIT ") {
            continue;
        }
        if let Some(rest) = line.strip_prefix("# HELP ") {
            let (name, help) = rest.split_once(' ').unwrap_or((rest, ""));
            let help = help.replace("\\\"", "\"");
            out.push_str(&format!("# HELP {} {help}\n", name_of(name)));
        } else if let Some(rest) = line.strip_prefix("# TYPE ") {
            let (name, kind) = rest.split_once(' ').unwrap_or((rest, ""));
            let kind = renamed.get(name).map_or(kind, |(_, k)| k);
            out.push_str(&format!("# TYPE {} {kind}\n", name_of(name)));
        } else {
            // A sample; an exemplar follows ` # ` after the value (a label value may hold
            // ` # `: look only after the label set).
            let value_at = labels_end(line);
            let cut = line[value_at..]
                .find(" # ")
                .map_or(line.len(), |i| value_at + i);
            out.push_str(&line[..cut]);
            out.push('\n');
        }
    }
    out
}

/// Where a sample line's name and label set end (after the `}` that closes the labels,
/// skipping quoted label values with their escapes).
fn labels_end(line: &str) -> usize {
    let Some(open) = line
        .find(['{', ' '])
        .filter(|&i| line.as_bytes()[i] == b'{')
    else {
        return 0;
    };
    let (mut quoted, mut escaped) = (false, false);
    for (i, c) in line[open..].char_indices() {
        match c {
            _ if escaped => escaped = false,
            '\\' if quoted => escaped = true,
            '"' => quoted = !quoted,
            '}' if !quoted => return open + i + 1,
            _ => {}
        }
    }
    line.len()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accept_headers_pick_the_format() {
        let prometheus = "application/openmetrics-text;version=1.0.0,application/openmetrics-text;version=0.0.1;q=0.75,text/plain;version=0.0.4;q=0.5,*/*;q=0.1";
        assert_eq!(Format::negotiate(Some(prometheus)), Format::OpenMetrics);
        assert_eq!(Format::negotiate(None), Format::Text);
        assert_eq!(Format::negotiate(Some("*/*")), Format::Text);
        assert_eq!(
            Format::negotiate(Some(
                "text/plain;version=0.0.4;q=0.9,application/openmetrics-text;q=0.5"
            )),
            Format::Text
        );
        assert_eq!(
            Format::negotiate(Some("application/openmetrics-text;q=0")),
            Format::Text
        );
    }

    #[test]
    fn the_text_format_names_counters_with_total_and_has_no_eof() {
        let m = Metrics::new();
        m.repaired("route", 2);
        let om = m.encode();
        assert!(om.contains("# TYPE podnet_drift_repairs counter\n"), "{om}");
        assert!(om.ends_with("# EOF\n"), "{om}");
        let text = m.encode_as(Format::Text);
        assert!(
            text.contains(
                "# HELP podnet_drift_repairs_total Objects podnet found drifted and repaired, by kind.\n\
                 # TYPE podnet_drift_repairs_total counter\n\
                 podnet_drift_repairs_total{kind=\"route\"} 2\n"
            ),
            "{text}"
        );
        assert!(!text.contains("# EOF"), "{text}");
        assert!(text.contains("# TYPE podnet_build_info gauge\n"), "{text}");
        assert!(
            text.contains("# TYPE podnet_repair_latency_seconds histogram\n"),
            "{text}"
        );
        // Every sample line survives unchanged.
        let samples = |s: &str| -> Vec<String> {
            s.lines()
                .filter(|l| !l.starts_with('#'))
                .map(str::to_string)
                .collect()
        };
        assert_eq!(samples(&om), samples(&text));
    }

    #[test]
    fn exemplars_units_and_info_are_rewritten() {
        let om = "# HELP a_seconds A \\\"quoted\\\" help.\n# TYPE a_seconds histogram\n# UNIT a_seconds seconds\n\
                  a_seconds_bucket{le=\"1.0\",p=\"} # \\\"\"} 1 # {trace=\"x\"} 0.5\n\
                  # HELP b B.\n# TYPE b info\nb_info{v=\"1\"} 1\n# EOF\n";
        assert_eq!(
            to_prometheus_text(om),
            "# HELP a_seconds A \"quoted\" help.\n# TYPE a_seconds histogram\n\
             a_seconds_bucket{le=\"1.0\",p=\"} # \\\"\"} 1\n\
             # HELP b_info B.\n# TYPE b_info gauge\nb_info{v=\"1\"} 1\n"
        );
    }
}
