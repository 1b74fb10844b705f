//! `podnet import flannel`: turns what a flannel cluster has (net-conf.json, the nodes'
//! flannel annotations or an etcd dump of the leases, subnet.env files) into a cluster file
//! and its lock that keep every node's subnet, address and VTEP MAC. Pure: the caller reads
//! the inputs and writes the outputs. What has no podnet equivalent is reported as a
//! warning (and as a comment in the file), never guessed; inconsistent or malformed input
//! is an [`ImportError`] naming the file and the field.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::net::Ipv4Addr;
use std::path::Path;

use ipnet::Ipv4Net;
use serde_json::{Map, Value};

use crate::lock;
use crate::model::VXLAN_OVERHEAD;
use crate::plan::Mac;
use crate::span::{FileId, SourceKind, SourceMap};
use crate::{Compilation, Diagnostic, MemLoader, UseLock, compile_text, fmt, parse};

/// The flannel node annotations podnet reads (`flannel.alpha.coreos.com/…`).
pub const ANNOTATION_PUBLIC_IP: &str = "flannel.alpha.coreos.com/public-ip";
pub const ANNOTATION_BACKEND_TYPE: &str = "flannel.alpha.coreos.com/backend-type";
pub const ANNOTATION_BACKEND_DATA: &str = "flannel.alpha.coreos.com/backend-data";
/// The etcd keys flanneld uses (default `--etcd-prefix`).
pub const ETCD_CONFIG_KEY: &str = "/coreos.com/network/config";
pub const ETCD_SUBNETS_PREFIX: &str = "/coreos.com/network/subnets/";
/// Linux's default VXLAN port, which flannel's `Port: 0` means.
pub const FLANNEL_DEFAULT_PORT: u16 = 8472;

/// One input file: its name (for messages) and its text.
#[derive(Clone, Copy, Debug)]
pub struct Input<'a> {
    pub path: &'a str,
    pub text: &'a str,
}

/// Where the nodes come from.
#[derive(Clone, Copy, Debug)]
pub enum NodeSource<'a> {
    /// `kubectl get nodes -o json` (a `List`, or one `Node`).
    Kubernetes(Input<'a>),
    /// `etcdctl get --prefix /coreos.com/network -w json` (keys and values base64).
    Etcd(Input<'a>),
}

/// What the user says that flannel's files do not hold.
#[derive(Clone, Debug)]
pub struct Options {
    pub cluster_name: String,
    /// The nodes' underlay prefix length (their L2 segment); flannel records bare addresses.
    pub underlay_prefix: Option<u8>,
    /// The underlay interface (flanneld's `--iface`); absent: podnet's default, reported.
    pub interface: Option<String>,
    /// Whether flanneld ran with `--ip-masq` (else taken from subnet.env's FLANNEL_IPMASQ).
    pub ip_masq: Option<bool>,
}

/// All inputs of one import.
#[derive(Clone, Debug)]
pub struct Inputs<'a> {
    pub net_conf: Option<Input<'a>>,
    pub nodes: Option<NodeSource<'a>>,
    pub subnet_env: Vec<Input<'a>>,
    pub options: Options,
}

/// A malformed or inconsistent input: nothing is written.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ImportError {
    #[error("{file}: not valid JSON: {reason}")]
    Json { file: String, reason: String },
    #[error("{file}: `{field}` {problem}")]
    Field {
        file: String,
        field: String,
        problem: String,
    },
    #[error("{field} differs: {first} in {first_file}, {second} in {second_file}")]
    Conflict {
        field: String,
        first_file: String,
        first: String,
        second_file: String,
        second: String,
    },
    #[error("{what} is not in the inputs: {hint}")]
    Missing { what: String, hint: String },
    /// The generated file does not pass `podnet check` (the flannel state breaks one of
    /// podnet's rules, e.g. overlapping subnets): the file and its diagnostics.
    #[error("the imported cluster does not pass `podnet check` ({} error(s))", .diagnostics.iter().filter(|d| d.is_error()).count())]
    Check {
        text: String,
        diagnostics: Vec<Diagnostic>,
    },
}

impl ImportError {
    fn field(file: &str, field: impl Into<String>, problem: impl Into<String>) -> ImportError {
        ImportError::Field {
            file: file.to_string(),
            field: field.into(),
            problem: problem.into(),
        }
    }
}

/// The generated cluster file, its lock, and what was not mapped.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Imported {
    /// `cluster.podnet`, formatted (`podnet fmt --check` passes).
    pub cluster_file: String,
    /// `cluster.podnet.lock` (`podnet lock --check` passes).
    pub lock_file: String,
    /// Everything that has no podnet equivalent or was taken from a default, one line each
    /// (also written as comments at the top of the file).
    pub warnings: Vec<String>,
}

