//! Commands in pull request comments (`/deploy`, `/rollback`, `/cancel`, `/help`), parsed by
//! a pure function so every rule can be tested with a string.
//!
//! Markdown is read with `pulldown-cmark` (no default features: three small dependencies),
//! not by hand: a command must be what the reader sees as a line of text, and CommonMark has
//! too many ways to hide one (lazy block-quote continuation, fences inside lists, HTML blocks,
//! code spans over several lines, tables) for a line-by-line stripper to agree with GitHub.
//! The parser's source offsets tell whether a text starts its line.

use std::ops::Range;

use pulldown_cmark::{Event, Options, Parser, Tag, TagEnd};

/// A command from a comment. `environment: None` means "the repository's only instance that
/// accepts commands"; the router decides, because only it knows the instances.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Command {
    /// `/deploy [to] [ENV] [--strategy NAME]` (also `--strategy=NAME`): deploy the pull
    /// request's head commit. The strategy name is lower-cased; the router checks it exists.
    Deploy {
        environment: Option<String>,
        strategy: Option<String>,
    },
    /// `/rollback [ENV] [VERSION|previous]`: make an earlier release active again.
    Rollback {
        environment: Option<String>,
        target: RollbackTo,
    },
    /// `/cancel [ENV] [--queued]`: cancel the running deployment (restoring the release
    /// it replaces), or with `--queued` the deployments waiting in the queue.
    Cancel {
        environment: Option<String>,
        queued: bool,
    },
    /// `/help`: reply with [`HELP`](super::HELP). Arguments are ignored.
    Help,
}

/// Which release a rollback restores.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RollbackTo {
    /// The release that was active before the current one (the default).
    Previous,
    /// A release version of the instance, written `12` or `v12`; always at least 1.
    Version(i64),
}

/// A known command with arguments it cannot accept. The message is meant for the commenter:
/// it names the problem and shows the right syntax. User text in it is shown as inline code
/// (so it cannot mention anyone or inject markdown) and cut to a readable length.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ParseError {
    /// Not produced by [`parse`], which ignores unknown `/word` lines so paths like
    /// `/usr/bin` never get a reply; for callers that know the text was meant for deploybot.
    #[error(
        "{} is not a deploybot command: use `/deploy`, `/rollback`, `/cancel` or `/help`",
        code(&format!("/{}", .0))
    )]
    UnknownCommand(String),
    /// A word the command has no place for.
    #[error("`/{command}` does not take {}: use `{}`", code(.argument), usage(.command))]
    UnexpectedArgument {
        command: &'static str,
        argument: String,
    },
    /// An option or keyword at the end of the line (or before another option) without its value.
    #[error("{} needs a value after it: use `{}`", code(.flag), usage(.command))]
    MissingValue { command: &'static str, flag: String },
    /// An option the command does not have.
    #[error("`/{command}` has no option {}: use `{}`", code(.flag), usage(.command))]
    UnknownFlag { command: &'static str, flag: String },
    /// The same option twice.
    #[error("{} is given more than once: use `{}`", code(.flag), usage(.command))]
    DuplicateFlag { command: &'static str, flag: String },
    /// The rollback target is neither `previous` nor a version like `12` or `v12`.
    #[error(
        "{} is not a release version: use `{}` with a version like `12` or `v12`, or `previous`",
        code(.0),
        usage("rollback")
    )]
    InvalidVersion(String),
    /// An environment name with characters GitHub does not allow, or too long.
    #[error(
        "{} is not an environment name (1 to 255 letters, digits, `.`, `_` or `-`): use `{}`",
        code(.environment),
        usage(.command)
    )]
    InvalidEnvironment {
        command: &'static str,
        environment: String,
    },
    /// A strategy name with characters no strategy has.
    #[error(
        "{} is not a strategy name: use `{}`, e.g. `--strategy canary`",
        code(.0),
        usage("deploy")
    )]
    InvalidStrategy(String),
}

/// Every command in a comment, in order. A command starts a line of text (leading spaces
/// allowed); text in code blocks, inline code, block quotes, HTML, headings, tables and
/// links never triggers. `/word` lines that are not commands (paths, `/deployment`) are
/// ignored; a known command with bad arguments is an `Err` so the commenter gets help.
pub fn parse(comment: &str) -> Vec<Result<Command, ParseError>> {
    command_lines(comment)
        .iter()
        .filter_map(|line| parse_line(line))
        .collect()
}

