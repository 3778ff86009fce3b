//! Store benchmarks on SQLite (a temp file) and PostgreSQL (a fresh database that is
//! dropped at the end):
//!
//! 1. `page/<backend>`: the time of one `list_deployments` page of 50 for one instance:
//!    the first page, and through cursors the second page, the page that starts in the
//!    middle of the instance's list and the last full page, while the
//!    deployments table grows 10k → 100k → 1M rows spread over 100 instances of one
//!    tenant plus a few instances of three other tenants. Rows are seeded with bulk SQL
//!    through a connection of our own, in one transaction per growth step.
//! 2. `insert/<backend>`: deployments inserted through the `Store`
//!    (`insert_release_and_deployment`, and `insert_deployment` of a pending deployment of
//!    an existing release), in elements per second, into the grown table.
//!
//! Before measuring the pages at each size it prints, for each page, the plan of the
//! store's query (`EXPLAIN QUERY PLAN` on SQLite; on PostgreSQL `EXPLAIN (ANALYZE,
//! BUFFERS)` of the prepared query as a custom and as a generic plan) and warns when it
//! does not use `deployments_instance_page`; on PostgreSQL it also checks from
//! `pg_stat_user_indexes` that the store's own calls scan that index. A diagnostic then
//! times the store's row-value cursor condition `(created_at, id) < (…)` against the
//! equivalent `created_at < … OR (created_at = … AND id < …)`, which is only filtered.
//!
//! Run: `cargo bench --bench store`. Environment:
//! - `BENCH_DATABASE_URL`: a PostgreSQL server URL whose database part is replaced
//!   (default `postgres://postgres@127.0.0.1:5432/postgres`);
//! - `BENCH_MAX_ROWS`: the largest table size measured (default 1000000; 100000 skips 1M);
//! - `BENCH_BACKENDS`: `sqlite`, `postgres` or both, comma-separated (default both).

use std::fmt::Write as _;
use std::hint::black_box;
use std::time::{Duration, Instant};

use chrono::{NaiveDate, NaiveDateTime, TimeDelta};
use criterion::{BenchmarkId, Criterion, Throughput};
use deploybot::deploy::{
    DeployRequest, Deployment, Instance, InstanceId, InstanceStore, ListOptions, Release,
    ReleaseStore, Store,
};
use deploybot::id::DeploymentId;
use deploybot::store::DieselStore;
use diesel::connection::SimpleConnection;
use diesel::prelude::*;
use diesel::sql_types::{BigInt, Text, Timestamp};

const PG_DEFAULT: &str = "postgres://postgres@127.0.0.1:5432/postgres";
const TENANT: &str = "acme";
const MAIN_INSTANCES: usize = 100;
const OTHER_TENANTS: [&str; 3] = ["globex", "initech", "umbrella"];
const OTHER_INSTANCES: usize = 5;
const RELEASES_PER_INSTANCE: usize = 5;
const PAGE: u32 = 50;
const SIZES: [u64; 3] = [10_000, 100_000, 1_000_000];
const BATCH: u64 = 1_000;
const STATES: [&str; 6] = [
    "succeeded",
    "succeeded",
    "failed",
    "succeeded",
    "rolled_back",
    "cancelled",
];
/// The columns of `deployments`, in the order the store selects them.
const COLUMNS: &str = "id, tenant_id, instance_id, release_id, state, strategy, image, env, \
    provider_ref, started_at, finished_at, error, initiator, progress_phase, \
    progress_percent, progress_message, created_at, updated_at";

/// A connection of our own, for seeding and EXPLAIN.
enum Raw {
    Pg(PgConnection),
    Sqlite(SqliteConnection),
}

#[derive(QueryableByName)]
struct Count {
    #[diesel(sql_type = BigInt)]
    n: i64,
}

#[derive(QueryableByName)]
struct TextRow {
    #[diesel(sql_type = Text)]
    v: String,
}

#[derive(QueryableByName)]
struct IdRow {
    #[diesel(sql_type = Text)]
    #[allow(dead_code)]
    id: String,
}

