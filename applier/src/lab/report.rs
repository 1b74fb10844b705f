//! The result model of a lab run and its three renderings from it: text (a mininet-style
//! matrix for a few endpoints, a summary by kind, segment pair and node pair for many, the
//! failures, then `N/M checks failed (a/b probes)`), JSON and JUnit XML for CI.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::time::Duration;

use serde::Serialize;
use serde_json::json;

use super::expect::{self, CheckKind, Endpoint, EndpointKind, Pair, Seen};
use super::topology::Relation;

/// Endpoints up to which the text rendering draws the full matrix.
pub const MATRIX_MAX: usize = 16;
/// Failures listed in the text rendering (JSON lists all).
const SHOWN: usize = 40;

/// How long the steps of a phase took.
#[derive(Clone, Copy, Debug, Default, Serialize)]
pub struct Timings {
    #[serde(serialize_with = "ms")]
    pub converge: Duration,
    #[serde(serialize_with = "ms")]
    pub pods: Duration,
    #[serde(serialize_with = "ms")]
    pub probe: Duration,
}

fn ms<S: serde::Serializer>(d: &Duration, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_f64((d.as_secs_f64() * 1e6).round() / 1e3)
}

/// One configuration's result: the endpoints, every pair with what arrived, leftovers.
#[derive(Clone, Debug)]
pub struct Phase {
    pub file: String,
    pub nodes: Vec<String>,
    /// Each node's segment.
    pub segments: Vec<String>,
    pub pod_mtu: u32,
    pub endpoints: Vec<Endpoint>,
    pub pairs: Vec<Pair>,
    pub seen: Vec<Seen>,
    /// Per node (after `--then`): owned objects the configuration does not want.
    pub leftovers: Vec<(String, Vec<String>)>,
    pub timings: Timings,
}

/// One failed check.
#[derive(Clone, Debug)]
pub struct Failure<'a> {
    /// Index of the pair in [`Phase::pairs`].
    pub index: usize,
    pub kind: CheckKind,
    pub pair: &'a Pair,
    pub why: String,
}

impl Phase {
    /// Every failed check, in pair order.
    pub fn failures(&self) -> Vec<Failure<'_>> {
        let mut v = Vec::new();
        for (index, (p, s)) in self.pairs.iter().zip(&self.seen).enumerate() {
            for k in CheckKind::ALL {
                if let Err(why) = expect::check(k, p, s, self.pod_mtu) {
                    v.push(Failure {
                        index,
                        kind: k,
                        pair: p,
                        why,
                    });
                }
            }
        }
        v
    }

    /// Nodes with leftovers.
    pub fn leftover_nodes(&self) -> usize {
        self.leftovers.iter().filter(|(_, l)| !l.is_empty()).count()
    }

    /// (failed checks, checks, failed probes, probes).
    pub fn counts(&self) -> (usize, usize, usize, usize) {
        let checks = self.pairs.len() * CheckKind::ALL.len() + self.leftovers.len();
        let failed = self.failures().len() + self.leftover_nodes();
        let probes = self.pairs.len() * 2;
        let lost = self
            .seen
            .iter()
            .map(|s| usize::from(s.small.is_none()) + usize::from(s.mtu.is_none()))
            .sum();
        (failed, checks, lost, probes)
    }

    pub fn ok(&self) -> bool {
        self.counts().0 == 0
    }

    fn describe(&self, i: usize) -> String {
        let e = &self.endpoints[i];
        format!("{} ({})", e.label, e.address)
    }

    /// The node, or `outside`, an endpoint belongs to.
    fn host(&self, i: usize) -> String {
        match self.endpoints[i].kind.node() {
            Some(n) => self.nodes[n].clone(),
            None => "outside".to_string(),
        }
    }

    fn segment(&self, i: usize) -> String {
        match self.endpoints[i].kind.node() {
            Some(n) => self.segments[n].clone(),
            None => "outside".to_string(),
        }
    }
}

/// A whole run: the lab and each configuration probed.
#[derive(Clone, Debug)]
pub struct LabResult {
    pub lab: String,
    pub cluster: String,
    pub phases: Vec<Phase>,
    pub bring_up: Duration,
    pub down: Option<Duration>,
    /// `Some(id)` when the lab was left up.
    pub kept: Option<String>,
}

impl LabResult {
    pub fn ok(&self) -> bool {
        self.phases.iter().all(Phase::ok)
    }

