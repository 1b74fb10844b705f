//! The prober: one UDP socket per pod, node and the outside host, each opened inside its
//! namespace (on a thread that entered it; the fd then works from anywhere), all driven by
//! one thread. Every datagram is sent at once from non-blocking sockets, receivers are
//! drained with `poll` while sending and until a deadline, and only the missing ones are
//! sent again, a bounded number of times: a broken pair costs at most the sum of the
//! waits, never a timeout per pair.

use std::fs::File;
use std::io;
use std::net::{Ipv4Addr, SocketAddr, SocketAddrV4, UdpSocket};
use std::os::fd::AsFd;
use std::time::{Duration, Instant};

use nix::poll::{PollFd, PollFlags, PollTimeout, poll};
use nix::sched::{CloneFlags, setns};
use nix::sys::socket::{setsockopt, sockopt};

use super::LabError;

/// The first port lab sockets use. Pods, nodes and the outside host use different ports
/// (pod flows masqueraded to a node's address must not look like the node's own flows to
/// connection tracking), and each probe run moves to fresh ones: a conntrack entry of an
/// earlier run keeps its NAT decision and would mask a changed masquerade mode.
pub const BASE_PORT: u16 = 40_000;
/// Ports per run (pods, nodes, outside, one spare).
pub const PORTS_PER_RUN: u16 = 4;

/// The port of an endpoint kind (0 pods, 1 nodes, 2 outside) in probe run `run`.
pub fn port(run: u32, kind: u16) -> u16 {
    let slot = u16::try_from(run % 5_000).unwrap_or(0);
    BASE_PORT + slot * PORTS_PER_RUN + kind
}
/// Marks a lab datagram.
const MAGIC: [u8; 4] = *b"PLAB";
/// IPv4 + UDP headers: a datagram of `mtu - HEADERS` payload bytes is exactly `mtu` long.
pub const HEADERS: usize = 28;
/// Receive buffer per socket (every endpoint gets a datagram from every source).
const RCVBUF: usize = 8 << 20;
/// Sends between two drains of the receivers.
const DRAIN_EVERY: usize = 128;

#[allow(unused_imports)]
use nix::{getsockopt_impl, setsockopt_impl, sockopt_impl};

sockopt_impl!(
    /// `IP_MTU_DISCOVER`: `IP_PMTUDISC_DO` sets DF and never fragments locally.
    IpMtuDiscover,
    SetOnly,
    libc::IPPROTO_IP,
    libc::IP_MTU_DISCOVER,
    libc::c_int
);

/// Where a socket is opened: its namespace and address.
#[derive(Clone, Debug)]
pub struct SocketSpec {
    pub ns: String,
    pub bind: SocketAddrV4,
}

/// Opens every socket inside its namespace: non-blocking, DF on every datagram, a large
/// receive buffer.
pub fn open(specs: &[SocketSpec]) -> Result<Vec<UdpSocket>, LabError> {
    std::thread::scope(|s| {
        s.spawn(|| -> Result<Vec<UdpSocket>, LabError> {
            let mut out = Vec::with_capacity(specs.len());
            for spec in specs {
                let what = format!("opening a socket on {} in {}", spec.bind, spec.ns);
                let path = format!("{}/{}", super::netns::NETNS_DIR, spec.ns);
                let ns = File::open(&path).map_err(|e| LabError::io(what.clone(), e))?;
                setns(&ns, CloneFlags::CLONE_NEWNET)
                    .map_err(|e| LabError::io(what.clone(), e.into()))?;
                let sock = UdpSocket::bind(spec.bind).map_err(|e| LabError::io(what.clone(), e))?;
                sock.set_nonblocking(true)
                    .map_err(|e| LabError::io(what.clone(), e))?;
                setsockopt(&sock, IpMtuDiscover, &libc::IP_PMTUDISC_DO)
                    .map_err(|e| LabError::io(what.clone(), e.into()))?;
                // Root may exceed rmem_max; fall back to the ordinary limit.
                if setsockopt(&sock, sockopt::RcvBufForce, &RCVBUF).is_err() {
                    let _ = setsockopt(&sock, sockopt::RcvBuf, &RCVBUF);
                }
                out.push(sock);
            }
            Ok(out)
        })
        .join()
        .unwrap_or_else(|_| {
            Err(LabError::io(
                "opening sockets",
                io::Error::other("panicked"),
            ))
        })
    })
}

/// One datagram to send: from socket `from` to `to`, received by socket `at`.
#[derive(Clone, Copy, Debug)]
pub struct Datagram {
    pub from: usize,
    pub to: SocketAddrV4,
    pub at: usize,
    /// Payload bytes (at least 12).
    pub size: usize,
}

/// What happened to one datagram.
#[derive(Clone, Debug, Default)]
pub struct Outcome {
    /// The source address the receiver saw, once one arrived.
    pub seen: Option<Ipv4Addr>,
    /// The last send error.
    pub error: Option<String>,
    /// How many times it was sent.
    pub sent: u8,
}

/// Retries and waits.
#[derive(Clone, Debug)]
pub struct ProbeConfig {
    /// Rounds of sending what is still missing.
    pub rounds: usize,
    /// How long each round waits for stragglers after its last send.
    pub waits: Vec<Duration>,
}

