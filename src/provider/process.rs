//! Running one deploy command as a child process, safely.
//!
//! This is the reusable core of the `command` provider: it runs a configured argv (never
//! through a shell) in its own process group, streams every output line to a callback as it
//! arrives, enforces a timeout and a cancellation token, and makes sure that when it returns
//! no process of the group is left running (no orphaned `sleep 600` from a deploy script).
//!
//! Lifecycle of one [`run`]:
//! 1. spawn the program as the leader of a new process group, stdin closed, stdout and stderr piped;
//! 2. forward output lines until the leader exits, the timeout passes or the token is cancelled;
//! 3. on timeout or cancel: SIGTERM the group, wait up to `kill_grace`, then SIGKILL the group;
//! 4. once the leader has exited (still unreaped, so its pid keeps the group id reserved),
//!    SIGKILL whatever is left of the group and wait, bounded, until no member is alive;
//! 5. reap the leader, forward the output still buffered (bounded), and report the outcome.

use std::future::{Future, poll_fn};
use std::io;
use std::os::unix::process::ExitStatusExt;
use std::path::{Path, PathBuf};
use std::pin::Pin;
use std::process::{ExitStatus, Stdio};
use std::task::Poll;
use std::time::Duration;

use tokio::io::{AsyncRead, ReadBuf};
use tokio::process::{Child, Command};
use tokio::sync::mpsc;
use tokio::task::{JoinHandle, JoinSet};
use tokio::time::{Instant, sleep, sleep_until};
use tokio_util::sync::CancellationToken;

use super::child_env;

/// Longest line handed to `on_line`, in bytes; the rest of a longer line is dropped.
pub const MAX_LINE_BYTES: usize = 64 * 1024;

/// Appended to a line that was cut at [`MAX_LINE_BYTES`].
pub const TRUNCATION_MARKER: &str = " [… line truncated at 64 KiB]";

/// Lines buffered between the pipe readers and `on_line`; a full queue pauses the readers,
/// which in turn makes a very chatty child block on its pipe instead of growing our memory.
const LINE_QUEUE: usize = 256;

/// Bytes read from a pipe at a time.
const READ_CHUNK: usize = 8 * 1024;

/// How long to wait, after SIGKILL, for the members of the group to actually die.
const GROUP_GONE_WAIT: Duration = Duration::from_secs(2);

/// Pause between two checks of whether the group is gone.
const GROUP_POLL: Duration = Duration::from_millis(10);

/// After the leader is reaped, stop forwarding output once no line arrived for this long...
const DRAIN_IDLE: Duration = Duration::from_millis(250);

/// ...or, at the latest, this long after the reap (a process that left the group may hold the
/// pipes open forever).
const DRAIN_MAX: Duration = Duration::from_secs(3);

/// What to run and under which limits.
#[derive(Debug, Clone)]
pub struct RunSpec<'a> {
    /// `argv[0]` is the program (looked up in `PATH` when it has no `/`); never passed through a shell.
    pub argv: &'a [String],
    /// The child's environment, on top of the fixed `PATH`, `HOME` and `LANG` of
    /// [`child_env::base`]: nothing of the server's own environment is inherited. Values
    /// that come from GitHub (refs, SHAs, comment text) must arrive ONLY here, never in `argv`.
    pub env: &'a [(String, String)],
    /// Working directory of the child; the current one when `None`.
    pub cwd: Option<&'a Path>,
    /// Wall-clock limit, counted from the spawn.
    pub timeout: Duration,
    /// Time between SIGTERM to the whole group and SIGKILL to it.
    pub kill_grace: Duration,
    /// Cancelling this stops the command like a timeout does.
    pub cancel: CancellationToken,
}

/// Which pipe a line came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Stream {
    Stdout,
    Stderr,
}

/// How a command ended.
#[derive(Debug, PartialEq, Eq)]
pub enum RunOutcome {
    /// The command exited by itself with this code; 0 is success.
    Exited(i32),
    /// The command was killed by this signal, not by us.
    Signalled(i32),
    /// The timeout passed; the group was terminated.
    TimedOut,
    /// The cancellation token fired; the group was terminated.
    Cancelled,
}

