//! Namespace entry: where the engine's work happens. `Target::Current` is the namespace the
//! process runs in; `Target::Named` runs the work on a short-lived thread that entered
//! `/run/netns/NAME` first, so every netlink socket it opens, every `/proc/sys` file it
//! touches and every child process it starts (the firewall tools) belong to that namespace.
//! Threads it spawns inherit the namespace. Never used on an async runtime's worker.

use std::fmt;
use std::fs::File;
use std::io;

use nix::sched::{CloneFlags, setns};

/// The network namespace a node engine acts on.
#[derive(Clone, Debug, Default, PartialEq, Eq, Hash)]
pub enum Target {
    /// The namespace this process runs in.
    #[default]
    Current,
    /// A namespace made by `ip netns add NAME` (`/run/netns/NAME`).
    Named(String),
}

impl Target {
    /// A named target; the name must be a plain file name.
    pub fn named(name: &str) -> io::Result<Target> {
        if name.is_empty() || name == "." || name == ".." || name.contains(['/', '\0']) {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                format!("`{name}` is not a network namespace name"),
            ));
        }
        Ok(Target::Named(name.to_string()))
    }

    /// Runs `f` inside the target namespace and returns its result. Fails (never panics)
    /// when the namespace cannot be entered or `f` panicked.
    pub fn run<T: Send>(&self, f: impl FnOnce() -> T + Send) -> io::Result<T> {
        let name = match self {
            Target::Current => return Ok(f()),
            Target::Named(name) => name,
        };
        let path = format!("/run/netns/{name}");
        std::thread::scope(|scope| {
            let worker = scope.spawn(move || -> io::Result<T> {
                let ns = File::open(&path).map_err(|e| {
                    io::Error::new(e.kind(), format!("opening network namespace {path}: {e}"))
                })?;
                setns(&ns, CloneFlags::CLONE_NEWNET).map_err(|e| {
                    io::Error::other(format!("entering network namespace {path}: {e}"))
                })?;
                Ok(f())
            });
            worker
                .join()
                .map_err(|_| io::Error::other(format!("work inside namespace {name} panicked")))?
        })
    }
}

impl fmt::Display for Target {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Target::Current => f.write_str("this namespace"),
            Target::Named(n) => write!(f, "network namespace {n}"),
        }
    }
}