/// The backend flannel ran.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Backend {
    HostGw,
    Vxlan {
        vni: u32,
        port: u16,
        direct_routing: bool,
    },
}

/// One node as flannel knew it.
#[derive(Debug, Clone)]
struct FlannelNode {
    name: String,
    /// The file it came from (for messages).
    file: String,
    subnet: Ipv4Net,
    public_ip: Ipv4Addr,
    backend_type: Option<String>,
    vtep_mac: Option<Mac>,
}

/// The network configuration (net-conf.json or etcd's `/coreos.com/network/config`).
#[derive(Debug, Clone)]
struct NetConf {
    file: String,
    network: Ipv4Net,
    subnet_len: Option<u8>,
    backend: Backend,
    backend_type: String,
    mtu: Option<u32>,
    nftables: bool,
}

/// What the subnet.env files agree on.
#[derive(Debug, Default)]
struct SubnetEnv {
    network: Option<(String, Ipv4Net)>,
    mtu: Option<(String, u32)>,
    ipmasq: Option<(String, bool)>,
    subnets: Vec<(String, Ipv4Net)>,
}

/// Converts flannel's state into a cluster file and lock (see the module docs).
pub fn flannel(inputs: &Inputs<'_>) -> Result<Imported, ImportError> {
    let mut warnings = Vec::new();
    let mut net_conf = match inputs.net_conf {
        Some(i) => Some(net_conf(i.path, &json(i)?, &mut warnings)?),
        None => None,
    };
    let nodes = match inputs.nodes {
        None => Vec::new(),
        Some(NodeSource::Kubernetes(i)) => kube_nodes(i, &mut warnings)?,
        Some(NodeSource::Etcd(i)) => {
            let (conf, nodes) = etcd(i, &mut warnings)?;
            match (&net_conf, conf) {
                (Some(a), Some(b)) => same_conf(a, &b)?,
                (None, Some(b)) => net_conf = Some(b),
                _ => {}
            }
            nodes
        }
    };
    let env = subnet_env(&inputs.subnet_env, &mut warnings)?;
    let Some(conf) = net_conf else {
        return Err(ImportError::Missing {
            what: "flannel's network configuration".into(),
            hint: "give --net-conf FILE (/etc/kube-flannel/net-conf.json, or the kube-flannel-cfg \
                   ConfigMap's net-conf.json) or an --etcd dump that holds /coreos.com/network/config"
                .into(),
        });
    };
    if let Some((file, n)) = &env.network
        && *n != conf.network
    {
        return Err(ImportError::Conflict {
            field: "the flannel network".into(),
            first_file: conf.file.clone(),
            first: conf.network.to_string(),
            second_file: file.clone(),
            second: format!("FLANNEL_NETWORK={n}"),
        });
    }
    if nodes.is_empty() {
        return Err(ImportError::Missing {
            what: "any node".into(),
            hint: "give --nodes (kubectl get nodes -o json) or --etcd (etcdctl get --prefix \
                   /coreos.com/network -w json); subnet.env files carry no node address"
                .into(),
        });
    }
    let Some(prefix) = inputs.options.underlay_prefix else {
        return Err(ImportError::Missing {
            what: "the nodes' underlay prefix length (their L2 segment)".into(),
            hint: "flannel records bare addresses; give --underlay-prefix LEN, the prefix of the \
                   node address on its interface (`ip -4 addr show IFACE`), e.g. 24"
                .into(),
        });
    };
    if prefix > 32 {
        return Err(ImportError::field(
            "--underlay-prefix",
            "LEN",
            format!("is {prefix}: a prefix length is 0 to 32"),
        ));
    }
    check_nodes(&conf, &nodes, &mut warnings)?;
    let subnet_len = match conf.subnet_len {
        Some(l) => l,
        None => {
            let l = nodes[0].subnet.prefix_len();
            warnings.push(format!(
                "{}: SubnetLen is not set; the nodes' subnets are /{l}, so `subnet-len {l}`",
                conf.file
            ));
            l
        }
    };
    for (file, s) in &env.subnets {
        if !nodes.iter().any(|n| n.subnet == *s) {
            warnings.push(format!(
                "{file}: FLANNEL_SUBNET {s} is no known node's subnet; the file is not used for any node"
            ));
        }
    }
    let mtu = match (conf.mtu, &env.mtu) {
        (Some(a), Some((file, b))) if a != *b => {
            return Err(ImportError::Conflict {
                field: "the pod MTU".into(),
                first_file: conf.file.clone(),
                first: format!("Backend.MTU {a}"),
                second_file: file.clone(),
                second: format!("FLANNEL_MTU={b}"),
            });
        }
        (Some(a), _) => Some(a),
        (None, Some((_, b))) => Some(*b),
        (None, None) => None,
    };
    let overhead = match conf.backend {
        Backend::HostGw => 0,
        Backend::Vxlan { .. } => VXLAN_OVERHEAD,
    };
    if mtu.is_none() {
        warnings.push(format!(
            "the pod MTU flannel used is not in the inputs (FLANNEL_MTU in subnet.env, Backend.MTU \
             in net-conf.json): the file says `mtu auto` (underlay-mtu 1500 - {overhead}); \
             flannel used the interface MTU - {overhead}"
        ));
    }
    let ip_masq = match (inputs.options.ip_masq, &env.ipmasq) {
        (Some(a), Some((file, b))) if a != *b => {
            return Err(ImportError::Conflict {
                field: "ip-masq".into(),
                first_file: "--ip-masq".into(),
                first: a.to_string(),
                second_file: file.clone(),
                second: format!("FLANNEL_IPMASQ={b}"),
            });
        }
        (Some(a), _) => a,
        (None, Some((_, b))) => *b,
        (None, None) => {
            return Err(ImportError::Missing {
                what: "whether flanneld masqueraded (--ip-masq)".into(),
                hint: "give --subnet-env FILE (its FLANNEL_IPMASQ) or --ip-masq true|false (the \
                       flanneld argument, e.g. in the kube-flannel DaemonSet)"
                    .into(),
            });
        }
    };
    if ip_masq {
        warnings.push(
            "flannel also masquerades traffic from outside the pod network to pods on other nodes \
             (`! -s NETWORK -d NETWORK -j MASQUERADE`): podnet has no such rule, so such traffic \
             keeps its source address"
                .into(),
        );
    }
    let interface = match &inputs.options.interface {
        Some(i) => i.clone(),
        None => {
            warnings.push(format!(
                "the underlay interface (flanneld's --iface) is not in the inputs: the file says \
                 `interface {}` (podnet's default); apply refuses a node whose address is not on it",
                crate::lower::defaults::INTERFACE
            ));
            crate::lower::defaults::INTERFACE.to_string()
        }
    };

    let text = render(&RenderInput {
        name: &inputs.options.cluster_name,
        conf: &conf,
        subnet_len,
        interface: &interface,
        mtu,
        overhead,
        ip_masq,
        nodes: &nodes,
        prefix,
        warnings: &warnings,
    });
    let cluster_file = formatted(&text);
    let (comp, lock_file) = compile_and_lock(&cluster_file);
    if comp.has_errors() || lock_file.is_none() {
        return Err(ImportError::Check {
            text: cluster_file,
            diagnostics: comp.diagnostics,
        });
    }
    Ok(Imported {
        cluster_file,
        lock_file: lock_file.unwrap_or_default(),
        warnings,
    })
}

