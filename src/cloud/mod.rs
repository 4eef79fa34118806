//! Cloud zoo HTTP client (cloud-api.md §1–2): the endpoints PySDK 1.5.0 uses, with its headers
//! and its error wording, over synchronous `ureq`.
pub mod infer;
pub mod token;

use crate::address::CloudZoo;
use crate::error::{Code, Error, Result};
use serde_json::Value;
use std::io::{Read, Write};
use std::time::Duration;

/// Version string sent as `dg_version` (the PySDK release this crate is compatible with).
pub const DG_VERSION: &str = "1.5.0";

/// Token value that disables the zoo existence check (`get_supported_devices`).
pub const SKIP_TOKEN: &str = "__SKIP__";

/// Per-request connect timeout (PySDK: 5 s).
const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);
/// Read timeout per socket read for JSON requests.
const READ_TIMEOUT: Duration = Duration::from_secs(10);
/// Read timeout per socket read for archives: a slow server may take a while to start one.
const DOWNLOAD_READ_TIMEOUT: Duration = Duration::from_secs(30);
/// A download that moves fewer than `LOW_SPEED_BYTES` in `LOW_SPEED_WINDOW` has stalled: a
/// server trickling a byte now and then never hits the per-read timeout and would hold the
/// client (and the model's download lock) for hours.
const LOW_SPEED_BYTES: u64 = 1024;
const LOW_SPEED_WINDOW: Duration = DOWNLOAD_READ_TIMEOUT;
/// Attempts for transport failures (PySDK: `Retry(total=3)` = 1 + 3).
const ATTEMPTS: usize = 4;

/// The per-user application data directory PySDK uses (`~/.local/share/DeGirum`,
/// `%APPDATA%\DeGirum`); `None` when no home directory is known.
pub fn degirum_appdata(settings: &crate::settings::Settings) -> Option<std::path::PathBuf> {
    settings.os_appdata().map(|d| d.join("DeGirum"))
}

/// Where a resumed archive download continues: the bytes already held and the `ETag` of the
/// reply they came from.
#[derive(Debug, Clone, Copy)]
pub struct Resume<'a> {
    pub offset: u64,
    pub etag: Option<&'a str>,
}

/// What an archive reply holds: its body covers bytes `start..total` of the archive.
#[derive(Debug, Clone)]
pub struct ArchiveReply {
    pub start: u64,
    pub total: u64,
    pub etag: Option<String>,
}

/// A request the server refused (status, with the URL and reply) or that never got an answer.
enum Refused {
    Status(u16, (String, Box<ureq::Response>)),
    Transport(Error),
}

/// A client of one cloud zoo.
#[derive(Debug, Clone)]
pub struct CloudClient {
    zoo: CloudZoo,
    token: String,
    agent: ureq::Agent,
}

impl CloudClient {
    pub fn new(zoo: &CloudZoo, token: &str) -> Self {
        let agent = ureq::AgentBuilder::new()
            .timeout_connect(CONNECT_TIMEOUT)
            .timeout_read(DOWNLOAD_READ_TIMEOUT)
            .timeout_write(READ_TIMEOUT)
            .user_agent(concat!("dgzoo/", env!("CARGO_PKG_VERSION")))
            .build();
        CloudClient { zoo: zoo.clone(), token: token.to_string(), agent }
    }

    pub fn zoo(&self) -> &CloudZoo {
        &self.zoo
    }
    pub fn token(&self) -> &str {
        &self.token
    }

    /// `/<org>/<zoo>` percent-quoted like `urllib.parse.quote` (keeps `/`).
    fn zoo_path(&self) -> String {
        format!("/{}/{}", quote(&self.zoo.org), quote(&self.zoo.zoo))
    }

    /// GET #1: does the zoo exist and may this token read it?
    pub fn zoos_check(&self) -> Result<()> {
        self.get_json(&format!("/api/v1/public/zoos-check{}", self.zoo_path())).map(|_| ())
    }

