//! dgzoo: find, fetch and run AI models the way DeGirum PySDK does.
//!
//! This is the core: no C ABI (crates/dgzoo-capi), no servers (crates/dgzoo-server), no CLI
//! (crates/dgzoo-cli). docs/architecture.md gives the layer order.
//!
//! Module map (one concern each):
//! - [`error`]: error codes and messages shared by Rust and C callers
//! - [`params`]: model JSON parameters (model-json.md)
//! - [`zoo`]: connect/classification, zoo accessors, filters
//! - [`cloud`]: cloud zoo HTTP client and token lookup
//! - [`cache`]: the cloud model cache and safe model archives
//! - [`model`]: loaded models and their properties
//! - [`runtime`]: runtime agents (ONNX/CPU, TFLITE/CPU) loaded at run time
//! - [`image_ops`]: decoding, OpenCV-exact resize, pad/crop and coordinate converters
//! - [`preprocess`] / [`postprocess`]: PySDK's pre- and post-processing
//! - [`protocol`]: the DeGirum AI server wire format (shared by server and client)
// Every unsafe operation sits in its own `unsafe` block with its SAFETY note, in unsafe fns too.
#![deny(unsafe_op_in_unsafe_fn)]
pub mod address;
pub mod aiclient;
pub mod cache;
pub mod cloud;
pub mod error;
pub mod filter;
pub mod frame;
pub mod image_ops;
pub mod inference;
pub mod model;
pub mod msgpack;
pub mod overlay;
pub mod params;
pub mod pipeline;
pub mod postprocess;
pub mod preprocess;
pub mod protocol;
pub(crate) mod pyrepr;
pub mod remote;
pub mod runtime;
pub mod settings;
pub mod socketio;
pub mod state;
pub mod timestats;
pub mod zoo;

pub use error::{Code, Error, Result};

/// Library version string.
pub const VERSION: &str = env!("CARGO_PKG_VERSION");
