//! The executor: performs a diff's operations in order. Kernel operations go through the
//! batching netlink socket as one ordered stream (the kernel handles a batch's messages in
//! order, so nexthops exist before the routes that use them); an EEXIST on a create and an
//! ENOENT-like errno on a delete mean "already done". Sysctls are written first and files
//! last, atomically.

use std::path::Path;

use crate::diff::routes::RouteOp;
use crate::diff::{Diff, Op};
use crate::journal::write_atomic;
use crate::kernel::link::{self, LinkChange, LinkRef, MARKER, Vxlan};
use crate::kernel::nexthop::Nexthop;
use crate::kernel::nl::{NlSocket, Request};
use crate::observe::write_sysctl;
use podnet_compiler::plan::LinkKind;

/// One operation that failed (or was not done), rendered, with the error.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Failure {
    /// The operation's `+ ~ -` line.
    pub op: String,
    pub error: FailureError,
    /// Whether trying again (with a fresh observation and diff) may succeed.
    pub retryable: bool,
}

impl Failure {
    /// Whether the failure means a foreign object appeared since the observation (an
    /// exclusive create found its identity taken): the next diff reports it as a conflict.
    pub fn is_conflict(&self) -> bool {
        matches!(self.error, FailureError::Exists)
    }
}

/// Why an operation failed.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum FailureError {
    /// The kernel refused the request with this errno.
    Errno { errno: i32 },
    /// An exclusive create (link, route, nexthop) found an object of that identity: it
    /// appeared after the observation and is not podnet's (or a nexthop id got taken).
    Exists,
    /// Not attempted: a nexthop delete skipped because `routes` routes whose change failed
    /// still use it (deleting it would take them down).
    StillUsed { routes: usize },
    /// A sysctl or file write failed.
    Io(String),
    /// Removing the firewall state failed.
    Firewall(String),
}

impl std::fmt::Display for FailureError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            FailureError::Errno { errno } => {
                write!(f, "{}", std::io::Error::from_raw_os_error(*errno))
            }
            FailureError::Exists => {
                write!(f, "{}", std::io::Error::from_raw_os_error(libc::EEXIST))
            }
            FailureError::StillUsed { routes } => write!(
                f,
                "not done: {routes} route(s) whose change failed still use it"
            ),
            FailureError::Io(e) | FailureError::Firewall(e) => f.write_str(e),
        }
    }
}

/// What an execution did.
#[derive(Clone, Debug, Default)]
pub struct Report {
    /// Operations performed (or found already done).
    pub done: usize,
    pub failures: Vec<Failure>,
    /// Names of links whose exclusive create found the name taken (EEXIST): the link there
    /// is not podnet's, so the journal must not name it.
    pub existing_links: Vec<String>,
}

/// Whether an errno on `op` means a fresh observation and diff may succeed: transient
/// kernel pressure, or a nexthop id taken since the observation (the next round picks
/// another).
pub fn retryable(op: &Op, e: i32) -> bool {
    matches!(
        e,
        libc::ENOBUFS | libc::EBUSY | libc::EAGAIN | libc::EINTR | libc::ENOMEM
    ) || (e == libc::EEXIST && matches!(op, Op::Route(RouteOp::NexthopAdd(_))))
}

/// Whether `op` is an exclusive create (EEXIST: the object appeared since the observation).
fn exclusive(op: &Op) -> bool {
    matches!(
        op,
        Op::LinkCreate { .. } | Op::Route(RouteOp::NexthopAdd(_))
    )
}

/// The typed error of errno `e` on `op`.
fn error_of(op: &Op, e: i32) -> FailureError {
    if e == libc::EEXIST && exclusive(op) {
        FailureError::Exists
    } else {
        FailureError::Errno { errno: e }
    }
}

/// Errnos that mean the operation's effect is already there.
fn benign(op: &Op, e: i32) -> bool {
    match op {
        Op::LinkDelete { .. }
        | Op::AddrDelete(_)
        | Op::NeighDelete(_)
        | Op::FdbDelete(_)
        | Op::Route(RouteOp::RouteDelete(_) | RouteOp::NexthopDelete(_)) => matches!(
            e,
            libc::ENOENT | libc::ESRCH | libc::ENODEV | libc::EADDRNOTAVAIL
        ),
        _ => false,
    }
}

/// The request that marks a link podnet just created (and sets it up): the kernel ignores
/// IFLA_IFALIAS on creation. Sent only after the create succeeded, so a link of that name
/// made by someone else in the meantime is never marked.
fn mark(l: &podnet_compiler::plan::Link) -> Request {
    link::change(
        &LinkRef::Name(l.name.clone()),
        &LinkChange {
            alias: Some(MARKER.to_string()),
            up: Some(l.up),
            ..LinkChange::default()
        },
    )
}