impl Default for ProbeConfig {
    fn default() -> Self {
        ProbeConfig {
            rounds: 3,
            waits: vec![
                Duration::from_millis(150),
                Duration::from_millis(250),
                Duration::from_millis(400),
            ],
        }
    }
}

/// Sends every datagram, retrying missing ones, and records what each receiver saw.
/// `nonce` tells this run's datagrams from any earlier run's still in flight.
pub fn run(
    socks: &[UdpSocket],
    dgrams: &[Datagram],
    nonce: u32,
    cfg: &ProbeConfig,
    progress: &(dyn Fn(usize, usize) + Sync),
) -> Vec<Outcome> {
    let mut out = vec![Outcome::default(); dgrams.len()];
    let mut got = 0usize;
    let max = dgrams.iter().map(|d| d.size).max().unwrap_or(12).max(12);
    let mut buf = vec![0u8; max];
    let mut rbuf = vec![0u8; 65_536];
    let mut pending: Vec<usize> = (0..dgrams.len()).collect();
    for round in 0..cfg.rounds {
        if super::check_interrupt().is_err() {
            break;
        }
        for (n, &i) in pending.iter().enumerate() {
            if out[i].seen.is_some() {
                continue;
            }
            let d = dgrams[i];
            buf[..4].copy_from_slice(&MAGIC);
            buf[4..8].copy_from_slice(&nonce.to_be_bytes());
            buf[8..12].copy_from_slice(&(i as u32).to_be_bytes());
            let Some(sock) = socks.get(d.from) else {
                continue;
            };
            let mut result = sock.send_to(&buf[..d.size], d.to);
            if matches!(&result, Err(e) if e.kind() == io::ErrorKind::WouldBlock) {
                got += drain(socks, dgrams, nonce, &mut out, &mut rbuf, Duration::ZERO);
                result = sock.send_to(&buf[..d.size], d.to);
            }
            out[i].sent = out[i].sent.saturating_add(1);
            if let Err(e) = result {
                out[i].error = Some(send_error(&e, d.size));
            }
            if n % DRAIN_EVERY == DRAIN_EVERY - 1 {
                got += drain(socks, dgrams, nonce, &mut out, &mut rbuf, Duration::ZERO);
                progress(got, dgrams.len());
            }
        }
        let wait = cfg
            .waits
            .get(round)
            .or(cfg.waits.last())
            .copied()
            .unwrap_or(Duration::from_millis(200));
        let deadline = Instant::now() + wait;
        while got < dgrams.len() {
            let now = Instant::now();
            if now >= deadline {
                break;
            }
            got += drain(socks, dgrams, nonce, &mut out, &mut rbuf, deadline - now);
        }
        progress(got, dgrams.len());
        pending.retain(|&i| out[i].seen.is_none());
        if pending.is_empty() {
            break;
        }
    }
    out
}

/// Receives whatever is ready on any socket (waiting at most `wait` for the first);
/// returns how many datagrams arrived for the first time.
fn drain(
    socks: &[UdpSocket],
    dgrams: &[Datagram],
    nonce: u32,
    out: &mut [Outcome],
    rbuf: &mut [u8],
    wait: Duration,
) -> usize {
    let mut fds: Vec<PollFd<'_>> = socks
        .iter()
        .map(|s| PollFd::new(s.as_fd(), PollFlags::POLLIN))
        .collect();
    let ms = u16::try_from(wait.as_millis()).unwrap_or(u16::MAX);
    let timeout = if wait.is_zero() {
        PollTimeout::ZERO
    } else {
        PollTimeout::from(ms.max(1))
    };
    let ready = match poll(&mut fds, timeout) {
        Ok(n) => n,
        Err(_) => return 0,
    };
    if ready <= 0 {
        return 0;
    }
    let ready: Vec<usize> = fds
        .iter()
        .enumerate()
        .filter(|(_, f)| f.revents().is_some_and(|r| r.contains(PollFlags::POLLIN)))
        .map(|(i, _)| i)
        .collect();
    drop(fds);
    let mut new = 0;
    for at in ready {
        let sock = &socks[at];
        while let Ok((n, from)) = sock.recv_from(rbuf) {
            if n < 12 || rbuf[..4] != MAGIC || rbuf[4..8] != nonce.to_be_bytes() {
                continue;
            }
            let id = u32::from_be_bytes([rbuf[8], rbuf[9], rbuf[10], rbuf[11]]) as usize;
            let (Some(d), SocketAddr::V4(from)) = (dgrams.get(id), from) else {
                continue;
            };
            if d.at != at || n != d.size {
                continue;
            }
            if let Some(o) = out.get_mut(id)
                && o.seen.is_none()
            {
                o.seen = Some(*from.ip());
                new += 1;
            }
        }
    }
    new
}

fn send_error(e: &io::Error, size: usize) -> String {
    match e.raw_os_error() {
        Some(libc::EMSGSIZE) => format!(
            "send: {}-byte datagram with DF is larger than the path MTU",
            size + HEADERS
        ),
        _ => format!("send: {e}"),
    }
}
