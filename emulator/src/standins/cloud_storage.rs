//! Local cloud storage: uploads land under `<root>/storage/<cloudPath>`, files are named by
//! CloudBase-style fileIDs (`cloud://<envId>.wemint-dev/<cloudPath>`), and are read back only
//! through short-lived temp URLs signed with HMAC-SHA256 and an expiry (on the dev clock).
//!
//! - `POST /tcb/uploadFile` (multipart: `file`, `cloudPath`; what the Mini Program's dev mode
//!   sends) → `{"ok":true,"data":{"fileID"}}`
//! - `POST /storage/upload?cloudPath=…` (raw body or multipart) → `{"fileID"}`
//! - `POST /storage/getTempFileURL` `{fileList:[{fileID,maxAge}]}` (bearer: the signing key)
//! - `GET /storage/temp?fileId&expires&sign` → the bytes
//!
//! Users may only write under `ugc/<their openid>/`. A temp URL can also be made offline:
//! `sign = hex(HMAC-SHA256(WEMINT_STORAGE_SIGNING_KEY, fileId + "\n" + expires))`.

use std::path::{Component, Path, PathBuf};

use http::{Method, StatusCode};
use serde_json::{Value, json};
use wemint::identity::SessionSigner;

use crate::http::{Request, Response};
use crate::router::dev_user;
use crate::suite::Suite;

/// Default temp URL lifetime (CloudBase's default is two hours).
pub const DEFAULT_MAX_AGE_SECS: i64 = 7200;
/// Largest upload.
pub const MAX_UPLOAD_BYTES: usize = 10 * 1024 * 1024;

fn fail(status: StatusCode, code: &str, message: &str) -> Response {
    Response::json(
        status,
        &json!({"ok": false, "error": {"code": code, "message": message}}),
    )
}

/// The fileID of a cloud path.
pub fn file_id(suite: &Suite, cloud_path: &str) -> String {
    format!("cloud://{}.wemint-dev/{cloud_path}", suite.keys.env_id)
}

/// The cloud path of a fileID (`cloud://<anything>/<path>`).
pub fn cloud_path(file_id: &str) -> Option<&str> {
    let rest = file_id.strip_prefix("cloud://")?;
    let (_, path) = rest.split_once('/')?;
    checked_path(path).map(|_| path)
}

/// Checks a cloud path: relative, no `..`, printable, at most 512 bytes.
fn checked_path(path: &str) -> Option<PathBuf> {
    if path.is_empty() || path.len() > 512 || path.chars().any(|c| c.is_control() || c == '\\') {
        return None;
    }
    let p = Path::new(path);
    p.components()
        .all(|c| matches!(c, Component::Normal(_)))
        .then(|| p.to_path_buf())
}

fn local_file(suite: &Suite, cloud_path: &str) -> Option<PathBuf> {
    checked_path(cloud_path).map(|p| suite.options.root.join("storage").join(p))
}

/// The signature of a temp URL: `wemint::cloud_files`'s, so the functions sign URLs offline that
/// this storage accepts.
pub fn sign(key: &str, file_id: &str, expires: i64) -> String {
    wemint::cloud_files::sign_local(key.as_bytes(), file_id, expires)
}

/// A temp URL for `file_id` valid `max_age` seconds on the dev clock.
pub fn temp_url(suite: &Suite, file_id: &str, max_age: i64) -> String {
    let expires = suite.clock.now() + max_age;
    let q: String = form_urlencoded::Serializer::new(String::new())
        .append_pair("fileId", file_id)
        .append_pair("expires", &expires.to_string())
        .append_pair("sign", &sign(&suite.keys.storage_key, file_id, expires))
        .finish();
    format!("{}/storage/temp?{q}", suite.base_url())
}

