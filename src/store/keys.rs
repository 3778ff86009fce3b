//! Keys the server generates once and shares through the database, so every replica signs
//! and checks the same values (page sessions and log links when `DEPLOYBOT_SESSION_KEY` is
//! not set).

use chrono::Utc;
use diesel::prelude::*;

use super::rows::to_db;
use super::schema::session_keys;
use super::{DbConn, DieselStore, db_error};
use crate::deploy::Error;

#[derive(Insertable)]
#[diesel(table_name = session_keys)]
struct NewKey<'a> {
    name: &'a str,
    secret: String,
    created_at: chrono::NaiveDateTime,
}

/// Keys shared by every replica through the database.
pub trait KeyStore: Send + Sync + 'static {
    /// The key stored under `name`, storing `candidate` first when there is none. Servers
    /// starting together race safely: each inserts with ON CONFLICT DO NOTHING, then all
    /// read the one row that won.
    fn shared_key(&self, name: &str, candidate: &[u8]) -> Result<Vec<u8>, Error>;
}

impl KeyStore for DieselStore {
    fn shared_key(&self, name: &str, candidate: &[u8]) -> Result<Vec<u8>, Error> {
        let row = NewKey {
            name,
            secret: hex::encode(candidate),
            created_at: to_db(Utc::now()),
        };
        self.write(|conn| {
            match conn {
                DbConn::Pg(c) => diesel::insert_into(session_keys::table)
                    .values(&row)
                    .on_conflict_do_nothing()
                    .execute(c),
                DbConn::Sqlite(c) => diesel::insert_into(session_keys::table)
                    .values(&row)
                    .on_conflict_do_nothing()
                    .execute(c),
            }
            .map_err(db_error)?;
            Ok(())
        })?;
        let stored: String = self.read(|conn| {
            session_keys::table
                .filter(session_keys::name.eq(name))
                .select(session_keys::secret)
                .first(conn)
                .map_err(db_error)
        })?;
        hex::decode(stored.trim()).map_err(|_| {
            Error::Internal(format!(
                "the stored {name} key in table session_keys is not hex; delete its row and restart to generate a new one"
            ))
        })
    }
}
