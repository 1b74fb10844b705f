//! Health and metrics over HTTP (`tiny_http`, one thread): `/livez` and `/healthz` (the
//! event loop is alive), `/readyz` (the first full apply is done and the node is converged
//! on the newest config; 503 with the reason otherwise; `?verbose` lists each check) and
//! `/metrics` (OpenMetrics or the Prometheus text format, as the Accept header asks).

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use tiny_http::{Header, Response, Server};

use super::metrics::{Format, Metrics};

/// How long the loop may go without a heartbeat before `/livez` fails (a full reconcile of
/// a large node takes seconds; the loop beats at least every few seconds otherwise).
const STALL: Duration = Duration::from_secs(120);

/// One readiness check's state: `Ok` or the reason it fails.
pub type Check = Result<(), String>;

/// What the loop reports to the HTTP thread.
#[derive(Clone, Debug)]
pub struct Health {
    pub heartbeat: Instant,
    /// The first full apply of a valid config finished.
    pub applied: Check,
    /// The newest config is valid (else the last good plan stays applied).
    pub config: Check,
    /// The node is converged on it (no conflict, no failed write, nothing remaining).
    pub converged: Check,
}

impl Default for Health {
    fn default() -> Self {
        Health {
            heartbeat: Instant::now(),
            applied: Err("the first apply has not finished".into()),
            config: Err("no config loaded yet".into()),
            converged: Err("not reconciled yet".into()),
        }
    }
}

impl Health {
    fn checks(&self) -> [(&'static str, &Check); 3] {
        [
            ("applied", &self.applied),
            ("config", &self.config),
            ("converged", &self.converged),
        ]
    }
}

pub type Shared = Arc<Mutex<Health>>;

/// Binds `addr` (before the first apply: a wrong address fails at start).
pub fn bind(addr: SocketAddr) -> Result<Server, String> {
    Server::http(addr).map_err(|e| format!("listening on {addr}: {e}"))
}

/// Serves requests until the process exits.
pub fn serve(server: Server, health: Shared, metrics: Arc<Metrics>) {
    for req in server.incoming_requests() {
        let url = req.url().to_string();
        let (path, query) = url.split_once('?').unwrap_or((url.as_str(), ""));
        let verbose = query
            .split('&')
            .any(|q| q == "verbose" || q.starts_with("verbose="));
        let accept = req
            .headers()
            .iter()
            .find(|h| h.field.equiv("Accept"))
            .map(|h| h.value.as_str().to_string());
        let h = health.lock().map(|h| h.clone()).unwrap_or_default();
        let (code, body, kind) = match path {
            "/livez" | "/healthz" => {
                if h.heartbeat.elapsed() < STALL {
                    (200, "ok\n".to_string(), "text/plain; charset=utf-8")
                } else {
                    (
                        503,
                        format!(
                            "the event loop has not run for {} s\n",
                            h.heartbeat.elapsed().as_secs()
                        ),
                        "text/plain; charset=utf-8",
                    )
                }
            }
            "/readyz" => {
                let failing: Vec<String> = h
                    .checks()
                    .iter()
                    .filter_map(|(n, c)| c.as_ref().err().map(|e| format!("{n}: {e}")))
                    .collect();
                let mut body = String::new();
                if verbose {
                    for (n, c) in h.checks() {
                        match c {
                            Ok(()) => body.push_str(&format!("[+]{n} ok\n")),
                            Err(e) => body.push_str(&format!("[-]{n} failed: {e}\n")),
                        }
                    }
                }
                if failing.is_empty() {
                    body.push_str("ok\n");
                    (200, body, "text/plain; charset=utf-8")
                } else {
                    if !verbose {
                        body.push_str(&failing.join("\n"));
                        body.push('\n');
                    } else {
                        body.push_str("not ready\n");
                    }
                    (503, body, "text/plain; charset=utf-8")
                }
            }
            "/metrics" => {
                let format = Format::negotiate(accept.as_deref());
                (200, metrics.encode_as(format), format.content_type())
            }
            _ => (
                404,
                "not found: try /livez, /readyz, /metrics\n".to_string(),
                "text/plain; charset=utf-8",
            ),
        };
        let mut resp = Response::from_string(body).with_status_code(code);
        if let Ok(h) = Header::from_bytes(&b"Content-Type"[..], kind.as_bytes()) {
            resp = resp.with_header(h);
        }
        let _ = req.respond(resp);
    }
}
