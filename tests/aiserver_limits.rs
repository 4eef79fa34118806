//! Resource limits of our AI server and of local inference, tried as an attacker would against
//! the real `dgzoo server` process: image bombs (small files declaring huge images) and
//! oversized JSON messages. Each is refused before the memory is allocated, measured from the
//! server's own /proc/PID/status, and the server keeps serving correct results afterwards.
mod aiserver_common;
use aiserver_common::*;
use dgzoo::inference::{predict, Input};
use dgzoo::protocol::{self, read_packet, write_packet};
use dgzoo::zoo::Zoo;
use serde_json::{json, Value};
use std::net::TcpStream;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

const BIN: &str = env!("CARGO_BIN_EXE_dgzoo");
const EFF: &str = "efficientnet_lite0_imagenet--224x224_float_tflite_cpu_1";

/// `dgzoo server start` as a child process (both protocols), killed on drop.
struct Running {
    child: Child,
    port: u16,
}
impl Drop for Running {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Running {
    fn start(zoo: &std::path::Path) -> Running {
        let port = free_port_pair();
        let child = Command::new(BIN)
            .args(["server", "start", "--zoo", zoo.to_str().unwrap(), "--port", &port.to_string(), "--protocol", "both", "--quiet"])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let r = Running { child, port };
        let deadline = Instant::now() + Duration::from_secs(30);
        while TcpStream::connect(("127.0.0.1", port)).is_err() {
            assert!(Instant::now() < deadline, "server did not start");
            std::thread::sleep(Duration::from_millis(100));
        }
        r
    }

    /// A `VmRSS` / `VmHWM` (peak) value of the server process, in KiB.
    fn status_kib(&self, field: &str) -> u64 {
        let s = std::fs::read_to_string(format!("/proc/{}/status", self.child.id())).unwrap();
        let line = s.lines().find(|l| l.starts_with(field)).unwrap_or_else(|| panic!("{field} in {s}"));
        line.split_whitespace().nth(1).unwrap().parse().unwrap()
    }

    fn conn(&self) -> TcpStream {
        let s = TcpStream::connect(("127.0.0.1", self.port)).unwrap();
        s.set_read_timeout(Some(Duration::from_secs(60))).unwrap();
        s
    }

