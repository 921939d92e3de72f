//! The v3 HTTP client: signed requests, verified responses, bounded retries.
//!
//! Every operation here is safe to repeat: prepay is idempotent by `out_trade_no` (same
//! parameters give the order's current `prepay_id`), refunds by `out_refund_no`, queries are
//! reads and closing twice is harmless. So 429, 5xx, timeouts and connection failures are
//! retried through [`crate::outbound::Retry`]. Each attempt is signed afresh (new timestamp
//! and nonce) over the same body bytes.

use std::sync::Arc;

use bytes::Bytes;
use http::{HeaderMap, Method, StatusCode};

use super::aead::ApiV3Key;
use super::bills::{BillAnswer, BillKind, BillLink, MAX_DOWNLOAD_BYTES};
use super::certs::{
    CertificateError, DownloadThrottle, FORCED_DOWNLOAD_INTERVAL_SECS, RefreshSchedule,
    decrypt_certificates,
};
use super::keys::{KeyError, PlatformCertificate, RsaSigningKey, VerifyingKey};
use super::models::{
    ErrorBody, JsapiOrder, PrepayResponse, Refund, RefundOrder, Transaction, ValidationError,
    check_id,
};
use super::notify::{Notification, NotifyError, parse_notification};
use super::sign::{MerchantSigner, RequestPaymentParams};
use super::verify::{SignatureHeaders, Verifier, VerifyError, headers};
use crate::clock::{SharedClock, SystemClock};
use crate::outbound::{self, Retry};
use crate::pay::{RandomNonce, SharedNonce};