/// The path the generated file is compiled under (for diagnostics).
pub const GENERATED_NAME: &str = "cluster.podnet";

/// Compiles the generated text and computes its lock (`None` if allocation failed).
fn compile_and_lock(text: &str) -> (Compilation, Option<String>) {
    let mut comp = compile_text(
        &MemLoader::default(),
        Path::new(GENERATED_NAME),
        text.to_string(),
        UseLock::No,
    );
    let mut diags = Vec::new();
    let lock = comp
        .valid_cluster()
        .and_then(|c| lock::allocate(c, None, &mut diags))
        .map(|l| l.render());
    comp.diagnostics.extend(diags);
    (comp, lock)
}

/// The canonical layout of `text` (which the renderer writes without syntax errors).
fn formatted(text: &str) -> String {
    let mut sources = SourceMap::new();
    let id: FileId = sources.add(GENERATED_NAME.into(), text.to_string(), SourceKind::Podnet);
    let mut diags = Vec::new();
    let items = parse::parse(text, id, &mut diags);
    if diags.iter().any(Diagnostic::is_error) {
        // Cannot happen for rendered text; keep it as is, the check reports the problem.
        return text.to_string();
    }
    fmt::format(&items)
}

struct RenderInput<'a> {
    name: &'a str,
    conf: &'a NetConf,
    subnet_len: u8,
    interface: &'a str,
    mtu: Option<u32>,
    overhead: u32,
    ip_masq: bool,
    nodes: &'a [FlannelNode],
    prefix: u8,
    warnings: &'a [String],
}

/// A word of the podnet language, quoted when it is not a plain one.
fn word(s: &str) -> String {
    let plain = !s.is_empty()
        && s.chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '-' | '_'));
    if plain {
        s.to_string()
    } else {
        format!("\"{}\"", s.replace('\\', "\\\\").replace('"', "\\\""))
    }
}

