//! The committed `openapi/openapi.json` must equal what the code generates and what the server serves.

use crate::helpers::TestApp;

const COMMITTED: &str = include_str!("../../openapi/openapi.json");
const REFRESH: &str = "cargo run -q -- openapi > openapi/openapi.json";

#[test]
fn committed_document_matches_the_code() {
    let generated = portal::app::openapi_document();
    assert!(
        generated == COMMITTED,
        "openapi/openapi.json is out of date with the handlers; refresh it with `{REFRESH}` and commit it"
    );
}

#[tokio::test]
async fn served_document_is_openapi_3_and_equals_the_committed_copy() {
    let app = TestApp::spawn().await;
    let reply = app.get("/openapi.json").await;
    assert_eq!(reply.status, 200);
    assert!(reply.header("content-type").unwrap().starts_with("application/json"));
    assert_eq!(reply.text, COMMITTED, "served document differs; refresh with `{REFRESH}`");
    let doc = reply.json();
    assert!(doc["openapi"].as_str().unwrap().starts_with("3."));
    assert_eq!(doc["info"]["title"], "Portal");
    assert!(doc["paths"]["/health"]["get"].is_object());
}

#[test]
fn every_operation_documents_the_error_envelope() {
    let doc: serde_json::Value = serde_json::from_str(COMMITTED).unwrap();
    for (path, item) in doc["paths"].as_object().unwrap() {
        for (method, op) in item.as_object().unwrap() {
            for status in ["400", "404", "422", "429", "500"] {
                let schema = &op["responses"][status]["content"]["application/json; charset=utf-8"]["schema"]["$ref"];
                assert_eq!(schema, "#/components/schemas/ErrorEnvelope", "{method} {path} {status}");
            }
        }
    }
}

/// Client generators (openapi-python-client among them) drop operations whose schemas reach an enum
/// through `allOf`, which poem-openapi emits for a documented field of a named type. Such a field's text
/// belongs on its type.
#[test]
fn no_schema_wraps_a_reference_in_all_of() {
    fn visit(value: &serde_json::Value, at: &str, found: &mut Vec<String>) {
        match value {
            serde_json::Value::Object(map) => {
                if map.contains_key("allOf") {
                    found.push(at.to_string());
                }
                for (key, v) in map {
                    visit(v, &format!("{at}/{key}"), found);
                }
            }
            serde_json::Value::Array(items) => {
                for (i, v) in items.iter().enumerate() {
                    visit(v, &format!("{at}/{i}"), found);
                }
            }
            _ => {}
        }
    }
    let doc: serde_json::Value = serde_json::from_str(COMMITTED).unwrap();
    let mut found = Vec::new();
    visit(&doc, "", &mut found);
    assert!(found.is_empty(), "move these fields' docs onto their types: {found:#?}");
}
