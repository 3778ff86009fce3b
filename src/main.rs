//! The `deploybot` command line: parses the arguments and hands each command to the
//! library (`deploybot::cli` for the client commands, `deploybot::app` for the server and
//! its database). Everything it does lives there.

use std::fmt::Display;
use std::process::ExitCode;

use clap::{Parser, Subcommand};
use deploybot::app::{self, ServeOptions};
use deploybot::cli::{
    self, ConfigFlag, DatabaseFlags, EXIT_FAILED, EXIT_SUCCESS, EXIT_USAGE, ServerFlags, client,
    simulate,
};

/// mimalloc as the allocator, built without transparent huge pages (`no_thp` in
/// Cargo.toml): against glibc's malloc it measured faster for webhook ingest at about the
/// same resident size; huge pages only added memory (BENCHMARKS.md, Memory).
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

#[derive(Parser)]
#[command(
    name = "deploybot",
    version,
    about = "A GitHub deploy bot: pushes, tags and /deploy comments become deployments.",
    after_help = cli::EXIT_CODES_HELP
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run the server: webhooks, REST API, pages and the worker.
    #[command(after_help = cli::SERVER_ENV_HELP)]
    Serve {
        #[command(flatten)]
        server: ServerFlags,
        /// Accept webhooks without a valid signature. For local experiments only: anyone
        /// who can reach the server can then deploy.
        #[arg(long)]
        insecure_no_signature: bool,
    },
    /// Try the bot on a laptop: the server with a built-in GitHub stand-in, seeded from
    /// the configuration's repositories (pull request #1, users octocat, alice and bob).
    /// Comment with `deploybot simulate comment --repo OWNER/NAME --pr 1 --user alice
    /// --body "/deploy ENV"` and watch http://LISTEN/sandbox/OWNER/NAME/pull/1. It never
    /// calls GitHub: GITHUB_TOKEN and the App credentials are not used.
    Sandbox {
        #[command(flatten)]
        config: cli::ConfigFlag,
        /// The address to listen on (the file's `listen`; by default 127.0.0.1:8080).
        #[arg(long, env = "DEPLOYBOT_LISTEN", value_name = "ADDRESS")]
        listen: Option<String>,
        /// The database. By default a fresh SQLite file in a temporary directory, removed
        /// at exit; DATABASE_URL and the file's `database_url` are not used, so that the
        /// sandbox never writes into a real database.
        #[arg(long, value_name = "URL")]
        database_url: Option<String>,
    },
    /// Apply database migrations and exit.
    Migrate {
        #[command(flatten)]
        database: DatabaseFlags,
    },
    /// Copy the SQLite database to a new file while the server runs (for PostgreSQL it
    /// shows the pg_dump command). Restore: stop deploybot, put the copy in the database
    /// file's place (removing its -wal and -shm files), start deploybot.
    Backup(cli::BackupArgs),
    /// Remove stored records past their `[retention]` period now: deployment log lines,
    /// sent or failed outbox items, webhook delivery records and audit events (never
    /// releases or deployments). Waits for no interval, but never runs beside a server's
    /// pruning: exit 1 when one prunes now.
    Prune {
        #[command(flatten)]
        database: DatabaseFlags,
    },
    /// Work with the configuration.
    Config {
        #[command(subcommand)]
        command: ConfigCommand,
    },
    /// Work with the repository ids deploybot has pinned.
    Repos {
        #[command(subcommand)]
        command: ReposCommand,
    },
    /// Sign and send a realistic GitHub webhook to a running server (try the bot without GitHub).
    Simulate {
        #[command(subcommand)]
        event: simulate::Event,
    },
    /// Deploy a new release of an instance.
    Deploy(client::DeployArgs),
    /// Return an instance to an earlier release (default: the previous one).
    Rollback(client::RollbackArgs),
    /// Cancel a pending or running deployment.
    Cancel(client::CancelArgs),
    /// Approve a deployment that waits for approval (not one you asked for).
    Approve(client::ApproveArgs),
    /// List an instance's deployments, newest first.
    Deployments(client::ListArgs),
    /// List an instance's releases, highest version first.
    Releases(client::ListArgs),
    /// List the instances with their active release.
    Instances(client::InstancesArgs),
    /// Follow a deployment's progress and log until it ends (exit 0 succeeded, 1 not).
    Watch(client::WatchArgs),
    /// Lock an instance (or with --global every instance of its repository): others'
    /// deploys are refused (exit 1), pushes wait until it ends.
    Lock(client::LockArgs),
    /// Release the lock on an instance (or with --global its repository's).
    Unlock(client::UnlockArgs),
    /// List the live locks.
    Locks(client::LocksArgs),
    /// Read the audit trail, newest first: deploys, dry runs, rollbacks, cancels, locks,
    /// forced passes and refusals.
    Audit(client::AuditArgs),
    /// Make a running server re-read its configuration file (as SIGHUP does; an admin
    /// token). An invalid file is refused whole (exit 1) and the one in force stays.
    Reload(client::ReloadArgs),
}

