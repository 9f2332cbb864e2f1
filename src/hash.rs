//! Stable hashes shared by routing, balancing and reloads: one FNV-1a +
//! murmur3 finaliser for sticky keys, endpoint addresses, certificate and
//! config-file fingerprints. Depends on nothing else in the crate.

/// A stable 64-bit hash (FNV-1a, then the murmur3 finalizer for spread).
/// Stable across processes, restarts and versions, so every replica of the
/// proxy puts a user in the same cohort.
pub fn hash_key(bytes: &[u8]) -> u64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for &b in bytes {
        h ^= u64::from(b);
        h = h.wrapping_mul(0x0000_0100_0000_01b3);
    }
    mix64(h)
}

/// murmur3's 64-bit finalizer: every input bit affects every output bit.
pub fn mix64(mut h: u64) -> u64 {
    h ^= h >> 33;
    h = h.wrapping_mul(0xff51_afd7_ed55_8ccd);
    h ^= h >> 33;
    h = h.wrapping_mul(0xc4ce_b9fe_1a85_ec53);
    h ^ (h >> 33)
}

/// A file's content hash as it is logged and stored (16 hex digits), so
/// that "the same file again" can be told apart from a change.
pub fn content_hash(bytes: &[u8]) -> String {
    format!("{:016x}", hash_key(bytes))
}
