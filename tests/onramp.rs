//! The on-ramp: `convert`, `schema` (and the modelines of every plan file), `completions`,
//! `man`.
//!
//! `pgphase convert`: the SQL that Rails, Django, Prisma, Alembic and Flyway generate
//! (tests/fixtures/convert/, written from each framework's documented output) becomes
//! plans the loader accepts, with the expected change kinds; what no kind does is left
//! to an `sql` change and listed as needing a human. Round trip on the command line:
//! `convert -o FILE` then `plan FILE` (offline).
//!
//! Regenerate the per-statement snapshots after an intended change with
//! `INSTA_UPDATE=always cargo test --profile test-release --test onramp` and read the diff.

mod common;

use common::cli::{pgphase, run};
use pgphase::convert::{convert, Conversion};

fn fixture(file: &str) -> Conversion {
    let path = format!("tests/fixtures/convert/{file}");
    let text = std::fs::read_to_string(format!("{}/{path}", env!("CARGO_MANIFEST_DIR"))).unwrap();
    convert(&[(path.clone(), text)], &pgphase::convert::name_from(&path))
}

/// The kinds of every plan, as the plan loader reads them.
fn kinds(c: &Conversion) -> Vec<Vec<&'static str>> {
    c.plans
        .iter()
        .map(|p| {
            let plan = pgphase::plan::parse(&p.yaml, "converted.yaml", "x").unwrap_or_else(|e| {
                panic!("the loader refuses the converted plan: {e}\n{}", p.yaml)
            });
            plan.changes.iter().map(|c| c.value.kind()).collect()
        })
        .collect()
}

#[test]
fn rails() {
    let c = fixture("rails.sql");
    assert_eq!(
        kinds(&c),
        vec![vec![
            "rename_column",
            "change_type",
            "change_type",
            "add_column",
            "set_not_null",
            "add_index",
            "add_index",
            "add_foreign_key",
            "drop_column",
            "drop_index",
            "rename_table",
        ]],
        "{}",
        c.plans[0].yaml
    );
    // the UPDATE … WHERE email IS NULL became the backfill
    assert!(
        c.plans[0]
            .yaml
            .contains("      column: email\n      backfill: \"''\"\n"),
        "{}",
        c.plans[0].yaml
    );
    insta::assert_snapshot!("rails", pgphase::report::convert::summary_text(&c, &[]));
}

#[test]
fn django() {
    let c = fixture("django.sql");
    // ADD COLUMN … DEFAULT then DROP DEFAULT of one column cannot share a plan: the
    // second plan depends on the first
    assert_eq!(
        kinds(&c),
        vec![
            vec![
                "rename_column",
                "change_type",
                "change_type",
                "set_not_null",
                "add_column",
            ],
            vec!["drop_default", "add_index", "add_index", "sql"]
        ],
        "{}",
        c.plans[0].yaml
    );
    assert!(
        c.plans[1].yaml.contains("depends_on: [django]"),
        "{}",
        c.plans[1].yaml
    );
    insta::assert_snapshot!("django", pgphase::report::convert::summary_text(&c, &[]));
}

#[test]
fn prisma() {
    let c = fixture("prisma.sql");
    insta::assert_snapshot!("prisma", pgphase::report::convert::summary_text(&c, &[]));
    let k = kinds(&c);
    assert!(k.iter().flatten().any(|k| *k == "create_table"), "{k:?}");
}

#[test]
fn alembic() {
    let c = fixture("alembic.sql");
    insta::assert_snapshot!("alembic", pgphase::report::convert::summary_text(&c, &[]));
    let k = kinds(&c);
    assert!(k.iter().flatten().any(|k| *k == "rename_column"), "{k:?}");
}

#[test]
fn flyway() {
    let c = fixture("V2__orders.sql");
    insta::assert_snapshot!("flyway", pgphase::report::convert::summary_text(&c, &[]));
    let k = kinds(&c);
    assert!(k.iter().flatten().any(|k| *k == "create_table"), "{k:?}");
}

