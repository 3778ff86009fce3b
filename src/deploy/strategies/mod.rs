//! The four strategies. Each is a sequence of provider phases with health gates, and
//! each knows how to put the previous release back when a phase fails.

mod blue_green;
mod canary;
mod recreate;
mod rollback;
mod rolling;
mod slots;

pub use blue_green::BlueGreen;
pub use canary::Canary;
pub use recreate::Recreate;
pub use rollback::FastRollback;
pub use rolling::Rolling;

use super::strategy::Strategy;

/// The names of every strategy, as configured and as sent in API requests.
pub const NAMES: [&str; 4] = ["rolling", "recreate", "blue-green", "canary"];

/// The strategy called `name`, if there is one.
pub fn by_name(name: &str) -> Option<&'static dyn Strategy> {
    match name {
        "rolling" => Some(&Rolling),
        "recreate" => Some(&Recreate),
        "blue-green" => Some(&BlueGreen),
        "canary" => Some(&Canary),
        _ => None,
    }
}
