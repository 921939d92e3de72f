//! `wemint-dev demo`: starts a fresh suite in a temporary directory and runs the money flow
//! end to end through the gateway, as the Mini Program would: login → buy a physical item →
//! pay → notification → paid; buy a membership with virtual payment → delivered → gated
//! content unlocked; post text and an image → moderated; refund; a consumer complaint →
//! respond → complete. Each step prints its result
//! and timing; a step whose function is missing or wrong fails with the reason, and any
//! failure makes the run fail. Nothing is faked: every step goes through the real binaries.

use std::time::{Duration, Instant};

use serde_json::{Value, json};

use crate::suite::{Suite, SuiteOptions};

/// One step's result.
#[derive(Debug, Clone)]
pub struct StepResult {
    /// Step title.
    pub name: String,
    /// Passed?
    pub ok: bool,
    /// What happened.
    pub detail: String,
    /// How long it took.
    pub elapsed: Duration,
}

/// The outcome of a demo run.
#[derive(Debug, Clone, Default)]
pub struct DemoReport {
    /// Every step, in order.
    pub steps: Vec<StepResult>,
}

impl DemoReport {
    /// True when every step passed.
    pub fn passed(&self) -> bool {
        !self.steps.is_empty() && self.steps.iter().all(|s| s.ok)
    }
}

/// A tiny valid PNG (1×1, transparent) to upload.
const PNG: &[u8] = &[
    0x89, 0x50, 0x4E, 0x47, 0x0D, 0x0A, 0x1A, 0x0A, 0x00, 0x00, 0x00, 0x0D, 0x49, 0x48, 0x44, 0x52,
    0x00, 0x00, 0x00, 0x01, 0x00, 0x00, 0x00, 0x01, 0x08, 0x06, 0x00, 0x00, 0x00, 0x1F, 0x15, 0xC4,
    0x89, 0x00, 0x00, 0x00, 0x0D, 0x49, 0x44, 0x41, 0x54, 0x78, 0x9C, 0x63, 0x00, 0x01, 0x00, 0x00,
    0x05, 0x00, 0x01, 0x0D, 0x0A, 0x2D, 0xB4, 0x00, 0x00, 0x00, 0x00, 0x49, 0x45, 0x4E, 0x44, 0xAE,
    0x42, 0x60, 0x82,
];

/// The 1×1 PNG with a `tEXt` chunk (`Comment`) carrying `text`, inserted before IEND.
pub fn png_with_text(text: &str) -> Vec<u8> {
    let iend = PNG.len() - 12;
    let mut data = b"Comment\0".to_vec();
    data.extend_from_slice(text.as_bytes());
    let mut chunk = Vec::new();
    chunk.extend_from_slice(&(data.len() as u32).to_be_bytes());
    let mut typed = b"tEXt".to_vec();
    typed.extend_from_slice(&data);
    chunk.extend_from_slice(&typed);
    chunk.extend_from_slice(&crc32(&typed).to_be_bytes());
    [&PNG[..iend], &chunk, &PNG[iend..]].concat()
}

fn crc32(bytes: &[u8]) -> u32 {
    let mut crc = 0xFFFF_FFFFu32;
    for &b in bytes {
        crc ^= u32::from(b);
        for _ in 0..8 {
            crc = if crc & 1 == 1 {
                (crc >> 1) ^ 0xEDB8_8320
            } else {
                crc >> 1
            };
        }
    }
    !crc
}

/// A client of a running suite, acting as dev users.
pub struct Client {
    base: String,
    http: reqwest::Client,
}

type StepOutcome = Result<(String, Value), String>;

impl Client {
    /// A client for `base` (`http://127.0.0.1:PORT`).
    pub fn new(base: &str) -> Result<Self, String> {
        let http = reqwest::Client::builder()
            .timeout(Duration::from_secs(30))
            .build()
            .map_err(|e| e.to_string())?;
        Ok(Client {
            base: base.trim_end_matches('/').to_owned(),
            http,
        })
    }

