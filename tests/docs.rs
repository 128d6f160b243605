//! The documentation is kept true by these checks (no server needed):
//! - `docs/lint/` is exactly what `pgphase::lint::docs` renders from the rules' data;
//!   `PGPHASE_UPDATE_DOCS=1 cargo test --profile test-release --test docs` rewrites it;
//! - every relative link and `#anchor` in README.md, CONTRIBUTING.md and docs/**/*.md
//!   resolves (anchors as GitHub makes them from headings);
//! - every test the docs cite as proof exists: the names in a table column headed
//!   "proven by" or "test", and in a section whose heading starts with "Tests", are
//!   found as `fn NAME` in tests/ or src/ (a `tests/x.rs` or `src/x.rs` path must exist).

use std::collections::{BTreeMap, BTreeSet};
use std::fs;
use std::path::{Component, Path, PathBuf};

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
         regenerate with `PGPHASE_UPDATE_DOCS=1 cargo test --profile test-release --test docs` and commit"
    );
}

/// README.md, CONTRIBUTING.md and every Markdown file under docs/.
fn doc_files() -> Vec<PathBuf> {
    fn walk(dir: &Path, out: &mut Vec<PathBuf>) {
        let mut entries: Vec<_> = fs::read_dir(dir).unwrap().flatten().collect();
        entries.sort_by_key(|e| e.path());
        for e in entries {
            let p = e.path();
            if p.is_dir() {
                walk(&p, out);
            } else if p.extension().is_some_and(|x| x == "md") {
                out.push(p);
            }
        }
    }
    let mut out = vec![root().join("README.md"), root().join("CONTRIBUTING.md")];
    walk(&root().join("docs"), &mut out);
    out
}

/// The lines of a Markdown file outside fenced code blocks, with their numbers.
fn prose_lines(text: &str) -> Vec<(usize, &str)> {
    let mut fence: Option<&str> = None;
    let mut out = Vec::new();
    for (i, line) in text.lines().enumerate() {
        let t = line.trim_start();
        let marker = ["```", "~~~"].into_iter().find(|m| t.starts_with(m));
        match (fence, marker) {
            (None, Some(m)) => fence = Some(m),
            (Some(f), Some(m)) if f == m && t.trim_end() == m => fence = None,
            (None, None) => out.push((i + 1, line)),
            _ => {}
        }
    }
    out
}

/// A heading's text, when the line is an ATX heading.
fn heading(line: &str) -> Option<(usize, &str)> {
    let level = line.chars().take_while(|c| *c == '#').count();
    if (1..=6).contains(&level) && line[level..].starts_with(' ') {
        Some((level, line[level..].trim().trim_end_matches('#').trim()))
    } else {
        None
    }
}

/// GitHub's anchor for a heading: the rendered text (code spans, emphasis and links
/// reduced to their text), lower-cased, keeping letters, digits, `-`, `_` and spaces,
/// spaces turned into `-`.
fn slug(heading: &str) -> String {
    let mut text = String::new();
    let mut rest = heading;
    // [text](url) → text
    while let Some(open) = rest.find('[') {
        text.push_str(&rest[..open]);
        let after = &rest[open + 1..];
        match after.find("](").and_then(|close| {
            after[close + 2..]
                .find(')')
                .map(|end| (close, close + 2 + end))
        }) {
            Some((close, end)) => {
                text.push_str(&after[..close]);
                rest = &after[end + 1..];
            }
            None => {
                text.push('[');
                rest = after;
            }
        }
    }
    text.push_str(rest);
    text.to_lowercase()
        .chars()
        .filter_map(|c| match c {
            ' ' => Some('-'),
            c if c.is_alphanumeric() || c == '-' || c == '_' => Some(c),
            _ => None,
        })
        .collect()
}

