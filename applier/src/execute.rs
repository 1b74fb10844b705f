//! The executor: performs a diff's operations in order. Kernel operations go through the
//! batching netlink socket in phases (the kernel handles a batch's messages in order, so
//! nexthops exist before the routes that use them): everything up to a run of nexthop
//! deletes, then those deletes except of nexthops that a route whose change failed still
//! uses. What the diff believes is new is created exclusively (EEXIST: a foreign object
//! appeared, a conflict-typed failure); an ENOENT-like errno on a delete means "already
//! done". Sysctls are written first and files last, atomically.

use std::collections::BTreeMap;
use std::path::Path;

use crate::diff::routes::RouteOp;
use crate::diff::{Diff, Op};
use crate::journal::write_atomic;
use crate::kernel::link::{self, LinkChange, LinkRef, MARKER, Vxlan};
use crate::kernel::nexthop::Nexthop;
use crate::kernel::nl::{NlSocket, Request};
use crate::kernel::route::Target;
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
        Op::LinkCreate { .. } | Op::Route(RouteOp::NexthopAdd(_) | RouteOp::RouteAdd(_))
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
        Op::Route(RouteOp::RouteAdd(r)) => vec![r.add()],
        Op::Route(RouteOp::RouteReplace { route, .. }) => vec![route.replace()],
        Op::Route(RouteOp::RouteDelete(r)) => vec![r.delete()],
        Op::Sysctl { .. } | Op::FileWrite(_) | Op::FileRestore { .. } | Op::FileRemove(_) => {
            Vec::new()
        }
    }
}

/// The nexthops that kernel operations which failed still leave in use, with how many
/// routes use each: the old target of a route whose replace failed, and the target of a
/// route whose delete failed. `failed[i]` tells whether `ops[i]` failed.
pub fn still_used(ops: &[Op], failed: &[bool]) -> BTreeMap<u32, usize> {
    let mut used = BTreeMap::new();
    for (op, _) in ops.iter().zip(failed).filter(|(_, f)| **f) {
        let target = match op {
            Op::Route(RouteOp::RouteReplace { was, .. }) => was,
            Op::Route(RouteOp::RouteDelete(r)) => &r.target,
            _ => continue,
        };
        if let Target::Nexthop(id) = target {
            *used.entry(*id).or_insert(0) += 1;
        }
    }
    used
}

/// Consecutive runs of `ops`: nexthop deletes apart from everything else, so each run of
/// deletes is sent only after the outcome of every write before it is known.
fn phases(ops: &[Op]) -> Vec<std::ops::Range<usize>> {
    let is_nh_delete = |o: &Op| matches!(o, Op::Route(RouteOp::NexthopDelete(_)));
    let mut out: Vec<std::ops::Range<usize>> = Vec::new();
    for (i, op) in ops.iter().enumerate() {
        match out.last_mut() {
            Some(r) if is_nh_delete(&ops[r.start]) == is_nh_delete(op) => r.end = i + 1,
            _ => out.push(i..i + 1),
        }
    }
    out
}

