//! Webhook signature verification: GitHub signs every delivery with HMAC-SHA256 of the raw
//! body under the webhook secret and sends it as `X-Hub-Signature-256: sha256=<hex>`.

use hmac::digest::{Digest, KeyInit, Mac};
use hmac::{Hmac, digest::Key};
use sha2::Sha256;

type HmacSha256 = Hmac<Sha256>;

const PREFIX: &str = "sha256=";

/// Why a delivery's signature was refused. The messages are safe to return to the caller:
/// they never reveal the expected value or any secret.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SignatureError {
    /// Neither signature header was sent: the webhook has no secret configured in GitHub.
    #[error(
        "X-Hub-Signature-256 is missing: configure the webhook secret in GitHub and in \
         DEPLOYBOT_WEBHOOK_SECRET (or the variable of the tenant's [[tenants]] entry)"
    )]
    Missing,
    /// The header is not `sha256=` followed by 64 hex digits.
    #[error(
        "X-Hub-Signature-256 is malformed: expected `sha256=` followed by 64 hexadecimal digits"
    )]
    Malformed,
    /// Only the legacy SHA-1 `X-Hub-Signature` was sent; SHA-1 signatures are not accepted.
    #[error(
        "only X-Hub-Signature (HMAC-SHA1) was sent: deploybot accepts only X-Hub-Signature-256 \
         (HMAC-SHA256); make sure nothing between GitHub and deploybot drops that header"
    )]
    Sha1Only,
    /// The signature is well formed but matches none of the configured secrets.
    #[error(
        "X-Hub-Signature-256 does not match the body: the webhook secret in GitHub must equal \
         one of DEPLOYBOT_WEBHOOK_SECRET, and the body must reach deploybot unchanged"
    )]
    Mismatch,
}

/// Verifies `header` (the X-Hub-Signature-256 value, `None` if absent) over the exact raw
/// `body` against any of `secrets`, so a secret can be rotated without dropping deliveries.
/// `sha1_present` tells whether the legacy X-Hub-Signature was sent, to explain a refusal.
///
/// The comparison is constant-time (`Mac::verify_slice`). Empty secrets are skipped: an
/// empty key is known to everyone, so a signature made with it proves nothing.
pub fn verify(
    secrets: &[impl AsRef<[u8]>],
    header: Option<&str>,
    sha1_present: bool,
    body: &[u8],
) -> Result<(), SignatureError> {
    let Some(header) = header else {
        return Err(if sha1_present {
            SignatureError::Sha1Only
        } else {
            SignatureError::Missing
        });
    };
    let expected = decode(header)?;
    let matches = secrets
        .iter()
        .map(AsRef::as_ref)
        .filter(|secret| !secret.is_empty())
        .any(|secret| {
            let mut mac = keyed(secret);
            mac.update(body);
            mac.verify_slice(&expected).is_ok()
        });
    if matches {
        Ok(())
    } else {
        Err(SignatureError::Mismatch)
    }
}

/// `sha256=<hex>` for a body (used by `deploybot simulate` and tests).
pub fn sign(secret: &[u8], body: &[u8]) -> String {
    let mut mac = keyed(secret);
    mac.update(body);
    format!("{PREFIX}{}", hex::encode(mac.finalize().into_bytes()))
}

/// Decodes `sha256=<64 hex digits>`; the hex digits may be in either case.
fn decode(header: &str) -> Result<[u8; 32], SignatureError> {
    let digits = header
        .strip_prefix(PREFIX)
        .ok_or(SignatureError::Malformed)?;
    let mut out = [0u8; 32];
    hex::decode_to_slice(digits, &mut out).map_err(|_| SignatureError::Malformed)?;
    Ok(out)
}

/// An HMAC-SHA256 keyed with `secret`, with the key prepared as RFC 2104 says (hashed when
/// longer than a block, zero-padded otherwise). Doing that here keeps the constructor
/// infallible, where `new_from_slice` returns a `Result` that can never be an error.
fn keyed(secret: &[u8]) -> HmacSha256 {
    let mut key = Key::<HmacSha256>::default();
    if secret.len() > key.len() {
        let digest = Sha256::digest(secret);
        key[..digest.len()].copy_from_slice(&digest);
    } else {
        key[..secret.len()].copy_from_slice(secret);
    }
    <HmacSha256 as KeyInit>::new(&key)
}

#[cfg(test)]
mod tests {
    use super::*;

    const SECRET: &[u8] = b"It's a Secret to Everybody";
    const BODY: &[u8] = b"Hello, World!";
    const DOCUMENTED: &str =
        "sha256=757107ea0eb2509fc211221cce984b8a37570b6d7586c22c46f4379c8b043e17";

    #[test]
    fn sign_matches_githubs_documented_vector() {
        assert_eq!(sign(SECRET, BODY), DOCUMENTED);
    }

    #[test]
    fn verify_accepts_githubs_documented_vector() {
        assert_eq!(verify(&[SECRET], Some(DOCUMENTED), true, BODY), Ok(()));
    }

