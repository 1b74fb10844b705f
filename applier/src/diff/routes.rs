//! Routes and nexthops: desired routes × observed owned routes and nexthops → ordered
//! operations. Routes point at nexthop objects (one per distinct gateway, device and onlink
//! flag); an unchanged nexthop is never rewritten, a changed one gets a new id, and stale
//! ones are deleted only after no route uses them. [`node`] adds what the whole node
//! needs: foreign routes in the way, unjournaled routes of the plan's protocol, routes on
//! recreated links, and routes and nexthops of protocols podnet used before.

use std::collections::BTreeSet;
use std::net::Ipv4Addr;

use ahash::{AHashMap as HashMap, AHashSet as HashSet};
use ipnet::Ipv4Net;
use podnet_compiler::plan::NodePlan;

use super::conflict::ROUTES_LISTED;
use super::{Changes, Conflict, Devices, Op};
use crate::kernel::nexthop::Nexthop;
use crate::kernel::route::{Route, Target};

/// The node's route operations.
#[derive(Debug, Default)]
pub struct NodeRoutes {
    /// Deletes of routes and nexthops on links about to be recreated (before the link).
    pub pre: Vec<Op>,
    /// Nexthop creates and route writes; then route deletes (the plan's protocol, then
    /// older ones) and nexthop deletes (likewise).
    pub changes: Changes,
}

/// The route and nexthop operations of the whole node; `recreated` are links deleted to
/// be created again (what is on them goes first).
pub fn node(
    plan: &NodePlan,
    obs: &super::Observed,
    recreated: &BTreeSet<u32>,
    devices: &Devices<'_>,
    conflicts: &mut Vec<Conflict>,
) -> NodeRoutes {
    let p = plan.route_protocol;
    let want = wanted(plan, obs, devices, conflicts);
    if !obs.journaled {
        let routes = obs.routes.iter().filter(|r| r.protocol == p).count();
        let nexthops = obs.nexthops.iter().filter(|n| n.protocol == p).count();
        if routes + nexthops > 0 {
            conflicts.push(Conflict::UnjournaledRoutes {
                routes,
                nexthops,
                protocol: p,
            });
        }
    }
    let gone_nh: BTreeSet<u32> = obs
        .nexthops
        .iter()
        .filter(|n| recreated.contains(&n.ifindex) && obs.protocols.contains(&n.protocol))
        .map(|n| n.id)
        .collect();
    let on_recreated = |r: &Route| match r.target {
        Target::Nexthop(id) => gone_nh.contains(&id),
        Target::Gateway { ifindex, .. } => recreated.contains(&ifindex),
        Target::Other { ifindex, .. } => ifindex.is_some_and(|i| recreated.contains(&i)),
    };
    let alive = |r: &&Route| !on_recreated(r);
    let mut out = NodeRoutes {
        pre: obs
            .routes
            .iter()
            .filter(|r| on_recreated(r))
            .map(|r| Op::Route(RouteOp::RouteDelete(r.clone())))
            .collect(),
        ..NodeRoutes::default()
    };
    out.pre.extend(
        gone_nh
            .iter()
            .map(|id| Op::Route(RouteOp::NexthopDelete(*id))),
    );
    let current = Observed {
        routes: obs
            .routes
            .iter()
            .filter(|r| r.protocol == p)
            .filter(alive)
            .cloned()
            .collect(),
        nexthops: obs
            .nexthops
            .iter()
            .filter(|n| !gone_nh.contains(&n.id))
            .cloned()
            .collect(),
        other_ids: obs.other_nexthop_ids.clone(),
        older: obs
            .routes
            .iter()
            .filter(|r| r.protocol != p && obs.protocols.contains(&r.protocol))
            .chain(&obs.adopted_routes)
            .filter(alive)
            .cloned()
            .collect(),
    };
    let (creates, deletes): (Vec<RouteOp>, Vec<RouteOp>) = diff(&want, &current, p, obs.style)
        .into_iter()
        .partition(|o| {
            matches!(
                o,
                RouteOp::NexthopAdd(_) | RouteOp::RouteAdd(_) | RouteOp::RouteReplace { .. }
            )
        });
    let c = &mut out.changes;
    c.creates.extend(creates.into_iter().map(Op::Route));
    // Routes of protocols podnet used before go too, before their nexthops.
    let old = |q: u8| q != p && obs.protocols.contains(&q);
    let mut old_routes: Vec<&Route> = obs
        .routes
        .iter()
        .filter(|r| old(r.protocol))
        .filter(alive)
        .collect();
    old_routes.sort_by_key(|r| r.dst);
    let (route_deletes, nh_deletes): (Vec<RouteOp>, Vec<RouteOp>) = deletes
        .into_iter()
        .partition(|o| matches!(o, RouteOp::RouteDelete(_)));
    c.deletes.extend(route_deletes.into_iter().map(Op::Route));
    c.deletes.extend(
        old_routes
            .into_iter()
            .map(|r| Op::Route(RouteOp::RouteDelete(r.clone()))),
    );
    c.deletes.extend(nh_deletes.into_iter().map(Op::Route));
    let mut old_nh: Vec<u32> = obs
        .nexthops
        .iter()
        .filter(|n| old(n.protocol) && !gone_nh.contains(&n.id))
        .map(|n| n.id)
        .collect();
    old_nh.sort_unstable();
    c.deletes.extend(
        old_nh
            .into_iter()
            .map(|id| Op::Route(RouteOp::NexthopDelete(id))),
    );
    out
}

