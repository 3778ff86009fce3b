//! Integration tests of `deploybot::provider::process` with real child processes.
//! Every test is bounded: the commands are given short timeouts, and the few loops poll for
//! at most a couple of seconds.

use std::path::Path;
use std::time::{Duration, Instant};

use deploybot::provider::process::{
    MAX_LINE_BYTES, RunError, RunOutcome, RunSpec, Stream, TRUNCATION_MARKER, run,
};
use tokio_util::sync::CancellationToken;

const LONG: Duration = Duration::from_secs(20);
const GRACE: Duration = Duration::from_secs(2);

fn argv(parts: &[&str]) -> Vec<String> {
    parts.iter().map(|s| (*s).to_owned()).collect()
}

/// A bash script with the temp dir as `$1`.
fn bash(script: &str, dir: &Path) -> Vec<String> {
    argv(&[
        "bash",
        "-c",
        script,
        "bash",
        dir.to_str().unwrap_or_default(),
    ])
}

fn spec<'a>(argv: &'a [String], timeout: Duration, cancel: &CancellationToken) -> RunSpec<'a> {
    RunSpec {
        argv,
        env: &[],
        cwd: None,
        timeout,
        kill_grace: GRACE,
        cancel: cancel.clone(),
    }
}

/// Runs with a fresh token and collects the lines.
async fn run_collect(spec: RunSpec<'_>) -> (Result<RunOutcome, RunError>, Vec<(Stream, String)>) {
    let mut lines = Vec::new();
    let result = run(spec, |stream, line| lines.push((stream, line))).await;
    (result, lines)
}

/// Runs, and cancels `delay` after the child printed the line `ready`.
async fn run_cancel_after_ready(
    spec: RunSpec<'_>,
    delay: Duration,
) -> (Result<RunOutcome, RunError>, Vec<(Stream, String)>, Instant) {
    let token = spec.cancel.clone();
    let mut lines = Vec::new();
    let result = run(spec, |stream, line| {
        if line == "ready" {
            let token = token.clone();
            tokio::spawn(async move {
                tokio::time::sleep(delay).await;
                token.cancel();
            });
        }
        lines.push((stream, line));
    })
    .await;
    (result, lines, Instant::now())
}

fn of(lines: &[(Stream, String)], which: Stream) -> Vec<String> {
    lines
        .iter()
        .filter(|(s, _)| *s == which)
        .map(|(_, l)| l.clone())
        .collect()
}

/// State letter and process group of a process, from /proc/PID/stat.
fn proc_stat(pid: &str) -> Option<(char, i32)> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let rest = &stat[stat.rfind(')')? + 1..];
    let mut fields = rest.split_ascii_whitespace();
    let state = fields.next()?.chars().next()?;
    fields.next()?;
    Some((state, fields.next()?.parse().ok()?))
}

/// Pids of the processes of group `pgid` that are alive (zombies are dead: they only wait for
/// init to collect them).
fn live_members(pgid: i32) -> Vec<String> {
    let Ok(entries) = std::fs::read_dir("/proc") else {
        return Vec::new();
    };
    entries
        .flatten()
        .filter_map(|e| e.file_name().to_str().map(str::to_owned))
        .filter(|name| name.bytes().all(|b| b.is_ascii_digit()))
        .filter(|pid| matches!(proc_stat(pid), Some((state, g)) if g == pgid && state != 'Z' && state != 'X'))
        .collect()
}

fn is_alive(pid: &str) -> bool {
    matches!(proc_stat(pid), Some((state, _)) if state != 'Z' && state != 'X')
}