#[derive(Subcommand)]
enum ConfigCommand {
    /// Validate the configuration, say which file was read, and print the instances.
    Check {
        #[command(flatten)]
        config: ConfigFlag,
    },
}

#[derive(Subcommand)]
enum ReposCommand {
    /// Accept a new repository id for OWNER/NAME: forget the id pinned for that name, so
    /// the next delivery for it pins the id it carries.
    Accept {
        /// The repository, e.g. acme/web.
        repo: String,
        #[command(flatten)]
        database: DatabaseFlags,
    },
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    cli::init_logging();
    if matches!(
        cli.command,
        Command::Migrate { .. }
            | Command::Backup(_)
            | Command::Prune { .. }
            | Command::Repos { .. }
    ) {
        // Their reports may be piped into `head`: a closed pipe ends the command quietly,
        // as it ends other tools, after its work is done and committed.
        // SAFETY: at start, before any thread; the default disposition of SIGPIPE.
        unsafe { libc::signal(libc::SIGPIPE, libc::SIG_DFL) };
    }
    match cli.command {
        Command::Serve {
            server,
            insecure_no_signature,
        } => exit_now(serve(&server, insecure_no_signature)),
        Command::Sandbox {
            config,
            listen,
            database_url,
        } => exit_now(sandbox(&config, listen, database_url)),
        Command::Migrate { database } => exit_now(migrate(&database)),
        Command::Backup(args) => exit_now(cli::backup(&args)),
        Command::Prune { database } => exit_now(prune(&database)),
        Command::Repos {
            command: ReposCommand::Accept { repo, database },
        } => exit_now(accept_repo(&repo, &database)),
        Command::Config {
            command: ConfigCommand::Check { config },
        } => cli::check_config(config.path()),
        Command::Simulate { event } => cli::run(simulate::run(event)),
        Command::Deploy(args) => cli::run(client::deploy(args)),
        Command::Rollback(args) => cli::run(client::rollback(args)),
        Command::Cancel(args) => cli::run(client::cancel(args)),
        Command::Approve(args) => cli::run(client::approve(args)),
        Command::Deployments(args) => cli::run(client::deployments(args)),
        Command::Releases(args) => cli::run(client::releases(args)),
        Command::Instances(args) => cli::run(client::instances(args)),
        Command::Watch(args) => cli::run(client::watch(args)),
        Command::Lock(args) => cli::run(client::lock(args)),
        Command::Unlock(args) => cli::run(client::unlock(args)),
        Command::Locks(args) => cli::run(client::locks(args)),
        Command::Audit(args) => cli::run(client::audit(args)),
        Command::Reload(args) => cli::run(client::reload(args)),
    }
}

/// Prints `error` as `deploybot: …` and returns `code`.
fn fail(code: u8, error: impl Display) -> u8 {
    eprintln!("deploybot: {error}");
    code
}

fn serve(flags: &ServerFlags, insecure_no_signature: bool) -> u8 {
    let config = match flags.load() {
        Ok(config) => config,
        Err(e) => return fail(EXIT_USAGE, e),
    };
    let runtime = match tokio::runtime::Runtime::new() {
        Ok(runtime) => runtime,
        Err(e) => return fail(EXIT_FAILED, format!("cannot start the async runtime: {e}")),
    };
    let reload_flags = flags.clone();
    let options = ServeOptions {
        insecure_no_signature,
        reload: Some(std::sync::Arc::new(move || reload_flags.load())),
    };
    match runtime.block_on(app::serve(config, options)) {
        Ok(()) => EXIT_SUCCESS,
        Err(e) => fail(e.exit_code(), e),
    }
}

fn sandbox(config: &cli::ConfigFlag, listen: Option<String>, database_url: Option<String>) -> u8 {
    if let Some(Err(e)) = database_url
        .as_deref()
        .map(deploybot::store::DatabaseUrl::parse)
    {
        return fail(EXIT_USAGE, format!("--database-url: {e}"));
    }
    let overrides: Vec<_> = listen
        .map(|l| ("DEPLOYBOT_LISTEN", l))
        .into_iter()
        .collect();
    let config = match deploybot::config::Config::load_with(config.path(), &overrides) {
        Ok(config) => config,
        Err(e) => return fail(EXIT_USAGE, e),
    };
    let runtime = match tokio::runtime::Runtime::new() {
        Ok(runtime) => runtime,
        Err(e) => return fail(EXIT_FAILED, format!("cannot start the async runtime: {e}")),
    };
    match runtime.block_on(app::sandbox(config, app::SandboxOptions { database_url })) {
        Ok(()) => EXIT_SUCCESS,
        Err(e) => fail(e.exit_code(), e),
    }
}