fn render(r: &RenderInput<'_>) -> String {
    let mut s = String::new();
    let _ = writeln!(
        s,
        "# Imported from flannel by `podnet import flannel`: review it like code."
    );
    if r.warnings.is_empty() {
        let _ = writeln!(s, "# Everything flannel had is mapped.");
    } else {
        let _ = writeln!(s, "# Not mapped, or taken from a default:");
        for w in r.warnings {
            let _ = writeln!(s, "#   - {}", w.replace('\n', " "));
        }
    }
    let _ = writeln!(s, "cluster {} {{", word(r.name));
    let _ = writeln!(s, "pod-cidr {}", r.conf.network);
    let _ = writeln!(s, "subnet-len {}", r.subnet_len);
    let _ = writeln!(s, "interface {}", word(r.interface));
    if let Some(m) = r.mtu {
        if m + r.overhead > crate::lower::defaults::UNDERLAY_MTU {
            let _ = writeln!(
                s,
                "underlay-mtu {}  # flannel's MTU {m} + {}",
                m + r.overhead,
                r.overhead
            );
        }
        let _ = writeln!(s, "mtu {m}  # flannel's");
    }
    match &r.conf.backend {
        Backend::HostGw => {
            let _ = writeln!(s, "backend host-gw");
        }
        Backend::Vxlan {
            vni,
            port,
            direct_routing,
        } => {
            // flannel's device is flannel.<VNI>, podnet's default name too.
            let _ = write!(s, "backend vxlan {{ vni {vni}; port {port}");
            if *direct_routing {
                let _ = write!(s, "; direct-routing on");
            }
            let _ = writeln!(s, " }}");
        }
    }
    if r.ip_masq {
        // flannel: `-s NETWORK ! -d 224.0.0.0/4 -j MASQUERADE --random-fully`.
        let _ = writeln!(
            s,
            "masquerade outbound {{ except 224.0.0.0/4 }}  # flannel's --ip-masq (multicast kept)"
        );
    } else {
        let _ = writeln!(s, "masquerade off  # flanneld ran without --ip-masq");
    }
    let _ = writeln!(
        s,
        "firewall {}  # {}",
        if r.conf.nftables {
            "nftables"
        } else {
            "iptables"
        },
        if r.conf.nftables {
            "flannel's EnableNFTables"
        } else {
            "flannel used iptables"
        }
    );
    let _ = writeln!(s, "}}");
    s.push('\n');
    for n in r.nodes {
        let _ = write!(
            s,
            "node {} {{ address {}/{}; subnet {}",
            word(&n.name),
            n.public_ip,
            r.prefix,
            n.subnet
        );
        if let Some(m) = n.vtep_mac {
            let _ = write!(s, "; vtep-mac {m}");
        }
        let _ = writeln!(s, " }}");
    }
    s
}

fn json(i: Input<'_>) -> Result<Value, ImportError> {
    serde_json::from_str(i.text).map_err(|e| ImportError::Json {
        file: i.path.to_string(),
        reason: e.to_string(),
    })
}

fn object<'v>(
    file: &str,
    field: &str,
    v: &'v Value,
) -> Result<&'v Map<String, Value>, ImportError> {
    v.as_object()
        .ok_or_else(|| ImportError::field(file, field, "is not a JSON object"))
}

fn string<'v>(file: &str, field: &str, v: &'v Value) -> Result<&'v str, ImportError> {
    v.as_str()
        .ok_or_else(|| ImportError::field(file, field, "is not a string"))
}

fn ipv4_net(file: &str, field: &str, s: &str) -> Result<Ipv4Net, ImportError> {
    let n: Ipv4Net = s
        .parse()
        .map_err(|_| ImportError::field(file, field, format!("is `{s}`, not an IPv4 CIDR")))?;
    if n.trunc() != n {
        return Err(ImportError::field(
            file,
            field,
            format!(
                "is `{s}`, which has host bits set (the network is {})",
                n.trunc()
            ),
        ));
    }
    Ok(n)
}

fn ipv4(file: &str, field: &str, s: &str) -> Result<Ipv4Addr, ImportError> {
    s.parse()
        .map_err(|_| ImportError::field(file, field, format!("is `{s}`, not an IPv4 address")))
}

fn number(file: &str, field: &str, v: &Value, max: u64) -> Result<u64, ImportError> {
    v.as_u64().filter(|n| *n <= max).ok_or_else(|| {
        ImportError::field(file, field, format!("is {v}, not a number from 0 to {max}"))
    })
}

fn flag(file: &str, field: &str, v: &Value) -> Result<bool, ImportError> {
    v.as_bool()
        .ok_or_else(|| ImportError::field(file, field, format!("is {v}, not true or false")))
}

