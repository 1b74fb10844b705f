//! Files: planned files whose mode or content differ are written; a journaled file that
//! left the plan goes back to what it was before podnet (or is removed if it did not exist).

use std::collections::BTreeSet;

use podnet_compiler::plan::NodePlan;

use super::{Observed, Op};

/// The file writes, restores and removals, in path order of the plan then the journal.
pub fn diff(plan: &NodePlan, obs: &Observed) -> Vec<Op> {
    let mut ops = Vec::new();
    let planned: BTreeSet<&str> = plan.files.iter().map(|f| f.path.as_str()).collect();
    for f in &plan.files {
        let same = obs.files.get(&f.path).is_some_and(|s| {
            s.as_ref()
                .is_some_and(|s| s.mode == f.mode && s.content == f.content.as_bytes())
        });
        if !same {
            ops.push(Op::FileWrite(f.clone()));
        }
    }
    for (path, state) in &obs.files {
        if planned.contains(path.as_str()) {
            continue;
        }
        match obs.file_priors.get(path) {
            Some(Some(prior)) if state.as_ref() != Some(prior) => ops.push(Op::FileRestore {
                path: path.clone(),
                state: prior.clone(),
            }),
            Some(Some(_)) => {}
            _ if state.is_some() => ops.push(Op::FileRemove(path.clone())),
            _ => {}
        }
    }
    ops
}