/// Every anchor a file's headings make (duplicates numbered as GitHub does).
fn anchors(text: &str) -> BTreeSet<String> {
    let mut seen: BTreeMap<String, usize> = BTreeMap::new();
    let mut out = BTreeSet::new();
    for (_, line) in prose_lines(text) {
        if let Some((_, h)) = heading(line) {
            let s = slug(h);
            let n = seen.entry(s.clone()).or_insert(0);
            out.insert(if *n == 0 { s } else { format!("{s}-{n}") });
            *n += 1;
        }
    }
    out
}

/// The targets of inline links `[text](target)` on a line.
fn link_targets(line: &str) -> Vec<&str> {
    let mut out = Vec::new();
    let mut rest = line;
    while let Some(i) = rest.find("](") {
        let after = &rest[i + 2..];
        let Some(end) = after.find(')') else { break };
        let target = after[..end].split_whitespace().next().unwrap_or("");
        out.push(target);
        rest = &after[end..];
    }
    out
}

fn normalize(p: &Path) -> PathBuf {
    let mut out = PathBuf::new();
    for c in p.components() {
        match c {
            Component::ParentDir => {
                out.pop();
            }
            Component::CurDir => {}
            c => out.push(c),
        }
    }
    out
}

/// Pages another branch of the same change writes (issue 12: docs/architecture.md comes
/// with the module restructure). Remove an entry once that branch is merged.
const WRITTEN_ELSEWHERE: &[&str] = &[];

#[test]
fn every_relative_link_and_anchor_resolves() {
    let mut broken = Vec::new();
    for file in doc_files() {
        let text = fs::read_to_string(&file).unwrap_or_else(|e| panic!("{}: {e}", rel(&file)));
        for (n, line) in prose_lines(&text) {
            for target in link_targets(line) {
                if target.contains("://") || target.starts_with("mailto:") || target.is_empty() {
                    continue;
                }
                let (path, anchor) = match target.split_once('#') {
                    Some((p, a)) => (p, Some(a)),
                    None => (target, None),
                };
                let dest = if path.is_empty() {
                    file.clone()
                } else {
                    normalize(&file.parent().unwrap().join(path))
                };
                let at = format!("{}:{n}: {target}", rel(&file));
                if !dest.exists() && !WRITTEN_ELSEWHERE.contains(&rel(&dest).as_str()) {
                    broken.push(format!("{at}: no such file"));
                    continue;
                }
                if let Some(a) = anchor {
                    if dest.extension().is_some_and(|x| x == "md") {
                        let t = fs::read_to_string(&dest).unwrap();
                        if !anchors(&t).contains(a) {
                            broken.push(format!("{at}: no heading makes #{a}"));
                        }
                    }
                }
            }
        }
    }
    assert!(broken.is_empty(), "broken links:\n{}", broken.join("\n"));
}

/// `fn` names per Rust file under tests/ and src/.
fn functions() -> BTreeMap<String, BTreeSet<String>> {
    fn walk(dir: &Path, out: &mut BTreeMap<String, BTreeSet<String>>) {
        for e in fs::read_dir(dir).unwrap().flatten() {
            let p = e.path();
            if p.is_dir() {
                walk(&p, out);
            } else if p.extension().is_some_and(|x| x == "rs") {
                let text = fs::read_to_string(&p).unwrap();
                let names = text
                    .split("fn ")
                    .skip(1)
                    .map(|s| {
                        s.chars()
                            .take_while(|c| c.is_alphanumeric() || *c == '_')
                            .collect::<String>()
                    })
                    .filter(|s| !s.is_empty())
                    .collect();
                out.insert(rel(&p), names);
            }
        }
    }
    let mut out = BTreeMap::new();
    walk(&root().join("tests"), &mut out);
    walk(&root().join("src"), &mut out);
    out
}

/// The code spans of a piece of Markdown.
fn code_spans(text: &str) -> Vec<&str> {
    text.split('`').skip(1).step_by(2).collect()
}

