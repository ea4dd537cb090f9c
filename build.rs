//! Turns `openapi.yaml` (the contract's machine-readable twin, written by hand) into the JSON
//! that `GET /api/openapi.json` serves, at build time: the binaries carry no YAML parser. And
//! turns the vendored libphonenumber metadata into the phone policy's table
//! (`codegen/phone_table.rs`): the binaries carry neither its XML nor an XML parser.

use std::fmt::Write;

use yaml_rust2::{Yaml, YamlLoader};

#[path = "codegen/phone_table.rs"]
mod phone_table;

fn main() {
    let out = std::env::var("OUT_DIR").expect("cargo sets OUT_DIR");
    openapi_json(&out);
    phone_table::generate(&out);
}

fn openapi_json(out: &str) {
    println!("cargo::rerun-if-changed=openapi.yaml");
    let text = std::fs::read_to_string("openapi.yaml").expect("openapi.yaml is readable");
    let documents = YamlLoader::load_from_str(&text).expect("openapi.yaml is valid YAML");
    let [document] = documents.as_slice() else {
        panic!("openapi.yaml must hold exactly one document");
    };
    let mut json = String::new();
    write_json(&mut json, document);
    std::fs::write(format!("{out}/openapi.json"), json).expect("OUT_DIR is writable");
}

fn write_json(out: &mut String, value: &Yaml) {
    match value {
        Yaml::Null => out.push_str("null"),
        Yaml::Boolean(b) => out.push_str(if *b { "true" } else { "false" }),
        Yaml::Integer(i) => write!(out, "{i}").unwrap(),
        Yaml::Real(r) => {
            let parsed: f64 = r.parse().expect("a YAML real JSON can hold");
            assert!(parsed.is_finite(), "openapi.yaml: {r} has no JSON form");
            out.push_str(r);
        }
        Yaml::String(s) => write_string(out, s),
        Yaml::Array(items) => {
            out.push('[');
            for (i, item) in items.iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                write_json(out, item);
            }
            out.push(']');
        }
        Yaml::Hash(map) => {
            out.push('{');
            for (i, (key, item)) in map.iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                // JSON keys are strings: a status code such as 200 is written "200".
                match key {
                    Yaml::String(s) => write_string(out, s),
                    Yaml::Integer(n) => write_string(out, &n.to_string()),
                    other => panic!("openapi.yaml: unsupported key {other:?}"),
                }
                out.push(':');
                write_json(out, item);
            }
            out.push('}');
        }
        Yaml::Alias(_) | Yaml::BadValue => {
            panic!("openapi.yaml: aliases and bad values have no JSON form")
        }
    }
}

fn write_string(out: &mut String, s: &str) {
    out.push('"');
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            c if (c as u32) < 0x20 => write!(out, "\\u{:04x}", c as u32).unwrap(),
            c => out.push(c),
        }
    }
    out.push('"');
}