    pub fn counts(&self) -> (usize, usize, usize, usize) {
        self.phases
            .iter()
            .map(Phase::counts)
            .fold((0, 0, 0, 0), |a, b| {
                (a.0 + b.0, a.1 + b.1, a.2 + b.2, a.3 + b.3)
            })
    }
}

fn kind_name(k: &EndpointKind) -> &'static str {
    match k {
        EndpointKind::Pod { .. } => "pod",
        EndpointKind::Node { .. } => "node",
        EndpointKind::Outside | EndpointKind::Except { .. } => "outside",
    }
}

/// Short labels for the matrix: `n1p1`, `n1`, `out`, `ex1`.
fn short_labels(p: &Phase) -> Vec<String> {
    let mut pods = BTreeMap::<usize, usize>::new();
    let mut ex = 0;
    p.endpoints
        .iter()
        .map(|e| match e.kind {
            EndpointKind::Pod { node } => {
                let k = pods.entry(node).or_insert(0);
                *k += 1;
                format!("n{}p{}", node + 1, k)
            }
            EndpointKind::Node { node } => format!("n{}", node + 1),
            EndpointKind::Outside => "out".to_string(),
            EndpointKind::Except { .. } => {
                ex += 1;
                format!("ex{ex}")
            }
        })
        .collect()
}

/// The text rendering.
pub fn text(r: &LabResult) -> String {
    let mut s = String::new();
    for (n, p) in r.phases.iter().enumerate() {
        let _ = writeln!(
            s,
            "*** lab {} — cluster {} from {}{}: {} nodes, {} endpoints, pod MTU {}",
            r.lab,
            r.cluster,
            p.file,
            if r.phases.len() > 1 {
                format!(" (configuration {})", n + 1)
            } else {
                String::new()
            },
            p.nodes.len(),
            p.endpoints.len(),
            p.pod_mtu
        );
        if p.endpoints.len() <= MATRIX_MAX {
            matrix(&mut s, p);
        } else {
            summary(&mut s, p);
        }
        let fails = p.failures();
        for f in fails.iter().take(SHOWN) {
            let _ = writeln!(
                s,
                "FAIL {:<6} {} → {} [{}]: {}",
                f.kind.as_str(),
                p.describe(f.pair.src),
                p.describe(f.pair.dst),
                f.pair.relation.as_str(),
                f.why
            );
        }
        if fails.len() > SHOWN {
            let _ = writeln!(
                s,
                "… and {} more failed checks (--format json lists all)",
                fails.len() - SHOWN
            );
        }
        for (node, l) in &p.leftovers {
            if l.is_empty() {
                continue;
            }
            let _ = writeln!(s, "FAIL leftovers on {node} of an earlier configuration:");
            for line in l.iter().take(SHOWN) {
                let _ = writeln!(s, "    {line}");
            }
        }
        let (f, c, lost, probes) = p.counts();
        let _ = writeln!(
            s,
            "{f}/{c} checks failed ({lost}/{probes} probes) — converge {:.2} s, pods {:.2} s, probe {:.2} s",
            p.timings.converge.as_secs_f64(),
            p.timings.pods.as_secs_f64(),
            p.timings.probe.as_secs_f64()
        );
    }
    if r.phases.len() > 1 {
        let (f, c, lost, probes) = r.counts();
        let _ = writeln!(
            s,
            "all configurations: {f}/{c} checks failed ({lost}/{probes} probes)"
        );
    }
    if let Some(id) = &r.kept {
        let _ = writeln!(
            s,
            "lab {id} kept: namespaces {id}-<node> (e.g. `ip netns exec {id}-{} sh`); remove it with `podnet lab down {id}`",
            r.phases
                .first()
                .and_then(|p| p.nodes.first())
                .map_or("NODE", String::as_str)
        );
    }
    s
}

