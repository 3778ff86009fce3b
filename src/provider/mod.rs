//! Providers change the running system. Each implements the domain's provider port
//! ([`crate::deploy::provider`]), which a strategy drives through slots: start a release in
//! a slot, check it, shift traffic between slots, retire a slot. Only this module touches
//! the running system (processes, health endpoints, metrics servers).

pub mod catalog;
pub mod child_env;
pub mod command;
pub mod health;
pub mod noop;
pub mod process;
pub mod prometheus;

pub use child_env::SecretMask;
