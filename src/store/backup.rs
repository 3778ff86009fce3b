//! `deploybot backup`: a consistent copy of an SQLite database, taken while servers keep
//! writing to it. `VACUUM INTO` reads the database in one read transaction (in WAL mode
//! writers go on meanwhile) and writes a compact copy that opens on its own, without a
//! `-wal` file beside it.

use std::path::Path;

use diesel::prelude::*;
use diesel::sql_types::Text;

use super::{Backend, DatabaseUrl, DbConn, DieselStore, db_error};
use crate::deploy::Error;

impl DatabaseUrl {
    /// The database file of an `sqlite://PATH` URL; None for PostgreSQL.
    pub fn sqlite_path(&self) -> Option<&Path> {
        (self.backend == Backend::Sqlite).then(|| Path::new(&self.target))
    }
}

impl DieselStore {
    /// Writes a consistent copy of the SQLite database to `to`, a file that must not exist
    /// yet in a directory that does; returns the copy's size in bytes. Writers that hold
    /// the database make it wait (the pool's busy timeout), not fail. PostgreSQL is
    /// refused: `pg_dump` is its tool.
    pub fn backup_to(&self, to: &Path) -> Result<u64, Error> {
        if self.backend != Backend::Sqlite {
            return Err(Error::InvalidRequest(
                "only an SQLite database can be copied by deploybot; use pg_dump for PostgreSQL"
                    .into(),
            ));
        }
        check_target(to)?;
        // An absolute path: SQLite never reads it as a `file:` URI with options.
        let absolute = std::path::absolute(to)
            .map_err(|e| Error::InvalidRequest(format!("the backup file {}: {e}", to.display())))?;
        let target = absolute.to_str().ok_or_else(|| {
            Error::InvalidRequest(format!(
                "the backup file name {} is not valid UTF-8: choose a plain name",
                to.display()
            ))
        })?;
        create_private(&absolute, to)?;
        let written = self.read(|conn| {
            let DbConn::Sqlite(c) = conn else {
                unreachable!("an SQLite store holds SQLite connections")
            };
            // The file name is bound, never spliced into the SQL. SQLite writes into the
            // empty file created above, so the copy keeps its owner-only mode.
            diesel::sql_query("VACUUM INTO ?")
                .bind::<Text, _>(target)
                .execute(c)
                .map_err(|e| vacuum_error(e, to))
        });
        if let Err(e) = written {
            let _ = std::fs::remove_file(&absolute);
            return Err(e);
        }
        std::fs::metadata(to).map(|m| m.len()).map_err(|e| {
            Error::Internal(format!(
                "the backup {} was written but cannot be read back: {e}",
                to.display()
            ))
        })
    }
}

/// Creates the empty target, readable by its owner only (the copy holds the session key),
/// failing if anything is there already, a symbolic link included.
fn create_private(path: &Path, shown: &Path) -> Result<(), Error> {
    use std::os::unix::fs::OpenOptionsExt;
    std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(path)
        .map(drop)
        .map_err(|e| match e.kind() {
            std::io::ErrorKind::AlreadyExists => Error::InvalidRequest(format!(
                "{} already exists and a backup never overwrites a file: choose another name, \
                 or remove it first",
                shown.display()
            )),
            _ => Error::InvalidRequest(format!(
                "cannot create the backup file {} ({e}): check the directory's permissions",
                shown.display()
            )),
        })
}

/// Refuses a target that exists (never overwritten) or whose directory does not.
fn check_target(to: &Path) -> Result<(), Error> {
    if to.as_os_str().is_empty() {
        return Err(Error::InvalidRequest(
            "the backup file name is empty: name a new file, e.g. --to deploybot-backup.db".into(),
        ));
    }
    if std::fs::symlink_metadata(to).is_ok() {
        return Err(Error::InvalidRequest(format!(
            "{} already exists and a backup never overwrites a file: choose another name, \
             or remove it first",
            to.display()
        )));
    }
    let dir = match to.parent() {
        Some(dir) if !dir.as_os_str().is_empty() => dir,
        _ => Path::new("."),
    };
    match std::fs::metadata(dir) {
        Ok(meta) if meta.is_dir() => Ok(()),
        Ok(_) => Err(Error::InvalidRequest(format!(
            "{} is not a directory: the backup must go into an existing directory",
            dir.display()
        ))),
        Err(e) => Err(Error::InvalidRequest(format!(
            "the directory {} of the backup cannot be used ({e}): create it first, or choose \
             another place",
            dir.display()
        ))),
    }
}

/// What went wrong writing the copy, in a person's words.
fn vacuum_error(e: diesel::result::Error, to: &Path) -> Error {
    let message = e.to_string();
    if message.contains("output file already exists") {
        Error::InvalidRequest(format!(
            "{} already exists and a backup never overwrites a file: choose another name, \
             or remove it first",
            to.display()
        ))
    } else if message.contains("unable to open") {
        Error::InvalidRequest(format!(
            "cannot create the backup file {} ({message}): check the directory's permissions",
            to.display()
        ))
    } else {
        match db_error(e) {
            Error::Internal(_) => Error::Internal(format!(
                "cannot write the backup {}: {message}",
                to.display()
            )),
            other => other,
        }
    }
}
