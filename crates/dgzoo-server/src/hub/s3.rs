//! A zoo root in S3-compatible object storage (`dgzoo hub --zoo s3://BUCKET/PREFIX`): the same
//! layout as on disk (`PREFIX/tokens.json`, `PREFIX/<org>/<zoo>/<model>.zip` or model folders
//! `PREFIX/<org>/<zoo>/<model>/<file>`, listed recursively for the TTL), through the
//! `object_store` crate's S3 client, configured from the standard AWS environment
//! (`AWS_ENDPOINT_URL`, `AWS_ACCESS_KEY_ID`, `AWS_SECRET_ACCESS_KEY`, `AWS_REGION`, ...); plain
//! HTTP is allowed when the endpoint is `http://`. A zoo exists when any object is under
//! `PREFIX/<org>/<zoo>/` (an empty `.keep` will do).
//!
//! object_store 0.12 rather than 0.13+: 0.12 signs with `ring`, already in the workspace
//! through rustls, where 0.13+ pulls in aws-lc-rs (a C/CMake build).
//!
//! How changes are noticed (several replicas over one bucket, or a plain S3 PUT): each listing
//! (`<org>/`, `<org>/<zoo>/`) and the version of `tokens.json` (a HEAD) are reused for at most
//! the listing TTL ([`LISTING_TTL`] by default, `dgzoo hub --listing-ttl-ms`), then asked
//! again; an archive whose listed ETag changed is re-read. So a new, replaced or deleted model
//! or a changed `tokens.json` shows on every replica within one TTL, without a restart; a
//! replica's own writes show on it at once (it drops its cached listing).
//!
//! Every call blocks on the servers' runtime (`net::runtime()`): the routes run on its
//! blocking pool, where that is allowed. Downloads stream the object's body (one GET, pinned to
//! the listed ETag with `If-Match`) straight into the response: constant memory per download.
use super::folder::FolderFile;
use super::store::{Archive, AsyncBody, PutError, ReadSeek, Storage, Version};
use futures_util::TryStreamExt;
use object_store::aws::{AmazonS3, AmazonS3Builder};
use object_store::path::Path as ObjPath;
use object_store::{GetOptions, GetRange, ObjectMeta, ObjectStore, PutPayload, RetryConfig};
use std::collections::HashMap;
use std::io::{Read, Seek, SeekFrom};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// How long a listing is reused by default.
pub const LISTING_TTL: Duration = super::DEFAULT_LISTING_TTL;
/// Block size of the random-access reader used to parse archives' ZIP directories.
const READ_BLOCK: u64 = 256 * 1024;

/// `s3://BUCKET/PREFIX` split into bucket and prefix (no leading or trailing `/`).
pub fn parse_url(url: &str) -> Result<(String, String), String> {
    let rest = url.strip_prefix("s3://").ok_or_else(|| format!("'{url}' is not an s3://BUCKET/PREFIX address"))?;
    let (bucket, prefix) = rest.split_once('/').unwrap_or((rest, ""));
    if bucket.is_empty() {
        return Err(format!("'{url}' has no bucket name (s3://BUCKET/PREFIX)"));
    }
    Ok((bucket.to_string(), prefix.trim_matches('/').to_string()))
}

/// Block on the servers' runtime from synchronous code: the blocking pool, a plain thread, or
/// (through `block_in_place`) one of its worker threads.
fn wait<F: std::future::Future>(f: F) -> F::Output {
    let rt = crate::net::runtime();
    match tokio::runtime::Handle::try_current() {
        Ok(h) if h.runtime_flavor() == tokio::runtime::RuntimeFlavor::MultiThread => tokio::task::block_in_place(|| rt.block_on(f)),
        _ => rt.block_on(f),
    }
}

fn io_err(e: object_store::Error) -> std::io::Error {
    match e {
        object_store::Error::NotFound { .. } => std::io::Error::new(std::io::ErrorKind::NotFound, e.to_string()),
        e => std::io::Error::other(e.to_string()),
    }
}

fn version_of(meta: &ObjectMeta) -> Version {
    let modified = Some(std::time::SystemTime::from(meta.last_modified));
    let etag = match &meta.e_tag {
        Some(t) if t.starts_with('"') => t.clone(),
        Some(t) => format!("\"{t}\""),
        None => super::archive_etag(meta.size, modified),
    };
    Version { len: meta.size, etag, modified }
}

/// Marks a folder file's tag that is a modification time (the store sent no ETag).
const NO_ETAG: &str = "@";

