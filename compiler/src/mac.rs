//! Deterministic VTEP MAC addresses: derived from the cluster and node names, so every node
//! computes every peer's MAC without coordination (no flannel-style VTEP MAC races).

use sha2::{Digest, Sha256};

/// A locally administered, unicast MAC from SHA-256 of the cluster and node names.
pub fn vtep_mac(cluster: &str, node: &str) -> [u8; 6] {
    let mut h = Sha256::new();
    h.update(b"podnet-vtep\0");
    h.update(cluster.as_bytes());
    h.update(b"\0");
    h.update(node.as_bytes());
    let d = h.finalize();
    let mut mac = [0u8; 6];
    mac.copy_from_slice(&d[..6]);
    mac[0] = (mac[0] & 0xfe) | 0x02; // unicast, locally administered
    mac
}

pub fn format_mac(m: [u8; 6]) -> String {
    format!(
        "{:02x}:{:02x}:{:02x}:{:02x}:{:02x}:{:02x}",
        m[0], m[1], m[2], m[3], m[4], m[5]
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn macs_are_local_unicast_stable_and_distinct() {
        let a = vtep_mac("c", "node-1");
        assert_eq!(a, vtep_mac("c", "node-1"));
        assert_ne!(a, vtep_mac("c", "node-2"));
        assert_ne!(a, vtep_mac("d", "node-1"));
        assert_eq!(a[0] & 0x01, 0, "unicast");
        assert_eq!(a[0] & 0x02, 0x02, "locally administered");
        assert_eq!(format_mac([0x02, 0, 0xab, 1, 2, 255]), "02:00:ab:01:02:ff");
    }
}
