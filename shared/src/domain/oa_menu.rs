//! The Official Account menu as configuration (`config/oa-menu.json`): its shape, the
//! platform's limits, and the difference from what is live. Pure: the `wemint-oa` command
//! reads the file, asks [`Menu::parse`], reads the live menu, prints [`diff`] and publishes.
//!
//! Limits (docs/wechat.md, "Official Account"): at most 3 top-level buttons, at most 5
//! sub-buttons each; a top-level name is at most 16 bytes, a sub-button name at most 60 bytes
//! (UTF-8: a Chinese character is 3 bytes); `key` at most 128 bytes; `url` at most 1024
//! bytes. A button with sub-buttons has no action of its own; every other button has one of
//! `click` (`key`), `view` (`url`) or `miniprogram` (`appid`, `pagepath` and a fallback `url`
//! for clients that cannot open Mini Programs).

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value, json};

/// Most top-level buttons.
pub const MAX_TOP_LEVEL: usize = 3;
/// Most sub-buttons under one top-level button.
pub const MAX_SUB_BUTTONS: usize = 5;
/// Longest top-level name, in UTF-8 bytes.
pub const MAX_TOP_NAME_BYTES: usize = 16;
/// Longest sub-button name, in UTF-8 bytes.
pub const MAX_SUB_NAME_BYTES: usize = 60;
/// Longest `key`, in bytes.
pub const MAX_KEY_BYTES: usize = 128;
/// Longest `url`, in bytes.
pub const MAX_URL_BYTES: usize = 1024;
/// Largest menu file accepted, in bytes.
pub const MAX_FILE_BYTES: usize = 64 * 1024;

/// A menu button as the file (and `menu/create`) writes it.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Button {
    /// Shown name.
    pub name: String,
    /// `click`, `view` or `miniprogram`; absent on a button with sub-buttons.
    #[serde(default, rename = "type", skip_serializing_if = "Option::is_none")]
    pub kind: Option<String>,
    /// `click`: the EventKey pushed on a click.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub key: Option<String>,
    /// `view`: the page; `miniprogram`: the fallback page.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub url: Option<String>,
    /// `miniprogram`: the Mini Program's appid.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub appid: Option<String>,
    /// `miniprogram`: the page opened (may carry a query).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pagepath: Option<String>,
    /// Sub-buttons (top level only).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub sub_button: Vec<Button>,
}

/// The whole menu: `{"button": [...]}`.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Menu {
    /// Top-level buttons.
    pub button: Vec<Button>,
}

/// The rule a menu breaks; `path` names the button (`button[1].sub_button[0]`).
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum MenuError {
    /// Not JSON of the expected shape (or too large).
    #[error("menu file: {0}")]
    Format(String),
    /// A rule of the platform: `rule` is its stable name (`top_level_count`, …).
    #[error("{path}: {message} (rule `{rule}`)")]
    Rule {
        /// Stable rule name (docs/errors.md, `MENU_INVALID`).
        rule: &'static str,
        /// Which button.
        path: String,
        /// What is wrong.
        message: String,
    },
}

impl MenuError {
    /// The rule's stable name (`format` for unreadable files).
    pub fn rule(&self) -> &'static str {
        match self {
            MenuError::Format(_) => "format",
            MenuError::Rule { rule, .. } => rule,
        }
    }
}

fn broken(rule: &'static str, path: &str, message: String) -> MenuError {
    MenuError::Rule {
        rule,
        path: path.to_owned(),
        message,
    }
}

impl Menu {
    /// Parses and validates a menu file.
    ///
    /// # Errors
    /// [`MenuError`] naming the first rule broken.
    pub fn parse(bytes: &[u8]) -> Result<Menu, MenuError> {
        if bytes.len() > MAX_FILE_BYTES {
            return Err(MenuError::Format(format!(
                "larger than {MAX_FILE_BYTES} bytes"
            )));
        }
        let menu: Menu =
            serde_json::from_slice(bytes).map_err(|e| MenuError::Format(e.to_string()))?;
        menu.validate()?;
        Ok(menu)
    }