    #[test]
    fn sign_matches_rfc4231_vector_with_a_key_longer_than_a_block() {
        // RFC 4231 test case 6: a 131-byte key must be hashed first.
        let key = [0xaa_u8; 131];
        let data = b"Test Using Larger Than Block-Size Key - Hash Key First";
        assert_eq!(
            sign(&key, data),
            "sha256=60e431591ee0b67f0d8a26aacbf5b77f8e0bc6213728c5140546040f0ee37f54"
        );
    }

    #[test]
    fn sign_matches_rfc4231_vector_with_a_short_key() {
        // RFC 4231 test case 2.
        assert_eq!(
            sign(b"Jefe", b"what do ya want for nothing?"),
            "sha256=5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843"
        );
    }

    #[test]
    fn one_tampered_byte_is_a_mismatch() {
        let mut body = BODY.to_vec();
        body[7] ^= 0x01;
        assert_eq!(
            verify(&[SECRET], Some(DOCUMENTED), false, &body),
            Err(SignatureError::Mismatch)
        );
    }

    #[test]
    fn tampered_signature_digit_is_a_mismatch() {
        let tampered = DOCUMENTED.replace("757107", "757108");
        assert_eq!(
            verify(&[SECRET], Some(&tampered), false, BODY),
            Err(SignatureError::Mismatch)
        );
    }

    #[test]
    fn wrong_secret_is_a_mismatch() {
        assert_eq!(
            verify(&[b"another secret"], Some(DOCUMENTED), false, BODY),
            Err(SignatureError::Mismatch)
        );
    }

    #[test]
    fn second_secret_is_accepted_during_rotation() {
        let secrets = ["the new secret".as_bytes(), SECRET];
        assert_eq!(verify(&secrets, Some(DOCUMENTED), false, BODY), Ok(()));
        let secrets = vec![String::from("old"), String::from("new")];
        let header = sign(b"new", BODY);
        assert_eq!(verify(&secrets, Some(&header), false, BODY), Ok(()));
    }

    #[test]
    fn no_configured_secret_never_verifies() {
        let none: [&[u8]; 0] = [];
        assert_eq!(
            verify(&none, Some(DOCUMENTED), false, BODY),
            Err(SignatureError::Mismatch)
        );
    }

    #[test]
    fn empty_secret_is_never_accepted() {
        let header = sign(b"", BODY);
        assert_eq!(
            verify(&[b""], Some(&header), false, BODY),
            Err(SignatureError::Mismatch)
        );
    }

    #[test]
    fn missing_header_is_missing() {
        assert_eq!(
            verify(&[SECRET], None, false, BODY),
            Err(SignatureError::Missing)
        );
    }

    #[test]
    fn sha1_header_alone_is_refused() {
        assert_eq!(
            verify(&[SECRET], None, true, BODY),
            Err(SignatureError::Sha1Only)
        );
    }

    #[test]
    fn uppercase_hex_is_accepted() {
        let upper = format!("sha256={}", DOCUMENTED["sha256=".len()..].to_uppercase());
        assert_eq!(verify(&[SECRET], Some(&upper), false, BODY), Ok(()));
    }

    #[test]
    fn empty_body_verifies_with_its_own_signature_only() {
        let header = sign(SECRET, b"");
        assert_eq!(verify(&[SECRET], Some(&header), false, b""), Ok(()));
        assert_eq!(
            verify(&[SECRET], Some(DOCUMENTED), false, b""),
            Err(SignatureError::Mismatch)
        );
    }

    #[test]
    fn malformed_headers_are_malformed() {
        let digits = &DOCUMENTED["sha256=".len()..];
        let cases = [
            "sha256=xyz".to_owned(),
            "sha256=".to_owned(),
            "".to_owned(),
            digits.to_owned(),
            format!("sha256={}", &digits[..62]),
            format!("sha256={digits}00"),
            format!("sha256={}zz", &digits[..62]),
            format!("SHA256={digits}"),
            format!("sha1={}", &digits[..40]),
            format!(" sha256={digits}"),
            format!("sha256={digits} "),
            format!("sha256= {}", &digits[1..]),
        ];
        for header in &cases {
            assert_eq!(
                verify(&[SECRET], Some(header), false, BODY),
                Err(SignatureError::Malformed),
                "{header:?}"
            );
        }
    }

    #[test]
    fn error_messages_reveal_nothing_about_the_expected_value() {
        let expected = &DOCUMENTED["sha256=".len()..];
        for error in [
            SignatureError::Missing,
            SignatureError::Malformed,
            SignatureError::Sha1Only,
            SignatureError::Mismatch,
        ] {
            let message = error.to_string();
            assert!(message.contains("X-Hub-Signature"), "{message}");
            assert!(!message.contains(&expected[..8]), "{message}");
        }
        assert!(
            SignatureError::Missing
                .to_string()
                .contains("DEPLOYBOT_WEBHOOK_SECRET")
        );
    }
}
