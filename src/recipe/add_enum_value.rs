//! `add_enum_value`: expand adds the value in its own transaction (`ALTER TYPE … ADD
//! VALUE IF NOT EXISTS`, EXCLUSIVE on the type only, no table lock; PostgreSQL 12+ allows
//! it in a transaction, and the value is usable once that commits). GATE: every instance
//! of the application accepts the value when reading. Then switch_reads checks the value
//! is in place, and writers may use it once the plan completed.
//!
//! PostgreSQL has no `ALTER TYPE … DROP VALUE`: the undo leaves the value where it is
//! (nothing uses it before the gate, and a re-run of the plan finds it in place).

use super::kind::{ChangeKind, Context};
use super::Change;
use super::{Knowledge, Precondition};
use crate::catalog::Catalog;
use crate::phase::PhaseKind;
use crate::plan::{At, Pos};
use crate::program::{Action, Contribution, LockLevel, RecipeOutput, Step};
use crate::sql::MAX_IDENT_BYTES;
use crate::sql::{quote_literal, QualifiedName};

/// `add_enum_value: { type, value, before | after }`
#[derive(Clone, Debug, serde::Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct AddEnumValue {
    /// The enum type, `type` or `schema.type`.
    #[serde(rename = "type")]
    pub type_name: At<String>,
    pub value: At<String>,
    /// The existing value the new one sorts before (exclusive with `after`).
    pub before: Option<At<String>>,
    /// The existing value the new one sorts after; neither: it sorts last.
    pub after: Option<At<String>>,
}

impl AddEnumValue {
    pub fn type_qname(&self) -> QualifiedName {
        QualifiedName::parse(&self.type_name).expect("validated at load")
    }
}

/// An enum label: 1 to 63 bytes (NAMEDATALEN - 1).
fn check_enum_label(label: &str) -> Result<(), String> {
    if label.is_empty() {
        return Err("an enum value cannot be empty".into());
    }
    if label.len() > MAX_IDENT_BYTES {
        return Err(format!(
            "`{label}` is {} bytes; PostgreSQL enum values are at most {MAX_IDENT_BYTES} bytes",
            label.len()
        ));
    }
    if label.chars().any(char::is_control) {
        return Err(format!(
            "`{}` contains a control character; write the value without one",
            label.escape_debug()
        ));
    }
    Ok(())
}

impl ChangeKind for AddEnumValue {
    fn expand(&self, cx: &Context<'_>) -> Result<RecipeOutput, Vec<Precondition>> {
        let same_type: Vec<&str> = cx
            .changes
            .iter()
            .filter_map(|c| match &c.value {
                Change::AddEnumValue(o) if o.type_qname() == self.type_qname() => {
                    Some(o.value.value.as_str())
                }
                _ => None,
            })
            .collect();
        add_enum_value(self, &same_type, cx.knowledge)
    }

    fn validate(&self, _pos: Pos) -> Result<(), (Pos, String)> {
        let err = |p: Pos, m: String| (p, m);
        let ev = self;
        QualifiedName::parse(&ev.type_name).map_err(|m| err(ev.type_name.pos, m))?;
        check_enum_label(&ev.value).map_err(|m| err(ev.value.pos, m))?;
        if let (Some(_), Some(after)) = (&ev.before, &ev.after) {
            return Err(err(
                after.pos,
                "give either `before` or `after`, not both".into(),
            ));
        }
        if let Some(n) = ev.before.as_ref().or(ev.after.as_ref()) {
            check_enum_label(n).map_err(|m| err(n.pos, m))?;
            if n.value == ev.value.value {
                return Err(err(
                            n.pos,
                            format!(
                                "the new value `{}` cannot be placed next to itself; name an existing value",
                                n.value
                            ),
                        ));
            }
        }
        Ok(())
    }

    fn types(&self) -> Vec<QualifiedName> {
        let ev = self;
        vec![ev.type_qname()]
    }

    fn apply(&self, cat: &mut Catalog) {
        let ev = self;
        plan_value(cat, ev);
    }

    fn validate_in_plan(&self, i: usize, changes: &[At<Change>]) -> Result<(), (Pos, String)> {
        for other in &changes[..i] {
            if let Change::AddEnumValue(o) = &other.value {
                if o.type_qname() == self.type_qname() && o.value.value == self.value.value {
                    return Err((
                        self.value.pos,
                        format!(
                            "value `{}` of `{}` is already added by the change at line {}",
                            self.value.value, self.type_name.value, other.pos.line
                        ),
                    ));
                }
            }
        }
        Ok(())
    }
}

/// Where the value goes: before or after a neighbour, or last.
enum Place<'a> {
    Before(&'a str),
    After(&'a str),
    Last,
}

fn place(ev: &AddEnumValue) -> Place<'_> {
    match (&ev.before, &ev.after) {
        (Some(b), _) => Place::Before(&b.value),
        (None, Some(a)) => Place::After(&a.value),
        (None, None) => Place::Last,
    }
}

