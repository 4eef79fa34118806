//! Classification of `connect(host, zoo_url)` arguments (zoo-and-filters.md §2–3).
use crate::error::{Error, Result};
use std::path::PathBuf;

/// Default AI server port (asio and, by default, http).
pub const DEFAULT_PORT: u16 = 8778;
/// Default cloud host and zoo.
pub const DEFAULT_CLOUD_HOST: &str = "hub.degirum.com";
pub const DEFAULT_CLOUD_ZOO: &str = "degirum/public";

/// Where inference runs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Host {
    Local,
    Cloud,
    /// One AI server, or (dgzoo's extension, `host1:port,host2:port`) several serving the same
    /// zoo, in order of preference: the client fails over between them (`aiclient`). Never empty.
    AiServer(Vec<ServerAddress>),
}

/// The separator of a fail-over list. A hostname, an IPv4/IPv6 address and PySDK's prefixes
/// never contain it, so a list cannot be mistaken for a single designator.
pub const SERVER_LIST_SEPARATOR: char = ',';

/// An AI server address (`host`, `host:port`, `http://host[:port]`, `asio://host[:port]`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServerAddress {
    pub host: String,
    pub port: u16,
    pub http: bool,
}

impl ServerAddress {
    /// Parse like the C++ SDK's `fromHostname`: prefix found by substring search (`http://`
    /// first, then `asio://`), port after the last `:`, default 8778.
    pub fn parse(s: &str) -> Result<Self> {
        let (rest, http) = if let Some(i) = s.find("http://") {
            (&s[i + 7..], true)
        } else if let Some(i) = s.find("asio://") {
            (&s[i + 7..], false)
        } else {
            (s, false)
        };
        let rest = rest.trim_end_matches('/');
        let (host, port) = match rest.rfind(':') {
            Some(i) => {
                let p = &rest[i + 1..];
                let port = p.parse::<u16>().map_err(|_| Error::invalid(format!("Incorrect AI server address '{s}': bad port '{p}'")))?;
                (&rest[..i], port)
            }
            None => (rest, DEFAULT_PORT),
        };
        if host.is_empty() {
            return Err(Error::invalid(format!("Incorrect AI server address '{s}': host is empty")));
        }
        Ok(ServerAddress { host: host.to_string(), port, http })
    }
}

/// A cloud zoo: `<scheme>://<host>/<org>/<zoo>`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CloudZoo {
    pub scheme: String,
    pub host: String,
    pub org: String,
    pub zoo: String,
}

impl CloudZoo {
    /// `<scheme>://<host>` (the cloud root used for tokens and the model cache).
    pub fn base(&self) -> String {
        format!("{}://{}", self.scheme, self.host)
    }
    pub fn url(&self) -> String {
        format!("{}://{}/{}/{}", self.scheme, self.host, self.org, self.zoo)
    }
}

/// The zoo side of a connection.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ZooLocation {
    /// A local directory scanned for model configs.
    LocalDir(PathBuf),
    /// A single model config file.
    LocalFile(PathBuf),
    /// A cloud zoo.
    Cloud(CloudZoo),
    /// The AI server's own zoo.
    AiServerZoo,
}

/// Minimal `urllib.parse.urlparse`: (scheme, netloc, path), query and fragment dropped.
fn urlparse(url: &str) -> (String, String, String) {
    let mut rest = url;
    let mut scheme = String::new();
    if let Some(i) = url.find(':') {
        let cand = &url[..i];
        let ok =
            cand.chars().next().is_some_and(|c| c.is_ascii_alphabetic()) && cand.chars().all(|c| c.is_ascii_alphanumeric() || matches!(c, '+' | '-' | '.'));
        if ok {
            scheme = cand.to_ascii_lowercase();
            rest = &url[i + 1..];
        }
    }
    let mut netloc = String::new();
    if let Some(r) = rest.strip_prefix("//") {
        let end = r.find(['/', '?', '#']).unwrap_or(r.len());
        netloc = r[..end].to_string();
        rest = &r[end..];
    }
    let end = rest.find(['?', '#']).unwrap_or(rest.len());
    (scheme, netloc, rest[..end].to_string())
}

