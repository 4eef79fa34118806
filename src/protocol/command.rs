//! The AI-server command set, typed: every command a client may send, in its asio JSON form
//! (`{"op": ..., "VERSION": 4, ...}`), its REST route (`/v1/...` and JSON body) and, for
//! `stream`, the WebSocket's configuration message. No sockets: the server parses each
//! request into a [`Command`] ([`Command::from_asio`], [`Command::from_rest`],
//! [`Command::from_ws`]) and runs it; the client writes every request from one
//! ([`Command::to_asio`], [`Command::rest_route`] and [`Command::rest_body`], [`Command::to_ws`]).
use super::http::percent_decode;
use serde_json::{json, Value};

/// One AI-server command.
#[derive(Debug, Clone, PartialEq)]
pub enum Command {
    /// The zoo listing.
    ModelZoo,
    SystemInfo,
    /// The label dictionary of model `name`.
    LabelDictionary {
        name: String,
    },
    /// Sleep on the server (PySDK's ping), in milliseconds.
    Sleep {
        ms: f64,
    },
    /// Stop the server (local clients only).
    Shutdown,
    TraceManage {
        args: Value,
    },
    /// `rescan` / `cache_dump` (local clients only).
    ZooManage {
        args: Value,
    },
    DevCtrl {
        args: Value,
    },
    /// Open an inference stream on model `name` (asio only; HTTP streams are the WebSocket).
    Stream {
        name: String,
        config: Value,
    },
}

/// Why a request is not a command.
#[derive(Debug, Clone, PartialEq)]
pub enum CommandError {
    /// asio: the message has no `op`.
    MissingOp,
    /// asio: an op we do not know.
    UnknownOp(String),
    /// REST: no such route (404).
    NoRoute,
    /// REST: the route exists but not for this method (405).
    Method,
    /// REST: a bad argument or body (500 with PySDK's error text).
    BadArgument(String),
}

/// The asio command field carrying the admin token.
pub const ADMIN_TOKEN_FIELD: &str = "admin_token";

/// The WebSocket route of inference streams (`stream` over HTTP).
pub const WS_STREAM_PATH: &str = "/v1/stream";

/// Longest sleep honoured, in milliseconds.
pub const MAX_SLEEP_MS: f64 = 60_000.0;

