//! WebSocket (RFC 6455) for `/v1/stream`. Both DeGirum ends bend the RFC: its server sends some
//! msgpack replies in *text* frames that are not UTF-8 (tungstenite's message layer refuses
//! them), and its client does not mask its frames (a server must accept that). The client
//! ([`WsClient`]) is tungstenite's handshake and frame layer; the server end ([`server`]) is
//! still a small codec of our own until the server moves to axum. The reading and the writing
//! half can live on different threads.
use crate::error::{Code, Error, Result};
use std::io::{BufReader, Read, Write};
use std::net::TcpStream;
use std::sync::{Arc, Mutex};
use std::time::Duration;

const OP_CONT: u8 = 0;
const OP_TEXT: u8 = 1;
const OP_BINARY: u8 = 2;
const OP_CLOSE: u8 = 8;
const OP_PING: u8 = 9;
const OP_PONG: u8 = 10;

/// A received message (payloads as bytes: text may not be UTF-8).
#[derive(Debug)]
pub enum WsMessage {
    Text(Vec<u8>),
    Binary(Vec<u8>),
    Close,
}

/// The sending half: whole frames are written under a lock, so several threads never
/// interleave. Clients mask their frames, servers do not.
#[derive(Clone)]
pub struct WsWriter {
    inner: Arc<Mutex<(TcpStream, u32)>>,
    client: bool,
}

impl WsWriter {
    fn new(sock: TcpStream, client: bool) -> Self {
        let seed = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0x9e37_79b9, |d| d.subsec_nanos());
        WsWriter { inner: Arc::new(Mutex::new((sock, seed | 1))), client }
    }

    fn next_mask(state: &mut u32) -> [u8; 4] {
        // xorshift32: masking only has to be unpredictable to intermediaries, not secure.
        let mut x = *state;
        x ^= x << 13;
        x ^= x >> 17;
        x ^= x << 5;
        *state = x;
        x.to_be_bytes()
    }

    fn frame(&self, opcode: u8, payload: &[u8]) -> std::io::Result<()> {
        let mut g = self.inner.lock().unwrap_or_else(|p| p.into_inner());
        let mask_bit = if self.client { 0x80 } else { 0 };
        let mut f = Vec::with_capacity(payload.len() + 14);
        f.push(0x80 | opcode);
        match payload.len() {
            n if n < 126 => f.push(mask_bit | n as u8),
            n if n < 65536 => {
                f.push(mask_bit | 126);
                f.extend_from_slice(&(n as u16).to_be_bytes());
            }
            n => {
                f.push(mask_bit | 127);
                f.extend_from_slice(&(n as u64).to_be_bytes());
            }
        }
        if self.client {
            let mask = Self::next_mask(&mut g.1);
            f.extend_from_slice(&mask);
            f.extend(payload.iter().enumerate().map(|(i, b)| b ^ mask[i % 4]));
        } else {
            f.extend_from_slice(payload);
        }
        g.0.write_all(&f)?;
        g.0.flush()
    }

    pub fn send_text(&self, text: &[u8]) -> std::io::Result<()> {
        self.frame(OP_TEXT, text)
    }

    pub fn send_binary(&self, data: &[u8]) -> std::io::Result<()> {
        self.frame(OP_BINARY, data)
    }

    /// Send a close frame (best effort, bounded wait).
    pub fn close(&self) {
        let _ = self.inner.lock().unwrap_or_else(|p| p.into_inner()).0.set_write_timeout(Some(Duration::from_millis(500)));
        let _ = self.frame(OP_CLOSE, &[]);
    }
}

/// The receiving half (answers pings through the writer).
pub struct WsReader {
    reader: BufReader<Box<dyn Read + Send>>,
    sock: TcpStream,
    writer: WsWriter,
    max_message: usize,
    /// Largest text message (JSON), at most `max_message`.
    max_text: usize,
}

impl WsReader {
    /// Read timeout for `recv` (None = wait forever).
    pub fn set_read_timeout(&self, t: Option<Duration>) {
        let _ = self.sock.set_read_timeout(t);
    }

    /// Limit text messages (JSON) to `max` bytes, below the limit of binary ones.
    pub fn set_max_text(&mut self, max: usize) {
        self.max_text = max.min(self.max_message);
    }

