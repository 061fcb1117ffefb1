//! Portable JSON Schemas for tool inputs and outputs.
//!
//! `schemars` writes valid JSON Schema 2020-12, but some of it is not
//! portable to every host that reads tool schemas: several map them onto a
//! single-type dialect (the OpenAPI subset of Gemini function declarations,
//! for one) and reject or silently drop `type: [X, "null"]`; a node without
//! any validation keyword (what `serde_json::Value` becomes) tells a model
//! nothing; and `format: "int64"`/`"uint"` are not JSON Schema formats.
//! [`portable`] rewrites a generated schema so that none of that remains,
//! without changing what it accepts except for one deliberate narrowing:
//! an optional property no longer admits `null` (absent is how to say
//! "none"; the argument parsers still take `null` as absent).

use serde_json::{Map, Value, json};

/// The non-standard numeric formats `schemars` emits (`minimum`/`maximum`
/// carry the range instead).
const NUMERIC_FORMATS: &[&str] = &[
    "int8", "int16", "int32", "int64", "int128", "uint", "uint8", "uint16", "uint32", "uint64",
    "uint128", "float", "double",
];

/// Keywords that describe rather than constrain: they stay on a node when
/// its type union is split into `anyOf` branches.
const ANNOTATIONS: &[&str] = &["description", "title", "default", "examples", "deprecated"];

/// Subschema maps and lists the rewrite descends into.
const MAP_KEYWORDS: &[&str] = &["properties", "$defs", "definitions", "patternProperties"];
const LIST_KEYWORDS: &[&str] = &["anyOf", "oneOf", "allOf", "prefixItems"];
const ONE_KEYWORDS: &[&str] = &["items", "not", "contains", "propertyNames"];

/// Any JSON value, each branch a single type: what an untyped node means.
fn any_value() -> Value {
    json!({"anyOf": [
        {"type": "object", "additionalProperties": true},
        {"type": "array"},
        {"type": "string"},
        {"type": "number"},
        {"type": "boolean"},
        {"type": "null"}
    ]})
}

/// Rewrites `schema` (an object schema) in place; see the module doc.
pub fn portable(schema: &mut Map<String, Value>) {
    node(schema);
}

fn node(n: &mut Map<String, Value>) {
    // Doc comments arrive with their line breaks; a description is prose.
    if let Some(Value::String(d)) = n.get_mut("description") {
        *d = d
            .split("\n\n")
            .map(|para| para.split_whitespace().collect::<Vec<_>>().join(" "))
            .collect::<Vec<_>>()
            .join("\n\n");
    }
    // `#[serde(default)]` on an optional argument says `default: null`,
    // which contradicts the argument's type; absent means the same.
    if n.get("default") == Some(&Value::Null) {
        n.remove("default");
    }
    if let Some(Value::String(f)) = n.get("format")
        && NUMERIC_FORMATS.contains(&f.as_str())
    {
        n.remove("format");
    }
    // An optional property never needs `null`.
    let required: Vec<String> = match n.get("required") {
        Some(Value::Array(r)) => r
            .iter()
            .filter_map(|v| v.as_str().map(str::to_string))
            .collect(),
        _ => Vec::new(),
    };
    if let Some(Value::Object(props)) = n.get_mut("properties") {
        for (name, p) in props.iter_mut() {
            if !required.contains(name) {
                drop_null(p);
            }
        }
    }
    split_type_union(n);
    for k in MAP_KEYWORDS {
        if let Some(Value::Object(m)) = n.get_mut(*k) {
            for sub in m.values_mut() {
                child(sub);
            }
        }
    }
    for k in LIST_KEYWORDS {
        if let Some(Value::Array(list)) = n.get_mut(*k) {
            for sub in list.iter_mut() {
                child(sub);
            }
        }
    }
    for k in ONE_KEYWORDS {
        if let Some(sub) = n.get_mut(*k) {
            child(sub);
        }
    }
    if let Some(Value::Object(sub)) = n.get_mut("additionalProperties") {
        node(sub);
    }
}

/// A subschema: a bare `true` or a node without any validation keyword
/// becomes "any JSON value" spelled with single types (keeping its
/// description); anything else is rewritten recursively.
fn child(v: &mut Value) {
    match v {
        Value::Bool(true) => *v = any_value(),
        Value::Object(m) if unconstrained(m) => {
            let mut any = any_value();
            if let Value::Object(a) = &mut any {
                for k in ANNOTATIONS {
                    if let Some(x) = m.remove(*k) {
                        a.insert((*k).to_string(), x);
                    }
                }
            }
            *v = any;
        }
        Value::Object(m) => node(m),
        _ => {}
    }
}