    /// GET #2/#3: `{name: params}` (full) or `{name: anything}` (short).
    pub fn list_models(&self, short: bool) -> Result<serde_json::Map<String, Value>> {
        let q = if short { "?short=true" } else { "" };
        let v = self.get_json(&format!("/zoo/v1/public/models{}{q}", self.zoo_path()))?;
        match v {
            Value::Object(m) => Ok(m),
            other => Err(self.ill_formed("model list", &other)),
        }
    }

    /// GET #4: `{"model_params": {...}, "model_labels": {...}}`.
    pub fn model_info(&self, model: &str) -> Result<Value> {
        let v = self.get_json(&format!("/zoo/v1/public/models{}/{}/info", self.zoo_path(), quote(model)))?;
        if !v.get("model_params").is_some_and(Value::is_object) {
            return Err(self.ill_formed(&format!("info of model '{model}'"), &v));
        }
        Ok(v)
    }

    /// GET #5: the label dictionary.
    pub fn dictionary(&self, model: &str) -> Result<Value> {
        self.get_json(&format!("/zoo/v1/public/models{}/{}/dictionary", self.zoo_path(), quote(model)))
    }

    /// GET #7: is `checksum` the current checksum of the model?
    pub fn check(&self, model: &str, checksum: &str) -> Result<bool> {
        let v = self.get_json(&format!("/zoo/v1/public/models{}/{}/check?checksum={}", self.zoo_path(), quote(model), quote_all(checksum)))?;
        v.get("status")
            .and_then(Value::as_bool)
            .ok_or_else(|| Error::new(Code::Protocol, format!("Ill-formed response when querying checksum of cloud model {}/{model}: {v}", self.ext_zoo())))
    }

    /// GET #8: the cloud's system info.
    pub fn system_info(&self) -> Result<Value> {
        self.get_json("/devices/api/v1/public/system-info")
    }

    /// GET #6: stream the model archive into `out`; returns the byte count. Fails unless the
    /// server sent `Content-Length` and exactly that many bytes arrived. `progress` gets
    /// (received, total) after every chunk.
    pub fn download(&self, model: &str, out: &mut dyn Write, progress: &mut dyn FnMut(u64, u64)) -> Result<u64> {
        let (d, body) = self.open_download(model, None)?;
        self.copy_body(model, &d, body, out, progress)
    }

    /// GET #6, from `resume.offset` on when given (`Range`, with `If-Range` when the earlier
    /// reply had an `ETag`): the reply says where its body starts. A server that ignores the
    /// range, or whose archive changed (the `If-Range` tag no longer matches), sends the whole
    /// archive (`start` 0); a range past the end (416) is asked again without a range.
    pub fn open_download(&self, model: &str, resume: Option<Resume<'_>>) -> Result<(ArchiveReply, Box<dyn Read + Send>)> {
        let path = format!("/zoo/v1/public/models{}/{}", self.zoo_path(), quote(model));
        let range = resume.as_ref().filter(|r| r.offset > 0).map(|r| format!("bytes={}-", r.offset));
        let mut headers: Vec<(&str, &str)> = Vec::new();
        if let Some(r) = &range {
            headers.push(("range", r));
            if let Some(tag) = resume.as_ref().and_then(|r| r.etag) {
                headers.push(("if-range", tag));
            }
        }
        let resp = match self.send_with(&path, true, &headers) {
            Err(Refused::Status(416, _)) if range.is_some() => self.send_with(&path, true, &[]),
            r => r,
        }
        .map_err(|r| self.refused(r))?;
        let length: u64 = resp
            .header("Content-Length")
            .and_then(|v| v.trim().parse().ok())
            .ok_or_else(|| Error::new(Code::Protocol, format!("Download of model '{model}' from {} has no Content-Length", self.host())))?;
        let etag = resp.header("ETag").map(str::to_string);
        let (start, total) = if resp.status() == 206 {
            // `bytes START-END/TOTAL`, and it must be the range asked for.
            let cr = resp.header("Content-Range").unwrap_or_default().to_string();
            let parsed = cr.strip_prefix("bytes ").and_then(|r| r.split_once('/')).and_then(|(span, total)| {
                let (a, b) = span.split_once('-')?;
                Some((a.trim().parse::<u64>().ok()?, b.trim().parse::<u64>().ok()?, total.trim().parse::<u64>().ok()?))
            });
            match parsed {
                Some((a, b, t)) if Some(a) == resume.as_ref().map(|r| r.offset) && b + 1 == t && b + 1 - a == length => (a, t),
                _ => return Err(Error::new(Code::Protocol, format!("Download of model '{model}' from {}: unexpected Content-Range '{cr}'", self.host()))),
            }
        } else {
            (0, length)
        };
        Ok((ArchiveReply { start, total, etag }, Box::new(resp.into_reader().take(length.saturating_add(1)))))
    }

