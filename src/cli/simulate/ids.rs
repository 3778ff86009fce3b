//! The ids and times in a simulated delivery: GitHub's node ids and timestamps, ids that
//! stay the same for a name (as GitHub's do), and fresh random ones.

use std::sync::atomic::{AtomicU64, Ordering};

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use chrono::{SecondsFormat, Utc};
use sha2::{Digest, Sha256};

/// GitHub's legacy global node id: base64 of `0<len>:<Type><id>`.
pub(super) fn node_id(kind: &str, id: u64) -> String {
    STANDARD.encode(format!("0{}:{kind}{id}", kind.len()))
}

/// An RFC 3339 time to the second, as GitHub writes them.
pub(super) fn timestamp(at: &chrono::DateTime<Utc>) -> String {
    at.to_rfc3339_opts(SecondsFormat::Secs, true)
}

/// A number derived from `key`, the same every time, in the range GitHub's ids live in.
pub(super) fn stable_id(key: &str) -> u64 {
    let digest = Sha256::digest(key.as_bytes());
    let mut bytes = [0u8; 4];
    bytes.copy_from_slice(&digest[..4]);
    10_000_000 + u64::from(u32::from_be_bytes(bytes)) % 900_000_000
}

/// 32 unpredictable bytes: SHA-256 over a fresh UUIDv7 (74 random bits), the process id and
/// a counter, so two calls never repeat.
fn random_bytes() -> [u8; 32] {
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    let mut hasher = Sha256::new();
    hasher.update(uuid::Uuid::now_v7().as_bytes());
    hasher.update(std::process::id().to_be_bytes());
    hasher.update(COUNTER.fetch_add(1, Ordering::Relaxed).to_be_bytes());
    let digest = hasher.finalize();
    let mut out = [0u8; 32];
    out.copy_from_slice(&digest);
    out
}

/// A random commit SHA: 40 hex characters.
pub(super) fn random_sha() -> String {
    hex::encode(&random_bytes()[..20])
}

/// A random number, for ids GitHub gives every object anew.
pub(super) fn random_u64() -> u64 {
    let mut bytes = [0u8; 8];
    bytes.copy_from_slice(&random_bytes()[..8]);
    u64::from_be_bytes(bytes)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn node_ids_look_like_githubs() {
        assert_eq!(node_id("User", 21031067), "MDQ6VXNlcjIxMDMxMDY3");
        assert_eq!(
            node_id("Repository", 186853002),
            "MDEwOlJlcG9zaXRvcnkxODY4NTMwMDI="
        );
    }
}
