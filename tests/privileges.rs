//! Least privilege: the whole rename plan, and its rollback, run by a role that is no
//! superuser — it owns the table and may create schemas in the database, nothing
//! more — while the application runs as a third role with DML rights only. Also what
//! happens with less than that.
//!
//! Role names carry the test database's name: roles are cluster-wide and tests run in
//! parallel (and may share a server through `PGPHASE_TEST_DATABASE_URL`).

mod common;

use std::sync::Arc;
use std::time::Duration;

use common::*;
use pgphase::conn::ConnInfo;
use pgphase::exec::Silent;
use pgphase::run::{self, Outcome, Session};
use pgphase::state::store;
use pgphase::workload::{AppVersion, Workload};
use tokio_postgres::Client;

const PASSWORD: &str = "Least-priv-3x";
const STAGE: Duration = Duration::from_millis(500);

/// The roles of one test and their URLs.
struct Roles {
    /// Owns `comments`; runs pgphase.
    owner: String,
    owner_url: String,
    /// The application: SELECT, INSERT, UPDATE, DELETE on `comments`, its sequence.
    app_url: String,
}

fn url_as(url: &str, user: &str) -> String {
    let mut u = url::Url::parse(url).unwrap();
    u.set_username(user).unwrap();
    u.set_password(Some(PASSWORD)).unwrap();
    u.to_string()
}

/// The comments table created by `<db>_owner`, which may create objects in `public`
/// (where its table is) and, when `create_on_database`, schemas (for `pgphase`);
/// `<db>_app` gets DML on the table only. Nobody else may create anything in `public`
/// (PostgreSQL 15's default, made explicit for 13 and 14).
async fn least_privilege(db: &TestDb, admin: &Client, create_on_database: bool) -> Roles {
    let owner = format!("{}_owner", db.name);
    let app = format!("{}_app", db.name);
    admin
        .batch_execute(&format!(
            "CREATE ROLE {owner} LOGIN PASSWORD '{PASSWORD}' NOSUPERUSER NOCREATEDB NOCREATEROLE;
             CREATE ROLE {app} LOGIN PASSWORD '{PASSWORD}' NOSUPERUSER NOCREATEDB NOCREATEROLE;
             REVOKE CREATE ON SCHEMA public FROM PUBLIC;
             REVOKE ALL ON DATABASE {db} FROM PUBLIC;
             GRANT CONNECT, TEMPORARY ON DATABASE {db} TO {owner}, {app};
             GRANT CREATE ON SCHEMA public TO {owner};",
            db = db.name
        ))
        .await
        .unwrap();
    let owner_url = url_as(&db.url, &owner);
    rich_comments(&connect(&owner_url).await, 3_000).await;
    admin
        .batch_execute(&format!(
            "GRANT SELECT, INSERT, UPDATE, DELETE ON comments TO {app};
             GRANT USAGE ON SEQUENCE comments_id_seq TO {app};"
        ))
        .await
        .unwrap();
    if create_on_database {
        admin
            .batch_execute(&format!("GRANT CREATE ON DATABASE {} TO {owner}", db.name))
            .await
            .unwrap();
    }
    let row = admin
        .query_one(
            "SELECT rolsuper OR rolcreaterole OR rolcreatedb OR rolbypassrls FROM pg_roles WHERE rolname = $1",
            &[&owner],
        )
        .await
        .unwrap();
    assert!(!row.get::<_, bool>(0), "{owner} must be an ordinary role");
    Roles {
        owner_url,
        app_url: url_as(&db.url, &app),
        owner,
    }
}

fn session_as(url: &str) -> Session {
    Session {
        conn: ConnInfo::parse(url).unwrap(),
        actor: "test".into(),
        observer: Arc::new(Silent),
        confirm: Arc::new(|_| true),
        failpoint: None,
    }
}

fn assert_clean(stats: &pgphase::workload::WorkloadStats, what: &str) {
    assert_eq!(
        stats.failed(),
        0,
        "{what}: {} application queries failed: {:#?}",
        stats.failed(),
        stats.samples
    );
}

