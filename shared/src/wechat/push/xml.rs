//! The small XML dialect WeChat pushes use (`<xml><Field><![CDATA[v]]></Field>…</xml>`),
//! read into a JSON value so JSON and XML pushes go through one typed parser, and written
//! back with CDATA for replies.

use quick_xml::Reader;
use quick_xml::events::Event;
use serde_json::{Map, Value};

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

/// Reads a WeChat XML document into the JSON object of its root element's children.
///
/// Leaf elements become strings (XML has no numbers; the typed parser accepts numeric
/// strings), elements with children become objects, repeated names become arrays.
/// Unknown entities, unbalanced tags and a missing root are errors.
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
                let ch = match r.resolve_char_ref().map_err(|e| e.to_string())? {
                    Some(ch) => ch,
                    None => {
                        let name = r.xml10_content();
                        resolve_entity(&name).ok_or_else(|| format!("unknown entity &{name};"))?
                    }
                };
                frame.text.push(ch);
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
    fn cdata_writer_escapes_terminator() {
        let mut out = String::new();
        push_cdata(&mut out, "Content", "x]]>y");
        let v = xml_to_json(&format!("<xml>{out}</xml>")).unwrap();
        assert_eq!(v["Content"], "x]]>y");
    }
}
