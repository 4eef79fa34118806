//! A minimal WebSocket client (RFC 6455) for `/v1/stream`. DeGirum's server sends some msgpack
//! replies in *text* frames, which are not UTF-8: a general-purpose client that validates text
//! frames (tungstenite) cannot read them, so frames are handled here as plain bytes.
use crate::error::{Code, Error, Result};
use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::time::Duration;

const OP_CONT: u8 = 0;
const OP_TEXT: u8 = 1;
const OP_BINARY: u8 = 2;
const OP_CLOSE: u8 = 8;
const OP_PING: u8 = 9;
const OP_PONG: u8 = 10;

/// A received message.
#[derive(Debug)]
pub enum WsMessage {
    /// Text or binary payload, as bytes.
    Data(Vec<u8>),
    Close,
}

/// A client WebSocket over TCP.
pub struct WsClient {
    reader: BufReader<TcpStream>,
    writer: TcpStream,
    max_message: usize,
    mask_state: u32,
}

impl WsClient {
    /// Open `ws://host:port<path>` on an already connected socket.
    pub fn handshake(sock: TcpStream, host: &str, port: u16, path: &str, max_message: usize, timeout: Duration) -> Result<WsClient> {
        let fail = |m: String| Error::new(Code::Network, format!("WebSocket handshake with {host}:{port} failed: {m}"));
        let mut writer = sock.try_clone().map_err(|e| fail(e.to_string()))?;
        let _ = sock.set_read_timeout(Some(timeout));
        let seed = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.subsec_nanos()) ^ (port as u32).rotate_left(16);
        let mut client = WsClient { reader: BufReader::new(sock), writer: writer.try_clone().map_err(|e| fail(e.to_string()))?, max_message, mask_state: seed | 1 };
        let key_bytes: Vec<u8> = (0..4).flat_map(|_| client.next_mask()).collect();
        let key = base64(&key_bytes);
        let req = format!(
            "GET {path} HTTP/1.1\r\nHost: {host}:{port}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Key: {key}\r\nSec-WebSocket-Version: 13\r\n\r\n"
        );
        writer.write_all(req.as_bytes()).map_err(|e| fail(e.to_string()))?;
        let mut status = String::new();
        client.reader.read_line(&mut status).map_err(|e| fail(e.to_string()))?;
        if status.split_whitespace().nth(1) != Some("101") {
            return Err(fail(format!("unexpected response '{}'", status.trim())));
        }
        let want = tungstenite::handshake::derive_accept_key(key.as_bytes());
        let mut accepted = false;
        loop {
            let mut line = String::new();
            if client.reader.read_line(&mut line).map_err(|e| fail(e.to_string()))? == 0 {
                return Err(fail("connection closed during the handshake".into()));
            }
            let l = line.trim_end();
            if l.is_empty() {
                break;
            }
            if let Some((k, v)) = l.split_once(':') {
                if k.trim().eq_ignore_ascii_case("Sec-WebSocket-Accept") && v.trim() == want {
                    accepted = true;
                }
            }
        }
        if !accepted {
            return Err(fail("bad Sec-WebSocket-Accept".into()));
        }
        Ok(client)
    }

    /// Read timeout for `recv` (None = wait forever).
    pub fn set_read_timeout(&self, t: Option<Duration>) {
        let _ = self.reader.get_ref().set_read_timeout(t);
    }

    fn next_mask(&mut self) -> [u8; 4] {
        // xorshift32: masking only has to be unpredictable to intermediaries, not secure.
        let mut x = self.mask_state;
        x ^= x << 13;
        x ^= x >> 17;
        x ^= x << 5;
        self.mask_state = x;
        x.to_be_bytes()
    }

    fn send_frame(&mut self, opcode: u8, payload: &[u8]) -> std::io::Result<()> {
        let mut f = Vec::with_capacity(payload.len() + 14);
        f.push(0x80 | opcode);
        match payload.len() {
            n if n < 126 => f.push(0x80 | n as u8),
            n if n < 65536 => {
                f.push(0x80 | 126);
                f.extend_from_slice(&(n as u16).to_be_bytes());
            }
            n => {
                f.push(0x80 | 127);
                f.extend_from_slice(&(n as u64).to_be_bytes());
            }
        }
        let mask = self.next_mask();
        f.extend_from_slice(&mask);
        f.extend(payload.iter().enumerate().map(|(i, b)| b ^ mask[i % 4]));
        self.writer.write_all(&f)?;
        self.writer.flush()
    }

    /// Send a text message.
    pub fn send_text(&mut self, text: &str) -> std::io::Result<()> {
        self.send_frame(OP_TEXT, text.as_bytes())
    }

    /// Send a binary message.
    pub fn send_binary(&mut self, data: &[u8]) -> std::io::Result<()> {
        self.send_frame(OP_BINARY, data)
    }

    /// Receive the next data message (fragments joined; pings answered).
    pub fn recv(&mut self) -> std::io::Result<WsMessage> {
        let mut message: Vec<u8> = Vec::new();
        loop {
            let mut h = [0u8; 2];
            self.reader.read_exact(&mut h)?;
            let (fin, opcode, masked) = (h[0] & 0x80 != 0, h[0] & 0x0f, h[1] & 0x80 != 0);
            let len = match h[1] & 0x7f {
                126 => {
                    let mut b = [0u8; 2];
                    self.reader.read_exact(&mut b)?;
                    u16::from_be_bytes(b) as u64
                }
                127 => {
                    let mut b = [0u8; 8];
                    self.reader.read_exact(&mut b)?;
                    u64::from_be_bytes(b)
                }
                n => n as u64,
            };
            if len as usize > self.max_message || message.len() + len as usize > self.max_message {
                return Err(std::io::Error::new(std::io::ErrorKind::InvalidData, "WebSocket message too large"));
            }
            let mut mask = [0u8; 4];
            if masked {
                self.reader.read_exact(&mut mask)?;
            }
            let mut payload = Vec::with_capacity((len as usize).min(1 << 20));
            (&mut self.reader).take(len).read_to_end(&mut payload)?;
            if payload.len() as u64 != len {
                return Err(std::io::Error::new(std::io::ErrorKind::UnexpectedEof, "connection closed inside a WebSocket frame"));
            }
            if masked {
                payload.iter_mut().enumerate().for_each(|(i, b)| *b ^= mask[i % 4]);
            }
            match opcode {
                OP_PING => self.send_frame(OP_PONG, &payload)?,
                OP_PONG => {}
                OP_CLOSE => return Ok(WsMessage::Close),
                OP_TEXT | OP_BINARY | OP_CONT => {
                    message.extend_from_slice(&payload);
                    if fin {
                        return Ok(WsMessage::Data(message));
                    }
                }
                _ => return Err(std::io::Error::new(std::io::ErrorKind::InvalidData, format!("unknown WebSocket opcode {opcode}"))),
            }
        }
    }

    /// Send a close frame (best effort).
    pub fn close(&mut self) {
        let _ = self.writer.set_write_timeout(Some(Duration::from_millis(500)));
        let _ = self.send_frame(OP_CLOSE, &[]);
    }
}

fn base64(data: &[u8]) -> String {
    const T: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut out = String::new();
    for c in data.chunks(3) {
        let n = (c[0] as u32) << 16 | (*c.get(1).unwrap_or(&0) as u32) << 8 | *c.get(2).unwrap_or(&0) as u32;
        for i in 0..4 {
            if i <= c.len() {
                out.push(T[(n >> (18 - 6 * i) & 63) as usize] as char);
            } else {
                out.push('=');
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    #[test]
    fn base64_known_values() {
        assert_eq!(super::base64(b"foobar"), "Zm9vYmFy");
        assert_eq!(super::base64(b"fooba"), "Zm9vYmE=");
        assert_eq!(super::base64(b"foob"), "Zm9vYg==");
        assert_eq!(super::base64(&[0u8; 16]).len(), 24);
    }
}
