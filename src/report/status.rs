//! The status views of plans, read from the state schema.

use crate::error::CmdError;
use crate::state::store;

use super::{plan_view, PlanView};

/// Status of one plan or all plans, with whether each is really being worked on.
pub async fn status_views(
    client: &tokio_postgres::Client,
    plan: Option<&str>,
) -> Result<Vec<PlanView>, CmdError> {
    if !store::schema_exists(client).await? {
        return Ok(Vec::new());
    }
    let names = match plan {
        Some(p) => vec![p.to_string()],
        None => store::plan_names(client).await?,
    };
    let mut views = Vec::new();
    for n in names {
        if let Some(p) = store::load_plan(client, &n).await? {
            let held = store::lock_holder(client, &n).await?.is_some();
            let progress = store::progress(client, &n).await?;
            let mut view = plan_view(&p, held, progress);
            view.evidence = store::latest_evidence_check(client, &n).await?;
            views.push(view);
        }
    }
    Ok(views)
}
