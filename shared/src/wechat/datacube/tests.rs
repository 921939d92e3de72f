use proptest::prelude::*;

use super::*;
use crate::fuzzing::{JSON_PARTS, cases, glued, nested};

// The reply examples of WeChat's documentation pages (docs/wechat.md, "Analytics (datacube)").

#[test]
fn visit_trend_of_the_documented_example() {
    let reply = json!({"list": [{"ref_date": "20170313", "session_cnt": 142549,
        "visit_pv": 472351, "visit_uv": 55500, "visit_uv_new": 5464,
        "stay_time_session": 0, "visit_depth": 1.9838}]});
    let t = parse_visit_trend(&reply, "20170313").unwrap().unwrap();
    assert_eq!(
        t,
        VisitTrend {
            sessions: 142_549,
            visits: 472_351,
            visitors: 55_500,
            new_visitors: 5464,
            stay_time_uv: 0.0,
            stay_time_session: 0.0,
            visit_depth: 1.9838,
        }
    );
    assert_eq!(
        parse_visit_trend(&json!({"list": []}), "20170313").unwrap(),
        None
    );
    assert_eq!(parse_visit_trend(&json!({}), "20170313").unwrap(), None);
}

#[test]
fn visit_trend_refuses_what_does_not_fit() {
    for bad in [
        json!({"list": {"ref_date": "20170313"}}),
        json!({"list": [{"ref_date": "20170314", "visit_pv": 1}]}),
        json!({"list": [{"ref_date": "20170313", "visit_pv": -1}]}),
        json!({"list": [{"ref_date": "20170313", "visit_pv": 1.5}]}),
        json!({"list": [{"ref_date": "20170313", "visit_pv": "12"}]}),
        json!({"list": [{"ref_date": "20170313", "stay_time_uv": -0.5}]}),
        json!({"list": [7]}),
    ] {
        let e = parse_visit_trend(&bad, "20170313").unwrap_err();
        assert!(matches!(e, WechatError::Decode(_)), "{bad}: {e:?}");
    }
}

#[test]
fn retention_of_the_documented_example_and_later_keys() {
    let reply = json!({"ref_date": "20170313",
        "visit_uv_new": [{"key": 0, "value": 5464}],
        "visit_uv": [{"key": 0, "value": 55500}]});
    let r = parse_retention(&reply, "20170313").unwrap();
    assert_eq!(r.new_users, [(0, 5464)]);
    assert_eq!(r.active_users, [(0, 55500)]);
    let later = json!({"ref_date": "20170313",
        "visit_uv_new": [{"key": 7, "value": 3}, {"key": 0, "value": 10}, {"key": 1, "value": 4}]});
    let r = parse_retention(&later, "20170313").unwrap();
    assert_eq!(r.new_users, [(0, 10), (1, 4), (7, 3)]);
    assert!(r.active_users.is_empty());
    // The object form the field tables suggest.
    let object = json!({"visit_uv_new": {"1": 4, "0": 10}});
    assert_eq!(
        parse_retention(&object, "20170313").unwrap().new_users,
        [(0, 10), (1, 4)]
    );
    assert!(parse_retention(&json!({"visit_uv": {"x": 1}}), "20170313").is_err());
    assert!(parse_retention(&json!({"ref_date": "20170312"}), "20170313").is_err());
    assert!(parse_retention(&json!({"visit_uv": [{"key": -1, "value": 1}]}), "20170313").is_err());
    assert!(parse_retention(&json!([]), "20170313").is_err());
}

#[test]
fn portrait_of_the_documented_example_largest_first() {
    let reply = json!({"ref_date": "20170611",
        "visit_uv_new": {
            "province": [{"id": 31, "name": "广东省", "value": 215}],
            "city": [{"id": 3102, "name": "广州", "value": 78}],
            "genders": [{"id": 1, "name": "男", "value": 2146}],
            "platforms": [{"id": 1, "name": "iPhone", "value": 27642}],
            "devices": [{"name": "OPPO R9", "value": 61}],
            "ages": [{"id": 1, "name": "17岁以下", "value": 151}, {"id": 2, "name": "18-24岁", "value": 231}]
        },
        "visit_uv": {"platfomrs": [{"id": 2, "name": "Android", "value": 5}]}});
    let p = parse_portrait(&reply).unwrap();
    assert_eq!(p.new_users.province[0].name, "广东省");
    assert_eq!(p.new_users.city[0].value, 78);
    assert_eq!(p.new_users.devices[0].id, 0);
    assert_eq!(
        p.new_users.ages.iter().map(|a| a.id).collect::<Vec<_>>(),
        [2, 1]
    );
    assert_eq!(p.active_users.platforms[0].name, "Android");
    assert!(parse_portrait(&json!({"visit_uv": {"city": [1]}})).is_err());
    assert!(parse_portrait(&json!({"visit_uv": {"city": [{"name": 5}]}})).is_err());
}

