//! Schema cells: a database of its own, a setup, one plan — refused by `start` before
//! anything runs (the catalog unchanged), or run to completion and checked. Cells run
//! a few at a time; every failing one is reported.
#![allow(dead_code)]

use std::sync::Arc;

use super::{major_version, plan_from, run_to_completion, schema_of, TestDb};
use pgphase::run;

/// What a cell must do.
#[derive(Clone, Copy, Debug)]
pub enum Expect {
    /// `start` refuses, the message containing this, the catalog unchanged.
    Refused(&'static str),
    /// The plan completes; then this query returns true.
    Done(&'static str),
    /// The plan completes, its `plan` output names this (the object goes with the
    /// column, by design), then this query returns true.
    Dropped(&'static str, &'static str),
}

/// One cell.
#[derive(Clone, Debug)]
pub struct Cell {
    /// What it is about, for failure messages.
    pub what: String,
    /// Oldest PostgreSQL major it applies to.
    pub since: i32,
    pub setup: String,
    /// The plan's `changes:` entries.
    pub changes: String,
    /// Tables whose catalog a refusal must leave exactly as it was.
    pub tables: Vec<String>,
    pub expect: Expect,
}

impl Cell {
    pub async fn run(&self) -> Result<(), String> {
        let db = TestDb::new().await;
        let client = db.client().await;
        if major_version(&client).await < self.since {
            return Ok(());
        }
        client
            .batch_execute(&self.setup)
            .await
            .map_err(|e| format!("setup: {e}"))?;
        let file = plan_from(
            &format!(
                "settings: {{ lock_timeout: 1s }}\nchanges:\n{}\n",
                self.changes
            ),
            "cell",
        );
        match self.expect {
            Expect::Refused(needle) => {
                let mut before = Vec::new();
                for t in &self.tables {
                    before.push(schema_of(&client, t).await);
                }
                match run::start(&db.session(), &file).await {
                    Ok(o) => return Err(format!("expected a refusal, got {o:?}")),
                    Err(e) if !e.to_string().contains(needle) => {
                        return Err(format!("refused without `{needle}`: {e}"))
                    }
                    Err(_) => {}
                }
                for (t, b) in self.tables.iter().zip(before) {
                    if schema_of(&client, t).await != b {
                        return Err(format!("the refusal changed the catalog of {t}"));
                    }
                }
            }
            Expect::Done(check) | Expect::Dropped(_, check) => {
                if let Expect::Dropped(named, _) = self.expect {
                    let program = run::expand(Some(&db.conn()), &file)
                        .await
                        .map_err(|e| e.to_string())?;
                    let text = pgphase::report::plan_text(&program);
                    if !text.contains(named) {
                        return Err(format!("`plan` does not name `{named}`:\n{text}"));
                    }
                }
                match run_to_completion(&db.session(), &file).await {
                    Ok(run::Outcome::Completed) => {}
                    other => return Err(format!("did not complete: {other:?}")),
                }
                let ok: bool = client
                    .query_one(check, &[])
                    .await
                    .map_err(|e| format!("check: {e}"))?
                    .get(0);
                if !ok {
                    return Err(format!("check failed: {check}"));
                }
            }
        }
        Ok(())
    }
}

/// Runs the cells three at a time and reports every failing one.
pub async fn run_all(cells: Vec<Cell>) {
    all_ok(
        cells
            .into_iter()
            .map(|cell| -> Task {
                Box::pin(async move { cell.run().await.map_err(|e| format!("{}: {e}", cell.what)) })
            })
            .collect(),
    )
    .await;
}

/// A check that runs on its own database.
pub type Task = std::pin::Pin<Box<dyn std::future::Future<Output = Result<(), String>> + Send>>;

/// Runs the tasks three at a time (each creates its own database) and reports every
/// failing one.
pub async fn all_ok(tasks: Vec<Task>) {
    let permits = Arc::new(tokio::sync::Semaphore::new(3));
    let mut set = tokio::task::JoinSet::new();
    for task in tasks {
        let permits = permits.clone();
        set.spawn(async move {
            let _p = permits.acquire().await.unwrap();
            task.await
        });
    }
    let mut failures = Vec::new();
    while let Some(r) = set.join_next().await {
        if let Err(e) = r.unwrap() {
            failures.push(e);
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n\n"));
}
