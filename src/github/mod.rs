pub mod client;
pub mod commands;
pub mod events;
pub mod outbox;
pub mod redeliver;
pub mod rules;
pub mod signature;
pub mod store;
