//! Test databases: a fresh SQLite file or a fresh PostgreSQL database per test, so tests
//! run in parallel without sharing state. PostgreSQL is the server `TEST_DATABASE_URL`
//! names (a server URL; its database part is replaced), else a throwaway server the test
//! processes of a run share (`pg_shared`), whose databases are cloned from one migrated
//! template. Benches, built without `cfg(test)`, use `TEST_DATABASE_URL` or the local
//! server on 5432 that `bench/run.sh` starts.
#![allow(dead_code)]

pub mod chromium;
pub mod cli_run;
pub mod fake_github;
#[cfg(test)]
pub mod pg_cluster;
#[cfg(test)]
pub mod pg_shared;
pub mod prometheus;
#[cfg(test)]
pub mod serve;

use std::sync::Arc;

use deploybot::store::DieselStore;
use diesel::sql_types::BigInt;
use diesel::{Connection, PgConnection, QueryableByName, RunQueryDsl, SqliteConnection};

/// The benches' server when `TEST_DATABASE_URL` is unset.
pub const PG_DEFAULT: &str = "postgres://postgres@127.0.0.1:5432/postgres";

/// A migrated database that is removed when dropped.
pub struct TestDb {
    pub store: Arc<DieselStore>,
    pub url: String,
    cleanup: Cleanup,
}

enum Cleanup {
    Sqlite(#[allow(dead_code)] tempfile::TempDir),
    Postgres { admin_url: String, name: String },
}

/// The URL of the PostgreSQL server's `postgres` database, where test databases are made.
pub fn admin_database_url() -> String {
    std::env::var("TEST_DATABASE_URL").unwrap_or_else(|_| default_server().0)
}

/// The server used without `TEST_DATABASE_URL`, and its template database if it has one.
#[cfg(test)]
fn default_server() -> (String, Option<String>) {
    let shared = pg_shared::shared();
    (shared.admin_url.clone(), Some(shared.template.clone()))
}

#[cfg(not(test))]
fn default_server() -> (String, Option<String>) {
    (PG_DEFAULT.to_string(), None)
}

fn with_database(url: &str, name: &str) -> String {
    let (base, _) = url
        .rsplit_once('/')
        .expect("TEST_DATABASE_URL has a /database part");
    format!("{base}/{name}")
}

impl TestDb {
    pub fn sqlite() -> Self {
        let dir = tempfile::tempdir().expect("temp dir");
        let url = format!("sqlite://{}", dir.path().join("test.db").display());
        let store = DieselStore::connect(&url).expect("open sqlite");
        store.migrate().expect("migrate sqlite");
        TestDb {
            store: Arc::new(store),
            url,
            cleanup: Cleanup::Sqlite(dir),
        }
    }

    /// A fresh database on the test server (see the module's documentation).
    pub fn postgres() -> Self {
        let (admin, template) = match std::env::var("TEST_DATABASE_URL") {
            Ok(url) => (url, None),
            Err(_) => default_server(),
        };
        TestDb::postgres_on(&admin, template.as_deref())
    }

