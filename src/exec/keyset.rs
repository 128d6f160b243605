//! Walking a table in key ranges, shared by the backfill ([`super::backfill`]) and the
//! verification scans ([`super::scan`]): the next batch's upper key is found by
//! `ORDER BY key OFFSET n-1 LIMIT 1` after the previous batch's last key, and the
//! batch's statement takes the keys after the last one (`$1..$k`, when there is one)
//! up to that bound (`$k+1..$2k`, when there is one). Keys travel as the bytes of each
//! key column's text form.

use tokio_postgres::types::ToSql;
use tokio_postgres::{Client, Error, GenericClient, Statement};

/// A key: the text form of each key column, as bytes.
pub(super) type Key = Vec<Vec<u8>>;

/// A statement in its forms with and without the lower and upper key bounds,
/// prepared once.
pub(super) struct Ranged {
    /// Indexed by `lower as usize * 2 + upper as usize`.
    forms: Vec<Statement>,
}

impl Ranged {
    /// Prepares the four forms `sql(lower, upper)`.
    pub async fn prepare(c: &Client, sql: impl Fn(bool, bool) -> String) -> Result<Ranged, Error> {
        let mut forms = Vec::with_capacity(4);
        for (lower, upper) in [(false, false), (false, true), (true, false), (true, true)] {
            forms.push(c.prepare(&sql(lower, upper)).await?);
        }
        Ok(Ranged { forms })
    }

    /// The form for a range after `last` (when there is one) up to `bound` (when
    /// there is one).
    pub fn pick(&self, last: Option<&Key>, bound: Option<&Key>) -> &Statement {
        &self.forms[last.is_some() as usize * 2 + bound.is_some() as usize]
    }
}

/// Finds the bounds of the batches.
pub(super) struct Bounds {
    first: Statement,
    next: Statement,
    key_columns: usize,
}

impl Bounds {
    /// Prepares `sql(resume)`, the bound query of the first batch and of the next ones.
    pub async fn prepare(
        c: &Client,
        key_columns: usize,
        sql: impl Fn(bool) -> String,
    ) -> Result<Bounds, Error> {
        Ok(Bounds {
            first: c.prepare(&sql(false)).await?,
            next: c.prepare(&sql(true)).await?,
            key_columns,
        })
    }

    /// The key `n` rows after `last` (from the start when None); None when fewer
    /// rows are left.
    pub async fn next(
        &self,
        c: &impl GenericClient,
        last: Option<&Key>,
        n: i64,
    ) -> Result<Option<Key>, Error> {
        let mut params = range_params(last, None);
        params.push(&n);
        let stmt = if last.is_some() {
            &self.next
        } else {
            &self.first
        };
        Ok(c.query_opt(stmt, &params).await?.map(|r| {
            (0..self.key_columns)
                .map(|i| r.get::<_, Vec<u8>>(i))
                .collect()
        }))
    }
}

/// The parameters of a ranged statement: the keys after `last` and up to `bound`.
pub(super) fn range_params<'a>(
    last: Option<&'a Key>,
    bound: Option<&'a Key>,
) -> Vec<&'a (dyn ToSql + Sync)> {
    last.into_iter()
        .chain(bound)
        .flatten()
        .map(|k| k as &(dyn ToSql + Sync))
        .collect()
}