    /// POSTs `body` to `path` as the dev `user`: (HTTP status, JSON reply).
    pub async fn post(
        &self,
        user: &str,
        path: &str,
        body: &Value,
        token: Option<&str>,
    ) -> Result<(u16, Value), String> {
        let mut req = self
            .http
            .post(format!("{}{path}", self.base))
            .header("x-wemint-dev-user", user)
            .json(body);
        if let Some(t) = token {
            req = req.bearer_auth(t);
        }
        let res = req.send().await.map_err(|e| format!("POST {path}: {e}"))?;
        let status = res.status().as_u16();
        let text = res.text().await.map_err(|e| e.to_string())?;
        let value = serde_json::from_str(&text).unwrap_or(Value::String(text));
        Ok((status, value))
    }

    /// `wx.cloud.callFunction` through the gateway; the envelope's `data`, or a readable error.
    pub async fn call(
        &self,
        user: &str,
        token: Option<&str>,
        function: &str,
        data: Value,
    ) -> Result<Value, String> {
        let action = data["action"].as_str().unwrap_or("(default)").to_owned();
        let (status, reply) = self
            .post(
                user,
                "/tcb/callFunction",
                &json!({"name": function, "data": data}),
                token,
            )
            .await?;
        if reply["ok"] == json!(true) {
            return Ok(reply["data"].clone());
        }
        let code = reply["error"]["code"].as_str().unwrap_or("?").to_owned();
        let message = reply["error"]["message"].as_str().unwrap_or("").to_owned();
        Err(match code.as_str() {
            "UNKNOWN_ACTION" => format!(
                "function {function} has no action `{action}` yet (not implemented/landed): {message}"
            ),
            "FUNCTION_UNAVAILABLE" | "FUNCTION_NOT_FOUND" | "FUNCTION_FAILED" => {
                format!("function {function} is missing or not running: {message}")
            }
            _ if reply.get("ok").is_none() => {
                format!("function {function} gave HTTP {status} without an envelope: {reply}")
            }
            _ => format!("{function}.{action} → {code}: {message}"),
        })
    }

    /// `wx.login` for a dev user, then the `login` function; returns the session token.
    pub async fn login(&self, user: &str) -> Result<(String, Value), String> {
        let (_, minted) = self
            .post(user, "/dev/login", &json!({"user": user}), None)
            .await?;
        let code = minted["code"]
            .as_str()
            .ok_or("the suite minted no code")?
            .to_owned();
        let data = self
            .call(
                user,
                None,
                "login",
                json!({"action": "login", "code": code}),
            )
            .await?;
        let token = data["token"]
            .as_str()
            .ok_or_else(|| format!("login reply has no token: {data}"))?
            .to_owned();
        Ok((token, data))
    }
}

/// What the suite's outgoing notifications for `reference` (an out_trade_no or a refund
/// number) went through, for a step that waited in vain.
async fn delivery_story(client: &Client, reference: &str) -> String {
    let url = format!("{}/dev/deliveries?ref={reference}", client.base);
    let Ok(res) = client.http.get(url).send().await else {
        return String::new();
    };
    let Ok(docs) = res.json::<Vec<Value>>().await else {
        return String::new();
    };
    if docs.is_empty() {
        return format!("; no notification was sent for {reference}");
    }
    docs.iter()
        .map(|d| {
            let attempts = d["attempts"].as_array().cloned().unwrap_or_default();
            let last =
                attempts
                    .last()
                    .map_or("none yet".to_owned(), |a| match a["status"].as_u64() {
                        Some(status) => {
                            format!("HTTP {status} {}", a["reply"].as_str().unwrap_or_default())
                        }
                        None => a["error"].as_str().unwrap_or("no answer").to_owned(),
                    });
            format!(
                "; {} {} is {} after {} attempt(s), last: {}",
                d["kind"].as_str().unwrap_or_default(),
                d["event"].as_str().unwrap_or_default(),
                d["state"].as_str().unwrap_or_default(),
                attempts.len(),
                short(&Value::String(last))
            )
        })
        .collect()
}