#[tokio::test]
async fn convert_then_plan_on_the_command_line() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("library.yaml");
    let r = run(pgphase(&[
        "convert",
        "tests/fixtures/convert/django.sql",
        "--name",
        "library-0002",
        "-o",
        out.to_str().unwrap(),
    ]))
    .await;
    r.expect(0);
    assert!(r.stderr.contains("→ rename_column"), "{r:#?}");
    assert!(
        r.stderr.contains("wrote plan `library-0002` (5 changes)"),
        "{r:#?}"
    );
    assert!(
        r.stderr.contains("wrote plan `library-0002-2` (4 changes)"),
        "{r:#?}"
    );
    assert!(r.stdout.is_empty(), "{r:#?}");
    let second = dir.path().join("library-2.yaml");
    for (file, name) in [(&out, "library-0002"), (&second, "library-0002-2")] {
        let p = run(pgphase(&["plan", file.to_str().unwrap()])).await;
        p.expect(0);
        assert!(p.stdout.starts_with(&format!("plan {name}\n")), "{p:#?}");
    }
    let second_text = std::fs::read_to_string(&second).unwrap();
    assert!(
        second_text.contains("depends_on: [library-0002]"),
        "{second_text}"
    );

    // to stdout, and as JSON
    let r = run(pgphase(&["convert", "tests/fixtures/convert/alembic.sql"])).await;
    r.expect(0);
    assert!(r.stdout.contains("name: alembic\n"), "{r:#?}");
    assert!(r.stderr.contains("needs a human:"), "{r:#?}");
    let r = run(pgphase(&[
        "--output",
        "json",
        "convert",
        "tests/fixtures/convert/alembic.sql",
    ]))
    .await;
    let j = r.expect(0).json();
    assert_eq!(j["plans"][0]["name"], "alembic");
    assert!(j["statements"].as_array().unwrap().len() > 5, "{j}");
}

#[test]
fn unmapped_statements_become_sql_changes_with_the_reason() {
    let c = convert(
        &[(
            "m.sql".into(),
            "CREATE FUNCTION f() RETURNS int LANGUAGE sql AS $$ SELECT 1 $$;\nALTER TABLE t ALTER COLUMN c TYPE bigint;\nVACUUM FULL t;\n".into(),
        )],
        "m",
    );
    let yaml = &c.plans[0].yaml;
    assert!(
        yaml.contains("# not converted: no pgphase change kind does this statement"),
        "{yaml}"
    );
    assert!(yaml.contains("contract: \"CREATE FUNCTION"), "{yaml}");
    assert_eq!(kinds(&c), vec![vec!["sql", "change_type"]]);
    assert!(
        c.needs_human
            .iter()
            .any(|h| h.starts_with("m.sql:1: left to an `sql` change")),
        "{:#?}",
        c.needs_human
    );
    assert!(
        c.needs_human
            .iter()
            .any(|h| h.starts_with("m.sql:2: change_type of `t.c`")),
        "{:#?}",
        c.needs_human
    );
    assert!(
        c.needs_human
            .iter()
            .any(|h| h.starts_with("m.sql:3: not in the plan")),
        "{:#?}",
        c.needs_human
    );
}

