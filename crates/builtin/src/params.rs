//! The params a built-in method declares (`[methods.NAME.params.PARAM]`): the schema each call's
//! params are checked against before anything runs, and the checked values.
//!
//! The check is strict on purpose: a param that is not declared, has the wrong type, or fails its
//! `pattern` or `enum` fails the call, naming the param, and the command or request never starts.

use std::collections::BTreeMap;

use regex::Regex;
use serde::Deserialize;
use serde_json::Value;

/// A param's declared type; JSON values are checked against it exactly (`"3"` is not an integer).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ParamType {
    String,
    Integer,
    Number,
    Boolean,
}

impl ParamType {
    fn accepts(self, value: &Value) -> bool {
        match self {
            ParamType::String => value.is_string(),
            ParamType::Integer => value.is_i64() || value.is_u64(),
            ParamType::Number => value.is_number(),
            ParamType::Boolean => value.is_boolean(),
        }
    }

    fn name(self) -> &'static str {
        match self {
            ParamType::String => "a string",
            ParamType::Integer => "an integer",
            ParamType::Number => "a number",
            ParamType::Boolean => "a boolean",
        }
    }

    /// A value of this type, to try a template with at load time.
    pub(crate) fn sample(self) -> Value {
        match self {
            ParamType::String => Value::String("x".into()),
            ParamType::Integer | ParamType::Number => Value::from(1),
            ParamType::Boolean => Value::Bool(true),
        }
    }
}

/// One param as written in the file.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawParam {
    #[serde(rename = "type")]
    kind: ParamType,
    #[serde(default)]
    required: bool,
    /// A regular expression the whole value must match (strings only).
    pattern: Option<String>,
    /// The only values allowed.
    #[serde(rename = "enum")]
    one_of: Option<Vec<Value>>,
    /// The value used when the call does not give one.
    default: Option<Value>,
}

/// One declared param, checked.
#[derive(Debug, Clone)]
pub struct ParamSpec {
    pub kind: ParamType,
    pub required: bool,
    /// `pattern` anchored at both ends.
    pattern: Option<(String, Regex)>,
    one_of: Option<Vec<Value>>,
    pub default: Option<Value>,
}

/// A method's declared params, by name.
#[derive(Debug, Clone, Default)]
pub struct Schema {
    params: BTreeMap<String, ParamSpec>,
}

/// The params of one call after the check: every declared param that was given or has a default.
pub type Checked = BTreeMap<String, Value>;

impl<'de> Deserialize<'de> for Schema {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let raw = BTreeMap::<String, RawParam>::deserialize(d)?;
        Schema::new(raw).map_err(serde::de::Error::custom)
    }
}

impl Schema {
    fn new(raw: BTreeMap<String, RawParam>) -> Result<Schema, String> {
        let mut params = BTreeMap::new();
        for (name, p) in raw {
            check_name(&name)?;
            let pattern = match p.pattern {
                Some(text) => {
                    if p.kind != ParamType::String {
                        return Err(format!("param '{name}': `pattern` applies to strings only"));
                    }
                    let re = Regex::new(&format!("^(?:{text})$")).map_err(|e| {
                        format!("param '{name}': `pattern` is not a valid regular expression: {e}")
                    })?;
                    Some((text, re))
                }
                None => None,
            };
            if p.required && p.default.is_some() {
                return Err(format!("param '{name}': a required param cannot have a `default`"));
            }
            let spec =
                ParamSpec { kind: p.kind, required: p.required, pattern, one_of: p.one_of, default: None };
            for value in spec.one_of.iter().flatten() {
                if !spec.kind.accepts(value) {
                    return Err(format!("param '{name}': `enum` value {value} is not {}", spec.kind.name()));
                }
            }
            if let Some(default) = &p.default {
                spec.check(&name, default).map_err(|e| format!("`default`: {e}"))?;
            }
            params.insert(name, ParamSpec { default: p.default, ..spec });
        }
        Ok(Schema { params })
    }

