//! Sysctls: each planned key whose value differs is written; a key the kernel lacks is a
//! conflict.

use podnet_compiler::plan::NodePlan;

use super::{Conflict, Observed, Op};

/// The sysctl writes that make the observed values the planned ones.
pub fn diff(plan: &NodePlan, obs: &Observed, conflicts: &mut Vec<Conflict>) -> Vec<Op> {
    let mut ops = Vec::new();
    for s in &plan.sysctls {
        match obs.sysctls.get(&s.key) {
            Some(Some(v)) if v.trim() == s.value.trim() => {}
            Some(Some(v)) => ops.push(Op::Sysctl {
                key: s.key.clone(),
                value: s.value.clone(),
                was: Some(v.trim().to_string()),
            }),
            _ => conflicts.push(Conflict::MissingSysctl { key: s.key.clone() }),
        }
    }
    ops
}