fn migrate(flags: &DatabaseFlags) -> u8 {
    let config = match flags.load() {
        Ok(config) => config,
        Err(e) => return fail(EXIT_USAGE, e),
    };
    let applied = match app::open_store(&config) {
        Ok((_, applied)) => applied,
        Err(e) => return fail(app::store_exit_code(&e), e),
    };
    if applied.is_empty() {
        println!("the database is up to date");
    }
    for name in applied {
        println!("applied {name}");
    }
    EXIT_SUCCESS
}

/// A retention period in a person's words: whole days as days.
fn period(kept: std::time::Duration) -> String {
    match kept.as_secs() {
        86_400 => "1 day".into(),
        s if s % 86_400 == 0 => format!("{} days", s / 86_400),
        _ => humantime::format_duration(kept).to_string(),
    }
}

fn prune(flags: &DatabaseFlags) -> u8 {
    use deploybot::deploy::RetentionStore;
    use deploybot::worker::{PruneKind, cutoff, prune_now};
    let config = match flags.load() {
        Ok(config) => config,
        Err(e) => return fail(EXIT_USAGE, e),
    };
    let store = match app::open_store(&config) {
        Ok((store, _)) => store,
        Err(e) => return fail(app::store_exit_code(&e), e),
    };
    let retention = config.retention;
    let owner = format!("deploybot prune (pid {})", std::process::id());
    let started = chrono::Utc::now();
    let report = match prune_now(&store, &retention, &owner, true, &|| false) {
        Ok(Some(report)) => report,
        Ok(None) => {
            return fail(
                EXIT_FAILED,
                "a server is pruning this database now (it holds the prune lease, for at most 10 minutes); nothing was removed: try again once it has finished",
            );
        }
        Err(e) => return fail(app::store_exit_code(&e), e),
    };
    for kind in PruneKind::ALL {
        let kept = kind.retention(&retention);
        let before = cutoff(started, kept)
            .map(|at| format!(" (before {})", at.format("%Y-%m-%dT%H:%M:%SZ")))
            .unwrap_or_default();
        println!(
            "removed {} {} older than {}{before}",
            report.removed(kind),
            kind.rows(),
            period(kept)
        );
    }
    match store.table_rows() {
        Ok(rows) => {
            let sizes: Vec<String> = rows
                .by_table()
                .iter()
                .map(|(table, n)| format!("{table} {n}"))
                .collect();
            println!("rows now: {}", sizes.join(", "));
            EXIT_SUCCESS
        }
        Err(e) => fail(app::store_exit_code(&e), e),
    }
}

fn accept_repo(repo: &str, flags: &DatabaseFlags) -> u8 {
    let config = match flags.load() {
        Ok(config) => config,
        Err(e) => return fail(EXIT_USAGE, e),
    };
    let forgotten = app::open_store(&config).and_then(|(store, _)| store.forget_repository(repo));
    let repo = repo.to_ascii_lowercase();
    match forgotten {
        Ok(Some(id)) => println!(
            "{repo} was pinned to repository id {id}; the next delivery for it pins the id it carries"
        ),
        Ok(None) => println!(
            "{repo} has no pinned repository id; the next delivery for it pins the id it carries"
        ),
        Err(e) => return fail(app::store_exit_code(&e), e),
    }
    EXIT_SUCCESS
}

/// Ends the process without running the C libraries' exit handlers.
///
/// The connection pool's threads open connections in the background and are not joined
/// when a command ends, so one may be inside libpq, setting up TLS, at that moment. A
/// normal exit runs OpenSSL's `atexit` clean-up, which frees what that thread is using:
/// `deploybot serve` then died of SIGSEGV after a clean SIGTERM shutdown (seen in about one
/// run in fifteen of a test under load). Everything deploybot must keep is committed by
/// then, and Rust runs no destructors at exit anyway; only the standard streams need
/// flushing.
fn exit_now(code: u8) -> ! {
    use std::io::Write;
    let _ = std::io::stdout().flush();
    let _ = std::io::stderr().flush();
    // SAFETY: _exit ends the process at once; it has no memory-safety preconditions.
    unsafe { libc::_exit(i32::from(code)) }
}
