//! Golden tests of the pure node diff as data: each case is a directory
//! `tests/data/diff/<case>/` with `desired.podnet` (a cluster file whose first line names
//! the node: `# node n1`) or `desired.json` (a plan), `observed` (the kernel, sysctls and
//! files in the text form of `common/observed.rs`), and `ops`, the expected `+ ~ -`
//! rendering plus `conflict:` lines. A transition case also has `before.podnet`: its
//! `observed` must be what applying `before` to a fresh machine leaves, and applying
//! `desired` from there must leave exactly what a fresh apply leaves. `PODNET_BLESS=1`
//! rewrites `ops` (and a transition's `observed`). Every case without conflicts must
//! converge in a simulated kernel that never deletes a nexthop a route still uses, and
//! leave every foreign object alone.
//!
//! The rendering names the node of each peer object (from the case's cluster files) and
//! starts with the warnings about running pods; a transition case may have a `pods` file
//! (`BRIDGE COUNT`): that many veths are enslaved to the bridge after `before` is applied,
//! as the CNI plugin leaves pods. Every case's JSON rendering must validate against
//! `schemas/diff.schema.json`.

#[path = "common/observed.rs"]
mod observed_text;

use std::collections::BTreeMap;
use std::net::Ipv4Addr;
use std::path::{Path, PathBuf};

use podnet::changes::Report;
use podnet::diff::routes::RouteOp;
use podnet::diff::{ConflictKind, FileState, NodeNames, Observed, Op, diff};
use podnet::kernel::link::{KernelLinkKind, Link, MARKER, Vxlan};
use podnet::kernel::route::Target;
use podnet_compiler::plan::{NodePlan, Planner};
use podnet_compiler::{MemLoader, UseLock, compile_text};

fn data_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../tests/data/diff")
}

fn bless() -> bool {
    std::env::var_os("PODNET_BLESS").is_some()
}

const HOSTGW: &str = "cluster c {
    pod-cidr 10.244.0.0/16
    backend host-gw
}
node n1 { address 192.168.56.11/24; subnet 10.244.1.0/24 }
node n2 { address 192.168.56.12/24; subnet 10.244.2.0/24 }
node n3 { address 192.168.56.13/24; subnet 10.244.3.0/24 }
";

fn plan_of(src: &str, node: &str) -> NodePlan {
    plan_and_names(src, node).0
}

fn plan_and_names(src: &str, node: &str) -> (NodePlan, NodeNames) {
    let c = compile_text(
        &MemLoader::default(),
        Path::new("c.podnet"),
        src.to_string(),
        UseLock::No,
    );
    let cluster = c
        .valid_cluster()
        .unwrap_or_else(|| panic!("valid cluster: {:?}", c.diagnostics));
    let names = NodeNames::of_cluster(cluster);
    (Planner::new(cluster).plan_named(node).expect("plan"), names)
}

/// A machine with loopback and its underlay eth0, nothing of podnet's.
fn machine() -> Observed {
    let mut o = Observed::default();
    for (index, name) in [(1, "lo"), (2, "eth0")] {
        o.links.push(Link {
            index,
            name: name.to_string(),
            kind: None,
            mtu: 1500,
            mac: Some([2, 0, 0, 0, 0, index as u8]),
            up: true,
            alias: None,
            master: None,
            vxlan: None,
        });
    }
    o.protocols.insert(77);
    o.journaled = true;
    o.sysctls
        .insert("net.ipv4.ip_forward".to_string(), Some("0".to_string()));
    o
}