    /// Copy the body of `open_download` into `out`: exactly `total - start` bytes, else an
    /// error (`Network` when the transfer broke off). Returns the bytes copied.
    pub fn copy_body(
        &self,
        model: &str,
        d: &ArchiveReply,
        mut reader: Box<dyn Read + Send>,
        out: &mut dyn Write,
        progress: &mut dyn FnMut(u64, u64),
    ) -> Result<u64> {
        let (start, total) = (d.start, d.total);
        let want = total - start;
        let mut buf = vec![0u8; 256 * 1024];
        let mut got = 0u64;
        // The last time LOW_SPEED_BYTES more had arrived, and the count then.
        let mut mark = (std::time::Instant::now(), 0u64);
        loop {
            let n = match reader.read(&mut buf) {
                Ok(0) => break,
                Ok(n) => n,
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
                Err(e) => {
                    return Err(Error::new(
                        Code::Network,
                        format!("Unable to access server {}: download of model '{model}' interrupted after {} of {total} bytes: {e}", self.host(), start + got),
                    ))
                }
            };
            got += n as u64;
            if got > want {
                return Err(Error::new(Code::Protocol, format!("Download of model '{model}': server sent more than its Content-Length {want}")));
            }
            out.write_all(&buf[..n]).map_err(|e| Error::io(format!("Cannot write downloaded model '{model}': {e}")))?;
            progress(start + got, total);
            if got - mark.1 >= LOW_SPEED_BYTES {
                mark = (std::time::Instant::now(), got);
            } else if mark.0.elapsed() >= LOW_SPEED_WINDOW {
                return Err(Error::new(
                    Code::Network,
                    format!(
                        "Unable to access server {}: download of model '{model}' stalled: {} bytes in the last {} s, {} of {total} bytes received",
                        self.host(),
                        got - mark.1,
                        mark.0.elapsed().as_secs(),
                        start + got
                    ),
                ));
            }
        }
        if got != want {
            return Err(Error::new(Code::Network, format!("Download of model '{model}' from {} truncated: got {} of {total} bytes", self.host(), start + got)));
        }
        Ok(got)
    }

    /// `org/zoo` as used in cloud model names.
    pub fn ext_zoo(&self) -> String {
        format!("{}/{}", self.zoo.org, self.zoo.zoo)
    }

    fn host(&self) -> &str {
        &self.zoo.host
    }

    fn ill_formed(&self, what: &str, v: &Value) -> Error {
        let mut s = v.to_string();
        s.truncate(200);
        Error::new(Code::Protocol, format!("Unable to parse response from server {}: {what} is not what was expected: {s}", self.host()))
    }

    fn refused(&self, r: Refused) -> Error {
        match r {
            Refused::Status(code, (url, resp)) => self.status_error(&url, code, *resp),
            Refused::Transport(e) => e,
        }
    }

    fn get_json(&self, path: &str) -> Result<Value> {
        let resp = self.send(path, false)?;
        let mut body = String::new();
        resp.into_reader()
            .take(256 << 20)
            .read_to_string(&mut body)
            .map_err(|e| Error::new(Code::Network, format!("Unable to access server {}: {e}", self.host())))?;
        serde_json::from_str(&body).map_err(|_| {
            let mut b = body.clone();
            b.truncate(200);
            Error::new(Code::Protocol, format!("Unable to parse response from server {}: {b}", self.host()))
        })
    }

