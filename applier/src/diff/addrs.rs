//! Addresses: every IPv4 address on an owned link is podnet's; planned ones missing are
//! added, others on owned links that are not about to disappear with their link deleted.

use std::collections::BTreeSet;

use podnet_compiler::plan::NodePlan;

use super::{Changes, Conflict, Devices, Observed, Op};
use crate::kernel::addr::Addr;

/// The address operations; `doomed` are links whose addresses go with the device.
pub fn diff(
    plan: &NodePlan,
    obs: &Observed,
    doomed: &BTreeSet<u32>,
    devices: &Devices<'_>,
    conflicts: &mut Vec<Conflict>,
) -> Changes {
    let mut want = BTreeSet::new();
    for a in &plan.addresses {
        if let Some(index) =
            devices.resolve(conflicts, &a.dev, &|| format!("address {}", a.address))
        {
            want.insert(Addr {
                index,
                address: a.address,
            });
        }
    }
    let have: BTreeSet<&Addr> = obs
        .addrs
        .iter()
        .filter(|a| obs.owned.contains(&a.index) && !doomed.contains(&a.index))
        .collect();
    Changes {
        creates: want
            .iter()
            .filter(|a| !have.contains(a))
            .map(|a| Op::AddrReplace(a.clone()))
            .collect(),
        deletes: have
            .iter()
            .filter(|a| !want.contains(**a))
            .map(|a| Op::AddrDelete((*a).clone()))
            .collect(),
    }
}
