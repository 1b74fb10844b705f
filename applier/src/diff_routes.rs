//! The pure diff for per-node routes: desired routes × observed owned routes and nexthops →
//! ordered operations. Routes point at nexthop objects (one per distinct gateway, device and
//! onlink flag); an unchanged nexthop is never rewritten, a changed one gets a new id, and
//! stale ones are deleted only after no route uses them. No IO here.

use ahash::{AHashMap as HashMap, AHashSet as HashSet};
use std::net::Ipv4Addr;

use ipnet::Ipv4Net;

use crate::kernel::nexthop::Nexthop;
use crate::kernel::route::{Route, Target};

/// A route the plan wants, with its device already resolved to an ifindex.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct WantRoute {
    pub dst: Ipv4Net,
    pub via: Ipv4Addr,
    pub ifindex: u32,
    pub onlink: bool,
}

/// What the kernel has, as far as the diff needs it.
#[derive(Clone, Debug, Default)]
pub struct Observed {
    /// Main-table routes of podnet's protocol.
    pub routes: Vec<Route>,
    /// Every IPv4 nexthop object (owned ones carry podnet's protocol).
    pub nexthops: Vec<Nexthop>,
    /// Ids of every other nexthop object (IPv6, groups, blackholes…): taken, too.
    pub other_ids: Vec<u32>,
}

/// One kernel change, in execution order.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum RouteOp {
    /// Create a nexthop under a free id (create-exclusive: never overwrites).
    NexthopAdd(Nexthop),
    RouteReplace(Route),
    RouteDelete(Route),
    NexthopDelete(u32),
}

/// Whether the kernel supports nexthop objects (probed once; kernels before 5.3 do not).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RouteStyle {
    Nexthops,
    PlainGateways,
}

/// podnet's nexthop ids live in `[protocol << 24, (protocol + 1) << 24)`, away from ids that
/// other tools (FRR, hand-made `ip nexthop`) pick from 1 upwards.
pub fn id_range(protocol: u8) -> (u32, u32) {
    let base = u32::from(protocol) << 24;
    (base.max(1), base + 0x00ff_ffff)
}

type Key = (Ipv4Addr, u32, bool);

/// Computes the operations that make the owned routes and nexthops exactly `want`.
pub fn diff(
    want: &[WantRoute],
    observed: &Observed,
    protocol: u8,
    style: RouteStyle,
) -> Vec<RouteOp> {
    let mut ops = Vec::new();
    let owned_nh: Vec<&Nexthop> = observed
        .nexthops
        .iter()
        .filter(|n| n.protocol == protocol)
        .collect();
    let mut assigned: HashMap<Key, u32> = HashMap::new();
    let mut keep_nh: HashSet<u32> = HashSet::new();

    if style == RouteStyle::Nexthops {
        // Reuse an existing owned nexthop for each key (the lowest id if several match).
        let mut by_key: HashMap<Key, u32> = HashMap::new();
        for n in &owned_nh {
            let k = (n.gateway, n.ifindex, n.onlink);
            by_key
                .entry(k)
                .and_modify(|id| *id = (*id).min(n.id))
                .or_insert(n.id);
        }
        let taken: HashSet<u32> = observed
            .nexthops
            .iter()
            .map(|n| n.id)
            .chain(observed.other_ids.iter().copied())
            .collect();
        let (lo, hi) = id_range(protocol);
        let mut next = lo;
        for w in want {
            let k = (w.via, w.ifindex, w.onlink);
            if assigned.contains_key(&k) {
                continue;
            }
            let id = match by_key.get(&k) {
                Some(&id) => id,
                None => {
                    while taken.contains(&next) && next < hi {
                        next += 1;
                    }
                    let id = next;
                    next += 1;
                    ops.push(RouteOp::NexthopAdd(Nexthop {
                        id,
                        gateway: w.via,
                        ifindex: w.ifindex,
                        onlink: w.onlink,
                        protocol,
                    }));
                    id
                }
            };
            assigned.insert(k, id);
            keep_nh.insert(id);
        }
    }

    let have: HashMap<Ipv4Net, &Route> = observed.routes.iter().map(|r| (r.dst, r)).collect();
    let mut wanted: HashSet<Ipv4Net> = HashSet::with_capacity(want.len());
    for w in want {
        wanted.insert(w.dst);
        let target = match style {
            RouteStyle::Nexthops => Target::Nexthop(assigned[&(w.via, w.ifindex, w.onlink)]),
            RouteStyle::PlainGateways => Target::Gateway {
                via: w.via,
                ifindex: w.ifindex,
                onlink: w.onlink,
            },
        };
        let route = Route {
            dst: w.dst,
            target,
            protocol,
        };
        if have.get(&w.dst).is_none_or(|r| **r != route) {
            // One replace changes a route in place: it is never missing in between.
            ops.push(RouteOp::RouteReplace(route));
        }
    }
    let mut stale: Vec<&Route> = observed
        .routes
        .iter()
        .filter(|r| !wanted.contains(&r.dst))
        .collect();
    stale.sort_by_key(|r| r.dst);
    ops.extend(stale.into_iter().map(|r| RouteOp::RouteDelete(r.clone())));
    let mut dead: Vec<u32> = owned_nh
        .iter()
        .map(|n| n.id)
        .filter(|id| !keep_nh.contains(id))
        .collect();
    dead.sort_unstable();
    dead.dedup();
    ops.extend(dead.into_iter().map(RouteOp::NexthopDelete));
    ops
}

#[cfg(test)]
mod tests {
    use super::*;

