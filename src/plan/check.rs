//! Checks of names and SQL fragments as written in a plan, shared by the change kinds'
//! validation.

use crate::sql::{QualifiedName, MAX_IDENT_BYTES};

pub(crate) fn on_delete_keywords(text: &str) -> Option<&'static str> {
    match text.trim().to_ascii_lowercase().replace('_', " ").as_str() {
        "cascade" => Some("CASCADE"),
        "restrict" => Some("RESTRICT"),
        "no action" => Some("NO ACTION"),
        "set null" => Some("SET NULL"),
        "set default" => Some("SET DEFAULT"),
        _ => None,
    }
}

/// Whether a name as written in a plan has a schema part (`schema.name`).
pub(crate) fn names_a_schema(text: &str) -> bool {
    // a prefix adds a part: `x.<text>` has three parts exactly when `text` has two
    QualifiedName::parse(&format!("\"x\".{text}")).is_err()
}

pub(crate) fn check_sql_text(text: &str, what: &str) -> Result<(), String> {
    if text.trim().is_empty() {
        return Err(format!("`{what}` is empty"));
    }
    if text.contains(';') {
        return Err(format!(
            "`{what}` contains `;`: it is one SQL expression, not a statement list"
        ));
    }
    if text.contains("--") || text.contains("/*") {
        return Err(format!(
            "`{what}` contains a comment; write the expression only"
        ));
    }
    Ok(())
}

pub(crate) fn check_ident(name: &str) -> Result<(), String> {
    if name.is_empty() {
        return Err("a name cannot be empty".into());
    }
    if name.len() > MAX_IDENT_BYTES {
        return Err(format!(
            "`{name}` is {} bytes; PostgreSQL names are at most {MAX_IDENT_BYTES} bytes",
            name.len()
        ));
    }
    if name.chars().any(char::is_control) {
        return Err(format!(
            "`{}` contains a control character (line break, tab, NUL…); PostgreSQL names here must not",
            name.escape_debug()
        ));
    }
    Ok(())
}
