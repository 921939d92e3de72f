//! WeChat Pay v3 JSAPI behind [`PaymentChannel`]: prepay and `wx.requestPayment` parameters,
//! order query and close, refunds, and the entry points of payNotify (v3 transactions and
//! refunds, v2 payments), all over [`WxpayGateway`].

use std::sync::Arc;

use async_trait::async_trait;
use serde_json::json;

use super::{Observation, ObservedPayment, Payer, PaymentChannel, RefundAnswer, Started};
use crate::commerce::Commerce;
use crate::commerce::error::CommerceError;
use crate::commerce::fulfil::PaymentOutcome;
use crate::commerce::gateway::WxpayGateway;
use crate::commerce::model::{OrderDoc, Prepay, RefundDoc, RefundState, collections as c};
use crate::domain::catalog::Channel;
use crate::domain::money::Fen;
use crate::pay::v3::{
    JsapiOrder, PayError, RefundOrder, RefundStatus, RefundTarget, TradeState, Transaction,
};
use crate::store::{StoreError, Update};

/// A prepay is reused until this long before WeChat's 2-hour limit.
const PREPAY_LIFETIME_SECS: i64 = 2 * 3600 - 10 * 60;

/// WeChat Pay v3 as a payment channel.
pub struct WxpayChannel {
    gateway: Arc<dyn WxpayGateway>,
}

impl std::fmt::Debug for WxpayChannel {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("WxpayChannel")
            .field("mchid", &self.gateway.mchid())
            .finish()
    }
}

impl WxpayChannel {
    /// The channel over a WeChat Pay client (or a test fake).
    pub fn new(gateway: Arc<dyn WxpayGateway>) -> Self {
        Self { gateway }
    }
}

pub(crate) fn provider(err: PayError) -> CommerceError {
    let retryable = err.is_retryable();
    CommerceError::provider(err, retryable)
}

/// Description on the WeChat Pay bill: the titles, cut to 127 bytes on a char boundary.
fn bill_description(order: &OrderDoc) -> String {
    let mut text = order
        .items
        .iter()
        .map(|l| {
            if l.quantity > 1 {
                format!("{} x{}", l.title, l.quantity)
            } else {
                l.title.clone()
            }
        })
        .collect::<Vec<_>>()
        .join(", ");
    text.retain(|ch| ch.len_utf8() < 4);
    if text.len() > 127 {
        let mut cut = 124;
        while !text.is_char_boundary(cut) {
            cut -= 1;
        }
        text.truncate(cut);
        text.push_str("...");
    }
    text
}

fn rfc3339_to_unix(text: &str) -> Option<i64> {
    time::OffsetDateTime::parse(text, &time::format_description::well_known::Rfc3339)
        .ok()
        .map(|t| t.unix_timestamp())
}

/// A verified transaction (notification or query) as an observation: paid only when its
/// trade state is `SUCCESS`.
fn observe(event_id: &str, source: &str, tx: &Transaction) -> Observation {
    let amount = tx.amount.as_ref();
    let payment = (tx.trade_state == TradeState::Success).then(|| ObservedPayment {
        mchid: Some(tx.mchid.clone()),
        appid: tx.appid.clone().unwrap_or_default(),
        total: amount.and_then(|a| a.total).and_then(|t| Fen::new(t).ok()),
        currency: amount
            .and_then(|a| a.currency.clone())
            .unwrap_or_else(|| "CNY".into()),
        payer: tx
            .payer
            .as_ref()
            .map(|p| p.openid.clone())
            .unwrap_or_default(),
        env: None,
        transaction_id: tx.transaction_id.clone(),
        paid_at: tx.success_time.as_deref().and_then(rfc3339_to_unix),
    });
    Observation {
        event_id: event_id.to_owned(),
        source: source.to_owned(),
        out_trade_no: tx.out_trade_no.clone(),
        payment,
    }
}

