//! Guards around the catalog a plan changes, checked against the live database: a
//! second active plan on the same columns is refused at `start`, and a contract is
//! refused before it begins when something has come to depend on what it drops since
//! the plan started (another plan, hand-written DDL). Both change nothing.

use tokio_postgres::Client;

use crate::catalog::{Catalog, Dependent};
use crate::error::CmdError;
use crate::program::{Program, Touch};
use crate::state::store::{self, StoredPlan};

/// Where two footprints meet: the table, and the shared columns (empty: the table as
/// a whole).
fn overlap(a: &Touch, b: &Touch) -> Option<Vec<String>> {
    if a.table != b.table {
        return None;
    }
    match (&a.columns, &b.columns) {
        (Some(x), Some(y)) => {
            let shared: Vec<String> = x.iter().filter(|c| y.contains(c)).cloned().collect();
            (!shared.is_empty()).then_some(shared)
        }
        _ => Some(Vec::new()),
    }
}

fn describe(t: &Touch, shared: &[String]) -> String {
    let short = t.table.display_short();
    if shared.is_empty() {
        format!("`{short}`")
    } else {
        shared
            .iter()
            .map(|c| format!("`{short}.{c}`"))
            .collect::<Vec<_>>()
            .join(", ")
    }
}

/// Refuses to start plan `name` (program `program`) while another active plan touches
/// the same columns: two plans on one column undo each other's work (one's contract
/// drops the other's index, or its check goes unenforced on the copy). `depends_on`
/// orders plans: a plan that depends on an active one is refused before this.
pub async fn check_overlap(client: &Client, name: &str, program: &Program) -> Result<(), CmdError> {
    let mut found = Vec::new();
    for other in store::active_plans(client, name).await? {
        for mine in &program.footprint {
            for theirs in &other.program.footprint {
                if let Some(shared) = overlap(mine, theirs) {
                    found.push(format!(
                        "{} ({} in `{name}`, {} in `{}`, which is {})",
                        describe(mine, &shared),
                        mine.kinds.join(", "),
                        theirs.kinds.join(", "),
                        other.name,
                        other.status.as_str()
                    ));
                }
            }
        }
    }
    if found.is_empty() {
        return Ok(());
    }
    Err(CmdError::refused(
        format!(
            "plan `{name}` touches what another active plan changes: {}; two plans on the same columns undo each other's work (one's contract drops what the other built on the old column), so nothing was started",
            found.join("; ")
        ),
        format!(
            "finish (or roll back) the other plan first, then start `{name}` naming the columns as that plan leaves them; `depends_on` in `{name}` makes the order explicit"
        ),
    ))
}

/// Before a contract begins: refuses (nothing run) when something depends on a column
/// or table the contract drops that did not when the plan started — contract would fail
/// on it after the point of no return, or drop it silently.
pub async fn check_contract(client: &Client, plan: &StoredPlan) -> Result<(), CmdError> {
    let mut found: Vec<String> = Vec::new();
    let mut touched_by: Vec<String> = Vec::new();
    let others = store::active_plans(client, &plan.name).await?;
    for drop in &plan.program.contract_drops {
        let cat = Catalog::load(client, std::slice::from_ref(&drop.table)).await?;
        let Some(t) = cat.table(&drop.table) else {
            continue; // dropped already: contract's IF EXISTS
        };
        let short = t.name.display_short();
        let (what, new): (String, Vec<&Dependent>) = match drop.attnum {
            Some(n) => {
                let Some(c) = t.columns.iter().find(|c| c.attnum == n) else {
                    continue;
                };
                (
                    format!("`{short}.{}`", drop.column.as_deref().unwrap_or(&c.name)),
                    t.dependents_of(&c.name).collect(),
                )
            }
            None => (
                format!("`{short}`"),
                t.dependents
                    .iter()
                    .filter(|d| !d.own && d.deptype == "n")
                    .collect(),
            ),
        };
        let new: Vec<String> = new
            .into_iter()
            .filter(|d| !d.is_pgphase() && !drop.known.contains(&d.identity))
            .map(|d| d.description.clone())
            .collect();
        if new.is_empty() {
            continue;
        }
        found.push(format!("{what}: {}", new.join(", ")));
        for o in &others {
            let column = drop.column.clone();
            let touches = o.program.footprint.iter().any(|f| {
                f.table == drop.table
                    && match (&f.columns, &column) {
                        (Some(cols), Some(c)) => cols.contains(c),
                        _ => true,
                    }
            });
            if touches && !touched_by.contains(&o.name) {
                touched_by.push(o.name.clone());
            }
        }
    }
    if found.is_empty() {
        return Ok(());
    }
    let name = &plan.name;
    Err(CmdError::refused(
        format!(
            "plan `{name}`: contract drops what something has come to depend on since the plan started — {}{}; contract would fail on it after the point of no return, or drop it silently, so nothing was run",
            found.join("; "),
            if touched_by.is_empty() {
                String::new()
            } else {
                format!(
                    " (active plan(s) touching it: {})",
                    touched_by
                        .iter()
                        .map(|n| format!("`{n}`"))
                        .collect::<Vec<_>>()
                        .join(", ")
                )
            }
        ),
        format!(
            "drop those objects (or roll back the plan that made them) and recreate them on what replaces the column after `{name}` completes, then re-run; or roll `{name}` back (`pgphase phase rollback {name}`)"
        ),
    ))
}
