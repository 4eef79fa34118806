//! dg-zoo-server's administrative endpoints: create/delete tokens, grant/revoke zoo access,
//! upload/delete model archives. Every one needs an admin token: unlike dg-zoo-server, which
//! hands the first token to anyone who asks while `tokens.json` is empty, no request without
//! an admin token can mint a token or write the file. The operator makes the first admin token
//! on the hub's machine with `dgzoo hub --zoo DIR --new-token --admin` ([`mint_token`]).
use super::store::{PutError, Store, TokenRights};
use super::{error, json_resp, Resp};
use dgzoo::cache::archive::is_safe_segment;
use serde_json::json;
use std::collections::HashMap;
use std::io::Read;
use std::path::Path;

fn token_json(t: &str, r: &TokenRights) -> serde_json::Value {
    json!({"token": t, "value": {"is_admin": r.is_admin, "zoos": r.zoos}})
}

const B58: &[u8] = b"123456789ABCDEFGHJKLMNPQRSTUVWXYZabcdefghijkmnopqrstuvwxyz";

fn base58(bytes: &[u8]) -> String {
    let mut digits: Vec<u8> = Vec::new();
    for &b in bytes {
        let mut carry = b as u32;
        for d in digits.iter_mut() {
            carry += (*d as u32) << 8;
            *d = (carry % 58) as u8;
            carry /= 58;
        }
        while carry > 0 {
            digits.push((carry % 58) as u8);
            carry /= 58;
        }
    }
    let zeros = bytes.iter().take_while(|&&b| b == 0).count();
    std::iter::repeat_n(B58[0], zeros).chain(digits.iter().rev().map(|&d| B58[d as usize])).map(char::from).collect()
}

/// A new token in dg-zoo-server's format: `dg_` + base58 of 27 random bytes, `_`-padded to 37.
fn new_token() -> Result<String, String> {
    let mut rnd = [0u8; 27];
    getrandom::getrandom(&mut rnd).map_err(|e| format!("no random source: {e}"))?;
    let enc = base58(&rnd);
    Ok(format!("dg_{}{enc}", "_".repeat(37usize.saturating_sub(enc.len()))))
}

/// Who makes an administrative request: the `token` header (checked against `tokens.json`),
/// or the operator, who sent the hub's own admin token (`--admin-token`) as
/// `Authorization: Bearer`.
pub struct Caller {
    pub token: Option<String>,
    pub operator: bool,
}

impl Caller {
    /// The caller of a request. A Bearer token that is not the hub's admin token (or sent to a
    /// hub that has none) is refused here with 401, before anything is done.
    pub fn of(token: Option<String>, headers: &axum::http::HeaderMap, admin_token: Option<&str>) -> Result<Caller, Box<Resp>> {
        let bearer = headers.get(axum::http::header::AUTHORIZATION).and_then(|v| v.to_str().ok()).and_then(|a| a.strip_prefix("Bearer ")).map(str::trim);
        match (bearer, admin_token) {
            (None, _) => Ok(Caller { token, operator: false }),
            (Some(b), Some(want)) if crate::aiserver::same_secret(b, want) => Ok(Caller { token, operator: true }),
            (Some(_), Some(_)) => Err(Box::new(error(401, "Admin token is not valid"))),
            (Some(_), None) => Err(Box::new(error(401, "Admin token is not valid: this hub has no admin token (start it with --admin-token)"))),
        }
    }
}

fn rights<'a>(tokens: &'a HashMap<String, TokenRights>, caller: &Caller) -> Option<&'a TokenRights> {
    caller.token.as_deref().and_then(|t| tokens.get(t))
}

fn need_admin(tokens: &HashMap<String, TokenRights>, caller: &Caller) -> Option<Resp> {
    if caller.operator {
        return None;
    }
    match rights(tokens, caller) {
        None => Some(error(401, "Token is not valid")),
        Some(r) if !r.is_admin => Some(error(401, "Token does not have admin rights")),
        Some(_) => None,
    }
}

