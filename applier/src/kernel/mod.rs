//! Kernel access for the applier: a raw, batching rtnetlink socket and the message codecs
//! the `rtnetlink` crate lacks (nexthop objects). Only the executor writes through this.

pub mod nexthop;
pub mod nl;
pub mod route;