fn matrix(s: &mut String, p: &Phase) {
    let labels = short_labels(p);
    for (l, e) in labels.iter().zip(&p.endpoints) {
        let _ = writeln!(s, "  {l:<5} {:<40} {}", e.label, e.address);
    }
    let mut cells: BTreeMap<(usize, usize), String> = BTreeMap::new();
    for (pair, seen) in p.pairs.iter().zip(&p.seen) {
        let bad = CheckKind::ALL
            .iter()
            .any(|&k| expect::check(k, pair, seen, p.pod_mtu).is_err());
        let mut c = match seen.small.or(seen.mtu) {
            None => "X".to_string(),
            Some(a) if a == p.endpoints[pair.src].address => "=".to_string(),
            Some(a) => format!("→{a}"),
        };
        if seen.small.is_some() && seen.mtu.is_none() {
            c.push_str(" M");
        }
        if bad {
            c.push('!');
        }
        cells.insert((pair.src, pair.dst), c);
    }
    let width = cells
        .values()
        .map(|c| c.chars().count())
        .chain(labels.iter().map(String::len))
        .max()
        .unwrap_or(1)
        + 1;
    let _ = write!(s, "{:>9}", "");
    for l in &labels {
        let _ = write!(s, "{l:<width$}");
    }
    s.push('\n');
    for (i, e) in p.endpoints.iter().enumerate() {
        if !e.kind.sends() {
            continue;
        }
        let _ = write!(s, "{:>5} -> ", labels[i]);
        for j in 0..p.endpoints.len() {
            let c = if i == j || p.endpoints[i].socket == p.endpoints[j].socket {
                "-".to_string()
            } else {
                cells
                    .get(&(i, j))
                    .cloned()
                    .unwrap_or_else(|| "·".to_string())
            };
            let _ = write!(s, "{c:<width$}");
        }
        s.push('\n');
    }
    let _ = writeln!(
        s,
        "  = source kept, →ADDR rewritten to ADDR, X nothing arrived, M the pod-MTU DF datagram \
         was lost, ! not as expected, · not probed (the outside host does not reach pods)"
    );
}

/// Counts per group key.
#[derive(Default)]
struct Tally {
    checks: usize,
    failed: usize,
}

fn summary(s: &mut String, p: &Phase) {
    let fails = p.failures();
    let mut failed_pairs: BTreeMap<(usize, usize), usize> = BTreeMap::new();
    for f in &fails {
        *failed_pairs.entry((f.pair.src, f.pair.dst)).or_default() += 1;
    }
    let mut by_kind: BTreeMap<(&str, &str, Relation), Tally> = BTreeMap::new();
    let mut by_seg: BTreeMap<(String, String), Tally> = BTreeMap::new();
    let mut by_node: BTreeMap<(String, String), Tally> = BTreeMap::new();
    for pair in &p.pairs {
        let failed = failed_pairs
            .get(&(pair.src, pair.dst))
            .copied()
            .unwrap_or(0);
        let checks = CheckKind::ALL.len();
        for t in [
            by_kind
                .entry((
                    kind_name(&p.endpoints[pair.src].kind),
                    kind_name(&p.endpoints[pair.dst].kind),
                    pair.relation,
                ))
                .or_default(),
            by_seg
                .entry((p.segment(pair.src), p.segment(pair.dst)))
                .or_default(),
        ] {
            t.checks += checks;
            t.failed += failed;
        }
        if failed > 0 {
            let t = by_node
                .entry((p.host(pair.src), p.host(pair.dst)))
                .or_default();
            t.checks += checks;
            t.failed += failed;
        }
    }
    let _ = writeln!(s, "  by kind:");
    for ((a, b, rel), t) in &by_kind {
        let _ = writeln!(
            s,
            "    {:<5} → {:<8} {:<14} {:>8} checks  {}",
            a,
            b,
            rel.as_str(),
            t.checks,
            status(t)
        );
    }
    let _ = writeln!(s, "  by segment pair:");
    for ((a, b), t) in &by_seg {
        let _ = writeln!(
            s,
            "    {a:<18} → {b:<18} {:>8} checks  {}",
            t.checks,
            status(t)
        );
    }
    if by_node.is_empty() {
        let _ = writeln!(s, "  every node pair: ok");
    } else {
        let _ = writeln!(s, "  node pairs with failures ({}):", by_node.len());
        for ((a, b), t) in by_node.iter().take(SHOWN) {
            let _ = writeln!(s, "    {a} → {b}: {} failed", t.failed);
        }
        if by_node.len() > SHOWN {
            let _ = writeln!(s, "    … and {} more", by_node.len() - SHOWN);
        }
    }
}

fn status(t: &Tally) -> String {
    if t.failed == 0 {
        "ok".to_string()
    } else {
        format!("{} FAILED", t.failed)
    }
}

