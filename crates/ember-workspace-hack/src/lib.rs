//! Nothing but dependencies: see Cargo.toml. Cargo unifies features per build, so this crate
//! makes a build of ember's Python extension alone ask for the same features of shared crates
//! as a build of the whole workspace, and reuse its artifacts.
