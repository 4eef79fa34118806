//! dgzoo's servers, built on the core (`dgzoo`):
//! - [`aiserver`]: the AI server (DeGirum's asio TCP protocol and HTTP/WebSocket), wire-compatible
//!   with PySDK 1.5.0's `degirum server`;
//! - [`net`]: the shared async network stack (tokio runtime, accept loop, limiter, shutdown, health routes);
//! - [`fair_pool`]: fair admission of jobs to the bounded blocking pool, among streams;
//! - [`hub`]: a self-hosted cloud zoo (dg-zoo-server compatible) with socket.io cloud inference;
//! - [`metrics`]: `GET /metrics` (Prometheus) and the metric names the servers record.
#![deny(unsafe_op_in_unsafe_fn)]

pub mod aiserver;
pub mod fair_pool;
pub mod hub;
pub mod metrics;
pub mod net;