/// What `wx.requestVirtualPayment` does with `params` in the emulator: checks both signatures
/// and pays (the delivery push follows).
async fn pay_virtually(client: &Client, params: &Value) -> Result<Value, String> {
    let (status, reply) = client
        .post("alice", "/dev/requestVirtualPayment", params, None)
        .await?;
    if status != 200 {
        return Err(format!("HTTP {status}: {reply}"));
    }
    Ok(reply)
}

/// Polls createOrder `get` until the order is paid (the notification or delivery push was
/// applied); on time-out, says what happened to the notifications for `reference`.
async fn wait_until_paid(
    client: &Client,
    token: &str,
    order_id: &str,
    reference: &str,
) -> Result<Value, String> {
    let paid = poll(Duration::from_secs(15), || async move {
        let d = client
            .call(
                "alice",
                Some(token),
                "createOrder",
                json!({"action": "get", "orderId": order_id}),
            )
            .await?;
        let status = d["order"]["status"].as_str().unwrap_or_default();
        Ok(matches!(status, "paid" | "fulfilled").then(|| d["order"].clone()))
    })
    .await;
    match paid {
        Ok(order) => Ok(order),
        Err(e) => Err(format!("{e}{}", delivery_story(client, reference).await)),
    }
}

pub(crate) async fn poll<F, Fut>(timeout: Duration, mut check: F) -> Result<Value, String>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Result<Option<Value>, String>>,
{
    let deadline = Instant::now() + timeout;
    let mut last = String::from("no answer yet");
    loop {
        match check().await {
            Ok(Some(v)) => return Ok(v),
            Ok(None) => {}
            Err(e) => last = e,
        }
        if Instant::now() > deadline {
            return Err(format!("gave up after {} s: {last}", timeout.as_secs()));
        }
        tokio::time::sleep(Duration::from_millis(150)).await;
    }
}

pub(crate) fn short(v: &Value) -> String {
    let s = v.to_string();
    if s.chars().count() > 140 {
        format!("{}…", s.chars().take(140).collect::<String>())
    } else {
        s
    }
}