#[derive(QueryableByName)]
struct PgPlanLine {
    #[diesel(sql_type = Text, column_name = "QUERY PLAN")]
    line: String,
}

#[derive(QueryableByName)]
struct SqlitePlanLine {
    #[diesel(sql_type = BigInt)]
    id: i64,
    #[diesel(sql_type = BigInt)]
    parent: i64,
    #[diesel(sql_type = Text)]
    detail: String,
}

impl Raw {
    fn exec(&mut self, sql: &str) {
        match self {
            Raw::Pg(c) => c.batch_execute(sql),
            Raw::Sqlite(c) => c.batch_execute(sql),
        }
        .unwrap_or_else(|e| {
            panic!(
                "SQL failed: {e}\n{}",
                sql.chars().take(300).collect::<String>()
            )
        });
    }

    fn count(&mut self, sql: &str) -> i64 {
        let rows: Vec<Count> = match self {
            Raw::Pg(c) => diesel::sql_query(sql).load(c),
            Raw::Sqlite(c) => diesel::sql_query(sql).load(c),
        }
        .unwrap_or_else(|e| panic!("{sql}: {e}"));
        rows[0].n
    }

    fn text(&mut self, sql: &str) -> String {
        let rows: Vec<TextRow> = match self {
            Raw::Pg(c) => diesel::sql_query(sql).load(c),
            Raw::Sqlite(c) => diesel::sql_query(sql).load(c),
        }
        .unwrap_or_else(|e| panic!("{sql}: {e}"));
        rows[0].v.clone()
    }

    /// The plan of `sql`, one line per node.
    fn explain(&mut self, sql: &str) -> Vec<String> {
        match self {
            Raw::Pg(c) => {
                let rows: Vec<PgPlanLine> =
                    diesel::sql_query(format!("EXPLAIN (ANALYZE, BUFFERS) {sql}"))
                        .load(c)
                        .unwrap_or_else(|e| panic!("EXPLAIN: {e}"));
                rows.into_iter().map(|r| r.line).collect()
            }
            Raw::Sqlite(c) => {
                let rows: Vec<SqlitePlanLine> =
                    diesel::sql_query(format!("EXPLAIN QUERY PLAN {sql}"))
                        .load(c)
                        .unwrap_or_else(|e| panic!("EXPLAIN QUERY PLAN: {e}"));
                // Indent children under their parents, as the sqlite3 shell does.
                let mut depth: Vec<(i64, usize)> = Vec::new();
                rows.into_iter()
                    .map(|r| {
                        let level = depth
                            .iter()
                            .find(|(id, _)| *id == r.parent)
                            .map_or(0, |(_, d)| d + 1);
                        depth.push((r.id, level));
                        format!("{}{}", "  ".repeat(level), r.detail)
                    })
                    .collect()
            }
        }
    }
}

/// A seeded instance: its id, and the releases its deployments point at.
struct Seeded {
    tenant: String,
    id: InstanceId,
    releases: Vec<(String, String)>,
}

enum Cleanup {
    Sqlite(#[allow(dead_code)] tempfile::TempDir),
    Postgres { admin_url: String, name: String },
}

struct BenchDb {
    backend: &'static str,
    store: DieselStore,
    raw: Raw,
    seeded: Vec<Seeded>,
    /// Rows seeded so far: the global index that orders their timestamps.
    next_row: u64,
    /// Last, so that the connections above are closed before the database is dropped.
    _cleanup: Cleanup,
}

/// Drops the PostgreSQL database when it goes out of scope, also when the bench panics.
impl Drop for Cleanup {
    fn drop(&mut self) {
        if let Cleanup::Postgres { admin_url, name } = self {
            match PgConnection::establish(admin_url) {
                Ok(mut conn) => {
                    if let Err(e) =
                        diesel::sql_query(format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)"))
                            .execute(&mut conn)
                    {
                        eprintln!("could not drop the bench database {name}: {e}");
                    }
                }
                Err(e) => eprintln!("could not drop the bench database {name}: {e}"),
            }
        }
    }
}

fn with_database(url: &str, name: &str) -> String {
    let (base, _) = url
        .rsplit_once('/')
        .expect("BENCH_DATABASE_URL has a /database part");
    format!("{base}/{name}")
}

impl BenchDb {
    fn sqlite() -> Self {
        let dir = tempfile::tempdir().expect("temp dir");
        let path = dir.path().join("bench.db");
        let store = DieselStore::connect_with(&format!("sqlite://{}", path.display()), 2)
            .expect("open sqlite");
        store.migrate().expect("migrate sqlite");
        let mut conn = SqliteConnection::establish(&path.display().to_string()).expect("sqlite");
        conn.batch_execute("PRAGMA busy_timeout = 15000; PRAGMA synchronous = NORMAL;")
            .expect("pragmas");
        Self::new("sqlite", store, Raw::Sqlite(conn), Cleanup::Sqlite(dir))
    }

