//! The documentation is kept true by these checks (no server needed):
//! - `docs/lint/` is exactly what `pgphase::lint::docs` renders from the rules' data;
//!   `PGPHASE_UPDATE_DOCS=1 cargo test --release --test docs` rewrites it;

use std::collections::BTreeSet;
use std::fs;
use std::path::{Path, PathBuf};

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

fn rel(p: &Path) -> String {
    p.strip_prefix(root())
        .unwrap_or(p)
        .to_string_lossy()
        .into_owned()
}

#[test]
fn lint_rule_pages_are_current() {
    let dir = root().join(pgphase::lint::docs::DIR);
    let update = std::env::var_os("PGPHASE_UPDATE_DOCS").is_some_and(|v| v == "1");
    let pages = pgphase::lint::docs::pages();
    let mut stale = Vec::new();
    for (name, text) in &pages {
        let path = dir.join(name);
        if fs::read_to_string(&path).ok().as_deref() == Some(text.as_str()) {
            continue;
        }
        if update {
            fs::create_dir_all(&dir).unwrap();
            fs::write(&path, text).unwrap();
        } else {
            stale.push(rel(&path));
        }
    }
    let expected: BTreeSet<&str> = pages.iter().map(|(n, _)| n.as_str()).collect();
    for entry in fs::read_dir(&dir).into_iter().flatten().flatten() {
        let name = entry.file_name().to_string_lossy().into_owned();
        if !expected.contains(name.as_str()) {
            if update {
                fs::remove_file(entry.path()).unwrap();
            } else {
                stale.push(format!("{} (no rule renders it)", rel(&entry.path())));
            }
        }
    }
    assert!(
        stale.is_empty(),
        "not what src/lint/docs.rs renders from the rules' data: {stale:?}\n\
         regenerate with `PGPHASE_UPDATE_DOCS=1 cargo test --release --test docs` and commit"
    );
}

