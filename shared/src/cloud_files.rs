//! Short-lived URLs for protected files in cloud storage.
//!
//! Paid media is never handed out as a permanent address: a function asks [`Storage`] for
//! temp URLs with a stated expiry and returns those.
//!
//! - **CloudBase** (production): `POST {api_base}/tcb/batchdownloadfile?access_token=…` with
//!   `{env, file_list: [{fileid, max_age}]}`, which answers `download_url`s that CloudBase
//!   stops serving after `max_age` seconds. The access token comes from a [`TokenSource`]
//!   (the shared WeChat token cache).
//! - **Local** (the `wemint-dev` emulator): signed offline, no request:
//!   `{url}/temp?fileId=…&expires=…&sign=hex(HMAC-SHA256(key, fileId + "\n" + expires))`; the
//!   emulator checks the signature and refuses the URL after `expires` on its dev clock
//!   ([`verify_local`] is the check it runs).

use std::fmt;
use std::sync::Arc;

use async_trait::async_trait;
use serde_json::{Value, json};

use crate::config::CloudFilesSettings;

/// One temp URL.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TempUrl {
    /// The storage file id it serves.
    pub file_id: String,
    /// The URL.
    pub url: String,
    /// When it stops working, Unix seconds.
    pub expires_at: i64,
}

/// Why temp URLs could not be made.
#[derive(Debug, thiserror::Error)]
pub enum StorageError {
    /// Not a `cloud://` file id, or a lifetime outside 1 s – 1 day.
    #[error("invalid temp URL request: {0}")]
    Invalid(String),
    /// The storage service refused a file or the whole request.
    #[error("storage refused: {0}")]
    Refused(String),
    /// No access token for the WeChat API.
    #[error("access token unavailable: {0}")]
    Token(String),
    /// The request did not complete.
    #[error("storage request failed: {0}")]
    Transport(String),
}

/// The WeChat API access token for the CloudBase HTTP API.
#[async_trait]
pub trait TokenSource: Send + Sync {
    /// A currently valid access token.
    async fn token(&self) -> Result<String, StorageError>;
    /// `rejected` was refused by WeChat: returns a fresh one.
    async fn refresh(&self, rejected: &str) -> Result<String, StorageError>;
}

/// The shared WeChat token cache is the token source in production.
#[async_trait]
impl TokenSource for crate::wechat::WechatClient {
    async fn token(&self) -> Result<String, StorageError> {
        self.tokens()
            .token()
            .await
            .map(|t| t.expose().to_owned())
            .map_err(|e| StorageError::Token(e.to_string()))
    }

    async fn refresh(&self, rejected: &str) -> Result<String, StorageError> {
        let rejected = crate::wechat::AccessToken::new(rejected.to_owned());
        self.tokens()
            .refresh_after_failure(&rejected)
            .await
            .map(|t| t.expose().to_owned())
            .map_err(|e| StorageError::Token(e.to_string()))
    }
}

/// Longest lifetime asked for (CloudBase's default is two hours; protected media uses less).
pub const MAX_AGE_LIMIT_SECS: i64 = 86_400;

/// Where temp URLs come from. Cheap to clone.
#[derive(Clone)]
pub enum Storage {
    /// CloudBase storage through the WeChat HTTP API.
    Cloudbase {
        /// The CloudBase environment id.
        env_id: String,
        /// WeChat API base (`https://api.weixin.qq.com`, or a stand-in).
        api_base: String,
        /// The shared access token.
        tokens: Arc<dyn TokenSource>,
        /// Outbound client.
        client: reqwest::Client,
    },
    /// The emulator's local storage.
    Local {
        /// Base URL of the storage routes, without a trailing `/`.
        url: String,
        /// The shared signing key.
        key: Arc<aws_lc_rs::hmac::Key>,
    },
}

impl fmt::Debug for Storage {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Storage::Cloudbase {
                env_id, api_base, ..
            } => f
                .debug_struct("Storage::Cloudbase")
                .field("env_id", env_id)
                .field("api_base", api_base)
                .finish_non_exhaustive(),
            Storage::Local { url, .. } => f
                .debug_struct("Storage::Local")
                .field("url", url)
                .field("key", &"[redacted]")
                .finish(),
        }
    }
}

fn hmac_key(key: &[u8]) -> aws_lc_rs::hmac::Key {
    aws_lc_rs::hmac::Key::new(aws_lc_rs::hmac::HMAC_SHA256, key)
}

/// The signature of a local temp URL.
pub fn sign_local(key: &[u8], file_id: &str, expires: i64) -> String {
    let tag = aws_lc_rs::hmac::sign(&hmac_key(key), format!("{file_id}\n{expires}").as_bytes());
    hex::encode(tag.as_ref())
}

