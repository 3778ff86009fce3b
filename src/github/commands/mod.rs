//! Pull-request comment commands: the parser, and the job that runs a comment's commands.

mod parser;
mod run;

pub use parser::{Command, HELP, ParseError, RollbackTo, parse};
pub use run::comment;