    fn postgres() -> Self {
        let admin = std::env::var("BENCH_DATABASE_URL").unwrap_or_else(|_| PG_DEFAULT.into());
        let name = format!("deploybot_bench_{}", uuid::Uuid::now_v7().simple());
        let mut conn = PgConnection::establish(&admin)
            .unwrap_or_else(|e| panic!("PostgreSQL is needed for this bench ({admin}): {e}"));
        diesel::sql_query(format!("CREATE DATABASE {name}"))
            .execute(&mut conn)
            .expect("create bench database");
        let cleanup = Cleanup::Postgres {
            admin_url: admin.clone(),
            name: name.clone(),
        };
        let url = with_database(&admin, &name);
        let store = DieselStore::connect_with(&url, 2).expect("open postgres");
        store.migrate().expect("migrate postgres");
        let raw = PgConnection::establish(&url).expect("postgres");
        Self::new("postgres", store, Raw::Pg(raw), cleanup)
    }

    /// Creates the instances and their releases through the store.
    fn new(backend: &'static str, store: DieselStore, raw: Raw, cleanup: Cleanup) -> Self {
        let mut instances: Vec<Instance> = (0..MAIN_INSTANCES)
            .map(|i| {
                store
                    .upsert_instance(
                        TENANT,
                        &format!("svc-{i:03}-production"),
                        &format!("{TENANT}/svc-{i:03}"),
                        "production",
                    )
                    .expect("instance")
            })
            .collect();
        for tenant in OTHER_TENANTS {
            for i in 0..OTHER_INSTANCES {
                instances.push(
                    store
                        .upsert_instance(
                            tenant,
                            &format!("web-{i}-production"),
                            &format!("{tenant}/web-{i}"),
                            "production",
                        )
                        .expect("instance"),
                );
            }
        }
        let seeded = instances
            .into_iter()
            .map(|inst| {
                let releases = (0..RELEASES_PER_INSTANCE)
                    .map(|v| {
                        let release = store
                            .insert_release(&release_for(&inst, v))
                            .expect("release");
                        (release.id.to_string(), release.image)
                    })
                    .collect();
                Seeded {
                    tenant: inst.tenant_id,
                    id: inst.id,
                    releases,
                }
            })
            .collect();
        let mut db = BenchDb {
            backend,
            store,
            raw,
            seeded,
            next_row: 0,
            _cleanup: cleanup,
        };
        let version = match db.raw {
            Raw::Pg(_) => db.raw.text("SELECT version() AS v"),
            Raw::Sqlite(_) => db.raw.text("SELECT sqlite_version() AS v"),
        };
        println!("[{backend}] server/library version: {version}");
        db
    }

    fn rows(&mut self) -> u64 {
        self.raw.count("SELECT count(*) AS n FROM deployments") as u64
    }

