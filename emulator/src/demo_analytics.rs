//! Analytics traffic (issue 20) for the demo and the end-to-end test: shoppers browse,
//! add to cart, abandon or buy through the real functions (createOrder, the WeChat Pay
//! stand-in, payNotify), an admin refunds one order, the events go to `analytics.track`, and
//! the day is aggregated (`analytics.aggregateRun`), so the dashboard has data.

use std::time::Duration;

use serde_json::{Value, json};

use crate::demo::{Client, poll, short};

/// A shipping address for physical goods.
fn address() -> Value {
    json!({"name": "王五", "phone": "13700000000", "province": "北京市", "city": "北京市",
        "district": "海淀区", "detail": "中关村 2 号"})
}

/// `analytics.track` as `user`: the reply `{accepted, dropped}`.
pub async fn track(
    client: &Client,
    user: &str,
    token: &str,
    events: Value,
) -> Result<Value, String> {
    client
        .call(
            user,
            Some(token),
            "analytics",
            json!({"action": "track", "events": events}),
        )
        .await
}

/// Events as the tracker sends them: `(name, props)` pairs.
pub fn events(list: &[(&str, Value)]) -> Value {
    Value::Array(
        list.iter()
            .map(|(name, props)| json!({"name": name, "at": 0, "props": props}))
            .collect(),
    )
}

/// `user` buys `qty` of the physical `sku` with WeChat Pay and waits until it is paid;
/// returns the order.
pub async fn buy(
    client: &Client,
    user: &str,
    token: &str,
    sku: &str,
    qty: u32,
) -> Result<Value, String> {
    let created = client
        .call(
            user,
            Some(token),
            "createOrder",
            json!({"action": "create",
                "clientRequestId": format!("an-{}", crate::keys::random_from(crate::keys::ALNUM, 12)),
                "items": [{"sku": sku, "quantity": qty}], "address": address()}),
        )
        .await?;
    let (status, reply) = client
        .post(
            user,
            "/dev/requestPayment",
            &created["payment"]["params"],
            None,
        )
        .await?;
    if status != 200 {
        return Err(format!("requestPayment: HTTP {status} {}", short(&reply)));
    }
    let id = created["order"]["id"]
        .as_str()
        .unwrap_or_default()
        .to_owned();
    poll(Duration::from_secs(20), || {
        let id = id.clone();
        async move {
            let d = client
                .call(
                    user,
                    Some(token),
                    "createOrder",
                    json!({"action": "get", "orderId": id}),
                )
                .await?;
            Ok(d["order"]["paidAt"].is_i64().then(|| d["order"].clone()))
        }
    })
    .await
}

/// The admin refunds `fen` of `order_id` and waits until the buyer (`user` with `token`) sees
/// the refund settled on the order.
pub async fn refund(
    client: &Client,
    admin: &str,
    (user, token): (&str, &str),
    order_id: &str,
    fen: i64,
) -> Result<Value, String> {
    let no = format!("RFA{}", crate::keys::random_from(crate::keys::ALNUM, 12));
    client
        .call(
            "admin",
            Some(admin),
            "createOrder",
            json!({"action": "refund", "orderId": order_id, "refundNo": no,
                "amountFen": fen, "reason": "analytics demo"}),
        )
        .await?;
    poll(Duration::from_secs(20), || async move {
        let d = client
            .call(
                user,
                Some(token),
                "createOrder",
                json!({"action": "get", "orderId": order_id}),
            )
            .await?;
        Ok((d["order"]["refundedFen"].as_i64().unwrap_or(0) >= fen).then(|| d["order"].clone()))
    })
    .await
}

/// The admin aggregates `date` (default today, China) and reads the dashboard.
pub async fn aggregate_today(client: &Client, admin: &str) -> Result<Value, String> {
    let dashboard = client
        .call(
            "admin",
            Some(admin),
            "analytics",
            json!({"action": "dashboard", "days": 1}),
        )
        .await?;
    let today = dashboard["to"].as_str().unwrap_or_default().to_owned();
    client
        .call(
            "admin",
            Some(admin),
            "analytics",
            json!({"action": "aggregateRun", "date": today}),
        )
        .await?;
    client
        .call(
            "admin",
            Some(admin),
            "analytics",
            json!({"action": "dashboard", "days": 30}),
        )
        .await
}