/// Why a local temp URL is refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum LocalUrlError {
    /// The signature does not match (tampered id or expiry, or another key).
    #[error("signature does not match")]
    BadSignature,
    /// The URL's time is over.
    #[error("temp URL expired")]
    Expired,
}

/// Checks a local temp URL's parameters at `now` (the emulator serves the file only then).
pub fn verify_local(
    key: &[u8],
    file_id: &str,
    expires: i64,
    sign: &str,
    now: i64,
) -> Result<(), LocalUrlError> {
    let tag = hex::decode(sign).map_err(|_| LocalUrlError::BadSignature)?;
    aws_lc_rs::hmac::verify(
        &hmac_key(key),
        format!("{file_id}\n{expires}").as_bytes(),
        &tag,
    )
    .map_err(|_| LocalUrlError::BadSignature)?;
    if now >= expires {
        return Err(LocalUrlError::Expired);
    }
    Ok(())
}

fn check_file_id(id: &str) -> Result<(), StorageError> {
    let ok = id
        .strip_prefix("cloud://")
        .and_then(|rest| rest.split_once('/'))
        .is_some_and(|(env, path)| !env.is_empty() && !path.is_empty())
        && id.len() <= 1024
        && !id.chars().any(char::is_control);
    if ok {
        Ok(())
    } else {
        Err(StorageError::Invalid(format!(
            "`{id}` is not a cloud:// file id"
        )))
    }
}

/// WeChat errcodes meaning the access token itself was refused.
const TOKEN_REJECTED: [i64; 3] = [40001, 40014, 42001];

impl Storage {
    /// Builds the storage from settings; `tokens` is needed for CloudBase only.
    ///
    /// # Errors
    /// CloudBase mode without a token source.
    pub fn from_settings(
        settings: CloudFilesSettings,
        wechat_api_base: &str,
        tokens: Option<Arc<dyn TokenSource>>,
        client: reqwest::Client,
    ) -> Result<Self, StorageError> {
        match settings {
            CloudFilesSettings::Local { url, signing_key } => Ok(Storage::Local {
                url,
                key: Arc::new(hmac_key(signing_key.expose().as_bytes())),
            }),
            CloudFilesSettings::Cloudbase { env_id } => Ok(Storage::Cloudbase {
                env_id,
                api_base: wechat_api_base.trim_end_matches('/').to_owned(),
                tokens: tokens.ok_or_else(|| {
                    StorageError::Token("CloudBase storage needs WeChat credentials".into())
                })?,
                client,
            }),
        }
    }

    /// Temp URLs for `file_ids` (in the same order), each valid `max_age` seconds from `now`.
    ///
    /// # Errors
    /// A file id that is not a `cloud://` id, `max_age` outside 1 s – 1 day, a file the
    /// storage does not have, or the storage unreachable.
    pub async fn temp_urls(
        &self,
        file_ids: &[String],
        max_age: i64,
        now: i64,
    ) -> Result<Vec<TempUrl>, StorageError> {
        if !(1..=MAX_AGE_LIMIT_SECS).contains(&max_age) {
            return Err(StorageError::Invalid(format!(
                "max_age {max_age} is outside 1..={MAX_AGE_LIMIT_SECS} seconds"
            )));
        }
        for id in file_ids {
            check_file_id(id)?;
        }
        if file_ids.is_empty() {
            return Ok(Vec::new());
        }
        match self {
            Storage::Local { url, key } => {
                let expires = now + max_age;
                file_ids
                    .iter()
                    .map(|id| {
                        let tag = aws_lc_rs::hmac::sign(key, format!("{id}\n{expires}").as_bytes());
                        let expires_text = expires.to_string();
                        let sign = hex::encode(tag.as_ref());
                        let url = reqwest::Url::parse_with_params(
                            &format!("{url}/temp"),
                            [
                                ("fileId", id.as_str()),
                                ("expires", expires_text.as_str()),
                                ("sign", sign.as_str()),
                            ],
                        )
                        .map_err(|e| StorageError::Invalid(format!("storage URL: {e}")))?;
                        Ok(TempUrl {
                            file_id: id.clone(),
                            url: url.to_string(),
                            expires_at: expires,
                        })
                    })
                    .collect()
            }
            Storage::Cloudbase { tokens, .. } => {
                let token = tokens.token().await?;
                match self.batch_download(&token, file_ids, max_age, now).await {
                    Err(Rejected::Token) => {
                        let fresh = tokens.refresh(&token).await?;
                        self.batch_download(&fresh, file_ids, max_age, now)
                            .await
                            .map_err(Rejected::into_error)
                    }
                    other => other.map_err(Rejected::into_error),
                }
            }
        }
    }