    /// Checks the platform's limits.
    ///
    /// # Errors
    /// [`MenuError::Rule`] naming the first rule broken.
    pub fn validate(&self) -> Result<(), MenuError> {
        if self.button.is_empty() {
            return Err(broken(
                "top_level_count",
                "button",
                "a menu needs at least one button".into(),
            ));
        }
        if self.button.len() > MAX_TOP_LEVEL {
            return Err(broken(
                "top_level_count",
                "button",
                format!(
                    "{} top-level buttons; at most {MAX_TOP_LEVEL}",
                    self.button.len()
                ),
            ));
        }
        for (i, top) in self.button.iter().enumerate() {
            let path = format!("button[{i}]");
            check_name(&top.name, &path, MAX_TOP_NAME_BYTES, "top_level_name_bytes")?;
            if top.sub_button.is_empty() {
                check_action(top, &path)?;
                continue;
            }
            if top.kind.is_some() || top.key.is_some() || top.url.is_some() {
                return Err(broken(
                    "parent_has_action",
                    &path,
                    "a button with sub-buttons has no type, key or url of its own".into(),
                ));
            }
            if top.sub_button.len() > MAX_SUB_BUTTONS {
                return Err(broken(
                    "sub_button_count",
                    &path,
                    format!(
                        "{} sub-buttons; at most {MAX_SUB_BUTTONS}",
                        top.sub_button.len()
                    ),
                ));
            }
            for (j, sub) in top.sub_button.iter().enumerate() {
                let path = format!("{path}.sub_button[{j}]");
                check_name(
                    &sub.name,
                    &path,
                    MAX_SUB_NAME_BYTES,
                    "sub_button_name_bytes",
                )?;
                if !sub.sub_button.is_empty() {
                    return Err(broken(
                        "depth",
                        &path,
                        "menus have two levels; a sub-button has no sub-buttons".into(),
                    ));
                }
                check_action(sub, &path)?;
            }
        }
        let mut keys = std::collections::BTreeSet::new();
        for (path, button) in self.leaves() {
            if let Some(key) = &button.key
                && !keys.insert(key.clone())
            {
                return Err(broken(
                    "duplicate_key",
                    &path,
                    format!("key `{key}` is used twice; clicks could not be told apart"),
                ));
            }
        }
        Ok(())
    }

    /// Every button with an action, with its path.
    pub fn leaves(&self) -> Vec<(String, &Button)> {
        let mut out = Vec::new();
        for (i, top) in self.button.iter().enumerate() {
            if top.sub_button.is_empty() {
                out.push((format!("button[{i}]"), top));
            }
            for (j, sub) in top.sub_button.iter().enumerate() {
                out.push((format!("button[{i}].sub_button[{j}]"), sub));
            }
        }
        out
    }

    /// The body of `menu/create`.
    pub fn to_create_body(&self) -> Value {
        serde_json::to_value(self).unwrap_or_else(|_| json!({"button": []}))
    }

    /// The live menu from `get_current_selfmenu_info` (sub-buttons under `sub_button.list`;
    /// buttons made in the web console may carry types this file does not use, kept as they
    /// are so the difference shows them). `None` when no menu is open.
    pub fn from_live(reply: &Value) -> Option<Menu> {
        if reply["is_menu_open"].as_i64() == Some(0) {
            return None;
        }
        let buttons = reply["selfmenu_info"]["button"].as_array()?;
        let button = buttons.iter().map(live_button).collect();
        Some(Menu { button })
    }
}

fn live_button(v: &Value) -> Button {
    let s = |k: &str| v[k].as_str().map(str::to_owned);
    let subs = v["sub_button"]["list"]
        .as_array()
        .or_else(|| v["sub_button"].as_array())
        .map(|l| l.iter().map(live_button).collect())
        .unwrap_or_default();
    Button {
        name: s("name").unwrap_or_default(),
        kind: s("type"),
        key: s("key"),
        url: s("url"),
        appid: s("appid"),
        pagepath: s("pagepath"),
        sub_button: subs,
    }
}

fn check_name(name: &str, path: &str, max: usize, rule: &'static str) -> Result<(), MenuError> {
    if name.trim().is_empty() {
        return Err(broken(rule, path, "the name is empty".into()));
    }
    if name.len() > max {
        return Err(broken(
            rule,
            path,
            format!(
                "name `{name}` is {} bytes; at most {max} bytes (UTF-8)",
                name.len()
            ),
        ));
    }
    Ok(())
}

fn require<'a>(
    value: &'a Option<String>,
    field: &str,
    path: &str,
    kind: &str,
) -> Result<&'a str, MenuError> {
    value
        .as_deref()
        .filter(|v| !v.trim().is_empty())
        .ok_or_else(|| {
            broken(
                "missing_field",
                path,
                format!("a `{kind}` button needs `{field}`"),
            )
        })
}

fn check_url(url: &str, path: &str) -> Result<(), MenuError> {
    if url.len() > MAX_URL_BYTES {
        return Err(broken(
            "url_bytes",
            path,
            format!("url is {} bytes; at most {MAX_URL_BYTES}", url.len()),
        ));
    }
    if !(url.starts_with("https://") || url.starts_with("http://")) {
        return Err(broken(
            "url_scheme",
            path,
            format!("url `{url}` must be http(s)"),
        ));
    }
    Ok(())
}

