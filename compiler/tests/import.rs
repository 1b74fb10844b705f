//! `podnet import flannel` as data: every case under `tests/data/import/ok/<case>/` (flannel's
//! own formats: net-conf.json, `kubectl get nodes -o json`, an `etcdctl get -w json` dump,
//! subnet.env files, plus `options.json` for what the command line says) must produce the
//! `expected.podnet`, `expected.podnet.lock` and `warnings` stored beside it, and the
//! generated file must check clean, be formatted and have an up-to-date lock. Each
//! `err/<case>/` must fail with the message in its `error` file. A plan-level test compares
//! each imported node's plan with the kernel state flannel creates on that node, computed
//! here independently from the same inputs. `PODNET_BLESS=1` regenerates expectations.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use podnet_compiler::import::{self, ImportError, Imported, Input, Inputs, NodeSource, Options};
use podnet_compiler::plan::{LinkKind, Mac, NodePlan, Planner};
use podnet_compiler::{MemLoader, UseLock, compile_text, fmt, lock, parse, span};
use serde_json::Value;

fn data(kind: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../tests/data/import")
        .join(kind)
}

fn cases(kind: &str) -> Vec<PathBuf> {
    let mut v: Vec<PathBuf> = std::fs::read_dir(data(kind))
        .expect("import test data")
        .filter_map(Result::ok)
        .map(|e| e.path())
        .filter(|p| p.is_dir())
        .collect();
    v.sort();
    v
}

/// A case's input files, by name.
struct Case {
    files: BTreeMap<String, String>,
    options: Options,
}

fn read_case(dir: &Path) -> Case {
    let mut files = BTreeMap::new();
    for e in std::fs::read_dir(dir)
        .expect("case dir")
        .filter_map(Result::ok)
    {
        let name = e.file_name().to_string_lossy().into_owned();
        if name.ends_with(".json") || name.ends_with(".env") {
            files.insert(
                name,
                std::fs::read_to_string(e.path()).expect("read case file"),
            );
        }
    }
    let o: Value = serde_json::from_str(files.get("options.json").expect("options.json"))
        .expect("options JSON");
    let options = Options {
        cluster_name: o["cluster_name"].as_str().unwrap_or("flannel").to_string(),
        underlay_prefix: o["underlay_prefix"].as_u64().map(|p| p as u8),
        interface: o["interface"].as_str().map(str::to_string),
        ip_masq: o["ip_masq"].as_bool(),
    };
    Case { files, options }
}

fn run(case: &Case) -> Result<Imported, ImportError> {
    let input = |name: &str| {
        case.files.get_key_value(name).map(|(k, v)| Input {
            path: k.as_str(),
            text: v.as_str(),
        })
    };
    let nodes = match (input("nodes.json"), input("etcd.json")) {
        (Some(n), _) => Some(NodeSource::Kubernetes(n)),
        (None, Some(e)) => Some(NodeSource::Etcd(e)),
        (None, None) => None,
    };
    let subnet_env = case
        .files
        .iter()
        .filter(|(k, _)| k.ends_with(".env"))
        .map(|(k, v)| Input {
            path: k.as_str(),
            text: v.as_str(),
        })
        .collect();
    import::flannel(&Inputs {
        net_conf: input("net-conf.json"),
        nodes,
        subnet_env,
        options: case.options.clone(),
    })
}

fn compare(path: &Path, actual: &str) {
    if std::env::var_os("PODNET_BLESS").is_some() {
        std::fs::write(path, actual).expect("write expectation");
        return;
    }
    let want = std::fs::read_to_string(path).unwrap_or_else(|_| {
        panic!(
            "{} is missing (PODNET_BLESS=1 writes it); actual:\n{actual}",
            path.display()
        )
    });
    assert_eq!(want, actual, "{} differs", path.display());
}

