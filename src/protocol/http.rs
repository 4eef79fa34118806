//! The HTTP side of the protocol: a minimal HTTP/1.1 client for the `/v1/...` REST routes
//! (one request per connection, `Content-Length` or chunked bodies) and the WebSocket
//! settings both ends use for `/v1/stream`.
use crate::error::{Code, Error, Result};
use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::time::Duration;
use tungstenite::protocol::WebSocketConfig;

/// WebSocket settings: messages bounded by `max_message`, and (server side) unmasked client
/// frames accepted, since DeGirum's client does not mask its data frames.
pub fn ws_config(max_message: usize, server: bool) -> WebSocketConfig {
    let mut c = WebSocketConfig::default();
    c.max_message_size = Some(max_message);
    c.max_frame_size = Some(max_message);
    c.accept_unmasked_frames = server;
    c
}

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
    Err(Error::new(
        Code::Network,
        format!("cannot connect to AI server '{host}:{port}': {}", last.map_or("no IPv4 address".to_string(), |e| e.to_string())),
    ))
}

/// One HTTP request; returns (status, body).
pub fn request(host: &str, port: u16, method: &str, path: &str, body: Option<&[u8]>, timeout: Duration) -> Result<(u16, Vec<u8>)> {
    let mut s = connect(host, port, timeout)?;
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
    let status: u16 = line
        .split_whitespace()
        .nth(1)
        .and_then(|c| c.parse().ok())
        .ok_or_else(|| Error::new(Code::Protocol, format!("malformed HTTP response from http://{host}:{port}{path}")))?;
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
    Ok((status, out))
}
