//! The diff as JSON for tools (`--format json`; the shape is `schemas/diff.schema.json`,
//! described in docs/diff-format.md): one object per change with its action, kind, id, the
//! node it belongs to, and its attributes before and after.

use serde_json::{Map, Value, json};

use super::render::{Detail, mac};
use super::routes::RouteOp;
use super::{Diff, FileState, Op};
use crate::kernel::route::Target;

/// `create`, `update` or `delete`, from a change's sign.
pub fn action(sign: char) -> &'static str {
    match sign {
        '+' => "create",
        '~' => "update",
        _ => "delete",
    }
}

impl Diff {
    /// Every operation as a change object, in execution order.
    pub fn changes_json(&self) -> Vec<Value> {
        self.ops.iter().map(|op| self.change_json(op)).collect()
    }

    /// One operation as a change object.
    pub fn change_json(&self, op: &Op) -> Value {
        let (kind, id, before, after, node) = match op {
            Op::Sysctl { key, value, was } => (
                "sysctl",
                key.clone(),
                Some(json!({ "value": was })),
                Some(json!({ "value": value })),
                None,
            ),
            Op::LinkCreate { link, .. } => {
                let mut a = json!({
                    "kind": format!("{:?}", link.kind).to_lowercase(),
                    "mtu": link.mtu,
                    "up": link.up,
                });
                if let Some(m) = link.mac {
                    a["address"] = json!(m.to_string());
                }
                if let Some(v) = &link.vxlan {
                    a["vni"] = json!(v.vni);
                    a["port"] = json!(v.port);
                    a["local"] = json!(v.local.to_string());
                    a["dev"] = json!(v.dev);
                }
                ("link", link.name.clone(), None, Some(a), None)
            }
            Op::LinkChange {
                index,
                name,
                change,
            } => {
                let have = self.before.links.get(index);
                let (mut b, mut a) = (Map::new(), Map::new());
                if let Some(m) = change.mtu {
                    b.insert("mtu".into(), json!(have.map(|h| h.mtu)));
                    a.insert("mtu".into(), json!(m));
                }
                if let Some(m) = change.mac {
                    b.insert("address".into(), json!(have.and_then(|h| h.mac).map(mac)));
                    a.insert("address".into(), json!(mac(m)));
                }
                if let Some(up) = change.up {
                    b.insert("up".into(), json!(have.map(|h| h.up)));
                    a.insert("up".into(), json!(up));
                }
                if let Some(alias) = &change.alias {
                    b.insert("alias".into(), json!(have.and_then(|h| h.alias.clone())));
                    a.insert(
                        "alias".into(),
                        if alias.is_empty() {
                            Value::Null
                        } else {
                            json!(alias)
                        },
                    );
                }
                (
                    "link",
                    name.clone(),
                    Some(Value::Object(b)),
                    Some(Value::Object(a)),
                    None,
                )
            }
            Op::LinkDelete {
                index,
                name,
                reason,
            } => {
                let have = self.before.links.get(index);
                let mut b = json!({
                    "kind": have.and_then(|h| h.kind.as_ref()).map(|k| k.as_str().to_string()),
                    "mtu": have.map(|h| h.mtu),
                });
                if reason != "stale" {
                    b["recreate"] = json!(reason);
                }
                if let Some(on) = self.before.on_link.get(index) {
                    b["with"] = json!({
                        "addresses": on.addresses,
                        "neighbours": on.neighbours,
                        "fdb": on.fdb,
                    });
                }
                ("link", name.clone(), Some(b), None, None)
            }
            Op::AddrReplace(a) => (
                "address",
                a.address.to_string(),
                None,
                Some(json!({ "dev": self.name_of(a.index) })),
                None,
            ),
            Op::AddrDelete(a) => (
                "address",
                a.address.to_string(),
                Some(json!({ "dev": self.name_of(a.index) })),
                None,
                None,
            ),
            Op::NeighReplace(n) | Op::NeighDelete(n) => {
                let v = json!({
                    "dev": self.name_of(n.index),
                    "lladdr": n.mac.map(mac),
                });
                let create = matches!(op, Op::NeighReplace(_));
                (
                    "neighbour",
                    n.ip.to_string(),
                    (!create).then(|| v.clone()),
                    create.then_some(v),
                    self.nodes.addr(&n.ip),
                )
            }
            Op::FdbReplace(f) | Op::FdbDelete(f) => {
                let v = json!({
                    "dev": self.name_of(f.index),
                    "dst": f.dst.map(|d| d.to_string()),
                });
                let create = matches!(op, Op::FdbReplace(_));
                (
                    "fdb",
                    mac(f.mac),
                    (!create).then(|| v.clone()),
                    create.then_some(v),
                    f.dst.and_then(|d| self.nodes.addr(&d)),
                )
            }
            Op::Route(RouteOp::NexthopAdd(n)) => (
                "nexthop",
                n.id.to_string(),
                None,
                Some(json!({
                    "via": n.gateway.to_string(),
                    "dev": self.name_of(n.ifindex),
                    "onlink": n.onlink,
                })),
                self.nodes.addr(&n.gateway),
            ),
            Op::Route(RouteOp::NexthopDelete(id)) => {
                let n = self.before.nexthops.get(id);
                (
                    "nexthop",
                    id.to_string(),
                    Some(json!({
                        "via": n.map(|n| n.gateway.to_string()),
                        "dev": n.map(|n| self.name_of(n.ifindex)),
                        "onlink": n.map(|n| n.onlink),
                    })),
                    None,
                    n.and_then(|n| self.nodes.addr(&n.gateway)),
                )
            }
            Op::Route(RouteOp::RouteAdd(r)) => (
                "route",
                r.dst.to_string(),
                None,
                Some(self.target_json(&r.target, Some(r.protocol))),
                self.nodes.subnet(&r.dst),
            ),
            Op::Route(RouteOp::RouteReplace { route: r, was }) => (
                "route",
                r.dst.to_string(),
                Some(self.target_json(was, None)),
                Some(self.target_json(&r.target, Some(r.protocol))),
                self.nodes.subnet(&r.dst),
            ),
            Op::Route(RouteOp::RouteDelete(r)) => (
                "route",
                r.dst.to_string(),
                Some(self.target_json(&r.target, Some(r.protocol))),
                None,
                self.nodes.subnet(&r.dst),
            ),
            Op::FileWrite(f) => (
                "file",
                f.path.clone(),
                self.file_before(&f.path),
                Some(json!({ "mode": format!("{:04o}", f.mode), "bytes": f.content.len() })),
                None,
            ),
            Op::FileRestore { path, state } => (
                "file",
                path.clone(),
                self.file_before(path),
                Some(file_json(state)),
                None,
            ),
            Op::FileRemove(p) => ("file", p.clone(), self.file_before(p), None, None),
        };
        let mut c = json!({
            "action": action(self.sign(op)),
            "kind": kind,
            "id": id,
            "text": self.line_as(op, Detail::Verbose),
        });
        if let Some(n) = node {
            c["node"] = json!(n);
        }
        c["before"] = before.unwrap_or(Value::Null);
        c["after"] = after.unwrap_or(Value::Null);
        c
    }

