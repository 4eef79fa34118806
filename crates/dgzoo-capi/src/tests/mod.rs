//! The C ABI driven from Rust against real servers. These are unit tests of the capi crate
//! because it builds no rlib an integration test could link; the helpers are the shared ones
//! in the repository's tests/support/.
#[path = "../../../../tests/support/aiserver_common.rs"]
mod aiserver_common;
#[path = "../../../../tests/support/cloud_common.rs"]
mod cloud_common;
#[path = "../../../../tests/support/ffi_common.rs"]
mod ffi_common;

mod aiserver_ffi;
mod cloud_ffi;
mod cloudinfer_ffi;
mod inputs;
mod log;
mod masks;
mod overlay;
mod time_stats;
