//! The small XML dialect WeChat pushes use (`<xml><Field><![CDATA[v]]></Field>…</xml>`),
//! read into a JSON value so JSON and XML pushes go through one typed parser, and written
//! back with CDATA for replies.

use quick_xml::Reader;
use quick_xml::events::{BytesRef, Event};
use serde_json::{Map, Value};

use super::limits::MAX_DEPTH;

/// An element being read: its name, child elements, and text (text + CDATA + references).
struct Frame {
    name: String,
    children: Map<String, Value>,
    text: String,
    has_children: bool,
}

/// Adds a child; a name seen twice becomes an array (`<detail>` repeated in media checks).
fn insert_child(map: &mut Map<String, Value>, name: String, value: Value) {
    match map.get_mut(&name) {
        Some(Value::Array(items)) => items.push(value),
        Some(existing) => {
            let first = existing.take();
            *existing = Value::Array(vec![first, value]);
        }
        None => {
            map.insert(name, value);
        }
    }
}

fn resolve_entity(name: &str) -> Option<char> {
    match name {
        "lt" => Some('<'),
        "gt" => Some('>'),
        "amp" => Some('&'),
        "apos" => Some('\''),
        "quot" => Some('"'),
        _ => None,
    }
}

fn resolve_ref(r: &BytesRef<'_>) -> Result<char, String> {
    match r.resolve_char_ref().map_err(|e| e.to_string())? {
        Some(ch) => Ok(ch),
        None => {
            let name = r.xml10_content();
            resolve_entity(&name).ok_or_else(|| format!("unknown entity &{name};"))
        }
    }
}

fn too_deep() -> String {
    format!("XML nested deeper than {MAX_DEPTH} levels")
}

/// Reads a WeChat XML document into the JSON object of its root element's children.
///
/// Leaf elements become strings (XML has no numbers; the typed parser accepts numeric
/// strings), elements with children become objects, repeated names become arrays.
/// Unknown entities, unbalanced tags, a missing root and nesting deeper than [`MAX_DEPTH`]
/// are errors (the depth is refused as it is read, so no deep tree is ever built).
pub(crate) fn xml_to_json(input: &str) -> Result<Map<String, Value>, String> {
    let mut reader = Reader::from_str(input);
    let mut stack: Vec<Frame> = Vec::new();
    let mut root: Option<Map<String, Value>> = None;
    loop {
        let event = reader.read_event().map_err(|e| e.to_string())?;
        match event {
            Event::Start(e) => {
                if root.is_some() {
                    return Err("content after the root element".into());
                }
                if stack.len() >= MAX_DEPTH {
                    return Err(too_deep());
                }
                stack.push(Frame {
                    name: e.local_name().as_ref().to_owned(),
                    children: Map::new(),
                    text: String::new(),
                    has_children: false,
                });
            }
            Event::Empty(e) => {
                let name = e.local_name().as_ref().to_owned();
                match stack.last_mut() {
                    Some(parent) => {
                        parent.has_children = true;
                        insert_child(&mut parent.children, name, Value::String(String::new()));
                    }
                    None if root.is_none() => root = Some(Map::new()),
                    None => return Err("content after the root element".into()),
                }
            }
            Event::End(_) => {
                let frame = stack.pop().ok_or("unbalanced end tag")?;
                let value = if frame.has_children {
                    Value::Object(frame.children)
                } else {
                    Value::String(frame.text)
                };
                match stack.last_mut() {
                    Some(parent) => {
                        parent.has_children = true;
                        insert_child(&mut parent.children, frame.name, value);
                    }
                    None => {
                        root = Some(match value {
                            Value::Object(map) => map,
                            _ => Map::new(),
                        });
                    }
                }
            }
            Event::Text(t) => {
                let text = t.xml10_content();
                match stack.last_mut() {
                    Some(frame) => frame.text.push_str(&text),
                    None if text.trim().is_empty() => {}
                    None => return Err("text outside the root element".into()),
                }
            }
            Event::CData(c) => {
                let frame = stack.last_mut().ok_or("CDATA outside the root element")?;
                frame.text.push_str(&c.xml10_content());
            }
            Event::GeneralRef(r) => {
                let frame = stack
                    .last_mut()
                    .ok_or("reference outside the root element")?;
                frame.text.push(resolve_ref(&r)?);
            }
            Event::Eof => break,
            Event::Decl(_) | Event::Comment(_) | Event::PI(_) | Event::DocType(_) => {}
        }
    }
    if !stack.is_empty() {
        return Err("unclosed element".into());
    }
    root.ok_or_else(|| "no root element".into())
}