/// net-conf.json (or etcd's network config value).
fn net_conf(file: &str, v: &Value, warnings: &mut Vec<String>) -> Result<NetConf, ImportError> {
    let o = object(file, "(top level)", v)?;
    let mut network = None;
    let mut subnet_len = None;
    let mut backend_value = None;
    let mut nftables = false;
    for (k, v) in o {
        match k.as_str() {
            "Network" => network = Some(ipv4_net(file, k, string(file, k, v)?)?),
            // 0 is flannel's "unset".
            "SubnetLen" => subnet_len = Some(number(file, k, v, 32)? as u8).filter(|l| *l != 0),
            "Backend" => backend_value = Some(v),
            "EnableIPv4" => {
                if !flag(file, k, v)? {
                    return Err(ImportError::field(
                        file,
                        k,
                        "is false: podnet builds IPv4 pod networks, there is nothing to import",
                    ));
                }
            }
            "EnableNFTables" => nftables = flag(file, k, v)?,
            "SubnetMin" | "SubnetMax" => warnings.push(format!(
                "{file}: {k} {v} is not mapped: podnet gives new nodes the lowest free subnet of \
                 the whole pod-cidr (existing nodes keep theirs)"
            )),
            "EnableIPv6" | "IPv6Network" | "IPv6SubnetLen" | "IPv6SubnetMin" | "IPv6SubnetMax" => {
                if v != &Value::Bool(false) && !v.is_null() {
                    warnings.push(format!(
                        "{file}: {k} {v} is not mapped: podnet builds IPv4 pod networks only"
                    ));
                }
            }
            _ => warnings.push(format!(
                "{file}: {k} {v} is not mapped: podnet has no equivalent"
            )),
        }
    }
    let network = network.ok_or_else(|| ImportError::field(file, "Network", "is missing"))?;
    let (backend, backend_type, mtu) = match backend_value {
        None => {
            // flannel's default backend is udp, which podnet does not have.
            return Err(ImportError::field(
                file,
                "Backend",
                "is missing (flannel's default is `udp`, which podnet has no equivalent for)",
            ));
        }
        Some(b) => backend(file, b, warnings)?,
    };
    Ok(NetConf {
        file: file.to_string(),
        network,
        subnet_len,
        backend,
        backend_type,
        mtu,
        nftables,
    })
}

fn backend(
    file: &str,
    v: &Value,
    warnings: &mut Vec<String>,
) -> Result<(Backend, String, Option<u32>), ImportError> {
    let o = object(file, "Backend", v)?;
    let ty = match o.get("Type") {
        None => "udp",
        Some(t) => string(file, "Backend.Type", t)?,
    };
    let mut vni = 1u32;
    let mut port = FLANNEL_DEFAULT_PORT;
    let mut direct_routing = false;
    let mut mtu = None;
    for (k, v) in o {
        let field = format!("Backend.{k}");
        match (ty, k.as_str()) {
            (_, "Type") => {}
            ("vxlan", "VNI") => {
                vni = number(file, &field, v, 16_777_215)? as u32;
                if vni == 0 {
                    return Err(ImportError::field(
                        file,
                        field,
                        "is 0: a VNI is 1 to 16777215",
                    ));
                }
            }
            ("vxlan", "Port") => {
                let p = number(file, &field, v, 65535)? as u16;
                if p != 0 {
                    port = p;
                }
            }
            ("vxlan", "DirectRouting") => direct_routing = flag(file, &field, v)?,
            ("vxlan", "MTU") => {
                let m = number(file, &field, v, 65535)? as u32;
                if m != 0 {
                    mtu = Some(m);
                }
            }
            ("vxlan", "Learning" | "GBP") if !flag(file, &field, v)? => {}
            ("vxlan", "Learning") => warnings.push(format!(
                "{file}: {field} true is not mapped: podnet's vxlan device never learns (its FDB \
                 and neighbours are permanent entries)"
            )),
            ("vxlan", "GBP") => warnings.push(format!(
                "{file}: {field} true is not mapped: podnet's vxlan device has no group policy \
                 extension"
            )),
            ("host-gw", _) | ("vxlan", _) => warnings.push(format!(
                "{file}: {field} {v} is not mapped: podnet has no equivalent"
            )),
            _ => {}
        }
    }
    let backend = match ty {
        "vxlan" => Backend::Vxlan {
            vni,
            port,
            direct_routing,
        },
        "host-gw" => Backend::HostGw,
        other => {
            return Err(ImportError::field(
                file,
                "Backend.Type",
                format!("is `{other}`: podnet has host-gw and vxlan only"),
            ));
        }
    };
    Ok((backend, ty.to_string(), mtu))
}

/// Two network configurations (net-conf.json and etcd's) must say the same.
fn same_conf(a: &NetConf, b: &NetConf) -> Result<(), ImportError> {
    let pairs = [
        ("Network", a.network.to_string(), b.network.to_string()),
        (
            "SubnetLen",
            format!("{:?}", a.subnet_len),
            format!("{:?}", b.subnet_len),
        ),
        (
            "Backend",
            format!("{:?}", a.backend),
            format!("{:?}", b.backend),
        ),
        (
            "Backend.MTU",
            format!("{:?}", a.mtu),
            format!("{:?}", b.mtu),
        ),
    ];
    for (field, x, y) in pairs {
        if x != y {
            return Err(ImportError::Conflict {
                field: field.into(),
                first_file: a.file.clone(),
                first: x,
                second_file: b.file.clone(),
                second: y,
            });
        }
    }
    Ok(())
}

