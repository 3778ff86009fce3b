//! Commands in pull request comments (`/deploy`, `/noop`, `/rollback`, `/cancel`, `/lock`,
//! `/unlock`, `/locks`, `/help`), parsed by a pure function so every rule can be tested with
//! a string. The prefix is `/`, or `.` when the configuration's `command_prefix` says so.
//!
//! Markdown is read with `pulldown-cmark` (no default features: three small dependencies),
//! not by hand: a command must be what the reader sees as a line of text, and CommonMark has
//! too many ways to hide one (lazy block-quote continuation, fences inside lists, HTML blocks,
//! code spans over several lines, tables) for a line-by-line stripper to agree with GitHub.
//! The parser's source offsets tell whether a text starts its line.

use std::collections::BTreeMap;
use std::ops::Range;
use std::time::Duration;

use pulldown_cmark::{Event, Options, Parser, Tag, TagEnd};

use super::markdown::code_span;

/// The longest a `/lock --for` lasts.
pub const MAX_LOCK_FOR: Duration = Duration::from_secs(30 * 24 * 3600);

/// A command from a comment. `environment: None` means "the repository's only instance that
/// accepts commands"; the router decides, because only it knows the instances.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Command {
    /// `/deploy [to] [ENV] [--strategy NAME] [--force] [| KEY=VALUE …]` (also
    /// `--strategy=NAME`): deploy the pull request's head commit. The strategy name is
    /// lower-cased; the router checks it exists. `--force` passes a freeze (for a deployer).
    Deploy {
        environment: Option<String>,
        strategy: Option<String>,
        force: bool,
        params: BTreeMap<String, String>,
    },
    /// `/noop [ENV] [| KEY=VALUE …]`: a dry run of the pull request's head commit.
    Noop {
        environment: Option<String>,
        params: BTreeMap<String, String>,
    },
    /// `/rollback [ENV] [VERSION|previous] [--force] [--reason TEXT…]`: make an earlier
    /// release active again. `--force` passes a lock or a freeze (for a deployer).
    Rollback {
        environment: Option<String>,
        target: RollbackTo,
        force: bool,
        reason: Option<String>,
    },
    /// `/cancel [ENV] [--queued]`: cancel the running deployment (restoring the release
    /// it replaces), or with `--queued` the deployments waiting in the queue.
    Cancel {
        environment: Option<String>,
        queued: bool,
    },
    /// `/lock [ENV|--global] [--for DURATION] [--reason TEXT…]`: lock an environment, or
    /// with `--global` every environment of the repository.
    Lock {
        environment: Option<String>,
        global: bool,
        duration: Option<Duration>,
        reason: Option<String>,
    },
    /// `/unlock [ENV|--global]`: release the lock.
    Unlock {
        environment: Option<String>,
        global: bool,
    },
    /// `/locks`: every lock of the repository and each environment's freezes.
    Locks,
    /// `/approve [ENV]`: approve the environment's deployment that waits for approval.
    Approve { environment: Option<String> },
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
        "{} is not a deploybot command: use `/deploy`, `/noop`, `/rollback`, `/cancel`, `/lock`, `/unlock`, `/locks`, `/approve` or `/help`",
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
    /// A word after `|` that is not `KEY=VALUE` with an env-style KEY.
    #[error(
        "{} is not a parameter: write `KEY=VALUE` words after `|`, KEY in letters, digits and `_`: use `{}`",
        code(.param),
        usage(.command)
    )]
    InvalidParam {
        command: &'static str,
        param: String,
    },
    /// The same parameter twice.
    #[error("the parameter {} is given more than once: use `{}`", code(.param), usage(.command))]
    DuplicateParam {
        command: &'static str,
        param: String,
    },
    /// A `--for` duration that is not like `30m`, `2h` or `1d`, or longer than 30 days.
    #[error(
        "{} is not a lock duration: use `{}` with a duration like `30m`, `2h` or `1d` (at most `30d`)",
        code(.0),
        usage("lock")
    )]
    InvalidDuration(String),
}

/// Every command in a comment, in order. A command starts a line of text (leading spaces
/// allowed); text in code blocks, inline code, block quotes, HTML, headings, tables and
/// links never triggers. `/word` lines that are not commands (paths, `/deployment`) are
/// ignored; a known command with bad arguments is an `Err` so the commenter gets help.
pub fn parse(comment: &str) -> Vec<Result<Command, ParseError>> {
    parse_prefixed(comment, '/')
}

/// [`parse`] with another command prefix (`.` for `.deploy`): only lines starting with
/// `prefix` are commands.
pub fn parse_prefixed(comment: &str, prefix: char) -> Vec<Result<Command, ParseError>> {
    command_lines(comment, prefix)
        .iter()
        .filter_map(|line| parse_line(line, prefix))
        .collect()
}

