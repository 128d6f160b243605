//! `pgphase dashboard`: a read-only full-screen view of every plan of a database, the
//! live work and the application's sessions, for an operator to leave open during a
//! release. [`model`] reads a snapshot, [`view`] renders it (pure), [`app`] runs the
//! keys and the refresh loop.

pub mod activity;
pub mod app;
pub mod model;
pub mod view;

pub use app::run;
