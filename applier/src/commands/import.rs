//! `podnet import flannel`: reads flannel's files (regular files, at most 64 MiB each, as
//! every input), converts them with the compiler's pure `import::flannel`, prints what was
//! not mapped, and writes `DIR/cluster.podnet` and `DIR/cluster.podnet.lock` (atomically;
//! existing files only with `--force`). Nothing is written when an input is malformed or the
//! result would not pass `podnet check`.

use std::path::{Path, PathBuf};

use anyhow::{Context as _, bail};
use podnet_compiler::import::{self, ImportError, Input, Inputs, NodeSource, Options};
use podnet_compiler::lock::lock_path;
use podnet_compiler::span::{SourceKind, SourceMap};
use podnet_compiler::{FsLoader, Loader as _};

use crate::cli::{DiagFormat, ImportArgs, ImportFlannelArgs, ImportFrom};
use crate::journal::write_atomic;
use crate::report;

pub fn run(args: &ImportArgs) -> anyhow::Result<i32> {
    match &args.from {
        ImportFrom::Flannel(a) => flannel(a),
    }
}

/// One input file read whole, with the name messages use.
struct Read {
    name: String,
    text: String,
}

fn read(path: &Path) -> anyhow::Result<Read> {
    let text = FsLoader
        .read(path)
        .map_err(|e| anyhow::anyhow!("{}: {e}", path.display()))?;
    Ok(Read {
        name: path.display().to_string(),
        text,
    })
}

fn input(r: &Read) -> Input<'_> {
    Input {
        path: &r.name,
        text: &r.text,
    }
}

fn flannel(a: &ImportFlannelArgs) -> anyhow::Result<i32> {
    let net_conf = a.net_conf.as_deref().map(read).transpose()?;
    let nodes = a.nodes.as_deref().map(read).transpose()?;
    let etcd = a.etcd.as_deref().map(read).transpose()?;
    let envs = a
        .subnet_env
        .iter()
        .map(|p| read(p))
        .collect::<anyhow::Result<Vec<_>>>()?;
    let source = match (&nodes, &etcd) {
        (Some(n), _) => Some(NodeSource::Kubernetes(input(n))),
        (None, Some(e)) => Some(NodeSource::Etcd(input(e))),
        (None, None) => None,
    };
    let cluster = a.out.join("cluster.podnet");
    let lock = lock_path(&cluster);
    if !a.force {
        for p in [&cluster, &lock] {
            if std::fs::symlink_metadata(p).is_ok() {
                bail!(
                    "{} exists: nothing was written (move it away, or pass --force to replace it)",
                    p.display()
                );
            }
        }
    }
    let result = import::flannel(&Inputs {
        net_conf: net_conf.as_ref().map(input),
        nodes: source,
        subnet_env: envs.iter().map(input).collect(),
        options: Options {
            cluster_name: a.name.clone(),
            underlay_prefix: a.underlay_prefix,
            interface: a.interface.clone(),
            ip_masq: a.ip_masq,
        },
    });
    let imported = match result {
        Ok(i) => i,
        Err(ImportError::Check { text, diagnostics }) => {
            let mut sources = SourceMap::new();
            sources.add(PathBuf::from(&cluster), text, SourceKind::Podnet);
            report::print(&sources, &diagnostics, DiagFormat::Human)?;
            eprintln!(
                "error: flannel's state does not make a valid podnet cluster (above); nothing was written"
            );
            return Ok(1);
        }
        Err(e) => {
            eprintln!("error: {e}; nothing was written");
            return Ok(1);
        }
    };
    for w in &imported.warnings {
        eprintln!("warning: {w}");
    }
    std::fs::create_dir_all(&a.out).with_context(|| format!("creating {}", a.out.display()))?;
    write_atomic(&cluster, imported.cluster_file.as_bytes(), 0o644)
        .with_context(|| format!("writing {}", cluster.display()))?;
    write_atomic(&lock, imported.lock_file.as_bytes(), 0o644)
        .with_context(|| format!("writing {}", lock.display()))?;
    eprintln!(
        "{}: written with its lock ({} warning(s)); review it, then `podnet plan {} --node NODE --live`",
        cluster.display(),
        imported.warnings.len(),
        cluster.display()
    );
    Ok(0)
}
