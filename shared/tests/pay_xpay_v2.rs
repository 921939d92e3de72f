//! Virtual payment (xpay) and API v2: vectors read as they are, and the server calls against a
//! local stand-in that checks the signatures of what it receives.

use std::collections::HashMap;
use std::convert::Infallible;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::{Request, Response};
use serde_json::{Value, json};
use wemint::clock::FixedClock;
use wemint::outbound::{Retry, Sleeper};
use wemint::pay::FixedNonces;
use wemint::pay::v2::{self, ApiV2Key, Params, SignType, UnifiedOrder, V2Client, V2Error};
use wemint::pay::xpay::{
    self, AppKey, Env, ErrCode, Mode, OrderRef, OrderStatus, RefundRequest, SignData, XpayClient,
    XpayError,
};

const VECTORS: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../testdata/vectors/");

fn json_file(name: &str) -> Value {
    serde_json::from_str(&std::fs::read_to_string(format!("{VECTORS}{name}")).unwrap()).unwrap()
}

fn s<'a>(v: &'a Value, k: &str) -> &'a str {
    v[k].as_str().unwrap()
}

#[test]
fn xpay_vectors() {
    let v = json_file("xpay.json");
    let app_key = AppKey::new(s(&v, "app_key"));
    let session_key = s(&v, "session_key");
    let client = &v["client_payment"];
    let sign_data = s(client, "signData");
    assert_eq!(s(client, "mode"), Mode::Goods.as_str());
    assert_eq!(
        xpay::pay_sig(&app_key, xpay::CLIENT_URI, sign_data),
        s(client, "paySig")
    );
    assert_eq!(
        xpay::user_signature(session_key, sign_data),
        s(client, "signature")
    );

    // Building the same signData from typed fields gives the byte-identical string and signatures.
    let typed = SignData {
        offer_id: "8384331751".into(),
        buy_quantity: 1,
        env: Env::Production,
        currency_type: "CNY".into(),
        product_id: Some("vip_month".into()),
        goods_price: Some(1990),
        activity_selling_price: None,
        out_trade_no: "VP57865369231211784148".into(),
        attach: "content:premium".into(),
    };
    let params = xpay::virtual_payment(&typed, Mode::Goods, &app_key, session_key).unwrap();
    assert_eq!(params.sign_data, sign_data);
    assert_eq!(params.pay_sig, s(client, "paySig"));
    assert_eq!(params.signature, s(client, "signature"));
    let as_json = serde_json::to_value(&params).unwrap();
    assert_eq!(as_json["signData"], client["signData"]);
    assert_eq!(as_json["paySig"], client["paySig"]);

    let server = &v["server_call"];
    assert_eq!(
        xpay::pay_sig(&app_key, s(server, "uri"), s(server, "body")),
        s(server, "pay_sig")
    );
    // Lower-case hex only.
    assert!(
        params
            .pay_sig
            .chars()
            .all(|c| c.is_ascii_digit() || c.is_ascii_lowercase())
    );
}

