//! Loads N per-node routes through podnet's batching netlink socket, as nexthop objects plus
//! nhid routes, then re-lists them; prints timings. Run inside a namespace by
//! `scripts/bench-routes` (it never touches the namespace it is started in otherwise).
//! Usage: load_routes N IFINDEX [delete]

use std::net::Ipv4Addr;
use std::time::Instant;

use podnet::kernel::nexthop::Nexthop;
use podnet::kernel::nl::NlSocket;
use podnet::kernel::route::{RTM_GETROUTE, Route, Target};

fn main() -> std::io::Result<()> {
    let args: Vec<String> = std::env::args().collect();
    let (Some(n), Some(ifindex)) = (
        args.get(1).and_then(|a| a.parse::<u32>().ok()),
        args.get(2).and_then(|a| a.parse::<u32>().ok()),
    ) else {
        eprintln!("usage: load_routes N IFINDEX");
        std::process::exit(2);
    };
    let mut s = NlSocket::new()?;
    let nhs: Vec<_> = (0..n)
        .map(|i| Nexthop {
            id: i + 1,
            gateway: Ipv4Addr::from(u32::from(Ipv4Addr::new(172, 16, 0, 10)) + i),
            ifindex,
            onlink: false,
            protocol: 77,
        })
        .collect();
    let routes: Vec<_> = (0..n)
        .map(|i| Route {
            dst: ipnet::Ipv4Net::new(Ipv4Addr::from((10u32 << 24) + ((i + 1) << 8)), 24)
                .unwrap_or_default(),
            target: Target::Nexthop(i + 1),
            protocol: 77,
        })
        .collect();
    let t = Instant::now();
    let mut reqs: Vec<_> = nhs.iter().map(Nexthop::replace).collect();
    reqs.extend(routes.iter().map(Route::replace));
    let out = s.execute(&reqs)?;
    let load = t.elapsed();
    let failed = out.iter().filter(|r| r.is_err()).count();
    let t = Instant::now();
    let listed = s
        .dump(RTM_GETROUTE, &Route::dump_request(77))?
        .iter()
        .filter_map(|p| Route::parse(p, 77))
        .count();
    let list = t.elapsed();
    println!(
        "podnet-netlink load {n} nexthop routes: {:.3} s ({failed} failed); list {listed}: {:.3} s",
        load.as_secs_f64(),
        list.as_secs_f64()
    );
    Ok(())
}