/// A folder file's tag: its ETag as the store sent it (for `If-Match`), else its mtime.
fn folder_tag(o: &ObjectMeta) -> String {
    o.e_tag.clone().unwrap_or_else(|| format!("{NO_ETAG}{}", o.last_modified.timestamp_nanos_opt().unwrap_or_default()))
}

/// An object's body read synchronously (packing a model folder on the blocking pool).
struct BlockingBody(AsyncBody);

impl Read for BlockingBody {
    fn read(&mut self, out: &mut [u8]) -> std::io::Result<usize> {
        use tokio::io::AsyncReadExt;
        wait(self.0.read(out))
    }
}

/// One listing of a "directory": its sub-prefixes and its objects.
#[derive(Default)]
struct Listing {
    dirs: Vec<String>,
    objects: Vec<ObjectMeta>,
}

/// Recursive listings by `<parts>/**`, with when they were made.
type DeepListings = HashMap<String, (Instant, Arc<Vec<ObjectMeta>>)>;

/// A zoo root in a bucket.
pub struct S3Zoo {
    store: Arc<AmazonS3>,
    url: String,
    prefix: String,
    ttl: Duration,
    listings: Mutex<HashMap<String, (Instant, Arc<Listing>)>>,
    heads: Mutex<HashMap<String, (Instant, Option<ObjectMeta>)>>,
    /// Recursive listings of model folders.
    deep: Mutex<DeepListings>,
    /// Uploads are staged here before they are put.
    staging: tempfile::TempDir,
}

impl S3Zoo {
    /// Connect to `s3://BUCKET/PREFIX` with the AWS settings of the environment and check it
    /// can be listed: a missing bucket, wrong credentials or an endpoint that does not answer
    /// are an error naming the cause.
    pub fn open(url: &str, ttl: Duration) -> Result<S3Zoo, String> {
        let (bucket, prefix) = parse_url(url)?;
        let endpoint = std::env::var("AWS_ENDPOINT_URL").or_else(|_| std::env::var("AWS_ENDPOINT")).unwrap_or_default();
        let mut b = AmazonS3Builder::from_env()
            .with_bucket_name(&bucket)
            // A hub should fail fast at start and on a dead endpoint, not retry for minutes.
            .with_retry(RetryConfig { max_retries: 2, retry_timeout: Duration::from_secs(10), ..Default::default() })
            // Downloads can take long: no whole-request timeout, only the connect one.
            .with_client_options(
                object_store::ClientOptions::new()
                    .with_timeout_disabled()
                    .with_connect_timeout(Duration::from_secs(5))
                    .with_allow_http(endpoint.starts_with("http://")),
            );
        if std::env::var("AWS_REGION").is_err() && std::env::var("AWS_DEFAULT_REGION").is_err() {
            b = b.with_region("us-east-1");
        }
        let store = b.build().map_err(|e| format!("Cannot use zoo {url}: {e}"))?;
        let zoo = S3Zoo {
            store: Arc::new(store),
            url: url.trim_end_matches('/').to_string(),
            prefix,
            ttl,
            listings: Mutex::new(HashMap::new()),
            heads: Mutex::new(HashMap::new()),
            deep: Mutex::new(HashMap::new()),
            staging: tempfile::Builder::new().prefix("dgzoo-hub-s3-").tempdir().map_err(|e| format!("Cannot make a staging directory: {e}"))?,
        };
        let root = zoo.path(&[]);
        wait(zoo.store.list_with_delimiter(Some(&root))).map_err(|e| explain(url, &endpoint, &bucket, &e))?;
        Ok(zoo)
    }

    /// The object path of `parts` under the prefix.
    fn path(&self, parts: &[&str]) -> ObjPath {
        let mut s = self.prefix.clone();
        for p in parts {
            if !s.is_empty() {
                s.push('/');
            }
            s.push_str(p);
        }
        ObjPath::from(s)
    }

    fn archive_path(&self, org: &str, zoo: &str, model: &str) -> ObjPath {
        self.path(&[org, zoo, &format!("{model}.zip")])
    }

