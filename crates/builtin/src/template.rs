//! `{{name}}` templates: an argument, a URL, a header or a body with placeholders for a call's
//! params, filled in the way each place needs (as is, percent-encoded, JSON-escaped).
//!
//! A placeholder names a declared param (checked when the config is loaded). An optional param the
//! call does not give (and that has no default) fills in as empty text, or `null` in JSON outside
//! a string.

use percent_encoding::{AsciiSet, NON_ALPHANUMERIC, utf8_percent_encode};
use serde_json::Value;

use crate::params::{Checked, Schema, text};

/// Everything but the unreserved characters of RFC 3986 is encoded: a value cannot add a path
/// segment, a query parameter or a fragment.
const URL_COMPONENT: &AsciiSet = &NON_ALPHANUMERIC.remove(b'-').remove(b'.').remove(b'_').remove(b'~');

#[derive(Debug, Clone, PartialEq)]
enum Part {
    Text(String),
    Param(String),
}

/// A parsed template.
#[derive(Debug, Clone, PartialEq)]
pub struct Template {
    parts: Vec<Part>,
}

impl Template {
    /// Parses `{{name}}` placeholders (spaces inside the braces allowed) and checks that each
    /// names a param of `schema`.
    pub fn parse(source: &str, schema: &Schema) -> Result<Template, String> {
        let mut parts = Vec::new();
        let mut rest = source;
        while let Some(open) = rest.find("{{") {
            if open > 0 {
                parts.push(Part::Text(rest[..open].to_string()));
            }
            let after = &rest[open + 2..];
            let close = after.find("}}").ok_or_else(|| format!("`{{{{` without `}}}}` in \"{source}\""))?;
            let name = after[..close].trim();
            if !schema.declares(name) {
                return Err(format!(
                    "placeholder {{{{{name}}}}} names no declared param; declare it under `params` \
                     (in \"{source}\")"
                ));
            }
            parts.push(Part::Param(name.to_string()));
            rest = &after[close + 2..];
        }
        if !rest.is_empty() {
            parts.push(Part::Text(rest.to_string()));
        }
        Ok(Template { parts })
    }

    /// Rewrites the literal text (not the values that will fill it), e.g. to put in secrets read
    /// from the environment, which must never be read as placeholders.
    pub fn map_text(self, f: impl Fn(&str) -> Result<String, String>) -> Result<Template, String> {
        let parts = self
            .parts
            .into_iter()
            .map(|p| match p {
                Part::Text(t) => f(&t).map(Part::Text),
                param => Ok(param),
            })
            .collect::<Result<_, _>>()?;
        Ok(Template { parts })
    }

    /// Whether the template has no placeholder.
    pub fn is_literal(&self) -> bool {
        self.parts.iter().all(|p| matches!(p, Part::Text(_)))
    }

    /// Filled with each value's text as it is (one argv entry stays one entry whatever it holds).
    pub fn render(&self, values: &Checked) -> String {
        self.fill(|name| values.get(name).map(text).unwrap_or_default())
    }

    /// Filled with each value's text percent-encoded, for a URL.
    pub fn render_url(&self, values: &Checked) -> String {
        self.fill(|name| {
            let raw = values.get(name).map(text).unwrap_or_default();
            utf8_percent_encode(&raw, URL_COMPONENT).to_string()
        })
    }

    /// Filled for a JSON document: inside a string literal a value is JSON-escaped text; outside
    /// one it is the value as JSON (a string quoted), so a value can never change the document's
    /// structure.
    pub fn render_json(&self, values: &Checked) -> String {
        let mut out = String::new();
        let mut scan = JsonScan::default();
        for part in &self.parts {
            match part {
                Part::Text(t) => {
                    scan.feed(t);
                    out.push_str(t);
                }
                Part::Param(name) => {
                    let value = values.get(name);
                    if scan.in_string {
                        let quoted = Value::String(value.map(text).unwrap_or_default()).to_string();
                        out.push_str(&quoted[1..quoted.len() - 1]);
                    } else {
                        out.push_str(&value.cloned().unwrap_or(Value::Null).to_string());
                    }
                }
            }
        }
        out
    }

    fn fill(&self, value: impl Fn(&str) -> String) -> String {
        self.parts
            .iter()
            .map(|p| match p {
                Part::Text(t) => t.clone(),
                Part::Param(name) => value(name),
            })
            .collect()
    }
}

/// Whether the text so far ends inside a JSON string literal.
#[derive(Default)]
struct JsonScan {
    in_string: bool,
    escaped: bool,
}

impl JsonScan {
    fn feed(&mut self, text: &str) {
        for c in text.chars() {
            if !self.in_string {
                self.in_string = c == '"';
            } else if self.escaped {
                self.escaped = false;
            } else if c == '\\' {
                self.escaped = true;
            } else if c == '"' {
                self.in_string = false;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn schema() -> Schema {
        toml::from_str(
            "name = { type = \"string\" }\nn = { type = \"integer\" }\nflag = { type = \"boolean\" }",
        )
        .expect("schema")
    }

    fn values(v: Value) -> Checked {
        serde_json::from_value(v).expect("object")
    }

    #[test]
    fn placeholders_must_name_declared_params() {
        let e = Template::parse("a {{ nope }}", &schema()).unwrap_err();
        assert!(e.contains("{{nope}} names no declared param"), "{e}");
        assert!(Template::parse("a {{name", &schema()).unwrap_err().contains("without"));
        assert!(Template::parse("plain", &schema()).unwrap().is_literal());
    }

    #[test]
    fn text_is_filled_as_is_and_absent_params_are_empty() {
        let t = Template::parse("--name={{name}} {{ n }}!", &schema()).unwrap();
        assert_eq!(t.render(&values(json!({"name": "$(rm -rf /); x", "n": 3}))), "--name=$(rm -rf /); x 3!");
        assert_eq!(t.render(&values(json!({}))), "--name= !");
    }

    #[test]
    fn urls_get_percent_encoded_values() {
        let t = Template::parse("http://h/a/{{name}}?q={{name}}", &schema()).unwrap();
        assert_eq!(
            t.render_url(&values(json!({"name": "a/b?c=d&e #é"}))),
            "http://h/a/a%2Fb%3Fc%3Dd%26e%20%23%C3%A9?q=a%2Fb%3Fc%3Dd%26e%20%23%C3%A9"
        );
    }

    #[test]
    fn json_values_are_escaped_inside_strings_and_encoded_outside() {
        let t = Template::parse(
            r#"{"text": "hi {{name}}", "raw": {{name}}, "n": {{n}}, "f": {{flag}}, "q": "\"{{n}}"}"#,
            &schema(),
        )
        .unwrap();
        let evil = r#"x", "admin": true, "y": "\"#;
        let body = t.render_json(&values(json!({"name": evil, "n": 7, "flag": true})));
        let parsed: Value = serde_json::from_str(&body).expect("still JSON");
        assert_eq!(parsed, json!({"text": format!("hi {evil}"), "raw": evil, "n": 7, "f": true, "q": "\"7"}));
        let absent: Value = serde_json::from_str(&t.render_json(&values(json!({})))).unwrap();
        assert_eq!(absent, json!({"text": "hi ", "raw": null, "n": null, "f": null, "q": "\""}));
    }
}
