//! Virtual payment after the sale: the refund result push (`xpay_refund_notify`), the state
//! of a refund order (`query_order` with the refund number), the complaint push
//! (`xpay_complaint_notify`) and the complaint APIs (`get_complaint_list`,
//! `get_complaint_detail`, `get_negotiation_history`, `response_complaint`,
//! `complete_complaint`). Field names and semantics: docs/pay.md ("Virtual payment refunds",
//! "Consumer complaints").

use serde::{Deserialize, Serialize};
use serde_json::Value;

use super::v3::complaints::{Complaint, NegotiationEntry, check_complaint_id};
use super::xpay::{ErrCode, OrderRef, XpayClient, XpayError};

/// What `query_order` says about a refund order.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RefundOrderState {
    /// Not final yet.
    Pending,
    /// Refunded (status 5, or 8 "user refund completed").
    Succeeded,
    /// The refund failed (status 7): retry with a new refund number.
    Failed,
}

impl RefundOrderState {
    /// From a `query_order` status code.
    pub fn from_status(status: i64) -> Self {
        match status {
            5 | 8 => Self::Succeeded,
            7 => Self::Failed,
            _ => Self::Pending,
        }
    }
}

/// Accepts a JSON number or a numeric string (pushes in JSON mode sometimes quote numbers).
fn lenient_i64<'de, D: serde::Deserializer<'de>>(d: D) -> Result<i64, D::Error> {
    match Value::deserialize(d)? {
        Value::Number(n) => n
            .as_i64()
            .ok_or_else(|| serde::de::Error::custom("not an integer")),
        Value::String(s) if s.is_empty() => Ok(0),
        Value::String(s) => s
            .trim()
            .parse()
            .map_err(|_| serde::de::Error::custom("not an integer")),
        Value::Null => Ok(0),
        _ => Err(serde::de::Error::custom("not an integer")),
    }
}

/// The `xpay_refund_notify` push (after the push was verified and decrypted).
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct RefundNotify {
    /// The user.
    #[serde(rename = "OpenId", default)]
    pub openid: String,
    /// Our refund number (`refund_order_id`).
    #[serde(rename = "MchRefundId")]
    pub mch_refund_id: String,
    /// Our order number of the payment.
    #[serde(rename = "MchOrderId", default)]
    pub mch_order_id: String,
    /// WeChat's refund order id.
    #[serde(rename = "WxRefundId", default)]
    pub wx_refund_id: String,
    /// Refunded amount, fen.
    #[serde(rename = "RefundFee", default, deserialize_with = "lenient_i64")]
    pub refund_fee: i64,
    /// 0 success, anything else a failure.
    #[serde(rename = "RetCode", default, deserialize_with = "lenient_i64")]
    pub ret_code: i64,
    /// Failure detail.
    #[serde(rename = "RetMsg", default)]
    pub ret_msg: Option<String>,
}

/// Parses a decrypted push as `xpay_refund_notify`.
pub fn parse_refund_notify(json: &Value) -> Result<RefundNotify, XpayError> {
    if json.get("Event").and_then(Value::as_str) != Some("xpay_refund_notify") {
        return Err(XpayError::Decode("not a refund push".into()));
    }
    let parsed: RefundNotify =
        serde_json::from_value(json.clone()).map_err(|e| XpayError::Decode(e.to_string()))?;
    let id = &parsed.mch_refund_id;
    if id.is_empty() || id.len() > 64 {
        return Err(XpayError::Decode(
            "refund push without a valid MchRefundId".into(),
        ));
    }
    Ok(parsed)
}

/// The `xpay_complaint_notify` push: a trigger to read the complaints (its fields are
/// unconfirmed, so everything but the event is optional).
#[derive(Debug, Clone, PartialEq, Eq, Deserialize, Default)]
pub struct ComplaintNotify {
    /// The complaining user.
    #[serde(rename = "OpenId", default)]
    pub openid: String,
    /// The complaint, when the push names it.
    #[serde(rename = "ComplaintId", default)]
    pub complaint_id: Option<String>,
    /// Our order number.
    #[serde(rename = "MchOrderId", default)]
    pub mch_order_id: String,
    /// When the user complained (Unix seconds, when given).
    #[serde(rename = "ComplaintTime", default, deserialize_with = "lenient_i64")]
    pub complaint_time: i64,
}