/// The refund state a v3 status means (`None`: not final yet or unknown).
fn refund_state(status: RefundStatus) -> Option<RefundState> {
    match status {
        RefundStatus::Success => Some(RefundState::Success),
        RefundStatus::Closed => Some(RefundState::Closed),
        RefundStatus::Abnormal => Some(RefundState::Abnormal),
        RefundStatus::Processing | RefundStatus::Unknown => None,
    }
}

/// Whether a refund request certainly made no refund: refused before sending, or a verified
/// WeChat Pay 4xx answer (not 429). Anything else may have refunded.
fn refused_for_good(err: &PayError) -> bool {
    match err {
        PayError::Validation(_) => true,
        PayError::Api(api) => (400..500).contains(&api.status) && !err.is_retryable(),
        _ => false,
    }
}

#[async_trait]
impl PaymentChannel for WxpayChannel {
    fn channel(&self) -> Channel {
        Channel::Wxpay
    }

    fn merchant(&self) -> Option<&str> {
        Some(self.gateway.mchid())
    }

    async fn start(
        &self,
        order: &mut OrderDoc,
        payer: Payer<'_>,
    ) -> Result<Started, CommerceError> {
        let mut remember = None;
        let prepay_id = match &order.prepay {
            Some(p) if p.expires_at > payer.now => p.prepay_id.clone(),
            _ => {
                let expire = time::OffsetDateTime::from_unix_timestamp(order.expires_at)
                    .map_err(|e| CommerceError::BadRequest(e.to_string()))?;
                let mut request = JsapiOrder::new(
                    order.appid.clone(),
                    bill_description(order),
                    order.out_trade_no.clone(),
                    order.total_fen.get(),
                    order.owner.clone(),
                );
                request.time_expire = Some(expire);
                request.attach = Some(order.id.clone());
                // Same parameters give the order's current prepay_id at WeChat Pay.
                let prepay_id = self.gateway.prepay(&request).await.map_err(provider)?;
                let prepay = Prepay {
                    prepay_id: prepay_id.clone(),
                    expires_at: payer.now + PREPAY_LIFETIME_SECS,
                };
                remember = Some(
                    Update::new().set(
                        "prepay",
                        serde_json::to_value(&prepay)
                            .map_err(|e| StoreError::InvalidDocument(e.to_string()))?,
                    ),
                );
                order.prepay = Some(prepay);
                prepay_id
            }
        };
        let params = self
            .gateway
            .request_payment(&order.appid, &prepay_id)
            .map(|params| json!(params))
            .map_err(provider);
        Ok(Started { remember, params })
    }

    async fn query(
        &self,
        order: &OrderDoc,
        _now: i64,
    ) -> Result<Option<Observation>, CommerceError> {
        if order.prepay.is_none() {
            return Ok(None);
        }
        match self.gateway.query(&order.out_trade_no).await {
            Ok(tx) => Ok(Some(observe(
                &format!("query:{}", order.out_trade_no),
                "query",
                &tx,
            ))),
            // Never reached WeChat Pay: it cannot be paid.
            Err(e) if matches!(e.code(), Some("ORDER_NOT_EXIST" | "ORDERNOTEXIST")) => Ok(None),
            Err(e) => Err(provider(e)),
        }
    }

    async fn close(&self, order: &OrderDoc) -> Result<(), CommerceError> {
        if order.prepay.is_none() {
            return Ok(());
        }
        match self.gateway.close(&order.out_trade_no).await {
            Ok(()) => Ok(()),
            // Never reached WeChat Pay or already closed there: nothing to close.
            Err(e)
                if matches!(
                    e.code(),
                    Some("ORDER_NOT_EXIST" | "ORDERNOTEXIST" | "ORDER_CLOSED")
                ) =>
            {
                Ok(())
            }
            Err(e) => Err(provider(e)),
        }
    }