/// The rendered text of every line that starts with `/` at the start of a source line,
/// outside the blocks and spans that never trigger a command.
fn command_lines(comment: &str) -> Vec<String> {
    let options = Options::ENABLE_TABLES
        | Options::ENABLE_STRIKETHROUGH
        | Options::ENABLE_TASKLISTS
        | Options::ENABLE_FOOTNOTES;
    let mut lines = Vec::new();
    // Open blocks whose text never triggers (quotes, code, HTML, headings, tables …).
    let mut hidden: usize = 0;
    // The next inline event is the first of its line.
    let mut first_on_line = true;
    // The line being collected, when it started with `/`.
    let mut line: Option<String> = None;
    // Open strikethroughs: struck-out words are not arguments.
    let mut struck: usize = 0;

    for (event, range) in Parser::new_ext(comment, options).into_offset_iter() {
        match event {
            Event::Start(tag) if is_inline(&tag) => {
                first_on_line = false;
                if tag == Tag::Strikethrough {
                    struck += 1;
                }
            }
            Event::End(tag) if is_inline_end(tag) => {
                if tag == TagEnd::Strikethrough {
                    struck = struck.saturating_sub(1);
                }
            }
            Event::Start(tag) => {
                lines.extend(line.take());
                first_on_line = true;
                if hides(&tag) {
                    hidden += 1;
                }
            }
            Event::End(tag) => {
                lines.extend(line.take());
                first_on_line = true;
                if hides_end(tag) {
                    hidden = hidden.saturating_sub(1);
                }
            }
            Event::SoftBreak | Event::HardBreak => {
                lines.extend(line.take());
                first_on_line = true;
            }
            Event::Text(text) if hidden == 0 => {
                if first_on_line {
                    first_on_line = false;
                    if starts_line_with_slash(comment, range) {
                        line = Some(text.into_string());
                    }
                } else if let Some(line) = line.as_mut().filter(|_| struck == 0) {
                    line.push_str(&text);
                }
            }
            Event::Code(text) if hidden == 0 => {
                if let Some(line) = line.as_mut().filter(|_| struck == 0) {
                    line.push_str(&text);
                }
                first_on_line = false;
            }
            // Inline HTML (comments, tags) is not shown, so it is left out of the line.
            _ => first_on_line = false,
        }
    }
    lines.extend(line);
    lines
}

/// Whether the text at `range` starts with `/` and only spaces or tabs precede it on its
/// source line (so not `- /deploy`, `\/deploy` or `**x** /deploy`).
fn starts_line_with_slash(comment: &str, range: Range<usize>) -> bool {
    let (Some(before), Some(rest)) = (comment.get(..range.start), comment.get(range.start..))
    else {
        return false;
    };
    let line_start = before.rfind('\n').map_or(0, |newline| newline + 1);
    rest.starts_with('/')
        && before[line_start..]
            .bytes()
            .all(|b| b == b' ' || b == b'\t')
}

fn is_inline(tag: &Tag<'_>) -> bool {
    matches!(
        tag,
        Tag::Emphasis
            | Tag::Strong
            | Tag::Strikethrough
            | Tag::Superscript
            | Tag::Subscript
            | Tag::Link { .. }
            | Tag::Image { .. }
    )
}

fn is_inline_end(tag: TagEnd) -> bool {
    matches!(
        tag,
        TagEnd::Emphasis
            | TagEnd::Strong
            | TagEnd::Strikethrough
            | TagEnd::Superscript
            | TagEnd::Subscript
            | TagEnd::Link
            | TagEnd::Image
    )
}

fn hides(tag: &Tag<'_>) -> bool {
    matches!(
        tag,
        Tag::BlockQuote(_)
            | Tag::CodeBlock(_)
            | Tag::HtmlBlock
            | Tag::Heading { .. }
            | Tag::Table(_)
            | Tag::FootnoteDefinition(_)
            | Tag::MetadataBlock(_)
    )
}

fn hides_end(tag: TagEnd) -> bool {
    matches!(
        tag,
        TagEnd::BlockQuote(_)
            | TagEnd::CodeBlock
            | TagEnd::HtmlBlock
            | TagEnd::Heading(_)
            | TagEnd::Table
            | TagEnd::FootnoteDefinition
            | TagEnd::MetadataBlock(_)
    )
}