    /// Receive the next message (fragments joined; pings answered; masked or not).
    pub fn recv(&mut self) -> std::io::Result<WsMessage> {
        let mut message: Vec<u8> = Vec::new();
        let mut first_op = None;
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
            // Refused before reading (or allocating) the payload.
            let text = opcode == OP_TEXT || (opcode == OP_CONT && first_op == Some(OP_TEXT));
            let max = if text { self.max_text } else { self.max_message } as u64;
            if len > max || message.len() as u64 + len > max {
                let what = if text { "text" } else { "" };
                let total = message.len() as u64 + len;
                return Err(std::io::Error::new(
                    std::io::ErrorKind::InvalidData,
                    format!("WebSocket {what}{}message of {total} bytes exceeds the limit of {max} bytes", if text { " " } else { "" }),
                ));
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
                OP_PING => self.writer.frame(OP_PONG, &payload)?,
                OP_PONG => {}
                OP_CLOSE => return Ok(WsMessage::Close),
                OP_TEXT | OP_BINARY | OP_CONT => {
                    if opcode != OP_CONT {
                        first_op = Some(opcode);
                    }
                    message.extend_from_slice(&payload);
                    if fin {
                        return Ok(if first_op == Some(OP_TEXT) { WsMessage::Text(message) } else { WsMessage::Binary(message) });
                    }
                }
                _ => return Err(std::io::Error::new(std::io::ErrorKind::InvalidData, format!("unknown WebSocket opcode {opcode}"))),
            }
        }
    }
}

/// Server end of a connection whose upgrade handshake is done; `leftover` holds bytes
/// already read past the handshake.
pub fn server(sock: TcpStream, leftover: Vec<u8>, max_message: usize) -> std::io::Result<(WsReader, WsWriter)> {
    let writer = WsWriter::new(sock.try_clone()?, false);
    let read_sock = sock.try_clone()?;
    let source: Box<dyn Read + Send> = Box::new(std::io::Cursor::new(leftover).chain(read_sock));
    Ok((WsReader { reader: BufReader::new(source), sock, writer: writer.clone(), max_message, max_text: max_message }, writer))
}

/// A client WebSocket over tungstenite: its handshake, then its frame layer (not its message
/// layer, which refuses the non-UTF-8 text frames DeGirum's server sends). The reading and the
/// writing half can live on different threads.
pub struct WsClient {
    pub reader: ClientReader,
    pub writer: ClientWriter,
}

type Frames = tungstenite::protocol::frame::FrameSocket<TcpStream>;

fn ws_io(e: tungstenite::Error) -> std::io::Error {
    match e {
        tungstenite::Error::Io(e) => e,
        tungstenite::Error::ConnectionClosed | tungstenite::Error::AlreadyClosed => {
            std::io::Error::new(std::io::ErrorKind::UnexpectedEof, "connection closed inside a WebSocket frame")
        }
        other => std::io::Error::new(std::io::ErrorKind::InvalidData, other.to_string()),
    }
}

/// The sending half of a client WebSocket: whole frames under a lock, each masked (RFC 6455 §5.3).
#[derive(Clone)]
pub struct ClientWriter {
    inner: Arc<Mutex<(Frames, u32)>>,
}

impl ClientWriter {
    fn send(&self, mut f: tungstenite::protocol::frame::Frame) -> std::io::Result<()> {
        let mut g = self.inner.lock().unwrap_or_else(|p| p.into_inner());
        // xorshift32: masking only has to be unpredictable to intermediaries, not secure.
        let mut x = g.1;
        x ^= x << 13;
        x ^= x >> 17;
        x ^= x << 5;
        g.1 = x;
        f.header_mut().mask = Some(x.to_be_bytes());
        g.0.send(f).map_err(ws_io)
    }

    pub fn send_text(&self, text: &[u8]) -> std::io::Result<()> {
        use tungstenite::protocol::frame::{coding::Data, coding::OpCode, Frame};
        self.send(Frame::message(text.to_vec(), OpCode::Data(Data::Text), true))
    }

    pub fn send_binary(&self, data: &[u8]) -> std::io::Result<()> {
        use tungstenite::protocol::frame::{coding::Data, coding::OpCode, Frame};
        self.send(Frame::message(data.to_vec(), OpCode::Data(Data::Binary), true))
    }

    /// Send a close frame (best effort, bounded wait).
    pub fn close(&self) {
        let _ = self.inner.lock().unwrap_or_else(|p| p.into_inner()).0.get_ref().set_write_timeout(Some(Duration::from_millis(500)));
        let _ = self.send(tungstenite::protocol::frame::Frame::close(None));
    }
}

/// The receiving half of a client WebSocket (answers pings through the writer).
pub struct ClientReader {
    frames: Frames,
    writer: ClientWriter,
    max_message: usize,
}

