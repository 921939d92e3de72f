//! Property tests for the after-sale parsers of outside input: API v2 refund notifications
//! (outer XML, then `req_info` decrypted and parsed), the virtual payment refund and complaint
//! pushes, and the complaint notification resource. None may crash; none may accept garbage.

use proptest::prelude::*;

use super::v2::ApiV2Key;
use super::v2_refund::{decrypt_req_info, parse_refund_notify};
use super::v3::complaints::ComplaintNotice;
use super::v3::notify::Notification;
use super::xpay_after_sale::{parse_complaint_notify, parse_refund_notify as parse_xpay_refund};
use crate::fuzzing::{JSON_PARTS, XML_PARTS, cases, glued, hostile_text, nested};

const KEY: &str = "192006250b4c09247ec02edce69f6a2d";

/// A refund notification envelope around a hostile `req_info`.
fn refund_envelope() -> impl Strategy<Value = String> {
    prop_oneof![
        hostile_text()
            .prop_map(|b| base64::Engine::encode(&base64::engine::general_purpose::STANDARD, b)),
        "[A-Za-z0-9+/=]{0,400}",
    ]
    .prop_map(|req_info| {
        format!(
            "<xml><return_code>SUCCESS</return_code><appid>wx1</appid><mch_id>1</mch_id>\
             <req_info><![CDATA[{req_info}]]></req_info></xml>"
        )
    })
}

proptest! {
    #![proptest_config(cases(3000))]

    /// v2 refund notifications: hostile bodies, XML soup, and well-formed envelopes whose
    /// `req_info` is random bytes. Random bytes never decrypt to a refund under the key.
    #[test]
    fn fuzz_v2_refund_notify(text in prop_oneof![
        hostile_text().prop_map(|b| String::from_utf8_lossy(&b).into_owned()),
        glued(XML_PARTS),
        nested("<xml><req_info>", "</req_info></xml>", glued(XML_PARTS)),
        refund_envelope(),
    ]) {
        let key = ApiV2Key::new(KEY);
        prop_assert!(parse_refund_notify(&text, &key).is_err());
        let _ = decrypt_req_info(&text, &key);
    }

    /// Virtual payment refund and complaint pushes as wxPush hands them over (any JSON).
    #[test]
    fn fuzz_xpay_after_sale_pushes(text in prop_oneof![
        glued(JSON_PARTS),
        nested("{\"Event\":\"xpay_refund_notify\",\"MchRefundId\":", "}", glued(JSON_PARTS)),
        nested("{\"Event\":\"xpay_complaint_notify\",\"ComplaintId\":", "}", glued(JSON_PARTS)),
    ]) {
        if let Ok(value) = serde_json::from_str::<serde_json::Value>(&text) {
            let _ = parse_xpay_refund(&value);
            let _ = parse_complaint_notify(&value);
            // A complaint id that reaches a URL path is always checked.
            if let Ok(n) = parse_complaint_notify(&value)
                && let Some(id) = n.complaint_id
            {
                prop_assert!(id.bytes().all(|b| b.is_ascii_alphanumeric()));
            }
            let notification = Notification::Other {
                id: "EV-1".into(),
                event_type: "COMPLAINT.CREATE".into(),
                resource: value,
            };
            if let Some(Ok(notice)) = ComplaintNotice::from_notification(&notification) {
                prop_assert!(notice.complaint_id.bytes().all(|b| b.is_ascii_alphanumeric()));
            }
        }
    }
}