impl Command {
    /// The op name (asio `op`, the reply key, the REST route's last fixed segment).
    pub fn op(&self) -> &'static str {
        match self {
            Command::ModelZoo => "modelzoo",
            Command::SystemInfo => "system_info",
            Command::LabelDictionary { .. } => "label_dictionary",
            Command::Sleep { .. } => "sleep",
            Command::Shutdown => "shutdown",
            Command::TraceManage { .. } => "trace_manage",
            Command::ZooManage { .. } => "zoo_manage",
            Command::DevCtrl { .. } => "dev_ctrl",
            Command::Stream { .. } => "stream",
        }
    }

    /// Management commands: they need the server's admin token when one is configured (asio:
    /// the command's [`ADMIN_TOKEN_FIELD`]; HTTP: `Authorization: Bearer <token>`).
    pub fn needs_admin(&self) -> bool {
        matches!(self, Command::Shutdown | Command::ZooManage { .. } | Command::TraceManage { .. } | Command::DevCtrl { .. })
    }

    /// Commands that only read (a fail-over client may send them to any server of its list).
    pub fn read_only(&self) -> bool {
        matches!(self, Command::ModelZoo | Command::SystemInfo | Command::LabelDictionary { .. } | Command::Sleep { .. })
    }

    /// Commands the server runs for loopback clients only.
    pub fn local_only(&self) -> bool {
        matches!(self, Command::Shutdown | Command::ZooManage { .. })
    }

    /// Parse an asio command message (its `VERSION` is checked by the caller).
    pub fn from_asio(msg: &Value) -> Result<Command, CommandError> {
        let op = msg.get("op").and_then(Value::as_str).ok_or(CommandError::MissingOp)?;
        let args = || msg.get("args").cloned().unwrap_or(Value::Null);
        Ok(match op {
            "modelzoo" => Command::ModelZoo,
            "system_info" => Command::SystemInfo,
            "label_dictionary" => Command::LabelDictionary { name: msg.get("name").and_then(Value::as_str).unwrap_or_default().to_string() },
            "sleep" => Command::Sleep { ms: msg.get("sleep_time_ms").and_then(Value::as_f64).unwrap_or(0.0).clamp(0.0, MAX_SLEEP_MS) },
            "shutdown" => Command::Shutdown,
            "trace_manage" => Command::TraceManage { args: args() },
            "zoo_manage" => Command::ZooManage { args: args() },
            "dev_ctrl" => Command::DevCtrl { args: args() },
            "stream" => Command::Stream {
                name: msg.get("name").and_then(Value::as_str).unwrap_or_default().to_string(),
                config: msg.get("config").cloned().unwrap_or(Value::Null),
            },
            other => return Err(CommandError::UnknownOp(other.to_string())),
        })
    }

    /// The asio command message.
    pub fn to_asio(&self) -> Value {
        let fields = match self {
            Command::LabelDictionary { name } => json!({"name": name}),
            Command::Sleep { ms } => json!({"sleep_time_ms": ms}),
            Command::TraceManage { args } | Command::ZooManage { args } | Command::DevCtrl { args } => json!({"args": args}),
            Command::Stream { name, config } => json!({"name": name, "config": config}),
            _ => json!({}),
        };
        super::command(self.op(), fields)
    }

    /// Parse a REST request: `path` without the query, `body` the request body (JSON for the
    /// POST routes that take arguments).
    pub fn from_rest(method: &str, path: &str, body: &[u8]) -> Result<Command, CommandError> {
        let seg: Vec<&str> = path.trim_start_matches('/').split('/').collect();
        let (op, methods): (&str, &[&str]) = match seg.as_slice() {
            ["v1", "modelzoo"] => ("modelzoo", &["GET"]),
            ["v1", "system_info"] => ("system_info", &["GET"]),
            ["v1", "label_dictionary", _] => ("label_dictionary", &["GET"]),
            ["v1", "sleep", _] => ("sleep", &["POST"]),
            ["v1", "shutdown"] => ("shutdown", &["POST"]),
            ["v1", "trace_manage"] => ("trace_manage", &["POST"]),
            ["v1", "zoo_manage"] => ("zoo_manage", &["POST"]),
            ["v1", "dev_ctrl"] => ("dev_ctrl", &["POST", "GET"]),
            _ => return Err(CommandError::NoRoute),
        };
        if !methods.contains(&method) {
            return Err(CommandError::Method);
        }
        let args = || -> Result<Value, CommandError> {
            if method != "POST" {
                return Ok(Value::Null);
            }
            serde_json::from_slice::<Value>(body)
                .map_err(|_| CommandError::BadArgument(super::dg_error_text("ERROR", "Parsing error", "request body is not valid JSON", &[])))
        };
        Ok(match op {
            "modelzoo" => Command::ModelZoo,
            "system_info" => Command::SystemInfo,
            "label_dictionary" => Command::LabelDictionary { name: percent_decode(seg[2]) },
            "sleep" => match seg[2].parse::<f64>() {
                Ok(ms) => Command::Sleep { ms: ms.clamp(0.0, MAX_SLEEP_MS) },
                Err(_) => return Err(CommandError::BadArgument(format!("Incorrect sleep time '{}'", seg[2]))),
            },
            "shutdown" => Command::Shutdown,
            "trace_manage" => Command::TraceManage { args: args()? },
            "zoo_manage" => Command::ZooManage { args: args()? },
            _ => Command::DevCtrl { args: args()? },
        })
    }

    /// The REST method and path of this command (`None` for `stream`: that is the WebSocket).
    pub fn rest_route(&self) -> Option<(&'static str, String)> {
        Some(match self {
            Command::ModelZoo | Command::SystemInfo => ("GET", format!("/v1/{}", self.op())),
            Command::LabelDictionary { name } => ("GET", format!("/v1/label_dictionary/{}", super::http::percent_encode(name))),
            // Six decimals, as DeGirum's client formats it (`std::to_string`).
            Command::Sleep { ms } => ("POST", format!("/v1/sleep/{ms:.6}")),
            Command::Stream { .. } => return None,
            Command::Shutdown | Command::TraceManage { .. } | Command::ZooManage { .. } | Command::DevCtrl { .. } => ("POST", format!("/v1/{}", self.op())),
        })
    }

    /// The JSON body of the REST request: the arguments of the management commands.
    pub fn rest_body(&self) -> Option<&Value> {
        match self {
            Command::TraceManage { args } | Command::ZooManage { args } | Command::DevCtrl { args } => Some(args),
            _ => None,
        }
    }

    /// `stream` over HTTP: the first (text) message on the WebSocket, `{"config", "name"}`.
    pub fn to_ws(&self) -> Option<String> {
        match self {
            Command::Stream { name, config } => Some(super::ws_config_message(name, config)),
            _ => None,
        }
    }

    /// Parse the WebSocket's configuration message (a JSON object) into `stream`.
    pub fn from_ws(msg: &Value) -> Command {
        Command::Stream {
            name: msg.get("name").and_then(Value::as_str).unwrap_or_default().to_string(),
            config: msg.get("config").cloned().unwrap_or(Value::Null),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn asio_and_rest_forms_round_trip() {
        let all = [
            Command::ModelZoo,
            Command::SystemInfo,
            Command::LabelDictionary { name: "a b/c".into() },
            Command::Sleep { ms: 5.0 },
            Command::Shutdown,
            Command::TraceManage { args: json!({"config_get": 1}) },
            Command::ZooManage { args: json!({"rescan": 1}) },
            Command::DevCtrl { args: json!({}) },
            Command::Stream { name: "m".into(), config: json!({"x": 1}) },
        ];
        for c in all {
            assert_eq!(Command::from_asio(&c.to_asio()).as_ref(), Ok(&c));
            if let Some((m, p)) = c.rest_route() {
                let body = c.rest_body().map(Value::to_string).unwrap_or_default();
                assert_eq!(Command::from_rest(m, &p, body.as_bytes()).as_ref(), Ok(&c), "{p}");
            }
            if let Some(text) = c.to_ws() {
                assert_eq!(Command::from_ws(&serde_json::from_str(&text).unwrap()), c);
            }
        }
    }

    #[test]
    fn bad_requests_are_typed() {
        assert_eq!(Command::from_asio(&json!({"VERSION": 4})), Err(CommandError::MissingOp));
        assert_eq!(Command::from_asio(&json!({"op": "x"})), Err(CommandError::UnknownOp("x".into())));
        assert_eq!(Command::from_rest("GET", "/v1/nothing", b""), Err(CommandError::NoRoute));
        assert_eq!(Command::from_rest("POST", "/v1/modelzoo", b""), Err(CommandError::Method));
        assert!(matches!(Command::from_rest("POST", "/v1/sleep/abc", b""), Err(CommandError::BadArgument(_))));
        assert!(matches!(Command::from_rest("POST", "/v1/zoo_manage", b"{"), Err(CommandError::BadArgument(_))));
        assert_eq!(Command::from_asio(&json!({"op": "sleep", "sleep_time_ms": 1e12})), Ok(Command::Sleep { ms: MAX_SLEEP_MS }));
    }
}