    async fn refund(
        &self,
        order: &OrderDoc,
        refund: &RefundDoc,
    ) -> Result<RefundAnswer, CommerceError> {
        let request = RefundOrder {
            target: RefundTarget::OutTradeNo(order.out_trade_no.clone()),
            out_refund_no: refund.refund_no.clone(),
            refund_fen: refund.amount_fen.get(),
            total_fen: order.total_fen.get(),
            reason: refund.reason.clone(),
            notify_url: None,
        };
        Ok(match self.gateway.refund(&request).await {
            Ok(r) => RefundAnswer::Answered {
                state: refund_state(r.status),
                provider_refund_id: Some(r.refund_id),
            },
            Err(e) if refused_for_good(&e) => {
                // WeChat refused it for good (e.g. not enough balance, bad params).
                tracing::error!(refund = %refund.refund_no, error = %e, "refund refused");
                RefundAnswer::Refused(e.to_string())
            }
            // The outcome is unknown (a reset after sending, an unverified or undecodable
            // answer, a 5xx): the refund may have been made, so it stays processing and
            // reconciliation re-sends the same `out_refund_no`, which WeChat Pay answers with
            // the refund's real state.
            Err(e) => RefundAnswer::Retry(provider(e)),
        })
    }
}

impl Commerce {
    /// Sells through WeChat Pay v3 over `gateway`.
    #[must_use]
    pub fn with_wxpay(self, gateway: Arc<dyn WxpayGateway>) -> Self {
        self.with_channel(Arc::new(WxpayChannel::new(gateway)))
    }

    /// The WeChat Pay merchant id, when WeChat Pay is configured.
    pub fn mchid(&self) -> Option<&str> {
        self.channel(Channel::Wxpay).and_then(|c| c.merchant())
    }

    /// Applies a verified WeChat Pay transaction (from a notification or a query) to its
    /// order. `event_id` is recorded in `payment_events` (unique).
    pub async fn apply_wxpay_transaction(
        &self,
        event_id: &str,
        source: &str,
        tx: &Transaction,
    ) -> Result<PaymentOutcome, CommerceError> {
        self.apply_observation(Channel::Wxpay, &observe(event_id, source, tx))
            .await
    }

    /// Applies a verified v3 `REFUND.*` notification: the refund reaches its final state once,
    /// the order's amounts and status follow. Returns whether this call settled it.
    pub async fn apply_refund_notification(
        &self,
        event_id: &str,
        notification: &crate::pay::v3::RefundNotification,
    ) -> Result<bool, CommerceError> {
        self.apply_refund_result(event_id, "v3_notify", notification)
            .await
    }

    /// Applies a decrypted API v2 refund notification (`req_info`, docs/pay.md): it must name
    /// our merchant and app; `SUCCESS` settles the refund, `REFUNDCLOSE` closes it, `CHANGE`
    /// (the money could not reach the user) records it `abnormal`, the way the v3
    /// notification does. Idempotent by `out_refund_no`. Returns whether this call settled it.
    pub async fn apply_v2_refund_notification(
        &self,
        notify: &crate::pay::v2_refund::RefundNotify,
    ) -> Result<bool, CommerceError> {
        use crate::pay::v2_refund::V2RefundStatus;
        use crate::pay::v3::models::RefundAmount;
        use crate::pay::v3::{RefundNotification, RefundStatus};
        if notify.appid != self.appid {
            tracing::warn!(refund = %notify.out_refund_no, appid = %notify.appid,
                "v2 refund notification for another app");
            return Ok(false);
        }
        let refund_status = match &notify.refund_status {
            V2RefundStatus::Success => RefundStatus::Success,
            V2RefundStatus::Closed => RefundStatus::Closed,
            V2RefundStatus::Change => RefundStatus::Abnormal,
            V2RefundStatus::Other(status) => {
                tracing::warn!(refund = %notify.out_refund_no, status = %status,
                    "v2 refund notification with an unknown status: nothing changed");
                return Ok(false);
            }
        };
        let as_v3 = RefundNotification {
            mchid: notify.mch_id.clone(),
            out_trade_no: notify.out_trade_no.clone(),
            transaction_id: notify.transaction_id.clone(),
            out_refund_no: notify.out_refund_no.clone(),
            refund_id: notify.refund_id.clone(),
            refund_status,
            success_time: notify.success_time.clone(),
            user_received_account: None,
            amount: RefundAmount {
                total: notify.total_fee,
                refund: notify.refund_fee,
                payer_total: None,
                payer_refund: None,
                currency: None,
            },
        };
        let event_id = format!(
            "v2refund:{}:{:?}",
            notify.out_refund_no, as_v3.refund_status
        );
        self.apply_refund_result(&event_id, "v2_notify", &as_v3)
            .await
    }