/// Parses one line that starts with `/`; None when its first word is not a command name.
fn parse_line(line: &str) -> Option<Result<Command, ParseError>> {
    let mut words = line.split_whitespace();
    let name = words.next()?.strip_prefix('/')?;
    let args: Vec<&str> = words.collect();
    if name.eq_ignore_ascii_case("deploy") {
        Some(parse_deploy(&args))
    } else if name.eq_ignore_ascii_case("rollback") {
        Some(parse_rollback(&args))
    } else if name.eq_ignore_ascii_case("cancel") {
        Some(parse_cancel(&args))
    } else if name.eq_ignore_ascii_case("help") {
        Some(Ok(Command::Help))
    } else {
        None
    }
}

fn parse_deploy(args: &[&str]) -> Result<Command, ParseError> {
    const COMMAND: &str = "deploy";
    let mut environment = None;
    let mut strategy = None;
    let mut to = false;
    let mut args = args.iter().copied().peekable();
    while let Some(arg) = args.next() {
        if arg.starts_with('-') {
            let (flag, inline_value) = match arg.split_once('=') {
                Some((flag, value)) => (flag, Some(value)),
                None => (arg, None),
            };
            if !flag.eq_ignore_ascii_case("--strategy") {
                return Err(ParseError::UnknownFlag {
                    command: COMMAND,
                    flag: flag.to_owned(),
                });
            }
            if strategy.is_some() {
                return Err(ParseError::DuplicateFlag {
                    command: COMMAND,
                    flag: "--strategy".to_owned(),
                });
            }
            let value = inline_value
                .or_else(|| args.next_if(|next| !next.starts_with('-')))
                .filter(|value| !value.is_empty())
                .ok_or_else(|| ParseError::MissingValue {
                    command: COMMAND,
                    flag: "--strategy".to_owned(),
                })?;
            if !is_name(value) {
                return Err(ParseError::InvalidStrategy(value.to_owned()));
            }
            strategy = Some(value.to_ascii_lowercase());
        } else if !to && environment.is_none() && arg.eq_ignore_ascii_case("to") {
            to = true;
        } else if environment.is_none() {
            environment = Some(environment_name(COMMAND, arg)?);
        } else {
            return Err(ParseError::UnexpectedArgument {
                command: COMMAND,
                argument: arg.to_owned(),
            });
        }
    }
    if to && environment.is_none() {
        return Err(ParseError::MissingValue {
            command: COMMAND,
            flag: "to".to_owned(),
        });
    }
    Ok(Command::Deploy {
        environment,
        strategy,
    })
}

fn parse_rollback(args: &[&str]) -> Result<Command, ParseError> {
    const COMMAND: &str = "rollback";
    for arg in args {
        if arg.starts_with('-') && rollback_target(arg).is_none() {
            return Err(ParseError::UnknownFlag {
                command: COMMAND,
                flag: (*arg).to_owned(),
            });
        }
    }
    let (environment, target) = match args {
        [] => (None, RollbackTo::Previous),
        [one] => match rollback_target(one) {
            Some(target) => (None, target?),
            None => (Some(environment_name(COMMAND, one)?), RollbackTo::Previous),
        },
        [environment, target] => {
            let environment = environment_name(COMMAND, environment)?;
            let target = rollback_target(target)
                .unwrap_or_else(|| Err(ParseError::InvalidVersion((*target).to_owned())))?;
            (Some(environment), target)
        }
        [_, _, extra, ..] => {
            return Err(ParseError::UnexpectedArgument {
                command: COMMAND,
                argument: (*extra).to_owned(),
            });
        }
    };
    Ok(Command::Rollback {
        environment,
        target,
    })
}

/// `previous`, `12` or `v12`; None when the word does not look like a rollback target at
/// all (so it may be an environment), Err when it looks like a version but is not one.
fn rollback_target(word: &str) -> Option<Result<RollbackTo, ParseError>> {
    if word.eq_ignore_ascii_case("previous") {
        return Some(Ok(RollbackTo::Previous));
    }
    let digits = word
        .strip_prefix(['v', 'V'])
        .or_else(|| word.strip_prefix('-'))
        .unwrap_or(word);
    if digits.is_empty() || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    let version = (!word.starts_with('-'))
        .then(|| digits.parse::<i64>().ok())
        .flatten()
        .filter(|version| *version >= 1);
    Some(
        version
            .map(RollbackTo::Version)
            .ok_or_else(|| ParseError::InvalidVersion(word.to_owned())),
    )
}

