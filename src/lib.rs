//! pgphase: zero-downtime PostgreSQL schema changes.
//!
//! A YAML plan ([`plan`]) is expanded by pure recipes ([`recipe`]) into a [`program`]
//! of gated expand/contract phases; the state machine ([`state`]) lives in the target
//! database; the executor ([`exec`]) runs steps safely under live traffic; [`report`]
//! is the only part that prints. [`run`] ties them into the operator commands.

pub mod catalog;
pub mod catalog_guard;
pub mod cli;
pub mod conn;
pub mod demo;
pub mod error;
pub mod evidence;
pub mod exec;
pub mod interrupt;
pub mod lint;
pub mod pgserver;
pub mod plan;
pub mod pooler;
pub mod program;
pub mod recipe;
pub mod report;
pub mod run;
pub mod runner;
pub mod sql;
pub mod state;
pub mod workload;