/// The demo's traffic: five shoppers (one only browses, one abandons a cart, three buy, one of
/// whom gets a partial refund, one reads a paywalled article and unlocks it), then the day's
/// aggregation. Returns a one-line summary and the dashboard.
pub async fn traffic(client: &Client, admin: &str) -> Result<(String, Value), String> {
    let shoppers = ["erin", "frank", "grace", "heidi", "ivan"];
    let mut tokens = Vec::new();
    for who in shoppers {
        tokens.push(client.login(who).await?.0);
    }
    let page = |p: &str, ms: i64| ("page_view", json!({"page": p, "durationMs": ms}));
    let view = |sku: &str| ("product_view", json!({"sku": sku}));
    let cart = |sku: &str| ("add_to_cart", json!({"sku": sku, "qty": 1}));
    let checkout = |sku: &str| ("checkout_start", json!({"skus": [sku], "channel": "wxpay"}));
    // Browsing and carts (every shopper looks around first).
    let browse = [
        vec![page("pages/index/index", 4200), view("tee-classic-white-l")],
        vec![
            page("pages/index/index", 2100),
            view("mug-ceramic-350"),
            cart("mug-ceramic-350"),
        ],
        vec![
            page("pages/index/index", 3000),
            view("mug-ceramic-350"),
            cart("mug-ceramic-350"),
            checkout("mug-ceramic-350"),
        ],
        vec![
            page("pages/index/index", 1500),
            view("notebook-a5-dot"),
            cart("notebook-a5-dot"),
            checkout("notebook-a5-dot"),
            ("share", json!({"page": "pages/product/product"})),
        ],
        vec![
            page("pages/content/content", 9000),
            ("paywall_view", json!({"contentId": "pricing-playbook"})),
            ("paywall_unlock", json!({"contentId": "pricing-playbook"})),
            view("notebook-a5-dot"),
            cart("notebook-a5-dot"),
            checkout("notebook-a5-dot"),
        ],
    ];
    let mut accepted = 0;
    for ((who, token), list) in shoppers.iter().zip(&tokens).zip(&browse) {
        let reply = track(client, who, token, events(list)).await?;
        accepted += reply["accepted"].as_u64().unwrap_or(0);
    }
    // Three buy; grace gets half of hers back.
    let mug = buy(client, "grace", &tokens[2], "mug-ceramic-350", 1).await?;
    buy(client, "heidi", &tokens[3], "notebook-a5-dot", 1).await?;
    buy(client, "ivan", &tokens[4], "notebook-a5-dot", 2).await?;
    for (who, token) in shoppers.iter().zip(&tokens).skip(2) {
        let ok = events(&[(
            "payment_result",
            json!({"orderId": "client-side", "ok": true, "channel": "wxpay"}),
        )]);
        accepted += track(client, who, token, ok).await?["accepted"]
            .as_u64()
            .unwrap_or(0);
    }
    let half = mug["totalFen"].as_i64().unwrap_or(0) / 2;
    let buyer = ("grace", tokens[2].as_str());
    refund(
        client,
        admin,
        buyer,
        mug["id"].as_str().unwrap_or_default(),
        half,
    )
    .await?;
    // One malformed event, so the dashboard's dropped counts are not all zero.
    track(client, "frank", &tokens[1], json!([{"name": "teleport"}])).await?;
    let dashboard = aggregate_today(client, admin).await?;
    let today = dashboard["days"]
        .as_array()
        .and_then(|d| d.last())
        .cloned()
        .unwrap_or_default();
    Ok((
        format!(
            "{accepted} events from {} visitors; {} paid, revenue ¥{:.2} after a ¥{:.2} refund",
            today["visitors"],
            today["paid"],
            today["revenue"]["wxpay"].as_i64().unwrap_or(0) as f64 / 100.0,
            today["refunds"]["wxpay"].as_i64().unwrap_or(0) as f64 / 100.0,
        ),
        dashboard,
    ))
}