impl RunOutcome {
    /// True only for `Exited(0)`.
    pub fn is_success(&self) -> bool {
        *self == RunOutcome::Exited(0)
    }
}

/// Why a command could not be run at all.
#[derive(Debug, thiserror::Error)]
pub enum RunError {
    #[error("the command is empty: give at least the program to run")]
    EmptyArgv,
    #[error("argument {index} of the command contains a NUL byte")]
    InvalidArgument { index: usize },
    #[error("{reason}")]
    InvalidEnv { name: String, reason: String },
    #[error("working directory {} is not usable: {source}", path.display())]
    Cwd { path: PathBuf, source: io::Error },
    #[error(
        "could not start `{program}`: {source} (check that the program path is right, that it exists and that it is executable)"
    )]
    Spawn { program: String, source: io::Error },
    #[error("could not wait for the command: {0}")]
    Wait(#[source] io::Error),
}

/// Runs the command in its own process group, streams every output line to `on_line` as it
/// arrives, and on timeout or cancel sends SIGTERM to the whole group then SIGKILL after
/// `kill_grace`, and waits until the group is gone: no orphan processes.
///
/// Even when the leader exits by itself, whatever it left running in its group (a background
/// `sleep &`) is killed before this returns. Output lines are decoded as lossy UTF-8, stripped
/// of their `\n` (and a `\r` before it), and cut at [`MAX_LINE_BYTES`] with
/// [`TRUNCATION_MARKER`]. A last line without a trailing newline is delivered too.
///
/// If the token is cancelled or the timeout passes after the leader has already exited, the
/// exit is reported. If the returned future is dropped before completion, the group is sent
/// SIGKILL.
pub async fn run(
    spec: RunSpec<'_>,
    mut on_line: impl FnMut(Stream, String) + Send,
) -> Result<RunOutcome, RunError> {
    let (program, args) = spec.argv.split_first().ok_or(RunError::EmptyArgv)?;
    // Validate up front so that a bad value gets a precise error instead of a vague spawn failure.
    validate(spec.argv, spec.env)?;
    let mut cmd = command(program, args, &spec);
    // The timeout counts from the spawn.
    let deadline = Instant::now().checked_add(spec.timeout);
    let mut child = cmd
        .spawn()
        .map_err(|source| spawn_error(program, spec.cwd, source))?;
    // process_group(0) makes the group id equal to the leader's pid.
    let pgid = child
        .id()
        .and_then(|id| libc::pid_t::try_from(id).ok())
        .ok_or_else(|| RunError::Wait(io::Error::other("the spawned command has no pid")))?;
    // Kills the group if this future is dropped half-way (declared after `child`, so it runs
    // before kill_on_drop, while the unreaped leader still reserves the group id).
    let mut guard = GroupGuard { pgid, armed: true };
    let (mut readers, mut lines) = read_output(&mut child);
    // Notices the leader's exit without reaping it, so its pid keeps the group id reserved
    // until we have killed the rest of the group (no killpg on a recycled id).
    let mut leader = LeaderWatch::start(pgid);

    let stopped = watch(
        &mut lines,
        &mut leader,
        &spec.cancel,
        deadline,
        &mut on_line,
    )
    .await;
    if stopped.is_some() {
        terminate(pgid, spec.kill_grace, &mut lines, &mut leader, &mut on_line).await;
    }
    // The leader is gone but not reaped yet (so the group id is still ours): kill what it
    // left behind in its group, background jobs included.
    signal_group(pgid, libc::SIGKILL);
    // Wait (bounded) until those members are really dead, not merely signalled.
    lines
        .forward_until(wait_group_gone(pgid), &mut on_line)
        .await;
    // From here the group id may be released, so the guard must not signal it any more.
    guard.armed = false;
    // Reap the leader (it has exited already, so this returns at once).
    let status = child.wait().await.map_err(RunError::Wait)?;
    // Deliver what is still buffered in the pipes, but do not wait for a pipe that a process
    // outside the group keeps open.
    lines.drain(&mut on_line).await;
    // Stop the readers now rather than when a stray writer closes its end.
    readers.abort_all();

    Ok(stopped.unwrap_or_else(|| outcome_of(status)))
}