/// Applies operations the way the kernel would (link deletion takes everything on it).
fn sim(mut o: Observed, ops: &[Op]) -> Observed {
    for op in ops {
        match op {
            Op::Sysctl { key, value, .. } => {
                o.sysctls.insert(key.clone(), Some(value.clone()));
            }
            Op::LinkCreate { link, underlay } => {
                assert!(!o.links.iter().any(|l| l.name == link.name), "EEXIST");
                let index = o.links.iter().map(|l| l.index).max().unwrap_or(0) + 1;
                o.links.push(Link {
                    index,
                    name: link.name.clone(),
                    kind: Some(KernelLinkKind::from(link.kind)),
                    mtu: link.mtu,
                    mac: Some(link.mac.map_or([2, 0xaa, 0, 0, 0, index as u8], |m| m.0)),
                    up: link.up,
                    alias: Some(MARKER.to_string()),
                    master: None,
                    vxlan: link.vxlan.as_ref().map(|v| Vxlan {
                        vni: v.vni,
                        port: v.port,
                        local: Some(v.local),
                        link: *underlay,
                        learning: v.learning,
                    }),
                });
                o.owned.insert(index);
            }
            Op::LinkChange { index, change, .. } => {
                let l = o
                    .links
                    .iter_mut()
                    .find(|l| l.index == *index)
                    .expect("link to change exists");
                if let Some(a) = &change.alias {
                    l.alias = Some(a.clone());
                }
                if let Some(m) = change.mtu {
                    l.mtu = m;
                }
                if let Some(m) = change.mac {
                    l.mac = Some(m);
                }
                if let Some(u) = change.up {
                    l.up = u;
                }
            }
            Op::LinkDelete { index, .. } => {
                let i = *index;
                o.links.retain(|l| l.index != i);
                o.owned.remove(&i);
                o.addrs.retain(|a| a.index != i);
                o.neighs.retain(|n| n.index != i);
                o.fdb.retain(|f| f.index != i);
                let gone: Vec<u32> = o
                    .nexthops
                    .iter()
                    .filter(|n| n.ifindex == i)
                    .map(|n| n.id)
                    .collect();
                o.nexthops.retain(|n| n.ifindex != i);
                o.routes.retain(|r| match r.target {
                    Target::Nexthop(id) => !gone.contains(&id),
                    Target::Gateway { ifindex, .. } => ifindex != i,
                    Target::Other { ifindex, .. } => ifindex != Some(i),
                });
            }
            Op::AddrReplace(a) => {
                if !o.addrs.contains(a) {
                    o.addrs.push(a.clone());
                }
            }
            Op::AddrDelete(a) => o.addrs.retain(|x| x != a),
            Op::NeighReplace(n) => {
                o.neighs.retain(|x| (x.index, x.ip) != (n.index, n.ip));
                o.neighs.push(n.clone());
            }
            Op::NeighDelete(n) => o.neighs.retain(|x| (x.index, x.ip) != (n.index, n.ip)),
            Op::FdbReplace(f) => {
                o.fdb.retain(|x| (x.index, x.mac) != (f.index, f.mac));
                o.fdb.push(f.clone());
            }
            Op::FdbDelete(f) => o.fdb.retain(|x| x != f),
            Op::Route(RouteOp::NexthopAdd(n)) => {
                assert!(
                    n.ifindex < podnet::diff::PLACEHOLDER,
                    "placeholder executed"
                );
                o.nexthops.retain(|x| x.id != n.id);
                o.nexthops.push(n.clone());
            }
            Op::Route(RouteOp::RouteAdd(r)) => {
                assert!(
                    !o.routes.iter().any(|x| x.dst == r.dst) && !o.foreign_routes.contains(&r.dst),
                    "EEXIST: route to {} exists",
                    r.dst
                );
                o.routes.push(r.clone());
            }
            Op::Route(RouteOp::RouteReplace { route: r, was }) => {
                assert!(
                    o.routes.iter().any(|x| x.dst == r.dst && x.target == *was),
                    "replace of {} whose old target is not there",
                    r.dst
                );
                // The kernel replaces whatever route has that destination (any protocol).
                o.routes.retain(|x| x.dst != r.dst);
                o.routes.push(r.clone());
            }
            Op::Route(RouteOp::RouteDelete(r)) => o.routes.retain(|x| x != r),
            Op::Route(RouteOp::NexthopDelete(id)) => {
                assert!(
                    !o.routes.iter().any(|r| r.target == Target::Nexthop(*id)),
                    "nexthop {id} deleted while a route uses it"
                );
                o.nexthops.retain(|x| x.id != *id);
            }
            Op::FileWrite(f) => {
                o.files.insert(
                    f.path.clone(),
                    Some(FileState {
                        mode: f.mode,
                        content: f.content.as_bytes().to_vec(),
                    }),
                );
            }
            Op::FileRestore { path, state } => {
                o.files.insert(path.clone(), Some(state.clone()));
            }
            Op::FileRemove(p) => {
                o.files.insert(p.clone(), None);
            }
        }
    }
    o
}