/// Runs the flow against a suite at `base`; `print` gets each step as it finishes.
pub async fn run_flow(base: &str, mut print: impl FnMut(&StepResult)) -> DemoReport {
    let mut report = DemoReport::default();
    let client = match Client::new(base) {
        Ok(c) => c,
        Err(e) => {
            let step = StepResult {
                name: "client".into(),
                ok: false,
                detail: e,
                elapsed: Duration::ZERO,
            };
            print(&step);
            report.steps.push(step);
            return report;
        }
    };
    let mut ctx = Ctx::default();
    macro_rules! step {
        ($name:expr, $body:expr) => {{
            let started = Instant::now();
            let outcome: StepOutcome = $body;
            let step = match outcome {
                Ok((detail, _)) => StepResult {
                    name: $name.into(),
                    ok: true,
                    detail,
                    elapsed: started.elapsed(),
                },
                Err(detail) => StepResult {
                    name: $name.into(),
                    ok: false,
                    detail,
                    elapsed: started.elapsed(),
                },
            };
            print(&step);
            let ok = step.ok;
            report.steps.push(step);
            ok
        }};
    }
    step!(
        "login (alice: wx.login code → login)",
        async {
            let (token, data) = client.login("alice").await?;
            ctx.alice = Some(token);
            ctx.alice_openid = data["user"]["openid"].as_str().map(str::to_owned);
            Ok((format!("user {}", short(&data["user"])), data))
        }
        .await
    );
    step!(
        "login (admin) and grant the admin role",
        async {
            client.login("admin").await?;
            let (_, promoted) = client
                .post("admin", "/dev/admin/promote", &json!({}), None)
                .await?;
            if promoted["ok"] != json!(true) {
                return Err(format!("cannot mark admin: {promoted}"));
            }
            let (token, data) = client.login("admin").await?;
            if data["user"]["role"] != json!("admin") {
                return Err(format!(
                    "login does not report the admin role after promotion: {}",
                    short(&data["user"])
                ));
            }
            ctx.admin = Some(token);
            Ok(("role admin".into(), data))
        }
        .await
    );
    step!(
        "catalog (createOrder.catalog)",
        async {
            let token = ctx.alice.clone().ok_or("not run: the login step failed")?;
            let data = client
                .call(
                    "alice",
                    Some(&token),
                    "createOrder",
                    json!({"action": "catalog"}),
                )
                .await?;
            let n = data["products"].as_array().map_or(0, Vec::len);
            if n == 0 {
                return Err(format!("empty catalog: {}", short(&data)));
            }
            Ok((format!("{n} products"), data))
        }
        .await
    );
    step!("buy a physical item (createOrder.create, WeChat Pay JSAPI prepay)", async {
        let token = ctx.alice.clone().ok_or("not run: the login step failed")?;
        let data = client.call("alice", Some(&token), "createOrder", json!({
            "action": "create", "clientRequestId": format!("demo-{}", crate::keys::random_from(crate::keys::ALNUM, 10)),
            "items": [{"sku": "mug-ceramic-350", "quantity": 2}],
            "address": {"name": "张三", "phone": "13800000000", "province": "广东省", "city": "深圳市", "district": "南山区", "detail": "科技园 1 号"}
        })).await?;
        if data["payment"]["channel"] != json!("wxpay") {
            return Err(format!("expected a wxpay payment, got {}", short(&data["payment"])));
        }
        ctx.physical_order = data["order"]["id"].as_str().map(str::to_owned);
        ctx.physical_no = data["order"]["outTradeNo"].as_str().map(str::to_owned);
        ctx.physical_params = Some(data["payment"]["params"].clone());
        Ok((format!("order {} total ¥{:.2}", data["order"]["id"], data["order"]["totalFen"].as_i64().unwrap_or(0) as f64 / 100.0), data))
    }.await);
    step!(
        "pay (wx.requestPayment: paySign checked by the stand-in)",
        async {
            let params = ctx
                .physical_params
                .clone()
                .ok_or("not run: the order step failed")?;
            let (status, reply) = client
                .post("alice", "/dev/requestPayment", &params, None)
                .await?;
            if status != 200 {
                return Err(format!("HTTP {status}: {reply}"));
            }
            Ok((
                format!("transaction {}", reply["transaction"]["transaction_id"]),
                reply,
            ))
        }
        .await
    );
    step!(
        "notification → order paid (payNotify)",
        async {
            let token = ctx.alice.clone().ok_or("not run: the login step failed")?;
            let id = ctx
                .physical_order
                .clone()
                .ok_or("not run: the order step failed")?;
            let reference = ctx.physical_no.clone().unwrap_or_default();
            let order = wait_until_paid(&client, &token, &id, &reference).await?;
            Ok((format!("status {}", order["status"]), order))
        }
        .await
    );
    step!(
        "ship it (createOrder.ship as admin, express → upload_shipping_info)",
        async {
            let admin = ctx
                .admin
                .clone()
                .ok_or("not run: the admin login step failed")?;
            let id = ctx
                .physical_order
                .clone()
                .ok_or("not run: the order step failed")?;
            crate::demo_shipping::ship(&client, &admin, &id).await
        }
        .await
    );
    step!(
        "buyer confirms receipt → received (trade_manage_order_settlement → wxPush, get_order)",
        async {
            let token = ctx.alice.clone().ok_or("not run: the login step failed")?;
            let id = ctx
                .physical_order
                .clone()
                .ok_or("not run: the order step failed")?;
            crate::demo_shipping::platform_moves(
                &client,
                &token,
                &id,
                "/dev/shipping/confirm",
                "received",
            )
            .await
        }
        .await
    );
    step!(
        "platform settles → settled (trade_manage_order_settlement → wxPush)",
        async {
            let token = ctx.alice.clone().ok_or("not run: the login step failed")?;
            let id = ctx
                .physical_order
                .clone()
                .ok_or("not run: the order step failed")?;
            crate::demo_shipping::platform_moves(
                &client,
                &token,
                &id,
                "/dev/shipping/settle",
                "settled",
            )
            .await
        }
        .await
    );
    step!("buy a membership (createOrder.create, virtual payment)", async {
        let token = ctx.alice.clone().ok_or("not run: the login step failed")?;
        let data = client.call("alice", Some(&token), "createOrder", json!({
            "action": "create", "clientRequestId": format!("demo-{}", crate::keys::random_from(crate::keys::ALNUM, 10)),
            "items": [{"sku": "vip-monthly", "quantity": 1}]
        })).await?;
        if data["payment"]["channel"] != json!("xpay") {
            return Err(format!("expected an xpay payment, got {}", short(&data["payment"])));
        }
        ctx.vip_order = data["order"]["id"].as_str().map(str::to_owned);
        ctx.vip_no = data["order"]["outTradeNo"].as_str().map(str::to_owned);
        ctx.vip_params = Some(data["payment"]["params"].clone());
        Ok((format!("order {}", data["order"]["id"]), data))
    }.await);
    step!(
        "pay (wx.requestVirtualPayment: paySig + signature checked)",
        async {
            let params = ctx
                .vip_params
                .clone()
                .ok_or("not run: the order step failed")?;
            let reply = pay_virtually(&client, &params).await?;
            Ok((format!("xpay order {}", reply["outTradeNo"]), reply))
        }
        .await
    );
    step!(
        "xpay_goods_deliver_notify → delivered (wxPush)",
        async {
            let token = ctx.alice.clone().ok_or("not run: the login step failed")?;
            let id = ctx
                .vip_order
                .clone()
                .ok_or("not run: the order step failed")?;
            let reference = ctx.vip_no.clone().unwrap_or_default();
            let order = wait_until_paid(&client, &token, &id, &reference).await?;
            Ok((format!("status {}", order["status"]), order))
        }
        .await
    );
    step!(
        "gated content unlocked (gatedContent.get)",
        async {
            let token = ctx.alice.clone().ok_or("not run: the login step failed")?;
            let d = client
                .call(
                    "alice",
                    Some(&token),
                    "gatedContent",
                    json!({"action": "get", "contentId": "member-welcome"}),
                )
                .await?;
            if d["access"] != json!("granted") {
                return Err(format!("still locked: {}", short(&d)));
            }
            Ok((format!("access granted via {}", d["via"]), d))
        }
        .await
    );
    step!("upgrade VIP → VIP 尊享 (gatedContent.changePlan quote → createOrder.create {upgrade} → virtual payment → delivered)", async {
        let token = ctx.alice.clone().ok_or("not run: the login step failed")?;
        let change = client.call("alice", Some(&token), "gatedContent",
            json!({"action": "changePlan", "plan": "vip-plus"})).await?;
        if change["change"] != json!("upgrade") {
            return Err(format!("expected an upgrade quote, got {}", short(&change)));
        }
        let mut create = json!({"action": "create",
            "clientRequestId": format!("demo-{}", crate::keys::random_from(crate::keys::ALNUM, 10))});
        create["upgrade"] = change["checkout"]["upgrade"].clone();
        let data = client.call("alice", Some(&token), "createOrder", create).await?;
        pay_virtually(&client, &data["payment"]["params"]).await?;
        let id = data["order"]["id"].as_str().unwrap_or_default();
        let no = data["order"]["outTradeNo"].as_str().unwrap_or_default();
        wait_until_paid(&client, &token, id, no).await?;
        let ent = client.call("alice", Some(&token), "gatedContent",
            json!({"action": "entitlements"})).await?;
        if ent["subscription"]["plan"] != json!("vip-plus") {
            return Err(format!("still on {}", short(&ent["subscription"])));
        }
        Ok((format!("paid ¥{:.2} (quoted ¥{:.2}) for the rest of the period; now on {}",
            data["order"]["totalFen"].as_i64().unwrap_or(0) as f64 / 100.0,
            change["quote"]["amountFen"].as_i64().unwrap_or(0) as f64 / 100.0,
            ent["subscription"]["plan"]), ent))
    }.await);
    step!(
        "post text (ugcUpload.create, msg_sec_check)",
        async {
            let token = ctx.alice.clone().ok_or("not run: the login step failed")?;
            let d = client
                .call(
                    "alice",
                    Some(&token),
                    "ugcUpload",
                    json!({"action": "create", "text": "今天的课程很有收获, thanks!", "media": []}),
                )
                .await?;
            let status = d["post"]["status"].as_str().unwrap_or_default().to_owned();
            if status != "approved" {
                return Err(format!(
                    "a clean text post should be approved, got {}",
                    short(&d["post"])
                ));
            }
            Ok((format!("post {} approved", d["post"]["id"]), d))
        }
        .await
    );
    step!(
        "risky text is refused (TEXT_RISKY)",
        async {
            let token = ctx.alice.clone().ok_or("not run: the login step failed")?;
            match client
                .call(
                    "alice",
                    Some(&token),
                    "ugcUpload",
                    json!({"action": "create", "text": "online casino bonus", "media": []}),
                )
                .await
            {
                Err(e) if e.contains("TEXT_RISKY") => Ok(("refused as risky".into(), Value::Null)),
                Err(e) => Err(e),
                Ok(d) => Err(format!("a risky text was accepted: {}", short(&d))),
            }
        }
        .await
    );
    step!("post an image (upload → ugcUpload.create → media_check_async → wxa_media_check push)", async {
        let token = ctx.alice.clone().ok_or("not run: the login step failed")?;
        let openid = ctx.alice_openid.clone().ok_or("not run: the login step failed")?;
        let path = format!("ugc/{openid}/sunset.png");
        let res = client
            .http
            .post(format!("{}/storage/upload?cloudPath={}", client.base, path))
            .header("x-wemint-dev-user", "alice")
            .bearer_auth(&token)
            .body(PNG.to_vec())
            .send()
            .await
            .map_err(|e| e.to_string())?;
        let uploaded: Value = res.json().await.map_err(|e| e.to_string())?;
        let file_id = uploaded["fileID"].as_str().ok_or_else(|| format!("upload failed: {uploaded}"))?.to_owned();
        let d = client.call("alice", Some(&token), "ugcUpload", json!({"action": "create", "text": "日落", "media": [{"fileId": file_id, "type": "image"}]})).await?;
        let post_id = d["post"]["id"].as_str().ok_or_else(|| format!("no post id: {}", short(&d)))?.to_owned();
        let post = poll(Duration::from_secs(15), || {
            let (client, token, post_id) = (&client, token.clone(), post_id.clone());
            async move {
                let l = client.call("alice", Some(&token), "ugcUpload", json!({"action": "list"})).await?;
                let post = l["posts"].as_array().and_then(|ps| ps.iter().find(|p| p["id"] == json!(post_id)).cloned());
                Ok(post.filter(|p| p["status"] == json!("approved")))
            }
        }).await?;
        Ok((format!("post {} approved after the media check", post["id"]), post))
    }.await);
    step!("refund (createOrder.refund as admin → REFUND.SUCCESS → payNotify)", async {
        let admin = ctx.admin.clone().ok_or("not run: the admin login step failed")?;
        let token = ctx.alice.clone().ok_or("not run: the login step failed")?;
        let id = ctx.physical_order.clone().ok_or("not run: the physical order step failed")?;
        let r = client.call("admin", Some(&admin), "createOrder", json!({"action": "refund", "orderId": id, "refundNo": format!("RF{}", crate::keys::random_from(crate::keys::ALNUM, 12)), "reason": "demo"})).await?;
        let order = poll(Duration::from_secs(15), || {
            let (client, token, id) = (&client, token.clone(), id.clone());
            async move {
                let d = client.call("alice", Some(&token), "createOrder", json!({"action": "get", "orderId": id})).await?;
                Ok((d["order"]["status"] == json!("refunded")).then_some(d["order"].clone()))
            }
        }).await;
        let refund_no = r["refund"]["refundNo"].as_str().or(r["refund"]["outRefundNo"].as_str()).unwrap_or("-").to_owned();
        let order = match order {
            Ok(o) => o,
            Err(e) => return Err(format!("{e}{}", delivery_story(&client, &refund_no).await)),
        };
        Ok((format!("refund {} → order {}", short(&r["refund"]["status"]), order["status"]), order))
    }.await);
    step!("complaint (buyer complains → COMPLAINT.CREATE → payNotify; admin responds, completes)", async {
        let admin = ctx.admin.clone().ok_or("not run: the admin login step failed")?;
        let no = ctx.physical_no.clone().ok_or("not run: the physical order step failed")?;
        let (status, raised) = client.post("alice", "/dev/complaints",
            &json!({"channel": "wxpay", "outTradeNo": no, "detail": "收到的杯子有裂纹"}), None).await?;
        let id = raised["data"]["complaint_id"].as_str()
            .ok_or_else(|| format!("HTTP {status}: {}", short(&raised)))?.to_owned();
        let stored = poll(Duration::from_secs(15), || {
            let (client, admin, id) = (&client, admin.clone(), id.clone());
            async move {
                let l = client.call("admin", Some(&admin), "createOrder", json!({"action": "complaintList"})).await?;
                Ok(l["complaints"].as_array().and_then(|cs| cs.iter().find(|c| c["complaintId"] == json!(id)).cloned()))
            }
        }).await;
        let stored = match stored {
            Ok(c) => c,
            Err(e) => return Err(format!("{e}{}", delivery_story(&client, &id).await)),
        };
        client.call("admin", Some(&admin), "createOrder",
            json!({"action": "complaintRespond", "complaintId": id, "content": "您好，已为您安排换货，请留意物流。"})).await?;
        let done = client.call("admin", Some(&admin), "createOrder",
            json!({"action": "complaintComplete", "complaintId": id})).await?;
        if done["complaint"]["state"] != json!("PROCESSED") {
            return Err(format!("not processed: {}", short(&done["complaint"])));
        }
        Ok((format!("complaint {id}: stored {} (reply due in {} s) → responded → {}",
            stored["state"], stored["dueInSecs"], done["complaint"]["state"]), done))
    }.await);
    official_account_steps!(step, client, ctx);
    step!(
        "analytics: shoppers browse, abandon a cart, buy, one refund → analytics.track, aggregateRun, dashboard",
        async {
            let admin = ctx
                .admin
                .clone()
                .ok_or("not run: the admin login step failed")?;
            crate::demo_analytics::traffic(&client, &admin).await
        }
        .await
    );
    report
}

