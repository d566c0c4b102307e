//! The OpenAPI document (`/api/openapi.json`) and a readable page of it (`/docs`), rendered on
//! the server from the document: no script, nothing fetched from elsewhere.

use crate::AppState;
use axum::extract::State;
use axum::http::header;
use axum::response::IntoResponse;
use serde_json::Value;
use std::fmt::Write;

/// `/api/openapi.json`.
pub(crate) async fn openapi(State(state): State<AppState>) -> impl IntoResponse {
    (
        [(header::CONTENT_TYPE, "application/json")],
        state.docs.json.clone(),
    )
}

/// `/docs`.
pub(crate) async fn page(State(state): State<AppState>) -> impl IntoResponse {
    (
        [
            (header::CONTENT_TYPE, "text/html; charset=utf-8"),
            (
                header::CONTENT_SECURITY_POLICY,
                "default-src 'none'; style-src 'unsafe-inline'",
            ),
        ],
        state.docs.html.clone(),
    )
}

/// The document as JSON and as a page, made once.
pub(crate) struct Docs {
    pub(crate) json: String,
    pub(crate) html: String,
}

impl Docs {
    pub(crate) fn new(doc: &utoipa::openapi::OpenApi) -> Docs {
        let value = serde_json::to_value(doc).unwrap_or(Value::Null);
        Docs {
            json: value.to_string(),
            html: render(&value),
        }
    }
}

/// Text made safe to put in HTML.
fn escape(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

fn text<'a>(v: &'a Value, key: &str) -> &'a str {
    v.get(key).and_then(Value::as_str).unwrap_or("")
}

const STYLE: &str = "body{font-family:system-ui,sans-serif;max-width:60rem;margin:2rem auto;\
padding:0 1rem;color:#222}code,.path{font-family:ui-monospace,monospace}\
.op{border:1px solid #ddd;border-radius:6px;padding:.6rem 1rem;margin:.8rem 0}\
.m{display:inline-block;min-width:3.5rem;font-weight:bold}.get{color:#1565c0}\
.post{color:#2e7d32}table{border-collapse:collapse;margin:.4rem 0}\
td,th{border-bottom:1px solid #eee;padding:.2rem .6rem;text-align:left;vertical-align:top}";

fn render(doc: &Value) -> String {
    let info = &doc["info"];
    let mut html = format!(
        "<!doctype html><html lang=\"en\"><head><meta charset=\"utf-8\"><title>{title}</title>\
         <style>{STYLE}</style></head><body><h1>{title}</h1><p>{desc}</p>\
         <p>The machine-readable document: <a href=\"/api/openapi.json\">/api/openapi.json</a>\
         </p>",
        title = escape(text(info, "title")),
        desc = escape(text(info, "description")),
    );
    if let Some(paths) = doc["paths"].as_object() {
        for (path, item) in paths {
            for method in ["get", "post", "put", "patch", "delete"] {
                if let Some(op) = item.get(method) {
                    operation(&mut html, method, path, op);
                }
            }
        }
    }
    html.push_str("</body></html>");
    html
}

fn operation(html: &mut String, method: &str, path: &str, op: &Value) {
    let _ = write!(
        html,
        "<div class=\"op\"><span class=\"m {method}\">{}</span> <span class=\"path\">{}</span>\
         <p>{}</p>",
        method.to_uppercase(),
        escape(path),
        escape(text(op, "summary")),
    );
    if let Some(params) = op["parameters"].as_array().filter(|p| !p.is_empty()) {
        html.push_str("<table><tr><th>parameter</th><th>in</th><th>meaning</th></tr>");
        for p in params {
            let required = if p["required"].as_bool() == Some(true) {
                " (required)"
            } else {
                ""
            };
            let _ = write!(
                html,
                "<tr><td><code>{}</code>{required}</td><td>{}</td><td>{}</td></tr>",
                escape(text(p, "name")),
                escape(text(p, "in")),
                escape(text(p, "description")),
            );
        }
        html.push_str("</table>");
    }
    if let Some(responses) = op["responses"].as_object() {
        html.push_str("<table><tr><th>status</th><th>answer</th></tr>");
        for (status, r) in responses {
            let _ = write!(
                html,
                "<tr><td>{}</td><td>{}</td></tr>",
                escape(status),
                escape(text(r, "description")),
            );
        }
        html.push_str("</table>");
    }
    html.push_str("</div>");
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn text_is_escaped() {
        assert_eq!(
            escape("<a href='x'>&\"</a>"),
            "&lt;a href=&#39;x&#39;&gt;&amp;&quot;&lt;/a&gt;"
        );
        let doc = serde_json::json!({
            "info": {"title": "<t>", "description": ""},
            "paths": {"/api/<x>": {"get": {"summary": "<script>", "responses": {}}}}
        });
        let html = render(&doc);
        assert!(
            !html.contains("<script>") && html.contains("&lt;script&gt;"),
            "{html}"
        );
    }
}