/// The rendered text of every line that starts with `prefix` at the start of a source
/// line, outside the blocks and spans that never trigger a command.
fn command_lines(comment: &str, prefix: char) -> Vec<String> {
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
                    if starts_line_with(comment, range, prefix) {
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

/// Whether the text at `range` starts with `prefix` and only spaces or tabs precede it on
/// its source line (so not `- /deploy`, `\/deploy` or `**x** /deploy`).
fn starts_line_with(comment: &str, range: Range<usize>, prefix: char) -> bool {
    let (Some(before), Some(rest)) = (comment.get(..range.start), comment.get(range.start..))
    else {
        return false;
    };
    let line_start = before.rfind('\n').map_or(0, |newline| newline + 1);
    rest.starts_with(prefix)
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

/// Parses one line that starts with `prefix`; None when its first word is not a command
/// name.
fn parse_line(line: &str, prefix: char) -> Option<Result<Command, ParseError>> {
    let line = line.trim_start().strip_prefix(prefix)?;
    let end = line
        .find(|c: char| c.is_whitespace() || c == '|')
        .unwrap_or(line.len());
    let (name, rest) = line.split_at(end);
    let is = |command: &str| name.eq_ignore_ascii_case(command);
    if is("deploy") {
        Some(
            with_params("deploy", rest)
                .and_then(|(args, params)| parse_deploy(&words(args), params)),
        )
    } else if is("noop") {
        Some(with_params("noop", rest).and_then(|(args, params)| parse_noop(&words(args), params)))
    } else if is("rollback") {
        Some(parse_rollback(&words(rest)))
    } else if is("cancel") {
        Some(parse_cancel(&words(rest)))
    } else if is("lock") {
        Some(parse_lock(&words(rest)))
    } else if is("unlock") {
        Some(parse_unlock(&words(rest)))
    } else if is("locks") {
        Some(Ok(Command::Locks))
    } else if is("approve") {
        Some(parse_approve(&words(rest)))
    } else if is("help") {
        Some(Ok(Command::Help))
    } else {
        None
    }
}

/// The arguments before `|`, and the `KEY=VALUE` parameters after it.
/// The whitespace-separated words of `text`.
fn words(text: &str) -> Vec<&str> {
    text.split_whitespace().collect()
}

/// A parameter's name as environment variables are named: letters, digits and `_`, not
/// starting with a digit. (The instance's `params` decide which are accepted.)
fn is_param_name(key: &str) -> bool {
    key.chars().all(|c| c.is_ascii_alphanumeric() || c == '_')
        && key.chars().next().is_some_and(|c| !c.is_ascii_digit())
}

fn with_params<'a>(
    command: &'static str,
    rest: &'a str,
) -> Result<(&'a str, BTreeMap<String, String>), ParseError> {
    let Some((args, after)) = rest.split_once('|') else {
        return Ok((rest, BTreeMap::new()));
    };
    let mut params = BTreeMap::new();
    for word in after.split_whitespace() {
        let Some((key, value)) = word.split_once('=').filter(|(key, _)| is_param_name(key)) else {
            return Err(ParseError::InvalidParam {
                command,
                param: word.to_owned(),
            });
        };
        if params.insert(key.to_owned(), value.to_owned()).is_some() {
            return Err(ParseError::DuplicateParam {
                command,
                param: key.to_owned(),
            });
        }
    }
    if params.is_empty() {
        return Err(ParseError::MissingValue {
            command,
            flag: "|".to_owned(),
        });
    }
    Ok((args, params))
}

/// The words before `--reason`, and the rest of the line after it (`--reason=TEXT …`
/// too); an error when `--reason` has no text after it.
fn with_reason<'a>(
    command: &'static str,
    args: &[&'a str],
) -> Result<(Vec<&'a str>, Option<String>), ParseError> {
    let found = args.iter().position(|arg| {
        let flag = arg.split_once('=').map_or(*arg, |(flag, _)| flag);
        flag.eq_ignore_ascii_case("--reason")
    });
    let Some(at) = found else {
        return Ok((args.to_vec(), None));
    };
    let mut text: Vec<&str> = Vec::new();
    if let Some((_, inline)) = args[at].split_once('=') {
        text.push(inline);
    }
    text.extend(&args[at + 1..]);
    let reason = text.join(" ").trim().to_owned();
    if reason.is_empty() {
        return Err(ParseError::MissingValue {
            command,
            flag: "--reason".to_owned(),
        });
    }
    Ok((args[..at].to_vec(), Some(reason)))
}

/// Takes a value-less flag (`--force`, `--global`) out of `args`: whether it was there.
fn take_switch(
    command: &'static str,
    args: &mut Vec<&str>,
    switch: &str,
) -> Result<bool, ParseError> {
    let count = args
        .iter()
        .filter(|arg| arg.eq_ignore_ascii_case(switch))
        .count();
    if count > 1 {
        return Err(ParseError::DuplicateFlag {
            command,
            flag: switch.to_owned(),
        });
    }
    args.retain(|arg| !arg.eq_ignore_ascii_case(switch));
    Ok(count == 1)
}

fn parse_deploy(args: &[&str], params: BTreeMap<String, String>) -> Result<Command, ParseError> {
    const COMMAND: &str = "deploy";
    let mut args = args.to_vec();
    let force = take_switch(COMMAND, &mut args, "--force")?;
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
        force,
        params,
    })
}