    async fn batch_download(
        &self,
        token: &str,
        file_ids: &[String],
        max_age: i64,
        now: i64,
    ) -> Result<Vec<TempUrl>, Rejected> {
        let Storage::Cloudbase {
            env_id,
            api_base,
            client,
            ..
        } = self
        else {
            return Err(Rejected::Other(StorageError::Invalid(
                "not CloudBase storage".into(),
            )));
        };
        let list: Vec<Value> = file_ids
            .iter()
            .map(|id| json!({"fileid": id, "max_age": max_age}))
            .collect();
        let body = json!({"env": env_id, "file_list": list});
        let reply = client
            .post(format!("{api_base}/tcb/batchdownloadfile"))
            .query(&[("access_token", token)])
            .json(&body)
            .send()
            .await
            // The URL carries the token: never let it into the message.
            .map_err(|e| Rejected::Other(StorageError::Transport(e.without_url().to_string())))?;
        let status = reply.status();
        let reply: Value = reply
            .json()
            .await
            .map_err(|e| Rejected::Other(StorageError::Transport(e.without_url().to_string())))?;
        let errcode = reply["errcode"].as_i64().unwrap_or(0);
        if TOKEN_REJECTED.contains(&errcode) {
            return Err(Rejected::Token);
        }
        if errcode != 0 || !status.is_success() {
            return Err(Rejected::Other(StorageError::Refused(format!(
                "errcode {errcode}: {}",
                reply["errmsg"].as_str().unwrap_or("")
            ))));
        }
        let entries = reply["file_list"].as_array().cloned().unwrap_or_default();
        file_ids
            .iter()
            .map(|id| {
                let entry = entries
                    .iter()
                    .find(|e| e["fileid"].as_str() == Some(id.as_str()))
                    .ok_or_else(|| {
                        Rejected::Other(StorageError::Refused(format!("{id}: missing in reply")))
                    })?;
                let url = entry["download_url"].as_str().unwrap_or_default();
                if entry["status"].as_i64().unwrap_or(0) != 0 || url.is_empty() {
                    return Err(Rejected::Other(StorageError::Refused(format!(
                        "{id}: {}",
                        entry["errmsg"].as_str().unwrap_or("no download_url")
                    ))));
                }
                Ok(TempUrl {
                    file_id: id.clone(),
                    url: url.to_owned(),
                    expires_at: now + max_age,
                })
            })
            .collect()
    }
}

enum Rejected {
    Token,
    Other(StorageError),
}

