//! What arrives from GitHub's webhooks: the signature check over the raw body, the events
//! deploybot acts on, and the recovery of deliveries GitHub could not hand over.

pub mod events;
pub mod redeliver;
pub mod signature;
