//! The workspace fixture's old path: everything is in `support/workspace.rs` now. Kept so
//! test files that import `crate::fixture::…` (written on other branches) still compile;
//! new files import `crate::support::workspace`.

#[allow(unused_imports)]
pub use crate::support::workspace::*;
