//! The HTTP side of the protocol: TCP connect with timeout (every resolved address, IPv6
//! included) and one-shot REST requests for the `/v1/...` routes over `ureq` (any body framing:
//! `Content-Length`, chunked, or until close). The WebSocket stream is in [`super::ws`].
use crate::error::{Code, Error, Result};
use std::io::Read;
use std::net::TcpStream;
use std::time::Duration;

/// Largest REST reply body accepted.
const MAX_BODY: u64 = 256 << 20;

/// The bare reason of an I/O error ("Connection refused"), without Rust's "(os error N)".
fn bare(e: &std::io::Error) -> String {
    let t = e.to_string();
    t.split(" (os error").next().unwrap_or(&t).to_string()
}

/// Connect with a timeout, trying each resolved address (IPv4 and IPv6) in order.
pub fn connect(host: &str, port: u16, timeout: Duration) -> Result<TcpStream> {
    use std::net::ToSocketAddrs;
    let addrs: Vec<_> =
        (host, port).to_socket_addrs().map_err(|e| Error::new(Code::Network, format!("cannot resolve AI server address '{host}:{port}': {e}")))?.collect();
    let mut last = None;
    for a in addrs {
        match TcpStream::connect_timeout(&a, timeout) {
            Ok(s) => {
                let _ = s.set_nodelay(true);
                return Ok(s);
            }
            Err(e) => last = Some(e),
        }
    }
    Err(Error::new(Code::Network, last.map_or("no address".to_string(), |e| bare(&e))))
}

/// `host` as it goes in a URL: an IPv6 literal in brackets.
pub fn url_host(host: &str) -> String {
    if host.contains(':') && !host.starts_with('[') {
        format!("[{host}]")
    } else {
        host.to_string()
    }
}

/// One HTTP request; returns (status, body).
pub fn request(host: &str, port: u16, method: &str, path: &str, body: Option<&[u8]>, timeout: Duration) -> Result<(u16, Vec<u8>)> {
    request_full(host, port, method, path, body, timeout).map(|(s, _, b)| (s, b))
}

/// One HTTP request on a fresh connection; returns (status, reason phrase, body) for every
/// status. Transport failures are PySDK's "Error sending HTTP request" text.
pub fn request_full(host: &str, port: u16, method: &str, path: &str, body: Option<&[u8]>, timeout: Duration) -> Result<(u16, String, Vec<u8>)> {
    request_with_headers(host, port, method, path, &[], body, timeout)
}

/// [`request_full`] with extra request headers (`Authorization` for management commands).
pub fn request_with_headers(
    host: &str,
    port: u16,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
    body: Option<&[u8]>,
    timeout: Duration,
) -> Result<(u16, String, Vec<u8>)> {
    let url = format!("http://{}:{port}{path}", url_host(host));
    let fail = |why: String| Error::new(Code::Network, format!("Error sending HTTP request '{path}' to http://{host}:{port}: {why}"));
    let agent = ureq::AgentBuilder::new().timeout_connect(timeout).timeout_read(timeout).timeout_write(timeout).redirects(0).build();
    // Like cpp-httplib in DeGirum's client: up to 3 attempts on connection failures.
    let mut attempt = 0;
    let resp = loop {
        let req = headers.iter().fold(agent.request(method, &url).set("Accept", "*/*"), |r, (k, v)| r.set(k, v));
        let r = match body {
            Some(b) => req.set("Content-Type", "application/json").send_bytes(b),
            None if method == "POST" => req.send_bytes(&[]),
            None => req.call(),
        };
        match r {
            Ok(r) | Err(ureq::Error::Status(_, r)) => break r,
            Err(ureq::Error::Transport(t)) => {
                if t.kind() == ureq::ErrorKind::ConnectionFailed && attempt < 2 {
                    attempt += 1;
                    continue;
                }
                return Err(fail(transport_reason(&t)));
            }
        }
    };
    let (status, reason) = (resp.status(), resp.status_text().to_string());
    let mut out = Vec::new();
    resp.into_reader().take(MAX_BODY + 1).read_to_end(&mut out).map_err(|e| fail(bare(&e)))?;
    if out.len() as u64 > MAX_BODY {
        return Err(Error::new(Code::Protocol, format!("HTTP response body from http://{host}:{port}{path} is larger than {MAX_BODY} bytes")));
    }
    Ok((status, reason, out))
}

/// The innermost I/O reason of a ureq transport error ("Connection refused"), else its text.
fn transport_reason(t: &ureq::Transport) -> String {
    let mut src: Option<&(dyn std::error::Error + 'static)> = std::error::Error::source(t);
    let mut io = None;
    while let Some(e) = src {
        if let Some(x) = e.downcast_ref::<std::io::Error>() {
            io = Some(x);
        }
        src = e.source();
    }
    match io {
        Some(e) => bare(e),
        None => t.message().map(str::to_string).unwrap_or_else(|| t.kind().to_string()),
    }
}

/// Percent-encode a URL path segment (everything but unreserved characters).
pub fn percent_encode(s: &str) -> String {
    s.bytes().map(|b| if b.is_ascii_alphanumeric() || b"-_.~".contains(&b) { (b as char).to_string() } else { format!("%{b:02X}") }).collect()
}

/// Percent-decode a URL path or query part (`%XX` escapes; invalid UTF-8 replaced).
pub fn percent_decode(s: &str) -> String {
    percent_encoding::percent_decode_str(s).decode_utf8_lossy().into_owned()
}

#[cfg(test)]
mod percent_tests {
    use super::percent_decode;

    #[test]
    fn decodes_and_never_panics_on_odd_input() {
        assert_eq!(percent_decode("a%20b%2Fc"), "a b/c");
        assert_eq!(percent_decode("%é%"), "%é%");
        assert_eq!(percent_decode("%4"), "%4");
        assert_eq!(percent_decode("%FF"), "\u{FFFD}");
    }
}
