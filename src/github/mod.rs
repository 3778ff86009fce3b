pub mod client;
pub mod commands;
pub mod outbox;
pub mod rules;
pub mod store;
pub mod webhook;