/// The token table for a change: read from disk now, strictly. A file that does not parse is
/// never written over (the change is refused), so an operator's broken edit is not lost.
fn tokens_for_change(store: &Store) -> Result<HashMap<String, TokenRights>, Box<Resp>> {
    store.load_tokens().map(|t| (*t).clone()).map_err(|_| Box::new(error(500, "cannot change tokens: tokens.json does not parse")))
}

/// Add a new token to `tokens.json` (read strictly first) and return it: the operator's way
/// to make the first admin token (`dgzoo hub --new-token`), with local access to the file as
/// the authority.
pub fn mint_token(store: &Store, is_admin: bool) -> Result<String, String> {
    let mut tokens = (*store.load_tokens()?).clone();
    let t = new_token()?;
    tokens.insert(t.clone(), TokenRights { is_admin, zoos: Vec::new() });
    store.save_tokens(&tokens).map_err(|e| format!("cannot save '{}': {e}", store.tokens_location()))?;
    Ok(t)
}

fn saved(store: &Store, tokens: &HashMap<String, TokenRights>, ok: Resp) -> Resp {
    match store.save_tokens(tokens) {
        Ok(()) => ok,
        Err(e) => error(500, format!("cannot save tokens: {e}")),
    }
}

/// POST /zoo/v1/public/tokens?is_admin=...
pub fn create_token(store: &Store, token: &Caller, is_admin: bool) -> Resp {
    // dg-zoo-server's text for any token without admin rights, a missing one included.
    let refused = || error(401, "Token does not have admin rights");
    if !token.operator && !rights(&store.tokens(), token).is_some_and(|r| r.is_admin) {
        return refused();
    }
    let mut tokens = match tokens_for_change(store) {
        Ok(t) => t,
        Err(r) => return *r,
    };
    // The file may have changed since the check above: check again on what is written.
    if !token.operator && !rights(&tokens, token).is_some_and(|r| r.is_admin) {
        return refused();
    }
    let t = match new_token() {
        Ok(t) => t,
        Err(e) => return error(500, e),
    };
    let r = TokenRights { is_admin, zoos: Vec::new() };
    let body = token_json(&t, &r);
    tokens.insert(t, r);
    saved(store, &tokens, json_resp(200, &body))
}

/// DELETE /zoo/v1/public/tokens (header `token_to_delete`)
pub fn delete_token(store: &Store, token: &Caller, victim: &str) -> Resp {
    if let Some(r) = need_admin(&store.tokens(), token) {
        return r;
    }
    let mut tokens = match tokens_for_change(store) {
        Ok(t) => t,
        Err(r) => return *r,
    };
    if let Some(r) = need_admin(&tokens, token) {
        return r;
    }
    match tokens.remove(victim) {
        None => error(400, "Token does not exist"),
        Some(r) => {
            let body = token_json(victim, &r);
            saved(store, &tokens, json_resp(200, &body))
        }
    }
}

/// POST / DELETE /zoo/v1/public/tokens/<org>/<zoo> (header `token_to_modify`)
pub fn zoo_access(store: &Store, token: &Caller, target: &str, zoo_url: &str, add: bool) -> Resp {
    if let Some(r) = need_admin(&store.tokens(), token) {
        return r;
    }
    let mut tokens = match tokens_for_change(store) {
        Ok(t) => t,
        Err(r) => return *r,
    };
    if let Some(r) = need_admin(&tokens, token) {
        return r;
    }
    let Some(r) = tokens.get_mut(target) else { return error(400, "Token does not exist") };
    let has = r.zoos.iter().any(|z| z == zoo_url);
    match (add, has) {
        (true, true) => return error(400, format!("Nothing to add: token already has access to {zoo_url}")),
        (false, false) => return error(400, format!("Nothing to remove: token already does not have access to {zoo_url}")),
        (true, false) => {
            r.zoos.push(zoo_url.to_string());
            r.zoos.sort();
        }
        (false, true) => r.zoos.retain(|z| z != zoo_url),
    }
    let body = token_json(target, r);
    saved(store, &tokens, json_resp(200, &body))
}

