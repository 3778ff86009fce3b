//! The configuration parser (`Config::from_toml_str`) with an empty environment: any text
//! is a config or an error that names the key, never a panic.
#![no_main]

use deploybot::config::Config;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    match Config::from_toml_str(text, &|_| None) {
        Ok(config) => {
            let _ = config.describe();
            for instance in &config.instances {
                let _ = instance.matches_push("main");
                let _ = instance.matches_tag("v1.2.3");
            }
        }
        Err(error) => {
            let _ = error.to_string();
        }
    }
});