/// start → advance → advance as the owner, under the application's traffic as the
/// application role: the same result as a superuser gets.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn the_whole_plan_as_the_table_owner() {
    let db = TestDb::new().await;
    let admin = db.client().await;
    let roles = least_privilege(&db, &admin, true).await;
    let s = session_as(&roles.owner_url);
    let plan = rename_plan("500ms", 30, 500);
    let name = plan.plan.name.clone();
    let wl = Workload::new(&roles.app_url, "comments");

    wl.start_clients(AppVersion::Old, 2).await.unwrap();
    tokio::time::sleep(STAGE).await;
    let out = run::start(&s, &plan).await.unwrap();
    assert!(
        matches!(&out, Outcome::AwaitingDeploy { phase, .. } if phase == "backfill"),
        "{out:?}"
    );
    wl.start_clients(AppVersion::New, 2).await.unwrap();
    tokio::time::sleep(STAGE).await;
    let out = run::advance(&s, &name, "api@v2", None).await.unwrap();
    assert!(
        matches!(&out, Outcome::AwaitingDeploy { phase, .. } if phase == "switch_reads"),
        "{out:?}"
    );
    wl.stop_clients(AppVersion::Old).await;
    tokio::time::sleep(STAGE).await;
    let out = run::advance(&s, &name, "api@v2-drained", None)
        .await
        .unwrap();
    assert_eq!(out, Outcome::Completed);
    tokio::time::sleep(STAGE).await;
    wl.stop_all().await;
    assert_clean(&wl.stats(), "rename as the owner");
    let v = wl.verify("body").await.unwrap();
    assert!(v.checked > 50 && v.is_clean(), "{v:?}");

    let (cat, functions) = schema_of(&admin, "comments").await;
    let t = cat.tables.values().next().unwrap();
    assert!(t.column("contents").is_none());
    assert!(t.column("body").is_some_and(|c| c.not_null));
    assert!(
        t.indexes
            .iter()
            .any(|i| i.name == "comments_body_idx" && i.valid),
        "{:?}",
        t.indexes
    );
    assert!(t.triggers.is_empty(), "{:?}", t.triggers);
    assert!(
        functions.iter().all(|f| !f.starts_with("sync_")),
        "{functions:?}"
    );

    // the state is the owner's: its schema, readable by it
    let owner_client = connect(&roles.owner_url).await;
    let schema_owner: String = owner_client
        .query_one(
            "SELECT nspowner::regrole::text FROM pg_namespace WHERE nspname = 'pgphase'",
            &[],
        )
        .await
        .unwrap()
        .get(0);
    assert_eq!(schema_owner, roles.owner);
    let st = store::load_plan(&owner_client, &name)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(st.status.as_str(), "completed");
    let events = store::events(&owner_client, Some(&name)).await.unwrap();
    assert_eq!(events.iter().filter(|e| e.kind == "gate").count(), 2);
}

/// A rollback from the first gate as the owner restores the exact original schema.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn rollback_as_the_table_owner() {
    let db = TestDb::new().await;
    let admin = db.client().await;
    let roles = least_privilege(&db, &admin, true).await;
    let before = schema_of(&admin, "comments").await;
    let s = session_as(&roles.owner_url);
    let plan = rename_plan("200ms", 5, 500);
    let name = plan.plan.name.clone();
    let wl = Workload::new(&roles.app_url, "comments");
    wl.start_clients(AppVersion::Old, 2).await.unwrap();
    tokio::time::sleep(STAGE).await;
    run::start(&s, &plan).await.unwrap();
    tokio::time::sleep(STAGE).await;
    assert_eq!(run::rollback(&s, &name).await.unwrap(), Outcome::RolledBack);
    tokio::time::sleep(STAGE).await;
    wl.stop_all().await;
    assert_clean(&wl.stats(), "rollback as the owner");
    let v = wl.verify("contents").await.unwrap();
    assert!(v.checked > 10 && v.is_clean(), "{v:?}");
    assert_eq!(before, schema_of(&admin, "comments").await);
    // and it starts again
    let out = run::start(&s, &plan).await.unwrap();
    assert!(matches!(out, Outcome::AwaitingDeploy { .. }), "{out:?}");
}

