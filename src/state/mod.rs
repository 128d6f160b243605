//! The plan state machine (pure) and its persistence in the `pgphase` schema.

pub mod checkpoint;
pub mod controls;
pub mod guard;
pub mod machine;
pub mod store;