    /// Whether `name` is declared.
    pub fn declares(&self, name: &str) -> bool {
        self.params.contains_key(name)
    }

    /// The declared params, by name.
    pub fn specs(&self) -> impl Iterator<Item = (&str, &ParamSpec)> {
        self.params.iter().map(|(name, spec)| (name.as_str(), spec))
    }

    /// Checks a call's params (a JSON object, or null for none) against the schema.
    pub fn check(&self, params: &Value) -> Result<Checked, String> {
        let empty = serde_json::Map::new();
        let given = match params {
            Value::Null => &empty,
            Value::Object(map) => map,
            other => return Err(format!("params must be a JSON object, got {}", kind_of(other))),
        };
        for name in given.keys() {
            if !self.params.contains_key(name) {
                return Err(format!(
                    "param '{name}' is not declared; this method takes: {}",
                    self.declared()
                ));
            }
        }
        let mut checked = Checked::new();
        for (name, spec) in &self.params {
            match given.get(name) {
                Some(value) => {
                    spec.check(name, value)?;
                    checked.insert(name.clone(), value.clone());
                }
                None if spec.required => return Err(format!("param '{name}' is required")),
                None => {
                    if let Some(default) = &spec.default {
                        checked.insert(name.clone(), default.clone());
                    }
                }
            }
        }
        Ok(checked)
    }

    fn declared(&self) -> String {
        if self.params.is_empty() {
            return "no params".into();
        }
        self.params.keys().map(String::as_str).collect::<Vec<_>>().join(", ")
    }
}

impl ParamSpec {
    fn check(&self, name: &str, value: &Value) -> Result<(), String> {
        if !self.kind.accepts(value) {
            return Err(format!("param '{name}' must be {}, got {}", self.kind.name(), kind_of(value)));
        }
        if let (Some((text, re)), Some(s)) = (&self.pattern, value.as_str())
            && !re.is_match(s)
        {
            return Err(format!("param '{name}' does not match the pattern `{text}`"));
        }
        if let Some(allowed) = &self.one_of
            && !allowed.iter().any(|a| same(a, value))
        {
            let list: Vec<String> = allowed.iter().map(Value::to_string).collect();
            return Err(format!("param '{name}' must be one of {}, got {value}", list.join(", ")));
        }
        Ok(())
    }
}

/// Equal as JSON values, with `1` and `1.0` the same number.
fn same(a: &Value, b: &Value) -> bool {
    match (a.as_f64(), b.as_f64()) {
        (Some(x), Some(y)) if a.is_number() && b.is_number() => x == y,
        _ => a == b,
    }
}

/// Param names become environment variable names (`SZ_PARAM_<NAME>`), so they are identifiers.
fn check_name(name: &str) -> Result<(), String> {
    let mut chars = name.chars();
    let ok = chars.next().is_some_and(|c| c.is_ascii_alphabetic() || c == '_')
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_')
        && name.len() <= 64;
    if ok {
        Ok(())
    } else {
        Err(format!(
            "param name '{name}' must be letters, digits and '_' (not starting with a digit), at most 64"
        ))
    }
}

/// What kind of JSON value this is, for messages (the value itself may be large or secret).
fn kind_of(value: &Value) -> &'static str {
    match value {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(n) if n.is_f64() => "a number with a fraction",
        Value::Number(_) => "an integer",
        Value::String(_) => "a string",
        Value::Array(_) => "an array",
        Value::Object(_) => "an object",
    }
}

