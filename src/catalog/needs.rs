//! Loading the catalog a plan needs: given by name (the plan's changes say which,
//! see `run::needs_of`), read in one pass.

use tokio_postgres::GenericClient;

use super::Catalog;
use crate::error::CmdError;
use crate::sql::QualifiedName;

/// What to read from the catalog, by name.
#[derive(Clone, Debug, Default)]
pub struct Needs {
    pub tables: Vec<QualifiedName>,
    /// Indexes whose tables are needed (looked up by the index's name).
    pub indexes: Vec<QualifiedName>,
    /// Relations whose kind and existence matter (views, sequences, tables).
    pub relations: Vec<QualifiedName>,
    pub types: Vec<QualifiedName>,
    /// Column types whose nullability (domains) matters, as written.
    pub column_types: Vec<String>,
}

/// The table of index `index`, if it exists.
pub async fn table_of_index<C: GenericClient>(
    client: &C,
    index: &QualifiedName,
) -> Result<Option<QualifiedName>, tokio_postgres::Error> {
    Ok(client
        .query_opt(
            "SELECT tn.nspname::text, t.relname::text FROM pg_index i
               JOIN pg_class ic ON ic.oid = i.indexrelid
               JOIN pg_namespace n ON n.oid = ic.relnamespace
               JOIN pg_class t ON t.oid = i.indrelid
               JOIN pg_namespace tn ON tn.oid = t.relnamespace
              WHERE n.nspname = $1 AND ic.relname = $2",
            &[&index.schema.as_str(), &index.name.as_str()],
        )
        .await?
        .map(|r| QualifiedName::new(r.get::<_, String>(0), r.get::<_, String>(1))))
}

fn sorted<T: Ord>(mut v: Vec<T>) -> Vec<T> {
    v.sort();
    v.dedup();
    v
}

impl Catalog {
    /// The catalog of everything in `needs`: the tables (and those of the indexes), the
    /// relations and types. Refuses a server older than PostgreSQL 13.
    pub async fn load_needed<C: GenericClient>(
        client: &C,
        needs: &Needs,
    ) -> Result<Catalog, CmdError> {
        let mut tables = needs.tables.clone();
        for index in &needs.indexes {
            if let Some(t) = table_of_index(client, index).await? {
                tables.push(t);
            }
        }
        let mut cat = Catalog::load(client, &sorted(tables)).await?;
        cat.load_relations(client, &sorted(needs.relations.clone()))
            .await?;
        cat.load_types(client, &sorted(needs.types.clone())).await?;
        cat.load_type_nullability(client, &sorted(needs.column_types.clone()))
            .await?;
        if cat.major_version() < 13 {
            return Err(CmdError::Invalid(format!(
                "the server runs PostgreSQL {}; pgphase supports 13 and later",
                cat.major_version()
            )));
        }
        Ok(cat)
    }
}