#[test]
fn xpay_sign_data_validation() {
    let base = SignData {
        offer_id: "1".into(),
        buy_quantity: 1,
        env: Env::Sandbox,
        currency_type: "CNY".into(),
        product_id: Some("p".into()),
        goods_price: Some(100),
        activity_selling_price: None,
        out_trade_no: "VP12345678".into(),
        attach: String::new(),
    };
    let k = AppKey::new("k");
    assert!(xpay::virtual_payment(&base, Mode::Goods, &k, "sk").is_ok());
    let discounted = SignData {
        activity_selling_price: Some(40),
        ..base.clone()
    };
    let params = xpay::virtual_payment(&discounted, Mode::Goods, &k, "sk").unwrap();
    assert!(
        params
            .sign_data
            .contains(r#""goodsPrice":100,"activitySellingPrice":40,"#),
        "selling price follows goodsPrice: {}",
        params.sign_data
    );
    for bad in [
        SignData {
            out_trade_no: "_VP12345678".into(),
            ..base.clone()
        },
        SignData {
            out_trade_no: "VP1".into(),
            ..base.clone()
        },
        SignData {
            buy_quantity: 0,
            ..base.clone()
        },
        SignData {
            goods_price: Some(0),
            activity_selling_price: None,
            ..base.clone()
        },
        SignData {
            product_id: None,
            ..base.clone()
        },
        SignData {
            activity_selling_price: Some(39),
            ..base.clone()
        },
        SignData {
            activity_selling_price: Some(101),
            ..base.clone()
        },
    ] {
        assert!(matches!(
            xpay::virtual_payment(&bad, Mode::Goods, &k, "sk"),
            Err(XpayError::Invalid { .. })
        ));
    }
    assert!(
        xpay::virtual_payment(&base, Mode::Coin, &k, "sk").is_err(),
        "coin mode carries no product"
    );
    assert!(
        xpay::virtual_payment(&base, Mode::Goods, &k, "").is_err(),
        "no session_key, no signature"
    );
    assert!(format!("{k:?}").contains("redacted"));
}

#[test]
fn v2_sign_vector() {
    let v = json_file("v2_sign.json");
    let key = ApiV2Key::new(s(&v, "api_key"));
    let params: Params = v["params"]
        .as_object()
        .unwrap()
        .iter()
        .map(|(k, val)| (k.clone(), val.as_str().unwrap().to_owned()))
        .collect();
    assert_eq!(
        v2::string_sign_temp(&params, &key),
        s(&v, "string_sign_temp")
    );
    assert_eq!(v2::sign(&params, &key, SignType::Md5), s(&v, "MD5"));
    assert_eq!(
        v2::sign(&params, &key, SignType::HmacSha256),
        s(&v, "HMAC-SHA256")
    );

    // The same values as a received message verify, with either sign type; a changed value does not.
    let mut signed = params.clone();
    signed.insert("sign".into(), s(&v, "MD5").into());
    v2::verify(&signed, &key).unwrap();
    signed.insert("sign_type".into(), "HMAC-SHA256".into());
    signed.insert("sign".into(), s(&v, "HMAC-SHA256").into());
    assert_eq!(
        v2::verify(&signed, &key),
        Err(V2Error::BadSign),
        "sign_type is itself signed"
    );
    let mut with_type = params.clone();
    with_type.insert("sign_type".into(), "HMAC-SHA256".into());
    let sig = v2::sign(&with_type, &key, SignType::HmacSha256);
    with_type.insert("sign".into(), sig);
    v2::verify(&with_type, &key).unwrap();
    with_type.insert("total_fee".into(), "1".into());
    assert_eq!(v2::verify(&with_type, &key), Err(V2Error::BadSign));
}

// ---- a tiny local stand-in -------------------------------------------------------------

type Handler = dyn Fn(&str, &str, &[u8]) -> (u16, String) + Send + Sync;

async fn serve(handler: Arc<Handler>) -> String {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        loop {
            let Ok((stream, _)) = listener.accept().await else {
                return;
            };
            let handler = handler.clone();
            tokio::spawn(async move {
                let service =
                    hyper::service::service_fn(move |req: Request<hyper::body::Incoming>| {
                        let handler = handler.clone();
                        async move {
                            let method = req.method().as_str().to_owned();
                            let target = req
                                .uri()
                                .path_and_query()
                                .map(|p| p.as_str().to_owned())
                                .unwrap_or_default();
                            let body = req.into_body().collect().await.unwrap().to_bytes();
                            let (status, out) = handler(&method, &target, &body);
                            Ok::<_, Infallible>(
                                Response::builder()
                                    .status(status)
                                    .body(Full::new(Bytes::from(out)))
                                    .unwrap(),
                            )
                        }
                    });
                let _ = hyper::server::conn::http1::Builder::new()
                    .serve_connection(hyper_util::rt::TokioIo::new(stream), service)
                    .await;
            });
        }
    });
    format!("http://{addr}")
}