/// The command for `program` and `args` under `spec`: the child's own process group,
/// nothing of the server's environment, stdin closed, stdout and stderr piped.
fn command(program: &str, args: &[String], spec: &RunSpec<'_>) -> Command {
    let mut cmd = Command::new(program);
    cmd.args(args)
        // Nothing of the server's environment (its secrets included) reaches the child.
        .env_clear()
        .envs(child_env::base())
        // Values are handed to execve as they are: nothing here is ever seen by a shell.
        .envs(spec.env.iter().map(|(k, v)| (k, v)))
        // A deploy command must not wait for input that will never come.
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        // Leader of a new group, so one killpg reaches the command and everything it started.
        .process_group(0)
        // Last resort if this future is dropped: tokio kills and later reaps the leader.
        .kill_on_drop(true);
    if let Some(dir) = spec.cwd {
        cmd.current_dir(dir);
    }
    cmd
}

/// Starts a reader on each of the child's pipes; the lines arrive on the returned queue,
/// which closes when both pipes are at EOF.
fn read_output(child: &mut Child) -> (JoinSet<()>, Lines) {
    let (tx, rx) = mpsc::channel(LINE_QUEUE);
    // Readers live in a JoinSet so that dropping it aborts them, even if a stray process
    // still holds a pipe open.
    let mut readers = JoinSet::new();
    if let Some(out) = child.stdout.take() {
        readers.spawn(read_lines(out, Stream::Stdout, tx.clone()));
    }
    if let Some(err) = child.stderr.take() {
        readers.spawn(read_lines(err, Stream::Stderr, tx.clone()));
    }
    // Only the readers hold senders now, so the queue closes when both pipes are at EOF.
    drop(tx);
    (readers, Lines { rx, open: true })
}

/// Forwards output until the leader exits, the token is cancelled or the deadline passes.
/// `None` when the command exited by itself; otherwise how it is to be stopped.
async fn watch(
    lines: &mut Lines,
    leader: &mut LeaderWatch,
    cancel: &CancellationToken,
    deadline: Option<Instant>,
    on_line: &mut (impl FnMut(Stream, String) + Send),
) -> Option<RunOutcome> {
    let phase = lines
        .forward_until(
            async {
                tokio::select! {
                    // Biased with the exit first: if the command has finished, the exit wins.
                    biased;
                    () = leader.exited() => Phase::Exited,
                    () = cancel.cancelled() => Phase::Cancelled,
                    () = sleep_until_opt(deadline) => Phase::TimedOut,
                }
            },
            on_line,
        )
        .await;
    match phase {
        Phase::Exited => None,
        // The leader may have exited a moment before the cancel or timeout fired: the exit wins.
        Phase::Cancelled | Phase::TimedOut if leader.has_exited_now() => None,
        Phase::Cancelled => Some(RunOutcome::Cancelled),
        Phase::TimedOut => Some(RunOutcome::TimedOut),
    }
}

/// Stops the group: SIGTERM, output still forwarded for up to `kill_grace` (cleanup
/// messages matter), then SIGKILL, until the leader has exited.
async fn terminate(
    pgid: libc::pid_t,
    kill_grace: Duration,
    lines: &mut Lines,
    leader: &mut LeaderWatch,
    on_line: &mut (impl FnMut(Stream, String) + Send),
) {
    // Ask everything in the group to stop, giving scripts a chance to clean up.
    signal_group(pgid, libc::SIGTERM);
    let grace_end = Instant::now().checked_add(kill_grace);
    lines
        .forward_until(
            async {
                tokio::select! {
                    biased;
                    () = leader.exited() => {},
                    () = sleep_until_opt(grace_end) => {},
                }
            },
            on_line,
        )
        .await;
    // The grace is over: whatever ignored SIGTERM is killed now.
    signal_group(pgid, libc::SIGKILL);
    lines.forward_until(leader.exited(), on_line).await;
}

/// Why the first phase of [`run`] ended.
enum Phase {
    Exited,
    Cancelled,
    TimedOut,
}