    fn name_of(&self, index: u32) -> String {
        self.names
            .get(&index)
            .cloned()
            .unwrap_or_else(|| format!("if{index}"))
    }

    fn file_before(&self, path: &str) -> Option<Value> {
        match self.before.files.get(path) {
            Some(Some(s)) => Some(file_json(s)),
            _ => None,
        }
    }

    /// A route's target with its nexthop resolved to gateway and device.
    fn target_json(&self, t: &Target, protocol: Option<u8>) -> Value {
        let mut v = match t {
            Target::Nexthop(id) => match self.before.nexthops.get(id) {
                Some(n) => json!({
                    "via": n.gateway.to_string(),
                    "dev": self.name_of(n.ifindex),
                    "onlink": n.onlink,
                    "nhid": id,
                }),
                None => json!({ "nhid": id }),
            },
            Target::Gateway {
                via,
                ifindex,
                onlink,
            } => json!({
                "via": via.to_string(),
                "dev": self.name_of(*ifindex),
                "onlink": onlink,
            }),
            Target::Other { kind, ifindex } => json!({
                "type": kind,
                "dev": ifindex.map(|i| self.name_of(i)),
            }),
        };
        if let Some(p) = protocol {
            v["protocol"] = json!(p);
        }
        v
    }
}

fn file_json(s: &FileState) -> Value {
    json!({ "mode": format!("{:04o}", s.mode), "bytes": s.content.len() })
}
