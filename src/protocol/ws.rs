//! The WebSocket client for `/v1/stream`: tungstenite's handshake, then its frame layer, not
//! its message layer, because DeGirum's server sends some msgpack replies in *text* frames that
//! are not UTF-8 (which that layer refuses). The reading and the writing half can live on
//! different threads. (Our server end is tokio-tungstenite, in dgzoo-server.)
use crate::error::{Code, Error, Result};
use std::net::TcpStream;
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// A received message (payloads as bytes: text may not be UTF-8).
#[derive(Debug)]
pub enum WsMessage {
    Text(Vec<u8>),
    Binary(Vec<u8>),
    Close,
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