fn validate(argv: &[String], env: &[(String, String)]) -> Result<(), RunError> {
    if let Some(index) = argv.iter().position(|a| a.contains('\0')) {
        return Err(RunError::InvalidArgument { index });
    }
    for (name, value) in env {
        if let Err(e) = crate::deploy::env::check_child_name(name) {
            return Err(RunError::InvalidEnv {
                name: name.clone(),
                reason: e.to_string(),
            });
        }
        if value.contains('\0') {
            return Err(RunError::InvalidEnv {
                name: name.clone(),
                reason: format!(
                    "the value of environment variable {name} contains a NUL byte, which no process environment can hold"
                ),
            });
        }
    }
    Ok(())
}

/// Blames a bad working directory when that is the cause, and the program otherwise.
fn spawn_error(program: &str, cwd: Option<&Path>, source: io::Error) -> RunError {
    if let Some(dir) = cwd {
        match std::fs::metadata(dir) {
            Ok(meta) if meta.is_dir() => {}
            Ok(_) => {
                return RunError::Cwd {
                    path: dir.to_path_buf(),
                    source: io::Error::other("not a directory"),
                };
            }
            Err(source) => {
                return RunError::Cwd {
                    path: dir.to_path_buf(),
                    source,
                };
            }
        }
    }
    RunError::Spawn {
        program: program.to_owned(),
        source,
    }
}

fn outcome_of(status: ExitStatus) -> RunOutcome {
    match (status.code(), status.signal()) {
        (Some(code), _) => RunOutcome::Exited(code),
        (None, Some(sig)) => RunOutcome::Signalled(sig),
        // Neither a code nor a signal cannot happen for a terminated process on Unix.
        (None, None) => RunOutcome::Exited(-1),
    }
}

async fn sleep_until_opt(deadline: Option<Instant>) {
    match deadline {
        Some(at) => sleep_until(at).await,
        // A duration too large to add to now never expires.
        None => std::future::pending().await,
    }
}

/// Sends `sig` to every process of the group; true if at least one process received it.
fn signal_group(pgid: libc::pid_t, sig: libc::c_int) -> bool {
    // SAFETY: killpg only sends a signal; it has no memory-safety preconditions.
    let rc = unsafe { libc::killpg(pgid, sig) };
    if rc == 0 {
        return true;
    }
    let err = io::Error::last_os_error();
    // ESRCH just means the group is already empty.
    if err.raw_os_error() != Some(libc::ESRCH) {
        tracing::warn!(pgid, sig, error = %err, "could not signal the command's process group");
    }
    false
}

/// Polls (bounded) until no live process remains in the group, re-sending SIGKILL so that a
/// process forked while the first one was in flight is caught too.
async fn wait_group_gone(pgid: libc::pid_t) {
    let give_up = Instant::now() + GROUP_GONE_WAIT;
    loop {
        // /proc is read on a blocking thread so that the runtime is never stalled.
        let alive = tokio::task::spawn_blocking(move || group_has_live_members(pgid))
            .await
            .unwrap_or(false);
        if !alive {
            return;
        }
        if Instant::now() >= give_up {
            tracing::warn!(pgid, "processes of the command's group survived SIGKILL");
            return;
        }
        signal_group(pgid, libc::SIGKILL);
        sleep(GROUP_POLL).await;
    }
}

/// True while a process of the group is alive. Zombies do not count: they are dead and only
/// wait for their parent (here the unreaped leader, or init) to collect them.
#[cfg(target_os = "linux")]
fn group_has_live_members(pgid: libc::pid_t) -> bool {
    processes().any(|dir| live_group(&dir) == Some(pgid))
}

/// The `/proc/PID` directories of the processes running now.
#[cfg(target_os = "linux")]
fn processes() -> impl Iterator<Item = std::path::PathBuf> {
    std::fs::read_dir("/proc")
        .into_iter()
        .flatten()
        .flatten()
        .filter(|entry| {
            entry
                .file_name()
                .to_str()
                .is_some_and(|s| !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit()))
        })
        .map(|entry| entry.path())
}