struct NoSleep;
impl Sleeper for NoSleep {
    fn sleep(
        &self,
        _: Duration,
    ) -> std::pin::Pin<Box<dyn std::future::Future<Output = ()> + Send + '_>> {
        Box::pin(std::future::ready(()))
    }
}

fn fast_retry() -> Retry {
    Retry::new(3, Duration::from_millis(10), Duration::from_millis(50))
        .with_sleeper(Arc::new(NoSleep))
}

fn query_params(target: &str) -> HashMap<String, String> {
    let url = reqwest::Url::parse(&format!("http://x{target}")).unwrap();
    url.query_pairs()
        .map(|(k, v)| (k.into_owned(), v.into_owned()))
        .collect()
}

#[tokio::test]
async fn xpay_server_calls_sign_the_exact_body_and_type_errcodes() {
    let v = json_file("xpay.json");
    let app_key = AppKey::new(s(&v, "app_key"));
    let checker = app_key.clone();
    let calls: Arc<Mutex<Vec<(String, Value)>>> = Arc::default();
    let seen = calls.clone();
    let busy_once = Arc::new(Mutex::new(true));
    let handler: Arc<Handler> = Arc::new(move |method, target, body| {
        assert_eq!(method, "POST");
        let path = target.split('?').next().unwrap().to_owned();
        let q = query_params(target);
        let body_str = std::str::from_utf8(body).unwrap();
        // The stand-in recomputes paySig over the exact bytes it received.
        if q.get("pay_sig").map(String::as_str) != Some(&xpay::pay_sig(&checker, &path, body_str)) {
            return (
                200,
                json!({"errcode": 268490003, "errmsg": "sig error"}).to_string(),
            );
        }
        if q.get("access_token").map(String::as_str) != Some("AT-123+/=") {
            return (
                200,
                json!({"errcode": 40001, "errmsg": "invalid credential"}).to_string(),
            );
        }
        let parsed: Value = serde_json::from_slice(body).unwrap();
        seen.lock().unwrap().push((path.clone(), parsed.clone()));
        let answer = match path.as_str() {
            "/xpay/query_order"
                if parsed["order_id"] == "VP_BUSY_000"
                    && std::mem::take(&mut *busy_once.lock().unwrap()) =>
            {
                json!({"errcode": -1, "errmsg": "system busy"})
            }
            "/xpay/query_order" => json!({"errcode": 0, "errmsg": "ok", "order": {
                "order_id": parsed["order_id"], "status": 2, "order_fee": 1990, "paid_fee": 1990,
                "left_fee": 1990, "paid_time": 1767225600, "wx_order_id": "wx-1", "wxpay_order_id": "4200..."}}),
            "/xpay/refund_order" if parsed["refund_order_id"] == "RF_DUP_0001" => {
                json!({"errcode": 268490004, "errmsg": "duplicate"})
            }
            "/xpay/refund_order" => {
                json!({"errcode": 0, "errmsg": "ok", "refund_order_id": parsed["refund_order_id"],
                "refund_wx_order_id": "wxr-1", "pay_order_id": parsed["order_id"], "pay_wx_order_id": "wx-1"})
            }
            "/xpay/notify_provide_goods" => json!({"errcode": 0, "errmsg": "ok"}),
            _ => json!({"errcode": 268490002, "errmsg": "bad api"}),
        };
        (200, answer.to_string())
    });
    let base = serve(handler).await;
    let client = XpayClient::new(&base, app_key, Env::Production)
        .unwrap()
        .with_retry(fast_retry());

    let order = client
        .query_order(
            "AT-123+/=",
            "openid-1",
            &OrderRef::OrderId("VP42893340636199459884".into()),
        )
        .await
        .unwrap();
    assert_eq!(
        (order.status(), order.paid_fee, order.order_id.as_str()),
        (OrderStatus::Paid, 1990, "VP42893340636199459884")
    );
    assert!(order.status().is_paid());

    // errcode -1 is retried.
    let order = client
        .query_order(
            "AT-123+/=",
            "openid-1",
            &OrderRef::OrderId("VP_BUSY_000".into()),
        )
        .await
        .unwrap();
    assert_eq!(order.status(), OrderStatus::Paid);

    let refund = RefundRequest {
        openid: "openid-1".into(),
        order: OrderRef::OrderId("VP42893340636199459884".into()),
        refund_order_id: "RF_0000001".into(),
        left_fee: 1990,
        refund_fee: 990,
        biz_meta: String::new(),
        refund_reason: "3".into(),
        req_from: "2".into(),
    };
    let r = client.refund_order("AT-123+/=", &refund).await.unwrap();
    assert_eq!(r.refund_wx_order_id, "wxr-1");
    let dup = RefundRequest {
        refund_order_id: "RF_DUP_0001".into(),
        ..refund.clone()
    };
    match client.refund_order("AT-123+/=", &dup).await {
        Err(XpayError::Api {
            errcode: ErrCode::Duplicate,
            ..
        }) => {}
        other => panic!("{other:?}"),
    }
    assert!(matches!(
        client
            .refund_order(
                "AT-123+/=",
                &RefundRequest {
                    refund_fee: 2000,
                    ..refund.clone()
                }
            )
            .await,
        Err(XpayError::Invalid {
            field: "refund_fee",
            ..
        })
    ));
    client
        .notify_provide_goods("AT-123+/=", &OrderRef::WxOrderId("wx-1".into()))
        .await
        .unwrap();

    // A wrong token is typed, and nothing secret leaks into the error text.
    let err = client
        .query_order(
            "expired",
            "openid-1",
            &OrderRef::OrderId("VP42893340636199459884".into()),
        )
        .await
        .unwrap_err();
    assert!(matches!(
        err,
        XpayError::Api {
            errcode: ErrCode::InvalidAccessToken,
            ..
        }
    ));
    // A wrong AppKey is refused by the stand-in's signature check.
    let wrong = XpayClient::new(&base, AppKey::new("wrong"), Env::Production)
        .unwrap()
        .with_retry(fast_retry());
    let err = wrong
        .query_order(
            "AT-123+/=",
            "o",
            &OrderRef::OrderId("VP42893340636199459884".into()),
        )
        .await
        .unwrap_err();
    assert!(matches!(
        err,
        XpayError::Api {
            errcode: ErrCode::BadSignature,
            ..
        }
    ));
    assert_eq!(ErrCode::from_code(268_490_009), ErrCode::SessionKeyExpired);
    assert_eq!(ErrCode::SessionKeyExpired.code(), 268_490_009);

    let calls = calls.lock().unwrap();
    let provide = calls
        .iter()
        .find(|(p, _)| p == "/xpay/notify_provide_goods")
        .unwrap();
    assert_eq!(provide.1, json!({"env": 0, "wx_order_id": "wx-1"}));
    let refund_body = &calls
        .iter()
        .find(|(p, _)| p == "/xpay/refund_order")
        .unwrap()
        .1;
    assert_eq!(refund_body["refund_fee"], 990);
    assert_eq!(refund_body["order_id"], "VP42893340636199459884");
}