/// A v3 call failed.
#[derive(Debug, thiserror::Error)]
pub enum PayError {
    /// The request was refused locally; nothing was sent.
    #[error(transparent)]
    Validation(#[from] ValidationError),
    /// WeChat Pay answered with an error status; its fields are kept as sent.
    #[error(transparent)]
    Api(Box<ApiError>),
    /// A 2xx response whose signature did not verify: treated as forged.
    #[error("unverified WeChat Pay response ({status}, Request-ID {request_id:?}): {source}")]
    Unverified {
        /// HTTP status.
        status: u16,
        /// `Request-ID` header.
        request_id: Option<String>,
        /// Why verification failed.
        source: VerifyError,
    },
    /// A verified 2xx response whose body is not what the API documents.
    #[error("unexpected WeChat Pay response body ({status}): {message}")]
    Decode {
        /// HTTP status.
        status: u16,
        /// Parser message.
        message: String,
    },
    /// Network failure (no response).
    #[error("WeChat Pay transport error: {message}")]
    Transport {
        /// Description.
        message: String,
        /// Timeout or connection failure: worth retrying.
        transient: bool,
    },
    /// Signing failed.
    #[error(transparent)]
    Sign(#[from] KeyError),
    /// Platform certificates could not be downloaded or decrypted.
    #[error(transparent)]
    Certificates(#[from] CertificateError),
    /// The client is misconfigured (base URL, HTTP client).
    #[error("WeChat Pay client configuration: {0}")]
    Config(String),
}

impl PayError {
    /// True for failures worth retrying: 429, 5xx, timeouts and connection errors.
    pub fn is_retryable(&self) -> bool {
        match self {
            Self::Api(api) => {
                StatusCode::from_u16(api.status).is_ok_and(outbound::is_transient_status)
            }
            Self::Transport { transient, .. } => *transient,
            _ => false,
        }
    }

    /// WeChat's error code, if WeChat answered with one.
    pub fn code(&self) -> Option<&str> {
        match self {
            Self::Api(api) => Some(&api.code),
            _ => None,
        }
    }

    fn transport(err: &reqwest::Error) -> Self {
        Self::Transport {
            message: err.to_string(),
            transient: outbound::is_transient_transport(err),
        }
    }
}

/// An error answer from WeChat Pay, as sent.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[error("WeChat Pay {status} {code}: {message} (Request-ID {request_id:?})")]
pub struct ApiError {
    /// HTTP status.
    pub status: u16,
    /// e.g. `PARAM_ERROR`, `ORDER_NOT_EXIST`, `SYSTEM_ERROR`.
    pub code: String,
    /// WeChat's message.
    pub message: String,
    /// WeChat's `detail` object, when given.
    pub detail: Option<serde_json::Value>,
    /// `Request-ID` header, for WeChat support.
    pub request_id: Option<String>,
}

/// Client settings (from `WECHATPAY_*`).
#[derive(Debug, Clone)]
pub struct PayClientConfig {
    /// API base, e.g. `https://api.mch.weixin.qq.com` or the emulator's address.
    pub base_url: String,
    /// Default `notify_url` for orders.
    pub notify_url: String,
    /// `PUB_KEY_ID_…` sent as `Wechatpay-Serial` so responses are signed with the public key.
    pub public_key_id: Option<String>,
    /// Platform certificate refresh interval, used when no public key is configured.
    pub certificate_refresh_secs: i64,
}

impl PayClientConfig {
    /// Settings with the real host and a 24 h certificate refresh.
    pub fn new(notify_url: impl Into<String>) -> Self {
        Self {
            base_url: super::DEFAULT_API_BASE.into(),
            notify_url: notify_url.into(),
            public_key_id: None,
            certificate_refresh_secs: super::certs::DEFAULT_REFRESH_SECS,
        }
    }
}

pub(crate) struct RawResponse {
    status: StatusCode,
    headers: HeaderMap,
    body: Bytes,
}

/// WeChat Pay v3 client for one merchant.
pub struct PayClient {
    http: reqwest::Client,
    base_url: String,
    notify_url: String,
    wechatpay_serial: Option<String>,
    signer: Arc<MerchantSigner>,
    verifier: Verifier,
    apiv3_key: Arc<ApiV3Key>,
    clock: SharedClock,
    nonce: SharedNonce,
    retry: Retry,
    refresh: Option<RefreshSchedule>,
    refresh_lock: tokio::sync::Mutex<()>,
    /// Gates downloads caused by an unknown serial (see [`DownloadThrottle`]).
    forced_downloads: DownloadThrottle,
}

impl std::fmt::Debug for PayClient {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PayClient")
            .field("base_url", &self.base_url)
            .field("mchid", &self.signer.mchid())
            .finish_non_exhaustive()
    }
}

impl PayClient {
    /// A client using the shared outbound HTTP client, the system clock and random nonces.
    ///
    /// When `verifier` holds no WeChat Pay public key, platform certificates are downloaded
    /// before the first call and refreshed every `certificate_refresh_secs`.
    pub fn new(
        config: PayClientConfig,
        signer: Arc<MerchantSigner>,
        verifier: Verifier,
        apiv3_key: Arc<ApiV3Key>,
    ) -> Result<Self, PayError> {
        let http = outbound::client().map_err(|e| PayError::Config(e.to_string()))?;
        let base_url = config.base_url.trim_end_matches('/').to_owned();
        reqwest::Url::parse(&base_url).map_err(|e| PayError::Config(format!("base URL: {e}")))?;
        let refresh = (!verifier.has_public_key())
            .then(|| RefreshSchedule::new(config.certificate_refresh_secs));
        Ok(Self {
            http,
            base_url,
            notify_url: config.notify_url,
            wechatpay_serial: config.public_key_id,
            signer,
            verifier,
            apiv3_key,
            clock: Arc::new(SystemClock),
            nonce: Arc::new(RandomNonce),
            retry: Retry::default(),
            refresh,
            refresh_lock: tokio::sync::Mutex::new(()),
            forced_downloads: DownloadThrottle::local(FORCED_DOWNLOAD_INTERVAL_SECS),
        })
    }

    /// Build everything from the typed `WECHATPAY_*` settings: merchant key, verifier (public key
    /// and/or platform certificates; none means download), APIv3 key, base URL, notify URL.
    pub fn from_settings(settings: &crate::config::WechatPaySettings) -> Result<Self, PayError> {
        let key = RsaSigningKey::from_pkcs8_der(settings.private_key_pkcs8_der.expose())?;
        let signer = Arc::new(MerchantSigner::new(
            &settings.mchid,
            &settings.merchant_serial,
            key,
        ));
        let verifier = Verifier::new();
        if let Some(pk) = &settings.public_key {
            verifier.add_public_key(&pk.id, VerifyingKey::from_der(&pk.spki_der)?);
        }
        for der in &settings.platform_certs_der {
            verifier.add_certificate(PlatformCertificate::from_der(der)?);
        }
        let apiv3 = Arc::new(
            ApiV3Key::from_bytes(settings.apiv3_key.expose())
                .map_err(|e| PayError::Config(e.to_string()))?,
        );
        let mut config = PayClientConfig::new(settings.notify_url.clone().unwrap_or_default());
        config.base_url = settings.api_base.clone();
        config.public_key_id = settings.public_key.as_ref().map(|pk| pk.id.clone());
        Self::new(config, signer, verifier, apiv3)
    }

    /// Use another clock (tests).
    pub fn with_clock(mut self, clock: SharedClock) -> Self {
        self.clock = clock;
        self
    }

    /// Use another nonce source (tests).
    pub fn with_nonce(mut self, nonce: SharedNonce) -> Self {
        self.nonce = nonce;
        self
    }

    /// Share the throttle of downloads caused by unknown serials with every instance using
    /// `store`, so that scaling out does not multiply what forged serials can make us fetch.
    pub fn with_shared_download_throttle(mut self, store: Arc<dyn crate::store::Store>) -> Self {
        self.forced_downloads =
            DownloadThrottle::shared(store, self.signer.mchid(), FORCED_DOWNLOAD_INTERVAL_SECS);
        self
    }

    /// Use another retry policy.
    pub fn with_retry(mut self, retry: Retry) -> Self {
        self.retry = retry;
        self
    }

    /// The verifier (shared with the notification handler).
    pub fn verifier(&self) -> &Verifier {
        &self.verifier
    }

    /// The merchant id.
    pub fn mchid(&self) -> &str {
        self.signer.mchid()
    }

    /// Place a JSAPI (Mini Program) order; fields are validated before anything is sent.
    pub async fn jsapi_prepay(&self, order: &JsapiOrder) -> Result<PrepayResponse, PayError> {
        let body = order.to_wire(self.signer.mchid(), &self.notify_url)?;
        let bytes = serde_json::to_vec(&body).map_err(|e| PayError::Config(e.to_string()))?;
        self.call_json(Method::POST, "/v3/pay/transactions/jsapi", Some(bytes))
            .await
    }

    /// `wx.requestPayment` parameters for a prepay id, signed now with a fresh nonce.
    pub fn request_payment(
        &self,
        appid: &str,
        prepay_id: &str,
    ) -> Result<RequestPaymentParams, PayError> {
        Ok(self.signer.request_payment(
            appid,
            prepay_id,
            self.clock.now_unix(),
            &self.nonce.nonce(),
        )?)
    }

    /// Query an order by merchant order number.
    pub async fn query_by_out_trade_no(&self, out_trade_no: &str) -> Result<Transaction, PayError> {
        check_id("out_trade_no", out_trade_no, 6, 32, "_-|*")?;
        let path = format!(
            "/v3/pay/transactions/out-trade-no/{out_trade_no}?mchid={}",
            self.signer.mchid()
        );
        self.call_json(Method::GET, &path, None).await
    }

    /// Query an order by WeChat transaction id.
    pub async fn query_by_transaction_id(
        &self,
        transaction_id: &str,
    ) -> Result<Transaction, PayError> {
        check_id("transaction_id", transaction_id, 1, 32, "")?;
        let path = format!(
            "/v3/pay/transactions/id/{transaction_id}?mchid={}",
            self.signer.mchid()
        );
        self.call_json(Method::GET, &path, None).await
    }

    /// Close an unpaid order (answers 204).
    pub async fn close(&self, out_trade_no: &str) -> Result<(), PayError> {
        check_id("out_trade_no", out_trade_no, 6, 32, "_-|*")?;
        let path = format!("/v3/pay/transactions/out-trade-no/{out_trade_no}/close");
        let body = serde_json::to_vec(&serde_json::json!({ "mchid": self.signer.mchid() }))
            .map_err(|e| PayError::Config(e.to_string()))?;
        self.call(Method::POST, &path, Some(body)).await.map(|_| ())
    }

    /// Request a refund; repeating the same `out_refund_no` refunds once.
    pub async fn refund(&self, refund: &RefundOrder) -> Result<Refund, PayError> {
        let body =
            serde_json::to_vec(&refund.to_wire()?).map_err(|e| PayError::Config(e.to_string()))?;
        self.call_json(Method::POST, "/v3/refund/domestic/refunds", Some(body))
            .await
    }

    /// Query a refund by merchant refund number.
    pub async fn query_refund(&self, out_refund_no: &str) -> Result<Refund, PayError> {
        check_id("out_refund_no", out_refund_no, 1, 64, "_-|*@")?;
        self.call_json(
            Method::GET,
            &format!("/v3/refund/domestic/refunds/{out_refund_no}"),
            None,
        )
        .await
    }

    /// Asks for the `kind` bill of `date` (`yyyy-MM-dd`, China time). "Still being generated"
    /// and "no bill for that day" are answers, not errors.
    pub async fn bill(&self, kind: BillKind, date: &str) -> Result<BillAnswer, PayError> {
        let valid = date.len() == 10
            && date.bytes().enumerate().all(|(i, b)| {
                if i == 4 || i == 7 {
                    b == b'-'
                } else {
                    b.is_ascii_digit()
                }
            });
        if !valid {
            return Err(PayError::Validation(ValidationError {
                field: "bill_date",
                problem: "must be yyyy-MM-dd".into(),
            }));
        }
        match self
            .call_json::<BillLink>(Method::GET, &kind.request_path(date), None)
            .await
        {
            Ok(link) => Ok(BillAnswer::Ready(link)),
            Err(PayError::Api(api)) => match BillAnswer::from_error_code(&api.code) {
                Some(answer) => Ok(answer),
                None => Err(PayError::Api(api)),
            },
            Err(e) => Err(e),
        }
    }

    /// Downloads a bill file (signed GET of `download_url`, path and query exactly as given).
    /// The response is not signed: the caller checks the file against the announced hash
    /// ([`super::bills::check_gzip`]). Only URLs on the API host are fetched.
    pub async fn download_bill(&self, link: &BillLink) -> Result<Bytes, PayError> {
        let url = reqwest::Url::parse(&link.download_url)
            .map_err(|e| PayError::Config(format!("bill download URL: {e}")))?;
        let base = reqwest::Url::parse(&self.base_url)
            .map_err(|e| PayError::Config(format!("base URL: {e}")))?;
        if url.origin() != base.origin() {
            return Err(PayError::Decode {
                status: 200,
                message: "bill download URL is not on the WeChat Pay API host".into(),
            });
        }
        let canonical = match url.query() {
            Some(q) => format!("{}?{q}", url.path()),
            None => url.path().to_owned(),
        };
        let raw = self
            .retry
            .run(
                |_| self.send_once(&Method::GET, &url, &canonical, Bytes::new()),
                PayError::is_retryable,
            )
            .await?;
        if raw.body.len() > MAX_DOWNLOAD_BYTES {
            return Err(PayError::Decode {
                status: raw.status.as_u16(),
                message: "bill download over 64 MiB".into(),
            });
        }
        Ok(raw.body)
    }

    /// Verify, decrypt and parse a notification received now.
    pub fn parse_notification(
        &self,
        headers: &SignatureHeaders,
        body: &[u8],
    ) -> Result<Notification, NotifyError> {
        parse_notification(
            &self.verifier,
            &self.apiv3_key,
            headers,
            body,
            self.clock.now_unix(),
        )
    }

    /// Download platform certificates, check the response signature with them, and install them.
    ///
    /// Authenticity of the list comes from AES-GCM under the APIv3 key; the response signature
    /// is then checked with the downloaded certificates.
    pub async fn download_certificates(&self) -> Result<Vec<PlatformCertificate>, PayError> {
        let raw = self
            .send_with_retry(Method::GET, "/v3/certificates", None)
            .await?;
        let certs = decrypt_certificates(&self.apiv3_key, &raw.body)?;
        // WeChat signs the list with a certificate it contains.
        let check = Verifier::new();
        for cert in &certs {
            check.add_certificate(cert.clone());
        }
        self.verify_raw(&check, &raw)?;
        self.verifier.replace_certificates(certs.clone());
        if let Some(schedule) = &self.refresh {
            schedule.mark_refreshed(self.clock.now_unix());
        }
        Ok(certs)
    }

    /// A certificate download for a notification signed under a serial we do not know (WeChat
    /// may have rotated its certificates), if the throttle allows one now. `Ok(false)`: nothing
    /// was downloaded (public key mode, or throttled), so the serial stays unknown.
    ///
    /// # Errors
    /// The download failed.
    pub async fn download_for_unknown_serial(&self) -> Result<bool, PayError> {
        if self.refresh.is_none()
            || !self
                .forced_downloads
                .try_acquire(self.clock.now_unix())
                .await
        {
            return Ok(false);
        }
        self.download_certificates().await?;
        Ok(true)
    }

    /// Download certificates when in certificate mode and the refresh is due. A failed refresh
    /// with certificates still on hand is logged, not fatal.
    async fn ensure_certificates(&self, force: bool) -> Result<(), PayError> {
        let Some(schedule) = &self.refresh else {
            return Ok(());
        };
        let wanted = |now| {
            if force {
                schedule.may_force(now)
            } else {
                schedule.is_due(now)
            }
        };
        if !wanted(self.clock.now_unix()) {
            return Ok(());
        }
        let _guard = self.refresh_lock.lock().await;
        if !wanted(self.clock.now_unix()) {
            return Ok(());
        }
        if force
            && !self
                .forced_downloads
                .try_acquire(self.clock.now_unix())
                .await
        {
            return Ok(());
        }
        match self.download_certificates().await {
            Ok(_) => Ok(()),
            Err(err) if self.verifier.certificate_count() > 0 => {
                tracing::warn!(error = %err, "platform certificate refresh failed; keeping current certificates");
                Ok(())
            }
            Err(err) => Err(err),
        }
    }

    pub(crate) async fn call_json<T: serde::de::DeserializeOwned>(
        &self,
        method: Method,
        path: &str,
        body: Option<Vec<u8>>,
    ) -> Result<T, PayError> {
        let raw = self.call(method, path, body).await?;
        serde_json::from_slice(&raw.body).map_err(|e| PayError::Decode {
            status: raw.status.as_u16(),
            message: e.to_string(),
        })
    }

    pub(crate) async fn call(
        &self,
        method: Method,
        path: &str,
        body: Option<Vec<u8>>,
    ) -> Result<RawResponse, PayError> {
        self.ensure_certificates(false).await?;
        let raw = self.send_with_retry(method, path, body).await?;
        match self.verify_raw(&self.verifier, &raw) {
            Err(PayError::Unverified {
                source: VerifyError::UnknownSerial(_),
                ..
            }) if self.refresh.is_some() => {
                // A rotated platform certificate: fetch the new list once, then verify again.
                self.ensure_certificates(true).await?;
                self.verify_raw(&self.verifier, &raw)?;
            }
            other => other?,
        }
        Ok(raw)
    }

    fn verify_raw(&self, verifier: &Verifier, raw: &RawResponse) -> Result<(), PayError> {
        let unverified = |source| PayError::Unverified {
            status: raw.status.as_u16(),
            request_id: request_id(&raw.headers),
            source,
        };
        let headers = SignatureHeaders::from_header_map(&raw.headers).map_err(unverified)?;
        verifier
            .verify(&headers, &raw.body, self.clock.now_unix())
            .map_err(unverified)
    }

    async fn send_with_retry(
        &self,
        method: Method,
        path: &str,
        body: Option<Vec<u8>>,
    ) -> Result<RawResponse, PayError> {
        let url = reqwest::Url::parse(&format!("{}{path}", self.base_url))
            .map_err(|e| PayError::Config(format!("URL {path}: {e}")))?;
        let canonical = match url.query() {
            Some(q) => format!("{}?{q}", url.path()),
            None => url.path().to_owned(),
        };
        let body = Bytes::from(body.unwrap_or_default());
        self.retry
            .run(
                |_| self.send_once(&method, &url, &canonical, body.clone()),
                PayError::is_retryable,
            )
            .await
    }

    async fn send_once(
        &self,
        method: &Method,
        url: &reqwest::Url,
        canonical: &str,
        body: Bytes,
    ) -> Result<RawResponse, PayError> {
        let authorization = self.signer.authorization(
            method.as_str(),
            canonical,
            self.clock.now_unix(),
            &self.nonce.nonce(),
            &body,
        )?;
        let mut request = self
            .http
            .request(method.clone(), url.clone())
            .header(http::header::AUTHORIZATION, authorization)
            .header(http::header::ACCEPT, "application/json")
            .header(http::header::CONTENT_TYPE, "application/json")
            .header(http::header::USER_AGENT, outbound::USER_AGENT);
        if let Some(serial) = &self.wechatpay_serial {
            request = request.header(headers::SERIAL, serial);
        }
        if !body.is_empty() {
            request = request.body(body);
        }
        let response = request.send().await.map_err(|e| PayError::transport(&e))?;
        let status = response.status();
        let headers = response.headers().clone();
        let body = response
            .bytes()
            .await
            .map_err(|e| PayError::transport(&e))?;
        if status.is_success() {
            return Ok(RawResponse {
                status,
                headers,
                body,
            });
        }
        let parsed: ErrorBody = serde_json::from_slice(&body).unwrap_or_else(|_| ErrorBody {
            code: String::new(),
            message: String::from_utf8_lossy(&body).chars().take(512).collect(),
            detail: None,
        });
        Err(PayError::Api(Box::new(ApiError {
            status: status.as_u16(),
            code: parsed.code,
            message: parsed.message,
            detail: parsed.detail,
            request_id: request_id(&headers),
        })))
    }
}

fn request_id(map: &HeaderMap) -> Option<String> {
    map.get(headers::REQUEST_ID)
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned)
}
