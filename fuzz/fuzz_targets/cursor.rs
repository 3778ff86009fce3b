//! The opaque keyset cursor from `?cursor=` of the list routes, and the TypeIDs of the API
//! paths: any text is decoded or refused as an invalid request, never a panic.
#![no_main]

use deploybot::deploy::{DeploymentId, Error, InstanceId, ReleaseId};
use libfuzzer_sys::fuzz_target;

/// The instance the seed cursors in fuzz/corpus/cursor/ belong to.
const INSTANCE: &str = "inst_01h455vb4pex5vsknk084sn02q";

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let Ok(instance) = InstanceId::parse(INSTANCE) else {
        panic!("the seed instance id is valid");
    };
    let (deployments, releases) = deploybot::store::fuzz_decode_cursor(text, instance);
    match deployments {
        Ok((_, id)) => assert!(id.starts_with("dep_"), "{id:?}"),
        Err(error) => assert!(matches!(error, Error::InvalidRequest(_)), "{error}"),
    }
    match releases {
        Ok(version) => assert!(version >= 1, "{version}"),
        Err(error) => assert!(matches!(error, Error::InvalidRequest(_)), "{error}"),
    }
    if let Ok(id) = InstanceId::parse(text) {
        assert!(InstanceId::parse(&id.to_string()).is_ok_and(|back| back == id));
    }
    let _ = DeploymentId::parse(text);
    let _ = ReleaseId::parse(text);
});