/// Routes `/tcb/uploadFile` and `/storage/*`.
pub async fn handle(suite: &Suite, req: &Request) -> Option<Response> {
    let response = match (&req.method, req.path.as_str()) {
        (&Method::POST, "/tcb/uploadFile") => match upload(suite, req) {
            Ok(id) => Response::json(StatusCode::OK, &json!({"ok": true, "data": {"fileID": id}})),
            Err(r) => r,
        },
        (&Method::POST, "/storage/upload") => match upload(suite, req) {
            Ok(id) => Response::json(StatusCode::OK, &json!({"fileID": id})),
            Err(r) => r,
        },
        (&Method::POST, "/storage/getTempFileURL") => get_temp_urls(suite, req),
        (&Method::GET, "/storage/temp") => serve_temp(suite, req),
        _ => return None,
    };
    Some(response)
}

/// The openid a session token issued by `login` names (checked with the suite's
/// `WEMINT_SESSION_SECRET`).
pub fn token_subject(
    suite: &Suite,
    token: &str,
) -> Result<String, wemint::identity::IdentityError> {
    let signer = SessionSigner::new(
        suite.keys.session_secret.as_bytes(),
        SessionSigner::DEFAULT_TTL_SECS,
    )?;
    signer
        .verify(token.trim(), suite.clock.now())
        .map(|claims| claims.sub)
}

/// The openid of the uploader: a valid session token, else the dev user header.
fn uploader(suite: &Suite, req: &Request) -> Result<String, Response> {
    if let Some(token) = req
        .header("authorization")
        .and_then(|v| v.strip_prefix("Bearer "))
    {
        return token_subject(suite, token).map_err(|_| {
            fail(
                StatusCode::UNAUTHORIZED,
                "UNAUTHENTICATED",
                "session token is not valid",
            )
        });
    }
    Ok(suite.keys.openid_for(&dev_user(req)))
}

fn upload(suite: &Suite, req: &Request) -> Result<String, Response> {
    let openid = uploader(suite, req)?;
    let content_type = req.header("content-type").unwrap_or_default().to_owned();
    let (path, bytes) = if content_type.starts_with("multipart/form-data") {
        let parts = multipart(&content_type, &req.body).ok_or_else(|| {
            fail(
                StatusCode::BAD_REQUEST,
                "BAD_REQUEST",
                "malformed multipart body",
            )
        })?;
        let path = parts
            .iter()
            .find(|p| p.name == "cloudPath")
            .map(|p| String::from_utf8_lossy(&p.data).into_owned())
            .or_else(|| req.param("cloudPath"));
        let file = parts
            .into_iter()
            .find(|p| p.name == "file")
            .ok_or_else(|| {
                fail(
                    StatusCode::BAD_REQUEST,
                    "BAD_REQUEST",
                    "multipart field `file` is missing",
                )
            })?;
        (path, file.data)
    } else {
        (req.param("cloudPath"), req.body.to_vec())
    };
    let path = path.ok_or_else(|| {
        fail(
            StatusCode::BAD_REQUEST,
            "BAD_REQUEST",
            "cloudPath is required",
        )
    })?;
    if bytes.len() > MAX_UPLOAD_BYTES {
        return Err(fail(
            StatusCode::PAYLOAD_TOO_LARGE,
            "PAYLOAD_TOO_LARGE",
            "uploads are limited to 10 MB",
        ));
    }
    let prefix = format!("ugc/{openid}/");
    if !path.starts_with(&prefix) {
        return Err(fail(
            StatusCode::FORBIDDEN,
            "FORBIDDEN",
            &format!("users may only upload under {prefix}"),
        ));
    }
    let target = local_file(suite, &path).ok_or_else(|| {
        fail(
            StatusCode::BAD_REQUEST,
            "BAD_REQUEST",
            "cloudPath is not a valid relative path",
        )
    })?;
    if let Some(dir) = target.parent() {
        std::fs::create_dir_all(dir).map_err(crate::suite::internal)?;
    }
    std::fs::write(&target, &bytes).map_err(crate::suite::internal)?;
    Ok(file_id(suite, &path))
}

