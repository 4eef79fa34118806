//! Streaming `multipart/form-data` reader: copies the part named `field` to a writer without
//! holding the body in memory (model uploads can be gigabytes).
use std::io::{Read, Write};

/// The boundary of a `multipart/form-data; boundary=...` content type.
pub fn boundary(content_type: &str) -> Option<String> {
    let (kind, params) = content_type.split_once(';')?;
    if !kind.trim().eq_ignore_ascii_case("multipart/form-data") {
        return None;
    }
    params.split(';').find_map(|p| {
        let (k, v) = p.split_once('=')?;
        (k.trim().eq_ignore_ascii_case("boundary")).then(|| v.trim().trim_matches('"').to_string())
    })
}

fn find(hay: &[u8], needle: &[u8]) -> Option<usize> {
    if needle.is_empty() || hay.len() < needle.len() {
        return None;
    }
    hay.windows(needle.len()).position(|w| w == needle)
}

/// Buffered reader over the body with look-ahead for delimiters.
struct Scanner<'a> {
    r: &'a mut dyn Read,
    buf: Vec<u8>,
    eof: bool,
}

impl Scanner<'_> {
    fn fill(&mut self) -> std::io::Result<bool> {
        if self.eof {
            return Ok(false);
        }
        let mut chunk = [0u8; 64 * 1024];
        let n = self.r.read(&mut chunk)?;
        if n == 0 {
            self.eof = true;
            return Ok(false);
        }
        self.buf.extend_from_slice(&chunk[..n]);
        Ok(true)
    }

    /// Pass bytes up to `delim` to `out` (or drop them) and consume the delimiter. Memory stays
    /// bounded by the chunk size plus the delimiter length.
    fn copy_until(&mut self, delim: &[u8], mut out: Option<&mut dyn Write>) -> std::io::Result<bool> {
        loop {
            if let Some(i) = find(&self.buf, delim) {
                if let Some(o) = out.as_mut() {
                    o.write_all(&self.buf[..i])?;
                }
                self.buf.drain(..i + delim.len());
                return Ok(true);
            }
            let keep = delim.len().saturating_sub(1).min(self.buf.len());
            let flush = self.buf.len() - keep;
            if let Some(o) = out.as_mut() {
                o.write_all(&self.buf[..flush])?;
            }
            self.buf.drain(..flush);
            if !self.fill()? {
                return Ok(false);
            }
        }
    }

    /// Bytes up to `delim` (bounded by `limit`), delimiter consumed.
    fn take_until(&mut self, delim: &[u8], limit: usize) -> std::io::Result<Option<Vec<u8>>> {
        loop {
            if let Some(i) = find(&self.buf, delim) {
                let v = self.buf[..i].to_vec();
                self.buf.drain(..i + delim.len());
                return Ok(Some(v));
            }
            if self.buf.len() > limit || !self.fill()? {
                return Ok(None);
            }
        }
    }
}

/// Copy the part named `field` to `out`; returns its `filename`. Errors are texts for a 400.
pub fn copy_field(body: &mut dyn Read, boundary: &str, field: &str, out: &mut dyn Write) -> Result<String, String> {
    let io = |e: std::io::Error| format!("error reading the upload: {e}");
    let mut s = Scanner { r: body, buf: Vec::new(), eof: false };
    let first = format!("--{boundary}");
    let delim = format!("\r\n--{boundary}");
    if !s.copy_until(first.as_bytes(), None).map_err(io)? {
        return Err("malformed multipart body: no boundary".into());
    }
    loop {
        // After a boundary: "--" ends the body, CRLF starts a part.
        let tail = s.take_until(b"\r\n", 1024).map_err(io)?.ok_or("malformed multipart body")?;
        if tail.starts_with(b"--") {
            return Err(format!("the form has no '{field}' file"));
        }
        let head = s.take_until(b"\r\n\r\n", 16 * 1024).map_err(io)?.ok_or("malformed multipart part headers")?;
        let head = String::from_utf8_lossy(&head).into_owned();
        let disp = head.lines().find(|l| l.to_ascii_lowercase().starts_with("content-disposition:")).unwrap_or_default();
        let param = |name: &str| {
            disp.split(';').find_map(|p| {
                let (k, v) = p.split_once('=')?;
                (k.trim().eq_ignore_ascii_case(name)).then(|| v.trim().trim_matches('"').to_string())
            })
        };
        if param("name").as_deref() == Some(field) {
            let filename = param("filename").unwrap_or_default();
            if !s.copy_until(delim.as_bytes(), Some(out)).map_err(io)? {
                return Err("truncated upload: closing boundary missing".into());
            }
            return Ok(filename);
        }
        if !s.copy_until(delim.as_bytes(), None).map_err(io)? {
            return Err("malformed multipart body".into());
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    #[test]
    fn parse_parts() {
        let body = b"--XyZ\r\nContent-Disposition: form-data; name=\"other\"\r\n\r\nhello\r\n--XyZ\r\nContent-Disposition: form-data; name=\"file\"; filename=\"m.zip\"\r\nContent-Type: application/zip\r\n\r\nab\r\n--Xyc\r\n--XyZ--\r\n";
        assert_eq!(boundary("multipart/form-data; boundary=XyZ").as_deref(), Some("XyZ"));
        // One byte at a time: delimiters split across reads.
        struct Slow<'a>(&'a [u8]);
        impl Read for Slow<'_> {
            fn read(&mut self, b: &mut [u8]) -> std::io::Result<usize> {
                if self.0.is_empty() || b.is_empty() {
                    return Ok(0);
                }
                b[0] = self.0[0];
                self.0 = &self.0[1..];
                Ok(1)
            }
        }
        let mut out = Vec::new();
        assert_eq!(copy_field(&mut Slow(body), "XyZ", "file", &mut out).unwrap(), "m.zip");
        assert_eq!(out, b"ab\r\n--Xyc");
        assert!(copy_field(&mut &body[..], "XyZ", "nofield", &mut Vec::new()).is_err());
        assert!(copy_field(&mut &body[..60], "XyZ", "file", &mut Vec::new()).is_err());
    }
}
