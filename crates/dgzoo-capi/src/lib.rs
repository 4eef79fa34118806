//! libdgzoo: the C ABI over the dgzoo core (include/dgzoo.h is generated from this crate by
//! cbindgen). Nothing here is Rust API: the crate builds only `libdgzoo.so` and `libdgzoo.a`.
#![deny(unsafe_op_in_unsafe_fn)]

pub mod ffi;

pub use ffi::*;

// The shared test helpers name the core `dgzoo`, as every other crate does.
#[cfg(test)]
extern crate dgzoo_core as dgzoo;
#[cfg(test)]
mod tests;
