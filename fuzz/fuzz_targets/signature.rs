//! `X-Hub-Signature-256` parsing and verification. Input: the header value, a newline, then
//! the raw body. Never panics; only the true HMAC of the body verifies, in either hex case.
#![no_main]

use deploybot::github::webhook::signature::{self, SignatureError};
use libfuzzer_sys::fuzz_target;

const SECRET: &[u8] = b"webhook-secret";
const PREVIOUS: &[u8] = b"the-previous-secret";

fuzz_target!(|data: &[u8]| {
    let (header, body) = match data.iter().position(|&b| b == b'\n') {
        Some(at) => (&data[..at], &data[at + 1..]),
        None => (data, &b""[..]),
    };
    let secrets: [&[u8]; 3] = [b"", SECRET, PREVIOUS];
    let Ok(header) = std::str::from_utf8(header) else {
        return;
    };
    let verdict = signature::verify(&secrets, Some(header), false, body);
    let genuine = [
        signature::sign(SECRET, body),
        signature::sign(PREVIOUS, body),
    ];
    let is_genuine =
        genuine.iter().any(|g| g.eq_ignore_ascii_case(header)) && header.starts_with("sha256=");
    match verdict {
        Ok(()) => assert!(is_genuine, "a forged signature verified: {header:?}"),
        Err(SignatureError::Mismatch) | Err(SignatureError::Malformed) => {
            assert!(!is_genuine, "a genuine signature was refused: {header:?}")
        }
        Err(other) => panic!("a present header gave {other:?}"),
    }
    // The genuine signature always verifies; a missing header never does.
    for g in &genuine {
        assert_eq!(signature::verify(&secrets, Some(g), false, body), Ok(()));
    }
    assert_eq!(
        signature::verify(&secrets, None, true, body),
        Err(SignatureError::Sha1Only)
    );
    // The empty secret proves nothing.
    let empty = signature::sign(b"", body);
    assert_eq!(
        signature::verify(&[b""], Some(&empty), false, body),
        Err(SignatureError::Mismatch)
    );
});