/// PySDK's `parse_cloud_url`: `Some` if `zoo_url` designates a cloud zoo.
pub fn parse_cloud_url(zoo_url: &str) -> Option<CloudZoo> {
    let (scheme, netloc, path) = urlparse(zoo_url);
    let had_scheme = !scheme.is_empty();
    let scheme = if had_scheme { scheme } else { "https".to_string() };
    if scheme != "http" && scheme != "https" {
        return None;
    }
    let host = if netloc.is_empty() { DEFAULT_CLOUD_HOST.to_string() } else { netloc };
    let path = if path.is_empty() {
        format!("/{DEFAULT_CLOUD_ZOO}")
    } else {
        if !had_scheme && path.starts_with(['.', '/', '\\']) {
            return None;
        }
        path
    };
    let trimmed = path.trim_matches('/');
    let mut parts = trimmed.split('/');
    match (parts.next(), parts.next(), parts.next()) {
        (Some(org), Some(zoo), None) => Some(CloudZoo { scheme, host, org: org.to_string(), zoo: zoo.to_string() }),
        _ => None,
    }
}

/// Parse the inference host designator.
pub fn parse_host(host: &str) -> Result<Host> {
    match host {
        "@cloud" => Ok(Host::Cloud),
        "@local" => Ok(Host::Local),
        h if h.starts_with('@') => Err(Error::invalid(format!(
            "Incorrect inference host address '{h}'. It should be either @local, or @cloud, a registered external designator, or a valid AI server address"
        ))),
        h => Ok(Host::AiServer(parse_server_list(h)?)),
    }
}

/// `host[:port]` or a fail-over list `a[:port],b[:port],...` (each element with its own
/// optional `http://` / `asio://` prefix). Empty elements and repeated servers are errors.
pub fn parse_server_list(s: &str) -> Result<Vec<ServerAddress>> {
    if !s.contains(SERVER_LIST_SEPARATOR) {
        return Ok(vec![ServerAddress::parse(s)?]);
    }
    let mut list: Vec<ServerAddress> = Vec::new();
    for part in s.split(SERVER_LIST_SEPARATOR).map(str::trim) {
        if part.is_empty() {
            return Err(Error::invalid(format!("Incorrect AI server address list '{s}': empty element")));
        }
        let a = ServerAddress::parse(part)?;
        if list.iter().any(|b| b.host == a.host && b.port == a.port) {
            return Err(Error::invalid(format!("Incorrect AI server address list '{s}': '{part}' appears twice")));
        }
        list.push(a);
    }
    Ok(list)
}