/// `{"VtepMAC": "…"}` of a node annotation or an etcd lease: the VTEP MAC, if any.
fn vtep_mac(file: &str, field: &str, data: &Value) -> Result<Option<Mac>, ImportError> {
    if data.is_null() {
        return Ok(None);
    }
    let o = object(file, field, data)?;
    match o.get("VtepMAC") {
        None | Some(Value::Null) => Ok(None),
        Some(v) => {
            let f = format!("{field}.VtepMAC");
            let s = string(file, &f, v)?;
            s.parse::<Mac>()
                .map(Some)
                .map_err(|e| ImportError::field(file, f, e.to_string()))
        }
    }
}

/// `kubectl get nodes -o json`.
fn kube_nodes(i: Input<'_>, warnings: &mut Vec<String>) -> Result<Vec<FlannelNode>, ImportError> {
    let file = i.path;
    let doc = json(i)?;
    let items: Vec<&Value> = match doc.get("kind").and_then(Value::as_str) {
        Some("Node") => vec![&doc],
        _ => doc
            .get("items")
            .and_then(Value::as_array)
            .ok_or_else(|| {
                ImportError::field(
                    file,
                    "items",
                    "is missing: expected `kubectl get nodes -o json`",
                )
            })?
            .iter()
            .collect(),
    };
    let mut out = Vec::new();
    for (idx, n) in items.into_iter().enumerate() {
        let at = |f: &str| format!("items[{idx}].{f}");
        let name = n
            .pointer("/metadata/name")
            .ok_or_else(|| ImportError::field(file, at("metadata.name"), "is missing"))
            .and_then(|v| string(file, &at("metadata.name"), v))?
            .to_string();
        let at = |f: &str| format!("node {name}: {f}");
        let ann = n.pointer("/metadata/annotations");
        let get = |k: &str| ann.and_then(|a| a.get(k));
        let Some(pod_cidr) = n.pointer("/spec/podCIDR") else {
            warnings.push(format!(
                "{file}: node {name} has no spec.podCIDR (no subnet allocated): it is not imported"
            ));
            continue;
        };
        let subnet = ipv4_net(
            file,
            &at("spec.podCIDR"),
            string(file, &at("spec.podCIDR"), pod_cidr)?,
        )?;
        let public_ip = match get(ANNOTATION_PUBLIC_IP) {
            Some(v) => ipv4(
                file,
                &at(ANNOTATION_PUBLIC_IP),
                string(file, &at(ANNOTATION_PUBLIC_IP), v)?,
            )?,
            None => {
                let internal = n
                    .pointer("/status/addresses")
                    .and_then(Value::as_array)
                    .into_iter()
                    .flatten()
                    .find(|a| a.get("type").and_then(Value::as_str) == Some("InternalIP"))
                    .and_then(|a| a.get("address").and_then(Value::as_str))
                    .ok_or_else(|| {
                        ImportError::field(
                            file,
                            at(ANNOTATION_PUBLIC_IP),
                            "is missing, and the node has no InternalIP in status.addresses",
                        )
                    })?;
                warnings.push(format!(
                    "{file}: node {name} has no {ANNOTATION_PUBLIC_IP} annotation (flannel has not \
                     run there): its address is its InternalIP {internal}"
                ));
                ipv4(file, &at("status.addresses InternalIP"), internal)?
            }
        };
        let backend_type = get(ANNOTATION_BACKEND_TYPE)
            .map(|v| string(file, &at(ANNOTATION_BACKEND_TYPE), v).map(str::to_string))
            .transpose()?;
        let vtep_mac = match get(ANNOTATION_BACKEND_DATA) {
            None => None,
            Some(v) => {
                let f = at(ANNOTATION_BACKEND_DATA);
                let data: Value = serde_json::from_str(string(file, &f, v)?).map_err(|e| {
                    ImportError::field(file, f.clone(), format!("is not JSON: {e}"))
                })?;
                vtep_mac(file, &f, &data)?
            }
        };
        out.push(FlannelNode {
            name,
            file: file.to_string(),
            subnet,
            public_ip,
            backend_type,
            vtep_mac,
        });
    }
    Ok(out)
}