/// The text of the root's child `field` (`<xml><Encrypt>…</Encrypt>…</xml>`), read as a
/// stream without building a tree: the envelope of a safe-mode push, before its signature is
/// checked. `None` when absent; a repeated field, bad nesting or more than [`MAX_DEPTH`]
/// levels are errors.
pub(crate) fn xml_root_field(input: &str, field: &str) -> Result<Option<String>, String> {
    let mut reader = Reader::from_str(input);
    let mut depth = 0usize;
    let mut roots = 0usize;
    let mut inside = false;
    let mut text = String::new();
    let mut found: Option<String> = None;
    let take = |found: &mut Option<String>, value: String| {
        if found.replace(value).is_some() {
            Err(format!("<{field}> appears twice"))
        } else {
            Ok(())
        }
    };
    loop {
        match reader.read_event().map_err(|e| e.to_string())? {
            Event::Start(e) => {
                if depth == 0 {
                    roots += 1;
                }
                depth += 1;
                if depth > MAX_DEPTH {
                    return Err(too_deep());
                }
                if depth == 2 && AsRef::<str>::as_ref(&e.local_name()) == field {
                    inside = true;
                    text.clear();
                }
            }
            Event::Empty(e) => {
                if depth == 0 {
                    roots += 1;
                }
                if depth == 1 && AsRef::<str>::as_ref(&e.local_name()) == field {
                    take(&mut found, String::new())?;
                }
            }
            Event::End(_) => {
                if depth == 2 && inside {
                    inside = false;
                    take(&mut found, std::mem::take(&mut text))?;
                }
                depth = depth.checked_sub(1).ok_or("unbalanced end tag")?;
            }
            Event::Text(t) if inside && depth == 2 => text.push_str(&t.xml10_content()),
            Event::CData(c) if inside && depth == 2 => text.push_str(&c.xml10_content()),
            Event::GeneralRef(r) if inside && depth == 2 => text.push(resolve_ref(&r)?),
            Event::Eof => break,
            _ => {}
        }
    }
    if depth != 0 {
        return Err("unclosed element".into());
    }
    if roots != 1 {
        return Err("expected exactly one root element".into());
    }
    Ok(found)
}

/// Appends `<name><![CDATA[value]]></name>`, splitting any `]]>` inside the value.
pub(crate) fn push_cdata(out: &mut String, name: &str, value: &str) {
    out.push('<');
    out.push_str(name);
    out.push_str("><![CDATA[");
    out.push_str(&value.replace("]]>", "]]]]><![CDATA[>"));
    out.push_str("]]></");
    out.push_str(name);
    out.push('>');
}

/// Appends `<name>number</name>`.
pub(crate) fn push_number(out: &mut String, name: &str, value: i64) {
    out.push('<');
    out.push_str(name);
    out.push('>');
    out.push_str(&value.to_string());
    out.push_str("</");
    out.push_str(name);
    out.push('>');
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_cdata_text_nested_and_repeated() {
        let xml = "<xml><ToUserName><![CDATA[gh_1]]></ToUserName>\n<CreateTime>1714112445</CreateTime>\
            <Content>a &amp; b &#20320;</Content><result><suggest>risky</suggest><label>20002</label></result>\
            <detail><strategy>content_model</strategy></detail><detail><strategy>keyword</strategy></detail><Empty/></xml>";
        let v = xml_to_json(xml).unwrap();
        assert_eq!(v["ToUserName"], "gh_1");
        assert_eq!(v["CreateTime"], "1714112445");
        assert_eq!(v["Content"], "a & b 你");
        assert_eq!(v["result"]["label"], "20002");
        assert_eq!(v["detail"][1]["strategy"], "keyword");
        assert_eq!(v["Empty"], "");
    }

    #[test]
    fn rejects_malformed_documents() {
        assert!(xml_to_json("<xml><a>1</b></xml>").is_err());
        assert!(xml_to_json("<xml><a>1</a>").is_err());
        assert!(xml_to_json("<xml><a>&foo;</a></xml>").is_err());
        assert!(xml_to_json("").is_err());
        assert!(xml_to_json("<xml/><more/>").is_err());
    }

    #[test]
    fn nesting_is_bounded_before_a_tree_exists() {
        let deep = format!(
            "<xml>{}{}</xml>",
            "<a>".repeat(100_000),
            "</a>".repeat(100_000)
        );
        assert!(xml_to_json(&deep).unwrap_err().contains("deeper"));
        assert!(
            xml_root_field(&deep, "Encrypt")
                .unwrap_err()
                .contains("deeper")
        );
        let popup = "<xml><SubscribeMsgPopupEvent><List><TemplateId>T</TemplateId></List></SubscribeMsgPopupEvent></xml>";
        assert_eq!(
            xml_to_json(popup).unwrap()["SubscribeMsgPopupEvent"]["List"]["TemplateId"],
            "T"
        );
    }

    #[test]
    fn root_field_is_read_as_a_stream() {
        let env = "<xml><ToUserName><![CDATA[gh]]></ToUserName><Encrypt><![CDATA[a+b/c=]]></Encrypt></xml>";
        assert_eq!(xml_root_field(env, "Encrypt"), Ok(Some("a+b/c=".into())));
        assert_eq!(xml_root_field("<xml><A>x</A></xml>", "Encrypt"), Ok(None));
        assert_eq!(
            xml_root_field("<xml><Encrypt/></xml>", "Encrypt"),
            Ok(Some(String::new()))
        );
        assert!(
            xml_root_field(
                "<xml><Encrypt>a</Encrypt><Encrypt>b</Encrypt></xml>",
                "Encrypt"
            )
            .is_err()
        );
        assert!(xml_root_field("<xml><Encrypt>a</Encrypt></xml><xml/>", "Encrypt").is_err());
        assert!(xml_root_field("<xml><Encrypt>a</Encrypt>", "Encrypt").is_err());
        // Nested below the root's child: not the envelope's field.
        assert_eq!(
            xml_root_field("<xml><B><Encrypt>a</Encrypt></B></xml>", "Encrypt"),
            Ok(None)
        );
        assert_eq!(
            xml_root_field("<xml><Encrypt>a&amp;b</Encrypt></xml>", "Encrypt"),
            Ok(Some("a&b".into()))
        );
    }

    #[test]
    fn cdata_writer_escapes_terminator() {
        let mut out = String::new();
        push_cdata(&mut out, "Content", "x]]>y");
        let v = xml_to_json(&format!("<xml>{out}</xml>")).unwrap();
        assert_eq!(v["Content"], "x]]>y");
    }
}
