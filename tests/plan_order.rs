//! Plans across files, ordered by `depends_on`, through the binary: `pgphase order`
//! offline and against a database (statuses, the next plan to start), `start` refusing a
//! plan whose dependencies are not completed, and a cycle named whole.

mod common;

use common::cli::{pgphase, run, Run};

const RELEASE: &str = "examples/release";

async fn on(url: &str, args: &[&str]) -> Run {
    let mut full = vec!["--database-url", url, "--quiet"];
    full.extend_from_slice(args);
    run(pgphase(&full)).await
}

#[tokio::test]
async fn order_prints_dependencies_first_and_start_follows_it() {
    // offline: dependency order, not file-name order
    let r = run(pgphase(&["order", RELEASE])).await;
    r.expect(0);
    let names: Vec<&str> = r
        .stdout
        .lines()
        .skip(1)
        .filter_map(|l| l.split_whitespace().nth(1))
        .collect();
    assert_eq!(
        names,
        [
            "comment-reactions-table",
            "comment-reactions-unique",
            "comment-reactions-fk"
        ],
        "{}",
        r.stdout
    );

    let db = common::TestDb::new().await;
    let client = db.client().await;
    pgphase::workload::create_comments_table(&client, "comments", 100)
        .await
        .unwrap();
    let next = |r: &Run| -> Option<String> {
        r.json()["plans"]
            .as_array()
            .unwrap()
            .iter()
            .find(|p| p["next"] == true)
            .map(|p| p["file"].as_str().unwrap().to_string())
    };
    // a plan whose dependency is not completed is refused, and nothing changes
    let r = on(
        &db.url,
        &[
            "start",
            "examples/release/comment-reactions-fk.yaml",
            "--yes",
        ],
    )
    .await;
    r.expect(3);
    assert!(
        r.stderr.contains(
            "depends on `comment-reactions-unique`, which is not started in this database"
        ),
        "{}",
        r.stderr
    );
    // follow `order`'s next plan until none is left
    let mut started = Vec::new();
    loop {
        let r = on(&db.url, &["--output", "json", "order", RELEASE]).await;
        r.expect(0);
        let Some(file) = next(&r) else { break };
        on(&db.url, &["start", &file, "--yes"]).await.expect(0);
        started.push(file);
        assert!(
            started.len() <= 3,
            "order keeps offering plans: {started:?}"
        );
    }
    assert_eq!(
        started,
        [
            "examples/release/comment-reactions-table.yaml",
            "examples/release/comment-reactions-unique.yaml",
            "examples/release/comment-reactions-fk.yaml"
        ]
    );
    let r = on(&db.url, &["order", RELEASE]).await;
    r.expect(0);
    assert_eq!(r.stdout.matches("[completed]").count(), 3, "{}", r.stdout);
    // the foreign key used the unique constraint's index: no index of its own
    let indexes: i64 = client
        .query_one(
            "SELECT count(*) FROM pg_index WHERE indrelid = 'comment_reactions'::regclass",
            &[],
        )
        .await
        .unwrap()
        .get(0);
    assert_eq!(indexes, 2, "primary key and unique only");
}

#[tokio::test]
async fn a_cycle_is_an_error_naming_every_plan_of_it() {
    let dir = tempfile::tempdir().unwrap();
    for (name, deps) in [("a", "c"), ("b", "a"), ("c", "b"), ("d", "")] {
        std::fs::write(
            dir.path().join(format!("{name}.yaml")),
            format!("depends_on: [{deps}]\nchanges:\n  - drop_index: {{ name: i_{name} }}\n"),
        )
        .unwrap();
    }
    let d = dir.path().display().to_string();
    let r = run(pgphase(&["order", &d])).await;
    r.expect(2);
    assert!(
        r.stderr.contains(&format!(
            "{d}/a.yaml:1:14: depends_on cycle: a → c → b → a;"
        )),
        "{}",
        r.stderr
    );
    for link in [
        "`a` depends on `c`",
        "`c` depends on `b`",
        "`b` depends on `a`",
    ] {
        assert!(r.stderr.contains(link), "{link}: {}", r.stderr);
    }
    // `start` of a plan in the cycle is refused before it connects
    let r = run(pgphase(&[
        "--database-url",
        "postgres://nobody@127.0.0.1:1/none",
        "start",
        &format!("{d}/b.yaml"),
    ]))
    .await;
    r.expect(2);
    assert!(
        r.stderr.contains("depends_on cycle: b → a → c → b"),
        "{}",
        r.stderr
    );
    assert!(r.stderr.contains("nothing was changed"), "{}", r.stderr);
}
