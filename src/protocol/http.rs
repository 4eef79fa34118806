//! The HTTP side of the protocol: TCP connect with timeout and a minimal HTTP/1.1 client for
//! the `/v1/...` REST routes (one request per connection, `Content-Length` or chunked bodies).
//! The WebSocket stream is in [`super::ws`].
use crate::error::{Code, Error, Result};
use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::time::Duration;

/// Connect with a timeout to an IPv4/hostname address, trying each resolved address.
pub fn connect(host: &str, port: u16, timeout: Duration) -> Result<TcpStream> {
    use std::net::ToSocketAddrs;
    let addrs: Vec<_> = (host, port)
        .to_socket_addrs()
        .map_err(|e| Error::new(Code::Network, format!("cannot resolve AI server address '{host}:{port}': {e}")))?
        .filter(|a| a.is_ipv4())
        .collect();
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
    // The bare reason ("Connection refused"), without Rust's "(os error N)" suffix.
    let reason = last.map_or("no IPv4 address".to_string(), |e| {
        let t = e.to_string();
        t.split(" (os error").next().unwrap_or(&t).to_string()
    });
    Err(Error::new(Code::Network, reason))
}

/// One HTTP request; returns (status, body).
pub fn request(host: &str, port: u16, method: &str, path: &str, body: Option<&[u8]>, timeout: Duration) -> Result<(u16, Vec<u8>)> {
    request_full(host, port, method, path, body, timeout).map(|(s, _, b)| (s, b))
}

/// One HTTP request; returns (status, reason phrase, body).
pub fn request_full(host: &str, port: u16, method: &str, path: &str, body: Option<&[u8]>, timeout: Duration) -> Result<(u16, String, Vec<u8>)> {
    // Like cpp-httplib in DeGirum's client: up to 3 attempts on connection failures.
    let mut attempt = 0;
    let mut s = loop {
        match connect(host, port, timeout) {
            Ok(s) => break s,
            Err(_) if attempt < 2 => attempt += 1,
            Err(e) => return Err(Error::new(e.code, format!("Error sending HTTP request '{path}' to http://{host}:{port}: {}", e.message))),
        }
    };
    let _ = s.set_read_timeout(Some(timeout));
    let _ = s.set_write_timeout(Some(timeout));
    let net = |e: std::io::Error| Error::new(Code::Network, format!("Error sending HTTP request '{path}' to http://{host}:{port}: {e}"));
    let mut req = format!("{method} {path} HTTP/1.1\r\nHost: {host}:{port}\r\nConnection: close\r\nAccept: */*\r\n");
    if let Some(b) = body {
        req.push_str(&format!("Content-Type: application/json\r\nContent-Length: {}\r\n", b.len()));
    } else if method == "POST" {
        req.push_str("Content-Length: 0\r\n");
    }
    req.push_str("\r\n");
    let mut msg = req.into_bytes();
    msg.extend_from_slice(body.unwrap_or_default());
    s.write_all(&msg).map_err(net)?;
    let mut r = BufReader::new(s);
    let mut line = String::new();
    r.read_line(&mut line).map_err(net)?;
    let mut status_parts = line.trim_end().splitn(3, ' ');
    let status: u16 = status_parts
        .nth(1)
        .and_then(|c| c.parse().ok())
        .ok_or_else(|| Error::new(Code::Protocol, format!("malformed HTTP response from http://{host}:{port}{path}")))?;
    let reason = status_parts.next().unwrap_or_default().to_string();
    let (mut length, mut chunked) = (None, false);
    loop {
        line.clear();
        if r.read_line(&mut line).map_err(net)? == 0 {
            break;
        }
        let l = line.trim_end();
        if l.is_empty() {
            break;
        }
        if let Some((k, v)) = l.split_once(':') {
            let (k, v) = (k.trim().to_ascii_lowercase(), v.trim());
            if k == "content-length" {
                length = v.parse::<usize>().ok();
            } else if k == "transfer-encoding" && v.to_ascii_lowercase().contains("chunked") {
                chunked = true;
            }
        }
    }
    const MAX_BODY: usize = 256 << 20;
    let mut out = Vec::new();
    if chunked {
        loop {
            line.clear();
            r.read_line(&mut line).map_err(net)?;
            let n = usize::from_str_radix(line.trim().split(';').next().unwrap_or("0"), 16).unwrap_or(0);
            if n == 0 || out.len() + n > MAX_BODY {
                break;
            }
            let start = out.len();
            out.resize(start + n, 0);
            r.read_exact(&mut out[start..]).map_err(net)?;
            line.clear();
            r.read_line(&mut line).map_err(net)?;
        }
    } else if let Some(n) = length {
        if n > MAX_BODY {
            return Err(Error::new(Code::Protocol, format!("HTTP response body of {n} bytes is too large")));
        }
        out.resize(n, 0);
        r.read_exact(&mut out).map_err(net)?;
    } else {
        r.take(MAX_BODY as u64).read_to_end(&mut out).map_err(net)?;
    }
    Ok((status, reason, out))
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