fn get_temp_urls(suite: &Suite, req: &Request) -> Response {
    let authorized = req
        .header("authorization")
        .and_then(|v| v.strip_prefix("Bearer "))
        .is_some_and(|t| {
            aws_lc_rs::constant_time::verify_slices_are_equal(
                t.trim().as_bytes(),
                suite.keys.storage_key.as_bytes(),
            )
            .is_ok()
        });
    if !authorized {
        return fail(
            StatusCode::UNAUTHORIZED,
            "UNAUTHENTICATED",
            "Bearer WEMINT_STORAGE_SIGNING_KEY required",
        );
    }
    let Ok(body) = req.json::<Value>() else {
        return fail(StatusCode::BAD_REQUEST, "BAD_REQUEST", "body must be JSON");
    };
    let list = body["fileList"].as_array().cloned().unwrap_or_default();
    let out: Vec<Value> = list
        .iter()
        .map(|item| {
            let (id, max_age) = match item {
                Value::String(s) => (s.clone(), DEFAULT_MAX_AGE_SECS),
                _ => (
                    item["fileID"].as_str().unwrap_or_default().to_owned(),
                    item["maxAge"].as_i64().unwrap_or(DEFAULT_MAX_AGE_SECS).clamp(1, 86_400),
                ),
            };
            let exists = cloud_path(&id).and_then(|p| local_file(suite, p)).is_some_and(|p| p.is_file());
            if exists {
                json!({"fileID": id, "tempFileURL": temp_url(suite, &id, max_age), "maxAge": max_age, "code": "SUCCESS"})
            } else {
                json!({"fileID": id, "tempFileURL": "", "maxAge": max_age, "code": "STORAGE_FILE_NONEXIST"})
            }
        })
        .collect();
    Response::json(StatusCode::OK, &json!({"fileList": out}))
}

fn serve_temp(suite: &Suite, req: &Request) -> Response {
    let (Some(id), Some(expires), Some(sig)) =
        (req.param("fileId"), req.param("expires"), req.param("sign"))
    else {
        return Response::text(
            StatusCode::BAD_REQUEST,
            "fileId, expires and sign are required",
        );
    };
    let Ok(expires) = expires.parse::<i64>() else {
        return Response::text(StatusCode::BAD_REQUEST, "expires must be Unix seconds");
    };
    if let Err(e) = wemint::cloud_files::verify_local(
        suite.keys.storage_key.as_bytes(),
        &id,
        expires,
        &sig,
        suite.clock.now(),
    ) {
        return Response::text(StatusCode::FORBIDDEN, &e.to_string());
    }
    let Some(path) = cloud_path(&id).and_then(|p| local_file(suite, p)) else {
        return Response::text(StatusCode::BAD_REQUEST, "not a fileID");
    };
    match std::fs::read(&path) {
        Ok(bytes) => Response::bytes(StatusCode::OK, mime(&path), bytes),
        Err(_) => Response::text(StatusCode::NOT_FOUND, "no such file"),
    }
}

fn mime(path: &Path) -> &'static str {
    match path
        .extension()
        .and_then(|e| e.to_str())
        .map(str::to_ascii_lowercase)
        .as_deref()
    {
        Some("jpg" | "jpeg") => "image/jpeg",
        Some("png") => "image/png",
        Some("gif") => "image/gif",
        Some("webp") => "image/webp",
        Some("wav") => "audio/wav",
        Some("mp3") => "audio/mpeg",
        Some("mp4") => "video/mp4",
        Some("txt" | "md") => "text/plain; charset=utf-8",
        _ => "application/octet-stream",
    }
}

/// One multipart part.
#[derive(Debug)]
struct Part {
    name: String,
    data: Vec<u8>,
}