#[test]
fn ok_cases_produce_their_files() {
    let cases = cases("ok");
    assert!(cases.len() >= 3);
    for dir in cases {
        let imported = run(&read_case(&dir)).unwrap_or_else(|e| panic!("{}: {e}", dir.display()));
        compare(&dir.join("expected.podnet"), &imported.cluster_file);
        compare(&dir.join("expected.podnet.lock"), &imported.lock_file);
        compare(
            &dir.join("warnings"),
            &(imported.warnings.join("\n") + "\n"),
        );
        // `podnet check`: no diagnostic at all, with the lock beside it.
        let mut loader = MemLoader::default();
        loader
            .files
            .insert("cluster.podnet.lock".into(), imported.lock_file.clone());
        let c = compile_text(
            &loader,
            Path::new("cluster.podnet"),
            imported.cluster_file.clone(),
            UseLock::IfPresent,
        );
        assert!(
            c.diagnostics.is_empty(),
            "{}: {:?}",
            dir.display(),
            c.diagnostics
        );
        // `podnet lock --check`: allocating again from the lock changes nothing.
        let cluster = c.cluster.as_ref().expect("cluster");
        let again = lock::allocate(cluster, c.lock.as_ref(), &mut Vec::new()).expect("lock");
        assert_eq!(again.render(), imported.lock_file, "{}", dir.display());
        // `podnet fmt --check`: already in the canonical layout.
        let mut sources = span::SourceMap::new();
        let id = sources.add(
            "cluster.podnet".into(),
            imported.cluster_file.clone(),
            span::SourceKind::Podnet,
        );
        let mut diags = Vec::new();
        let items = parse::parse(&imported.cluster_file, id, &mut diags);
        assert!(diags.is_empty());
        assert_eq!(
            fmt::format(&items),
            imported.cluster_file,
            "{}",
            dir.display()
        );
        // Every warning is in the file too.
        for w in &imported.warnings {
            assert!(imported.cluster_file.contains(w.as_str()), "{w}");
        }
    }
}

#[test]
fn err_cases_fail_naming_the_file_and_field() {
    let cases = cases("err");
    assert!(cases.len() >= 6);
    for dir in cases {
        let case = read_case(&dir);
        let e = match run(&case) {
            Ok(i) => panic!("{}: imported:\n{}", dir.display(), i.cluster_file),
            Err(e) => e,
        };
        let text = match &e {
            ImportError::Check { diagnostics, .. } => {
                let mut s = format!("{e}\n");
                for d in diagnostics {
                    s.push_str(&format!("{}: {}\n", d.code, d.message));
                }
                s
            }
            other => format!("{other}\n"),
        };
        compare(&dir.join("error"), &text);
    }
}

// ---- what flannel creates on a node, from its own inputs --------------------------------

/// The vxlan device: (name, vni, port, mtu, local, learning, mac, address).
type VxlanDevice = (String, u32, u16, u32, String, bool, Mac, String);

/// flannel's kernel state on one node, as its vxlan/host-gw backends create it.
#[derive(Debug, PartialEq, Eq)]
struct Footprint {
    /// `flannel.<VNI>`.
    vxlan: Option<VxlanDevice>,
    /// Per peer: neighbour (ip, mac), FDB (mac, dst).
    neighbours: Vec<(String, Mac)>,
    fdb: Vec<(Mac, String)>,
    /// (dst, via, dev, onlink).
    routes: Vec<(String, String, String, bool)>,
}

/// A lease: subnet, public IP, VTEP MAC.
type Lease = (String, String, Option<Mac>);

fn b64(s: &str) -> String {
    // Test-side decoder, independent of the importer's.
    let table = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut bits = String::new();
    for c in s.trim_end_matches('=').chars() {
        bits.push_str(&format!("{:06b}", table.find(c).expect("base64")));
    }
    let bytes: Vec<u8> = bits
        .as_bytes()
        .chunks(8)
        .filter(|c| c.len() == 8)
        .map(|c| u8::from_str_radix(std::str::from_utf8(c).expect("bits"), 2).expect("byte"))
        .collect();
    String::from_utf8(bytes).expect("utf-8")
}