/// Parses a decrypted push as `xpay_complaint_notify`.
pub fn parse_complaint_notify(json: &Value) -> Result<ComplaintNotify, XpayError> {
    if json.get("Event").and_then(Value::as_str) != Some("xpay_complaint_notify") {
        return Err(XpayError::Decode("not a complaint push".into()));
    }
    let parsed: ComplaintNotify =
        serde_json::from_value(json.clone()).map_err(|e| XpayError::Decode(e.to_string()))?;
    if let Some(id) = &parsed.complaint_id
        && check_complaint_id(id).is_err()
    {
        return Err(XpayError::Decode(
            "complaint push with a malformed ComplaintId".into(),
        ));
    }
    Ok(parsed)
}

/// A page of `get_complaint_list`.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize, Serialize, Default)]
pub struct ComplaintList {
    /// Complaints in the window.
    #[serde(default)]
    pub total: i64,
    /// This page.
    #[serde(default)]
    pub complaints: Vec<Complaint>,
}

impl XpayClient {
    /// The state of refund `refund_no` of `openid`: `None` when virtual payment does not know
    /// it (errcode 268490002, "data does not exist").
    pub async fn refund_order_state(
        &self,
        access_token: &str,
        openid: &str,
        refund_no: &str,
    ) -> Result<Option<RefundOrderState>, XpayError> {
        match self
            .query_order(
                access_token,
                openid,
                &OrderRef::OrderId(refund_no.to_owned()),
            )
            .await
        {
            Ok(order) => Ok(Some(RefundOrderState::from_status(order.status_code))),
            Err(XpayError::Api {
                errcode: ErrCode::InvalidParam,
                ..
            }) => Ok(None),
            Err(e) => Err(e),
        }
    }

    /// `get_complaint_list` for `begin_date..=end_date` (`yyyy-mm-dd`).
    pub async fn complaint_list(
        &self,
        access_token: &str,
        begin_date: &str,
        end_date: &str,
        offset: u32,
        limit: u32,
    ) -> Result<ComplaintList, XpayError> {
        let body = serde_json::json!({"env": self.env().as_i32(), "begin_date": begin_date,
            "end_date": end_date, "offset": offset, "limit": limit.clamp(1, 50)});
        self.call("get_complaint_list", access_token, &body).await
    }

    /// `get_complaint_detail`.
    pub async fn complaint_detail(
        &self,
        access_token: &str,
        complaint_id: &str,
    ) -> Result<Complaint, XpayError> {
        check_id(complaint_id)?;
        #[derive(Deserialize)]
        struct Answer {
            complaint: Option<Complaint>,
        }
        let body = serde_json::json!({"env": self.env().as_i32(), "complaint_id": complaint_id});
        let answer: Answer = self
            .call("get_complaint_detail", access_token, &body)
            .await?;
        answer
            .complaint
            .ok_or_else(|| XpayError::Decode("get_complaint_detail without complaint".into()))
    }

    /// `get_negotiation_history`, one page.
    pub async fn complaint_history(
        &self,
        access_token: &str,
        complaint_id: &str,
        offset: u32,
        limit: u32,
    ) -> Result<Vec<NegotiationEntry>, XpayError> {
        check_id(complaint_id)?;
        #[derive(Deserialize)]
        struct Answer {
            #[serde(default)]
            history: Vec<NegotiationEntry>,
        }
        let body = serde_json::json!({"env": self.env().as_i32(), "complaint_id": complaint_id,
            "offset": offset, "limit": limit.clamp(1, 100)});
        let answer: Answer = self
            .call("get_negotiation_history", access_token, &body)
            .await?;
        Ok(answer.history)
    }

    /// `response_complaint`: a text reply.
    pub async fn respond_complaint(
        &self,
        access_token: &str,
        complaint_id: &str,
        content: &str,
    ) -> Result<(), XpayError> {
        check_id(complaint_id)?;
        let body = serde_json::json!({"env": self.env().as_i32(), "complaint_id": complaint_id,
            "response_content": content, "response_images": []});
        let _: Value = self.call("response_complaint", access_token, &body).await?;
        Ok(())
    }