/// A minimal `multipart/form-data` reader: enough for `wx.uploadFile` and browsers.
fn multipart(content_type: &str, body: &[u8]) -> Option<Vec<Part>> {
    let boundary = content_type
        .split(';')
        .find_map(|p| p.trim().strip_prefix("boundary="))?
        .trim_matches('"');
    let delimiter = format!("--{boundary}").into_bytes();
    let mut parts = Vec::new();
    let mut rest = body;
    let start = find(rest, &delimiter)?;
    rest = &rest[start + delimiter.len()..];
    loop {
        if rest.starts_with(b"--") {
            return Some(parts);
        }
        rest = rest.strip_prefix(b"\r\n")?;
        let header_end = find(rest, b"\r\n\r\n")?;
        let headers = String::from_utf8_lossy(&rest[..header_end]).into_owned();
        rest = &rest[header_end + 4..];
        let end = find(rest, &[b"\r\n".as_slice(), &delimiter].concat())?;
        let data = rest[..end].to_vec();
        rest = &rest[end + 2 + delimiter.len()..];
        let name = headers
            .lines()
            .find(|l| l.to_ascii_lowercase().starts_with("content-disposition"))
            .and_then(|l| l.split(';').find_map(|p| p.trim().strip_prefix("name=")))
            .map(|n| n.trim_matches('"').to_owned())?;
        parts.push(Part { name, data });
    }
}

fn find(haystack: &[u8], needle: &[u8]) -> Option<usize> {
    haystack.windows(needle.len()).position(|w| w == needle)
}

/// Writes the demo media the seed refers to: one second of silence as a WAV file.
pub fn write_demo_media(suite: &Suite) -> Result<(), String> {
    let Some(path) = local_file(suite, "demo/podcast-ep1.wav") else {
        return Err("bad demo path".into());
    };
    let samples = 8000u32;
    let mut wav = Vec::with_capacity(44 + samples as usize);
    wav.extend_from_slice(b"RIFF");
    wav.extend_from_slice(&(36 + samples).to_le_bytes());
    wav.extend_from_slice(b"WAVEfmt ");
    wav.extend_from_slice(&16u32.to_le_bytes());
    wav.extend_from_slice(&1u16.to_le_bytes()); // PCM
    wav.extend_from_slice(&1u16.to_le_bytes()); // mono
    wav.extend_from_slice(&8000u32.to_le_bytes()); // sample rate
    wav.extend_from_slice(&8000u32.to_le_bytes()); // byte rate
    wav.extend_from_slice(&1u16.to_le_bytes()); // block align
    wav.extend_from_slice(&8u16.to_le_bytes()); // bits per sample
    wav.extend_from_slice(b"data");
    wav.extend_from_slice(&samples.to_le_bytes());
    wav.resize(44 + samples as usize, 128); // 8-bit silence
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir).map_err(|e| e.to_string())?;
    }
    std::fs::write(&path, wav).map_err(|e| e.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paths_and_file_ids() {
        assert_eq!(
            cloud_path("cloud://env.bucket/ugc/o1/a.jpg"),
            Some("ugc/o1/a.jpg")
        );
        assert_eq!(cloud_path("cloud://env.bucket/../etc/passwd"), None);
        assert_eq!(cloud_path("https://x/y"), None);
        assert!(checked_path("/abs").is_none());
    }

    #[test]
    fn reads_multipart() {
        let body = b"--XyZ\r\nContent-Disposition: form-data; name=\"cloudPath\"\r\n\r\nugc/o/1.jpg\r\n--XyZ\r\nContent-Disposition: form-data; name=\"file\"; filename=\"1.jpg\"\r\nContent-Type: image/jpeg\r\n\r\n\x01\x02\r\n\x03\r\n--XyZ--\r\n";
        let parts = multipart("multipart/form-data; boundary=XyZ", body).unwrap();
        assert_eq!(parts.len(), 2);
        assert_eq!(parts[0].name, "cloudPath");
        assert_eq!(parts[0].data, b"ugc/o/1.jpg");
        assert_eq!(parts[1].data, b"\x01\x02\r\n\x03");
    }
}
