//! One module per `podnet` verb, each with a `run()` returning the process exit code.

pub mod apply;
pub mod check;
pub mod fmt;
pub mod import;
pub mod lab;
pub mod lock;
pub mod plan;
pub mod status;
pub mod teardown;
pub mod watch;