    /// `complete_complaint`.
    pub async fn complete_complaint(
        &self,
        access_token: &str,
        complaint_id: &str,
    ) -> Result<(), XpayError> {
        check_id(complaint_id)?;
        let body = serde_json::json!({"env": self.env().as_i32(), "complaint_id": complaint_id});
        let _: Value = self.call("complete_complaint", access_token, &body).await?;
        Ok(())
    }
}

fn check_id(complaint_id: &str) -> Result<(), XpayError> {
    check_complaint_id(complaint_id).map_err(|e| XpayError::Invalid {
        field: "complaint_id",
        problem: e.problem,
    })
}

/// Runs `call` with the shared access token of `wechat`, refreshing the token once when
/// WeChat rejects it (40001 / 42001).
pub async fn with_access_token<T, F, Fut>(
    wechat: &crate::wechat::WechatClient,
    call: F,
) -> Result<T, XpayError>
where
    F: Fn(String) -> Fut,
    Fut: std::future::Future<Output = Result<T, XpayError>>,
{
    let token_error = |e: crate::wechat::WechatError| XpayError::Transport {
        message: format!("access token: {e}"),
        transient: true,
    };
    let tokens = wechat.tokens();
    let token = tokens.token().await.map_err(token_error)?;
    match call(token.expose().to_owned()).await {
        Err(XpayError::Api {
            errcode: ErrCode::InvalidAccessToken | ErrCode::AccessTokenExpired,
            ..
        }) => {
            let fresh = tokens
                .refresh_after_failure(&token)
                .await
                .map_err(token_error)?;
            call(fresh.expose().to_owned()).await
        }
        other => other,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn refund_pushes_parse_with_numbers_or_strings() {
        let push = serde_json::json!({"Event": "xpay_refund_notify", "OpenId": "o1",
            "MchRefundId": "RF20240505000001", "MchOrderId": "VP1", "RefundFee": "990",
            "RetCode": 0, "RetMsg": null});
        let n = parse_refund_notify(&push).unwrap();
        assert_eq!((n.refund_fee, n.ret_code), (990, 0));
        let failed = serde_json::json!({"Event": "xpay_refund_notify", "MchRefundId": "RF1",
            "RetCode": "268490014", "RetMsg": "refund failed"});
        assert_eq!(parse_refund_notify(&failed).unwrap().ret_code, 268_490_014);
        assert!(parse_refund_notify(&serde_json::json!({"Event": "xpay_refund_notify"})).is_err());
        assert!(
            parse_refund_notify(&serde_json::json!({"Event": "other", "MchRefundId": "R"}))
                .is_err()
        );
    }

    #[test]
    fn refund_order_states() {
        assert_eq!(
            RefundOrderState::from_status(5),
            RefundOrderState::Succeeded
        );
        assert_eq!(
            RefundOrderState::from_status(8),
            RefundOrderState::Succeeded
        );
        assert_eq!(RefundOrderState::from_status(7), RefundOrderState::Failed);
        assert_eq!(RefundOrderState::from_status(1), RefundOrderState::Pending);
    }

    #[test]
    fn a_refund_order_with_null_fields_reads_its_state() {
        // query_order on a refund number: no WeChat Pay transaction, nothing left to refund.
        let order: super::super::xpay::XpayOrder = serde_json::from_value(serde_json::json!({
            "order_id": "RFxpayfail01", "status": 7, "order_type": 1, "order_fee": 990,
            "paid_fee": 990, "paid_time": null, "wx_order_id": "R123", "wxpay_order_id": null,
            "channel_order_id": null, "left_fee": 990}))
        .unwrap();
        assert_eq!(
            RefundOrderState::from_status(order.status_code),
            RefundOrderState::Failed
        );
        assert_eq!((order.wxpay_order_id.as_str(), order.paid_time), ("", 0));
        assert_eq!((order.order_type, order.wx_order_id.as_str()), (1, "R123"));
    }

    #[test]
    fn complaint_pushes_are_triggers_with_optional_fields() {
        let n = parse_complaint_notify(&serde_json::json!({"Event": "xpay_complaint_notify",
            "OpenId": "o1", "ComplaintTime": "1714900000"}))
        .unwrap();
        assert_eq!(n.complaint_time, 1_714_900_000);
        assert!(n.complaint_id.is_none());
        assert!(
            parse_complaint_notify(&serde_json::json!({"Event": "xpay_complaint_notify",
            "ComplaintId": "../x"}))
            .is_err()
        );
    }
}