/// What a cited name must match: a path that exists, or a `fn` (a `*` suffix is a
/// prefix), in the file named before it in the same cell or paragraph, else anywhere.
fn check_citation(
    token: &str,
    file: &mut Option<String>,
    fns: &BTreeMap<String, BTreeSet<String>>,
) -> Result<(), String> {
    let is_path = token.ends_with(".rs") && !token.contains(' ');
    if is_path {
        let found: Vec<&String> = fns
            .keys()
            .filter(|k| *k == token || k.ends_with(&format!("/{token}")))
            .collect();
        return match found.as_slice() {
            [one] => {
                *file = Some((*one).clone());
                Ok(())
            }
            [] => Err(format!("no file {token}")),
            _ => Ok(()),
        };
    }
    let ident = |s: &str| {
        !s.is_empty()
            && s.chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == ':' || c == '*')
    };
    if !ident(token) || !token.contains('_') || token.contains(":::") {
        return Ok(());
    }
    // `module::name`: a test file's module, or a type (`Report::assert_clean`).
    let (scope, name) = match token.rsplit_once("::") {
        Some((m, n)) => (Some(m), n),
        None => (None, token),
    };
    let in_file: Option<String> = match scope {
        Some(m) if m.chars().all(|c| c.is_ascii_lowercase() || c == '_') => {
            let f = format!("tests/{m}.rs");
            fns.contains_key(&f).then_some(f)
        }
        Some(_) => None,
        None => file.clone(),
    };
    let matches = |names: &BTreeSet<String>| match name.strip_suffix('*') {
        Some("") => true,
        Some(prefix) => names.iter().any(|n| n.starts_with(prefix)),
        None => names.contains(name),
    };
    let ok = match &in_file {
        Some(f) => matches(&fns[f]) || fns.values().any(matches),
        None => fns.values().any(matches),
    };
    if ok {
        Ok(())
    } else {
        Err(format!("no `fn {name}` in tests/ or src/"))
    }
}

#[test]
fn every_test_cited_as_proof_exists() {
    let fns = functions();
    let mut missing = Vec::new();
    let mut cited = 0;
    for path in doc_files() {
        let text = fs::read_to_string(&path).unwrap();
        let mut proof_columns: Vec<usize> = Vec::new();
        let mut in_tests_section: Option<usize> = None;
        for (n, line) in prose_lines(&text) {
            if let Some((level, h)) = heading(line) {
                in_tests_section = match in_tests_section {
                    Some(l) if level > l => Some(l),
                    _ if h.starts_with("Tests") => Some(level),
                    _ => None,
                };
                continue;
            }
            let cells: Vec<&str> = if line.trim_start().starts_with('|') {
                split_row(line)
            } else {
                proof_columns.clear();
                Vec::new()
            };
            let pieces: Vec<&str> = if !cells.is_empty() {
                if proof_columns.is_empty() && !cells.iter().all(|c| c.starts_with("---")) {
                    let header: Vec<usize> = cells
                        .iter()
                        .enumerate()
                        .filter(|(_, c)| matches!(c.trim(), "proven by" | "test" | "tests"))
                        .map(|(i, _)| i)
                        .collect();
                    if !header.is_empty() {
                        proof_columns = header;
                        continue;
                    }
                }
                proof_columns
                    .iter()
                    .filter_map(|i| cells.get(*i).copied())
                    .collect()
            } else if in_tests_section.is_some() {
                vec![line]
            } else {
                Vec::new()
            };
            for piece in pieces {
                let mut file = None;
                for token in code_spans(piece) {
                    cited += 1;
                    if let Err(e) = check_citation(token, &mut file, &fns) {
                        missing.push(format!("{}:{n}: `{token}`: {e}", rel(&path)));
                    }
                }
            }
        }
    }
    assert!(
        cited > 100,
        "only {cited} citations found: is the check reading the docs?"
    );
    assert!(
        missing.is_empty(),
        "cited as proof but not found:\n{}",
        missing.join("\n")
    );
}

