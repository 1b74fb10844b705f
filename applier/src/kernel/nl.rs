//! A blocking rtnetlink socket that sends many requests in one `sendmsg` and collects one
//! ACK per request, with a bounded number in flight so ACKs never overrun the receive
//! buffer (flannel's ENOBUFS at a few hundred nodes). Kernel errors stay typed (errno).

use std::io;

use rtnetlink::sys::{Socket, SocketAddr, protocols::NETLINK_ROUTE};

pub const NLM_F_REQUEST: u16 = 0x1;
pub const NLM_F_MULTI: u16 = 0x2;
pub const NLM_F_ACK: u16 = 0x4;
pub const NLM_F_DUMP: u16 = 0x300;
pub const NLM_F_REPLACE: u16 = 0x100;
pub const NLM_F_EXCL: u16 = 0x200;
pub const NLM_F_CREATE: u16 = 0x400;
pub const NLM_F_APPEND: u16 = 0x800;

const NLMSG_ERROR: u16 = 2;
const NLMSG_DONE: u16 = 3;
const HDR: usize = 16;

/// Requests per `sendmsg`: large enough to amortise the syscall, small enough that the
/// ACKs (cap-ack on: 36 bytes each) fit the receive buffer many times over.
pub const BATCH: usize = 192;

/// One request: message type, operation flags (besides REQUEST|ACK) and the payload after
/// the netlink header.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Request {
    pub kind: u16,
    pub flags: u16,
    pub payload: Vec<u8>,
}

impl Request {
    /// A request whose payload is `message` as `netlink-packet-route` encodes it.
    pub fn emitted(
        kind: u16,
        flags: u16,
        message: &impl rtnetlink::packet_core::Emitable,
    ) -> Request {
        let mut payload = vec![0u8; message.buffer_len()];
        message.emit(&mut payload);
        Request {
            kind,
            flags,
            payload,
        }
    }
}

/// A request's outcome: `Ok` or the kernel's errno (e.g. `EEXIST`, `ENOENT`).
pub type Outcome = Result<(), i32>;

pub struct NlSocket {
    sock: Socket,
    seq: u32,
    buf: Vec<u8>,
}

impl NlSocket {
    /// A socket in the calling thread's network namespace.
    pub fn new() -> io::Result<NlSocket> {
        let mut sock = Socket::new(NETLINK_ROUTE)?;
        sock.bind_auto()?;
        sock.connect(&SocketAddr::new(0, 0))?;
        sock.set_ext_ack(true)?;
        sock.set_cap_ack(true)?;
        sock.set_netlink_get_strict_chk(true)?;
        // The kernel caps this at rmem_max; a failure only means a smaller buffer.
        let _ = sock.set_rx_buf_sz(4 << 20);
        Ok(NlSocket {
            sock,
            seq: 1,
            buf: vec![0u8; 1 << 20],
        })
    }

    /// Sends every request, `BATCH` per `sendmsg`, and returns one outcome per request in
    /// order. A batch is not a transaction: each request succeeds or fails on its own.
    pub fn execute(&mut self, reqs: &[Request]) -> io::Result<Vec<Outcome>> {
        let mut out = Vec::with_capacity(reqs.len());
        let mut wire = Vec::with_capacity(BATCH * 64);
        for chunk in reqs.chunks(BATCH) {
            wire.clear();
            let first = self.seq;
            for r in chunk {
                push_header(
                    &mut wire,
                    r.kind,
                    NLM_F_REQUEST | NLM_F_ACK | r.flags,
                    self.seq,
                    &r.payload,
                );
                self.seq = self.seq.wrapping_add(1);
            }
            self.sock.send(&wire, 0)?;
            let mut results: Vec<Option<Outcome>> = vec![None; chunk.len()];
            let mut pending = chunk.len();
            while pending > 0 {
                let n = self.recv()?;
                for (kind, _flags, seq, payload) in messages(&self.buf[..n]) {
                    if kind != NLMSG_ERROR {
                        continue;
                    }
                    let idx = seq.wrapping_sub(first) as usize;
                    if idx >= results.len() || results[idx].is_some() {
                        continue;
                    }
                    let errno = payload
                        .get(..4)
                        .map_or(0, |b| i32::from_ne_bytes([b[0], b[1], b[2], b[3]]));
                    results[idx] = Some(if errno == 0 { Ok(()) } else { Err(-errno) });
                    pending -= 1;
                }
            }
            out.extend(results.into_iter().map(|r| r.unwrap_or(Err(libc::EIO))));
        }
        Ok(out)
    }

