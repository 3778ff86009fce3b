//! `deploybot backup --to FILE`: a consistent copy of the SQLite database, taken while
//! the server runs. For PostgreSQL it says to use `pg_dump`, and copies nothing.

use std::path::{Path, PathBuf};

use clap::Args;

use super::{DatabaseFlags, EXIT_FAILED, EXIT_SUCCESS, EXIT_UNREACHABLE, EXIT_USAGE};
use crate::config::redact_url;
use crate::deploy::Error;
use crate::store::{Backend, DatabaseUrl, DieselStore};

/// The arguments of `deploybot backup`.
#[derive(Debug, Clone, Args)]
pub struct BackupArgs {
    /// The file to write the copy to. It must not exist yet; its directory must.
    #[arg(long, value_name = "FILE")]
    pub to: PathBuf,
    #[command(flatten)]
    pub database: DatabaseFlags,
}

/// Copies the database to `--to`; prints what it wrote, or the error as `deploybot: …`,
/// and returns the exit code (2 for PostgreSQL, a bad target or configuration).
pub fn backup(args: &BackupArgs) -> u8 {
    match run(args) {
        Ok(done) => {
            println!("{done}");
            EXIT_SUCCESS
        }
        Err((code, message)) => {
            eprintln!("deploybot: {message}");
            code
        }
    }
}

fn run(args: &BackupArgs) -> Result<String, (u8, String)> {
    let config = args
        .database
        .load()
        .map_err(|e| (EXIT_USAGE, e.to_string()))?;
    let url = &config.database_url;
    let parsed = DatabaseUrl::parse(url).map_err(|e| (exit_code(&e), e.to_string()))?;
    let Some(path) = parsed.sqlite_path() else {
        return Err((EXIT_USAGE, postgres_refusal(url, &args.to)));
    };
    // Connecting would create an empty database: a missing file is a mistake in the URL.
    if !path.is_file() {
        return Err((
            EXIT_USAGE,
            format!(
                "there is no SQLite database at {}: check --database-url, DATABASE_URL or \
                 `database_url` in the configuration file",
                path.display()
            ),
        ));
    }
    let store = DieselStore::connect_with(url, 1).map_err(|e| (exit_code(&e), e.to_string()))?;
    debug_assert_eq!(store.backend(), Backend::Sqlite);
    let bytes = store
        .backup_to(&args.to)
        .map_err(|e| (exit_code(&e), e.to_string()))?;
    Ok(format!(
        "backed up {} to {} ({bytes} bytes)",
        redact_url(url),
        args.to.display()
    ))
}

/// Why PostgreSQL is not copied, and the `pg_dump` command that does it; the URL is
/// shown without its password.
fn postgres_refusal(url: &str, to: &Path) -> String {
    format!(
        "{} is a PostgreSQL database, which deploybot backup does not copy: use pg_dump, \
         which takes a consistent copy while the server runs, e.g.\n  \
         pg_dump --format=custom --file={file} \"$DATABASE_URL\"\n\
         and, with deploybot stopped, restore it with\n  \
         pg_restore --clean --if-exists --dbname=\"$DATABASE_URL\" {file}",
        redact_url(url),
        file = shell_word(&to.display().to_string())
    )
}

/// `word` as one shell word: as it is when plain, else in single quotes.
fn shell_word(word: &str) -> String {
    let plain = !word.is_empty()
        && word
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"._-/+=:,@".contains(&b));
    if plain {
        word.to_string()
    } else {
        format!("'{}'", word.replace('\'', r"'\''"))
    }
}

/// 2 for what the person can fix in the command, 3 when the database cannot be reached.
fn exit_code(error: &Error) -> u8 {
    match error {
        Error::InvalidRequest(_) => EXIT_USAGE,
        Error::Unavailable(_) => EXIT_UNREACHABLE,
        _ => EXIT_FAILED,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_pg_dump_hint_quotes_the_file_and_hides_the_password() {
        let hint = postgres_refusal(
            "postgres://deploy:hunter2@db.internal/deploybot",
            Path::new("my backup.dump"),
        );
        assert!(
            hint.contains("pg_dump --format=custom --file='my backup.dump' \"$DATABASE_URL\""),
            "{hint}"
        );
        assert!(
            hint.contains("postgres://deploy:***@db.internal/deploybot"),
            "{hint}"
        );
        assert!(!hint.contains("hunter2"), "{hint}");
        assert_eq!(shell_word("a/b.dump"), "a/b.dump");
        assert_eq!(shell_word("it's"), r"'it'\''s'");
    }
}