/// No keyword of the node constrains the value.
fn unconstrained(m: &Map<String, Value>) -> bool {
    m.keys().all(|k| ANNOTATIONS.contains(&k.as_str()))
}

/// Removes the `null` alternative of an optional property: from a type
/// union, or as an `anyOf`/`oneOf` branch (inlining a lone remaining one).
fn drop_null(p: &mut Value) {
    let Value::Object(m) = p else { return };
    if let Some(Value::Array(types)) = m.get_mut("type") {
        types.retain(|t| t != "null");
        if types.len() == 1 {
            let t = types.remove(0);
            m.insert("type".into(), t);
        }
    }
    for k in ["anyOf", "oneOf"] {
        let Some(Value::Array(branches)) = m.get_mut(k) else {
            continue;
        };
        branches.retain(|b| b.get("type").and_then(Value::as_str) != Some("null"));
        if branches.len() == 1 {
            let only = branches.remove(0);
            m.remove(k);
            if let Value::Object(o) = only {
                for (key, val) in o {
                    m.entry(key).or_insert(val);
                }
            }
        }
    }
}

/// `type: [A, B]` becomes `anyOf: [{type: A, ...}, {type: B, ...}]`, each
/// branch carrying the node's assertions (a `null` branch carries none).
fn split_type_union(n: &mut Map<String, Value>) {
    let Some(Value::Array(types)) = n.get("type") else {
        return;
    };
    let types = types.clone();
    n.remove("type");
    let assertions: Map<String, Value> = n
        .iter()
        .filter(|(k, _)| !ANNOTATIONS.contains(&k.as_str()))
        .map(|(k, v)| (k.clone(), v.clone()))
        .collect();
    n.retain(|k, _| ANNOTATIONS.contains(&k.as_str()));
    let branches = types
        .into_iter()
        .map(|t| {
            let mut b = Map::new();
            if t != "null" {
                b.extend(assertions.clone());
            }
            b.insert("type".into(), t);
            Value::Object(b)
        })
        .collect();
    n.insert("anyOf".into(), Value::Array(branches));
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fix(v: Value) -> Value {
        let Value::Object(mut m) = v else {
            panic!("object")
        };
        portable(&mut m);
        Value::Object(m)
    }

    #[test]
    fn optional_nullables_lose_null_and_required_ones_split_into_single_types() {
        let out = fix(json!({
            "type": "object",
            "required": ["preset"],
            "properties": {
                "slot": {"type": ["string", "null"], "description": "d"},
                "limit": {"type": ["integer", "null"], "format": "uint", "minimum": 0},
                "preset": {"type": ["string", "null"], "minLength": 1, "description": "p"},
                "to": {"anyOf": [{"$ref": "#/$defs/X"}, {"type": "null"}]}
            }
        }));
        assert_eq!(
            out["properties"]["slot"],
            json!({"type": "string", "description": "d"})
        );
        assert_eq!(
            out["properties"]["limit"],
            json!({"type": "integer", "minimum": 0})
        );
        assert_eq!(
            out["properties"]["preset"],
            json!({"description": "p", "anyOf": [
                {"type": "string", "minLength": 1}, {"type": "null"}]})
        );
        assert_eq!(out["properties"]["to"], json!({"$ref": "#/$defs/X"}));
    }

    #[test]
    fn untyped_nodes_become_any_value_in_single_types() {
        let out = fix(json!({
            "type": "object",
            "properties": {
                "data": {"description": "anything"},
                "body": true,
                "params": {"type": "object", "additionalProperties": true}
            },
            "$defs": {"V": {"type": "object", "properties": {"x": {}}}}
        }));
        let data = &out["properties"]["data"];
        assert_eq!(data["description"], "anything");
        assert_eq!(data["anyOf"].as_array().unwrap().len(), 6);
        assert!(out["properties"]["body"]["anyOf"].is_array());
        assert_eq!(
            out["properties"]["params"]["additionalProperties"],
            json!(true)
        );
        assert!(out["$defs"]["V"]["properties"]["x"]["anyOf"].is_array());
    }
}