fn repo() -> std::path::PathBuf {
    std::path::PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// Every plan file of the repository: plans/ and examples/, recursively.
fn plan_files() -> Vec<std::path::PathBuf> {
    fn walk(dir: &std::path::Path, out: &mut Vec<std::path::PathBuf>) {
        for e in std::fs::read_dir(dir).unwrap() {
            let p = e.unwrap().path();
            if p.is_dir() {
                walk(&p, out);
            } else if p.extension().is_some_and(|e| e == "yaml" || e == "yml") {
                out.push(p);
            }
        }
    }
    let mut out = Vec::new();
    for d in ["plans", "examples"] {
        walk(&repo().join(d), &mut out);
    }
    out.sort();
    out
}

fn schema_validator() -> jsonschema::Validator {
    jsonschema::validator_for(&pgphase::plan::json_schema()).expect("a valid JSON Schema")
}

/// The YAML as JSON, for the validator.
fn yaml_as_json(text: &str) -> serde_json::Value {
    serde_saphyr::from_str(text).unwrap()
}

#[test]
fn the_committed_schema_is_what_pgphase_schema_prints() {
    let committed = std::fs::read_to_string(repo().join("schema/plan.schema.json")).unwrap();
    let out = std::process::Command::new(common::pgphase_bin())
        .arg("schema")
        .output()
        .unwrap();
    assert!(out.status.success());
    assert_eq!(
        String::from_utf8(out.stdout).unwrap(),
        committed,
        "schema/plan.schema.json is stale: `cargo run --profile test-release -- schema > schema/plan.schema.json`"
    );
}

#[test]
fn every_plan_file_names_the_schema_and_validates_against_it() {
    let v = schema_validator();
    let files = plan_files();
    assert!(files.len() >= 20, "{files:?}");
    for f in files {
        let text = std::fs::read_to_string(&f).unwrap();
        let rel = f.strip_prefix(repo()).unwrap();
        let up = "../".repeat(rel.components().count() - 1);
        let modeline = format!("# yaml-language-server: $schema={up}schema/plan.schema.json\n");
        assert!(
            text.starts_with(&modeline),
            "{} does not start with `{}`",
            rel.display(),
            modeline.trim()
        );
        let errors: Vec<String> = v
            .iter_errors(&yaml_as_json(&text))
            .map(|e| format!("{} at {}", e, e.instance_path))
            .collect();
        assert!(errors.is_empty(), "{}: {errors:#?}", rel.display());
    }
}

#[test]
fn the_schema_refuses_what_the_loader_refuses() {
    let v = schema_validator();
    for (yaml, why) in [
        (
            "changes:\n  - rename_colum: { table: t, from: a, to: b }\n",
            "unknown kind",
        ),
        (
            "changes:\n  - rename_column: { table: t, form: a, to: b }\n",
            "unknown field",
        ),
        (
            "changes:\n  - rename_column: { table: t, from: a }\n",
            "missing field",
        ),
        (
            "settings: { lock_timeot: 1s }\nchanges: []\n",
            "unknown setting",
        ),
    ] {
        assert!(!v.is_valid(&yaml_as_json(yaml)), "{why}: {yaml}");
        assert!(pgphase::plan::parse(yaml, "x.yaml", "x").is_err(), "{why}");
    }
    // and the converted plans are valid
    for f in [
        "rails.sql",
        "django.sql",
        "prisma.sql",
        "alembic.sql",
        "V2__orders.sql",
    ] {
        for p in fixture(f).plans {
            let errors: Vec<String> = v
                .iter_errors(&yaml_as_json(&p.yaml))
                .map(|e| e.to_string())
                .collect();
            assert!(errors.is_empty(), "{f}: {errors:#?}\n{}", p.yaml);
        }
    }
}

#[test]
fn completions_and_man_page_generate() {
    let run = |args: &[&str]| {
        let out = std::process::Command::new(common::pgphase_bin())
            .args(args)
            .output()
            .unwrap();
        assert!(out.status.success(), "{args:?}: {out:?}");
        String::from_utf8(out.stdout).unwrap()
    };
    for shell in ["bash", "zsh", "fish", "powershell"] {
        let script = run(&["completions", shell]);
        for sub in ["convert", "checklist", "check-drain", "advance"] {
            assert!(script.contains(sub), "{shell} completions lack `{sub}`");
        }
    }
    let man = run(&["man"]);
    assert!(
        man.starts_with(".ie") || man.contains(".TH pgphase"),
        "{}",
        &man[..200.min(man.len())]
    );
    for sub in ["convert", "checklist", "lint", "schema"] {
        assert!(man.contains(sub), "the man page lacks `{sub}`");
    }
}
