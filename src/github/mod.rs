pub mod command;
pub mod events;
pub mod signature;