    /// Adds deployments until the table holds `target` rows, in one transaction, in
    /// multi-row INSERTs of `BATCH` rows, round-robin over all instances, with
    /// increasing timestamps; the instances' counters are raised to match.
    fn grow_to(&mut self, target: u64) {
        let have = self.rows();
        if have >= target {
            return;
        }
        let started = Instant::now();
        let base = NaiveDate::from_ymd_opt(2025, 1, 1)
            .unwrap()
            .and_hms_opt(0, 0, 0)
            .unwrap();
        let instances = self.seeded.len() as u64;
        let mut added = vec![0i64; self.seeded.len()];
        let mut sql = String::with_capacity(BATCH as usize * 512);
        self.raw.exec("BEGIN");
        let mut left = target - have;
        while left > 0 {
            let n = left.min(BATCH);
            sql.clear();
            write!(sql, "INSERT INTO deployments ({COLUMNS}) VALUES ").unwrap();
            for k in 0..n {
                let g = self.next_row + k;
                let which = (g % instances) as usize;
                let inst = &self.seeded[which];
                added[which] += 1;
                let (release_id, image) =
                    &inst.releases[((g / instances) as usize) % inst.releases.len()];
                // One second apart plus a varying fraction: strictly increasing.
                let created = base
                    + TimeDelta::seconds(g as i64)
                    + TimeDelta::microseconds(((g * 7919) % 1_000_000) as i64);
                let started = created + TimeDelta::seconds(2);
                let finished = created + TimeDelta::seconds(95);
                let state = STATES[(g % STATES.len() as u64) as usize];
                let error = if state == "failed" {
                    "health check failed: 3 of 3 probes timed out"
                } else {
                    ""
                };
                if k > 0 {
                    sql.push(',');
                }
                write!(
                    sql,
                    "('{id}','{tenant}','{inst}','{release_id}','{state}','rolling','{image}','{{}}',\
                     'bench-{g}','{started}','{finished}','{error}','octocat','done',100,'',\
                     '{created}','{finished}')",
                    id = DeploymentId::new(),
                    tenant = inst.tenant,
                    inst = inst.id,
                    started = ts(started),
                    finished = ts(finished),
                    created = ts(created),
                )
                .unwrap();
            }
            self.raw.exec(&sql);
            self.next_row += n;
            left -= n;
        }
        for (inst, n) in self.seeded.iter().zip(&added) {
            self.raw.exec(&format!(
                "UPDATE instances SET deployment_count = deployment_count + {n} WHERE id = '{}'",
                inst.id
            ));
        }
        self.raw.exec("COMMIT");
        let inserted = started.elapsed();
        match self.raw {
            // What autovacuum would do soon after such a load.
            Raw::Pg(_) => self.raw.exec("VACUUM ANALYZE deployments"),
            // Fold the write-ahead log back into the database file.
            Raw::Sqlite(_) => self.raw.exec("PRAGMA wal_checkpoint(TRUNCATE)"),
        }
        let rows = self.rows();
        println!(
            "[{}] seeded {} rows to {} in {:.1?} (+{:.1?} {})",
            self.backend,
            target - have,
            rows,
            inserted,
            started.elapsed() - inserted,
            match self.raw {
                Raw::Pg(_) => "VACUUM ANALYZE",
                Raw::Sqlite(_) => "checkpoint",
            }
        );
    }

