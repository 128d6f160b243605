mod common;
#[tokio::test]
async fn unique_constraint_rollback() {
    let db = common::TestDb::new().await;
    let c = db.client().await;
    pgphase::workload::create_comments_table(&c, "comments", 10)
        .await
        .unwrap();
    c.batch_execute("ALTER TABLE comments ADD CONSTRAINT comments_contents_key UNIQUE (contents);")
        .await
        .unwrap();
    let plan = common::rename_plan("500ms", 3, 100);
    let s = db.session();
    let out = pgphase::run::start(&s, &plan).await;
    println!("start: {out:?}");
    let out = pgphase::run::rollback(&s, "rename-comments-contents-to-body").await;
    println!("rollback: {out:?}");
    let out = pgphase::run::rollback(&s, "rename-comments-contents-to-body").await;
    println!("rollback again: {out:?}");
}