/// A checked value as text: strings as they are, numbers and booleans as JSON writes them.
pub fn text(value: &Value) -> String {
    match value {
        Value::String(s) => s.clone(),
        other => other.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn schema(toml_text: &str) -> Result<Schema, String> {
        toml::from_str::<Schema>(toml_text).map_err(|e| e.to_string())
    }

    fn demo() -> Schema {
        schema(
            r#"
            day = { type = "string", required = true, pattern = "[0-9]{4}-[0-9]{2}-[0-9]{2}" }
            rows = { type = "integer", default = 10 }
            ratio = { type = "number" }
            dry = { type = "boolean", default = false }
            mode = { type = "string", enum = ["full", "quick"] }
            "#,
        )
        .expect("valid schema")
    }

    #[test]
    fn valid_params_pass_and_defaults_fill_in() {
        let checked = demo().check(&json!({"day": "2026-11-28", "ratio": 0.5, "mode": "quick"})).unwrap();
        assert_eq!(
            serde_json::to_value(&checked).unwrap(),
            json!({"day": "2026-11-28", "rows": 10, "ratio": 0.5, "dry": false, "mode": "quick"})
        );
    }

    #[test]
    fn each_failure_names_the_param() {
        let s = demo();
        let fail = |params: Value| s.check(&params).unwrap_err();
        assert!(fail(json!({})).contains("param 'day' is required"));
        let e = fail(json!({"day": "2026-11-28", "extra": 1}));
        assert!(e.contains("'extra' is not declared") && e.contains("day, dry, mode, ratio, rows"), "{e}");
        assert!(
            fail(json!({"day": "2026-11-28", "rows": "3"}))
                .contains("param 'rows' must be an integer, got a string")
        );
        assert!(fail(json!({"day": "2026-11-28", "rows": 1.5})).contains("'rows' must be an integer"));
        assert!(fail(json!({"day": "28/11/2026"})).contains("param 'day' does not match the pattern"));
        assert!(fail(json!({"day": "2026-11-28; rm -rf /"})).contains("'day' does not match"), "anchored");
        let ci =
            schema("w = { type = \"string\", pattern = \"(?i)error|\\\\w+-\\\\d\" }").expect("Unicode-aware");
        assert!(ci.check(&json!({"w": "ERROR"})).is_ok() && ci.check(&json!({"w": "été-3"})).is_ok());
        assert!(
            fail(json!({"day": "2026-11-28", "mode": "slow"}))
                .contains("'mode' must be one of \"full\", \"quick\"")
        );
        assert!(fail(json!({"day": "2026-11-28", "dry": "yes"})).contains("'dry' must be a boolean"));
        assert!(fail(json!([1])).contains("params must be a JSON object"));
    }

    #[test]
    fn no_params_declared_accepts_only_none() {
        let s = Schema::default();
        assert!(s.check(&Value::Null).unwrap().is_empty());
        assert!(s.check(&json!({})).unwrap().is_empty());
        assert!(s.check(&json!({"x": 1})).unwrap_err().contains("this method takes: no params"));
    }

    #[test]
    fn bad_declarations_are_refused() {
        assert!(schema("a = { type = \"text\" }").unwrap_err().contains("unknown variant"));
        assert!(schema("a = { type = \"string\", requird = true }").unwrap_err().contains("requird"));
        assert!(schema("\"a-b\" = { type = \"string\" }").unwrap_err().contains("param name 'a-b'"));
        assert!(schema("a = { type = \"integer\", pattern = \"1\" }").unwrap_err().contains("strings only"));
        assert!(
            schema("a = { type = \"string\", pattern = \"(\" }").unwrap_err().contains("regular expression")
        );
        assert!(schema("a = { type = \"integer\", default = \"x\" }").unwrap_err().contains("`default`"));
        assert!(
            schema("a = { type = \"integer\", enum = [1, \"2\"] }").unwrap_err().contains("`enum` value")
        );
    }

    #[test]
    fn values_as_text() {
        assert_eq!(text(&json!("a b")), "a b");
        assert_eq!(
            (text(&json!(3)), text(&json!(true)), text(&json!(0.5))),
            ("3".into(), "true".into(), "0.5".into())
        );
    }
}
