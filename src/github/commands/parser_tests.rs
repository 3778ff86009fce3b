//! The comment parser's tests: every command, its options and its refusals.

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
        force: false,
        params: BTreeMap::new(),
    }
}

fn rollback(environment: Option<&str>, target: RollbackTo) -> Command {
    Command::Rollback {
        environment: environment.map(str::to_owned),
        target,
        force: false,
        reason: None,
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
        one("/deploy production --forced"),
        Err(ParseError::UnknownFlag {
            command: "deploy",
            flag: "--forced".into()
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
fn rollback_has_no_other_flags() {
    assert_eq!(
        one("/rollback production --queued"),
        Err(ParseError::UnknownFlag {
            command: "rollback",
            flag: "--queued".into()
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
        "`banana` is not a release version: use `/rollback [ENV] [VERSION|previous] \
         [--force] [--reason TEXT…]` with a version like `12` or `v12`, or `previous`"
    );
    assert_eq!(
        message("/deploy production --strategy"),
        "`--strategy` needs a value after it: use `/deploy [to] [ENV] [--strategy NAME] [--force] [| KEY=VALUE …]`"
    );
    assert_eq!(
        message("/cancel a b"),
        "`/cancel` does not take `b`: use `/cancel [ENV] [--queued]`"
    );
    assert!(message("/deploy --forse").contains("`--forse`"));
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
        "`/deplyo` is not a deploybot command: use `/deploy`, `/noop`, `/rollback`, `/cancel`, `/lock`, `/unlock`, `/locks`, `/approve` or `/help`"
    );
}

#[test]
fn approve_takes_an_optional_environment_and_nothing_else() {
    assert_eq!(one("/approve"), Ok(Command::Approve { environment: None }));
    assert_eq!(
        one("/approve production"),
        Ok(Command::Approve {
            environment: Some("production".into())
        })
    );
    assert!(matches!(
        one("/approve production now"),
        Err(ParseError::UnexpectedArgument { .. })
    ));
    assert!(matches!(
        one("/approve --force"),
        Err(ParseError::UnknownFlag { .. })
    ));
    assert!(matches!(
        one("/approve $(id)"),
        Err(ParseError::InvalidEnvironment { .. })
    ));
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
        "/deploy [to] [ENV] [--strategy NAME] [--force] [\\| KEY=VALUE …]",
        "/noop [ENV] [\\| KEY=VALUE …]",
        "/rollback [ENV] [VERSION\\|previous] [--force] [--reason TEXT…]",
        "/cancel [ENV]",
        "/cancel [ENV] --queued",
        "/lock [ENV\\|--global] [--for DURATION] [--reason TEXT…]",
        "/unlock [ENV\\|--global]",
        "/locks",
        "/help",
    ] {
        assert!(HELP.contains(syntax), "{syntax}");
    }
    // The help text itself contains no command a bot reading it would run.
    assert_eq!(parse(HELP), vec![]);
}

// --- deploy control ---

fn params(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
    pairs
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

#[test]
fn deploy_with_force_and_parameters() {
    assert_eq!(
        one("/deploy staging --force | REGION=eu FLAG=on"),
        Ok(Command::Deploy {
            environment: Some("staging".into()),
            strategy: None,
            force: true,
            params: params(&[("REGION", "eu"), ("FLAG", "on")]),
        })
    );
    assert_eq!(
        one("/deploy|REGION=eu"),
        Ok(Command::Deploy {
            environment: None,
            strategy: None,
            force: false,
            params: params(&[("REGION", "eu")]),
        })
    );
    assert_eq!(
        one("/deploy staging | REGION=a=b EMPTY="),
        Ok(Command::Deploy {
            environment: Some("staging".into()),
            strategy: None,
            force: false,
            params: params(&[("REGION", "a=b"), ("EMPTY", "")]),
        })
    );
}

#[test]
fn bad_parameters_are_errors_naming_them() {
    assert_eq!(
        one("/deploy staging | REGION"),
        Err(ParseError::InvalidParam {
            command: "deploy",
            param: "REGION".into()
        })
    );
    assert_eq!(
        one("/noop | =eu"),
        Err(ParseError::InvalidParam {
            command: "noop",
            param: "=eu".into()
        })
    );
    assert_eq!(
        one("/deploy production | @acme/everyone=1"),
        Err(ParseError::InvalidParam {
            command: "deploy",
            param: "@acme/everyone=1".into()
        })
    );
    assert_eq!(
        one("/noop | 1ST=x"),
        Err(ParseError::InvalidParam {
            command: "noop",
            param: "1ST=x".into()
        })
    );
    assert_eq!(
        one("/deploy | A=1 A=2"),
        Err(ParseError::DuplicateParam {
            command: "deploy",
            param: "A".into()
        })
    );
    assert_eq!(
        one("/deploy staging |"),
        Err(ParseError::MissingValue {
            command: "deploy",
            flag: "|".into()
        })
    );
    let message = one("/deploy staging | REGION").unwrap_err().to_string();
    assert!(
        message.contains("`REGION`") && message.contains("KEY=VALUE"),
        "{message}"
    );
    assert_eq!(
        one("/deploy --force --force"),
        Err(ParseError::DuplicateFlag {
            command: "deploy",
            flag: "--force".into()
        })
    );
}

#[test]
fn noop_takes_an_environment_and_parameters_only() {
    assert_eq!(
        one("/noop"),
        Ok(Command::Noop {
            environment: None,
            params: BTreeMap::new()
        })
    );
    assert_eq!(
        one("/noop production | REGION=eu"),
        Ok(Command::Noop {
            environment: Some("production".into()),
            params: params(&[("REGION", "eu")]),
        })
    );
    assert!(matches!(
        one("/noop production --force"),
        Err(ParseError::UnknownFlag { .. })
    ));
    assert!(matches!(
        one("/noop a b"),
        Err(ParseError::UnexpectedArgument { .. })
    ));
}

#[test]
fn rollback_with_force_and_a_reason_taking_the_rest_of_the_line() {
    assert_eq!(
        one("/rollback production v3 --force --reason error rate up | see #12"),
        Ok(Command::Rollback {
            environment: Some("production".into()),
            target: RollbackTo::Version(3),
            force: true,
            reason: Some("error rate up | see #12".into()),
        })
    );
    assert_eq!(
        one("/rollback --reason=it --force broke"),
        Ok(Command::Rollback {
            environment: None,
            target: RollbackTo::Previous,
            force: false,
            reason: Some("it --force broke".into()),
        })
    );
    assert_eq!(
        one("/rollback production --reason"),
        Err(ParseError::MissingValue {
            command: "rollback",
            flag: "--reason".into()
        })
    );
}

#[test]
fn lock_with_an_environment_a_duration_and_a_reason() {
    assert_eq!(
        one("/lock production --for 2h --reason incident 42: db migration"),
        Ok(Command::Lock {
            environment: Some("production".into()),
            global: false,
            duration: Some(Duration::from_secs(7200)),
            reason: Some("incident 42: db migration".into()),
        })
    );
    assert_eq!(
        one("/lock --global --for=1d"),
        Ok(Command::Lock {
            environment: None,
            global: true,
            duration: Some(Duration::from_secs(86_400)),
            reason: None,
        })
    );
    assert_eq!(
        one("/lock"),
        Ok(Command::Lock {
            environment: None,
            global: false,
            duration: None,
            reason: None,
        })
    );
}

#[test]
fn lock_durations_are_checked() {
    assert_eq!(
        one("/lock --for 30m").map(|c| match c {
            Command::Lock { duration, .. } => duration,
            _ => None,
        }),
        Ok(Some(Duration::from_secs(1800)))
    );
    for bad in ["31d", "0m", "soon", "-1h"] {
        assert_eq!(
            one(&format!("/lock production --for {bad}")),
            Err(ParseError::InvalidDuration(bad.into())),
            "{bad}"
        );
    }
    assert!(matches!(
        one("/lock production --for"),
        Err(ParseError::MissingValue { .. })
    ));
    assert!(matches!(
        one("/lock production --global"),
        Err(ParseError::UnexpectedArgument { .. })
    ));
    let message = one("/lock --for 31d").unwrap_err().to_string();
    assert!(
        message.contains("`31d`") && message.contains("30d"),
        "{message}"
    );
}

#[test]
fn unlock_and_locks() {
    assert_eq!(
        one("/unlock production"),
        Ok(Command::Unlock {
            environment: Some("production".into()),
            global: false
        })
    );
    assert_eq!(
        one("/unlock --global"),
        Ok(Command::Unlock {
            environment: None,
            global: true
        })
    );
    assert!(matches!(
        one("/unlock production --for 2h"),
        Err(ParseError::UnknownFlag { .. })
    ));
    assert_eq!(one("/locks"), Ok(Command::Locks));
    none("/lockdown production");
}

#[test]
fn another_prefix_replaces_the_slash() {
    assert_eq!(
        parse_prefixed(".deploy staging\n/deploy production", '.'),
        vec![Ok(deploy(Some("staging"), None))]
    );
    assert_eq!(
        parse_prefixed("/deploy staging\n.deploy production", '/'),
        vec![Ok(deploy(Some("staging"), None))]
    );
    assert_eq!(parse_prefixed("> .deploy\n`.deploy`", '.'), vec![]);
    assert_eq!(parse_prefixed(".locks", '.'), vec![Ok(Command::Locks)]);
}
