//! Opaque keyset cursors. A cursor names the list it belongs to (deployments or releases
//! of one instance, the audit trail of a tenant or of one instance) and the last key of the
//! page it ends; anything else is refused with
//! an invalid-request error rather than silently restarting or failing later.

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use serde::{Deserialize, Serialize};

use crate::deploy::{Error, InstanceId};

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct Wire {
    /// "dep", "rel" or "aud": which list.
    k: String,
    /// The instance whose list this is ("" for a tenant's whole audit trail).
    i: String,
    /// Deployments: created_at in microseconds since the epoch.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    t: Option<i64>,
    /// Deployments: the id that breaks ties between equal timestamps.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    d: Option<String>,
    /// Releases: the version; audit trail: the event's id.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    v: Option<i64>,
}

/// The position after the last deployment of a page: (created_at µs, id).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct DeploymentKey {
    pub created_at_micros: i64,
    pub id: String,
}

fn encode(wire: &Wire) -> String {
    // Serializing this plain struct cannot fail.
    let json = serde_json::to_vec(wire).unwrap_or_default();
    URL_SAFE_NO_PAD.encode(json)
}

fn invalid(why: &str) -> Error {
    Error::InvalidRequest(format!(
        "cursor is invalid: {why}; use the next_cursor of the previous page of the same list, or omit it to start at the first page"
    ))
}

fn decode(cursor: &str, kind: &str, instance: &str) -> Result<Wire, Error> {
    if cursor.len() > 512 {
        return Err(invalid("it is too long"));
    }
    let bytes = URL_SAFE_NO_PAD
        .decode(cursor)
        .map_err(|_| invalid("it is not a cursor this server produced"))?;
    let wire: Wire = serde_json::from_slice(&bytes)
        .map_err(|_| invalid("it is not a cursor this server produced"))?;
    if wire.k != kind || wire.i != instance {
        return Err(invalid("it belongs to another list"));
    }
    Ok(wire)
}

pub(crate) fn encode_deployment(instance: InstanceId, key: &DeploymentKey) -> String {
    encode(&Wire {
        k: "dep".into(),
        i: instance.to_string(),
        t: Some(key.created_at_micros),
        d: Some(key.id.clone()),
        v: None,
    })
}

/// 9999-12-31T23:59:59.999999Z in microseconds: no deployment is created before the epoch
/// or after this, and both databases can compare with any time in between (PostgreSQL
/// refuses times before 4713 BC, which a forged cursor could otherwise name).
const LAST_MICROS: i64 = 253_402_300_799_999_999;

pub(crate) fn decode_deployment(
    cursor: &str,
    instance: InstanceId,
) -> Result<DeploymentKey, Error> {
    let wire = decode(cursor, "dep", &instance.to_string())?;
    match (wire.t, wire.d, wire.v) {
        (Some(t), Some(_), None) if !(0..=LAST_MICROS).contains(&t) => {
            Err(invalid("its time is out of range"))
        }
        (Some(created_at_micros), Some(id), None) if id.starts_with("dep_") => Ok(DeploymentKey {
            created_at_micros,
            id,
        }),
        _ => Err(invalid("it is not a deployments cursor")),
    }
}

pub(crate) fn encode_release(instance: InstanceId, version: i64) -> String {
    encode(&Wire {
        k: "rel".into(),
        i: instance.to_string(),
        t: None,
        d: None,
        v: Some(version),
    })
}

pub(crate) fn decode_release(cursor: &str, instance: InstanceId) -> Result<i64, Error> {
    let wire = decode(cursor, "rel", &instance.to_string())?;
    match (wire.t, wire.d, wire.v) {
        (None, None, Some(version)) if version > 0 => Ok(version),
        _ => Err(invalid("it is not a releases cursor")),
    }
}

fn audit_list(instance: Option<InstanceId>) -> String {
    instance.map(|i| i.to_string()).unwrap_or_default()
}

/// The position after the last event of an audit page (of one instance's events when
/// `instance` is given): the event's id.
pub(crate) fn encode_audit(instance: Option<InstanceId>, id: i64) -> String {
    encode(&Wire {
        k: "aud".into(),
        i: audit_list(instance),
        t: None,
        d: None,
        v: Some(id),
    })
}

pub(crate) fn decode_audit(cursor: &str, instance: Option<InstanceId>) -> Result<i64, Error> {
    let wire = decode(cursor, "aud", &audit_list(instance))?;
    match (wire.t, wire.d, wire.v) {
        (None, None, Some(id)) if id > 0 => Ok(id),
        _ => Err(invalid("it is not an audit trail cursor")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trips() {
        let inst = InstanceId::new();
        let key = DeploymentKey {
            created_at_micros: 1_700_000_000_123_456,
            id: "dep_01h455vb4pex5vsknk084sn02q".into(),
        };
        assert_eq!(
            decode_deployment(&encode_deployment(inst, &key), inst).unwrap(),
            key
        );
        assert_eq!(decode_release(&encode_release(inst, 42), inst).unwrap(), 42);
    }

    #[test]
    fn refuses_foreign_and_forged_cursors() {
        let inst = InstanceId::new();
        let other = InstanceId::new();
        let rel = encode_release(inst, 3);
        for (cursor, instance) in [
            (rel.as_str(), other),
            ("not base64!", inst),
            ("", inst),
            ("eyJrIjoiZGVwIn0", inst),
        ] {
            let err = decode_release(cursor, instance).unwrap_err();
            assert!(matches!(err, Error::InvalidRequest(_)), "{cursor}: {err}");
            assert!(err.to_string().contains("cursor is invalid"), "{err}");
        }
        // A releases cursor is not a deployments cursor.
        assert!(decode_deployment(&rel, inst).is_err());
        // Negative or zero versions are forged.
        assert!(decode_release(&encode_release(inst, 0), inst).is_err());
    }

    #[test]
    fn audit_cursors_belong_to_their_list() {
        let inst = InstanceId::new();
        let all = encode_audit(None, 7);
        let one = encode_audit(Some(inst), 7);
        assert_eq!(decode_audit(&all, None).unwrap(), 7);
        assert_eq!(decode_audit(&one, Some(inst)).unwrap(), 7);
        assert!(decode_audit(&all, Some(inst)).is_err());
        assert!(decode_audit(&one, None).is_err());
        assert!(decode_audit(&one, Some(InstanceId::new())).is_err());
        assert!(decode_audit(&encode_release(inst, 7), Some(inst)).is_err());
        assert!(decode_audit(&encode_audit(None, 0), None).is_err());
    }
}