/// The process group of the process at `/proc/PID`, unless it is a zombie or gone (it
/// may vanish between the listing and the read).
#[cfg(target_os = "linux")]
fn live_group(dir: &std::path::Path) -> Option<libc::pid_t> {
    let stat = std::fs::read_to_string(dir.join("stat")).ok()?;
    match parse_stat(&stat)? {
        (state, pgrp) if state != 'Z' && state != 'X' => Some(pgrp),
        _ => None,
    }
}

/// Without /proc, a zombie leader cannot be told from a live member, so rely on SIGKILL.
#[cfg(not(target_os = "linux"))]
fn group_has_live_members(_pgid: libc::pid_t) -> bool {
    false
}

/// Stops what is left on this machine of a deployment whose worker died (a server killed
/// with SIGKILL leaves its deploy command running in the command's own process group):
/// every live process group one of whose members carries `DEPLOY_ID=<deployment_id>` in
/// its environment gets SIGTERM, then SIGKILL after `grace`. The environment is the
/// proof: a process group id alone could have been reused. Returns the groups found.
/// Processes of other users, and this process's own group, are left alone.
pub async fn stop_leftovers(deployment_id: &str, grace: Duration) -> usize {
    let needle = format!("DEPLOY_ID={deployment_id}");
    let groups = tokio::task::spawn_blocking(move || groups_with_env(&needle))
        .await
        .unwrap_or_default();
    for &pgid in &groups {
        tracing::warn!(
            pgid,
            deployment = deployment_id,
            "stopping the deploy command its lost worker left running"
        );
        signal_group(pgid, libc::SIGTERM);
    }
    if !groups.is_empty() {
        sleep(grace).await;
        for &pgid in &groups {
            signal_group(pgid, libc::SIGKILL);
            wait_group_gone(pgid).await;
        }
    }
    groups.len()
}

/// The process groups (other than ours) with a live member whose environment holds the
/// entry `needle` exactly.
#[cfg(target_os = "linux")]
fn groups_with_env(needle: &str) -> Vec<libc::pid_t> {
    // SAFETY: getpgrp has no preconditions.
    let own = unsafe { libc::getpgrp() };
    let mut groups: Vec<libc::pid_t> = processes()
        .filter_map(|dir| {
            let environ = std::fs::read(dir.join("environ")).ok()?;
            if !environ.split(|b| *b == 0).any(|e| e == needle.as_bytes()) {
                return None;
            }
            live_group(&dir).filter(|&pgrp| pgrp > 1 && pgrp != own)
        })
        .collect();
    groups.sort_unstable();
    groups.dedup();
    groups
}

#[cfg(not(target_os = "linux"))]
fn groups_with_env(_needle: &str) -> Vec<libc::pid_t> {
    Vec::new()
}

/// Returns the state letter and the process group of a `/proc/PID/stat` line.
#[cfg(any(target_os = "linux", test))]
fn parse_stat(stat: &str) -> Option<(char, libc::pid_t)> {
    // The command name is in parentheses and may itself contain spaces and ')'.
    let rest = &stat[stat.rfind(')')? + 1..];
    let mut fields = rest.split_ascii_whitespace();
    let state = fields.next()?.chars().next()?;
    let _ppid = fields.next()?;
    let pgrp = fields.next()?.parse().ok()?;
    Some((state, pgrp))
}

/// Kills the group when [`run`] is dropped before it finishes.
struct GroupGuard {
    pgid: libc::pid_t,
    armed: bool,
}

impl Drop for GroupGuard {
    fn drop(&mut self) {
        if self.armed {
            signal_group(self.pgid, libc::SIGKILL);
        }
    }
}

/// Learns when the leader has exited, without reaping it.
struct LeaderWatch {
    pid: libc::pid_t,
    handle: JoinHandle<io::Result<()>>,
    exited: bool,
}

impl LeaderWatch {
    fn start(pid: libc::pid_t) -> Self {
        // waitid blocks, so it gets a thread of its own; it ends when the leader exits, which
        // every path of `run` (and kill_on_drop) guarantees.
        let handle = tokio::task::spawn_blocking(move || wait_exit_no_reap(pid, true).map(|_| ()));
        LeaderWatch {
            pid,
            handle,
            exited: false,
        }
    }