/// The cells of a table row (`\|` inside a cell is not a separator).
fn split_row(line: &str) -> Vec<&str> {
    let t = line.trim().trim_start_matches('|').trim_end_matches('|');
    let mut cells = Vec::new();
    let mut start = 0;
    let b = t.as_bytes();
    for i in 0..b.len() {
        if b[i] == b'|' && (i == 0 || b[i - 1] != b'\\') {
            cells.push(t[start..i].trim());
            start = i + 1;
        }
    }
    cells.push(t[start..].trim());
    cells
}

#[test]
fn anchors_follow_github() {
    assert_eq!(
        slug("`pgphase status`: every plan at a glance"),
        "pgphase-status-every-plan-at-a-glance"
    );
    assert_eq!(
        slug("How `rename_column` keeps both versions working"),
        "how-rename_column-keeps-both-versions-working"
    );
    assert_eq!(
        slug("Several plans: `depends_on` and `pgphase order`"),
        "several-plans-depends_on-and-pgphase-order"
    );
    assert_eq!(slug("Limitations (today)"), "limitations-today");
    let a = anchors("# A\n## B\n```\n# not a heading\n```\n## B\n");
    assert_eq!(a, ["a", "b", "b-1"].into_iter().map(String::from).collect());
}

/// The `pgphase …` commands in docs/ci.md's workflow: (subcommand words, flags).
fn ci_recipe_commands() -> Vec<(Vec<String>, Vec<String>)> {
    let text = fs::read_to_string(root().join("docs/ci.md")).unwrap();
    let yaml = text
        .split("```yaml\n")
        .nth(1)
        .and_then(|rest| rest.split("\n```").next())
        .expect("docs/ci.md has a ```yaml block");
    let mut commands = Vec::new();
    for line in yaml.lines() {
        let line = line.trim_start();
        if line.starts_with('#') || line.starts_with("- name:") || line.starts_with("name:") {
            continue;
        }
        // each command runs to the end of the line or a shell operator
        for part in line.split(['|', ';', '&', '<', '>']) {
            let words: Vec<&str> = part.split_whitespace().collect();
            let Some(at) = words.iter().position(|w| *w == "pgphase") else {
                continue;
            };
            // `--git … pgphase` installs the crate named pgphase: not a command
            if at > 0 && words[..at].contains(&"install") {
                continue;
            }
            let mut sub = Vec::new();
            let mut flags = Vec::new();
            for word in &words[at + 1..] {
                if let Some(flag) = word.strip_prefix("--") {
                    flags.push(format!("--{}", flag.split('=').next().unwrap()));
                } else if flags.is_empty()
                    && word.chars().all(|c| c.is_ascii_lowercase() || c == '-')
                {
                    sub.push(word.to_string());
                }
            }
            commands.push((sub, flags));
        }
    }
    commands
}

#[test]
fn ci_recipe_uses_only_existing_commands_and_flags() {
    let commands = ci_recipe_commands();
    let used: BTreeSet<String> = commands.iter().map(|(sub, _)| sub.join(" ")).collect();
    for expected in ["lint", "plan", "checklist", "check"] {
        assert!(
            used.contains(expected),
            "the recipe runs `pgphase {expected}`: {used:?}"
        );
    }
    let help = |sub: &[String]| -> String {
        let out = std::process::Command::new(env!("CARGO_BIN_EXE_pgphase"))
            .args(sub)
            .arg("--help")
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "`pgphase {} --help` fails: the recipe names a subcommand that does not exist",
            sub.join(" ")
        );
        String::from_utf8(out.stdout).unwrap()
    };
    for (sub, flags) in &commands {
        let text = help(sub);
        for flag in flags {
            let exists = text.contains(&format!("{flag} ")) || text.contains(&format!("{flag}\n"));
            assert!(
                exists,
                "docs/ci.md runs `pgphase {} {flag}`, which `pgphase {} --help` does not list",
                sub.join(" "),
                sub.join(" ")
            );
        }
    }
}
