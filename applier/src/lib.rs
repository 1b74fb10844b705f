//! podnet's applier and command-line front end: kernel state, diff, execute, daemon, and
//! the `podnet` commands. Only this crate touches the system.

pub mod adopt;
pub mod changes;
pub mod cli;
pub mod commands;
pub mod diff;
pub mod engine;
pub mod execute;
pub mod firewall;
pub mod journal;
pub mod kernel;
pub mod lab;
pub mod observe;
pub mod plan_cache;
pub mod report;
pub mod watch;
