//! Every change kind, one line each: `yaml_key => Variant(model type)`. The line makes
//! the kind a variant of [`Change`] (its YAML key) and dispatches to its [`ChangeKind`].

use super::kind::ChangeKind;

macro_rules! kinds {
    ($($key:ident => $variant:ident($ty:ty),)*) => {
        /// One change of a plan. Externally tagged: `- rename_column: { … }`.
        #[derive(Clone, Debug, serde::Deserialize)]
        #[serde(rename_all = "snake_case", deny_unknown_fields)]
        pub enum Change {
            $($variant(Box<$ty>),)*
        }

        impl Change {
            /// The YAML key.
            pub fn kind(&self) -> &'static str {
                match self {
                    $(Change::$variant(_) => stringify!($key),)*
                }
            }

            pub fn as_kind(&self) -> &dyn ChangeKind {
                match self {
                    $(Change::$variant(c) => &**c,)*
                }
            }
        }
    };
}

kinds! {
    rename_column => RenameColumn(super::rename_column::RenameColumn),
    add_column => AddColumn(super::add_column::AddColumn),
    drop_column => DropColumn(super::drop_column::DropColumn),
    add_index => AddIndex(super::add_index::AddIndex),
    drop_index => DropIndex(super::drop_index::DropIndex),
    set_not_null => SetNotNull(super::set_not_null::SetNotNull),
    add_check => AddCheck(super::add_check::AddCheck),
    add_foreign_key => AddForeignKey(super::add_foreign_key::AddForeignKey),
    drop_not_null => DropNotNull(super::drop_not_null::DropNotNull),
    set_default => SetDefault(super::set_default::SetDefault),
    drop_default => DropDefault(super::drop_default::DropDefault),
    add_unique => AddUnique(super::add_unique::AddUnique),
    create_table => CreateTable(super::create_table::CreateTable),
    drop_table => DropTable(super::drop_table::DropTable),
    drop_constraint => DropConstraint(super::drop_constraint::DropConstraint),
    sql => Sql(super::sql::SqlChange),
    rename_table => RenameTable(super::rename_table::RenameTable),
    add_enum_value => AddEnumValue(super::add_enum_value::AddEnumValue),
    change_type => ChangeType(super::change_type::ChangeType),
    split_column => SplitColumn(super::split_column::SplitColumn),
    merge_columns => MergeColumns(super::merge_columns::MergeColumns),
}