/// (network config, leases, FLANNEL_MTU) read straight from a case's flannel files.
fn flannel_state(case: &Case) -> (Value, Vec<Lease>, Option<u32>) {
    let mut conf = case
        .files
        .get("net-conf.json")
        .map(|t| serde_json::from_str::<Value>(t).expect("net-conf"));
    let mut leases = Vec::new();
    if let Some(t) = case.files.get("nodes.json") {
        let v: Value = serde_json::from_str(t).expect("nodes");
        for n in v["items"].as_array().expect("items") {
            let ann = &n["metadata"]["annotations"];
            let Some(cidr) = n["spec"]["podCIDR"].as_str() else {
                continue;
            };
            let ip = ann["flannel.alpha.coreos.com/public-ip"]
                .as_str()
                .or_else(|| n["status"]["addresses"][0]["address"].as_str())
                .expect("address");
            let mac = ann["flannel.alpha.coreos.com/backend-data"]
                .as_str()
                .and_then(|d| serde_json::from_str::<Value>(d).ok())
                .and_then(|d| d["VtepMAC"].as_str().map(|m| m.parse().expect("mac")));
            leases.push((cidr.to_string(), ip.to_string(), mac));
        }
    }
    if let Some(t) = case.files.get("etcd.json") {
        let v: Value = serde_json::from_str(t).expect("etcd");
        for kv in v["kvs"].as_array().expect("kvs") {
            let key = b64(kv["key"].as_str().expect("key"));
            let value: Value =
                serde_json::from_str(&b64(kv["value"].as_str().expect("value"))).expect("value");
            if key == "/coreos.com/network/config" {
                conf = Some(value);
            } else if let Some(s) = key.strip_prefix("/coreos.com/network/subnets/") {
                let mac = value["BackendData"]["VtepMAC"]
                    .as_str()
                    .map(|m| m.parse().expect("mac"));
                leases.push((
                    s.replace('-', "/"),
                    value["PublicIP"].as_str().expect("ip").to_string(),
                    mac,
                ));
            }
        }
    }
    let mtu = case
        .files
        .iter()
        .filter(|(k, _)| k.ends_with(".env"))
        .flat_map(|(_, t)| t.lines())
        .find_map(|l| {
            l.strip_prefix("FLANNEL_MTU=")
                .map(|m| m.parse().expect("mtu"))
        });
    (conf.expect("network config"), leases, mtu)
}

fn net_of(cidr: &str) -> String {
    cidr.split('/').next().expect("cidr").to_string()
}

fn same_segment(a: &str, b: &str, prefix: u8) -> bool {
    let n = |s: &str| u32::from(s.parse::<std::net::Ipv4Addr>().expect("ip")) >> (32 - prefix);
    n(a) == n(b)
}

fn footprint(
    case: &Case,
    me: &Lease,
    conf: &Value,
    leases: &[Lease],
    mtu: Option<u32>,
) -> Footprint {
    let prefix = case.options.underlay_prefix.expect("prefix");
    let iface = case
        .options
        .interface
        .clone()
        .unwrap_or_else(|| "eth0".into());
    let backend = &conf["Backend"];
    let mut f = Footprint {
        vxlan: None,
        neighbours: Vec::new(),
        fdb: Vec::new(),
        routes: Vec::new(),
    };
    let vxlan = backend["Type"] == "vxlan";
    let vni = backend["VNI"].as_u64().unwrap_or(1) as u32;
    let dev = format!("flannel.{vni}");
    if vxlan {
        let port = match backend["Port"].as_u64() {
            None | Some(0) => 8472,
            Some(p) => p as u16,
        };
        // flannel: the device MTU is the interface MTU minus 50 (FLANNEL_MTU reports it).
        let mtu = mtu.unwrap_or(1500 - 50);
        f.vxlan = Some((
            dev.clone(),
            vni,
            port,
            mtu,
            me.1.clone(),
            false,
            me.2.expect("own VTEP MAC"),
            format!("{}/32", net_of(&me.0)),
        ));
    }
    let direct = backend["DirectRouting"].as_bool().unwrap_or(false);
    for p in leases.iter().filter(|p| p.0 != me.0) {
        if !vxlan || (direct && same_segment(&p.1, &me.1, prefix)) {
            f.routes
                .push((p.0.clone(), p.1.clone(), iface.clone(), false));
            continue;
        }
        let mac = p.2.expect("peer VTEP MAC");
        f.neighbours.push((net_of(&p.0), mac));
        f.fdb.push((mac, p.1.clone()));
        f.routes
            .push((p.0.clone(), net_of(&p.0), dev.clone(), true));
    }
    f
}