    /// Prints, for each page, the plan its query gets and warns when the plan does not
    /// use `deployments_instance_page`.
    ///
    /// SQLite: `EXPLAIN QUERY PLAN` of the store's SQL with its placeholders, as Diesel
    /// binds it, and for cursor pages also with the values written inline, because SQLite
    /// may plan the two differently.
    ///
    /// PostgreSQL: Diesel keeps the page query as a named prepared statement, so the
    /// plan is either a custom plan (the values known: the first five executions, and
    /// later ones while it stays cheaper) or a generic plan; `EXPLAIN (ANALYZE,
    /// BUFFERS) EXECUTE` shows both, forced with `plan_cache_mode`.
    fn explain_pages(&mut self, size: u64, instance: InstanceId, pages: &[PagePos]) {
        let pg = matches!(self.raw, Raw::Pg(_));
        for page in pages {
            let cursor = page.after.as_ref().map(|_| Form::RowValue);
            let sql = page_query(pg, cursor);
            println!(
                "[{}] plan at {size} rows, {} page (rows {}..{}):",
                self.backend,
                page.label,
                page.skip + 1,
                page.skip + u64::from(PAGE)
            );
            println!("    {sql}");
            let mut plans = Vec::new();
            if pg {
                for mode in ["force_custom_plan", "force_generic_plan"] {
                    plans.push((mode, self.pg_plan(&sql, mode, instance, page)));
                }
            } else {
                plans.push(("bound parameters", self.raw.explain(&sql)));
                if page.after.is_some() {
                    let inline = inline_values(&sql, instance, page);
                    plans.push(("values inline", self.raw.explain(&inline)));
                }
            }
            for (label, plan) in &plans {
                println!("  {label}:");
                for line in plan {
                    println!("    {line}");
                }
                if !plan.iter().any(|l| l.contains("deployments_instance_page")) {
                    println!(
                        "[{}] WARNING: the {} page plan ({label}) does not use deployments_instance_page",
                        self.backend, page.label
                    );
                }
            }
        }
    }

    /// `EXPLAIN (ANALYZE, BUFFERS)` of the prepared page query, with `plan_cache_mode`.
    fn pg_plan(
        &mut self,
        sql: &str,
        mode: &str,
        instance: InstanceId,
        page: &PagePos,
    ) -> Vec<String> {
        let (types, args) = match &page.after {
            None => (
                "text, text, bigint".to_string(),
                format!("'{TENANT}', '{instance}', {}", PAGE + 1),
            ),
            Some(after) => {
                let at = ts(after.created_at.naive_utc());
                (
                    "text, text, timestamp, text, bigint".to_string(),
                    format!(
                        "'{TENANT}', '{instance}', '{at}', '{}', {}",
                        after.id,
                        PAGE + 1
                    ),
                )
            }
        };
        self.raw.exec(&format!(
            "SET plan_cache_mode = {mode}; PREPARE bench_page ({types}) AS {sql}"
        ));
        let plan = self.raw.explain(&format!("EXECUTE bench_page ({args})"));
        self.raw
            .exec("DEALLOCATE bench_page; RESET plan_cache_mode");
        plan
    }

    /// One page query run on our own connection with bound parameters, like the store;
    /// returns the rows it read.
    fn run_page(&mut self, form: Form, instance: InstanceId, after: &Deployment) -> usize {
        let sql = page_query(matches!(self.raw, Raw::Pg(_)), Some(form));
        let at = after.created_at.naive_utc();
        let limit = i64::from(PAGE + 1);
        let q = diesel::sql_query(sql)
            .bind::<Text, _>(TENANT)
            .bind::<Text, _>(instance.to_string())
            .bind::<Timestamp, _>(at);
        let rows: Vec<IdRow> = match form {
            Form::Or => {
                let q = q
                    .bind::<Timestamp, _>(at)
                    .bind::<Text, _>(after.id.to_string())
                    .bind::<BigInt, _>(limit);
                match &mut self.raw {
                    Raw::Pg(c) => q.load(c),
                    Raw::Sqlite(c) => q.load(c),
                }
            }
            Form::RowValue => {
                let q = q
                    .bind::<Text, _>(after.id.to_string())
                    .bind::<BigInt, _>(limit);
                match &mut self.raw {
                    Raw::Pg(c) => q.load(c),
                    Raw::Sqlite(c) => q.load(c),
                }
            }
        }
        .expect("page query");
        black_box(rows).len()
    }