#[test]
fn xpay_goods_deliver_push_is_typed() {
    let push = json!({
        "ToUserName": "gh_97417a04a28d", "FromUserName": "o9AgO5Kd5ggOC-bXrbNODIiE3bGY",
        "CreateTime": 1767225600, "MsgType": "event", "Event": "xpay_goods_deliver_notify",
        "OpenId": "oFJYNe4Gzb3Rq9MerAIsYUvzmGmE", "OutTradeNo": "VP57865369231211784148", "Env": 0,
        "WeChatPayInfo": {"MchOrderNo": "M1", "TransactionId": "4200001", "PaidTime": 1767225601},
        "GoodsInfo": {"ProductId": "vip_month", "Quantity": 1, "OrigPrice": 1990, "ActualPrice": 1990, "Attach": "content:premium"}
    });
    let n = xpay::parse_goods_deliver_notify(&push).unwrap();
    assert_eq!(n.out_trade_no, "VP57865369231211784148");
    assert_eq!(n.openid, "oFJYNe4Gzb3Rq9MerAIsYUvzmGmE");
    let goods = n.goods_info.unwrap();
    assert_eq!(
        (
            goods.product_id.as_str(),
            goods.actual_price,
            goods.attach.as_str()
        ),
        ("vip_month", 1990, "content:premium")
    );
    assert_eq!(n.wechat_pay_info.unwrap().transaction_id, "4200001");

    // Lower-case variants seen in peer SDKs are accepted too.
    let alt = json!({"Event": "xpay_goods_deliver_notify", "openid": "o1", "OutTradeNo": "VP12345678", "env": 1,
        "WechatPayInfo": {"MchOrderNo": "M2"}});
    let n = xpay::parse_goods_deliver_notify(&alt).unwrap();
    assert_eq!((n.openid.as_str(), n.env), ("o1", 1));

    assert!(
        xpay::parse_goods_deliver_notify(
            &json!({"Event": "xpay_coin_pay_notify", "OpenId": "o", "OutTradeNo": "x"})
        )
        .is_err()
    );
    assert!(
        xpay::parse_goods_deliver_notify(
            &json!({"Event": "xpay_goods_deliver_notify", "OpenId": "o"})
        )
        .is_err()
    );
    assert_eq!(xpay::deliver_ack()["ErrCode"], 0);
}