fn check_action(b: &Button, path: &str) -> Result<(), MenuError> {
    let Some(kind) = b.kind.as_deref() else {
        return Err(broken(
            "missing_field",
            path,
            "a button without sub-buttons needs a `type`".into(),
        ));
    };
    match kind {
        "click" => {
            let key = require(&b.key, "key", path, kind)?;
            if key.len() > MAX_KEY_BYTES {
                return Err(broken(
                    "key_bytes",
                    path,
                    format!("key is {} bytes; at most {MAX_KEY_BYTES}", key.len()),
                ));
            }
        }
        "view" => check_url(require(&b.url, "url", path, kind)?, path)?,
        "miniprogram" => {
            require(&b.appid, "appid", path, kind)?;
            let page = require(&b.pagepath, "pagepath", path, kind)?;
            if page.starts_with('/') {
                return Err(broken(
                    "pagepath",
                    path,
                    "pagepath has no leading `/`".into(),
                ));
            }
            // The fallback page for clients that cannot open Mini Programs is required.
            check_url(require(&b.url, "url", path, kind)?, path)?;
        }
        other => {
            return Err(broken(
                "button_type",
                path,
                format!("type `{other}`: this file uses click, view or miniprogram"),
            ));
        }
    }
    Ok(())
}

/// One line of the difference between the file and the live menu.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct DiffLine {
    /// `+` only in the file, `-` only live, `~` both but different.
    pub op: char,
    /// `Top` or `Top / Sub`.
    pub button: String,
    /// What the file says (or the live button for `-`).
    pub detail: String,
}

impl std::fmt::Display for DiffLine {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} {}  {}", self.op, self.button, self.detail)
    }
}

fn describe(b: &Button) -> String {
    let mut m = Map::new();
    for (k, v) in [
        ("type", &b.kind),
        ("key", &b.key),
        ("url", &b.url),
        ("appid", &b.appid),
        ("pagepath", &b.pagepath),
    ] {
        if let Some(v) = v {
            m.insert(k.into(), Value::String(v.clone()));
        }
    }
    if !b.sub_button.is_empty() {
        m.insert("sub_buttons".into(), json!(b.sub_button.len()));
    }
    Value::Object(m).to_string()
}

fn flatten(menu: &Menu) -> Vec<(String, String)> {
    let mut out = Vec::new();
    for top in &menu.button {
        out.push((top.name.clone(), describe(top)));
        for sub in &top.sub_button {
            out.push((format!("{} / {}", top.name, sub.name), describe(sub)));
        }
    }
    out
}