/// The Official Account funnel: a follower scans a campaign code, logs into the Mini Program
/// (one person by UnionID), buys, and the order is attributed to the scene.
macro_rules! official_account_steps {
    ($step:ident, $client:ident, $ctx:ident) => {
        $step!("Official Account: dave scans the campaign code (subscribe qrscene_demo-poster → wxPush)", async {
            let (status, reply) = $client.post("dave", "/dev/oa/scan", &json!({"user": "dave", "scene": "demo-poster"}), None).await?;
            if status != 200 {
                return Err(format!("HTTP {status}: {reply}"));
            }
            Ok((format!("follower {}", reply["openid"]), reply))
        }.await);
        $step!("Official Account: dave buys in the Mini Program (one person by UnionID) and is attributed", async {
            let (token, _) = $client.login("dave").await?;
            let data = $client.call("dave", Some(&token), "createOrder", json!({
                "action": "create", "clientRequestId": format!("demo-oa-{}", crate::keys::random_from(crate::keys::ALNUM, 10)),
                "items": [{"sku": "notebook-a5-dot", "quantity": 1}],
                "address": {"name": "赵六", "phone": "13600000000", "province": "浙江省", "city": "杭州市", "district": "西湖区", "detail": "文三路 3 号"}
            })).await?;
            let (status, reply) = $client.post("dave", "/dev/requestPayment", &data["payment"]["params"], None).await?;
            if status != 200 {
                return Err(format!("HTTP {status}: {reply}"));
            }
            let admin = $ctx.admin.clone().ok_or("not run: the admin login step failed")?;
            let report = poll(Duration::from_secs(15), || {
                let (client, admin) = (&$client, admin.clone());
                async move {
                    // Attribution is reconcile's work (every minute): run it now.
                    client.post("admin", "/dev/timers/run", &json!({"trigger": "every-minute"}), None).await?;
                    let r = client.call("admin", Some(&admin), "createOrder", json!({"action": "attribution"})).await?;
                    let hit = r["byFirstTouch"].as_array().is_some_and(|rows| rows.iter().any(|row| row["key"] == json!("demo-poster")));
                    Ok(hit.then_some(r))
                }
            }).await?;
            Ok((format!("attribution: {} conversion(s), ¥{:.2} by scene demo-poster", report["total"]["conversions"],
                report["total"]["revenueFen"].as_i64().unwrap_or(0) as f64 / 100.0), report))
        }.await);
    };
}
use official_account_steps;