    /// One GET with PySDK's headers, retries on transport errors, and its error mapping.
    fn send(&self, path: &str, octet: bool) -> Result<ureq::Response> {
        self.send_with(path, octet, &[]).map_err(|r| self.refused(r))
    }

    /// `send` with extra headers, a refusal (status >= 400) returned as such.
    fn send_with(&self, path: &str, octet: bool, extra: &[(&str, &str)]) -> std::result::Result<ureq::Response, Refused> {
        let url = format!("{}{path}", self.zoo.base());
        let mut last = String::new();
        for attempt in 0..ATTEMPTS {
            if attempt > 0 {
                std::thread::sleep(Duration::from_millis(200 * attempt as u64));
            }
            let mut req = self.agent.get(&url).set("dg_version", DG_VERSION);
            if !octet {
                req = req.timeout(READ_TIMEOUT + CONNECT_TIMEOUT);
            }
            if !self.token.is_empty() {
                req = req.set("token", &self.token);
            }
            if octet {
                req = req.set("accept", "application/octet-stream");
            }
            for (k, v) in extra {
                req = req.set(k, v);
            }
            match req.call() {
                Ok(r) => return Ok(r),
                Err(ureq::Error::Status(code, r)) => return Err(Refused::Status(code, (url, Box::new(r)))),
                Err(ureq::Error::Transport(t)) => last = t.to_string(),
            }
        }
        Err(Refused::Transport(Error::new(Code::Network, format!("Unable to access server {}: {last}", self.host()))))
    }

    fn status_error(&self, url: &str, code: u16, r: ureq::Response) -> Error {
        let reason = r.status_text().to_string();
        let mut body = String::new();
        let _ = r.into_reader().take(1 << 20).read_to_string(&mut body);
        let detail = serde_json::from_str::<Value>(&body).ok().and_then(|j| j.get("detail").cloned()).map(|d| match d {
            Value::String(s) => s,
            other => other.to_string(),
        });
        if code == 401 {
            let d = detail.unwrap_or_else(|| "invalid token value".into());
            return Error::new(Code::Auth, format!("Unable to connect to server {}: {d}", self.host()));
        }
        let kind = if code < 500 { "Client Error" } else { "Server Error" };
        let http = format!("{code} {kind}: {reason} for url: {url}");
        // dg-zoo-server answers 400 for an unknown zoo or model; 5xx means the cloud is unwell
        // (callers may then fall back to a cached copy).
        let c = match code {
            400 | 404 => Code::NotFound,
            403 => Code::Auth,
            500.. => Code::Network,
            _ => Code::Protocol,
        };
        match detail {
            Some(d) => Error::new(c, format!("{d}. (cloud server response: {http})")),
            None => Error::new(c, http),
        }
    }
}

const QUOTE_SET: &percent_encoding::AsciiSet = &percent_encoding::NON_ALPHANUMERIC.remove(b'_').remove(b'.').remove(b'-').remove(b'~').remove(b'/');
const QUOTE_ALL_SET: &percent_encoding::AsciiSet = &percent_encoding::NON_ALPHANUMERIC.remove(b'_').remove(b'.').remove(b'-').remove(b'~');

/// `urllib.parse.quote(s)` (safe = "/").
pub fn quote(s: &str) -> String {
    percent_encoding::utf8_percent_encode(s, QUOTE_SET).to_string()
}
/// Quote a query value (nothing safe).
pub fn quote_all(s: &str) -> String {
    percent_encoding::utf8_percent_encode(s, QUOTE_ALL_SET).to_string()
}

#[cfg(test)]
mod tests {
    use super::*;
    #[test]
    fn quoting() {
        assert_eq!(quote("a b/c"), "a%20b/c");
        assert_eq!(quote("m--1x1_q"), "m--1x1_q");
        assert_eq!(quote_all("a/b+c"), "a%2Fb%2Bc");
    }
}