    /// Resolves once the leader has exited. Cancel-safe, and may be awaited again afterwards.
    async fn exited(&mut self) {
        if self.exited {
            return;
        }
        let result = (&mut self.handle).await;
        self.exited = true;
        let error = match result {
            Ok(Ok(())) => return,
            Ok(Err(e)) => e.to_string(),
            Err(e) => e.to_string(),
        };
        // Without the watch we cannot tell; treating the leader as exited keeps `run` bounded
        // (the group is SIGKILLed next and the reap then waits for the real exit).
        tracing::warn!(pid = self.pid, error, "could not watch the command's exit");
    }

    /// Non-blocking check, used to let an exit win over a cancel or timeout that raced it.
    fn has_exited_now(&mut self) -> bool {
        if !self.exited && matches!(wait_exit_no_reap(self.pid, false), Ok(true)) {
            self.exited = true;
        }
        self.exited
    }
}

/// Waits (or with `block == false` checks) for the child `pid` to exit, leaving it a zombie:
/// WNOWAIT keeps the pid, and so the process group id, reserved until we reap it ourselves.
fn wait_exit_no_reap(pid: libc::pid_t, block: bool) -> io::Result<bool> {
    let id = libc::id_t::try_from(pid).map_err(io::Error::other)?;
    let flags = libc::WEXITED | libc::WNOWAIT | if block { 0 } else { libc::WNOHANG };
    loop {
        // SAFETY: an all-zero siginfo_t is a valid value of this plain C struct.
        let mut info: libc::siginfo_t = unsafe { std::mem::zeroed() };
        // SAFETY: `info` is a valid, writable siginfo_t for the whole call.
        let rc = unsafe { libc::waitid(libc::P_PID, id, &mut info, flags) };
        if rc == 0 {
            // SAFETY: after a successful waitid, si_pid is initialised (0 when, with WNOHANG,
            // the child has not exited yet).
            return Ok(block || unsafe { info.si_pid() } != 0);
        }
        let err = io::Error::last_os_error();
        // A signal delivered to this thread interrupts the wait; just wait again.
        if err.kind() != io::ErrorKind::Interrupted {
            return Err(err);
        }
    }
}

/// The receiving end of the output queue.
struct Lines {
    rx: mpsc::Receiver<(Stream, String)>,
    open: bool,
}

impl Lines {
    /// Forwards lines to `on_line` until `fut` completes, and returns its output.
    async fn forward_until<F: Future>(
        &mut self,
        fut: F,
        on_line: &mut (impl FnMut(Stream, String) + Send),
    ) -> F::Output {
        tokio::pin!(fut);
        loop {
            tokio::select! {
                // `fut` first, so a flood of output cannot delay an exit, timeout or cancel.
                biased;
                out = &mut fut => return out,
                msg = self.rx.recv(), if self.open => match msg {
                    Some((stream, line)) => on_line(stream, line),
                    None => self.open = false,
                },
            }
        }
    }

    /// Forwards the remaining lines until both pipes are at EOF, or until the bounded wait ends.
    async fn drain(&mut self, on_line: &mut (impl FnMut(Stream, String) + Send)) {
        let give_up = Instant::now() + DRAIN_MAX;
        while self.open {
            let until = (Instant::now() + DRAIN_IDLE).min(give_up);
            tokio::select! {
                msg = self.rx.recv() => match msg {
                    Some((stream, line)) => on_line(stream, line),
                    None => self.open = false,
                },
                () = sleep_until(until) => return,
            }
        }
    }
}