/// Classify a `(host, zoo_url)` pair into an inference host and a zoo, with PySDK's errors.
pub fn classify(host: &str, zoo_url: &str) -> Result<(Host, ZooLocation)> {
    let host = parse_host(host)?;
    let cloud = parse_cloud_url(zoo_url);
    let incorrect_cloud = || Error::invalid(format!("ZooManager: incorrect cloud model zoo URL '{zoo_url}'"));
    let zoo = match &host {
        Host::Cloud => ZooLocation::Cloud(cloud.ok_or_else(incorrect_cloud)?),
        Host::AiServer(_) => {
            if zoo_url.is_empty() || urlparse(zoo_url).0 == "aiserver" {
                ZooLocation::AiServerZoo
            } else {
                ZooLocation::Cloud(cloud.ok_or_else(incorrect_cloud)?)
            }
        }
        Host::Local => match cloud {
            Some(c) => ZooLocation::Cloud(c),
            None => {
                let (scheme, netloc, path) = urlparse(zoo_url);
                let p =
                    if scheme == "file" { PathBuf::from(crate::protocol::http::percent_decode(&format!("{netloc}{path}"))) } else { PathBuf::from(zoo_url) };
                if p.is_dir() {
                    ZooLocation::LocalDir(p)
                } else if p.is_file() {
                    ZooLocation::LocalFile(p)
                } else {
                    return Err(Error::not_found(format!("ZooManager: incorrect local model zoo URL '{zoo_url}': path '{}' does not exist", p.display())));
                }
            }
        },
    };
    Ok((host, zoo))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cz(s: &str) -> Option<String> {
        parse_cloud_url(s).map(|c| c.url())
    }

    #[test]
    fn cloud_url_table() {
        assert_eq!(cz("").as_deref(), Some("https://hub.degirum.com/degirum/public"));
        assert_eq!(cz("myorg/myzoo").as_deref(), Some("https://hub.degirum.com/myorg/myzoo"));
        assert_eq!(cz("a/b/").as_deref(), Some("https://hub.degirum.com/a/b"));
        assert_eq!(cz("https://hub.degirum.com").as_deref(), Some("https://hub.degirum.com/degirum/public"));
        assert_eq!(cz("http://127.0.0.1:8000/a/b").as_deref(), Some("http://127.0.0.1:8000/a/b"));
        for not in ["http://host/a", "http://host/a/b/c", "hub.degirum.com/a/b", "./zoo", "/abs/zoo", "zoo", "C:\\zoo", "file:///tmp/zoo", "aiserver://x"] {
            assert_eq!(cz(not), None, "{not}");
        }
        // The relative-path pitfall: one slash, no leading dot → a cloud zoo.
        assert_eq!(cz("models/zoo.json").as_deref(), Some("https://hub.degirum.com/models/zoo.json"));
    }

    #[test]
    fn host_designators() {
        assert_eq!(parse_host("@local").unwrap(), Host::Local);
        assert_eq!(parse_host("@cloud").unwrap(), Host::Cloud);
        assert_eq!(
            parse_host("@foo").unwrap_err().message,
            "Incorrect inference host address '@foo'. It should be either @local, or @cloud, a registered external designator, or a valid AI server address"
        );
        assert_eq!(parse_host("localhost").unwrap(), Host::AiServer(vec![ServerAddress { host: "localhost".into(), port: 8778, http: false }]));
        assert_eq!(parse_host("1.2.3.4:99").unwrap(), Host::AiServer(vec![ServerAddress { host: "1.2.3.4".into(), port: 99, http: false }]));
        assert_eq!(parse_host("http://h:5").unwrap(), Host::AiServer(vec![ServerAddress { host: "h".into(), port: 5, http: true }]));
        assert_eq!(parse_host("http://h").unwrap(), Host::AiServer(vec![ServerAddress { host: "h".into(), port: 8778, http: true }]));
        assert_eq!(parse_host("asio://h:7").unwrap(), Host::AiServer(vec![ServerAddress { host: "h".into(), port: 7, http: false }]));
        assert!(parse_host("h:notaport").is_err());
    }

    #[test]
    fn fail_over_lists() {
        let a = |host: &str, port, http| ServerAddress { host: host.into(), port, http };
        assert_eq!(parse_host("h1:1,h2").unwrap(), Host::AiServer(vec![a("h1", 1, false), a("h2", 8778, false)]));
        assert_eq!(parse_host("http://h1:1, asio://h2:2").unwrap(), Host::AiServer(vec![a("h1", 1, true), a("h2", 2, false)]));
        assert_eq!(parse_host("h1:1,").unwrap_err().message, "Incorrect AI server address list 'h1:1,': empty element");
        assert_eq!(parse_host("h1:1,h1:1").unwrap_err().message, "Incorrect AI server address list 'h1:1,h1:1': 'h1:1' appears twice");
        assert!(parse_host("h1:1,h2:x").unwrap_err().message.contains("bad port 'x'"));
        assert_eq!(classify("h1:1,h2:2", "").unwrap().1, ZooLocation::AiServerZoo);
    }

    #[test]
    fn combinations() {
        let dir = std::env::temp_dir();
        let d = dir.to_string_lossy().into_owned();
        assert_eq!(classify("@local", &d).unwrap().1, ZooLocation::LocalDir(dir.clone()));
        assert_eq!(classify("@local", &format!("file://{d}")).unwrap().1, ZooLocation::LocalDir(dir.clone()));
        assert!(matches!(classify("@local", "").unwrap().1, ZooLocation::Cloud(_)));
        assert_eq!(
            classify("@local", "/no/such/zoo").unwrap_err().message,
            "ZooManager: incorrect local model zoo URL '/no/such/zoo': path '/no/such/zoo' does not exist"
        );
        assert!(classify("@local", "aiserver://x").unwrap_err().message.contains("incorrect local model zoo URL"));
        assert_eq!(classify("@cloud", &d).unwrap_err().message, format!("ZooManager: incorrect cloud model zoo URL '{d}'"));
        assert!(matches!(classify("@cloud", "").unwrap().1, ZooLocation::Cloud(_)));
        assert_eq!(classify("localhost", "").unwrap().1, ZooLocation::AiServerZoo);
        assert_eq!(classify("localhost", "aiserver://").unwrap().1, ZooLocation::AiServerZoo);
        assert!(matches!(classify("localhost", "http://127.0.0.1:1/a/b").unwrap().1, ZooLocation::Cloud(_)));
        assert_eq!(classify("localhost", &d).unwrap_err().message, format!("ZooManager: incorrect cloud model zoo URL '{d}'"));
    }
}