/// POST /zoo/v1/public/models/<org>/<zoo>?allow_overwrite=... (multipart field `file`)
pub fn upload_model(store: &Store, token: &Caller, org: &str, zoo: &str, content_type: &str, body: &mut dyn Read, overwrite: bool) -> Resp {
    if let Some(r) = need_admin(&store.tokens(), token) {
        return r;
    }
    let Some(z) = store.zoo(org, zoo) else { return error(400, format!("Zoo {org}/{zoo} is not found")) };
    let Some(boundary) = super::multipart::boundary(content_type) else {
        return error(422, "the upload must be multipart/form-data with a 'file' field");
    };
    // Stream into a temp file where the storage wants it staged (beside the archives on disk).
    let mut tmp = match tempfile::Builder::new().prefix(".upload-").tempfile_in(store.storage().staging_dir(&z.org, &z.zoo)) {
        Ok(t) => t,
        Err(e) => return error(500, format!("cannot store the upload: {e}")),
    };
    let filename = match super::multipart::copy_field(body, &boundary, "file", tmp.as_file_mut()) {
        Ok(f) => f,
        Err(e) => return error(400, e),
    };
    let base = Path::new(&filename).file_name().and_then(|n| n.to_str()).unwrap_or_default();
    let model = base.strip_suffix(".zip").unwrap_or(base).to_string();
    if !is_safe_segment(&model) {
        return error(400, format!("Model archive name '{filename}' is not a valid model name"));
    }
    // Validate before it becomes visible (dg-zoo-server links first and validates after).
    let escape =
        std::fs::File::open(tmp.path()).ok().and_then(|f| zip::ZipArchive::new(f).ok()).and_then(|mut z| dgzoo::cache::archive::unsafe_entry(&mut z, &model));
    if let Some(why) = escape {
        return error(400, format!("Model archive {model}.zip is not a safe model archive: {why}"));
    }
    if super::store::read_model_info(tmp.path(), &model).is_none() {
        return error(400, format!("Model archive {model}.zip is not a valid model archive: it needs {model}/{model}.json with a Checksum"));
    }
    match store.storage().put_archive(org, zoo, &model, tmp, overwrite) {
        Ok(()) => json_resp(201, &json!({"url": format!("{org}/{zoo}/{model}")})),
        Err(PutError::AlreadyExists) => error(400, format!("Model {model} already exists in zoo {org}/{zoo}")),
        Err(PutError::Other(e)) => error(500, format!("cannot store the model: {e}")),
    }
}

/// DELETE /zoo/v1/public/models/<org>/<zoo>/<model>
pub fn delete_model(store: &Store, token: &Caller, org: &str, zoo: &str, model: &str) -> Resp {
    if let Some(r) = need_admin(&store.tokens(), token) {
        return r;
    }
    let Some(z) = store.zoo(org, zoo) else { return error(400, format!("Zoo {org}/{zoo} is not found")) };
    if !is_safe_segment(model) || store.model(&z, model).is_none() {
        return error(400, format!("Model {model} is not found in zoo {org}/{zoo}"));
    }
    if store.storage().archive_version(org, zoo, model).is_none() {
        return error(400, format!("Model {model} of zoo {org}/{zoo} is a model folder: the hub deletes archives only, remove the folder from the zoo root"));
    }
    match store.storage().delete_archive(org, zoo, model) {
        Ok(()) => json_resp(200, &json!({"url": format!("{org}/{zoo}/{model}")})),
        Err(e) => error(500, format!("cannot delete model {model}: {e}")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    #[test]
    fn base58_known() {
        assert_eq!(base58(b"hello world"), "StV1DL6CwTryKyV");
        assert_eq!(base58(&[0, 0, 1]), "112");
        let t = new_token().unwrap();
        assert!(t.starts_with("dg_") && t.len() == 40, "{t}");
    }
}