#[derive(Default)]
struct Ctx {
    alice: Option<String>,
    alice_openid: Option<String>,
    admin: Option<String>,
    physical_order: Option<String>,
    physical_params: Option<Value>,
    physical_no: Option<String>,
    vip_no: Option<String>,
    vip_order: Option<String>,
    vip_params: Option<Value>,
}

/// Starts a fresh suite in a temporary directory, runs the flow, prints it, stops the suite.
/// `cloudbase_functions` runs the functions on the `cloudbase://` backend against the suite's
/// stand-in (`wemint-dev demo --store cloudbase`).
pub async fn run(
    bin_dir: Option<std::path::PathBuf>,
    cloudbase_functions: bool,
) -> Result<DemoReport, String> {
    let dir = tempfile::tempdir().map_err(|e| format!("cannot create a temp dir: {e}"))?;
    let mut options = SuiteOptions::new(dir.path().join(".wemint"));
    options.port = 0;
    options.bin_dir = bin_dir;
    options.cloudbase_functions = cloudbase_functions;
    let started = Instant::now();
    let suite = Suite::start(options).await.map_err(|e| e.to_string())?;
    println!(
        "wemint-dev demo: fresh suite at {} (started in {} ms), functions on {}\n",
        suite.base_url(),
        started.elapsed().as_millis(),
        if cloudbase_functions {
            "cloudbase:// (the suite's CloudBase database stand-in)"
        } else {
            "the suite's store"
        }
    );
    let report = run_flow(&suite.base_url(), |s| {
        let mark = if s.ok { "PASS" } else { "FAIL" };
        println!(
            "{mark} {:>6} ms  {}\n              {}",
            s.elapsed.as_millis(),
            s.name,
            s.detail
        );
    })
    .await;
    suite.shutdown().await;
    let passed = report.steps.iter().filter(|s| s.ok).count();
    println!(
        "\n{passed}/{} steps passed in {:.1} s",
        report.steps.len(),
        started.elapsed().as_secs_f64()
    );
    Ok(report)
}