/// What publishing `wanted` changes in `live` (empty: nothing to do), in the file's order
/// then the removed buttons.
pub fn diff(wanted: &Menu, live: Option<&Menu>) -> Vec<DiffLine> {
    let want = flatten(wanted);
    let have = live.map(flatten).unwrap_or_default();
    let mut out = Vec::new();
    for (position, (name, detail)) in want.iter().enumerate() {
        match have.iter().find(|(n, _)| n == name) {
            None => out.push(DiffLine {
                op: '+',
                button: name.clone(),
                detail: detail.clone(),
            }),
            Some((_, live_detail)) => {
                let moved = have.iter().position(|(n, _)| n == name) != Some(position);
                if live_detail != detail || moved {
                    out.push(DiffLine {
                        op: '~',
                        button: name.clone(),
                        detail: if live_detail == detail {
                            format!("{detail} (moved)")
                        } else {
                            format!("{live_detail} -> {detail}")
                        },
                    });
                }
            }
        }
    }
    for (name, detail) in &have {
        if !want.iter().any(|(n, _)| n == name) {
            out.push(DiffLine {
                op: '-',
                button: name.clone(),
                detail: detail.clone(),
            });
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn good() -> Value {
        json!({"button": [
            {"type": "miniprogram", "name": "商城", "appid": "wxabc", "pagepath": "pages/index/index?from=oa_menu&key=shop",
             "url": "https://example.com/shop"},
            {"type": "view", "name": "官网", "url": "https://example.com"},
            {"name": "更多", "sub_button": [
                {"type": "click", "name": "联系客服", "key": "CONTACT"},
                {"type": "click", "name": "今日推荐", "key": "TODAY"}
            ]}
        ]})
    }

    fn rule_of(v: &Value) -> &'static str {
        Menu::parse(v.to_string().as_bytes()).unwrap_err().rule()
    }

    #[test]
    fn a_good_menu_parses() {
        let menu = Menu::parse(good().to_string().as_bytes()).unwrap();
        assert_eq!(menu.leaves().len(), 4);
        assert_eq!(menu.to_create_body(), good());
    }

    #[test]
    fn each_limit_names_its_rule() {
        let mut v = good();
        v["button"]
            .as_array_mut()
            .unwrap()
            .push(json!({"type": "view", "name": "x", "url": "https://e.com"}));
        assert_eq!(rule_of(&v), "top_level_count");

        let mut v = good();
        let subs = v["button"][2]["sub_button"].as_array_mut().unwrap();
        for i in 0..4 {
            subs.push(json!({"type": "click", "name": format!("s{i}"), "key": format!("K{i}")}));
        }
        assert_eq!(rule_of(&v), "sub_button_count");

        // 6 Chinese characters = 18 bytes > 16.
        let mut v = good();
        v["button"][1]["name"] = json!("六个汉字名字");
        assert_eq!(rule_of(&v), "top_level_name_bytes");
        let mut v = good();
        v["button"][2]["sub_button"][0]["name"] = json!("字".repeat(21));
        assert_eq!(rule_of(&v), "sub_button_name_bytes");
        // 20 Chinese characters = 60 bytes: allowed.
        v["button"][2]["sub_button"][0]["name"] = json!("字".repeat(20));
        Menu::parse(v.to_string().as_bytes()).unwrap();

        let mut v = good();
        v["button"][0].as_object_mut().unwrap().remove("url");
        assert_eq!(rule_of(&v), "missing_field");
        let mut v = good();
        v["button"][2]["sub_button"][1]["key"] = json!("CONTACT");
        assert_eq!(rule_of(&v), "duplicate_key");
        let mut v = good();
        v["button"][2]["sub_button"][1]["key"] = json!("k".repeat(129));
        assert_eq!(rule_of(&v), "key_bytes");
        let mut v = good();
        v["button"][2]["type"] = json!("click");
        assert_eq!(rule_of(&v), "parent_has_action");
        let mut v = good();
        v["button"][1]["type"] = json!("scancode_push");
        assert_eq!(rule_of(&v), "button_type");
        let mut v = good();
        v["button"][1]["url"] = json!("javascript:alert(1)");
        assert_eq!(rule_of(&v), "url_scheme");
        assert_eq!(rule_of(&json!({"button": []})), "top_level_count");
        assert_eq!(rule_of(&json!({"buttons": []})), "format");
    }

    #[test]
    fn diff_against_the_live_shape() {
        let wanted = Menu::parse(good().to_string().as_bytes()).unwrap();
        // Against no live menu every button is new: 3 top-level buttons and 2 sub-buttons.
        let fresh: Vec<(char, String)> = diff(&wanted, None)
            .into_iter()
            .map(|l| (l.op, l.button))
            .collect();
        assert_eq!(
            fresh,
            ["商城", "官网", "更多", "更多 / 联系客服", "更多 / 今日推荐"]
                .map(|b| ('+', b.to_owned()))
                .to_vec()
        );
        let live_reply = json!({"is_menu_open": 1, "selfmenu_info": {"button": [
            {"type": "miniprogram", "name": "商城", "appid": "wxabc", "pagepath": "pages/index/index?from=oa_menu&key=shop",
             "url": "https://example.com/shop"},
            {"type": "view", "name": "官网", "url": "https://example.org"},
            {"name": "更多", "sub_button": {"list": [
                {"type": "click", "name": "联系客服", "key": "CONTACT"},
                {"type": "click", "name": "旧的", "key": "OLD"}
            ]}}
        ]}});
        let live = Menu::from_live(&live_reply).unwrap();
        let lines: Vec<String> = diff(&wanted, Some(&live))
            .iter()
            .map(ToString::to_string)
            .collect();
        assert_eq!(lines.len(), 3, "{lines:?}");
        assert!(lines[0].starts_with("~ 官网"));
        assert!(lines[1].starts_with("+ 更多 / 今日推荐"));
        assert!(lines[2].starts_with("- 更多 / 旧的"));
        let same = Menu::from_live(&json!({"is_menu_open": 1, "selfmenu_info": good()})).unwrap();
        assert!(diff(&wanted, Some(&same)).is_empty());
        assert!(Menu::from_live(&json!({"is_menu_open": 0})).is_none());
    }

    proptest! {
        #[test]
        fn fuzz_menu_parse_never_panics(bytes in proptest::collection::vec(any::<u8>(), 0..512)) {
            let _ = Menu::parse(&bytes);
        }

        #[test]
        fn fuzz_menu_names_by_bytes(name in "\\PC{0,30}") {
            let v = json!({"button": [{"type": "click", "name": name.clone(), "key": "K"}]});
            let r = Menu::parse(v.to_string().as_bytes());
            let ok = !name.trim().is_empty() && name.len() <= MAX_TOP_NAME_BYTES;
            prop_assert_eq!(r.is_ok(), ok);
        }
    }
}
