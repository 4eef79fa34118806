//! The hub's web page: a small single-page UI at `/` (HTML, JS and CSS embedded in the binary,
//! no external resource), its zoo listing (`GET /ui/api/zoos`) and its "try it" route
//! (`POST /ui/api/predict/<org>/<zoo>/<model>`, the image as the body). The page sends the
//! token as the `token` header, as the REST API takes it, and keeps it in the browser's
//! sessionStorage: never in a URL.
//!
//! A prediction runs through the hub's own cloud inference: the route connects to this hub
//! as a `@cloud` client (socket.io, the client-side pre-processing and coordinate mapping
//! included), then draws the overlay with the model's `overlay_*` settings.
use super::{error, json_resp, Resp, State};
use axum::body::Body;
use axum::http::{header, HeaderValue, Request, Response};
use base64::Engine as _;
use dgzoo::inference::Input;
use dgzoo::zoo::{ConnectOptions, Zoo};
use http_body_util::BodyExt;
use serde_json::{json, Value};
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;

const INDEX_HTML: &str = include_str!("web/index.html");
const APP_JS: &str = include_str!("web/app.js");
const APP_CSS: &str = include_str!("web/app.css");

/// Largest image the "try it" route takes.
pub const MAX_IMAGE: usize = 16 << 20;

/// The page's settings: where the hub can reach itself, and the client's model cache.
pub struct Web {
    self_addr: SocketAddr,
    cache: tempfile::TempDir,
}

impl Web {
    pub fn new(addr: SocketAddr) -> dgzoo::error::Result<Web> {
        // A hub listening on every address reaches itself on loopback.
        let ip = if addr.ip().is_unspecified() {
            if addr.is_ipv4() {
                std::net::Ipv4Addr::LOCALHOST.into()
            } else {
                std::net::Ipv6Addr::LOCALHOST.into()
            }
        } else {
            addr.ip()
        };
        let cache = tempfile::Builder::new()
            .prefix("dgzoo-hub-web-")
            .tempdir()
            .map_err(|e| dgzoo::error::Error::io(format!("cannot create the web page's cache: {e}")))?;
        Ok(Web { self_addr: SocketAddr::new(ip, addr.port()), cache })
    }
}

fn static_resp(body: &'static str, content_type: &'static str) -> Resp {
    let mut r = Response::new(Body::from(body));
    let h = r.headers_mut();
    h.insert(header::CONTENT_TYPE, HeaderValue::from_static(content_type));
    // Only our own resources, and nobody frames the page (it holds a token).
    h.insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static("default-src 'self'; img-src 'self' data: blob:; frame-ancestors 'none'; form-action 'none'"),
    );
    h.insert(header::X_CONTENT_TYPE_OPTIONS, HeaderValue::from_static("nosniff"));
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-cache"));
    r
}

/// The page's static files, by path.
pub(super) fn asset(path: &str) -> Option<Resp> {
    match path {
        "/" | "/index.html" => Some(static_resp(INDEX_HTML, "text/html; charset=utf-8")),
        "/ui/app.js" => Some(static_resp(APP_JS, "text/javascript; charset=utf-8")),
        "/ui/app.css" => Some(static_resp(APP_CSS, "text/css; charset=utf-8")),
        _ => None,
    }
}

/// `GET /ui/api/zoos`: the zoos (`org/zoo`) `token` may see: all of them for an admin token.
pub(super) fn zoos(state: &State, token: &Option<String>) -> Resp {
    let st = &state.store;
    let tokens = st.tokens();
    let Some(rights) = token.as_deref().and_then(|t| tokens.get(t)) else { return error(401, "Token is not valid") };
    let mut all: Vec<String> = st
        .orgs()
        .into_iter()
        .flat_map(|org| st.zoos(&org).into_iter().map(move |z| format!("{org}/{z}")))
        .filter(|url| rights.is_admin || rights.zoos.contains(url))
        .filter(|url| url.split_once('/').is_some_and(|(o, z)| st.zoo(o, z).is_some()))
        .collect();
    all.sort();
    json_resp(200, &json!({ "zoos": all }))
}

/// `POST /ui/api/predict/<org>/<zoo>/<model>`: one image through the hub's cloud inference;
/// answers `{"results": [...], "overlay": "data:image/jpeg;base64,..."}`.
pub(super) async fn predict(state: Arc<State>, req: Request<Body>, org: String, zoo: String, model: String) -> Resp {
    let (parts, body) = req.into_parts();
    // The body is read before any refusal, so a client still sending gets the answer rather
    // than a reset connection.
    let image = match http_body_util::Limited::new(body, MAX_IMAGE).collect().await {
        Ok(b) => b.to_bytes(),
        Err(e) if e.is::<http_body_util::LengthLimitError>() => return error(413, format!("image exceeds the limit of {MAX_IMAGE} bytes")),
        Err(e) => return error(400, format!("cannot read the image: {e}")),
    };
    let Some(token) = parts.headers.get("token").and_then(|v| v.to_str().ok()).map(str::to_string) else { return error(401, "Token is not valid") };
    // Refuse here what the inference would refuse, with the REST API's answers.
    {
        let tokens = state.store.tokens();
        let url = format!("{org}/{zoo}");
        match tokens.get(&token) {
            None => return error(401, "Token is not valid"),
            Some(r) if !r.is_admin && !r.zoos.contains(&url) => return error(401, format!("Token does not have access rights to zoo {url}")),
            _ => {}
        }
        match state.store.zoo(&org, &zoo) {
            None => return super::zoo_not_found(&org, &zoo),
            Some(z) if state.store.model(&z, &model).is_none() => return super::model_not_found(&model, &org, &zoo),
            _ => {}
        }
    }
    if image.is_empty() {
        return error(422, "the request body must be an image (JPEG, PNG or BMP)");
    }
    let url = format!("http://{}/{org}/{zoo}", state.web.self_addr);
    let cache = state.web.cache.path().to_path_buf();
    // Not on `net::blocking`: the frame itself runs there, and this thread waits for it.
    let run = tokio::task::spawn_blocking(move || run_one(&url, &token, &cache, &model, &image));
    match run.await {
        Ok(Ok(v)) => json_resp(200, &v),
        Ok(Err(e)) => error(if e.code == dgzoo::error::Code::InvalidArgument { 422 } else { 500 }, e.message),
        Err(_) => error(500, "internal error"),
    }
}

fn run_one(url: &str, token: &str, cache: &std::path::Path, model: &str, image: &[u8]) -> dgzoo::error::Result<Value> {
    let opts = ConnectOptions {
        cache: Some(dgzoo::cache::CacheConfig { root: PathBuf::from(cache), limit: dgzoo::cache::DEFAULT_LIMIT, offline: false }),
        offline: None,
        settings: Some(dgzoo::settings::Settings::process().clone()),
        ..Default::default()
    };
    let zoo = Zoo::connect_with("@cloud", url, token, &opts)?;
    let m = zoo.load_model(model, &Value::Null)?;
    let frame = dgzoo::image_ops::decode(image)?;
    let r = dgzoo::model::predict(&m, &[Input::Bytes(image)])?;
    let drawn = m.overlay_owned(frame, &r.results, &r.tensors)?;
    let jpeg = dgzoo::overlay::encode(&drawn, dgzoo::overlay::Format::Jpeg)?;
    Ok(json!({
        "model": model,
        "results": r.results_inline(),
        "overlay": format!("data:image/jpeg;base64,{}", base64::engine::general_purpose::STANDARD.encode(jpeg)),
    }))
}