/// What `apply` does: link operations, a fresh diff with real indices, the rest.
fn converge(plan: &NodePlan, o: Observed) -> Observed {
    let d = diff(plan, &o);
    assert!(d.conflicts.is_empty(), "{:?}", d.conflicts);
    let o = match d.link_stage() {
        0 => o,
        n => sim(o, &d.ops[..n]),
    };
    let d = diff(plan, &o);
    let o = sim(o, &d.ops);
    let again = diff(plan, &o);
    assert!(again.is_empty(), "not converged:\n{}", again.render());
    o
}

/// The observable state with indices and nexthop ids replaced by names and content, so a
/// transition can be compared with a fresh apply.
fn normal(o: &Observed) -> Vec<String> {
    let name = |i: u32| {
        o.links
            .iter()
            .find(|l| l.index == i)
            .map_or(format!("if{i}"), |l| l.name.clone())
    };
    let nh: BTreeMap<u32, String> = o
        .nexthops
        .iter()
        .map(|n| {
            (
                n.id,
                format!(
                    "via {} dev {} onlink {}",
                    n.gateway,
                    name(n.ifindex),
                    n.onlink
                ),
            )
        })
        .collect();
    let mut v = Vec::new();
    // Pods' veths (enslaved to a bridge) are not podnet's: a fresh node has none.
    for l in o.links.iter().filter(|l| l.master.is_none()) {
        v.push(format!(
            "link {} {:?} mtu {} up {} alias {:?} vxlan {:?}",
            l.name,
            l.kind,
            l.mtu,
            l.up,
            l.alias,
            l.vxlan
                .as_ref()
                .map(|x| (x.vni, x.port, x.local, x.link.map(name), x.learning))
        ));
    }
    v.extend(
        o.addrs
            .iter()
            .map(|a| format!("addr {} {}", name(a.index), a.address)),
    );
    v.extend(o.routes.iter().map(|r| match &r.target {
        Target::Nexthop(id) => format!("route {} {} proto {}", r.dst, nh[id], r.protocol),
        Target::Gateway {
            via,
            ifindex,
            onlink,
        } => format!(
            "route {} via {via} dev {} onlink {onlink} proto {}",
            r.dst,
            name(*ifindex),
            r.protocol
        ),
        Target::Other { kind, ifindex } => format!(
            "route {} type {kind} dev {} proto {}",
            r.dst,
            ifindex.map_or_else(|| "-".to_string(), name),
            r.protocol
        ),
    }));
    v.extend(nh.values().map(|n| format!("nexthop {n}")));
    v.extend(o.neighs.iter().map(|n| {
        format!(
            "neigh {} {} {:?} {}",
            name(n.index),
            n.ip,
            n.mac,
            n.permanent
        )
    }));
    v.extend(
        o.fdb
            .iter()
            .map(|f| format!("fdb {} {:?} {:?}", name(f.index), f.mac, f.dst)),
    );
    v.extend(o.sysctls.iter().map(|(k, x)| format!("sysctl {k} {x:?}")));
    v.extend(o.files.iter().map(|(p, s)| {
        format!(
            "file {p} {:?}",
            s.as_ref().map(|s| (s.mode, s.content.len()))
        )
    }));
    v.sort();
    v
}

/// One case directory, loaded.
struct Case {
    name: String,
    dir: PathBuf,
    desired: NodePlan,
    before: Option<NodePlan>,
    observed: String,
    /// The nodes of `desired.podnet` and `before.podnet` (desired's first).
    names: NodeNames,
}

