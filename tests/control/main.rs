//! Deploy control end to end, through the real `deploybot serve` binary and the fake
//! GitHub, on both databases: locks, dry runs, parameters, freeze windows and the one
//! live reply of each command.

#[allow(dead_code)]
#[path = "../github/bot.rs"]
mod bot;
#[path = "../common/mod.rs"]
mod common;

mod api;
mod audit;
mod commands;
mod gates;
mod holds;
mod metric_gates;
mod replies;
mod rollback;
mod watch;