#[tokio::test]
async fn v2_unifiedorder_against_stand_in() {
    let v = json_file("v2_sign.json");
    let key = ApiV2Key::new(s(&v, "api_key"));
    let server_key = key.clone();
    let handler: Arc<Handler> = Arc::new(move |method, target, body| {
        assert_eq!((method, target), ("POST", "/pay/unifiedorder"));
        let req = v2::from_xml(std::str::from_utf8(body).unwrap()).unwrap();
        let mut answer = Params::new();
        answer.insert("return_code".into(), "SUCCESS".into());
        if v2::verify(&req, &server_key).is_err() {
            answer.insert("return_code".into(), "FAIL".into());
            answer.insert("return_msg".into(), "签名错误".into());
            return (200, v2::to_xml(&answer));
        }
        answer.insert("return_msg".into(), "OK".into());
        answer.insert("appid".into(), req["appid"].clone());
        answer.insert("mch_id".into(), req["mch_id"].clone());
        answer.insert("nonce_str".into(), "srvnonce".into());
        if req["out_trade_no"] == "ORD_PAID_0001" {
            answer.insert("result_code".into(), "FAIL".into());
            answer.insert("err_code".into(), "ORDERPAID".into());
            answer.insert("err_code_des".into(), "该订单已支付".into());
        } else {
            answer.insert("result_code".into(), "SUCCESS".into());
            answer.insert(
                "prepay_id".into(),
                "wx201410272009395522657a690389285100".into(),
            );
            answer.insert("trade_type".into(), "JSAPI".into());
        }
        // For ORD_BADSIGN_1 the stand-in answers with a sign that cannot verify.
        let sig = if req["out_trade_no"] == "ORD_BADSIGN_1" {
            "00000000000000000000000000000000".to_owned()
        } else {
            v2::sign(&answer, &server_key, SignType::Md5)
        };
        answer.insert("sign".into(), sig);
        (200, v2::to_xml(&answer))
    });
    let base = serve(handler).await;
    let client = V2Client::new(&base, "1959139582", key.clone(), SignType::HmacSha256)
        .unwrap()
        .with_nonce(Arc::new(FixedNonces::new([
            "3HMcmxcN4ie3ZAxQGcLBLXteF7p6148u",
        ])))
        .with_clock(Arc::new(FixedClock::new(1_767_225_600)))
        .with_retry(fast_retry());
    let order = |no: &str| UnifiedOrder {
        appid: "wx7fe13309749792e0".into(),
        body: "会员月卡".into(),
        out_trade_no: no.into(),
        total_fee: 1990,
        spbill_create_ip: "127.0.0.1".into(),
        notify_url: "https://example.com/pay/notify-v2".into(),
        openid: "ofTmeEoetA4k3dvQ4JCZtRahvpja".into(),
        attach: None,
        time_expire: None,
    };
    // The request parameters are the vector's (minus the empty attach), so its sign input matches.
    let mut p = order("ORD75199120347047440497")
        .params("1959139582")
        .unwrap();
    p.insert(
        "nonce_str".into(),
        "3HMcmxcN4ie3ZAxQGcLBLXteF7p6148u".into(),
    );
    assert_eq!(v2::string_sign_temp(&p, &key), s(&v, "string_sign_temp"));

    let ok = client
        .unifiedorder(&order("ORD75199120347047440497"))
        .await
        .unwrap();
    assert_eq!(ok.prepay_id, "wx201410272009395522657a690389285100");
    let pay = client.request_payment("wx7fe13309749792e0", &ok.prepay_id);
    assert_eq!(
        (pay.sign_type.as_str(), pay.time_stamp.as_str()),
        ("HMAC-SHA256", "1767225600")
    );

    match client.unifiedorder(&order("ORD_PAID_0001")).await {
        Err(V2Error::Business { err_code, .. }) => assert_eq!(err_code, "ORDERPAID"),
        other => panic!("{other:?}"),
    }
    assert_eq!(
        client
            .unifiedorder(&order("ORD_BADSIGN_1"))
            .await
            .unwrap_err(),
        V2Error::BadSign
    );
    let wrong_key =
        V2Client::new(&base, "1959139582", ApiV2Key::new("nope"), SignType::Md5).unwrap();
    assert!(matches!(
        wrong_key.unifiedorder(&order("ORD1234567")).await,
        Err(V2Error::Return(_))
    ));
    assert!(matches!(
        client
            .unifiedorder(&UnifiedOrder {
                total_fee: 0,
                ..order("ORD1234567")
            })
            .await,
        Err(V2Error::Invalid {
            field: "total_fee",
            ..
        })
    ));
    assert!(v2::REPLY_SUCCESS.contains("SUCCESS"));
}

#[tokio::test]
async fn xpay_client_from_typed_settings_signs_with_the_configured_appkey() {
    let v = json_file("xpay.json");
    let handler: Arc<Handler> = Arc::new(move |_, target, body| {
        let q = query_params(target);
        let sig = xpay::pay_sig(
            &AppKey::new(s(&json_file("xpay.json"), "app_key")),
            "/xpay/notify_provide_goods",
            std::str::from_utf8(body).unwrap(),
        );
        let parsed: Value = serde_json::from_slice(body).unwrap();
        let ok = q.get("pay_sig") == Some(&sig) && parsed["env"] == 1;
        (
            200,
            json!({"errcode": if ok { 0 } else { 268490003 }, "errmsg": "x"}).to_string(),
        )
    });
    let base = serve(handler).await;
    let config = wemint::config::Config::from_vars([
        ("XPAY_APPKEY", s(&v, "app_key")),
        ("XPAY_OFFER_ID", "8384331751"),
        ("XPAY_ENV", "1"),
    ]);
    let client = XpayClient::from_settings(&config.xpay().unwrap(), &base).unwrap();
    client
        .notify_provide_goods("AT", &OrderRef::OrderId("VP12345678".into()))
        .await
        .unwrap();
}
