//! Kernel access for the applier: a raw, batching rtnetlink socket and the message codecs
//! for every object kind podnet owns (links, addresses, routes, nexthop objects, neighbours,
//! FDB entries). Only the executor writes through this.

pub mod addr;
pub mod events;
pub mod link;
pub mod neigh;
pub mod netns;
pub mod nexthop;
pub mod nl;
pub mod route;
