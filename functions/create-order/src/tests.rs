//! Function-level tests: the real `createOrder` function value, invoked in-process through
//! `wemint::runtime::testing` with a configuration and `callFunction` events.

use serde_json::{Value, json};
use wemint::commerce::model::collections::PRODUCTS;
use wemint::domain::catalog::{Product, ProductKind};
use wemint::domain::money::Fen;
use wemint::runtime::testing::{Caller, Harness, TestStore};

const APPID: &str = "wx-harness-app";

fn product(sku: &str, price: i64, kind: ProductKind, stock: Option<i64>, active: bool) -> Value {
    let mut doc = serde_json::to_value(Product {
        sku: sku.into(),
        title: format!("The {sku}"),
        price_fen: Fen::new(price).unwrap(),
        kind,
        channel: None,
        stock,
        active,
        description: None,
    })
    .unwrap();
    doc["_id"] = json!(sku);
    doc
}

/// A store with two physical products on sale, one content unlock and one withdrawn product.
async fn shop() -> TestStore {
    let ts = TestStore::new().await.unwrap();
    for doc in [
        product("mug", 2500, ProductKind::Physical, Some(5), true),
        product("tee", 9900, ProductKind::Physical, None, true),
        product(
            "article-1",
            600,
            ProductKind::ContentUnlock {
                content: "c1".into(),
            },
            None,
            true,
        ),
        product("old", 100, ProductKind::Physical, None, false),
    ] {
        ts.store().insert(PRODUCTS, doc).await.unwrap();
    }
    ts
}

/// `createOrder` over `ts`, trusting CloudBase `callFunction` identity when `trust_platform`.
async fn create_order(ts: &TestStore, trust_platform: bool) -> Harness {
    let mut vars = vec![
        ts.var(),
        (
            "WEMINT_SESSION_SECRET",
            "harness-session-secret-0123456789abcdef".to_owned(),
        ),
    ];
    if trust_platform {
        vars.push((
            "WEMINT_TRUST_PLATFORM_IDENTITY",
            "cloudbase-event".to_owned(),
        ));
    }
    Harness::start(super::function(), vars).await.unwrap()
}

fn skus(reply: &Value) -> Vec<&str> {
    reply["data"]["products"]
        .as_array()
        .unwrap_or_else(|| panic!("no products in {reply}"))
        .iter()
        .map(|p| p["sku"].as_str().unwrap())
        .collect()
}

#[tokio::test]
async fn catalog_lists_active_products_by_sku_and_filters_by_kind() {
    let ts = shop().await;
    let f = create_order(&ts, true).await;
    let alice = Caller::platform("o-alice", APPID);

    let all = f.call(&alice, "catalog", json!({})).await;
    assert_eq!(all["ok"], true, "{all}");
    assert_eq!(skus(&all), ["article-1", "mug", "tee"]);
    let mug = &all["data"]["products"][1];
    assert_eq!(
        *mug,
        json!({"sku": "mug", "title": "The mug", "priceFen": 2500, "channel": "wxpay",
            "kind": "physical", "active": true, "stock": 5})
    );

    let physical = f.call(&alice, "catalog", json!({"kind": "physical"})).await;
    assert_eq!(skus(&physical), ["mug", "tee"]);
}

#[tokio::test]
async fn unauthenticated_calls_are_refused_before_anything_is_read() {
    let ts = shop().await;
    let f = create_order(&ts, true).await;
    for (action, data) in [
        ("catalog", json!({})),
        ("create", json!({"items": [{"sku": "mug", "quantity": 1}]})),
        ("list", json!({})),
    ] {
        let reply = f.call(&Caller::Anonymous, action, data).await;
        assert_eq!(reply["ok"], false, "{action}: {reply}");
        assert_eq!(
            reply["error"]["code"], "UNAUTHENTICATED",
            "{action}: {reply}"
        );
    }
    // A token that is not ours identifies nobody either.
    let forged = f
        .call(&Caller::Session("v1.e30.AAAA".into()), "catalog", json!({}))
        .await;
    assert_eq!(forged["error"]["code"], "UNAUTHENTICATED", "{forged}");
}

#[tokio::test]
async fn platform_identity_counts_only_where_the_gateway_is_trusted() {
    let ts = shop().await;
    let f = create_order(&ts, false).await;
    let reply = f
        .call(&Caller::platform("o-alice", APPID), "catalog", json!({}))
        .await;
    assert_eq!(reply["error"]["code"], "UNAUTHENTICATED", "{reply}");
}