/// Reads one pipe to EOF and queues its lines.
async fn read_lines<R: AsyncRead + Unpin>(
    mut reader: R,
    stream: Stream,
    tx: mpsc::Sender<(Stream, String)>,
) {
    let mut buf = vec![0u8; READ_CHUNK];
    let mut splitter = LineSplitter::default();
    let mut ready = Vec::new();
    loop {
        let n = match read_some(&mut reader, &mut buf).await {
            // EOF (every writer is gone) or a broken pipe: nothing more will come.
            Ok(0) | Err(_) => break,
            Ok(n) => n,
        };
        splitter.push(&buf[..n], &mut ready);
        for line in ready.drain(..) {
            if tx.send((stream, line)).await.is_err() {
                // `run` has finished and no longer listens.
                return;
            }
        }
    }
    // A last line without a trailing newline still counts.
    if let Some(line) = splitter.finish() {
        let _ = tx.send((stream, line)).await;
    }
}

/// One `read` from an async reader, without needing tokio's io-util helpers.
async fn read_some<R: AsyncRead + Unpin>(reader: &mut R, buf: &mut [u8]) -> io::Result<usize> {
    poll_fn(|cx| {
        let mut read_buf = ReadBuf::new(buf);
        match Pin::new(&mut *reader).poll_read(cx, &mut read_buf) {
            Poll::Ready(Ok(())) => Poll::Ready(Ok(read_buf.filled().len())),
            Poll::Ready(Err(e)) => Poll::Ready(Err(e)),
            Poll::Pending => Poll::Pending,
        }
    })
    .await
}

/// Splits a byte stream into lines of at most [`MAX_LINE_BYTES`] bytes.
#[derive(Default)]
struct LineSplitter {
    line: Vec<u8>,
    truncated: bool,
}

impl LineSplitter {
    /// Consumes `chunk`, appending every line it completes to `out`.
    fn push(&mut self, mut chunk: &[u8], out: &mut Vec<String>) {
        while let Some(nl) = chunk.iter().position(|&b| b == b'\n') {
            self.append(&chunk[..nl]);
            out.push(self.take());
            chunk = &chunk[nl + 1..];
        }
        self.append(chunk);
    }

    /// The unterminated last line, if there is one.
    fn finish(&mut self) -> Option<String> {
        if self.line.is_empty() && !self.truncated {
            None
        } else {
            Some(self.take())
        }
    }

    fn append(&mut self, bytes: &[u8]) {
        let room = MAX_LINE_BYTES - self.line.len();
        if bytes.len() > room {
            // Memory stays bounded however long the line is; the rest is dropped.
            self.line.extend_from_slice(&bytes[..room]);
            self.truncated = true;
        } else {
            self.line.extend_from_slice(bytes);
        }
    }

    fn take(&mut self) -> String {
        let mut bytes = std::mem::take(&mut self.line);
        let truncated = std::mem::take(&mut self.truncated);
        if truncated {
            // Do not show half a character where the cut fell.
            trim_partial_char(&mut bytes);
        } else if bytes.last() == Some(&b'\r') {
            // CRLF output shows the same as LF output.
            bytes.pop();
        }
        let mut line = String::from_utf8_lossy(&bytes).into_owned();
        if truncated {
            line.push_str(TRUNCATION_MARKER);
        }
        line
    }
}