/// The JSON rendering: counts, timings, endpoints, a summary by kind and relation, every
/// failure and the leftovers, per configuration.
pub fn json(r: &LabResult) -> serde_json::Value {
    let (f, c, lost, probes) = r.counts();
    let phases: Vec<_> = r
        .phases
        .iter()
        .map(|p| {
            let (pf, pc, pl, pp) = p.counts();
            let failures: Vec<_> = p
                .failures()
                .iter()
                .map(|x| {
                    let seen = &p.seen[x.index];
                    json!({
                        "check": x.kind,
                        "src": p.endpoints[x.pair.src].label,
                        "src_address": p.endpoints[x.pair.src].address,
                        "dst": p.endpoints[x.pair.dst].label,
                        "dst_address": p.endpoints[x.pair.dst].address,
                        "relation": x.pair.relation,
                        "expected_source": x.pair.expect,
                        "seen_source": seen.small.or(seen.mtu),
                        "message": x.why,
                    })
                })
                .collect();
            let leftovers: Vec<_> = p
                .leftovers
                .iter()
                .filter(|(_, l)| !l.is_empty())
                .map(|(n, l)| json!({"node": n, "objects": l}))
                .collect();
            json!({
                "file": p.file,
                "ok": pf == 0,
                "checks": pc,
                "failed": pf,
                "probes": pp,
                "failed_probes": pl,
                "pod_mtu": p.pod_mtu,
                "timings_ms": p.timings,
                "endpoints": p.endpoints,
                "failures": failures,
                "leftovers": leftovers,
            })
        })
        .collect();
    json!({
        "lab": r.lab,
        "cluster": r.cluster,
        "ok": f == 0,
        "checks": c,
        "failed": f,
        "probes": probes,
        "failed_probes": lost,
        "bring_up_ms": (r.bring_up.as_secs_f64() * 1e3).round(),
        "down_ms": r.down.map(|d| (d.as_secs_f64() * 1e3).round()),
        "kept": r.kept,
        "phases": phases,
    })
}

/// The JUnit rendering: a test suite per configuration; a test case per check kind and
/// host pair (node → node, node → outside), failing with the pairs that failed; one per
/// node for leftovers after a change.
pub fn junit(r: &LabResult) -> String {
    let mut s = String::from("<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n");
    let mut suites = String::new();
    let (mut tests, mut failures) = (0, 0);
    for (n, p) in r.phases.iter().enumerate() {
        let s = &mut suites;
        let mut cases: BTreeMap<(CheckKind, String, String), (usize, Vec<String>)> =
            BTreeMap::new();
        for (pair, seen) in p.pairs.iter().zip(&p.seen) {
            for k in CheckKind::ALL {
                let e = cases
                    .entry((k, p.host(pair.src), p.host(pair.dst)))
                    .or_default();
                e.0 += 1;
                if let Err(why) = expect::check(k, pair, seen, p.pod_mtu) {
                    e.1.push(format!(
                        "{} → {}: {why}",
                        p.describe(pair.src),
                        p.describe(pair.dst)
                    ));
                }
            }
        }
        let failed = cases.values().filter(|c| !c.1.is_empty()).count() + p.leftover_nodes();
        tests += cases.len() + p.leftovers.len();
        failures += failed;
        let _ = writeln!(
            s,
            "  <testsuite name=\"{} (configuration {})\" tests=\"{}\" failures=\"{failed}\" time=\"{:.3}\">",
            esc(&p.file),
            n + 1,
            cases.len() + p.leftovers.len(),
            (p.timings.converge + p.timings.pods + p.timings.probe).as_secs_f64()
        );
        for ((k, a, b), (count, fails)) in &cases {
            let name = format!("{} {a} → {b} ({count} pairs)", k.as_str());
            let _ = write!(
                s,
                "    <testcase classname=\"podnet.lab.{}\" name=\"{}\"",
                k.as_str(),
                esc(&name)
            );
            if fails.is_empty() {
                s.push_str("/>\n");
            } else {
                let _ = writeln!(
                    s,
                    ">\n      <failure message=\"{} of {count} pairs failed\">{}</failure>\n    </testcase>",
                    fails.len(),
                    esc(&fails.join("\n"))
                );
            }
        }
        for (node, l) in &p.leftovers {
            let _ = write!(
                s,
                "    <testcase classname=\"podnet.lab.leftovers\" name=\"{}\"",
                esc(node)
            );
            if l.is_empty() {
                s.push_str("/>\n");
            } else {
                let _ = writeln!(
                    s,
                    ">\n      <failure message=\"{} leftover objects\">{}</failure>\n    </testcase>",
                    l.len(),
                    esc(&l.join("\n"))
                );
            }
        }
        s.push_str("  </testsuite>\n");
    }
    let _ = writeln!(
        s,
        "<testsuites name=\"podnet lab {}\" tests=\"{tests}\" failures=\"{failures}\">",
        esc(&r.lab)
    );
    s.push_str(&suites);
    s.push_str("</testsuites>\n");
    s
}

fn esc(t: &str) -> String {
    t.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}
