// Every change kind, one line each: `yaml_key => Variant(ModelType)`. The line declares
// the kind's module (src/recipe/<yaml_key>.rs), makes the kind a variant of `Change`
// under its YAML key, and dispatches to its `ChangeKind` implementation. Included into
// src/recipe/mod.rs.

macro_rules! kinds {
    ($($key:ident => $variant:ident($ty:ident),)*) => {
        $(mod $key;)*

        /// One change of a plan. Externally tagged: `- rename_column: { … }`.
        #[derive(Clone, Debug, serde::Deserialize, schemars::JsonSchema)]
        #[serde(rename_all = "snake_case", deny_unknown_fields)]
        pub enum Change {
            $($variant(Box<$key::$ty>),)*
        }

        impl Change {
            /// The YAML key.
            pub fn kind(&self) -> &'static str {
                match self {
                    $(Change::$variant(_) => stringify!($key),)*
                }
            }

            /// The kind's behaviour.
            pub fn as_kind(&self) -> &dyn ChangeKind {
                match self {
                    $(Change::$variant(c) => &**c,)*
                }
            }
        }
    };
}

kinds! {
    rename_column => RenameColumn(RenameColumn),
    add_column => AddColumn(AddColumn),
    drop_column => DropColumn(DropColumn),
    add_index => AddIndex(AddIndex),
    drop_index => DropIndex(DropIndex),
    set_not_null => SetNotNull(SetNotNull),
    add_check => AddCheck(AddCheck),
    add_foreign_key => AddForeignKey(AddForeignKey),
    drop_not_null => DropNotNull(DropNotNull),
    set_default => SetDefault(SetDefault),
    drop_default => DropDefault(DropDefault),
    add_unique => AddUnique(AddUnique),
    create_table => CreateTable(CreateTable),
    drop_table => DropTable(DropTable),
    drop_constraint => DropConstraint(DropConstraint),
    sql => Sql(SqlChange),
    rename_table => RenameTable(RenameTable),
    add_enum_value => AddEnumValue(AddEnumValue),
    change_type => ChangeType(ChangeType),
    split_column => SplitColumn(SplitColumn),
    merge_columns => MergeColumns(MergeColumns),
    add_comment => AddComment(AddComment),
}