impl Rejected {
    fn into_error(self) -> StorageError {
        match self {
            Rejected::Token => StorageError::Token("WeChat refused a fresh access token".into()),
            Rejected::Other(e) => e,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Mutex;

    fn local() -> Storage {
        Storage::Local {
            url: "http://127.0.0.1:9/storage".into(),
            key: Arc::new(hmac_key(b"dev-key")),
        }
    }

    fn query(url: &str) -> std::collections::HashMap<String, String> {
        reqwest::Url::parse(url)
            .unwrap()
            .query_pairs()
            .map(|(k, v)| (k.into_owned(), v.into_owned()))
            .collect()
    }

    #[tokio::test]
    async fn local_urls_are_signed_and_expire() {
        let id = "cloud://dev.wemint-dev/media/ep 1.mp3".to_owned();
        let urls = local()
            .temp_urls(std::slice::from_ref(&id), 600, 1_000)
            .await
            .unwrap();
        assert_eq!(urls[0].expires_at, 1_600);
        assert!(urls[0].url.starts_with("http://127.0.0.1:9/storage/temp?"));
        let q = query(&urls[0].url);
        assert_eq!(q["fileId"], id);
        assert_eq!(q["expires"], "1600");
        // Same value as the emulator's own signer: HMAC-SHA256 over "id\nexpires", hex.
        assert_eq!(q["sign"], sign_local(b"dev-key", &id, 1_600));
        assert_eq!(
            verify_local(b"dev-key", &id, 1_600, &q["sign"], 1_599),
            Ok(())
        );
        assert_eq!(
            verify_local(b"dev-key", &id, 1_600, &q["sign"], 1_600),
            Err(LocalUrlError::Expired)
        );
        assert_eq!(
            verify_local(b"dev-key", &id, 9_999, &q["sign"], 1_000),
            Err(LocalUrlError::BadSignature),
            "a moved expiry breaks the signature"
        );
        assert_eq!(
            verify_local(b"other", &id, 1_600, &q["sign"], 1_000),
            Err(LocalUrlError::BadSignature)
        );
        assert!(!format!("{:?}", local()).contains("dev-key"));
    }

    #[tokio::test]
    async fn bad_requests_are_refused() {
        let s = local();
        for bad in ["https://cdn/x.mp4", "cloud://env", "cloud:///x"] {
            assert!(matches!(
                s.temp_urls(&[bad.to_owned()], 60, 0).await,
                Err(StorageError::Invalid(_))
            ));
        }
        let ok = vec!["cloud://e.b/x".to_owned()];
        assert!(s.temp_urls(&ok, 0, 0).await.is_err());
        assert!(s.temp_urls(&ok, MAX_AGE_LIMIT_SECS + 1, 0).await.is_err());
        assert!(s.temp_urls(&[], 60, 0).await.unwrap().is_empty());
    }

    struct Tokens(Mutex<Vec<String>>);

    #[async_trait]
    impl TokenSource for Tokens {
        async fn token(&self) -> Result<String, StorageError> {
            Ok(self.0.lock().unwrap()[0].clone())
        }
        async fn refresh(&self, rejected: &str) -> Result<String, StorageError> {
            let mut t = self.0.lock().unwrap();
            assert_eq!(t[0], rejected);
            t.remove(0);
            Ok(t[0].clone())
        }
    }

    /// A one-route stand-in for `tcb/batchdownloadfile`: refuses token `old`, serves `new`.
    async fn stand_in() -> (String, Arc<Mutex<Vec<Value>>>) {
        use http_body_util::{BodyExt, Full};
        use hyper::service::service_fn;
        let seen = Arc::new(Mutex::new(Vec::new()));
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let log = seen.clone();
        tokio::spawn(async move {
            loop {
                let Ok((stream, _)) = listener.accept().await else {
                    return;
                };
                let log = log.clone();
                tokio::spawn(async move {
                    let svc = service_fn(move |req: hyper::Request<hyper::body::Incoming>| {
                        let log = log.clone();
                        async move {
                            let query = req.uri().query().unwrap_or_default().to_owned();
                            let path = req.uri().path().to_owned();
                            let body = req.into_body().collect().await.unwrap().to_bytes();
                            let body: Value = serde_json::from_slice(&body).unwrap();
                            log.lock()
                                .unwrap()
                                .push(json!({"path": path, "query": query, "body": body}));
                            let reply = if query.contains("access_token=old") {
                                json!({"errcode": 42001, "errmsg": "access_token expired"})
                            } else {
                                let list: Vec<Value> = body["file_list"].as_array().unwrap().iter().map(|f| {
                                    let id = f["fileid"].as_str().unwrap();
                                    if id.ends_with("missing") {
                                        json!({"fileid": id, "download_url": "", "status": 1, "errmsg": "STORAGE_FILE_NONEXIST"})
                                    } else {
                                        json!({"fileid": id, "download_url": format!("https://cos.example/{}", f["max_age"]), "status": 0, "errmsg": "ok"})
                                    }
                                }).collect();
                                json!({"errcode": 0, "errmsg": "ok", "file_list": list})
                            };
                            Ok::<_, std::convert::Infallible>(hyper::Response::new(Full::new(
                                bytes::Bytes::from(reply.to_string()),
                            )))
                        }
                    });
                    let io = hyper_util::rt::TokioIo::new(stream);
                    let _ = hyper::server::conn::http1::Builder::new()
                        .serve_connection(io, svc)
                        .await;
                });
            }
        });
        (format!("http://{addr}"), seen)
    }

    #[tokio::test]
    async fn cloudbase_asks_batchdownloadfile_and_refreshes_a_rejected_token() {
        let (base, seen) = stand_in().await;
        let storage = Storage::from_settings(
            CloudFilesSettings::Cloudbase {
                env_id: "prod-env".into(),
            },
            &format!("{base}/"),
            Some(Arc::new(Tokens(Mutex::new(vec![
                "old".into(),
                "new".into(),
            ])))),
            reqwest::Client::new(),
        )
        .unwrap();
        let ids = vec!["cloud://prod-env.b/a.mp4".to_owned()];
        let urls = storage.temp_urls(&ids, 300, 50).await.unwrap();
        assert_eq!(
            urls,
            vec![TempUrl {
                file_id: ids[0].clone(),
                url: "https://cos.example/300".into(),
                expires_at: 350
            }]
        );
        let seen = seen.lock().unwrap().clone();
        assert_eq!(seen.len(), 2, "one refusal, one retry with the fresh token");
        assert_eq!(seen[1]["path"], "/tcb/batchdownloadfile");
        assert_eq!(seen[1]["query"], "access_token=new");
        assert_eq!(
            seen[1]["body"],
            json!({"env": "prod-env", "file_list": [{"fileid": ids[0], "max_age": 300}]})
        );
        let missing = vec!["cloud://prod-env.b/missing".to_owned()];
        let err = storage.temp_urls(&missing, 300, 50).await.unwrap_err();
        assert!(err.to_string().contains("STORAGE_FILE_NONEXIST"), "{err}");
        assert!(
            Storage::from_settings(
                CloudFilesSettings::Cloudbase { env_id: "e".into() },
                &base,
                None,
                reqwest::Client::new()
            )
            .is_err()
        );
    }
}