/// `planned`: the values the plan adds to the same type (a value is in place when only
/// those stand between it and its neighbour, as after a rollback and a new start).
pub(super) fn add_enum_value(
    ev: &AddEnumValue,
    planned: &[&str],
    knowledge: Knowledge<'_>,
) -> Result<RecipeOutput, Vec<Precondition>> {
    let ty = ev.type_qname();
    let short = ty.display_short();
    let value = &ev.value.value;
    let lit = quote_literal(value);
    let mut notes = Vec::new();
    if let Knowledge::Live(cat) = knowledge {
        let refuse = |pos, message| Err(vec![Precondition { pos, message }]);
        let Some(t) = cat.type_info(&ty) else {
            return refuse(
                ev.type_name.pos,
                format!(
                    "type `{}` does not exist in the database (check the name and schema; names are case-sensitive)",
                    ev.type_name.value
                ),
            );
        };
        if t.kind != "e" {
            return refuse(
                ev.type_name.pos,
                format!(
                    "`{short}` is {}, not an enum: add_enum_value adds values to enum types",
                    t.kind_text()
                ),
            );
        }
        let labels = &t.labels;
        let listed = || {
            labels
                .iter()
                .map(|l| format!("'{l}'"))
                .collect::<Vec<_>>()
                .join(", ")
        };
        if let Place::Before(n) | Place::After(n) = place(ev) {
            if !labels.iter().any(|l| l == n) {
                let pos = ev
                    .before
                    .as_ref()
                    .or(ev.after.as_ref())
                    .expect("placed")
                    .pos;
                return refuse(
                    pos,
                    format!("`{short}` has no value '{n}' to place '{value}' next to; its values are {}", listed()),
                );
            }
        }
        if let Some(i) = labels.iter().position(|l| l == value) {
            let ours = |ls: &[String]| ls.iter().all(|l| planned.contains(&l.as_str()));
            let at = |n: &str| labels.iter().position(|l| l == n).expect("checked above");
            let in_place = match place(ev) {
                Place::Before(n) => i < at(n) && ours(&labels[i + 1..at(n)]),
                Place::After(n) => at(n) < i && ours(&labels[at(n) + 1..i]),
                Place::Last => ours(&labels[i + 1..]),
            };
            if !in_place {
                return refuse(
                    ev.value.pos,
                    format!(
                        "`{short}` already has the value '{value}', elsewhere than the plan puts it (its values are {}); PostgreSQL cannot move or drop an enum value: change `before`/`after` to match, or drop this change",
                        listed()
                    ),
                );
            }
            notes.push(format!(
                "'{value}' is already in `{short}` where the plan puts it: adding it is skipped"
            ));
        }
    }
    let position = match place(ev) {
        Place::Before(n) => format!(" BEFORE {}", quote_literal(n)),
        Place::After(n) => format!(" AFTER {}", quote_literal(n)),
        Place::Last => String::new(),
    };
    let exists = format!(
        "EXISTS (SELECT 1 FROM pg_enum WHERE enumtypid = {}::regtype AND enumlabel = {lit})",
        quote_literal(&ty.to_string())
    );
    notes.push(format!(
        "rollback leaves '{value}' in `{short}`: PostgreSQL has no ALTER TYPE … DROP VALUE; nothing uses it before the gate, and running the plan again finds it in place"
    ));
    let note_step = |description: String, sql: String| Step {
        description,
        action: Action::Sql {
            sql,
            // nothing to run: the step says what the undo leaves
            skip_if: Some("SELECT true".into()),
        },
        lock: LockLevel::AccessShare,
        table: Some(ty.clone()),
        changes_row_type: false,
    };
    let mut out = RecipeOutput {
        notes,
        ..Default::default()
    };
    out.phases.push((
        PhaseKind::Expand,
        Contribution {
            steps: vec![Step::sql(
                format!(
                    "add '{value}' to {short} in its own transaction (EXCLUSIVE on the type only, no table lock; usable once committed)"
                ),
                &ty,
                LockLevel::Exclusive,
                format!("ALTER TYPE {ty} ADD VALUE IF NOT EXISTS {lit}{position};"),
            )
            .skip_if(format!("SELECT {exists}"))],
            rollback: vec![note_step(
                format!(
                    "leave '{value}' in {short}: PostgreSQL cannot drop an enum value (nothing uses it yet)"
                ),
                format!(
                    "-- nothing to run: PostgreSQL has no ALTER TYPE … DROP VALUE; {lit} stays in {ty}, unused"
                ),
            )],
            gate_after: Some(format!(
                "deploy the application version whose every instance accepts '{value}' of {short} when reading (and drain the old version); it must not write '{value}' yet"
            )),
        },
    ));
    out.phases.push((
        PhaseKind::SwitchReads,
        Contribution {
            steps: vec![Step {
                description: format!(
                    "check '{value}' is committed in {short}: from here on writers may use it"
                ),
                action: Action::Verify {
                    sql: format!("SELECT count(*) FROM (SELECT 1) AS one WHERE NOT {exists};"),
                    failure: format!("the value '{value}' is missing from {short}"),
                    scan: None,
                },
                lock: LockLevel::AccessShare,
                table: Some(ty.clone()),
                changes_row_type: false,
            }],
            rollback: vec![note_step(
                "nothing to undo: the check changed nothing".into(),
                "-- nothing to run: the check changed nothing".into(),
            )],
            gate_after: Some(format!("the application may write '{value}' of {short}")),
        },
    ));
    Ok(out)
}

/// Records the value in the (planned) catalog, so a later change of the same plan may
/// place its value next to it.
pub(super) fn plan_value(cat: &mut Catalog, ev: &AddEnumValue) {
    let ty: QualifiedName = ev.type_qname();
    let Some(t) = cat.types.get_mut(&ty.to_string()) else {
        return;
    };
    let value = ev.value.value.clone();
    if t.labels.contains(&value) {
        return;
    }
    let at = match place(ev) {
        Place::Before(n) => t.labels.iter().position(|l| l == n),
        Place::After(n) => t.labels.iter().position(|l| l == n).map(|i| i + 1),
        Place::Last => None,
    };
    match at {
        Some(i) => t.labels.insert(i, value),
        None => t.labels.push(value),
    }
}
