//! Whether a statement's text names what a contract drops, read with the project's SQL
//! lexer: identifiers only, as PostgreSQL folds them. A name inside a string constant,
//! a comment or a longer identifier (`contents_v2`) is not a reference.

use crate::program::ContractDrop;
use crate::sql::lexer::{lex, Tok};

/// What a contract drops, as the old version's statements would name it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Target {
    /// The table (as the catalog spells it).
    pub table: String,
    /// The dropped column; None: the table itself is dropped.
    pub column: Option<String>,
}

impl Target {
    /// The targets of a program's contract: what it drops whose name goes away with it
    /// (a column a shadow replaces under the same name is not one).
    pub fn of(drops: &[ContractDrop]) -> Vec<Target> {
        let mut out: Vec<Target> = Vec::new();
        for d in drops.iter().filter(|d| !d.name_stays) {
            let t = Target {
                table: d.table.name.as_str().to_string(),
                column: d.column.clone(),
            };
            if !out.contains(&t) {
                out.push(t);
            }
        }
        out
    }

    /// For messages: `comments.contents` or `comments`.
    pub fn describe(&self) -> String {
        match &self.column {
            Some(c) => format!("{}.{c}", self.table),
            None => self.table.clone(),
        }
    }

    /// The names to look for, for a cheap substring pre-filter before [`names`].
    pub fn words(&self) -> Vec<&str> {
        let mut w = vec![self.table.as_str()];
        w.extend(self.column.as_deref());
        w
    }
}

/// The identifiers of `sql`, as PostgreSQL folds them (unquoted lowercased, quoted as
/// written); string constants, comments, numbers and parameters are not identifiers.
fn identifiers(sql: &str) -> Vec<String> {
    lex(sql)
        .statements
        .iter()
        .flat_map(|s| s.tokens.iter())
        .filter_map(|t| match &t.tok {
            Tok::Word(w) | Tok::QuotedIdent(w) => Some(w.clone()),
            _ => None,
        })
        .collect()
}

/// The targets `sql` names: a dropped table when the statement names it; a dropped
/// column when the statement names both its table and the column (a column of the
/// same name in another table alone is not counted).
pub fn named<'a>(sql: &str, targets: &'a [Target]) -> Vec<&'a Target> {
    let ids = identifiers(sql);
    let has = |name: &str| ids.iter().any(|i| i == name);
    targets
        .iter()
        .filter(|t| has(&t.table) && t.column.as_deref().is_none_or(has))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn col() -> Vec<Target> {
        vec![Target {
            table: "comments".into(),
            column: Some("contents".into()),
        }]
    }

    #[test]
    fn a_column_is_named_with_its_table() {
        assert_eq!(
            named("SELECT id, contents FROM comments WHERE id = $1", &col()).len(),
            1
        );
        assert_eq!(
            named("UPDATE public.comments SET \"contents\" = $1", &col()).len(),
            1
        );
        assert_eq!(named("select c.CONTENTS from Comments c", &col()).len(), 1);
    }

    #[test]
    fn a_string_literal_a_longer_identifier_or_a_comment_is_not_a_reference() {
        for sql in [
            "SELECT id FROM comments WHERE note = 'contents'",
            "SELECT contents_v2 FROM comments",
            "SELECT my_contents FROM comments",
            "SELECT body FROM comments -- was contents",
            "SELECT body /* contents */ FROM comments",
            "SELECT $$contents$$ FROM comments",
            "SELECT E'contents' FROM comments",
            // a column of that name in another table
            "SELECT contents FROM posts",
            // a quoted identifier keeps its case: \"Contents\" is another column
            "SELECT \"Contents\" FROM comments",
        ] {
            assert!(named(sql, &col()).is_empty(), "{sql}");
        }
    }

    #[test]
    fn a_dropped_table_is_named_by_itself() {
        let t = vec![Target {
            table: "legacy_audit".into(),
            column: None,
        }];
        assert_eq!(
            named("INSERT INTO legacy_audit (a) VALUES ($1)", &t).len(),
            1
        );
        assert!(named("INSERT INTO legacy_audit_v2 (a) VALUES ($1)", &t).is_empty());
        assert!(named("SELECT 'legacy_audit'", &t).is_empty());
    }
}
