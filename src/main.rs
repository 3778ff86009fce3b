//! The `deploybot` command line: parses the arguments and hands each command to the
//! library (`deploybot::cli` for the client commands, `deploybot::app` for the server and
//! its database). Everything it does lives there.

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context;
use clap::{Parser, Subcommand};
use deploybot::app::{self, ServeOptions};
use deploybot::cli::{self, client, simulate};
use deploybot::config::Config;

/// mimalloc as the allocator, built without transparent huge pages (`no_thp` in
/// Cargo.toml): against glibc's malloc it measured faster for webhook ingest at about the
/// same resident size; huge pages only added memory (BENCHMARKS.md, Memory).
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

#[derive(Parser)]
#[command(
    name = "deploybot",
    version,
    about = "A GitHub deploy bot: pushes, tags and /deploy comments become deployments."
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run the server: webhooks, REST API, pages and the worker.
    Serve {
        /// Configuration file (default: $DEPLOYBOT_CONFIG, else config/deploybot.toml when present).
        #[arg(long)]
        config: Option<PathBuf>,
        /// Accept webhooks without a valid signature. For local experiments only: anyone
        /// who can reach the server can then deploy.
        #[arg(long)]
        insecure_no_signature: bool,
    },
    /// Apply database migrations and exit.
    Migrate {
        #[arg(long)]
        config: Option<PathBuf>,
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
    /// List an instance's deployments, newest first.
    Deployments(client::ListArgs),
    /// List an instance's releases, highest version first.
    Releases(client::ListArgs),
    /// List the instances with their active release.
    Instances(client::InstancesArgs),
    /// Follow a deployment's progress and log until it ends (exit 0 succeeded, 1 not).
    Watch(client::WatchArgs),
}

#[derive(Subcommand)]
enum ConfigCommand {
    /// Validate the configuration and print the instances.
    Check {
        #[arg(long)]
        config: Option<PathBuf>,
    },
}

#[derive(Subcommand)]
enum ReposCommand {
    /// Accept a new repository id for OWNER/NAME: forget the id pinned for that name, so
    /// the next delivery for it pins the id it carries.
    Accept {
        /// The repository, e.g. acme/web.
        repo: String,
        #[arg(long)]
        config: Option<PathBuf>,
    },
}

fn load(path: Option<PathBuf>) -> anyhow::Result<Config> {
    Ok(Config::load(path.as_deref())?)
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    cli::init_logging();
    let opens_database = matches!(
        cli.command,
        Command::Serve { .. } | Command::Migrate { .. } | Command::Repos { .. }
    );
    let code = match run(cli) {
        Ok(code) => code,
        Err(e) => {
            eprintln!("deploybot: {e:#}");
            ExitCode::FAILURE
        }
    };
    if opens_database {
        exit_now(code == ExitCode::SUCCESS);
    }
    code
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
fn exit_now(success: bool) -> ! {
    use std::io::Write;
    let _ = std::io::stdout().flush();
    let _ = std::io::stderr().flush();
    // SAFETY: _exit ends the process at once; it has no memory-safety preconditions.
    unsafe { libc::_exit(if success { 0 } else { 1 }) }
}

fn run(cli: Cli) -> anyhow::Result<ExitCode> {
    match cli.command {
        Command::Serve {
            config,
            insecure_no_signature,
        } => {
            let config = load(config)?;
            let runtime =
                tokio::runtime::Runtime::new().context("cannot start the async runtime")?;
            runtime.block_on(app::serve(
                config,
                ServeOptions {
                    insecure_no_signature,
                },
            ))?;
            Ok(ExitCode::SUCCESS)
        }
        Command::Migrate { config } => {
            let config = load(config)?;
            let (_, applied) = app::open_store(&config)?;
            if applied.is_empty() {
                println!("the database is up to date");
            }
            for name in applied {
                println!("applied {name}");
            }
            Ok(ExitCode::SUCCESS)
        }
        Command::Config {
            command: ConfigCommand::Check { config },
        } => Ok(cli::check_config(config.as_deref())),
        Command::Repos {
            command: ReposCommand::Accept { repo, config },
        } => {
            let config = load(config)?;
            let (store, _) = app::open_store(&config)?;
            match store.forget_repository(&repo)? {
                Some(id) => println!(
                    "{} was pinned to repository id {id}; the next delivery for it pins the id it carries",
                    repo.to_ascii_lowercase()
                ),
                None => println!(
                    "{} has no pinned repository id; the next delivery for it pins the id it carries",
                    repo.to_ascii_lowercase()
                ),
            }
            Ok(ExitCode::SUCCESS)
        }
        Command::Simulate { event } => Ok(cli::run(simulate::run(event))),
        Command::Deploy(args) => Ok(cli::run(client::deploy(args))),
        Command::Rollback(args) => Ok(cli::run(client::rollback(args))),
        Command::Cancel(args) => Ok(cli::run(client::cancel(args))),
        Command::Deployments(args) => Ok(cli::run(client::deployments(args))),
        Command::Releases(args) => Ok(cli::run(client::releases(args))),
        Command::Instances(args) => Ok(cli::run(client::instances(args))),
        Command::Watch(args) => Ok(cli::run(client::watch(args))),
    }
}