fn plan_footprint(p: &NodePlan) -> Footprint {
    let vxlan = p.links.iter().find(|l| l.kind == LinkKind::Vxlan).map(|l| {
        let a = l.vxlan.as_ref().expect("attrs");
        let addr = p
            .addresses
            .iter()
            .find(|x| x.dev == l.name)
            .expect("vxlan address");
        (
            l.name.clone(),
            a.vni,
            a.port,
            l.mtu,
            a.local.to_string(),
            a.learning,
            l.mac.expect("mac"),
            addr.address.to_string(),
        )
    });
    Footprint {
        vxlan,
        neighbours: p
            .neighbours
            .iter()
            .map(|n| (n.ip.to_string(), n.mac))
            .collect(),
        fdb: p.fdb.iter().map(|e| (e.mac, e.dst.to_string())).collect(),
        routes: p
            .routes
            .iter()
            .map(|r| {
                (
                    r.dst.to_string(),
                    r.via.to_string(),
                    r.dev.clone(),
                    r.onlink,
                )
            })
            .collect(),
    }
}

#[test]
fn imported_plans_reproduce_what_flannel_creates() {
    for dir in cases("ok") {
        let case = read_case(&dir);
        let imported = run(&case).expect("import");
        let c = compile_text(
            &MemLoader::default(),
            Path::new("cluster.podnet"),
            imported.cluster_file.clone(),
            UseLock::No,
        );
        let cluster = c.valid_cluster().expect("valid");
        let planner = Planner::new(cluster);
        let (conf, leases, mtu) = flannel_state(&case);
        // Nodes flannel has not run on (no VTEP MAC) are compared by subnet and address only.
        let flannel_nodes: Vec<&Lease> = leases
            .iter()
            .filter(|l| l.2.is_some() || conf["Backend"]["Type"] == "host-gw")
            .collect();
        let mut compared = 0;
        for me in &flannel_nodes {
            let i = cluster
                .nodes
                .iter()
                .position(|n| n.subnet.map(|s| s.value.to_string()) == Some(me.0.clone()))
                .unwrap_or_else(|| panic!("{}: no node keeps subnet {}", dir.display(), me.0));
            let node = &cluster.nodes[i];
            assert_eq!(
                node.address.value.addr().to_string(),
                me.1,
                "{}",
                dir.display()
            );
            let plan = planner.plan(i).expect("plan");
            let mut got = plan_footprint(&plan);
            let peers: Vec<Lease> = flannel_nodes.iter().map(|l| (*l).clone()).collect();
            let want = footprint(&case, me, &conf, &peers, mtu);
            // Peers flannel does not know (no annotation yet) are podnet's extra entries.
            let known = |ip: &str| {
                peers
                    .iter()
                    .any(|p| p.1 == ip || net_of(&p.0) == ip || p.0 == ip)
            };
            got.neighbours.retain(|n| known(&n.0));
            got.fdb.retain(|e| known(&e.1));
            got.routes.retain(|r| known(&r.0));
            assert_eq!(got, want, "{}: node {}", dir.display(), node.name.value);
            // The bridge carries the same MTU as flannel's CNI config (FLANNEL_MTU).
            if let Some(m) = mtu {
                assert_eq!(plan.links[0].mtu, m);
            }
            compared += 1;
        }
        assert!(compared >= 2, "{}", dir.display());
    }
}