    async fn apply_refund_result(
        &self,
        event_id: &str,
        source: &str,
        notification: &crate::pay::v3::RefundNotification,
    ) -> Result<bool, CommerceError> {
        let ours = self.mchid() == Some(notification.mchid.as_str());
        let settled = match refund_state(notification.refund_status) {
            Some(state) if ours => {
                let known = self
                    .store
                    .get(c::REFUNDS, &notification.out_refund_no)
                    .await?
                    .is_some();
                match (known, state, Fen::new(notification.amount.refund)) {
                    (true, ..) => {
                        self.settle_refund(
                            &notification.out_refund_no,
                            state,
                            Some(&notification.refund_id),
                        )
                        .await?
                    }
                    // Made in the merchant console: the money went back all the same.
                    (false, RefundState::Success, Ok(amount)) if amount > Fen::ZERO => {
                        self.record_outside_refund(
                            &notification.out_trade_no,
                            &notification.out_refund_no,
                            amount,
                            Some(&notification.refund_id),
                        )
                        .await?
                    }
                    _ => false,
                }
            }
            _ => false,
        };
        if !ours {
            tracing::warn!(refund = %notification.out_refund_no, "refund notification for another merchant");
        }
        let doc = serde_json::json!({
            "_id": event_id,
            "eventId": event_id,
            "source": source,
            "kind": "refund",
            "outTradeNo": notification.out_trade_no,
            "refundNo": notification.out_refund_no,
            "amountFen": notification.amount.refund,
            "result": if settled { "applied" } else if ours { "duplicate" } else { "foreign_merchant" },
            "receivedAt": self.now(),
        });
        match self.store.insert(c::PAYMENT_EVENTS, doc).await {
            Ok(_) | Err(StoreError::DuplicateKey { .. }) => Ok(settled),
            Err(e) => Err(e.into()),
        }
    }

    /// Applies a verified API v2 payment notification (merchants still on v2).
    pub async fn apply_v2_notification(
        &self,
        notify: &crate::pay::v2::PaymentNotify,
    ) -> Result<PaymentOutcome, CommerceError> {
        let tx = crate::pay::v3::Transaction {
            appid: Some(notify.appid.clone()),
            mchid: notify.mch_id.clone(),
            out_trade_no: notify.out_trade_no.clone(),
            transaction_id: Some(notify.transaction_id.clone()),
            trade_type: notify.fields.get("trade_type").cloned(),
            trade_state: crate::pay::v3::TradeState::Success,
            trade_state_desc: None,
            bank_type: notify.fields.get("bank_type").cloned(),
            attach: notify.attach.clone(),
            success_time: v2_time(&notify.time_end),
            payer: Some(crate::pay::v3::models::Payer {
                openid: notify.openid.clone(),
            }),
            amount: Some(crate::pay::v3::models::TransactionAmount {
                total: Some(notify.total_fee),
                payer_total: None,
                currency: Some(
                    notify
                        .fields
                        .get("fee_type")
                        .cloned()
                        .unwrap_or_else(|| "CNY".into()),
                ),
                payer_currency: None,
            }),
        };
        let event_id = format!("v2:{}", notify.transaction_id);
        self.apply_wxpay_transaction(&event_id, "v2_notify", &tx)
            .await
    }
}

/// v2 `time_end` (`yyyyMMddHHmmss`, Beijing time) as RFC 3339.
fn v2_time(time_end: &str) -> Option<String> {
    let d = time_end.as_bytes();
    if d.len() != 14 || !d.iter().all(u8::is_ascii_digit) {
        return None;
    }
    let t = time_end;
    Some(format!(
        "{}-{}-{}T{}:{}:{}+08:00",
        &t[0..4],
        &t[4..6],
        &t[6..8],
        &t[8..10],
        &t[10..12],
        &t[12..14]
    ))
}
