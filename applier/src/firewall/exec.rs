//! Where firewall commands run: the host's namespace, or a named network namespace through
//! `ip netns exec` (tests and `podnet lab` target simulated nodes this way).

use std::io::Write;
use std::process::{Command, Output, Stdio};

use super::FirewallError;

/// The target every firewall command runs against.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Exec {
    /// Run `nft` / `iptables*` directly, in the namespace podnet itself runs in.
    Host,
    /// Prefix every command with `ip netns exec NAME`.
    Netns(String),
}

impl Exec {
    /// The command that runs `program` against this target (arguments still to be added).
    pub fn command(&self, program: &str) -> Command {
        match self {
            Exec::Host => Command::new(program),
            Exec::Netns(name) => {
                let mut c = Command::new("ip");
                c.args(["netns", "exec", name.as_str(), program]);
                c
            }
        }
    }

    /// The command line as a user would type it, for error messages.
    pub fn describe(&self, program: &str, args: &[&str]) -> String {
        let mut s = match self {
            Exec::Host => String::new(),
            Exec::Netns(name) => format!("ip netns exec {name} "),
        };
        s.push_str(program);
        for a in args {
            s.push(' ');
            s.push_str(a);
        }
        s
    }

    /// Runs `program args…`, feeding `stdin` if given; returns the output whatever the exit
    /// status. Fails only when the process cannot be started or fed.
    pub(crate) fn output(
        &self,
        program: &str,
        args: &[&str],
        stdin: Option<&[u8]>,
    ) -> Result<Output, FirewallError> {
        let spawn_err = |source| FirewallError::Spawn {
            command: self.describe(program, args),
            source,
        };
        let mut cmd = self.command(program);
        cmd.args(args)
            .stdin(if stdin.is_some() {
                Stdio::piped()
            } else {
                Stdio::null()
            })
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        let mut child = cmd.spawn().map_err(spawn_err)?;
        // Feed stdin on its own thread so a child that writes a lot before reading all of its
        // input cannot deadlock against us.
        let feed = child.stdin.take();
        std::thread::scope(|scope| {
            let writer = scope.spawn(move || -> std::io::Result<()> {
                if let (Some(mut pipe), Some(data)) = (feed, stdin) {
                    pipe.write_all(data)?;
                }
                Ok(())
            });
            let out = child.wait_with_output().map_err(spawn_err)?;
            match writer.join() {
                Ok(Ok(())) => Ok(out),
                // A child that exits early closes its stdin: its stderr says why.
                Ok(Err(e)) if e.kind() == std::io::ErrorKind::BrokenPipe => Ok(out),
                Ok(Err(e)) => Err(spawn_err(e)),
                Err(_) => Err(spawn_err(std::io::Error::other("stdin writer panicked"))),
            }
        })
    }

    /// Like [`Exec::output`], but a non-zero exit is a [`FirewallError::Command`] carrying
    /// the program's stderr. Returns stdout.
    pub(crate) fn run(
        &self,
        program: &str,
        args: &[&str],
        stdin: Option<&[u8]>,
    ) -> Result<String, FirewallError> {
        let out = self.output(program, args, stdin)?;
        if out.status.success() {
            Ok(String::from_utf8_lossy(&out.stdout).into_owned())
        } else {
            Err(self.failure(program, args, &out))
        }
    }

    /// The typed error for a command that exited unsuccessfully.
    pub(crate) fn failure(&self, program: &str, args: &[&str], out: &Output) -> FirewallError {
        FirewallError::Command {
            command: self.describe(program, args),
            status: out.status.code(),
            stderr: String::from_utf8_lossy(&out.stderr).trim_end().to_owned(),
        }
    }
}
