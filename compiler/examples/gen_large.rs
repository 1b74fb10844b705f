//! Writes a large synthetic cluster: `cargo run -p podnet-compiler --example gen_large --
//! NODES DIR [host-gw|vxlan] [NODES_PER_FILE]`.

use podnet_compiler::generate::{GenBackend, large_cluster};

fn main() -> std::io::Result<()> {
    let args: Vec<String> = std::env::args().collect();
    let usage = "usage: gen_large NODES DIR [host-gw|vxlan] [NODES_PER_FILE]";
    let (Some(nodes), Some(dir)) = (args.get(1).and_then(|n| n.parse().ok()), args.get(2)) else {
        eprintln!("{usage}");
        std::process::exit(2);
    };
    let backend = match args.get(3).map(String::as_str) {
        Some("vxlan") => GenBackend::Vxlan,
        None | Some("host-gw") => GenBackend::HostGw,
        Some(other) => {
            eprintln!("unknown backend {other}; {usage}");
            std::process::exit(2);
        }
    };
    let per_file = args.get(4).and_then(|n| n.parse().ok()).unwrap_or(250);
    let dir = std::path::Path::new(dir);
    for (path, text) in large_cluster(nodes, per_file, backend) {
        let p = dir.join(path);
        if let Some(parent) = p.parent() {
            std::fs::create_dir_all(parent)?;
        }
        std::fs::write(p, text)?;
    }
    eprintln!("wrote {nodes} nodes to {}", dir.display());
    Ok(())
}
