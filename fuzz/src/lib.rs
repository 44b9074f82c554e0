//! The fuzz targets' checks, as a library so that every target (in
//! fuzz_targets/) is one line.

pub mod checks;
