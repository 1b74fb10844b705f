//! `podnet watch`: sets up logging (text or JSON on standard error) and runs the daemon
//! until SIGTERM; exits 1 when it cannot start.

use crate::cli::{LogFormat, WatchArgs};
use crate::commands::apply::target;
use crate::watch::{self, Options};

pub fn run(args: &WatchArgs) -> anyhow::Result<i32> {
    let filter = tracing_subscriber::filter::LevelFilter::INFO;
    let builder = tracing_subscriber::fmt()
        .with_writer(std::io::stderr)
        .with_max_level(filter);
    match args.log_format {
        LogFormat::Text => builder.with_ansi(false).init(),
        LogFormat::Json => builder.json().flatten_event(true).init(),
    }
    watch::run(Options {
        file: args.file.clone(),
        node: args.node.clone(),
        root: args.root.clone(),
        target: target(args.netns.as_deref())?,
        listen: args.listen,
        resync: args.resync,
        poll: args.poll,
    })?;
    Ok(0)
}