/// Performs `ops` (a prefix or all of `diff.ops`) in order: sysctls, then the kernel
/// operations in phases (see [`phases`]; a nexthop that a route whose change failed still
/// uses is not deleted, and reported as not done), link marks, files.
pub fn execute(sock: &mut NlSocket, diff: &Diff, ops: &[Op]) -> std::io::Result<Report> {
    let mut report = Report::default();
    let fail = |r: &mut Report, op: &Op, error: FailureError, retry: bool| {
        r.failures.push(Failure {
            op: diff.line_as(op, crate::diff::Detail::Verbose),
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
    let mut failed_op = vec![false; ops.len()];
    let mut kernel_ops = vec![false; ops.len()];
    for phase in phases(ops) {
        let used = still_used(ops, &failed_op);
        let mut reqs = Vec::new();
        let mut owner = Vec::new();
        for i in phase {
            if let Op::Route(RouteOp::NexthopDelete(id)) = &ops[i]
                && let Some(&routes) = used.get(id)
            {
                failed_op[i] = true;
                fail(
                    &mut report,
                    &ops[i],
                    FailureError::StillUsed { routes },
                    false,
                );
                continue;
            }
            for r in requests(&ops[i]) {
                reqs.push(r);
                owner.push(i);
            }
        }
        for (k, outcome) in sock.execute(&reqs)?.into_iter().enumerate() {
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::diff::routes::RouteOp;
    use crate::kernel::nl::{NLM_F_CREATE, NLM_F_EXCL, NLM_F_REPLACE};
    use crate::kernel::route::Route;

    fn route(dst: &str, nh: u32) -> Route {
        Route {
            dst: dst.parse().expect("net"),
            target: Target::Nexthop(nh),
            protocol: 77,
        }
    }

    fn nh(id: u32) -> Nexthop {
        Nexthop {
            id,
            gateway: std::net::Ipv4Addr::new(10, 99, 0, 1),
            ifindex: 2,
            onlink: false,
            protocol: 77,
        }
    }

    #[test]
    fn a_new_route_is_created_exclusively_and_an_observed_one_replaced() {
        let add = requests(&Op::Route(RouteOp::RouteAdd(route("10.244.2.0/24", 9))));
        assert_eq!(add[0].flags, NLM_F_CREATE | NLM_F_EXCL);
        let replace = requests(&Op::Route(RouteOp::RouteReplace {
            route: route("10.244.2.0/24", 9),
            was: Target::Nexthop(8),
        }));
        assert_eq!(replace[0].flags, NLM_F_CREATE | NLM_F_REPLACE);
    }

    #[test]
    fn eexist_on_an_exclusive_create_is_a_conflict() {
        let add = Op::Route(RouteOp::RouteAdd(route("10.244.2.0/24", 9)));
        assert_eq!(error_of(&add, libc::EEXIST), FailureError::Exists);
        assert!(
            !retryable(&add, libc::EEXIST),
            "a foreign route: not retried"
        );
        let nh_add = Op::Route(RouteOp::NexthopAdd(nh(9)));
        assert_eq!(error_of(&nh_add, libc::EEXIST), FailureError::Exists);
        assert!(
            retryable(&nh_add, libc::EEXIST),
            "an id taken: another next round"
        );
        let replace = Op::Route(RouteOp::RouteReplace {
            route: route("10.244.2.0/24", 9),
            was: Target::Nexthop(8),
        });
        assert_eq!(
            error_of(&replace, libc::EEXIST),
            FailureError::Errno {
                errno: libc::EEXIST
            }
        );
        let failure = Failure {
            op: String::new(),
            error: FailureError::Exists,
            retryable: false,
        };
        assert!(failure.is_conflict());
        assert_eq!(
            FailureError::Exists.to_string(),
            "File exists (os error 17)"
        );
        for e in [libc::ENOENT, libc::ESRCH] {
            assert!(benign(&Op::Route(RouteOp::NexthopDelete(8)), e));
            assert!(benign(
                &Op::Route(RouteOp::RouteDelete(route("10.244.2.0/24", 8))),
                e
            ));
            assert!(!benign(&add, e));
        }
    }

    #[test]
    fn nexthops_of_routes_whose_change_failed_stay() {
        let ops = vec![
            Op::Route(RouteOp::NexthopAdd(nh(9))),
            Op::Route(RouteOp::RouteReplace {
                route: route("10.244.2.0/24", 9),
                was: Target::Nexthop(5),
            }),
            Op::Route(RouteOp::RouteReplace {
                route: route("10.244.3.0/24", 9),
                was: Target::Nexthop(5),
            }),
            Op::Route(RouteOp::RouteReplace {
                route: route("10.244.4.0/24", 9),
                was: Target::Nexthop(7),
            }),
            Op::Route(RouteOp::RouteDelete(route("10.244.5.0/24", 6))),
            Op::Route(RouteOp::NexthopDelete(5)),
            Op::Route(RouteOp::NexthopDelete(6)),
            Op::Route(RouteOp::NexthopDelete(7)),
            Op::LinkDelete {
                index: 3,
                name: "old".into(),
                reason: "stale".into(),
            },
        ];
        assert_eq!(phases(&ops), vec![0..5, 5..8, 8..9]);
        let failed = [true, true, true, false, true, false, false, false, false];
        assert_eq!(still_used(&ops, &failed), BTreeMap::from([(5, 2), (6, 1)]));
        assert!(still_used(&ops, &[false; 9]).is_empty());
    }
}
