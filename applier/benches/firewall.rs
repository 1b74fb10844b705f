//! Benchmarks the firewall drivers in a network namespace the bench creates and deletes:
//! an apply that writes (the spec alternates between two masquerade modes, so every
//! iteration observes, writes one transaction and verifies) and a no-op apply (observe and
//! compare only), with each driver, through `Firewall::apply` as `podnet apply` calls it
//! (which also checks that the other driver left nothing behind). The cost of
//! `ip netns exec` itself is measured too, since every command pays it here.
//! Needs root, `nft` and the iptables tools.

use std::process::Command;

use criterion::{Criterion, criterion_group, criterion_main};
use ipnet::Ipv4Net;
use podnet::firewall::{Driver, Exec, Firewall, FirewallSpec, MasqueradeRule};

/// A namespace deleted on drop.
struct Ns(String);

impl Ns {
    fn new() -> Ns {
        let name = format!("podnet-bench-fw-{}", std::process::id());
        let ok = Command::new("ip")
            .args(["netns", "add", &name])
            .status()
            .is_ok_and(|s| s.success());
        assert!(ok, "ip netns add {name} failed (needs root)");
        Ns(name)
    }
}

impl Drop for Ns {
    fn drop(&mut self) {
        let _ = Command::new("ip").args(["netns", "del", &self.0]).status();
    }
}

fn net(s: &str) -> Ipv4Net {
    s.parse().expect("bench CIDR")
}

fn spec(driver: Driver, outbound: bool) -> FirewallSpec {
    FirewallSpec {
        driver,
        masquerade: vec![MasqueradeRule {
            source: net("172.7.21.0/24"),
            not_destinations: if outbound {
                vec![net("172.7.0.0/16"), net("10.4.7.0/24"), net("10.4.8.5/32")]
            } else {
                Vec::new()
            },
            not_out_interface: "cni0".into(),
            random_fully: true,
            skip_mark: Some(0x4000),
        }],
        forward_accept: vec![net("172.7.0.0/16")],
    }
}

fn bench_firewall(c: &mut Criterion) {
    let ns = Ns::new();
    let exec = Exec::Netns(ns.0.clone());
    let mut g = c.benchmark_group("firewall");
    g.sample_size(30);

    g.bench_function("ip-netns-exec-true", |b| {
        b.iter(|| {
            let ok = exec.command("true").status().is_ok_and(|s| s.success());
            assert!(ok);
        })
    });

    for driver in [Driver::Nftables, Driver::Iptables] {
        let fw = Firewall::new(exec.clone());
        fw.iptables_mode().expect("detect iptables mode");
        let (a, b_) = (spec(driver, true), spec(driver, false));
        fw.apply(&a).expect("first apply");

        let mut flip = false;
        g.bench_function(format!("{driver}/apply-write"), |b| {
            b.iter(|| {
                flip = !flip;
                let r = fw.apply(if flip { &b_ } else { &a }).expect("apply");
                assert!(r.applied.wrote);
            })
        });

        fw.apply(&a).expect("settle");
        g.bench_function(format!("{driver}/apply-noop"), |b| {
            b.iter(|| {
                let r = fw.apply(&a).expect("apply");
                assert!(!r.wrote());
            })
        });

        let drv = fw.driver(driver).expect("driver");
        g.bench_function(format!("{driver}/plan-noop-driver-only"), |b| {
            b.iter(|| {
                let p = drv.plan(&a).expect("plan");
                assert!(p.is_empty());
            })
        });
    }
    g.finish();
    Firewall::new(exec).remove().expect("teardown");
    drop(ns);
}

criterion_group!(benches, bench_firewall);
criterion_main!(benches);