/// An `etcdctl get --prefix -w json` dump: the network config (if present) and the leases.
fn etcd(
    i: Input<'_>,
    warnings: &mut Vec<String>,
) -> Result<(Option<NetConf>, Vec<FlannelNode>), ImportError> {
    let file = i.path;
    let doc = json(i)?;
    let kvs = doc.get("kvs").and_then(Value::as_array).ok_or_else(|| {
        ImportError::field(
            file,
            "kvs",
            "is missing: expected `etcdctl get --prefix /coreos.com/network -w json`",
        )
    })?;
    let mut conf = None;
    let mut nodes = Vec::new();
    for (idx, kv) in kvs.iter().enumerate() {
        let decode = |f: &str| -> Result<String, ImportError> {
            let field = format!("kvs[{idx}].{f}");
            let v = kv
                .get(f)
                .ok_or_else(|| ImportError::field(file, field.clone(), "is missing"))?;
            let bytes = base64(string(file, &field, v)?)
                .ok_or_else(|| ImportError::field(file, field.clone(), "is not base64"))?;
            String::from_utf8(bytes)
                .map_err(|_| ImportError::field(file, field, "is not UTF-8 once decoded"))
        };
        let key = decode("key")?;
        if key == ETCD_CONFIG_KEY {
            let value = decode("value")?;
            let where_ = format!("{file} ({key})");
            let v: Value = serde_json::from_str(&value).map_err(|e| ImportError::Json {
                file: where_.clone(),
                reason: e.to_string(),
            })?;
            conf = Some(net_conf(&where_, &v, warnings)?);
        } else if let Some(name) = key.strip_prefix(ETCD_SUBNETS_PREFIX) {
            let where_ = format!("{file} ({key})");
            // `10.244.1.0-24`
            let subnet = name
                .rsplit_once('-')
                .and_then(|(a, l)| format!("{a}/{l}").parse::<Ipv4Net>().ok())
                .filter(|n| n.trunc() == *n)
                .ok_or_else(|| {
                    ImportError::field(&where_, "key", "does not end in a subnet `A.B.C.D-LEN`")
                })?;
            let value = decode("value")?;
            let v: Value = serde_json::from_str(&value).map_err(|e| ImportError::Json {
                file: where_.clone(),
                reason: e.to_string(),
            })?;
            let ip = v
                .get("PublicIP")
                .ok_or_else(|| ImportError::field(&where_, "PublicIP", "is missing"))
                .and_then(|p| string(&where_, "PublicIP", p))?;
            let public_ip = ipv4(&where_, "PublicIP", ip)?;
            let backend_type = v
                .get("BackendType")
                .map(|t| string(&where_, "BackendType", t).map(str::to_string))
                .transpose()?;
            let vtep_mac = match v.get("BackendData") {
                Some(d) => vtep_mac(&where_, "BackendData", d)?,
                None => None,
            };
            nodes.push(FlannelNode {
                // Leases carry no node name: the node is named after its address.
                name: public_ip.to_string(),
                file: where_,
                subnet,
                public_ip,
                backend_type,
                vtep_mac,
            });
        }
    }
    if !nodes.is_empty() {
        warnings.push(format!(
            "{file}: etcd leases carry no node names: each node is named after its public IP \
             (names matter only for --node; rename them freely)"
        ));
    }
    Ok((conf, nodes))
}

/// Every node must fit the network configuration and be distinct.
fn check_nodes(
    conf: &NetConf,
    nodes: &[FlannelNode],
    warnings: &mut Vec<String>,
) -> Result<(), ImportError> {
    let mut by_subnet: BTreeMap<Ipv4Net, &FlannelNode> = BTreeMap::new();
    for n in nodes {
        if !conf.network.contains(&n.subnet) {
            return Err(ImportError::field(
                &n.file,
                format!("subnet of node {}", n.name),
                format!(
                    "is {}, outside the flannel network {}",
                    n.subnet, conf.network
                ),
            ));
        }
        if let Some(len) = conf.subnet_len
            && n.subnet.prefix_len() != len
        {
            return Err(ImportError::field(
                &n.file,
                format!("subnet of node {}", n.name),
                format!("is {}, not a /{len} (SubnetLen in {})", n.subnet, conf.file),
            ));
        }
        if let Some(t) = &n.backend_type
            && *t != conf.backend_type
        {
            return Err(ImportError::Conflict {
                field: format!("the backend of node {}", n.name),
                first_file: conf.file.clone(),
                first: conf.backend_type.clone(),
                second_file: n.file.clone(),
                second: t.clone(),
            });
        }
        if let Some(first) = by_subnet.insert(n.subnet, n) {
            return Err(ImportError::Conflict {
                field: format!("the owner of subnet {}", n.subnet),
                first_file: first.file.clone(),
                first: first.name.clone(),
                second_file: n.file.clone(),
                second: n.name.clone(),
            });
        }
        if matches!(conf.backend, Backend::Vxlan { .. }) && n.vtep_mac.is_none() {
            warnings.push(format!(
                "{}: node {} has no VtepMAC: podnet derives one, which flannel peers learn only \
                 from a new annotation",
                n.file, n.name
            ));
        }
    }
    let lens: std::collections::BTreeSet<u8> =
        nodes.iter().map(|n| n.subnet.prefix_len()).collect();
    if lens.len() > 1 {
        return Err(ImportError::Field {
            file: nodes[0].file.clone(),
            field: "node subnets".into(),
            problem: format!("have different lengths ({lens:?}): podnet needs one subnet-len"),
        });
    }
    Ok(())
}