    /// The listing of `parts` (cached for the TTL).
    fn listing(&self, parts: &[&str]) -> Arc<Listing> {
        let key = parts.join("/");
        if let Some((at, l)) = self.listings.lock().unwrap_or_else(|p| p.into_inner()).get(&key) {
            if at.elapsed() < self.ttl {
                return l.clone();
            }
        }
        let path = self.path(parts);
        let listing = match wait(self.store.list_with_delimiter(Some(&path))) {
            Ok(r) => Listing { dirs: r.common_prefixes.iter().filter_map(|p| p.filename().map(str::to_string)).collect(), objects: r.objects },
            Err(e) => {
                // Not cached: the next request asks again.
                tracing::warn!("dgzoo hub: cannot list {}/{key}: {e}", self.url);
                return Arc::new(Listing::default());
            }
        };
        let l = Arc::new(listing);
        self.listings.lock().unwrap_or_else(|p| p.into_inner()).insert(key, (Instant::now(), l.clone()));
        l
    }

    /// Every object under `parts` (recursively, cached for the TTL like [`S3Zoo::listing`]).
    fn deep_listing(&self, parts: &[&str]) -> Option<Arc<Vec<ObjectMeta>>> {
        let key = format!("{}/**", parts.join("/"));
        if let Some((at, l)) = self.deep.lock().unwrap_or_else(|p| p.into_inner()).get(&key) {
            if at.elapsed() < self.ttl {
                return Some(l.clone());
            }
        }
        let path = self.path(parts);
        let objects: Vec<ObjectMeta> = match wait(self.store.list(Some(&path)).try_collect()) {
            Ok(o) => o,
            Err(e) => {
                tracing::warn!("dgzoo hub: cannot list {}/{}: {e}", self.url, parts.join("/"));
                return None;
            }
        };
        let l = Arc::new(objects);
        self.deep.lock().unwrap_or_else(|p| p.into_inner()).insert(key, (Instant::now(), l.clone()));
        Some(l)
    }

    /// This replica changed `parts`: its next listing asks the bucket.
    fn forget(&self, parts: &[&str]) {
        let mut l = self.listings.lock().unwrap_or_else(|p| p.into_inner());
        for i in 0..=parts.len() {
            l.remove(&parts[..i].join("/"));
        }
    }

    /// HEAD of a top-level object (cached for the TTL).
    fn head(&self, name: &str) -> Option<ObjectMeta> {
        if let Some((at, m)) = self.heads.lock().unwrap_or_else(|p| p.into_inner()).get(name) {
            if at.elapsed() < self.ttl {
                return m.clone();
            }
        }
        let m = match wait(self.store.head(&self.path(&[name]))) {
            Ok(m) => Some(m),
            Err(object_store::Error::NotFound { .. }) => None,
            Err(e) => {
                tracing::warn!("dgzoo hub: cannot read {}/{name}: {e}", self.url);
                return None;
            }
        };
        self.heads.lock().unwrap_or_else(|p| p.into_inner()).insert(name.to_string(), (Instant::now(), m.clone()));
        m
    }

    fn find(&self, org: &str, zoo: &str, model: &str) -> Option<ObjectMeta> {
        let name = format!("{model}.zip");
        self.listing(&[org, zoo]).objects.iter().find(|o| o.location.filename() == Some(name.as_str())).cloned()
    }

    /// Put a local file as `parts` (multipart for large files, streamed from disk).
    pub fn put_file(&self, parts: &[&str], file: &Path) -> std::io::Result<()> {
        let path = self.path(parts);
        let store: Arc<dyn ObjectStore> = self.store.clone();
        let file = file.to_path_buf();
        wait(async move {
            let mut src = tokio::fs::File::open(&file).await?;
            let mut w = object_store::buffered::BufWriter::new(store, path);
            tokio::io::copy(&mut src, &mut w).await?;
            tokio::io::AsyncWriteExt::shutdown(&mut w).await
        })?;
        self.forget(&parts[..parts.len().saturating_sub(1)]);
        Ok(())
    }
}

/// A clear reason why the bucket cannot be used.
fn explain(url: &str, endpoint: &str, bucket: &str, e: &object_store::Error) -> String {
    let text = e.to_string();
    let at = if endpoint.is_empty() { String::from("AWS S3 (no AWS_ENDPOINT_URL set)") } else { endpoint.to_string() };
    let why = if text.contains("NoSuchBucket") || matches!(e, object_store::Error::NotFound { .. }) {
        format!("bucket '{bucket}' does not exist")
    } else if ["InvalidAccessKeyId", "SignatureDoesNotMatch", "AccessDenied", "403", "401"].iter().any(|k| text.contains(k))
        || matches!(e, object_store::Error::PermissionDenied { .. } | object_store::Error::Unauthenticated { .. })
    {
        String::from("access denied: check AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY")
    } else {
        String::from("the object store does not answer")
    };
    format!("Cannot open zoo {url} at {at}: {why} ({text})")
}

