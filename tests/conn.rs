//! Connection conventions as psql users expect them: libpq's PG* variables and the
//! password file. One test function, because it sets process environment variables.

mod common;

use pgphase::conn::{pgpass_lookup, ConnInfo};
use tokio_postgres::Config;

fn config(host: &str, port: u16, db: &str, user: &str) -> Config {
    let mut c = Config::new();
    c.host(host).port(port).dbname(db).user(user);
    c
}

#[tokio::test]
async fn pg_variables_and_the_password_file() {
    let dir = tempfile::tempdir().unwrap();
    let pgpass = dir.path().join("pgpass");
    std::fs::write(
        &pgpass,
        "# comment\n\
         db.internal:5432:app:alice:first\n\
         db.internal:5432:app:alice:second-match-ignored\n\
         db.internal:*:*:bob:b\\:ob\\\\pw\n\
         *:6543:*:*:wildcard\n\
         localhost:5432:app:carol:socket\n",
    )
    .unwrap();
    std::env::set_var("PGPASSFILE", &pgpass);

    // the lookup's choice: the first matching line; wildcards; escaped `:` and `\`
    assert_eq!(
        pgpass_lookup(&config("db.internal", 5432, "app", "alice")).as_deref(),
        Some("first")
    );
    assert_eq!(
        pgpass_lookup(&config("db.internal", 7777, "other", "bob")).as_deref(),
        Some("b:ob\\pw")
    );
    assert_eq!(
        pgpass_lookup(&config("anything", 6543, "x", "y")).as_deref(),
        Some("wildcard")
    );
    assert_eq!(
        pgpass_lookup(&config("db.internal", 5432, "app", "dave")),
        None
    );
    assert_eq!(
        pgpass_lookup(&config("db.internal", 5433, "app", "alice")),
        None
    );
    // a Unix-socket host matches `localhost`
    let mut sock = config("/var/run/postgresql", 5432, "app", "carol");
    sock.host_path("/var/run/postgresql");
    assert_eq!(pgpass_lookup(&sock).as_deref(), Some("socket"));
    // an unreadable file is no password, not an error
    std::env::set_var("PGPASSFILE", dir.path().join("missing"));
    assert_eq!(
        pgpass_lookup(&config("db.internal", 5432, "app", "alice")),
        None
    );
    std::env::set_var("PGPASSFILE", &pgpass);

    // a real connection from PGHOST/PGPORT/PGUSER/PGDATABASE (the test server trusts,
    // so the password from the file is sent but not checked)
    let db = common::TestDb::new().await;
    let u = url::Url::parse(&db.url).unwrap();
    std::env::remove_var("DATABASE_URL");
    std::env::set_var("PGHOST", u.host_str().unwrap());
    std::env::set_var("PGPORT", u.port().unwrap_or(5432).to_string());
    std::env::set_var("PGUSER", u.username());
    std::env::set_var("PGDATABASE", &db.name);
    std::env::remove_var("PGPASSWORD");
    let info = ConnInfo::resolve(None)
        .unwrap()
        .expect("PG* variables say where");
    assert_eq!(
        info.redacted(),
        format!(
            "postgres://{}@{}:{}/{}",
            u.username(),
            u.host_str().unwrap(),
            u.port().unwrap_or(5432),
            db.name
        )
    );
    let client = info.connect().await.unwrap();
    let row = client
        .query_one("SELECT current_database()::text, current_user::text, current_setting('application_name')", &[])
        .await
        .unwrap();
    assert_eq!(row.get::<_, String>(0), db.name);
    assert_eq!(row.get::<_, String>(1), u.username());
    assert_eq!(row.get::<_, String>(2), "pgphase");

    // the binary, with only PG* variables: it connects and answers
    let out = std::process::Command::new(common::pgphase_bin())
        .args(["status", "--output", "json"])
        .env_remove("DATABASE_URL")
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(0), "{out:?}");
    assert_eq!(
        String::from_utf8(out.stdout).unwrap().trim(),
        "{\n  \"plans\": []\n}"
    );

    // --database-url wins over PG* variables
    let out = std::process::Command::new(common::pgphase_bin())
        .args([
            "--database-url",
            "postgres://nobody@127.0.0.1:1/none",
            "status",
        ])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8(out.stderr)
        .unwrap()
        .contains("cannot connect to postgres://nobody@127.0.0.1:1/none"));
}