/// The netlink requests of one kernel operation (none for sysctls and files).
pub fn requests(op: &Op) -> Vec<Request> {
    match op {
        Op::LinkCreate { link: l, underlay } => vec![match (l.kind, &l.vxlan) {
            (LinkKind::Vxlan, Some(v)) => link::create_vxlan(
                &l.name,
                l.mtu,
                l.mac.map_or([0; 6], |m| m.0),
                &Vxlan {
                    vni: v.vni,
                    port: v.port,
                    local: Some(v.local),
                    link: *underlay,
                    learning: v.learning,
                },
            ),
            _ => link::create_bridge(&l.name, l.mtu),
        }],
        Op::LinkChange { index, change, .. } => vec![link::change(&LinkRef::Index(*index), change)],
        Op::LinkDelete { index, .. } => vec![link::delete(*index)],
        Op::AddrReplace(a) => vec![a.replace()],
        Op::AddrDelete(a) => vec![a.delete()],
        Op::NeighReplace(n) => vec![n.replace()],
        Op::NeighDelete(n) => vec![n.delete()],
        Op::FdbReplace(f) => vec![f.replace()],
        Op::FdbDelete(f) => vec![f.delete()],
        Op::Route(RouteOp::NexthopAdd(n)) => vec![n.add()],
        Op::Route(RouteOp::NexthopDelete(id)) => vec![Nexthop::delete(*id)],
        Op::Route(RouteOp::RouteReplace(r)) => vec![r.replace()],
        Op::Route(RouteOp::RouteDelete(r)) => vec![r.delete()],
        Op::Sysctl { .. } | Op::FileWrite(_) | Op::FileRestore { .. } | Op::FileRemove(_) => {
            Vec::new()
        }
    }
}

/// Performs `ops` (a prefix or all of `diff.ops`) in order.
pub fn execute(sock: &mut NlSocket, diff: &Diff, ops: &[Op]) -> std::io::Result<Report> {
    let mut report = Report::default();
    let fail = |r: &mut Report, op: &Op, error: FailureError, retry: bool| {
        r.failures.push(Failure {
            op: diff.line(op),
            error,
            retryable: retry,
        });
    };
    for op in ops {
        if let Op::Sysctl { key, value, .. } = op {
            match write_sysctl(key, value) {
                Ok(()) => report.done += 1,
                Err(e) => fail(&mut report, op, FailureError::Io(e.to_string()), false),
            }
        }
    }
    let mut reqs = Vec::new();
    let mut owner = Vec::new();
    for (i, op) in ops.iter().enumerate() {
        for r in requests(op) {
            reqs.push(r);
            owner.push(i);
        }
    }
    let outcomes = sock.execute(&reqs)?;
    let mut failed_op = vec![false; ops.len()];
    let mut kernel_ops = vec![false; ops.len()];
    for (k, outcome) in outcomes.into_iter().enumerate() {
        let i = owner[k];
        kernel_ops[i] = true;
        if let Err(e) = outcome
            && !benign(&ops[i], e)
            && !failed_op[i]
        {
            failed_op[i] = true;
            if let (Op::LinkCreate { link, .. }, libc::EEXIST) = (&ops[i], e) {
                report.existing_links.push(link.name.clone());
            }
            fail(
                &mut report,
                &ops[i],
                error_of(&ops[i], e),
                retryable(&ops[i], e),
            );
        }
    }
    let created: Vec<usize> = (0..ops.len())
        .filter(|&i| matches!(ops[i], Op::LinkCreate { .. }) && !failed_op[i])
        .collect();
    let marks: Vec<Request> = created
        .iter()
        .filter_map(|&i| match &ops[i] {
            Op::LinkCreate { link, .. } => Some(mark(link)),
            _ => None,
        })
        .collect();
    for (&i, outcome) in created.iter().zip(sock.execute(&marks)?) {
        if let Err(e) = outcome {
            failed_op[i] = true;
            fail(
                &mut report,
                &ops[i],
                FailureError::Errno { errno: e },
                false,
            );
        }
    }
    report.done += kernel_ops
        .iter()
        .zip(&failed_op)
        .filter(|(k, f)| **k && !**f)
        .count();
    for op in ops {
        let result = match op {
            Op::FileWrite(f) => write_atomic(Path::new(&f.path), f.content.as_bytes(), f.mode),
            Op::FileRestore { path, state } => {
                write_atomic(Path::new(path), &state.content, state.mode)
            }
            Op::FileRemove(p) => match std::fs::remove_file(p) {
                Err(e) if e.kind() != std::io::ErrorKind::NotFound => Err(e),
                _ => Ok(()),
            },
            _ => continue,
        };
        match result {
            Ok(()) => report.done += 1,
            Err(e) => fail(&mut report, op, FailureError::Io(e.to_string()), false),
        }
    }
    Ok(report)
}