    /// A fresh database on the server whose `postgres` database is at `admin`: a clone of
    /// `template` (already migrated), or a new database migrated here.
    pub fn postgres_on(admin: &str, template: Option<&str>) -> Self {
        let name = format!("deploybot_test_{}", uuid::Uuid::now_v7().simple());
        let mut conn = PgConnection::establish(admin)
            .unwrap_or_else(|e| panic!("PostgreSQL is needed for this test ({admin}): {e}"));
        let create = match template {
            Some(template) => format!("CREATE DATABASE {name} TEMPLATE {template}"),
            None => format!("CREATE DATABASE {name}"),
        };
        diesel::sql_query(create)
            .execute(&mut conn)
            .expect("create test database");
        let url = with_database(admin, &name);
        let store = DieselStore::connect(&url).expect("open postgres");
        if template.is_none() {
            store.migrate().expect("migrate postgres");
        }
        TestDb {
            store: Arc::new(store),
            url,
            cleanup: Cleanup::Postgres {
                admin_url: admin.to_string(),
                name,
            },
        }
    }
}

impl Drop for TestDb {
    fn drop(&mut self) {
        if let Cleanup::Postgres { admin_url, name } = &self.cleanup
            && let Ok(mut conn) = PgConnection::establish(admin_url)
        {
            let _ = diesel::sql_query(format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)"))
                .execute(&mut conn);
        }
    }
}

/// Declares `mod sqlite { fn NAME() }` and `mod postgres { fn NAME() }` for each contract
/// test `NAME(db: &TestDb)`, so every store test runs on both backends.
#[macro_export]
macro_rules! both_backends {
    ($($name:ident),* $(,)?) => {
        mod sqlite {
            $(#[test] fn $name() { super::$name(&$crate::common::TestDb::sqlite()); })*
        }
        mod postgres {
            $(#[test] fn $name() { super::$name(&$crate::common::TestDb::postgres()); })*
        }
    };
}

/// Like `both_backends!`, for `async fn NAME(db: TestDb)` tests, each on its own runtime.
#[macro_export]
macro_rules! both_backends_async {
    ($($name:ident),* $(,)?) => {
        mod sqlite {
            $(#[test] fn $name() {
                let rt = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().unwrap();
                rt.block_on(super::$name($crate::common::TestDb::sqlite()));
            })*
        }
        mod postgres {
            $(#[test] fn $name() {
                let rt = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().unwrap();
                rt.block_on(super::$name($crate::common::TestDb::postgres()));
            })*
        }
    };
}

/// Like `both_backends!`, for `fn NAME(db: TestDb)` tests that own their database.
#[macro_export]
macro_rules! both_backends_owned {
    ($($name:ident),* $(,)?) => {
        mod sqlite {
            $(#[test] fn $name() { super::$name($crate::common::TestDb::sqlite()); })*
        }
        mod postgres {
            $(#[test] fn $name() { super::$name($crate::common::TestDb::postgres()); })*
        }
    };
}

/// A direct connection, to read the tables as they are.
pub enum Sql {
    Pg(PgConnection),
    Sqlite(SqliteConnection),
}

impl Sql {
    pub fn open(url: &str) -> Sql {
        match url.strip_prefix("sqlite://") {
            Some(path) => {
                let mut c = SqliteConnection::establish(path).unwrap();
                // The server writes beside this connection: wait for its write to end
                // instead of failing with "database is locked".
                diesel::sql_query("PRAGMA busy_timeout = 10000")
                    .execute(&mut c)
                    .unwrap();
                Sql::Sqlite(c)
            }
            None => Sql::Pg(PgConnection::establish(url).unwrap()),
        }
    }

    pub fn load<T>(&mut self, query: &str) -> Vec<T>
    where
        T: QueryableByName<diesel::pg::Pg> + QueryableByName<diesel::sqlite::Sqlite> + 'static,
    {
        match self {
            Sql::Pg(c) => diesel::sql_query(query).load(c).unwrap(),
            Sql::Sqlite(c) => diesel::sql_query(query).load(c).unwrap(),
        }
    }

    pub fn execute(&mut self, query: &str) -> usize {
        match self {
            Sql::Pg(c) => diesel::sql_query(query).execute(c).unwrap(),
            Sql::Sqlite(c) => diesel::sql_query(query).execute(c).unwrap(),
        }
    }

    pub fn count(&mut self, query: &str) -> i64 {
        #[derive(QueryableByName)]
        struct Count {
            #[diesel(sql_type = BigInt)]
            n: i64,
        }
        self.load::<Count>(query)[0].n
    }
}

/// The database out of reach: on SQLite another connection holds the write lock; on
/// PostgreSQL the test database takes no connections and its sessions are ended.
pub enum Outage {
    Sqlite(Sql),
    Postgres(String),
}

impl Outage {
    pub fn begin(db: &TestDb) -> Outage {
        if db.url.starts_with("sqlite://") {
            let mut sql = Sql::open(&db.url);
            // Wait for a write that holds the lock right now.
            sql.execute("PRAGMA busy_timeout = 10000");
            sql.execute("BEGIN EXCLUSIVE");
            Outage::Sqlite(sql)
        } else {
            let name = db.url.rsplit('/').next().unwrap().to_string();
            Outage::admin(&format!("ALTER DATABASE {name} ALLOW_CONNECTIONS false"));
            Outage::admin(&format!(
                "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = '{name}'"
            ));
            Outage::Postgres(name)
        }
    }

    fn admin(query: &str) {
        let mut conn = PgConnection::establish(&admin_database_url()).unwrap();
        diesel::sql_query(query).execute(&mut conn).unwrap();
    }

    pub fn end(self) {
        match self {
            Outage::Sqlite(mut sql) => {
                sql.execute("COMMIT");
            }
            Outage::Postgres(name) => {
                Outage::admin(&format!("ALTER DATABASE {name} ALLOW_CONNECTIONS true"))
            }
        }
    }
}

/// One HTTP/1.1 request to the server on 127.0.0.1:`port`, with an optional bearer token and
/// a JSON body (empty for none): (status, body text after the head).
pub fn http(port: u16, method: &str, path: &str, token: Option<&str>, body: &str) -> (u16, String) {
    use std::io::{Read, Write};
    let mut stream = std::net::TcpStream::connect(("127.0.0.1", port)).unwrap();
    stream
        .set_read_timeout(Some(std::time::Duration::from_secs(30)))
        .unwrap();
    let auth = token.map_or(String::new(), |t| format!("Authorization: Bearer {t}\r\n"));
    write!(
        stream,
        "{method} {path} HTTP/1.1\r\nHost: 127.0.0.1\r\n{auth}Content-Type: application/json\r\n\
         Content-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    )
    .unwrap();
    let mut answer = Vec::new();
    let _ = stream.read_to_end(&mut answer);
    let text = String::from_utf8_lossy(&answer).into_owned();
    let status = text
        .strip_prefix("HTTP/1.1 ")
        .and_then(|rest| rest.get(..3))
        .and_then(|code| code.parse().ok())
        .unwrap_or(0);
    let body = text
        .split_once("\r\n\r\n")
        .map_or("", |(_, b)| b)
        .to_string();
    (status, body)
}

/// A configuration reload that finds the file as it was (for servers built in a test).
pub struct UnchangedReload;

#[async_trait::async_trait]
impl deploybot::server::Reload for UnchangedReload {
    async fn reload(&self) -> Result<deploybot::config::ReloadReport, String> {
        Ok(deploybot::config::ReloadReport::default())
    }

    fn status(&self) -> deploybot::config::ReloadStatus {
        deploybot::config::ReloadStatus {
            loaded_at: chrono::Utc::now(),
            refused: None,
        }
    }
}

/// Queues a new release of `inst` with `image` (rolling, by alice): the pending deployment.
pub fn queue_deployment(
    db: &TestDb,
    inst: &deploybot::deploy::Instance,
    image: &str,
) -> deploybot::deploy::Deployment {
    use deploybot::deploy::{DeployRequest, Deployment, Release, ReleaseStore};
    let request = DeployRequest {
        instance_id: inst.id,
        image: image.into(),
        env: Default::default(),
        strategy: "rolling".into(),
        notes: String::new(),
        commit_sha: String::new(),
        params: Default::default(),
        noop: false,
    };
    let release = Release::from_request(&inst.tenant_id, &request);
    let deployment = Deployment::pending(&release, "rolling", "alice");
    db.store
        .insert_release_and_deployment(&release, &deployment)
        .expect("queue a deployment")
        .1
}

/// Queues a new release of acme's web-production (recorded first if it is not yet).
pub fn queue_web_production(db: &TestDb, image: &str) -> deploybot::deploy::Deployment {
    use deploybot::deploy::InstanceStore;
    let inst = db
        .store
        .upsert_instance("acme", "web-production", "acme/web", "production")
        .unwrap();
    queue_deployment(db, &inst, image)
}