/// Removes an incomplete UTF-8 sequence at the end of `bytes`.
fn trim_partial_char(bytes: &mut Vec<u8>) {
    let len = bytes.len();
    // A UTF-8 sequence is at most 4 bytes: look back at most that far for its first byte.
    for start in (len.saturating_sub(4)..len).rev() {
        let b = bytes[start];
        if b & 0xC0 == 0x80 {
            // Continuation byte: the sequence started earlier.
            continue;
        }
        let needed = match b {
            0xF0..=0xFF => 4,
            0xE0..=0xEF => 3,
            0xC0..=0xDF => 2,
            _ => 1,
        };
        if start + needed > len {
            bytes.truncate(start);
        }
        return;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn split(chunks: &[&[u8]]) -> Vec<String> {
        let mut s = LineSplitter::default();
        let mut out = Vec::new();
        for c in chunks {
            s.push(c, &mut out);
        }
        out.extend(s.finish());
        out
    }

    #[test]
    fn splits_lines_across_chunks() {
        assert_eq!(split(&[b"ab", b"c\nde", b"f\n"]), vec!["abc", "def"]);
    }

    #[test]
    fn keeps_empty_lines_and_unterminated_last_line() {
        assert_eq!(split(&[b"\n\nx\ny"]), vec!["", "", "x", "y"]);
        assert!(split(&[b""]).is_empty());
    }

    #[test]
    fn strips_carriage_return_before_newline() {
        assert_eq!(split(&[b"a\r\nb\r", b"\n"]), vec!["a", "b"]);
    }

    #[test]
    fn decodes_invalid_utf8_lossily() {
        assert_eq!(split(&[b"a\xffb\n"]), vec!["a\u{fffd}b"]);
    }

    #[test]
    fn truncates_long_lines_with_marker_and_continues() {
        let long = vec![b'x'; MAX_LINE_BYTES + 1000];
        let out = split(&[&long[..5000], &long[5000..], b"\nnext\n"]);
        assert_eq!(out.len(), 2);
        assert_eq!(
            out[0],
            format!("{}{}", "x".repeat(MAX_LINE_BYTES), TRUNCATION_MARKER)
        );
        assert_eq!(out[1], "next");
    }

    #[test]
    fn line_of_exactly_the_limit_is_not_truncated() {
        let exact = vec![b'y'; MAX_LINE_BYTES];
        assert_eq!(split(&[&exact, b"\n"]), vec!["y".repeat(MAX_LINE_BYTES)]);
    }

    #[test]
    fn truncation_does_not_split_a_character() {
        // "é" is 2 bytes; put its first byte exactly at the limit.
        let mut bytes = vec![b'a'; MAX_LINE_BYTES - 1];
        bytes.extend_from_slice("é tail".as_bytes());
        let out = split(&[&bytes]);
        assert_eq!(
            out,
            vec![format!(
                "{}{}",
                "a".repeat(MAX_LINE_BYTES - 1),
                TRUNCATION_MARKER
            )]
        );
    }

    #[test]
    fn trim_partial_char_keeps_complete_sequences() {
        let mut v = "aé€😀".as_bytes().to_vec();
        let full = v.clone();
        trim_partial_char(&mut v);
        assert_eq!(v, full);
        let mut cut = full[..full.len() - 1].to_vec();
        trim_partial_char(&mut cut);
        assert_eq!(cut, "aé€".as_bytes());
    }

    #[test]
    fn parses_proc_stat_with_odd_command_names() {
        let stat = "1234 (a) b (c)) S 1 987 987 0 -1 4194560";
        assert_eq!(parse_stat(stat), Some(('S', 987)));
        assert_eq!(parse_stat("1 (x) Z 1 55 55"), Some(('Z', 55)));
        assert_eq!(parse_stat("garbage"), None);
    }

    #[test]
    fn validation_rejects_bad_env_and_args() {
        let argv = vec!["a".to_owned(), "b\0c".to_owned()];
        assert!(matches!(
            validate(&argv, &[]),
            Err(RunError::InvalidArgument { index: 1 })
        ));
        for (k, v) in [
            ("", "x"),
            ("A=B", "x"),
            ("A", "x\0y"),
            ("LD_PRELOAD", "/tmp/x.so"),
            ("PATH", "/tmp"),
            ("BASH_FUNC_echo%%", "() { id; }"),
        ] {
            let env = vec![(k.to_owned(), v.to_owned())];
            assert!(matches!(
                validate(&argv[..1], &env),
                Err(RunError::InvalidEnv { .. })
            ));
        }
        assert!(validate(&argv[..1], &[("A".into(), "$(x);`y`".into())]).is_ok());
    }

    #[test]
    fn outcome_success() {
        assert!(RunOutcome::Exited(0).is_success());
        assert!(!RunOutcome::Exited(1).is_success());
        assert!(!RunOutcome::Cancelled.is_success());
    }

    #[test]
    fn run_future_is_send() {
        fn assert_send<T: Send>(_: &T) {}
        let argv = vec!["true".to_owned()];
        let spec = RunSpec {
            argv: &argv,
            env: &[],
            cwd: None,
            timeout: Duration::from_secs(1),
            kill_grace: Duration::from_secs(1),
            cancel: CancellationToken::new(),
        };
        let fut = run(spec, |_, _| {});
        assert_send(&fut);
    }
}
