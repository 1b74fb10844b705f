//! One module per `podnet` verb, each with a `run()` returning the process exit code.

pub mod check;
pub mod fmt;
pub mod lock;
pub mod plan;