    /// A diagnostic beside the benchmark, for the middle and last pages: the store's
    /// row-value cursor condition `(created_at, id) < ($t, $i)` against the equivalent
    /// `created_at < $t OR (created_at = $t2 AND id < $i)`, both run on our own connection
    /// with bound parameters (as prepared statements, like the store's), and the plan of
    /// the OR form.
    fn compare_row_value_form(&mut self, size: u64, instance: InstanceId, pages: &[PagePos]) {
        let runs = 100;
        for page in pages
            .iter()
            .filter(|p| matches!(p.label, "middle" | "last"))
        {
            let after = page.after.as_ref().expect("a cursor page");
            for (label, form) in [
                ("row-value form (as the store)", Form::RowValue),
                ("OR form", Form::Or),
            ] {
                let started = Instant::now();
                for _ in 0..runs {
                    // LIMIT 51: a full page plus the row that says there is a next page.
                    let rows = self.run_page(form, instance, after);
                    assert!(
                        rows == PAGE as usize || rows == PAGE as usize + 1,
                        "{rows} rows"
                    );
                }
                println!(
                    "[{}] diagnostic at {size} rows, {} page, {label}: {:.1?} mean over {runs} runs",
                    self.backend,
                    page.label,
                    started.elapsed() / runs
                );
            }
        }
        if let Some(last) = pages.iter().find(|p| p.label == "last") {
            let sql = page_query(matches!(self.raw, Raw::Pg(_)), Some(Form::Or));
            println!("[{}] plan of the OR form, last page:", self.backend);
            println!("    {sql}");
            let plan = match self.raw {
                Raw::Pg(_) => {
                    let after = last.after.as_ref().expect("a cursor page");
                    let at = ts(after.created_at.naive_utc());
                    self.raw.exec(&format!(
                        "SET plan_cache_mode = force_generic_plan; \
                         PREPARE bench_or (text, text, timestamp, timestamp, text, bigint) AS {sql}"
                    ));
                    let plan = self.raw.explain(&format!(
                        "EXECUTE bench_or ('{TENANT}', '{instance}', '{at}', '{at}', '{}', {})",
                        after.id,
                        PAGE + 1
                    ));
                    self.raw.exec("DEALLOCATE bench_or; RESET plan_cache_mode");
                    plan
                }
                Raw::Sqlite(_) => self.raw.explain(&sql),
            };
            for line in plan {
                println!("    {line}");
            }
        }
    }

