//! The commands that read plan files (with a database when one is given): `plan`,
//! `order`, `checklist`.

use std::path::{Path, PathBuf};

use super::{database, emit, load, plan_arg, unknown_plan, ChecklistFormat, Cli};
use crate::error::CmdError;
use crate::report;
use crate::run;
use crate::state::store;

/// `plan FILE`: the phases, steps and gates, against the live catalog or offline.
pub(super) async fn plan(cli: &Cli, file: &Path) -> Result<(), CmdError> {
    let f = load(file)?;
    let conn = database(cli)?;
    let program = run::expand(conn.as_ref(), &f).await?;
    let fences: Vec<crate::plan::Fence> = f.plan.fences.iter().map(|x| x.value.clone()).collect();
    let mut json = report::plan_json(&program);
    json["fences"] = report::fences_json(&fences);
    emit(
        cli,
        format!(
            "{}{}",
            report::plan_text(&program),
            report::fences_text(&fences)
        ),
        json,
    );
    Ok(())
}

/// `order FILE|DIR…`.
pub(super) async fn order(cli: &Cli, paths: &[PathBuf]) -> Result<(), CmdError> {
    let files =
        crate::plan::set::load_paths(paths).map_err(|e| CmdError::Invalid(e.to_string()))?;
    let order = crate::plan::set::order(&files).map_err(|e| CmdError::Invalid(e.to_string()))?;
    let statuses = match database(cli)? {
        Some(c) => Some(plan_statuses(&c.connect().await?).await?),
        None => None,
    };
    emit(
        cli,
        report::order_text(&files, &order, statuses.as_ref()),
        report::order_json(&files, &order, statuses.as_ref()),
    );
    Ok(())
}

/// `checklist FILE|PLAN`.
pub(super) async fn checklist(
    cli: &Cli,
    plan: &str,
    format: ChecklistFormat,
) -> Result<(), CmdError> {
    let c = build_checklist(cli, plan).await?;
    emit(
        cli,
        match format {
            ChecklistFormat::Markdown => report::checklist::markdown(&c),
            ChecklistFormat::Text => report::checklist::text(&c),
        },
        serde_json::to_value(&c).unwrap_or_default(),
    );
    Ok(())
}

/// `checklist FILE|PLAN`: from the stored plan when it was started in the database (ticked),
/// else from the file, expanded against the live catalog, or offline without a database.
async fn build_checklist(cli: &Cli, arg: &str) -> Result<report::checklist::Checklist, CmdError> {
    let (name, file) = plan_arg(arg)?;
    let conn = database(cli)?;
    let stored = match &conn {
        Some(c) => {
            let client = c.connect().await?;
            if store::schema_exists(&client).await? {
                store::load_plan(&client, &name).await?
            } else {
                None
            }
        }
        None => None,
    };
    let build = |program: &crate::program::Program,
                 fences: &[crate::plan::Fence],
                 stored: Option<&store::StoredPlan>,
                 path: Option<String>,
                 checksum: Option<String>| {
        report::checklist::build(&report::checklist::Source {
            program,
            file: path,
            checksum,
            fences,
            stored,
        })
    };
    match (stored, file) {
        (Some(st), f) => {
            let fences = run::stored_fences(&st)?;
            let mut c = build(
                &st.program,
                &fences,
                Some(&st),
                f.as_ref()
                    .map(|f| f.path.display().to_string())
                    .or_else(|| st.source_path.clone()),
                Some(st.checksum.clone()),
            );
            if let Some(f) = f.filter(|f| f.checksum != st.checksum) {
                c.notes.insert(
                    0,
                    format!(
                        "{} changed since the plan started ({} → {}): this checklist follows the started plan",
                        f.path.display(),
                        crate::plan::short_checksum(&st.checksum),
                        crate::plan::short_checksum(&f.checksum)
                    ),
                );
            }
            Ok(c)
        }
        (None, Some(f)) => {
            let program = run::expand(conn.as_ref(), &f).await?;
            let fences: Vec<crate::plan::Fence> =
                f.plan.fences.iter().map(|x| x.value.clone()).collect();
            Ok(build(
                &program,
                &fences,
                None,
                Some(f.path.display().to_string()),
                Some(f.checksum.clone()),
            ))
        }
        (None, None) if conn.is_none() => Err(CmdError::Invalid(format!(
            "`{arg}` is not a plan file, and no database was given to look the plan up in: pass a plan file, or --database-url"
        ))),
        (None, None) => Err(unknown_plan(&name)),
    }
}

/// Every plan's status in the database (none when pgphase never ran there).
async fn plan_statuses(
    client: &tokio_postgres::Client,
) -> Result<std::collections::BTreeMap<String, String>, CmdError> {
    if !store::schema_exists(client).await? {
        return Ok(Default::default());
    }
    Ok(store::plan_statuses(client).await?)
}