    /// A dump request; returns the payload of every reply message.
    pub fn dump(&mut self, kind: u16, payload: &[u8]) -> io::Result<Vec<Vec<u8>>> {
        let mut wire = Vec::with_capacity(HDR + payload.len());
        let seq = self.seq;
        self.seq = self.seq.wrapping_add(1);
        push_header(&mut wire, kind, NLM_F_REQUEST | NLM_F_DUMP, seq, payload);
        self.sock.send(&wire, 0)?;
        let mut out = Vec::new();
        loop {
            let n = self.recv()?;
            for (k, _flags, s, p) in messages(&self.buf[..n]) {
                if s != seq {
                    continue;
                }
                match k {
                    // A rejected dump reports its errno in NLMSG_DONE's payload.
                    NLMSG_DONE => {
                        let errno = p
                            .get(..4)
                            .map_or(0, |b| i32::from_ne_bytes([b[0], b[1], b[2], b[3]]));
                        if errno < 0 {
                            return Err(io::Error::from_raw_os_error(-errno));
                        }
                        return Ok(out);
                    }
                    NLMSG_ERROR => {
                        let errno = p
                            .get(..4)
                            .map_or(0, |b| i32::from_ne_bytes([b[0], b[1], b[2], b[3]]));
                        if errno == 0 {
                            return Ok(out);
                        }
                        return Err(io::Error::from_raw_os_error(-errno));
                    }
                    _ => out.push(p.to_vec()),
                }
            }
        }
    }

    fn recv(&mut self) -> io::Result<usize> {
        let mut slice = &mut self.buf[..];
        self.sock.recv(&mut slice, 0)
    }
}

fn push_header(wire: &mut Vec<u8>, kind: u16, flags: u16, seq: u32, payload: &[u8]) {
    let len = u32::try_from(HDR + payload.len()).unwrap_or(u32::MAX);
    wire.extend_from_slice(&len.to_ne_bytes());
    wire.extend_from_slice(&kind.to_ne_bytes());
    wire.extend_from_slice(&flags.to_ne_bytes());
    wire.extend_from_slice(&seq.to_ne_bytes());
    wire.extend_from_slice(&0u32.to_ne_bytes());
    wire.extend_from_slice(payload);
    while !wire.len().is_multiple_of(4) {
        wire.push(0);
    }
}

/// Splits a receive buffer into `(type, flags, seq, payload)`; stops at a malformed header
/// (a last message without its padding ends the iteration too).
pub(crate) fn messages(mut buf: &[u8]) -> impl Iterator<Item = (u16, u16, u32, &[u8])> {
    std::iter::from_fn(move || {
        if buf.len() < HDR {
            return None;
        }
        let len = u32::from_ne_bytes([buf[0], buf[1], buf[2], buf[3]]) as usize;
        if len < HDR || len > buf.len() {
            return None;
        }
        let kind = u16::from_ne_bytes([buf[4], buf[5]]);
        let flags = u16::from_ne_bytes([buf[6], buf[7]]);
        let seq = u32::from_ne_bytes([buf[8], buf[9], buf[10], buf[11]]);
        let payload = &buf[HDR..len];
        buf = &buf[((len + 3) & !3).min(buf.len())..];
        Some((kind, flags, seq, payload))
    })
}

/// Appends a netlink attribute (type, value) with 4-byte alignment.
pub fn push_attr(buf: &mut Vec<u8>, kind: u16, value: &[u8]) {
    let len = u16::try_from(4 + value.len()).unwrap_or(u16::MAX);
    buf.extend_from_slice(&len.to_ne_bytes());
    buf.extend_from_slice(&kind.to_ne_bytes());
    buf.extend_from_slice(value);
    while !buf.len().is_multiple_of(4) {
        buf.push(0);
    }
}

/// Iterates `(type, value)` attributes; stops at a malformed one.
pub fn attrs(mut buf: &[u8]) -> impl Iterator<Item = (u16, &[u8])> {
    std::iter::from_fn(move || {
        if buf.len() < 4 {
            return None;
        }
        let len = u16::from_ne_bytes([buf[0], buf[1]]) as usize;
        if len < 4 || len > buf.len() {
            return None;
        }
        let kind = u16::from_ne_bytes([buf[2], buf[3]]) & 0x3fff;
        let value = &buf[4..len];
        buf = &buf[((len + 3) & !3).min(buf.len())..];
        Some((kind, value))
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn headers_and_attributes_round_trip() {
        let mut a = Vec::new();
        push_attr(&mut a, 1, &7u32.to_ne_bytes());
        push_attr(&mut a, 6, &[10, 0, 0, 1, 9]);
        let got: Vec<_> = attrs(&a).collect();
        assert_eq!(
            got,
            vec![(1, &7u32.to_ne_bytes()[..]), (6, &[10u8, 0, 0, 1, 9][..])]
        );
        let mut w = Vec::new();
        push_header(&mut w, 104, NLM_F_REQUEST, 9, &a);
        push_header(&mut w, 3, 0, 10, &[]);
        let m: Vec<_> = messages(&w).map(|(k, _, s, p)| (k, s, p.len())).collect();
        assert_eq!(m, vec![(104, 9, a.len()), (3, 10, 0)]);
        // Truncated input ends the iteration instead of panicking.
        assert_eq!(messages(&w[..20]).count(), 0);
        assert_eq!(attrs(&a[..10]).count(), 1);
        // A last message whose padding is missing ends the iteration, no panic.
        let mut odd = Vec::new();
        odd.extend_from_slice(&17u32.to_ne_bytes());
        odd.extend_from_slice(&[24, 0, 0, 0, 1, 0, 0, 0, 0, 0, 0, 0, 7]);
        assert_eq!(
            messages(&odd)
                .map(|(_, _, _, p)| p.len())
                .collect::<Vec<_>>(),
            vec![1]
        );
    }
}
