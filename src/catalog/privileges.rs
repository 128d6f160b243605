//! What the connected role lacks to change given tables and create in given schemas.

use std::collections::BTreeSet;
use tokio_postgres::GenericClient;

use crate::sql::{quote_ident, QualifiedName};

/// The privileges the role lacks: each gap in words, and the GRANTs that close them.
#[derive(Clone, Debug, Default)]
pub struct Gaps {
    pub missing: Vec<String>,
    pub grants: Vec<String>,
}

/// What the current role lacks to change every existing table of `tables` (it must own
/// it, or inherit its owner) and to create in every existing schema of `schemas`; a
/// table that does not exist yet adds its schema. A schema that does not exist is
/// skipped (the plan's own refusal names it).
pub async fn gaps<C: GenericClient>(
    client: &C,
    tables: &BTreeSet<QualifiedName>,
    schemas: &BTreeSet<String>,
) -> Result<Gaps, tokio_postgres::Error> {
    let mut schemas = schemas.clone();
    let mut g = Gaps::default();
    let role: String = client
        .query_one("SELECT current_user::text", &[])
        .await?
        .get(0);
    for t in tables {
        let row = client
            .query_opt(
                "SELECT pg_get_userbyid(c.relowner)::text, pg_has_role(c.relowner, 'USAGE')
                   FROM pg_class c WHERE c.oid = to_regclass($1)",
                &[&t.to_string()],
            )
            .await?;
        match row {
            Some(r) if !r.get::<_, bool>(1) => {
                let owner: String = r.get(0);
                g.missing.push(format!(
                    "`{role}` does not own {t} (its owner is `{owner}`)"
                ));
                g.grants.push(format!(
                    "GRANT {} TO {};",
                    quote_ident(&owner),
                    quote_ident(&role)
                ));
            }
            Some(_) => {}
            // created by the plan: needs CREATE on its schema
            None => {
                schemas.insert(t.schema.as_str().to_string());
            }
        }
    }
    for schema in &schemas {
        let exists: bool = client
            .query_one(
                "SELECT EXISTS (SELECT 1 FROM pg_namespace WHERE nspname = $1)",
                &[schema],
            )
            .await?
            .get(0);
        if !exists {
            continue; // the plan's own refusal says so
        }
        let ok: bool = client
            .query_one("SELECT has_schema_privilege($1, 'CREATE')", &[schema])
            .await?
            .get(0);
        if !ok {
            g.missing.push(format!(
                "`{role}` has no CREATE on schema {} (index builds and new tables or views need it)",
                quote_ident(schema)
            ));
            g.grants.push(format!(
                "GRANT CREATE ON SCHEMA {} TO {};",
                quote_ident(schema),
                quote_ident(&role)
            ));
        }
    }
    Ok(g)
}
