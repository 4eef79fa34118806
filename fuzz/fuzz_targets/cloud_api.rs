//! Cloud API replies: a real HTTP server on 127.0.0.1 answers every request with the fuzzed
//! status and body (and for the download a fuzzed Content-Length), and the cloud client makes
//! each of its calls against it: zoos-check, model list (full and short), model info, label
//! dictionary, checksum check, system info and the archive download. Also the token file's
//! ISO 8601 expiry dates.
#![no_main]
use dgzoo::address::CloudZoo;
use dgzoo::cloud::CloudClient;
use libfuzzer_sys::fuzz_target;
use std::io::{Read, Write};
use std::net::TcpListener;
use std::sync::{Mutex, OnceLock};

const STATUSES: [u16; 8] = [200, 200, 200, 400, 401, 403, 404, 500];

/// The reply every request gets next; set per input before the client runs.
static REPLY: Mutex<Vec<u8>> = Mutex::new(Vec::new());

fn server() -> &'static str {
    static ADDR: OnceLock<String> = OnceLock::new();
    ADDR.get_or_init(|| {
        let l = TcpListener::bind("127.0.0.1:0").expect("bind 127.0.0.1");
        let addr = l.local_addr().expect("local addr").to_string();
        std::thread::spawn(move || {
            for s in l.incoming() {
                let Ok(mut s) = s else { continue };
                // Read the request head (requests are GETs without a body).
                let mut head = Vec::new();
                let mut b = [0u8; 1024];
                while !head.windows(4).any(|w| w == b"\r\n\r\n") {
                    match s.read(&mut b) {
                        Ok(0) | Err(_) => break,
                        Ok(n) => head.extend_from_slice(&b[..n]),
                    }
                }
                let reply = REPLY.lock().unwrap_or_else(|p| p.into_inner()).clone();
                let _ = s.write_all(&reply);
            }
        });
        addr
    })
}

fuzz_target!(|data: &[u8]| {
    if let Ok(s) = std::str::from_utf8(data) {
        let _ = dgzoo::cloud::token::parse_iso8601(s);
    }
    let Some((&ctl, body)) = data.split_first() else { return };
    let status = STATUSES[usize::from(ctl & 7)];
    // Content-Length: exact most of the time, else one short or one long.
    let len = match ctl >> 6 {
        1 => body.len().saturating_sub(1),
        2 => body.len() + 1,
        _ => body.len(),
    };
    let mut reply = format!("HTTP/1.1 {status} Fuzz\r\nContent-Type: application/json\r\nContent-Length: {len}\r\nConnection: close\r\n\r\n").into_bytes();
    reply.extend_from_slice(body);
    *REPLY.lock().unwrap_or_else(|p| p.into_inner()) = reply;
    let zoo = CloudZoo { scheme: "http".into(), host: server().to_string(), org: "org".into(), zoo: "zoo".into() };
    let c = CloudClient::new(&zoo, if ctl & 8 == 0 { "" } else { "token" });
    let _ = c.zoos_check();
    let _ = c.list_models(false);
    let _ = c.list_models(true);
    let _ = c.model_info("m");
    let _ = c.dictionary("m");
    let _ = c.check("m", "abc");
    let _ = c.system_info();
    let mut out = Vec::new();
    if let Ok(n) = c.download("m", &mut out, &mut |_, _| {}) {
        assert_eq!(n as usize, out.len());
        // Bytes past Content-Length are not part of the body (HTTP framing).
        assert_eq!(out.as_slice(), &body[..len.min(body.len())], "download returned other bytes than the server sent");
    }
});
