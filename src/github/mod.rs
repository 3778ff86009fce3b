//! Everything that speaks to GitHub. Imports run one way, from the top:
//! `dispatch` → `reports`, `jobs`, `commands` → `context` → `store` → `outbox` → `client`;
//! `rules` → `commands` → `routing`, `image`; `webhook` reads events and recovers deliveries.

pub mod checks;
pub mod client;
pub mod commands;
pub mod context;
pub mod dispatch;
pub mod gates;
pub mod image;
mod jobs;
mod markdown;
pub mod outbox;
mod reports;
pub mod routing;
pub mod rules;
pub mod store;
pub mod webhook;
