//! The demo's shipping steps: the admin ships the paid physical order (express), the buyer
//! confirms receipt on the platform, the platform settles; each change reaches the order
//! through the real functions (createOrder `ship`, wxPush's `trade_manage_order_settlement`,
//! confirmed with `get_order`).

use std::time::Duration;

use serde_json::{Value, json};

use crate::demo::{Client, poll, short};

/// `createOrder.ship` as the admin: one express package; the order must come back shipped,
/// fulfilled and reported to WeChat.
pub async fn ship(client: &Client, admin: &str, order_id: &str) -> Result<(String, Value), String> {
    let tracking = format!("SF{}", crate::keys::random_from(crate::keys::DIGITS, 13));
    let data = client
        .call(
            "admin",
            Some(admin),
            "createOrder",
            json!({"action": "ship", "shipments": [{"orderId": order_id, "logisticsType": "express",
                "packages": [{"expressCompany": "SF", "trackingNo": tracking}]}]}),
        )
        .await?;
    let result = &data["results"][0];
    if result["ok"] != json!(true) {
        return Err(format!("not shipped: {}", short(result)));
    }
    let order = &result["order"];
    if order["status"] != json!("fulfilled") || order["shipping"]["state"] != json!("shipped") {
        return Err(format!("unexpected order after shipping: {}", short(order)));
    }
    if order["shipping"]["upload"]["state"] != json!("done") {
        return Err(format!(
            "the shipment was not reported to WeChat: {}",
            short(&order["shipping"]["upload"])
        ));
    }
    Ok((
        format!("SF {tracking}, upload_shipping_info accepted"),
        order.clone(),
    ))
}

/// The platform moves the order (`/dev/shipping/confirm` or `/dev/shipping/settle`); the
/// buyer's order must then show `state` (wxPush got the push and `get_order` agreed).
pub async fn platform_moves(
    client: &Client,
    buyer: &str,
    order_id: &str,
    control: &str,
    state: &str,
) -> Result<(String, Value), String> {
    let (status, reply) = client
        .post("alice", control, &json!({ "orderId": order_id }), None)
        .await?;
    if status != 200 {
        return Err(format!("{control}: HTTP {status} {}", short(&reply)));
    }
    let order = poll(Duration::from_secs(15), || async move {
        let d = client
            .call(
                "alice",
                Some(buyer),
                "createOrder",
                json!({"action": "get", "orderId": order_id}),
            )
            .await?;
        Ok((d["order"]["shipping"]["state"] == json!(state)).then(|| d["order"].clone()))
    })
    .await?;
    Ok((
        format!("shipping {state} ({})", short(&order["shipping"])),
        order,
    ))
}