fn read(path: &Path) -> String {
    std::fs::read_to_string(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

/// `<stem>.podnet` (first line `# node NAME`) or `<stem>.json`, if either exists, with
/// the cluster's node names (none for a plan JSON).
fn load_plan(dir: &Path, stem: &str) -> Option<(NodePlan, NodeNames)> {
    let src = dir.join(format!("{stem}.podnet"));
    if src.exists() {
        let text = read(&src);
        let node = text
            .lines()
            .next()
            .and_then(|l| l.strip_prefix("# node "))
            .unwrap_or_else(|| panic!("{}: first line must be `# node NAME`", src.display()));
        return Some(plan_and_names(&text, node.trim()));
    }
    let json = dir.join(format!("{stem}.json"));
    json.exists().then(|| {
        let plan = serde_json::from_str(&read(&json))
            .unwrap_or_else(|e| panic!("{}: {e}", json.display()));
        (plan, NodeNames::default())
    })
}

fn case(name: &str) -> Case {
    let dir = data_dir().join(name);
    let (desired, mut names) = load_plan(&dir, "desired")
        .unwrap_or_else(|| panic!("{}: no desired.podnet or desired.json", dir.display()));
    let before = load_plan(&dir, "before").map(|(p, n)| {
        names.merge(n);
        p
    });
    Case {
        name: name.to_string(),
        desired,
        before,
        observed: read(&dir.join("observed")),
        names,
        dir,
    }
}

/// Enslaves the veths of the case's `pods` file (`BRIDGE COUNT`) to the bridge.
fn add_pods(o: &mut Observed, dir: &Path) {
    let path = dir.join("pods");
    if !path.exists() {
        return;
    }
    let text = read(&path);
    let mut w = text.split_whitespace();
    let (Some(bridge), Some(count)) = (w.next(), w.next().and_then(|n| n.parse::<u32>().ok()))
    else {
        panic!("{}: `BRIDGE COUNT` expected", path.display());
    };
    let master = o
        .links
        .iter()
        .find(|l| l.name == bridge)
        .map(|l| l.index)
        .unwrap_or_else(|| panic!("{}: no link {bridge}", path.display()));
    let first = o.links.iter().map(|l| l.index).max().unwrap_or(0) + 1;
    for i in 0..count {
        o.links.push(Link {
            index: first + i,
            name: format!("veth{i}"),
            kind: Some(KernelLinkKind::Other("veth".to_string())),
            mtu: 1500,
            mac: Some([2, 0xbb, 0, 0, 0, i as u8]),
            up: true,
            alias: None,
            master: Some(master),
            vxlan: None,
        });
    }
}

fn observed(c: &Case) -> Observed {
    observed_text::parse(&c.observed).unwrap_or_else(|e| panic!("{}/observed: {e}", c.name))
}

fn cases() -> Vec<Case> {
    let mut names: Vec<String> = std::fs::read_dir(data_dir())
        .expect("tests/data/diff")
        .filter_map(Result::ok)
        .filter(|e| e.path().is_dir())
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .collect();
    names.sort();
    names.iter().map(|n| case(n)).collect()
}

/// `diff(desired, observed)` rendered as `plan --live` prints it (pod warnings, changes,
/// conflicts), node names from `names`.
fn rendered(plan: &NodePlan, o: &Observed, names: &NodeNames) -> String {
    let mut d = diff(plan, o);
    d.nodes = names.clone();
    for op in &d.ops {
        assert!(d.line(op).starts_with(d.sign(op)), "sign of {}", d.line(op));
    }
    let mut out = Vec::new();
    Report::new(&d, Vec::new())
        .print(&mut out, podnet::diff::Detail::Normal)
        .expect("render");
    String::from_utf8(out).expect("utf-8")
}

fn diff_schema() -> jsonschema::Validator {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("../schemas/diff.schema.json");
    let schema: serde_json::Value = serde_json::from_str(&read(&path)).expect("schema is JSON");
    jsonschema::validator_for(&schema).expect("valid JSON Schema")
}

/// The case's JSON rendering, which must validate against the schema.
fn check_json(v: &jsonschema::Validator, c: &Case, o: &Observed) {
    let mut d = diff(&c.desired, o);
    d.nodes = c.names.clone();
    let doc = Report::new(&d, Vec::new()).json(
        "plan",
        Some(&c.desired.node),
        serde_json::json!({ "pending": !d.is_empty() }),
    );
    let errors: Vec<String> = v
        .iter_errors(&doc)
        .map(|e| format!("{e} at {}", e.instance_path))
        .collect();
    assert!(
        errors.is_empty(),
        "case {}: JSON does not validate:\n{}\n{doc:#}",
        c.name,
        errors.join("\n")
    );
    let changes = doc["changes"].as_array().expect("changes");
    assert_eq!(changes.len(), d.ops.len(), "case {}", c.name);
    for (ch, op) in changes.iter().zip(&d.ops) {
        let want = match d.sign(op) {
            '+' => "create",
            '~' => "update",
            _ => "delete",
        };
        assert_eq!(ch["action"], want, "case {}: {ch}", c.name);
    }
}

/// Compares `got` with the file (rewriting it when blessing).
fn check_file(path: &Path, got: &str, what: &str) {
    if bless() {
        std::fs::write(path, got).expect("bless");
    }
    let want = std::fs::read_to_string(path)
        .unwrap_or_else(|e| panic!("{}: {e} (run with PODNET_BLESS=1)", path.display()));
    assert_eq!(got, want, "{what}");
}

/// Links that are not podnet's, and routes and nexthops of other protocols.
fn foreign(o: &Observed) -> Vec<String> {
    let mut v: Vec<String> = o
        .links
        .iter()
        .filter(|l| !o.owned.contains(&l.index))
        .map(|l| format!("{l:?}"))
        .collect();
    v.extend(
        o.routes
            .iter()
            .filter(|r| !o.protocols.contains(&r.protocol))
            .map(|r| format!("{r:?}")),
    );
    v.extend(
        o.nexthops
            .iter()
            .filter(|n| !o.protocols.contains(&n.protocol))
            .map(|n| format!("{n:?}")),
    );
    v
}

#[test]
fn golden_cases() {
    let all = cases();
    assert!(all.len() >= 19, "only {} cases", all.len());
    let schema = diff_schema();
    for c in &all {
        if let Some(before) = &c.before {
            let mut converged = converge(before, machine());
            add_pods(&mut converged, &c.dir);
            let after = observed_text::render(&converged);
            check_file(
                &c.dir.join("observed"),
                &after,
                &format!(
                    "case {}: observed is not what applying before.podnet leaves",
                    c.name
                ),
            );
        }
        let c = case(&c.name);
        let o = observed(&c);
        assert_eq!(
            observed_text::render(&o),
            c.observed,
            "case {}: observed is not in canonical form",
            c.name
        );
        let d = diff(&c.desired, &o);
        check_file(
            &c.dir.join("ops"),
            &rendered(&c.desired, &o, &c.names),
            &format!("case {}", c.name),
        );
        check_json(&schema, &c, &o);
        if !d.conflicts.is_empty() {
            continue;
        }
        let after = converge(&c.desired, o.clone());
        let kept = foreign(&after);
        for f in foreign(&o) {
            assert!(kept.contains(&f), "case {}: foreign {f} touched", c.name);
        }
        if c.before.is_some() {
            let fresh = converge(&c.desired, machine());
            assert_eq!(normal(&after), normal(&fresh), "case {}", c.name);
        }
    }
}

#[test]
fn teardown_removes_everything_podnet_owns() {
    let c = case("teardown");
    let after = converge(&c.desired, observed(&c));
    assert!(after.owned.is_empty());
    assert!(after.routes.is_empty() && after.nexthops.is_empty());
    assert!(after.files.values().all(Option::is_none));
}

#[test]
fn an_old_protocol_is_replaced_in_place() {
    let c = case("protocol-change");
    let o = converge(&c.desired, observed(&c));
    assert!(o.routes.iter().all(|r| r.protocol == 77));
}

#[test]
fn a_file_leaving_the_plan_gets_its_prior_content_back() {
    let c = case("file-leaves-plan");
    let o = observed(&c);
    let (path, prior) = o.file_priors.iter().next().expect("a prior");
    let prior = prior.clone();
    let path = path.clone();
    assert!(matches!(&prior, Some(FileState { content, .. }) if content.contains(&0xe9)));
    let o = converge(&c.desired, o);
    assert_eq!(o.files.get(&path), Some(&prior));
}

#[test]
fn conflicts_are_typed() {
    let c = case("foreign-in-the-way");
    let d = diff(&c.desired, &observed(&c));
    assert_eq!(d.conflicts.len(), 2, "{:?}", d.conflicts);
    assert!(
        d.conflicts
            .iter()
            .all(|c| c.kind() == ConflictKind::ForeignObject)
    );
    // A missing underlay is a missing prerequisite.
    let mut o = observed(&case("fresh-vxlan"));
    o.links.retain(|l| l.name != "eth0");
    let d = diff(&c.desired, &o);
    assert!(
        d.conflicts
            .iter()
            .any(|c| c.kind() == ConflictKind::MissingPrerequisite
                && c.to_string().contains("underlay interface eth0")),
        "{:?}",
        d.conflicts
    );
    // Many foreign routes: five listed, the last counting the rest.
    let mut o = observed(&case("fresh-host-gw"));
    let many = HOSTGW.to_string()
        + &(4..12)
            .map(|i| {
                format!(
                    "node n{i} {{ address 192.168.56.{}/24; subnet 10.244.{i}.0/24 }}\n",
                    10 + i
                )
            })
            .collect::<String>();
    let p = plan_of(&many, "n1");
    for r in &p.routes {
        o.foreign_routes.insert(r.dst);
    }
    let d = diff(&p, &o);
    let texts: Vec<String> = d.conflicts.iter().map(ToString::to_string).collect();
    assert_eq!(texts.len(), 5, "{texts:#?}");
    assert!(
        texts[4].ends_with("(… and 5 more foreign routes in the way)"),
        "{}",
        texts[4]
    );
}

#[test]
fn foreign_nexthop_ids_are_avoided_and_unjournaled_routes_block() {
    let p = case("fresh-vxlan").desired;
    let mut ids = machine();
    let base = podnet::diff::routes::id_range(77).0;
    ids.other_nexthop_ids = vec![base, base + 1];
    let d = diff(&p, &ids);
    assert!(d.conflicts.is_empty());
    let converged = converge(&p, ids);
    assert!(converged.nexthops.iter().all(|n| n.id > base + 1));
    // Routes of podnet's protocol on a node without a journal may be another tool's.
    let mut unjournaled = converge(&p, machine());
    unjournaled.journaled = false;
    let d = diff(&p, &unjournaled);
    assert_eq!(d.conflicts.len(), 1, "{:?}", d.conflicts);
    assert!(
        d.conflicts[0].to_string().contains("no journal"),
        "{:?}",
        d.conflicts
    );
}

#[test]
fn new_routes_are_added_and_only_observed_ones_replaced() {
    let c = case("fresh-host-gw");
    let d = diff(&c.desired, &observed(&c));
    assert!(
        d.ops
            .iter()
            .any(|o| matches!(o, Op::Route(RouteOp::RouteAdd(_))))
    );
    assert!(
        !d.ops
            .iter()
            .any(|o| matches!(o, Op::Route(RouteOp::RouteReplace { .. })))
    );
    let mut o = converge(&c.desired, observed(&c));
    // A changed gateway: a replace that knows the old target.
    let mut moved = c.desired.clone();
    moved.routes[0].via = Ipv4Addr::new(192, 168, 56, 99);
    let d = diff(&moved, &o);
    let old = o
        .routes
        .iter()
        .find(|r| r.dst == moved.routes[0].dst)
        .map(|r| r.target.clone())
        .expect("route");
    assert!(
        d.ops.iter().any(|op| matches!(op,
            Op::Route(RouteOp::RouteReplace { route, was }) if route.dst == moved.routes[0].dst && *was == old)),
        "{}",
        d.render()
    );
    o = converge(&moved, o);
    assert!(diff(&moved, &o).is_empty());
}