    fn stream(&self, model: &str) -> TcpStream {
        let mut s = self.conn();
        write_packet(&mut s, json!({"VERSION": 4, "op": "stream", "name": model, "config": {}}).to_string().as_bytes()).unwrap();
        s
    }
}

fn frame_result(s: &mut TcpStream, frame: &[u8]) -> Result<Vec<Value>, String> {
    write_packet(s, frame).unwrap();
    let p = read_packet(s, 1 << 26).unwrap().expect("a result");
    protocol::decode_results(&p).unwrap().map(|r| r.0)
}

fn assert_cat(s: &mut TcpStream) {
    let jpeg = std::fs::read(image("cat_224.jpg")).unwrap();
    let r = frame_result(s, &jpeg).unwrap();
    assert_eq!(r[0]["label"], json!("Egyptian cat"), "{r:?}");
}

/// A complete, valid baseline grayscale JPEG of `side` x `side` pixels (all one grey) in about
/// side²/32 bytes: one-symbol Huffman tables make every 8x8 block two bits ("DC unchanged",
/// "end of block"). What an attacker sends: 1 MiB that decodes to 768 MiB of RGB at 16384².
fn jpeg_bomb(side: u16) -> Vec<u8> {
    let mut j = vec![0xFF, 0xD8];
    j.extend([0xFF, 0xDB, 0, 67, 0]);
    j.extend([1u8; 64]);
    let [hi, lo] = side.to_be_bytes();
    j.extend([0xFF, 0xC0, 0, 11, 8, hi, lo, hi, lo, 1, 1, 0x11, 0]);
    for class in [0x00, 0x10] {
        j.extend([0xFF, 0xC4, 0, 20, class, 1]);
        j.extend([0u8; 15]);
        j.push(0); // the one symbol: DC category 0, or AC end-of-block
    }
    j.extend([0xFF, 0xDA, 0, 8, 1, 1, 0x00, 0, 63, 0]);
    let blocks = (side as usize / 8) * (side as usize / 8);
    j.extend(std::iter::repeat_n(0u8, blocks * 2 / 8));
    j.extend([0xFF, 0xD9]);
    j
}

fn crc32(data: &[u8]) -> u32 {
    let table: Vec<u32> = (0..256u32).map(|n| (0..8).fold(n, |c, _| if c & 1 != 0 { 0xEDB8_8320 ^ (c >> 1) } else { c >> 1 })).collect();
    !data.iter().fold(!0u32, |c, &b| table[((c ^ b as u32) & 0xFF) as usize] ^ (c >> 8))
}

/// A complete, valid 8-bit grayscale PNG of `side` x `side` black pixels in about side²/160
/// bytes: one fixed-Huffman deflate block of 258-byte back-references (13 bits each).
fn png_bomb(side: u32) -> Vec<u8> {
    struct Bits(Vec<u8>, u32, u32);
    impl Bits {
        fn put(&mut self, v: u32, n: u32) {
            // deflate packs LSB first; Huffman codes are given MSB first, so reverse them.
            for k in 0..n {
                self.1 |= ((v >> k) & 1) << self.2;
                self.2 += 1;
                if self.2 == 8 {
                    self.0.push(self.1 as u8);
                    (self.1, self.2) = (0, 0);
                }
            }
        }
        fn code(&mut self, c: u32, n: u32) {
            self.put((0..n).fold(0, |r, k| r | (((c >> k) & 1) << (n - 1 - k))), n);
        }
    }
    let total = side as u64 * (side as u64 + 1); // filter byte + row, all zero
    let mut b = Bits(vec![0x78, 0x01], 0, 0);
    b.put(1, 1); // BFINAL
    b.put(1, 2); // fixed Huffman
    b.code(0x30, 8); // literal 0
    let matches = (total - 1) / 258;
    for _ in 0..matches {
        b.code(0xC5, 8); // length code 285 = 258 bytes
        b.code(0, 5); // distance code 0 = 1 byte back
    }
    for _ in 0..(total - 1) % 258 {
        b.code(0x30, 8);
    }
    b.code(0, 7); // end of block
    if b.2 > 0 {
        b.0.push(b.1 as u8);
    }
    let adler = (((total % 65521) as u32) << 16) | 1;
    b.0.extend(adler.to_be_bytes());
    let mut png = b"\x89PNG\r\n\x1a\n".to_vec();
    let mut chunk = |kind: &[u8], data: &[u8]| {
        png.extend((data.len() as u32).to_be_bytes());
        let mut body = kind.to_vec();
        body.extend_from_slice(data);
        png.extend_from_slice(&body);
        png.extend(crc32(&body).to_be_bytes());
    };
    let mut ihdr = side.to_be_bytes().to_vec();
    ihdr.extend(side.to_be_bytes());
    ihdr.extend([8, 0, 0, 0, 0]);
    chunk(b"IHDR", &ihdr);
    chunk(b"IDAT", &b.0);
    chunk(b"IEND", &[]);
    png
}

#[test]
fn bomb_files_are_real_images() {
    // The bombs are well-formed: at a size under the limits they decode completely.
    let img = dgzoo::image_ops::decode(&jpeg_bomb(1024)).unwrap();
    assert_eq!((img.width, img.height), (1024, 1024));
    assert!(img.data.iter().all(|&v| v == img.data[0]));
    let img = dgzoo::image_ops::decode(&png_bomb(1000)).unwrap();
    assert_eq!((img.width, img.height), (1000, 1000));
    assert!(img.data.iter().all(|&v| v == 0));
    // At 16384² they are refused from the header.
    for bomb in [jpeg_bomb(16384), png_bomb(16384)] {
        assert!(bomb.len() < 2 << 20, "{}", bomb.len());
        let t = Instant::now();
        let e = dgzoo::image_ops::dimensions(&bomb).unwrap_err();
        assert!(e.message.contains("16384x16384 is too large"), "{e}");
        let e = dgzoo::image_ops::decode(&bomb).unwrap_err();
        assert!(e.message.contains("16384x16384 is too large"), "{e}");
        assert!(t.elapsed() < Duration::from_millis(200), "{:?}", t.elapsed());
    }
}

#[test]
fn image_bombs_are_refused_before_decoding() {
    let zoo = clean_zoo();
    let bombs = [("JPEG", jpeg_bomb(16384)), ("PNG", png_bomb(16384))];
    // Local inference: refused with a clear error, the model stays usable.
    let z = Zoo::connect("@local", zoo.path().to_str().unwrap(), "").unwrap();
    let model = z.load_model(EFF, &Value::Null).unwrap();
    for (what, bomb) in &bombs {
        let t = Instant::now();
        let e = predict(&model, &[Input::Bytes(bomb)]).expect_err(what);
        assert!(e.message.contains("16384x16384 is too large"), "{what}: {e}");
        assert!(t.elapsed() < Duration::from_millis(500), "{what}: {:?}", t.elapsed());
    }
    let cat = std::fs::read(image("cat_224.jpg")).unwrap();
    assert_eq!(predict(&model, &[Input::Bytes(&cat)]).unwrap().results[0]["label"], json!("Egyptian cat"));

    // The AI server: 16 bomb frames on one stream, each refused from its header with PySDK's
    // reshape error; the server's peak memory does not move and the stream goes on working.
    let server = Running::start(zoo.path());
    let mut s = server.stream(EFF);
    assert_cat(&mut s);
    let peak = server.status_kib("VmHWM:");
    let t = Instant::now();
    for i in 0..16 {
        let (what, bomb) = &bombs[i % 2];
        let e = frame_result(&mut s, bomb).expect_err(what);
        assert!(e.contains("Cannot reshape the tensor: received a 16384x16384 image, model input #0 is 224x224x3"), "{what}: {e}");
    }
    let elapsed = t.elapsed();
    let grown = server.status_kib("VmHWM:").saturating_sub(peak);
    eprintln!("16 bomb frames: {elapsed:?}, server peak RSS grew {grown} KiB");
    assert!(grown < 64 << 10, "server peak RSS grew by {grown} KiB");
    assert!(elapsed < Duration::from_secs(2), "{elapsed:?}");
    assert_cat(&mut s);
}