/// Polls for at most 2 s until no live process of the group remains.
async fn assert_group_gone(pgid: i32) {
    let give_up = Instant::now() + Duration::from_secs(2);
    loop {
        let left = live_members(pgid);
        if left.is_empty() {
            break;
        }
        assert!(
            Instant::now() < give_up,
            "processes of group {pgid} survived: {left:?}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    // kill(-pgid, 0) only fails once init has also collected the zombies, which may lag;
    // a live member would make it succeed, so it is checked through /proc above.
}

fn read_trimmed(path: &Path) -> String {
    std::fs::read_to_string(path)
        .unwrap_or_else(|e| panic!("{} not written: {e}", path.display()))
        .trim()
        .to_owned()
}

#[tokio::test]
async fn true_exits_zero() {
    let cancel = CancellationToken::new();
    let a = argv(&["true"]);
    let (result, lines) = run_collect(spec(&a, LONG, &cancel)).await;
    assert_eq!(result.unwrap(), RunOutcome::Exited(0));
    assert!(lines.is_empty());
}

#[tokio::test]
async fn exit_code_is_reported() {
    let cancel = CancellationToken::new();
    let a = argv(&["/bin/sh", "-c", "exit 3"]);
    let (result, _) = run_collect(spec(&a, LONG, &cancel)).await;
    assert_eq!(result.unwrap(), RunOutcome::Exited(3));
}

#[tokio::test]
async fn death_by_own_signal_is_signalled() {
    let cancel = CancellationToken::new();
    let a = argv(&["/bin/sh", "-c", "kill -KILL $$"]);
    let (result, _) = run_collect(spec(&a, LONG, &cancel)).await;
    assert_eq!(result.unwrap(), RunOutcome::Signalled(libc::SIGKILL));
}

#[tokio::test]
async fn missing_program_is_spawn_error_naming_it() {
    let cancel = CancellationToken::new();
    let a = argv(&["/nonexistent/deploy-missing-prog", "x"]);
    let (result, _) = run_collect(spec(&a, LONG, &cancel)).await;
    let err = result.unwrap_err();
    let message = err.to_string();
    match err {
        RunError::Spawn { program, source } => {
            assert_eq!(program, "/nonexistent/deploy-missing-prog");
            assert_eq!(source.kind(), std::io::ErrorKind::NotFound);
        }
        other => panic!("expected Spawn, got {other:?}"),
    }
    assert!(
        message.contains("/nonexistent/deploy-missing-prog"),
        "{message}"
    );
    assert!(message.contains("path"), "{message}");
}

#[tokio::test]
async fn missing_program_on_path_is_spawn_error() {
    let cancel = CancellationToken::new();
    let a = argv(&["deploybot-no-such-program-xyz"]);
    let (result, _) = run_collect(spec(&a, LONG, &cancel)).await;
    assert!(
        matches!(result, Err(RunError::Spawn { program, .. }) if program == "deploybot-no-such-program-xyz")
    );
}

#[tokio::test]
async fn empty_argv_is_an_error() {
    let cancel = CancellationToken::new();
    let (result, _) = run_collect(spec(&[], LONG, &cancel)).await;
    assert!(matches!(result, Err(RunError::EmptyArgv)));
}

#[tokio::test]
async fn missing_cwd_is_a_cwd_error() {
    let cancel = CancellationToken::new();
    let dir = tempfile::tempdir().unwrap();
    let missing = dir.path().join("nope");
    let a = argv(&["true"]);
    let mut s = spec(&a, LONG, &cancel);
    s.cwd = Some(&missing);
    let (result, _) = run_collect(s).await;
    assert!(matches!(result, Err(RunError::Cwd { path, .. }) if path == missing));
}

#[tokio::test]
async fn cwd_is_used() {
    let cancel = CancellationToken::new();
    let dir = tempfile::tempdir().unwrap();
    let a = argv(&["pwd", "-P"]);
    let mut s = spec(&a, LONG, &cancel);
    s.cwd = Some(dir.path());
    let (result, lines) = run_collect(s).await;
    assert_eq!(result.unwrap(), RunOutcome::Exited(0));
    let expected = std::fs::canonicalize(dir.path()).unwrap();
    assert_eq!(
        lines,
        vec![(Stream::Stdout, expected.to_str().unwrap().to_owned())]
    );
}

#[tokio::test]
async fn lines_from_both_streams_are_delivered_in_order() {
    let cancel = CancellationToken::new();
    let script = r#"
        printf 'out 1\nout 2\n'
        printf 'err 1\n' >&2
        printf 'out 3\n'
        printf 'err 2\nerr 3\n' >&2
        printf '\n'
        printf 'err last no newline' >&2
        printf 'out last no newline'
    "#;
    let a = argv(&["/bin/sh", "-c", script]);
    let (result, lines) = run_collect(spec(&a, LONG, &cancel)).await;
    assert_eq!(result.unwrap(), RunOutcome::Exited(0));
    assert_eq!(
        of(&lines, Stream::Stdout),
        vec!["out 1", "out 2", "out 3", "", "out last no newline"]
    );
    assert_eq!(
        of(&lines, Stream::Stderr),
        vec!["err 1", "err 2", "err 3", "err last no newline"]
    );
}

#[tokio::test]
async fn many_lines_arrive_complete_and_in_order() {
    let cancel = CancellationToken::new();
    let a = argv(&["/bin/sh", "-c", "seq 1 20000; seq 1 5000 >&2"]);
    let (result, lines) = run_collect(spec(&a, LONG, &cancel)).await;
    assert_eq!(result.unwrap(), RunOutcome::Exited(0));
    let expected: Vec<String> = (1..=20000).map(|i| i.to_string()).collect();
    assert_eq!(of(&lines, Stream::Stdout), expected);
    let expected: Vec<String> = (1..=5000).map(|i| i.to_string()).collect();
    assert_eq!(of(&lines, Stream::Stderr), expected);
}

#[tokio::test]
async fn overlong_line_is_truncated_with_marker() {
    let cancel = CancellationToken::new();
    let a = argv(&[
        "/bin/sh",
        "-c",
        "head -c 200000 /dev/zero | tr '\\0' x; echo; echo after",
    ]);
    let (result, lines) = run_collect(spec(&a, LONG, &cancel)).await;
    assert_eq!(result.unwrap(), RunOutcome::Exited(0));
    let out = of(&lines, Stream::Stdout);
    assert_eq!(out.len(), 2);
    assert_eq!(
        out[0],
        format!("{}{}", "x".repeat(MAX_LINE_BYTES), TRUNCATION_MARKER)
    );
    assert_eq!(out[1], "after");
}

#[tokio::test]
async fn env_values_arrive_verbatim_and_are_not_interpreted() {
    let cancel = CancellationToken::new();
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path().to_str().unwrap();
    // A file that `rm` would delete if the value were ever run by a shell.
    let victim = dir.path().join("victim");
    std::fs::write(&victim, "still here").unwrap();
    let values = [
        format!("main;rm -rf {d}/victim"),
        format!("$(touch {d}/marker_subst)"),
        format!("`touch {d}/marker_backtick`"),
        format!("x && touch {d}/marker_and | touch {d}/marker_pipe"),
        "quotes ' \" \\ and\nnewline $HOME ${PATH} * ?".to_owned(),
    ];
    let env: Vec<(String, String)> = values
        .iter()
        .enumerate()
        .map(|(i, v)| (format!("DEPLOY_VAL_{i}"), v.clone()))
        .collect();
    // The script itself is constant; the values reach it only through the environment, and
    // it quotes them, so they are written out as plain bytes.
    let script = r#"for i in 0 1 2 3 4; do eval "v=\"\$DEPLOY_VAL_$i\""; printf '%s' "$v" > "$1/out_$i"; done"#;
    let a = bash(script, dir.path());
    let mut s = spec(&a, LONG, &cancel);
    s.env = &env;
    let (result, _) = run_collect(s).await;
    assert_eq!(result.unwrap(), RunOutcome::Exited(0));
    for (i, v) in values.iter().enumerate() {
        let got = std::fs::read(dir.path().join(format!("out_{i}"))).unwrap();
        assert_eq!(got, v.as_bytes(), "value {i}");
    }
    for marker in [
        "marker_subst",
        "marker_backtick",
        "marker_and",
        "marker_pipe",
    ] {
        assert!(!dir.path().join(marker).exists(), "{marker} was created");
    }
    assert_eq!(std::fs::read_to_string(&victim).unwrap(), "still here");
}

#[tokio::test]
async fn argv_is_never_passed_through_a_shell() {
    let cancel = CancellationToken::new();
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path().to_str().unwrap();
    let literal = format!("$(touch {d}/m1); `touch {d}/m2` ; touch {d}/m3 > {d}/m4");
    let a = argv(&["printf", "%s\\n", &literal]);
    let (result, lines) = run_collect(spec(&a, LONG, &cancel)).await;
    assert_eq!(result.unwrap(), RunOutcome::Exited(0));
    assert_eq!(lines, vec![(Stream::Stdout, literal)]);
    for m in ["m1", "m2", "m3", "m4"] {
        assert!(!dir.path().join(m).exists(), "{m} was created");
    }
}

#[tokio::test]
async fn timeout_kills_sleep_promptly() {
    let cancel = CancellationToken::new();
    let a = argv(&["sleep", "600"]);
    let started = Instant::now();
    let (result, _) = run_collect(spec(&a, Duration::from_millis(300), &cancel)).await;
    let took = started.elapsed();
    assert_eq!(result.unwrap(), RunOutcome::TimedOut);
    assert!(took >= Duration::from_millis(300), "{took:?}");
    assert!(took < Duration::from_secs(2), "took {took:?}");
}

#[tokio::test]
async fn cancel_kills_the_whole_process_group() {
    let cancel = CancellationToken::new();
    let dir = tempfile::tempdir().unwrap();
    let script = r#"
        sleep 600 &
        echo $! > "$1/bg.pid"
        cut -d' ' -f5 /proc/$$/stat > "$1/pgid"
        echo ready
        sleep 600
    "#;
    let a = bash(script, dir.path());
    let started = Instant::now();
    let (result, lines, ended) =
        run_cancel_after_ready(spec(&a, LONG, &cancel), Duration::from_millis(300)).await;
    assert_eq!(result.unwrap(), RunOutcome::Cancelled, "lines: {lines:?}");
    // Both sleeps die from SIGTERM at once, so no grace is needed: cancel + a little.
    let took = ended - started;
    assert!(took < Duration::from_secs(3), "took {took:?}");
    let pgid: i32 = read_trimmed(&dir.path().join("pgid")).parse().unwrap();
    let bg = read_trimmed(&dir.path().join("bg.pid"));
    assert!(!is_alive(&bg), "background sleep {bg} survived");
    assert_group_gone(pgid).await;
}

#[tokio::test]
async fn cancel_before_start_cancels_at_once() {
    let cancel = CancellationToken::new();
    cancel.cancel();
    let a = argv(&["sleep", "600"]);
    let started = Instant::now();
    let (result, _) = run_collect(spec(&a, LONG, &cancel)).await;
    assert_eq!(result.unwrap(), RunOutcome::Cancelled);
    assert!(started.elapsed() < Duration::from_secs(2));
}

#[tokio::test]
async fn script_ignoring_sigterm_is_killed_after_grace() {
    let cancel = CancellationToken::new();
    let dir = tempfile::tempdir().unwrap();
    // '' ignores TERM in bash and, inherited, in its sleeps too.
    let script = r#"
        trap '' TERM
        cut -d' ' -f5 /proc/$$/stat > "$1/pgid"
        sleep 600 &
        echo ready
        while :; do sleep 600; done
    "#;
    let a = bash(script, dir.path());
    let mut s = spec(&a, LONG, &cancel);
    s.kill_grace = Duration::from_millis(500);
    let started = Instant::now();
    let (result, lines, ended) = run_cancel_after_ready(s, Duration::from_millis(100)).await;
    assert_eq!(result.unwrap(), RunOutcome::Cancelled, "lines: {lines:?}");
    // Only SIGKILL, after the 500 ms grace, could end it.
    let took = ended - started;
    assert!(took >= Duration::from_millis(600), "took {took:?}");
    assert!(took < Duration::from_secs(4), "took {took:?}");
    let pgid: i32 = read_trimmed(&dir.path().join("pgid")).parse().unwrap();
    assert_group_gone(pgid).await;
}

#[tokio::test]
async fn sigterm_ignoring_script_takes_the_grace_then_dies() {
    let cancel = CancellationToken::new();
    let dir = tempfile::tempdir().unwrap();
    let script = r#"
        trap 'echo ignoring TERM' TERM
        cut -d' ' -f5 /proc/$$/stat > "$1/pgid"
        echo ready
        while :; do sleep 0.05; done
    "#;
    let a = bash(script, dir.path());
    let mut s = spec(&a, LONG, &cancel);
    s.kill_grace = Duration::from_millis(700);
    let started = Instant::now();
    let (result, lines, ended) = run_cancel_after_ready(s, Duration::from_millis(100)).await;
    assert_eq!(result.unwrap(), RunOutcome::Cancelled);
    // It survived SIGTERM (and said so), so only SIGKILL after the grace ended it.
    assert!(
        lines.contains(&(Stream::Stdout, "ignoring TERM".to_owned())),
        "{lines:?}"
    );
    let took = ended - started;
    assert!(took >= Duration::from_millis(800), "took {took:?}");
    assert!(took < Duration::from_secs(4), "took {took:?}");
    let pgid: i32 = read_trimmed(&dir.path().join("pgid")).parse().unwrap();
    assert_group_gone(pgid).await;
}

#[tokio::test]
async fn kill_grace_lets_a_trapping_script_clean_up() {
    let cancel = CancellationToken::new();
    let dir = tempfile::tempdir().unwrap();
    let script = r#"
        trap 'echo cleaning up; echo cleaned > "$1/marker"; exit 0' TERM
        echo ready
        sleep 600 &
        wait
    "#;
    let a = bash(script, dir.path());
    let mut s = spec(&a, LONG, &cancel);
    s.kill_grace = Duration::from_secs(5);
    let started = Instant::now();
    let (result, lines, ended) = run_cancel_after_ready(s, Duration::from_millis(100)).await;
    assert_eq!(result.unwrap(), RunOutcome::Cancelled);
    assert_eq!(read_trimmed(&dir.path().join("marker")), "cleaned");
    assert!(
        lines.contains(&(Stream::Stdout, "cleaning up".to_owned())),
        "{lines:?}"
    );
    // The script exited on its own, so the 5 s grace was not waited out.
    let took = ended - started;
    assert!(took < Duration::from_secs(3), "took {took:?}");
}

#[tokio::test]
async fn timeout_with_trap_still_gives_the_grace() {
    let cancel = CancellationToken::new();
    let dir = tempfile::tempdir().unwrap();
    // The trap is installed first thing; the timeout leaves bash ample time to reach it.
    let script = r#"
        trap 'echo cleaned > "$1/marker"; exit 0' TERM
        sleep 600 &
        wait
    "#;
    let a = bash(script, dir.path());
    let mut s = spec(&a, Duration::from_millis(800), &cancel);
    s.kill_grace = Duration::from_secs(5);
    let (result, _) = run_collect(s).await;
    assert_eq!(result.unwrap(), RunOutcome::TimedOut);
    assert_eq!(read_trimmed(&dir.path().join("marker")), "cleaned");
}

#[tokio::test]
async fn background_children_do_not_outlive_a_normal_exit() {
    let cancel = CancellationToken::new();
    let dir = tempfile::tempdir().unwrap();
    // The background sleep keeps stdout and stderr open after the leader exits.
    let script = r#"
        sleep 600 &
        echo $! > "$1/bg.pid"
        cut -d' ' -f5 /proc/$$/stat > "$1/pgid"
        echo done
    "#;
    let a = bash(script, dir.path());
    let started = Instant::now();
    let (result, lines) = run_collect(spec(&a, LONG, &cancel)).await;
    let took = started.elapsed();
    assert_eq!(result.unwrap(), RunOutcome::Exited(0));
    assert_eq!(lines, vec![(Stream::Stdout, "done".to_owned())]);
    assert!(took < Duration::from_secs(3), "took {took:?}");
    let bg = read_trimmed(&dir.path().join("bg.pid"));
    assert!(!is_alive(&bg), "background sleep {bg} survived");
    let pgid: i32 = read_trimmed(&dir.path().join("pgid")).parse().unwrap();
    assert_group_gone(pgid).await;
}

#[tokio::test]
async fn escaped_process_holding_the_pipe_does_not_block_return() {
    let cancel = CancellationToken::new();
    let dir = tempfile::tempdir().unwrap();
    // setsid moves the sleep out of our group, so killpg cannot reach it; it still holds
    // stdout. run must return anyway, after a bounded wait.
    let script = r#"
        setsid sleep 30 &
        echo $! > "$1/escaped.pid"
        echo bye
    "#;
    let a = bash(script, dir.path());
    let started = Instant::now();
    let (result, lines) = run_collect(spec(&a, LONG, &cancel)).await;
    let took = started.elapsed();
    // Clean up the escaped process ourselves.
    if let Ok(pid) = read_trimmed(&dir.path().join("escaped.pid")).parse::<i32>() {
        // SAFETY: sending a signal has no memory-safety preconditions.
        unsafe { libc::kill(pid, libc::SIGKILL) };
    }
    assert_eq!(result.unwrap(), RunOutcome::Exited(0));
    assert_eq!(lines, vec![(Stream::Stdout, "bye".to_owned())]);
    assert!(took < Duration::from_secs(5), "took {took:?}");
}

#[tokio::test]
async fn dropping_the_run_future_kills_the_group() {
    let cancel = CancellationToken::new();
    let dir = tempfile::tempdir().unwrap();
    let script = r#"
        cut -d' ' -f5 /proc/$$/stat > "$1/pgid"
        sleep 600 &
        echo ready
        sleep 600
    "#;
    let a = bash(script, dir.path());
    let (ready_tx, ready_rx) = tokio::sync::oneshot::channel::<()>();
    let mut ready_tx = Some(ready_tx);
    let fut = run(spec(&a, LONG, &cancel), move |_, line| {
        if line == "ready"
            && let Some(tx) = ready_tx.take()
        {
            let _ = tx.send(());
        }
    });
    tokio::select! {
        r = fut => panic!("run finished early: {r:?}"),
        _ = async {
            let _ = ready_rx.await;
            tokio::time::sleep(Duration::from_millis(100)).await;
        } => {}
        _ = tokio::time::sleep(Duration::from_secs(10)) => panic!("script never got ready"),
    }
    // The run future is dropped here.
    let pgid: i32 = read_trimmed(&dir.path().join("pgid")).parse().unwrap();
    assert_group_gone(pgid).await;
}

#[tokio::test]
async fn relative_program_is_resolved_in_cwd() {
    use std::os::unix::fs::PermissionsExt;
    let cancel = CancellationToken::new();
    let dir = tempfile::tempdir().unwrap();
    let script = dir.path().join("ship.sh");
    std::fs::write(&script, "#!/bin/sh\necho shipped \"$1\"\n").unwrap();
    std::fs::set_permissions(&script, std::fs::Permissions::from_mode(0o755)).unwrap();
    let a = argv(&["./ship.sh", "v1"]);
    let mut s = spec(&a, LONG, &cancel);
    s.cwd = Some(dir.path());
    let (result, lines) = run_collect(s).await;
    assert_eq!(result.unwrap(), RunOutcome::Exited(0));
    assert_eq!(lines, vec![(Stream::Stdout, "shipped v1".to_owned())]);
}
