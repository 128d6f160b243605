//! Machinery the change kinds share: sync triggers and derived columns, carry-over of
//! indexes and constraints, NOT VALID → VALIDATE, index builds, checks around a column,
//! and what a change touches and leaves in the catalog. Kinds call it; they never call
//! each other.

pub(super) mod around;
pub(super) mod carry;
pub(super) mod carry_over;
pub(super) mod column;
pub(super) mod common;
pub(super) mod derived;
pub(super) mod derived_columns;
pub mod footprint;
pub(super) mod planned;