    /// On PostgreSQL, checks that the store's own page queries (not only our copies of
    /// the SQL) scan `deployments_instance_page`, from the server's index statistics.
    /// Backends flush their statistics when idle, at the latest after 10 s
    /// (PGSTAT_IDLE_INTERVAL): wait before each reading.
    fn check_index_used_by_store(&mut self, instance: InstanceId, pages: &[PagePos]) {
        if !matches!(self.raw, Raw::Pg(_)) {
            return;
        }
        let sql = "SELECT idx_scan AS n FROM pg_stat_user_indexes \
                   WHERE indexrelname = 'deployments_instance_page'";
        std::thread::sleep(Duration::from_secs(11));
        self.raw.exec("SELECT pg_stat_clear_snapshot()");
        let before = self.raw.count(sql);
        let mut calls = 0;
        for _ in 0..5 {
            for page in pages {
                list(&self.store, instance, &page.options).unwrap();
                calls += 1;
            }
        }
        std::thread::sleep(Duration::from_secs(11));
        self.raw.exec("SELECT pg_stat_clear_snapshot()");
        let after = self.raw.count(sql);
        println!(
            "[postgres] deployments_instance_page idx_scan rose by {} over {calls} store page calls \
             (a bitmap OR plan counts 2 per call)",
            after - before
        );
    }
}

/// The cursor condition of a page query.
#[derive(Clone, Copy)]
enum Form {
    /// `created_at < $t OR (created_at = $t2 AND id < $i)`: the same rows, for the
    /// diagnostic.
    Or,
    /// `(created_at, id) < ($t, $i)`: what the store runs.
    RowValue,
}

/// The store's page query in the shape Diesel generates, with placeholders: `$n` on
/// PostgreSQL, `?` on SQLite. Binds: tenant, instance, [cursor values], limit.
fn page_query(pg: bool, cursor: Option<Form>) -> String {
    let mut n = 0;
    let mut next = || {
        n += 1;
        if pg { format!("${n}") } else { "?".to_string() }
    };
    let (tenant, instance) = (next(), next());
    let mut sql = format!(
        "SELECT {COLUMNS} FROM deployments WHERE tenant_id = {tenant} AND instance_id = {instance}"
    );
    match cursor {
        None => {}
        Some(Form::Or) => {
            let (t, t2, i) = (next(), next(), next());
            write!(
                sql,
                " AND (created_at < {t} OR (created_at = {t2} AND id < {i}))"
            )
            .unwrap();
        }
        Some(Form::RowValue) => {
            let (t, i) = (next(), next());
            write!(sql, " AND (created_at, id) < ({t}, {i})").unwrap();
        }
    }
    let limit = next();
    write!(sql, " ORDER BY created_at DESC, id DESC LIMIT {limit}").unwrap();
    sql
}

/// A SQLite page query with its `?` placeholders replaced by the page's values.
fn inline_values(sql: &str, instance: InstanceId, page: &PagePos) -> String {
    let mut values = vec![format!("'{TENANT}'"), format!("'{instance}'")];
    if let Some(after) = &page.after {
        let at = format!("'{}'", ts(after.created_at.naive_utc()));
        values.extend([at, format!("'{}'", after.id)]);
    }
    values.push((PAGE + 1).to_string());
    let mut values = values.into_iter();
    sql.split('?')
        .enumerate()
        .map(|(k, part)| {
            if k == 0 {
                part.to_string()
            } else {
                format!("{}{part}", values.next().unwrap())
            }
        })
        .collect()
}

/// How the SQLite backend of Diesel writes a timestamp (`%F %T%.f`), which PostgreSQL
/// also reads: the seeded rows must compare with the store's cursor values as text.
fn ts(at: NaiveDateTime) -> String {
    at.format("%F %T%.f").to_string()
}

fn release_for(inst: &Instance, v: usize) -> Release {
    Release::from_request(
        &inst.tenant_id,
        &DeployRequest {
            instance_id: inst.id,
            image: format!("ghcr.io/{}/{}:v{}", inst.tenant_id, inst.name, v + 1),
            env: Default::default(),
            strategy: "rolling".into(),
            notes: "bench".into(),
            commit_sha: "a10867b14bb761a232cd80139fbd4c0d33264240".into(),
            params: Default::default(),
            noop: false,
        },
    )
}

fn first_page() -> ListOptions {
    ListOptions {
        cursor: None,
        limit: Some(PAGE),
    }
}

fn list(
    store: &DieselStore,
    instance: InstanceId,
    options: &ListOptions,
) -> Result<deploybot::deploy::DeployListResult, deploybot::deploy::Error> {
    store.list_deployments(TENANT, instance, options)
}

/// The cursor after the first `skip` deployments of the instance, walked through the
/// store in pages of up to 100, and the last deployment before it.
fn cursor_after(store: &DieselStore, instance: InstanceId, skip: u64) -> (ListOptions, Deployment) {
    let mut options = ListOptions {
        cursor: None,
        limit: None,
    };
    let mut left = skip;
    let mut last = None;
    while left > 0 {
        let step = left.min(u64::from(ListOptions::MAX_LIMIT));
        options.limit = Some(step as u32);
        let page = list(store, instance, &options).expect("walk pages");
        assert_eq!(page.items.len() as u64, step, "the instance has fewer rows");
        last = page.items.last().cloned();
        options.cursor = Some(page.next_cursor.expect("a next page"));
        left -= step;
    }
    options.limit = Some(PAGE);
    (options, last.expect("skip > 0"))
}

/// A page to measure: the cursor that leads to it and the row before it.
struct PagePos {
    label: &'static str,
    skip: u64,
    options: ListOptions,
    after: Option<Deployment>,
}

fn bench_pages(c: &mut Criterion, db: &mut BenchDb, size: u64) {
    let instance = db.seeded[0].id;
    let total = list(&db.store, instance, &first_page())
        .expect("page")
        .total as u64;
    let full = total - u64::from(PAGE);
    // Page 2, the page that starts in the middle, and the last full page; each is
    // clamped to be full (at 10k rows an instance has fewer than 100 deployments).
    let mut pages = vec![PagePos {
        label: "first",
        skip: 0,
        options: first_page(),
        after: None,
    }];
    for (label, skip) in [
        ("second", u64::from(PAGE)),
        ("middle", total / 2),
        ("last", full),
    ] {
        let skip = skip.min(full);
        let (options, after) = cursor_after(&db.store, instance, skip);
        pages.push(PagePos {
            label,
            skip,
            options,
            after: Some(after),
        });
    }
    for page in &pages {
        let got = list(&db.store, instance, &page.options).expect("page");
        assert_eq!(got.items.len(), PAGE as usize, "{} page", page.label);
    }
    let rows = db.rows();
    println!(
        "[{}] table {rows} rows; instance {instance} has {total} deployments; pages start at rows {}",
        db.backend,
        pages
            .iter()
            .map(|p| format!("{}={}", p.label, p.skip + 1))
            .collect::<Vec<_>>()
            .join(", ")
    );
    db.check_index_used_by_store(instance, &pages);
    db.explain_pages(size, instance, &pages);
    db.compare_row_value_form(size, instance, &pages);

    let mut group = c.benchmark_group(format!("page/{}", db.backend));
    for page in &pages {
        group.bench_with_input(
            BenchmarkId::new(page.label, size),
            &page.options,
            |b, options| {
                b.iter(|| {
                    let page = list(&db.store, instance, black_box(options)).expect("page");
                    assert_eq!(page.items.len(), PAGE as usize);
                    page
                })
            },
        );
    }
    group.finish();
}

fn bench_inserts(c: &mut Criterion, db: &mut BenchDb) {
    let store = &db.store;
    let inst = store
        .upsert_instance(
            "bench-insert",
            "web-production",
            "bench-insert/web",
            "production",
        )
        .expect("instance");
    let release = store
        .insert_release(&release_for(&inst, 0))
        .expect("release");
    let before = db.raw.count("SELECT count(*) AS n FROM deployments");
    println!(
        "[{}] insert benchmarks start with {before} rows in deployments",
        db.backend
    );
    let mut group = c.benchmark_group(format!("insert/{}", db.backend));
    group.throughput(Throughput::Elements(1));
    group.bench_function("insert_release_and_deployment", |b| {
        b.iter(|| {
            let release = release_for(&inst, 0);
            let deployment = Deployment::pending(&release, "rolling", "octocat");
            store
                .insert_release_and_deployment(&release, &deployment)
                .expect("insert release and deployment")
        })
    });
    group.bench_function("insert_deployment", |b| {
        b.iter(|| {
            store
                .insert_deployment(&Deployment::pending(&release, "rolling", "octocat"))
                .expect("insert deployment")
        })
    });
    group.finish();
    let after = db.raw.count("SELECT count(*) AS n FROM deployments");
    println!(
        "[{}] insert benchmarks added {} rows",
        db.backend,
        after - before
    );
}

fn main() {
    let max_rows: u64 = std::env::var("BENCH_MAX_ROWS")
        .ok()
        .map(|v| v.parse().expect("BENCH_MAX_ROWS is a number"))
        .unwrap_or(1_000_000);
    let backends = std::env::var("BENCH_BACKENDS").unwrap_or_else(|_| "sqlite,postgres".into());
    let mut c = Criterion::default()
        .sample_size(10)
        .warm_up_time(Duration::from_secs(1))
        .measurement_time(Duration::from_secs(3))
        .configure_from_args();

    for backend in backends.split(',').map(str::trim) {
        let started = Instant::now();
        let mut db = match backend {
            "sqlite" => BenchDb::sqlite(),
            "postgres" => BenchDb::postgres(),
            other => panic!("BENCH_BACKENDS: unknown backend {other:?} (sqlite, postgres)"),
        };
        for size in SIZES.into_iter().filter(|s| *s <= max_rows) {
            db.grow_to(size);
            bench_pages(&mut c, &mut db, size);
        }
        bench_inserts(&mut c, &mut db);
        println!("[{backend}] done in {:.0?}", started.elapsed());
    }
    c.final_summary();
}