fn parse_cancel(args: &[&str]) -> Result<Command, ParseError> {
    const COMMAND: &str = "cancel";
    let mut queued = false;
    let mut words = Vec::with_capacity(args.len());
    for arg in args {
        if !arg.starts_with('-') {
            words.push(*arg);
        } else if !arg.eq_ignore_ascii_case("--queued") {
            return Err(ParseError::UnknownFlag {
                command: COMMAND,
                flag: (*arg).to_owned(),
            });
        } else if queued {
            return Err(ParseError::DuplicateFlag {
                command: COMMAND,
                flag: "--queued".to_owned(),
            });
        } else {
            queued = true;
        }
    }
    match words.as_slice() {
        [] => Ok(Command::Cancel {
            environment: None,
            queued,
        }),
        [environment] => Ok(Command::Cancel {
            environment: Some(environment_name(COMMAND, environment)?),
            queued,
        }),
        [_, extra, ..] => Err(ParseError::UnexpectedArgument {
            command: COMMAND,
            argument: (*extra).to_owned(),
        }),
    }
}

fn environment_name(command: &'static str, word: &str) -> Result<String, ParseError> {
    if is_name(word) {
        Ok(word.to_owned())
    } else {
        Err(ParseError::InvalidEnvironment {
            command,
            environment: word.to_owned(),
        })
    }
}

/// `[A-Za-z0-9._-]{1,255}`: the names environments and strategies may have.
fn is_name(word: &str) -> bool {
    (1..=255).contains(&word.len())
        && word
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-'))
}

/// The syntax of the command named `command`, from its file.
fn usage(command: &str) -> &'static str {
    match command {
        "deploy" => super::deploy::USAGE,
        "rollback" => super::rollback::USAGE,
        "cancel" => super::cancel::USAGE,
        _ => super::help::USAGE,
    }
}

/// At most this many characters of a commenter's text are quoted back.
const QUOTE_LIMIT: usize = 64;

/// User text cut to [`QUOTE_LIMIT`] characters, with `…` when it was cut.
fn plain(text: &str) -> String {
    match text.char_indices().nth(QUOTE_LIMIT) {
        Some((end, _)) => format!("{}…", &text[..end]),
        None => text.to_owned(),
    }
}

