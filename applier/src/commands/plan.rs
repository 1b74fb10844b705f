//! `podnet plan` (stub).

use crate::cli::PlanArgs;

pub fn run(_args: &PlanArgs) -> anyhow::Result<i32> {
    anyhow::bail!("not implemented yet")
}