/// Less than the minimum: the error names the missing privilege; without CREATE on the
/// database nothing changes; without CREATE on the table's schema the plan stops at the
/// index build and resumes once it is granted.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn missing_privileges_are_named() {
    let db = TestDb::new().await;
    let admin = db.client().await;
    let roles = least_privilege(&db, &admin, false).await;
    let before = schema_of(&admin, "comments").await;
    let plan = rename_plan("200ms", 2, 500);
    let s = session_as(&roles.owner_url);

    // no CREATE on the database: the pgphase schema cannot be made
    let e = run::start(&s, &plan).await.unwrap_err();
    let text = format!("{e:#}");
    assert!(text.contains("permission denied for database"), "{text}");
    assert!(!text.contains(PASSWORD), "{text}");
    assert_eq!(before, schema_of(&admin, "comments").await);

    // no CREATE on the table's schema: CREATE INDEX needs it (ADD COLUMN, triggers and
    // constraints only need ownership)
    admin
        .batch_execute(&format!(
            "GRANT CREATE ON DATABASE {db} TO {owner}; REVOKE CREATE ON SCHEMA public FROM {owner};",
            db = db.name,
            owner = roles.owner
        ))
        .await
        .unwrap();
    // refused before anything runs, with the grant that fixes it (it used to stop
    // halfway, at the index step)
    let e = run::start(&s, &plan).await.unwrap_err();
    let text = format!("{e:#}");
    assert!(
        text.contains(&format!("`{}` has no CREATE on schema public", roles.owner))
            && text.contains(&format!(
                "GRANT CREATE ON SCHEMA public TO {};",
                roles.owner
            ))
            && text.contains("nothing was started"),
        "{text}"
    );
    assert_eq!(before, schema_of(&admin, "comments").await);
    admin
        .batch_execute(&format!("GRANT CREATE ON SCHEMA public TO {}", roles.owner))
        .await
        .unwrap();
    let out = run::start(&s, &plan).await.unwrap();
    assert!(matches!(out, Outcome::AwaitingDeploy { .. }), "{out:?}");
}

/// A role that may write the table but does not own it cannot change it.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn the_application_role_cannot_change_the_table() {
    let db = TestDb::new().await;
    let admin = db.client().await;
    let roles = least_privilege(&db, &admin, false).await;
    let before = schema_of(&admin, "comments").await;
    admin
        .batch_execute(&format!(
            "GRANT CREATE ON DATABASE {db} TO {db}_app; GRANT CREATE ON SCHEMA public TO {db}_app;",
            db = db.name
        ))
        .await
        .unwrap();
    let e = run::start(&session_as(&roles.app_url), &rename_plan("200ms", 2, 500))
        .await
        .unwrap_err();
    let text = format!("{e:#}");
    assert!(
        text.contains(&format!(
            "`{}_app` does not own public.comments (its owner is `{}`)",
            db.name, roles.owner
        )) && text.contains(&format!("GRANT {} TO {}_app;", roles.owner, db.name)),
        "{text}"
    );
    assert!(!text.contains(PASSWORD), "{text}");
    assert_eq!(before, schema_of(&admin, "comments").await);
}

/// A DBA may create the `pgphase` schema for the owner once; the owner then needs no
/// CREATE on the database.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_schema_created_by_the_dba_needs_no_create_on_the_database() {
    let db = TestDb::new().await;
    let admin = db.client().await;
    let roles = least_privilege(&db, &admin, false).await;
    admin
        .batch_execute(&format!(
            "CREATE SCHEMA pgphase AUTHORIZATION {}",
            roles.owner
        ))
        .await
        .unwrap();
    let s = session_as(&roles.owner_url);
    let plan = rename_plan("200ms", 5, 500);
    let out = run::start(&s, &plan)
        .await
        .unwrap_or_else(|e| panic!("{e:#}"));
    assert!(matches!(out, Outcome::AwaitingDeploy { .. }), "{out:?}");
}

/// Deploy fences look for the old application's sessions by application_name; those
/// run as another role, whose `backend_type` PostgreSQL hides from an ordinary role.
/// With pg_read_all_stats the owner sees them.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn deploy_fences_see_the_application_with_pg_read_all_stats() {
    let db = TestDb::new().await;
    let admin = db.client().await;
    let roles = least_privilege(&db, &admin, true).await;
    admin
        .batch_execute(&format!("GRANT pg_read_all_stats TO {}", roles.owner))
        .await
        .unwrap();
    let wl = Workload::new(&roles.app_url, "comments");
    wl.start_clients(AppVersion::Old, 2).await.unwrap();
    let owner_client = connect(&roles.owner_url).await;
    let found = store::fence_stragglers(&owner_client, "comments-api-old%")
        .await
        .unwrap();
    wl.stop_all().await;
    assert_eq!(found.len(), 2, "{found:?}");
    assert!(found.iter().all(|s| s.state.is_some()), "{found:?}");
}

/// Without it, `backend_type`, the client address and the start time are hidden, but the
/// pid and application_name are not: the fence still sees the sessions.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn deploy_fences_see_the_application_without_pg_read_all_stats() {
    let db = TestDb::new().await;
    let admin = db.client().await;
    let roles = least_privilege(&db, &admin, true).await;
    let wl = Workload::new(&roles.app_url, "comments");
    wl.start_clients(AppVersion::Old, 2).await.unwrap();
    let owner_client = connect(&roles.owner_url).await;
    let found = store::fence_stragglers(&owner_client, "comments-api-old%")
        .await
        .unwrap();
    wl.stop_all().await;
    assert_eq!(found.len(), 2, "{found:?}");
}
