//! pgphase: zero-downtime PostgreSQL schema changes.
//!
//! A YAML plan ([`plan`]) is expanded by pure recipes ([`recipe`]) into a [`program`]
//! of gated expand/contract phases; the state machine ([`state`]) lives in the target
//! database; the executor ([`exec`]) runs steps safely under live traffic; [`report`]
//! is the only part that prints. [`run`] ties them into the operator commands.
//! docs/architecture.md describes the modules and their one-way dependencies.

pub mod catalog;
pub mod catalog_guard;
pub mod cli;
pub mod conn;
pub mod convert;
pub mod dashboard;
pub mod demo;
pub mod error;
pub mod evidence;
pub mod exec;
pub mod fleet;
pub mod health;
pub mod interrupt;
pub mod lint;
pub mod outcome;
// Demo and test machinery (a throwaway PostgreSQL server and PgBouncer, application
// workloads): used by `pgphase demo` and `lint --trace`, public only with the `testkit`
// feature, which the tests and benchmarks enable (a dev-dependency on this crate).
#[cfg(feature = "testkit")]
pub mod pgserver;
#[cfg(not(feature = "testkit"))]
#[allow(dead_code)]
mod pgserver;
pub mod phase;
pub mod plan;
pub mod pooler;
pub mod program;
pub mod recipe;
pub mod report;
pub mod run;
pub mod sql;
pub mod state;
#[cfg(feature = "testkit")]
pub mod workload;
#[cfg(not(feature = "testkit"))]
#[allow(dead_code)]
mod workload;
