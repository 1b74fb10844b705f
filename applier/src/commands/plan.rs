//! `podnet plan`: render a node's plan as text, JSON or a shell script (stub).

use crate::cli::PlanArgs;

pub fn run(_args: &PlanArgs) -> anyhow::Result<i32> {
    anyhow::bail!("not implemented yet")
}