/// User text as a markdown code span that nothing inside can close early (the fence is
/// longer than any run of backticks in it), so it renders literally and mentions nobody.
fn code(text: &str) -> String {
    let text = plain(text);
    let mut longest = 0;
    let mut run = 0;
    for c in text.chars() {
        run = if c == '`' { run + 1 } else { 0 };
        longest = longest.max(run);
    }
    let fence = "`".repeat(longest + 1);
    let pad = if text.starts_with('`') || text.ends_with('`') {
        " "
    } else {
        ""
    };
    format!("{fence}{pad}{text}{pad}{fence}")
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::github::commands::HELP;

    fn one(comment: &str) -> Result<Command, ParseError> {
        let mut commands = parse(comment);
        assert_eq!(commands.len(), 1, "{comment:?} gave {commands:?}");
        commands.remove(0)
    }

    fn none(comment: &str) {
        assert_eq!(parse(comment), vec![], "{comment:?}");
    }

    fn deploy(environment: Option<&str>, strategy: Option<&str>) -> Command {
        Command::Deploy {
            environment: environment.map(str::to_owned),
            strategy: strategy.map(str::to_owned),
        }
    }

    fn rollback(environment: Option<&str>, target: RollbackTo) -> Command {
        Command::Rollback {
            environment: environment.map(str::to_owned),
            target,
        }
    }

    fn cancel(environment: Option<&str>) -> Command {
        Command::Cancel {
            environment: environment.map(str::to_owned),
            queued: false,
        }
    }

    // --- /deploy ---

    #[test]
    fn deploy_alone() {
        assert_eq!(one("/deploy"), Ok(deploy(None, None)));
    }

    #[test]
    fn deploy_to_an_environment() {
        assert_eq!(
            one("/deploy production"),
            Ok(deploy(Some("production"), None))
        );
    }

    #[test]
    fn deploy_with_the_to_keyword() {
        assert_eq!(one("/deploy to staging"), Ok(deploy(Some("staging"), None)));
        assert_eq!(one("/deploy TO staging"), Ok(deploy(Some("staging"), None)));
    }

    #[test]
    fn deploy_to_an_environment_named_to() {
        assert_eq!(one("/deploy to to"), Ok(deploy(Some("to"), None)));
    }

    #[test]
    fn deploy_to_without_an_environment_is_an_error() {
        assert_eq!(
            one("/deploy to"),
            Err(ParseError::MissingValue {
                command: "deploy",
                flag: "to".into()
            })
        );
    }

    #[test]
    fn deploy_with_a_strategy() {
        assert_eq!(
            one("/deploy production --strategy canary"),
            Ok(deploy(Some("production"), Some("canary")))
        );
        assert_eq!(
            one("/deploy --strategy canary"),
            Ok(deploy(None, Some("canary")))
        );
    }

    #[test]
    fn deploy_with_strategy_equals() {
        assert_eq!(
            one("/deploy to production --strategy=blue-green"),
            Ok(deploy(Some("production"), Some("blue-green")))
        );
    }

    #[test]
    fn strategy_before_the_environment() {
        assert_eq!(
            one("/deploy --strategy rolling to production"),
            Ok(deploy(Some("production"), Some("rolling")))
        );
    }

    #[test]
    fn strategy_name_is_lower_cased() {
        assert_eq!(
            one("/deploy --strategy Canary"),
            Ok(deploy(None, Some("canary")))
        );
    }

    #[test]
    fn strategy_without_a_value_is_an_error() {
        let missing = Err(ParseError::MissingValue {
            command: "deploy",
            flag: "--strategy".into(),
        });
        assert_eq!(one("/deploy production --strategy"), missing);
        assert_eq!(one("/deploy --strategy="), missing);
        assert_eq!(one("/deploy --strategy --strategy canary"), missing);
    }

    #[test]
    fn strategy_twice_is_an_error() {
        assert_eq!(
            one("/deploy --strategy canary --strategy=rolling"),
            Err(ParseError::DuplicateFlag {
                command: "deploy",
                flag: "--strategy".into()
            })
        );
    }

    #[test]
    fn invalid_strategy_name_is_an_error() {
        assert_eq!(
            one("/deploy --strategy=can@ry"),
            Err(ParseError::InvalidStrategy("can@ry".into()))
        );
    }

    #[test]
    fn unknown_flag_is_an_error() {
        assert_eq!(
            one("/deploy production --force"),
            Err(ParseError::UnknownFlag {
                command: "deploy",
                flag: "--force".into()
            })
        );
        assert_eq!(
            one("/deploy -s canary"),
            Err(ParseError::UnknownFlag {
                command: "deploy",
                flag: "-s".into()
            })
        );
    }

    #[test]
    fn second_environment_is_unexpected() {
        assert_eq!(
            one("/deploy production please"),
            Err(ParseError::UnexpectedArgument {
                command: "deploy",
                argument: "please".into()
            })
        );
    }

    #[test]
    fn environment_names_are_checked() {
        assert_eq!(
            one("/deploy prod!"),
            Err(ParseError::InvalidEnvironment {
                command: "deploy",
                environment: "prod!".into()
            })
        );
        let longest = "e".repeat(255);
        assert_eq!(
            one(&format!("/deploy {longest}")),
            Ok(deploy(Some(&longest), None))
        );
        assert!(matches!(
            one(&format!("/deploy {longest}e")),
            Err(ParseError::InvalidEnvironment { .. })
        ));
        assert_eq!(
            one("/deploy eu-west_1.prod"),
            Ok(deploy(Some("eu-west_1.prod"), None))
        );
    }

    // --- /rollback ---

    #[test]
    fn rollback_defaults_to_previous() {
        assert_eq!(one("/rollback"), Ok(rollback(None, RollbackTo::Previous)));
    }

    #[test]
    fn rollback_environment_and_version() {
        assert_eq!(
            one("/rollback production v12"),
            Ok(rollback(Some("production"), RollbackTo::Version(12)))
        );
        assert_eq!(
            one("/rollback production V7"),
            Ok(rollback(Some("production"), RollbackTo::Version(7)))
        );
    }

    #[test]
    fn rollback_bare_version() {
        assert_eq!(
            one("/rollback 12"),
            Ok(rollback(None, RollbackTo::Version(12)))
        );
        assert_eq!(
            one("/rollback v3"),
            Ok(rollback(None, RollbackTo::Version(3)))
        );
    }

    #[test]
    fn rollback_previous() {
        assert_eq!(
            one("/rollback previous"),
            Ok(rollback(None, RollbackTo::Previous))
        );
        assert_eq!(
            one("/rollback staging Previous"),
            Ok(rollback(Some("staging"), RollbackTo::Previous))
        );
    }

    #[test]
    fn rollback_environment_only() {
        assert_eq!(
            one("/rollback staging"),
            Ok(rollback(Some("staging"), RollbackTo::Previous))
        );
    }

    #[test]
    fn rollback_to_a_word_is_an_invalid_version() {
        assert_eq!(
            one("/rollback production banana"),
            Err(ParseError::InvalidVersion("banana".into()))
        );
    }

    #[test]
    fn rollback_versions_below_one_or_too_big_are_invalid() {
        for word in [
            "0",
            "v0",
            "-1",
            "99999999999999999999",
            "v9223372036854775808",
        ] {
            assert_eq!(
                one(&format!("/rollback {word}")),
                Err(ParseError::InvalidVersion(word.into())),
                "{word}"
            );
        }
        assert_eq!(
            one("/rollback v9223372036854775807"),
            Ok(rollback(None, RollbackTo::Version(i64::MAX)))
        );
    }

    #[test]
    fn rollback_with_too_many_arguments_is_an_error() {
        assert_eq!(
            one("/rollback production v12 now"),
            Err(ParseError::UnexpectedArgument {
                command: "rollback",
                argument: "now".into()
            })
        );
    }

    #[test]
    fn rollback_has_no_flags() {
        assert_eq!(
            one("/rollback production --force"),
            Err(ParseError::UnknownFlag {
                command: "rollback",
                flag: "--force".into()
            })
        );
    }

    // --- /cancel and /help ---

    #[test]
    fn cancel_alone_and_with_an_environment() {
        assert_eq!(one("/cancel"), Ok(cancel(None)));
        assert_eq!(one("/cancel staging"), Ok(cancel(Some("staging"))));
    }

    #[test]
    fn cancel_queued_names_the_waiting_deployments() {
        let queued = |environment: Option<&str>| Command::Cancel {
            environment: environment.map(str::to_owned),
            queued: true,
        };
        assert_eq!(one("/cancel staging --queued"), Ok(queued(Some("staging"))));
        assert_eq!(one("/cancel --QUEUED staging"), Ok(queued(Some("staging"))));
        assert_eq!(one("/cancel --queued"), Ok(queued(None)));
        assert_eq!(
            one("/cancel staging --queued --queued"),
            Err(ParseError::DuplicateFlag {
                command: "cancel",
                flag: "--queued".into()
            })
        );
        assert_eq!(
            one("/cancel staging --all"),
            Err(ParseError::UnknownFlag {
                command: "cancel",
                flag: "--all".into()
            })
        );
    }

    #[test]
    fn cancel_with_two_environments_is_an_error() {
        assert_eq!(
            one("/cancel staging production"),
            Err(ParseError::UnexpectedArgument {
                command: "cancel",
                argument: "production".into()
            })
        );
    }

    #[test]
    fn help_ignores_its_arguments() {
        assert_eq!(one("/help"), Ok(Command::Help));
        assert_eq!(one("/help deploy"), Ok(Command::Help));
    }

    // --- where commands are recognised ---

    #[test]
    fn command_names_are_case_insensitive() {
        assert_eq!(
            one("/Deploy production"),
            Ok(deploy(Some("production"), None))
        );
        assert_eq!(one("/ROLLBACK"), Ok(rollback(None, RollbackTo::Previous)));
        assert_eq!(one("/CaNcEl"), Ok(cancel(None)));
        assert_eq!(one("/HELP"), Ok(Command::Help));
    }

    #[test]
    fn extra_spaces_and_tabs_are_fine() {
        assert_eq!(
            one("   /deploy    to\tproduction     --strategy    canary   "),
            Ok(deploy(Some("production"), Some("canary")))
        );
    }

    #[test]
    fn words_that_merely_start_with_a_command_are_not_commands() {
        none("/deployment is broken");
        none("/deployed yesterday");
        none("/deploy-now production");
        none("/deploy/production");
        none("/cancellation policy");
        none("/helpful");
        none("/rollbacks");
    }

    #[test]
    fn other_slash_words_are_ignored() {
        none("/usr/bin/env bash");
        none("/unknown-thing");
        none("/");
        none("//deploy");
        none("/ deploy");
    }

    #[test]
    fn text_before_a_command_on_the_same_line_is_not_a_command() {
        none("please /deploy production");
        none("**now** /deploy production");
        none("`x` /deploy");
    }

    #[test]
    fn quoted_commands_are_ignored() {
        none("> /deploy production");
        none(">/deploy");
        none("> earlier:\n> /deploy production");
        none(">> /deploy");
        none("  > /deploy");
    }

    #[test]
    fn a_line_continuing_a_quote_is_part_of_the_quote() {
        // CommonMark's lazy continuation: GitHub shows the second line inside the quote.
        none("> you wrote\n/deploy production");
    }

    #[test]
    fn a_command_after_a_quote_and_a_blank_line_counts() {
        assert_eq!(
            parse("> can you /deploy?\n\n/deploy staging"),
            vec![Ok(deploy(Some("staging"), None))]
        );
    }

    #[test]
    fn fenced_code_is_ignored() {
        none("```\n/deploy production\n```");
        none("~~~\n/deploy production\n~~~");
        none("```sh\n/rollback 12\n```");
        none("  ```\n  /deploy\n  ```");
        none("````\n```\n/deploy\n```\n````");
        none("```\nnever closed\n/deploy");
    }

    #[test]
    fn a_command_after_a_closed_fence_counts() {
        assert_eq!(
            parse("```\n/deploy production\n```\n/cancel"),
            vec![Ok(cancel(None))]
        );
    }

    #[test]
    fn indented_code_is_ignored() {
        none("look:\n\n    /deploy production");
        none("    /deploy production");
        none("\t/deploy production");
    }

    #[test]
    fn up_to_three_leading_spaces_are_fine() {
        assert_eq!(one("   /deploy"), Ok(deploy(None, None)));
        assert_eq!(one(" /cancel"), Ok(cancel(None)));
    }

    #[test]
    fn inline_code_is_ignored() {
        none("`/deploy production`");
        none("run `/deploy production` to deploy");
        none("``/deploy``");
    }

    #[test]
    fn inline_code_spanning_lines_is_ignored() {
        none("use `\n/deploy production\n` to deploy");
    }

    #[test]
    fn html_comments_are_ignored() {
        none("<!-- /deploy production -->");
        none("<!--\n/deploy production\n-->");
        assert_eq!(
            one("/deploy production <!-- as agreed -->"),
            Ok(deploy(Some("production"), None))
        );
        assert_eq!(
            one("<!-- a note -->\n/deploy staging"),
            Ok(deploy(Some("staging"), None))
        );
    }

    #[test]
    fn html_blocks_are_ignored() {
        none("<details>\n/deploy production\n</details>");
    }

    #[test]
    fn lists_headings_links_and_tables_are_ignored() {
        none("- /deploy production");
        none("1. /deploy production");
        none("# /deploy production");
        none("/deploy production\n---");
        none("[/deploy](https://example.com)");
        none("| /deploy | x |\n| --- | --- |\n| /cancel | y |");
        none("\\/deploy production");
    }

    #[test]
    fn emphasis_in_arguments_is_read_as_shown() {
        assert_eq!(
            one("/deploy **production**"),
            Ok(deploy(Some("production"), None))
        );
        assert_eq!(one("/deploy `staging`"), Ok(deploy(Some("staging"), None)));
        assert_eq!(
            one("/deploy ~~production~~ staging"),
            Ok(deploy(Some("staging"), None))
        );
    }

    #[test]
    fn several_commands_in_one_comment_in_order() {
        let comment =
            "Thanks!\n/deploy staging\n\nand then\n\n/rollback production v12\n/cancel\n/help";
        assert_eq!(
            parse(comment),
            vec![
                Ok(deploy(Some("staging"), None)),
                Ok(rollback(Some("production"), RollbackTo::Version(12))),
                Ok(cancel(None)),
                Ok(Command::Help),
            ]
        );
    }

    #[test]
    fn a_bad_command_does_not_hide_the_others() {
        assert_eq!(
            parse("/rollback production banana\n/cancel production"),
            vec![
                Err(ParseError::InvalidVersion("banana".into())),
                Ok(cancel(Some("production"))),
            ]
        );
    }

    #[test]
    fn commands_in_list_item_paragraphs_count() {
        assert_eq!(
            parse("- a list\n\n  /deploy staging"),
            vec![Ok(deploy(Some("staging"), None))]
        );
    }

    #[test]
    fn crlf_line_endings() {
        assert_eq!(
            parse("LGTM\r\n/deploy to production --strategy canary\r\n/cancel staging\r\n"),
            vec![
                Ok(deploy(Some("production"), Some("canary"))),
                Ok(cancel(Some("staging"))),
            ]
        );
        none("```\r\n/deploy\r\n```\r\n");
        none("> /deploy\r\n");
    }

    #[test]
    fn comment_without_commands() {
        none("");
        none("Looks good to me, ship it!");
        none("\n\n   \n");
    }

    #[test]
    fn one_megabyte_comments_parse_without_panicking() {
        const MB: usize = 1 << 20;
        let lines = "/deploy staging\nsome prose here\n".repeat(MB / 32);
        let commands = parse(&lines);
        assert_eq!(commands.len(), MB / 32);
        assert!(
            commands
                .iter()
                .all(|c| c == &Ok(deploy(Some("staging"), None)))
        );

        let long_word = format!("/deploy {}", "a".repeat(MB));
        assert!(matches!(
            one(&long_word),
            Err(ParseError::InvalidEnvironment { .. })
        ));
        let many_words = format!("/help {}", "x ".repeat(MB / 2));
        assert_eq!(one(&many_words), Ok(Command::Help));

        for unit in [">", "`", "[", "*", "<!--", "- ", "```\n", "\\", "/", "| "] {
            let comment = unit.repeat(MB / unit.len());
            let _ = parse(&comment);
            let _ = parse(&format!("{comment}\n/deploy"));
        }
    }

    // --- messages for the commenter ---

    #[test]
    fn error_messages_name_the_problem_and_the_syntax() {
        let message = |comment: &str| one(comment).unwrap_err().to_string();
        assert_eq!(
            message("/rollback production banana"),
            "`banana` is not a release version: use `/rollback [ENV] [VERSION|previous]` \
             with a version like `12` or `v12`, or `previous`"
        );
        assert_eq!(
            message("/deploy production --strategy"),
            "`--strategy` needs a value after it: use `/deploy [to] [ENV] [--strategy NAME]`"
        );
        assert_eq!(
            message("/cancel a b"),
            "`/cancel` does not take `b`: use `/cancel [ENV] [--queued]`"
        );
        assert!(message("/deploy --force").contains("`--force`"));
        assert!(message("/deploy prod!").contains("`prod!`"));
    }

    #[test]
    fn user_text_in_messages_cannot_escape_its_code_span() {
        // An unmatched backtick stays in the argument as typed.
        let message = one("/cancel a x`@org/team").unwrap_err().to_string();
        assert!(message.contains("``x`@org/team``"), "{message}");
        let message = one("/cancel a ``@all").unwrap_err().to_string();
        assert!(message.contains("``` ``@all ```"), "{message}");
        assert_eq!(code("a`"), "`` a` ``");
        assert_eq!(code("plain"), "`plain`");
    }

    #[test]
    fn unknown_command_message_quotes_the_word() {
        assert_eq!(
            ParseError::UnknownCommand("deplyo".into()).to_string(),
            "`/deplyo` is not a deploybot command: use `/deploy`, `/rollback`, `/cancel` or `/help`"
        );
    }

    #[test]
    fn long_user_text_is_cut_in_messages() {
        let long = "é".repeat(500);
        let message = one(&format!("/cancel a {long}")).unwrap_err().to_string();
        assert!(
            message.contains(&format!("`{}…`", "é".repeat(64))),
            "{message}"
        );
        assert!(message.chars().count() < 200);
    }

    #[test]
    fn help_lists_every_command() {
        for syntax in [
            "/deploy [to] [ENV] [--strategy NAME]",
            "/rollback [ENV] [VERSION\\|previous]",
            "/cancel [ENV]",
            "/cancel [ENV] --queued",
            "/help",
        ] {
            assert!(HELP.contains(syntax), "{syntax}");
        }
        // The help text itself contains no command a bot reading it would run.
        assert_eq!(parse(HELP), vec![]);
    }
}