/// A synchronous random-access reader of one object version (ranged GETs of [`READ_BLOCK`]).
struct RangeReader {
    store: Arc<AmazonS3>,
    path: ObjPath,
    len: u64,
    pos: u64,
    buf: bytes::Bytes,
    buf_at: u64,
}

impl Read for RangeReader {
    fn read(&mut self, out: &mut [u8]) -> std::io::Result<usize> {
        if self.pos >= self.len || out.is_empty() {
            return Ok(0);
        }
        let in_buf = self.pos >= self.buf_at && self.pos < self.buf_at + self.buf.len() as u64;
        if !in_buf {
            let end = (self.pos + READ_BLOCK).min(self.len);
            self.buf = wait(self.store.get_range(&self.path, self.pos..end)).map_err(io_err)?;
            self.buf_at = self.pos;
            if self.buf.is_empty() {
                return Ok(0);
            }
        }
        let off = (self.pos - self.buf_at) as usize;
        let n = out.len().min(self.buf.len() - off);
        out[..n].copy_from_slice(&self.buf[off..off + n]);
        self.pos += n as u64;
        Ok(n)
    }
}

impl Seek for RangeReader {
    fn seek(&mut self, to: SeekFrom) -> std::io::Result<u64> {
        let pos = match to {
            SeekFrom::Start(p) => Some(p),
            SeekFrom::End(d) => self.len.checked_add_signed(d),
            SeekFrom::Current(d) => self.pos.checked_add_signed(d),
        };
        self.pos = pos.ok_or_else(|| std::io::Error::new(std::io::ErrorKind::InvalidInput, "seek before the start"))?;
        Ok(self.pos)
    }
}

/// The bytes `start..start+count` of one object version, as a stream read by the response body.
fn stream_object(store: Arc<AmazonS3>, path: ObjPath, e_tag: Option<String>, start: u64, count: u64) -> std::io::Result<AsyncBody> {
    if count == 0 {
        return Ok(Box::pin(tokio::io::empty()));
    }
    let opts = GetOptions { if_match: e_tag, range: Some(GetRange::Bounded(start..start + count)), ..Default::default() };
    let got = wait(store.get_opts(&path, opts)).map_err(io_err)?;
    let body = got.into_stream().map_err(|e| std::io::Error::other(e.to_string()));
    Ok(Box::pin(tokio_util::io::StreamReader::new(body)))
}

impl Storage for S3Zoo {
    fn describe(&self) -> String {
        self.url.clone()
    }

    fn file_version(&self, name: &str) -> Option<Version> {
        self.head(name).as_ref().map(version_of)
    }

    fn read_file(&self, name: &str) -> std::io::Result<Option<Vec<u8>>> {
        let got = wait(async { self.store.get(&self.path(&[name])).await?.bytes().await });
        match got {
            Ok(b) => Ok(Some(b.to_vec())),
            Err(object_store::Error::NotFound { .. }) => Ok(None),
            Err(e) => Err(io_err(e)),
        }
    }

    fn write_file(&self, name: &str, bytes: &[u8]) -> std::io::Result<()> {
        // One PUT replaces an object atomically.
        wait(self.store.put(&self.path(&[name]), PutPayload::from(bytes.to_vec()))).map_err(io_err)?;
        self.heads.lock().unwrap_or_else(|p| p.into_inner()).remove(name);
        Ok(())
    }

    fn subdirs(&self, dir: &[&str]) -> Vec<String> {
        self.listing(dir).dirs.clone()
    }

    fn zoo_exists(&self, org: &str, zoo: &str) -> bool {
        self.listing(&[org]).dirs.iter().any(|d| d == zoo)
    }

    fn archives(&self, org: &str, zoo: &str) -> Vec<(String, Version)> {
        self.listing(&[org, zoo]).objects.iter().filter_map(|o| Some((o.location.filename()?.strip_suffix(".zip")?.to_string(), version_of(o)))).collect()
    }

    fn archive_version(&self, org: &str, zoo: &str, model: &str) -> Option<Version> {
        self.find(org, zoo, model).as_ref().map(version_of)
    }

    fn archive_reader(&self, org: &str, zoo: &str, model: &str, version: &Version) -> std::io::Result<Box<dyn ReadSeek>> {
        let r =
            RangeReader { store: self.store.clone(), path: self.archive_path(org, zoo, model), len: version.len, pos: 0, buf: bytes::Bytes::new(), buf_at: 0 };
        Ok(Box::new(r))
    }

