//! Errors: a stable code plus a human message (PySDK's wording where PySDK has one).
use std::fmt;

/// Stable error codes; mirrored as `dg_code` in the C header.
#[repr(C)]
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Code {
    Ok = 0,
    InvalidArgument = 1,
    NotFound = 2,
    Unsupported = 3,
    Io = 4,
    Network = 5,
    Auth = 6,
    Protocol = 7,
    BadModel = 8,
    Inference = 9,
    Timeout = 10,
    Cancelled = 11,
    Internal = 12,
}

impl Code {
    /// Every code, in value order.
    pub const ALL: [Code; 13] = [
        Code::Ok,
        Code::InvalidArgument,
        Code::NotFound,
        Code::Unsupported,
        Code::Io,
        Code::Network,
        Code::Auth,
        Code::Protocol,
        Code::BadModel,
        Code::Inference,
        Code::Timeout,
        Code::Cancelled,
        Code::Internal,
    ];

    /// The C enumerator's name without its `DG_` prefix (`NOT_FOUND`).
    pub fn name(self) -> &'static str {
        match self {
            Code::Ok => "OK",
            Code::InvalidArgument => "INVALID_ARGUMENT",
            Code::NotFound => "NOT_FOUND",
            Code::Unsupported => "UNSUPPORTED",
            Code::Io => "IO",
            Code::Network => "NETWORK",
            Code::Auth => "AUTH",
            Code::Protocol => "PROTOCOL",
            Code::BadModel => "BAD_MODEL",
            Code::Inference => "INFERENCE",
            Code::Timeout => "TIMEOUT",
            Code::Cancelled => "CANCELLED",
            Code::Internal => "INTERNAL",
        }
    }
}

/// Why an operation failed, finer than [`Code`], for callers that must tell failures apart:
/// code branches on this, never on message text.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
#[non_exhaustive]
pub enum Reason {
    /// No finer reason than the code.
    #[default]
    Unspecified,
    /// No runtime/device combination of this system can run the model (PySDK's
    /// "does not have any supported runtime/device combinations").
    NoSupportedDevice,
}

#[derive(Debug, Clone)]
pub struct Error {
    pub code: Code,
    pub message: String,
    pub reason: Reason,
}

pub type Result<T> = std::result::Result<T, Error>;

impl Error {
    pub fn new(code: Code, message: impl Into<String>) -> Self {
        Error { code, message: message.into(), reason: Reason::Unspecified }
    }
    pub fn invalid(message: impl Into<String>) -> Self {
        Self::new(Code::InvalidArgument, message)
    }
    pub fn not_found(message: impl Into<String>) -> Self {
        Self::new(Code::NotFound, message)
    }
    pub fn unsupported(message: impl Into<String>) -> Self {
        Self::new(Code::Unsupported, message)
    }
    pub fn io(message: impl Into<String>) -> Self {
        Self::new(Code::Io, message)
    }
    pub fn bad_model(message: impl Into<String>) -> Self {
        Self::new(Code::BadModel, message)
    }
    pub fn inference(message: impl Into<String>) -> Self {
        Self::new(Code::Inference, message)
    }
    pub fn internal(message: impl Into<String>) -> Self {
        Self::new(Code::Internal, message)
    }
    /// The same error with a typed reason.
    pub fn with_reason(mut self, reason: Reason) -> Self {
        self.reason = reason;
        self
    }
    /// Prefix the message with context, keeping the code.
    pub fn context(mut self, ctx: impl fmt::Display) -> Self {
        self.message = format!("{ctx}: {}", self.message);
        self
    }
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.message)
    }
}

impl std::error::Error for Error {}