/// subnet.env files (`KEY=VALUE` lines).
fn subnet_env(files: &[Input<'_>], warnings: &mut Vec<String>) -> Result<SubnetEnv, ImportError> {
    let mut env = SubnetEnv::default();
    fn agree<T: PartialEq + Copy + std::fmt::Display>(
        slot: &mut Option<(String, T)>,
        file: &str,
        key: &str,
        v: T,
    ) -> Result<(), ImportError> {
        match slot {
            Some((f, old)) if *old != v => Err(ImportError::Conflict {
                field: key.to_string(),
                first_file: f.clone(),
                first: old.to_string(),
                second_file: file.to_string(),
                second: v.to_string(),
            }),
            Some(_) => Ok(()),
            None => {
                *slot = Some((file.to_string(), v));
                Ok(())
            }
        }
    }
    for i in files {
        let file = i.path;
        for (no, line) in i.text.lines().enumerate() {
            let line = line.trim();
            if line.is_empty() || line.starts_with('#') {
                continue;
            }
            let field = |k: &str| format!("{k} (line {})", no + 1);
            let Some((k, v)) = line.split_once('=') else {
                return Err(ImportError::field(
                    file,
                    format!("line {}", no + 1),
                    format!("is `{line}`, not KEY=VALUE"),
                ));
            };
            let v = v.trim().trim_matches('"');
            match k.trim() {
                "FLANNEL_NETWORK" => {
                    let n = ipv4_net(file, &field(k), v)?;
                    agree(&mut env.network, file, "FLANNEL_NETWORK", n)?;
                }
                "FLANNEL_SUBNET" => {
                    // The bridge gateway with the subnet's prefix, e.g. 10.244.1.1/24.
                    let n: Ipv4Net = v.parse().map_err(|_| {
                        ImportError::field(file, field(k), format!("is `{v}`, not an IPv4 CIDR"))
                    })?;
                    env.subnets.push((file.to_string(), n.trunc()));
                }
                "FLANNEL_MTU" => {
                    let m = v.parse::<u32>().map_err(|_| {
                        ImportError::field(file, field(k), format!("is `{v}`, not a number"))
                    })?;
                    agree(&mut env.mtu, file, "FLANNEL_MTU", m)?;
                }
                "FLANNEL_IPMASQ" => {
                    let b = match v {
                        "true" => true,
                        "false" => false,
                        _ => {
                            return Err(ImportError::field(
                                file,
                                field(k),
                                format!("is `{v}`, not true or false"),
                            ));
                        }
                    };
                    agree(&mut env.ipmasq, file, "FLANNEL_IPMASQ", b)?;
                }
                other => warnings.push(format!(
                    "{file}: {other}={v} is not mapped: podnet has no equivalent"
                )),
            }
        }
    }
    Ok(env)
}

/// Standard base64 (with or without padding), as etcdctl's JSON output writes keys and values.
fn base64(s: &str) -> Option<Vec<u8>> {
    let mut out = Vec::with_capacity(s.len() * 3 / 4);
    let mut acc = 0u32;
    let mut bits = 0u32;
    let s = s.trim_end_matches('=');
    for c in s.bytes() {
        let v = match c {
            b'A'..=b'Z' => c - b'A',
            b'a'..=b'z' => c - b'a' + 26,
            b'0'..=b'9' => c - b'0' + 52,
            b'+' => 62,
            b'/' => 63,
            _ => return None,
        };
        acc = (acc << 6) | u32::from(v);
        bits += 6;
        if bits >= 8 {
            bits -= 8;
            out.push((acc >> bits) as u8);
            acc &= (1 << bits) - 1;
        }
    }
    // Leftover bits must be padding zeros.
    (acc == 0).then_some(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn base64_decodes_etcd_keys() {
        assert_eq!(
            base64("L2NvcmVvcy5jb20vbmV0d29yay9jb25maWc=").as_deref(),
            Some(ETCD_CONFIG_KEY.as_bytes())
        );
        assert_eq!(base64("").as_deref(), Some(&b""[..]));
        assert_eq!(base64("YQ==").as_deref(), Some(&b"a"[..]));
        assert_eq!(base64("YWI").as_deref(), Some(&b"ab"[..]));
        assert!(base64("Y!==").is_none());
    }

    #[test]
    fn words_are_quoted_when_needed() {
        assert_eq!(word("worker-1.example.com"), "worker-1.example.com");
        assert_eq!(word("a b"), "\"a b\"");
        assert_eq!(word("x\"y"), "\"x\\\"y\"");
    }
}
