//! Named network namespaces made and removed in-process, as `ip netns add/del` does (a
//! thread unshares its network namespace and bind-mounts it on `/run/netns/NAME`), without
//! one process per namespace. The new namespace's sysctls are set on that thread, while it
//! is inside; the calling thread never changes namespace.

use std::fs::{self, OpenOptions};
use std::io;
use std::path::Path;

use nix::mount::{MntFlags, MsFlags, mount, umount2};
use nix::sched::{CloneFlags, unshare};

/// Where named namespaces live (iproute2's `NETNS_RUN_DIR`).
pub const NETNS_DIR: &str = "/run/netns";

/// Makes `/run/netns` a shared mount point, as `ip netns add` does, so namespace mounts
/// propagate to other mount namespaces (`ip netns exec` makes one per command).
pub fn prepare_dir() -> io::Result<()> {
    fs::create_dir_all(NETNS_DIR)?;
    let shared = || {
        mount(
            Some(""),
            NETNS_DIR,
            Some("none"),
            MsFlags::MS_SHARED | MsFlags::MS_REC,
            None::<&str>,
        )
    };
    match shared() {
        Ok(()) => Ok(()),
        Err(nix::errno::Errno::EINVAL) => {
            // Not a mount point yet: bind it onto itself, then share it.
            mount(
                Some(NETNS_DIR),
                NETNS_DIR,
                Some("none"),
                MsFlags::MS_BIND | MsFlags::MS_REC,
                None::<&str>,
            )
            .map_err(io::Error::from)?;
            shared().map_err(io::Error::from)
        }
        Err(e) => Err(e.into()),
    }
}

/// Creates `/run/netns/NAME` (failing if it exists) and writes `sysctls` (paths under
/// `/proc/sys`, values) inside the new namespace.
pub fn create(name: &str, sysctls: &[(&str, &str)]) -> io::Result<()> {
    let path = Path::new(NETNS_DIR).join(name);
    OpenOptions::new()
        .write(true)
        .create_new(true)
        .open(&path)
        .map_err(|e| io::Error::new(e.kind(), format!("creating {}: {e}", path.display())))?;
    let made = std::thread::scope(|s| {
        s.spawn(|| -> io::Result<()> {
            unshare(CloneFlags::CLONE_NEWNET)
                .map_err(|e| io::Error::other(format!("unshare(CLONE_NEWNET): {e}")))?;
            mount(
                Some("/proc/thread-self/ns/net"),
                &path,
                Some("none"),
                MsFlags::MS_BIND,
                None::<&str>,
            )
            .map_err(|e| io::Error::other(format!("mounting {}: {e}", path.display())))?;
            for (key, value) in sysctls {
                let p = Path::new("/proc/sys").join(key);
                fs::write(&p, value).map_err(|e| {
                    io::Error::new(e.kind(), format!("writing {}: {e}", p.display()))
                })?;
            }
            Ok(())
        })
        .join()
        .unwrap_or_else(|_| Err(io::Error::other("namespace thread panicked")))
    });
    if made.is_err() {
        let _ = delete(name);
    }
    made
}

/// Removes `/run/netns/NAME` (the kernel frees the namespace once nothing uses it).
/// A namespace that does not exist counts as removed.
pub fn delete(name: &str) -> io::Result<()> {
    let path = Path::new(NETNS_DIR).join(name);
    match umount2(&path, MntFlags::MNT_DETACH) {
        Ok(()) | Err(nix::errno::Errno::EINVAL | nix::errno::Errno::ENOENT) => {}
        Err(e) => {
            return Err(io::Error::other(format!(
                "unmounting {}: {e}",
                path.display()
            )));
        }
    }
    match fs::remove_file(&path) {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(io::Error::new(
            e.kind(),
            format!("removing {}: {e}", path.display()),
        )),
    }
}

/// Whether `/run/netns/NAME` exists.
pub fn exists(name: &str) -> bool {
    Path::new(NETNS_DIR).join(name).exists()
}