#[test]
fn portrait_lists_are_capped() {
    let many: Vec<Value> = (0..500)
        .map(|i| json!({"id": i, "name": "x".repeat(500), "value": i}))
        .collect();
    let p = parse_portrait(&json!({"visit_uv": {"devices": many}})).unwrap();
    assert_eq!(p.active_users.devices.len(), PORTRAIT_CAP);
    assert_eq!(p.active_users.devices[0].value, 499);
    assert_eq!(p.active_users.devices[0].name.chars().count(), 64);
}

#[test]
fn dates_are_checked() {
    assert_eq!(compact_date("2026-12-04").unwrap(), "20261204");
    for bad in ["2026-02-30", "20261204", "2026-12-4x", "", "../x"] {
        assert!(compact_date(bad).is_err(), "{bad}");
    }
}

/// Any JSON value, a few levels deep.
fn json_value() -> impl Strategy<Value = Value> {
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::Bool),
        any::<i64>().prop_map(|n| json!(n)),
        any::<f64>().prop_map(|f| json!(f)),
        "[a-z_0-9]{0,12}".prop_map(Value::String),
        Just(json!("20170313")),
    ];
    leaf.prop_recursive(5, 64, 8, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..8).prop_map(Value::Array),
            prop::collection::btree_map(
                prop::sample::select(vec![
                    "list",
                    "ref_date",
                    "visit_uv",
                    "visit_uv_new",
                    "visit_pv",
                    "session_cnt",
                    "stay_time_uv",
                    "key",
                    "value",
                    "id",
                    "name",
                    "province",
                    "city",
                    "genders",
                    "platforms",
                    "devices",
                    "ages",
                ])
                .prop_map(str::to_owned),
                inner,
                0..8,
            )
            .prop_map(|m| Value::Object(m.into_iter().collect())),
        ]
    })
}

fn check_all(v: &Value) -> Result<(), TestCaseError> {
    if let Ok(Some(t)) = parse_visit_trend(v, "20170313") {
        prop_assert!(t.visits >= 0 && t.visitors >= 0 && t.sessions >= 0 && t.new_visitors >= 0);
        prop_assert!(t.stay_time_uv.is_finite() && t.stay_time_uv >= 0.0);
        prop_assert!(t.visit_depth.is_finite() && t.stay_time_session.is_finite());
    }
    if let Ok(r) = parse_retention(v, "20170313") {
        for (k, n) in r.new_users.iter().chain(&r.active_users) {
            prop_assert!(*k <= 366 && *n >= 0);
        }
        prop_assert!(r.new_users.len() <= 32 && r.active_users.len() <= 32);
    }
    if let Ok(p) = parse_portrait(v) {
        for g in [&p.new_users, &p.active_users] {
            for list in [
                &g.province,
                &g.city,
                &g.genders,
                &g.platforms,
                &g.devices,
                &g.ages,
            ] {
                prop_assert!(list.len() <= PORTRAIT_CAP);
                prop_assert!(
                    list.iter()
                        .all(|e| e.value >= 0 && e.name.chars().count() <= 64)
                );
            }
        }
    }
    Ok(())
}

proptest! {
    #![proptest_config(cases(2000))]

    /// Datacube replies of any shape: never a panic; whatever is accepted is bounded and
    /// well-typed.
    #[test]
    fn fuzz_datacube_replies(v in json_value()) {
        check_all(&v)?;
        check_all(&json!({"list": [v.clone()]}))?;
        check_all(&json!({"ref_date": "20170313", "visit_uv_new": v.clone(), "visit_uv": {"city": v}}))?;
    }

    /// Replies as text glued from JSON fragments (what the client decodes before parsing).
    #[test]
    fn fuzz_datacube_reply_text(text in prop_oneof![
        glued(JSON_PARTS),
        nested("{\"list\":[", "]}", glued(JSON_PARTS)),
        nested("{\"visit_uv\":{\"city\":[", "]}}", glued(JSON_PARTS)),
    ]) {
        if let Ok(v) = serde_json::from_str::<Value>(&text) {
            check_all(&v)?;
        }
    }
}
