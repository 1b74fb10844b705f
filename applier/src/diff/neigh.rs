//! Neighbours and FDB entries on owned vxlan links. Permanent neighbours there are
//! podnet's (the kernel's own cache entries are left alone unless a planned entry replaces
//! them); every FDB entry with a destination there is podnet's.

use std::collections::BTreeSet;
use std::net::Ipv4Addr;

use ahash::{AHashMap as HashMap, AHashSet as HashSet};
use podnet_compiler::plan::NodePlan;

use super::{Changes, Conflict, Devices, Observed, Op};
use crate::kernel::neigh::{Fdb, Neigh};

/// Neighbour then FDB creates; FDB then neighbour deletes (each sorted by device and key).
/// `doomed` are links whose entries go with the device.
pub fn diff(
    plan: &NodePlan,
    obs: &Observed,
    doomed: &BTreeSet<u32>,
    devices: &Devices<'_>,
    conflicts: &mut Vec<Conflict>,
) -> Changes {
    let live = |i: &u32| obs.owned.contains(i) && !doomed.contains(i);
    let neigh = neighbours(plan, obs, &live, devices, conflicts);
    let fdb = fdb(plan, obs, &live, devices, conflicts);
    let mut c = neigh.creates;
    c.extend(fdb.creates);
    let mut deletes = fdb.deletes;
    deletes.extend(neigh.deletes);
    Changes {
        creates: c,
        deletes,
    }
}

fn neighbours(
    plan: &NodePlan,
    obs: &Observed,
    live: &dyn Fn(&u32) -> bool,
    devices: &Devices<'_>,
    conflicts: &mut Vec<Conflict>,
) -> Changes {
    let mut want: Vec<(u32, Ipv4Addr, [u8; 6])> = Vec::with_capacity(plan.neighbours.len());
    for n in &plan.neighbours {
        if let Some(index) = devices.resolve(conflicts, &n.dev, &|| format!("neighbour {}", n.ip)) {
            want.push((index, n.ip, n.mac.0));
        }
    }
    let wanted: HashSet<(u32, Ipv4Addr)> = want.iter().map(|&(i, ip, _)| (i, ip)).collect();
    let have: HashMap<(u32, Ipv4Addr), &Neigh> = obs
        .neighs
        .iter()
        .filter(|n| live(&n.index))
        .map(|n| ((n.index, n.ip), n))
        .collect();
    let mut c = Changes::default();
    for &(index, ip, mac) in &want {
        let ok = have
            .get(&(index, ip))
            .is_some_and(|n| n.permanent && n.mac == Some(mac));
        if !ok {
            c.creates.push(Op::NeighReplace(Neigh {
                index,
                ip,
                mac: Some(mac),
                permanent: true,
            }));
        }
    }
    let mut deletes: Vec<&Neigh> = obs
        .neighs
        .iter()
        .filter(|n| live(&n.index) && n.permanent && !wanted.contains(&(n.index, n.ip)))
        .collect();
    deletes.sort_by_key(|n| (n.index, n.ip));
    c.deletes = deletes
        .into_iter()
        .map(|n| Op::NeighDelete(n.clone()))
        .collect();
    c
}

fn fdb(
    plan: &NodePlan,
    obs: &Observed,
    live: &dyn Fn(&u32) -> bool,
    devices: &Devices<'_>,
    conflicts: &mut Vec<Conflict>,
) -> Changes {
    let mut want: Vec<(u32, [u8; 6], Ipv4Addr)> = Vec::with_capacity(plan.fdb.len());
    for f in &plan.fdb {
        if let Some(index) = devices.resolve(conflicts, &f.dev, &|| format!("fdb entry {}", f.mac))
        {
            want.push((index, f.mac.0, f.dst));
        }
    }
    let have: HashSet<(u32, [u8; 6], Ipv4Addr)> = obs
        .fdb
        .iter()
        .filter(|f| live(&f.index) && f.permanent)
        .filter_map(|f| f.dst.map(|dst| (f.index, f.mac, dst)))
        .collect();
    let mut c = Changes::default();
    for &(index, mac, dst) in &want {
        if !have.contains(&(index, mac, dst)) {
            c.creates.push(Op::FdbReplace(Fdb {
                index,
                mac,
                dst: Some(dst),
                permanent: true,
            }));
        }
    }
    let want: HashSet<(u32, [u8; 6], Ipv4Addr)> = want.into_iter().collect();
    let mut deletes: Vec<&Fdb> = obs
        .fdb
        .iter()
        .filter(|f| live(&f.index))
        .filter(|f| {
            f.dst
                .is_some_and(|dst| !want.contains(&(f.index, f.mac, dst)))
        })
        .collect();
    deletes.sort_by_key(|f| (f.index, f.mac, f.dst));
    c.deletes = deletes
        .into_iter()
        .map(|f| Op::FdbDelete(f.clone()))
        .collect();
    c
}
