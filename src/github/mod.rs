pub mod client;
pub mod command;
pub mod events;
pub mod jobs;
pub mod outbox;
pub mod redeliver;
pub mod rules;
pub mod signature;