    const P: u8 = 77;

    fn want(i: u8, via: u8) -> WantRoute {
        WantRoute {
            dst: format!("10.244.{i}.0/24").parse().expect("net"),
            via: Ipv4Addr::new(10, 4, 7, via),
            ifindex: 2,
            onlink: false,
        }
    }

    /// Applies ops to an observed state the way the kernel would (for convergence checks).
    fn apply(mut o: Observed, ops: &[RouteOp]) -> Observed {
        for op in ops {
            match op {
                RouteOp::NexthopAdd(n) => {
                    o.nexthops.retain(|x| x.id != n.id);
                    o.nexthops.push(n.clone());
                }
                RouteOp::RouteReplace(r) => {
                    o.routes.retain(|x| x.dst != r.dst);
                    o.routes.push(r.clone());
                }
                RouteOp::RouteDelete(r) => o.routes.retain(|x| x.dst != r.dst),
                RouteOp::NexthopDelete(id) => {
                    assert!(
                        !o.routes.iter().any(|r| r.target == Target::Nexthop(*id)),
                        "nexthop {id} deleted while a route uses it"
                    );
                    o.nexthops.retain(|x| x.id != *id);
                }
            }
        }
        o
    }

    #[test]
    fn fresh_apply_then_no_op() {
        let w = vec![want(1, 21), want(2, 22)];
        let ops = diff(&w, &Observed::default(), P, RouteStyle::Nexthops);
        assert_eq!(ops.len(), 4);
        assert!(matches!(ops[0], RouteOp::NexthopAdd(ref n) if n.id == id_range(P).0));
        let o = apply(Observed::default(), &ops);
        assert_eq!(
            diff(&w, &o, P, RouteStyle::Nexthops),
            vec![],
            "second apply does nothing"
        );
    }

    #[test]
    fn a_changed_gateway_moves_one_route_and_frees_its_nexthop() {
        let before = vec![want(1, 21), want(2, 22), want(3, 23)];
        let o = apply(
            Observed::default(),
            &diff(&before, &Observed::default(), P, RouteStyle::Nexthops),
        );
        let after = vec![want(1, 21), want(2, 99), want(3, 23)];
        let ops = diff(&after, &o, P, RouteStyle::Nexthops);
        let kinds: Vec<_> = ops
            .iter()
            .map(|o| match o {
                RouteOp::NexthopAdd(_) => "nh+",
                RouteOp::RouteReplace(_) => "rt~",
                RouteOp::RouteDelete(_) => "rt-",
                RouteOp::NexthopDelete(_) => "nh-",
            })
            .collect();
        assert_eq!(
            kinds,
            vec!["nh+", "rt~", "nh-"],
            "work proportional to the change"
        );
        let o2 = apply(o, &ops);
        assert!(diff(&after, &o2, P, RouteStyle::Nexthops).is_empty());
        assert_eq!(o2.nexthops.len(), 3);
    }

    #[test]
    fn removed_nodes_lose_routes_before_nexthops_and_foreign_ids_are_avoided() {
        let foreign = Nexthop {
            id: id_range(P).0,
            gateway: Ipv4Addr::new(1, 1, 1, 1),
            ifindex: 2,
            onlink: false,
            protocol: 3,
        };
        let start = Observed {
            routes: vec![],
            nexthops: vec![foreign.clone()],
            other_ids: vec![id_range(P).0 + 1],
        };
        let w = vec![want(1, 21), want(2, 22)];
        let ops = diff(&w, &start, P, RouteStyle::Nexthops);
        assert!(ops.iter().all(
            |o| !matches!(o, RouteOp::NexthopAdd(n) if n.id == foreign.id || n.id == foreign.id + 1)
        ));
        let o = apply(start, &ops);
        let ops = diff(&w[..1], &o, P, RouteStyle::Nexthops);
        assert!(
            matches!(
                ops.as_slice(),
                [RouteOp::RouteDelete(_), RouteOp::NexthopDelete(_)]
            ),
            "{ops:?}"
        );
        let o = apply(o, &ops);
        assert!(o.nexthops.contains(&foreign), "foreign nexthop untouched");
        // Switching away from every route removes every owned object, nothing else.
        let o = apply(o.clone(), &diff(&[], &o, P, RouteStyle::Nexthops));
        assert_eq!(o.nexthops, vec![foreign]);
        assert!(o.routes.is_empty());
    }

    #[test]
    fn plain_gateway_fallback_and_migration_to_nexthops() {
        let w = vec![want(1, 21)];
        let o = apply(
            Observed::default(),
            &diff(&w, &Observed::default(), P, RouteStyle::PlainGateways),
        );
        assert!(matches!(o.routes[0].target, Target::Gateway { .. }));
        assert!(o.nexthops.is_empty());
        assert!(diff(&w, &o, P, RouteStyle::PlainGateways).is_empty());
        let o = apply(o.clone(), &diff(&w, &o, P, RouteStyle::Nexthops));
        assert!(matches!(o.routes[0].target, Target::Nexthop(_)));
        assert!(diff(&w, &o, P, RouteStyle::Nexthops).is_empty());
    }

    #[test]
    fn nodes_sharing_a_gateway_share_one_nexthop() {
        let w = vec![want(1, 21), want(2, 21)];
        let ops = diff(&w, &Observed::default(), P, RouteStyle::Nexthops);
        assert_eq!(
            ops.iter()
                .filter(|o| matches!(o, RouteOp::NexthopAdd(_)))
                .count(),
            1
        );
    }
}
