//! Pull-request comment commands. The parser turns a comment into [`Command`]s, the route
//! resolves each to a stored [`CommentCommand`] of the comment's job (outbox work), and
//! the job runs them from the outbox: the checks they share in `run` (permission, the
//! environment's `deployers`, the pull request), each command's own work in its file
//! (`deploy` with `/noop`, `rollback`, `cancel`, `lock` with `/unlock` and `/locks`,
//! `approve`, `help`), dispatched by an exhaustive `match`. Deploys, dry runs and rollbacks pass the
//! Service's admission (locks and freezes) before they are queued.
//!
//! Adding a command: its [`Command`] variant and parser case, its [`CommentCommand`]
//! variant in `outbox/work.rs`, its file with `USAGE` and `handle`, its row in [`HELP`],
//! in docs/commands.md and the README's table, and in [`ParseError::UnknownCommand`]'s
//! list; the compiler points at the `match`es that need its arm.
//!
//! [`CommentCommand`]: crate::github::outbox::CommentCommand

mod approve;
mod cancel;
mod deploy;
mod deployers;
mod help;
mod lock;
mod markdown;
mod parser;
mod reviews;
mod rollback;
mod route;
mod run;

pub use help::HELP;
pub use parser::{Command, MAX_LOCK_FOR, ParseError, RollbackTo, parse, parse_prefixed};
pub use route::{MAX_COMMANDS, route_comment};
pub use run::comment;
