//! The `sluice` binary's library: command-line interface, the components this build
//! can run, and the benchmarks. `main.rs` only calls [`cli::main`].
#![forbid(unsafe_code)]

pub mod analyst;
pub mod backup;
pub mod bench;
pub mod cli;
pub mod components;
pub mod load;
pub mod preflight;
pub mod status;
pub mod supervisor;
pub mod verify;
