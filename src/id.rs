//! TypeIDs: a prefix, `_`, then the 26-character Crockford base32 form of a UUIDv7
//! (`dep_01h455vb4pex5vsknk084sn02q`). Typed so an instance id can never be passed
//! where a deployment id is expected.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Deserializer, Serialize, Serializer};
use type_safe_id::{StaticType, TypeSafeId};

/// A TypeID that could not be read; the message names the text and what was expected.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error(
    "{input:?} is not a valid {expected} id: {reason} (expected `{expected}_` followed by 26 base32 characters)"
)]
pub struct IdError {
    pub input: String,
    pub expected: &'static str,
    pub reason: String,
}

macro_rules! typed_id {
    ($(#[$doc:meta])* $name:ident, $marker:ident, $prefix:literal) => {
        #[derive(Default, Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
        #[doc(hidden)]
        pub struct $marker;

        impl StaticType for $marker {
            const TYPE: &'static str = $prefix;
        }

        $(#[$doc])*
        #[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
        pub struct $name(TypeSafeId<$marker>);

        impl $name {
            /// The prefix every id of this kind starts with.
            pub const PREFIX: &'static str = $prefix;

            /// A new, time-ordered id.
            pub fn new() -> Self {
                Self(TypeSafeId::new())
            }

            /// Parses text, naming the text and the expected prefix on failure.
            pub fn parse(text: &str) -> Result<Self, IdError> {
                text.parse()
            }

            /// The UUIDv7 behind the id.
            pub fn uuid(&self) -> uuid::Uuid {
                self.0.uuid()
            }
        }

        impl Default for $name {
            fn default() -> Self {
                Self::new()
            }
        }

        impl FromStr for $name {
            type Err = IdError;

            fn from_str(text: &str) -> Result<Self, IdError> {
                let error = |reason: &str| IdError {
                    input: text.chars().take(80).collect(),
                    expected: $prefix,
                    reason: reason.to_string(),
                };
                let Some((prefix, _)) = text.rsplit_once('_') else {
                    return Err(error("it has no `_` separating prefix and suffix"));
                };
                if prefix != $prefix {
                    return Err(error(&format!("the prefix is {prefix:?}")));
                }
                let id = text
                    .parse::<TypeSafeId<$marker>>()
                    .map_err(|e| error(&e.to_string()))?;
                if id.uuid().get_version_num() != 7 {
                    return Err(error("it does not encode a UUIDv7"));
                }
                Ok(Self(id))
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                fmt::Display::fmt(&self.0, f)
            }
        }

        impl fmt::Debug for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                fmt::Display::fmt(&self.0, f)
            }
        }

        impl Serialize for $name {
            fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
                s.collect_str(self)
            }
        }

        impl<'de> Deserialize<'de> for $name {
            fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
                let text = String::deserialize(d)?;
                text.parse().map_err(serde::de::Error::custom)
            }
        }
    };
}

typed_id!(
    /// The stable id of a configured deploy target (`inst_…`).
    InstanceId,
    InstanceTag,
    "inst"
);
typed_id!(
    /// The id of one deployment attempt (`dep_…`).
    DeploymentId,
    DeploymentTag,
    "dep"
);
typed_id!(
    /// The id of an immutable release (`rel_…`).
    ReleaseId,
    ReleaseTag,
    "rel"
);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trips_and_has_the_documented_shape() {
        let id = DeploymentId::new();
        let text = id.to_string();
        assert!(text.starts_with("dep_"), "{text}");
        assert_eq!(text.len(), 4 + 26);
        assert_eq!(DeploymentId::parse(&text).unwrap(), id);
        assert_eq!(id.uuid().get_version_num(), 7);
    }

    #[test]
    fn ids_are_time_ordered() {
        let a = ReleaseId::new();
        std::thread::sleep(std::time::Duration::from_millis(2));
        let b = ReleaseId::new();
        assert!(a.to_string() < b.to_string());
    }

    #[test]
    fn refuses_a_wrong_prefix_and_names_it() {
        let rel = ReleaseId::new().to_string();
        let err = DeploymentId::parse(&rel).unwrap_err();
        assert_eq!(err.expected, "dep");
        assert!(err.to_string().contains("\"rel\""), "{err}");
    }

    #[test]
    fn refuses_malformed_text() {
        for bad in [
            "",
            "dep",
            "dep_",
            "dep_01h455vb4pex5vsknk084sn02",
            "dep_01h455vb4pex5vsknk084sn02qq",
            "dep_81h455vb4pex5vsknk084sn02q",
            "dep_01h455vb4pex5vsknk084sn0uq",
            "DEP_01h455vb4pex5vsknk084sn02q",
        ] {
            assert!(DeploymentId::parse(bad).is_err(), "{bad:?} was accepted");
        }
    }

    #[test]
    fn refuses_a_uuid_that_is_not_v7() {
        // The TypeID spec example encodes a UUIDv4-looking value with version nibble 0.
        let err = InstanceId::parse("inst_00000000000000000000000000").unwrap_err();
        assert!(err.reason.contains("UUIDv7"), "{err}");
    }

    #[test]
    fn serde_uses_the_text_form() {
        let id = InstanceId::new();
        let json = serde_json::to_string(&id).unwrap();
        assert_eq!(json, format!("\"{id}\""));
        let back: InstanceId = serde_json::from_str(&json).unwrap();
        assert_eq!(back, id);
        assert!(serde_json::from_str::<InstanceId>("\"dep_01h455vb4pex5vsknk084sn02q\"").is_err());
    }
}