/// The planned routes with their devices resolved; conflicts for foreign routes in the way
/// (the first [`ROUTES_LISTED`], the last of them counting the rest) and missing devices.
fn wanted(
    plan: &NodePlan,
    obs: &super::Observed,
    devices: &Devices<'_>,
    conflicts: &mut Vec<Conflict>,
) -> Vec<WantRoute> {
    let mut want = Vec::with_capacity(plan.routes.len());
    let mut in_the_way = 0;
    let mut last_listed = None;
    for r in &plan.routes {
        if obs.foreign_routes.contains(&r.dst) {
            if in_the_way < ROUTES_LISTED {
                last_listed = Some(conflicts.len());
                conflicts.push(Conflict::ForeignRoute {
                    dst: r.dst,
                    more: 0,
                });
            }
            in_the_way += 1;
        }
        if let Some(ifindex) = devices.resolve(conflicts, &r.dev, &|| format!("route {}", r.dst)) {
            want.push(WantRoute {
                dst: r.dst,
                via: r.via,
                ifindex,
                onlink: r.onlink,
            });
        }
    }
    if let Some(Conflict::ForeignRoute { more, .. }) =
        last_listed.and_then(|i| conflicts.get_mut(i))
    {
        *more = in_the_way.saturating_sub(ROUTES_LISTED);
    }
    want
}

/// A route the plan wants, with its device already resolved to an ifindex.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct WantRoute {
    pub dst: Ipv4Net,
    pub via: Ipv4Addr,
    pub ifindex: u32,
    pub onlink: bool,
}

/// What the kernel has, as far as the per-route diff needs it.
#[derive(Clone, Debug, Default)]
pub struct Observed {
    /// Main-table routes of podnet's protocol.
    pub routes: Vec<Route>,
    /// Every IPv4 nexthop object (owned ones carry podnet's protocol).
    pub nexthops: Vec<Nexthop>,
    /// Ids of every other nexthop object (IPv6, groups, blackholes…): taken, too.
    pub other_ids: Vec<u32>,
    /// Routes of podnet's earlier protocols (deleted later): a planned route to one of
    /// their destinations replaces it instead of creating.
    pub older: Vec<Route>,
}

/// One kernel change, in execution order.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum RouteOp {
    /// Create a nexthop under a free id (create-exclusive: never overwrites).
    NexthopAdd(Nexthop),
    /// Create a route not observed (create-exclusive: EEXIST if a route to its destination
    /// appeared since the observation, which is then never overwritten).
    RouteAdd(Route),
    /// Change a route observed as podnet's in place (one message: never missing in
    /// between); `was` is its target now, still in use if the replace fails.
    RouteReplace {
        route: Route,
        was: Target,
    },
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

/// Computes the operations that make the owned routes and nexthops of `protocol` exactly
/// `want`.
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
    let older: HashMap<Ipv4Net, &Route> = observed.older.iter().map(|r| (r.dst, r)).collect();
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
        match have.get(&w.dst).or_else(|| older.get(&w.dst)) {
            Some(r) if **r == route => {}
            // One replace changes a route in place: it is never missing in between.
            Some(r) => ops.push(RouteOp::RouteReplace {
                route,
                was: r.target.clone(),
            }),
            None => ops.push(RouteOp::RouteAdd(route)),
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
                RouteOp::RouteAdd(r) => {
                    assert!(!o.routes.iter().any(|x| x.dst == r.dst), "EEXIST");
                    o.routes.push(r.clone());
                }
                RouteOp::RouteReplace { route: r, was } => {
                    assert!(
                        o.routes.iter().any(|x| x.dst == r.dst && x.target == *was),
                        "replace of a route not there"
                    );
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
                RouteOp::RouteAdd(_) => "rt+",
                RouteOp::RouteReplace { .. } => "rt~",
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
            older: vec![],
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
