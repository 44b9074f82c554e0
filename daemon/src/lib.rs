//! The two programs' code, kept out of their `main` so it can be tested:
//! `netlabd` (the daemon) and `netlab` (the client and load generator).

pub mod cli;
pub mod manual;
pub mod netlabd;