impl ClientReader {
    /// Read timeout for `recv` (None = wait forever).
    pub fn set_read_timeout(&self, t: Option<Duration>) {
        let _ = self.frames.get_ref().set_read_timeout(t);
    }

    /// Receive the next message (fragments joined, pings answered). A frame cut by a read
    /// timeout is kept by the frame layer and completed by the next call.
    pub fn recv(&mut self) -> std::io::Result<WsMessage> {
        use tungstenite::protocol::frame::coding::{Control, Data, OpCode};
        let mut message: Vec<u8> = Vec::new();
        let mut text = None;
        loop {
            let left = self.max_message.saturating_sub(message.len());
            let mut frame = match self.frames.read(Some(left)).map_err(ws_io)? {
                Some(f) => f,
                None => return Err(std::io::Error::new(std::io::ErrorKind::UnexpectedEof, "connection closed")),
            };
            if let Some(mask) = frame.header_mut().mask.take() {
                frame.payload_mut().iter_mut().enumerate().for_each(|(i, b)| *b ^= mask[i % 4]);
            }
            let fin = frame.header().is_final;
            match frame.header().opcode {
                OpCode::Control(Control::Ping) => self.writer.send(tungstenite::protocol::frame::Frame::pong(frame.into_data()))?,
                OpCode::Control(Control::Pong) => {}
                OpCode::Control(Control::Close) => return Ok(WsMessage::Close),
                OpCode::Data(d @ (Data::Text | Data::Binary | Data::Continue)) => {
                    if d != Data::Continue {
                        text = Some(d == Data::Text);
                    }
                    message.extend_from_slice(frame.payload());
                    if fin {
                        return Ok(if text == Some(true) { WsMessage::Text(message) } else { WsMessage::Binary(message) });
                    }
                }
                other => return Err(std::io::Error::new(std::io::ErrorKind::InvalidData, format!("unexpected WebSocket opcode {other}"))),
            }
        }
    }
}

impl WsClient {
    /// Open `ws://host:port<path>` on a connected socket (tungstenite's client handshake).
    pub fn handshake(sock: TcpStream, host: &str, port: u16, path: &str, max_message: usize, timeout: Duration) -> Result<WsClient> {
        let fail = |m: String| Error::new(Code::Network, format!("WebSocket handshake with {host}:{port} failed: {m}"));
        let _ = sock.set_read_timeout(Some(timeout));
        let url = format!("ws://{}:{port}{path}", super::http::url_host(host));
        let (ws, _) = tungstenite::client::client(url.as_str(), sock).map_err(|e| match e {
            tungstenite::HandshakeError::Failure(e) => fail(e.to_string()),
            tungstenite::HandshakeError::Interrupted(_) => fail("timed out".into()),
        })?;
        // The server says nothing before the client's first message, so no frame bytes are
        // left in the handshake's buffer: the socket carries on with the frame layer.
        let read = ws.get_ref().try_clone().map_err(|e| fail(e.to_string()))?;
        let write = ws.get_ref().try_clone().map_err(|e| fail(e.to_string()))?;
        drop(ws);
        let seed = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0x9e37_79b9, |d| d.subsec_nanos());
        let writer = ClientWriter { inner: Arc::new(Mutex::new((Frames::new(write), seed | 1))) };
        Ok(WsClient { reader: ClientReader { frames: Frames::new(read), writer: writer.clone(), max_message }, writer })
    }
}

/// `Sec-WebSocket-Accept` for a `Sec-WebSocket-Key` (RFC 6455 §4.2.2).
pub fn accept_key(key: &str) -> String {
    use sha1::Digest;
    let mut h = sha1::Sha1::new();
    h.update(key.trim().as_bytes());
    h.update(b"258EAFA5-E914-47DA-95CA-C5AB0DC85B11");
    base64(&h.finalize())
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
    fn accept_key_rfc_example() {
        assert_eq!(super::accept_key("dGhlIHNhbXBsZSBub25jZQ=="), "s3pPLMBiTxaQ9kYGzzhZRbK+xOo=");
    }

    #[test]
    fn base64_known_values() {
        assert_eq!(super::base64(b"foobar"), "Zm9vYmFy");
        assert_eq!(super::base64(b"fooba"), "Zm9vYmE=");
        assert_eq!(super::base64(b"foob"), "Zm9vYg==");
        assert_eq!(super::base64(&[0u8; 16]).len(), 24);
    }
}