fn parse_noop(args: &[&str], params: BTreeMap<String, String>) -> Result<Command, ParseError> {
    const COMMAND: &str = "noop";
    let environment = one_environment(COMMAND, args)?;
    Ok(Command::Noop {
        environment,
        params,
    })
}

/// At most one environment and no flag.
fn one_environment(command: &'static str, args: &[&str]) -> Result<Option<String>, ParseError> {
    if let Some(flag) = args.iter().find(|arg| arg.starts_with('-')) {
        return Err(ParseError::UnknownFlag {
            command,
            flag: (*flag).to_owned(),
        });
    }
    match args {
        [] => Ok(None),
        [environment] => Ok(Some(environment_name(command, environment)?)),
        [_, extra, ..] => Err(ParseError::UnexpectedArgument {
            command,
            argument: (*extra).to_owned(),
        }),
    }
}

fn parse_lock(args: &[&str]) -> Result<Command, ParseError> {
    const COMMAND: &str = "lock";
    let (args, reason) = with_reason(COMMAND, args)?;
    let mut args = args;
    let global = take_switch(COMMAND, &mut args, "--global")?;
    let mut duration = None;
    let mut rest = Vec::new();
    let mut words = args.into_iter();
    while let Some(arg) = words.next() {
        let (flag, inline_value) = match arg.split_once('=') {
            Some((flag, value)) => (flag, Some(value)),
            None => (arg, None),
        };
        if !flag.eq_ignore_ascii_case("--for") {
            rest.push(arg);
            continue;
        }
        if duration.is_some() {
            return Err(ParseError::DuplicateFlag {
                command: COMMAND,
                flag: "--for".to_owned(),
            });
        }
        let value = inline_value
            .or_else(|| words.next())
            .filter(|value| !value.is_empty())
            .ok_or_else(|| ParseError::MissingValue {
                command: COMMAND,
                flag: "--for".to_owned(),
            })?;
        duration = Some(lock_duration(value)?);
    }
    let environment = one_environment(COMMAND, &rest)?;
    if global && let Some(environment) = environment {
        return Err(ParseError::UnexpectedArgument {
            command: COMMAND,
            argument: environment,
        });
    }
    Ok(Command::Lock {
        environment,
        global,
        duration,
        reason,
    })
}

/// `30m`, `2h`, `1d`, `1h30m`: more than nothing, at most [`MAX_LOCK_FOR`].
fn lock_duration(word: &str) -> Result<Duration, ParseError> {
    humantime::parse_duration(word)
        .ok()
        .filter(|d| !d.is_zero() && *d <= MAX_LOCK_FOR)
        .ok_or_else(|| ParseError::InvalidDuration(word.to_owned()))
}

fn parse_unlock(args: &[&str]) -> Result<Command, ParseError> {
    const COMMAND: &str = "unlock";
    let mut args = args.to_vec();
    let global = take_switch(COMMAND, &mut args, "--global")?;
    let environment = one_environment(COMMAND, &args)?;
    if global && let Some(environment) = environment {
        return Err(ParseError::UnexpectedArgument {
            command: COMMAND,
            argument: environment,
        });
    }
    Ok(Command::Unlock {
        environment,
        global,
    })
}

fn parse_rollback(args: &[&str]) -> Result<Command, ParseError> {
    const COMMAND: &str = "rollback";
    let (mut args, reason) = with_reason(COMMAND, args)?;
    let force = take_switch(COMMAND, &mut args, "--force")?;
    let args = args.as_slice();
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
        force,
        reason,
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

fn parse_approve(args: &[&str]) -> Result<Command, ParseError> {
    const COMMAND: &str = "approve";
    if let Some(flag) = args.iter().find(|a| a.starts_with('-')) {
        return Err(ParseError::UnknownFlag {
            command: COMMAND,
            flag: (*flag).to_owned(),
        });
    }
    match args {
        [] => Ok(Command::Approve { environment: None }),
        [environment] => Ok(Command::Approve {
            environment: Some(environment_name(COMMAND, environment)?),
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
        "noop" => super::deploy::NOOP_USAGE,
        "lock" => super::lock::LOCK_USAGE,
        "unlock" => super::lock::UNLOCK_USAGE,
        "approve" => super::approve::USAGE,
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

/// User text, cut to [`QUOTE_LIMIT`] characters, as a markdown code span that nothing
/// inside can close early, so it renders literally and mentions nobody.
fn code(text: &str) -> String {
    code_span(&plain(text))
}

#[cfg(test)]
#[path = "parser_tests.rs"]
mod tests;
