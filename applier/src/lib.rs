//! podnet's applier and command-line front end: kernel state, diff, execute, daemon, and
//! the `podnet` commands. Only this crate touches the system.

pub mod cli;
pub mod commands;
pub mod diff_routes;
pub mod firewall;
pub mod kernel;
pub mod report;