    fn open_archive(&self, org: &str, zoo: &str, model: &str) -> std::io::Result<Option<Archive>> {
        let Some(meta) = self.find(org, zoo, model) else { return Ok(None) };
        let (store, path, e_tag) = (self.store.clone(), meta.location.clone(), meta.e_tag.clone());
        Ok(Some(Archive::new(version_of(&meta), move |start, count| stream_object(store, path, e_tag, start, count))))
    }

    fn local_archive(&self, org: &str, zoo: &str, model: &str, scratch: &Path) -> std::io::Result<PathBuf> {
        let path = self.archive_path(org, zoo, model);
        let scratch = scratch.to_path_buf();
        wait(async {
            let got = self.store.get(&path).await.map_err(io_err)?;
            let mut body = tokio_util::io::StreamReader::new(got.into_stream().map_err(|e| std::io::Error::other(e.to_string())));
            let mut out = tokio::fs::File::create(&scratch).await?;
            tokio::io::copy(&mut body, &mut out).await?;
            tokio::io::AsyncWriteExt::flush(&mut out).await
        })?;
        Ok(scratch)
    }

    fn staging_dir(&self, _org: &str, _zoo: &str) -> PathBuf {
        self.staging.path().to_path_buf()
    }

    fn put_archive(&self, org: &str, zoo: &str, model: &str, staged: tempfile::NamedTempFile, overwrite: bool) -> Result<(), PutError> {
        // Checked against the bucket now, not the cached listing. Two replicas uploading the
        // same new name at the same instant may both succeed (the last one wins): S3
        // conditional writes are not supported by every S3-compatible store.
        if !overwrite {
            match wait(self.store.head(&self.archive_path(org, zoo, model))) {
                Ok(_) => return Err(PutError::AlreadyExists),
                Err(object_store::Error::NotFound { .. }) => {}
                Err(e) => return Err(PutError::Other(e.to_string())),
            }
        }
        let name = format!("{model}.zip");
        self.put_file(&[org, zoo, &name], staged.path()).map_err(|e| PutError::Other(e.to_string()))
    }

    fn delete_archive(&self, org: &str, zoo: &str, model: &str) -> std::io::Result<()> {
        wait(self.store.delete(&self.archive_path(org, zoo, model))).map_err(io_err)?;
        self.forget(&[org, zoo]);
        Ok(())
    }

    fn folders(&self, org: &str, zoo: &str) -> Vec<String> {
        self.listing(&[org, zoo]).dirs.clone()
    }

    fn folder_files(&self, org: &str, zoo: &str, model: &str) -> std::io::Result<Option<Vec<FolderFile>>> {
        let Some(objects) = self.deep_listing(&[org, zoo, model]) else {
            return Err(std::io::Error::other(format!("cannot list {}/{org}/{zoo}/{model}/", self.url)));
        };
        if objects.is_empty() {
            return Ok(None);
        }
        let base = format!("{}/", self.path(&[org, zoo, model]));
        let files = objects
            .iter()
            .filter_map(|o| {
                let name = o.location.as_ref().strip_prefix(&base)?;
                // Keys are not paths: one that is not all safe segments is not served.
                name.split('/').all(dgzoo::cache::archive::is_safe_segment).then(|| FolderFile { name: name.to_string(), len: o.size, tag: folder_tag(o) })
            })
            .collect();
        Ok(Some(files))
    }

    fn folder_file(&self, org: &str, zoo: &str, model: &str, file: &FolderFile) -> std::io::Result<Box<dyn Read + Send>> {
        let mut parts = vec![org, zoo, model];
        parts.extend(file.name.split('/'));
        // Pinned to the listed ETag: an object replaced since fails here rather than mixing versions.
        let e_tag = (!file.tag.starts_with(NO_ETAG)).then(|| file.tag.clone());
        Ok(Box::new(BlockingBody(stream_object(self.store.clone(), self.path(&parts), e_tag, 0, file.len)?)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls() {
        assert_eq!(parse_url("s3://b/p/q/").unwrap(), ("b".into(), "p/q".into()));
        assert_eq!(parse_url("s3://b").unwrap(), ("b".into(), "".into()));
        assert!(parse_url("s3:///p").is_err());
        assert!(parse_url("/tmp/zoo").is_err());
    }
}
