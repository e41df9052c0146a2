//! The pages' markup: one layout (readable on a phone, contrast above WCAG AA, labelled controls), text
//! always escaped, and a Content-Security-Policy that allows the page's own style and nothing else.

use std::sync::LazyLock;

use base64::engine::general_purpose::STANDARD;
use base64::Engine;
use poem::http::{header, StatusCode};
use poem::Response;
use sha2::{Digest, Sha256};

pub use portal_documents::format::html as escape;

use portal_organization::model::{Logo, LogoFormat};

use crate::card_form::StripeJs;

const STYLE: &str = "\
body{margin:0;background:#f4f5f7;color:#1a1a1a;font:16px/1.5 system-ui,-apple-system,'Segoe UI',Roboto,sans-serif}\
main{max-width:40rem;margin:0 auto;padding:1.5rem 1rem}\
.card{background:#fff;border:1px solid #d8dbe0;border-radius:8px;padding:1.25rem 1.5rem;margin-bottom:1rem}\
h1{font-size:1.5rem;margin:.25rem 0 1rem;color:#1f3a5f}h2{font-size:1.15rem;margin:0 0 .5rem}\
.nowrap{white-space:nowrap}\
.seller{font-weight:600}.muted{color:#545b66}\
.logo{max-height:3rem;max-width:12rem}\
table{width:100%;border-collapse:collapse}td,th{padding:.4rem 0;text-align:left;vertical-align:top}\
td.num,th.num{text-align:right;white-space:nowrap}tr.line td{border-bottom:1px solid #e3e5e9}\
tr.total td{font-weight:700;border-top:2px solid #1f3a5f}\
.facts{display:grid;grid-template-columns:auto 1fr;gap:.25rem 1rem;margin:0 0 1rem}.facts dd{margin:0;font-weight:600}\
.status{display:inline-block;padding:.2rem .6rem;border-radius:4px;font-weight:700}\
.paid{background:#dcf3e3;color:#14532d}.cancelled{background:#fde2e1;color:#7f1d1d}.open{background:#e6edf7;color:#1f3a5f}\
button{font:inherit;font-weight:600;background:#1f3a5f;color:#fff;border:0;border-radius:6px;padding:.75rem 1.25rem;\
width:100%;cursor:pointer}button:disabled{opacity:.6;cursor:progress}button:focus-visible,a:focus-visible{outline:3px solid #f0b429;outline-offset:2px}\
a{color:#1f3a5f}.error{background:#fde2e1;color:#7f1d1d;border-radius:6px;padding:.75rem 1rem;margin:0 0 1rem}\
.bank{white-space:pre-line}\
fieldset{border:0;margin:0 0 1rem;padding:0}legend{font-weight:600;margin-bottom:.4rem}\
.card-input{border:1px solid #8a919c;border-radius:6px;padding:.75rem;background:#fff}\
.card-input input{font:inherit;border:1px solid #8a919c;border-radius:4px;padding:.3rem;margin:.15rem;max-width:100%}\
.check{display:flex;gap:.5rem;align-items:center;margin:0 0 1rem}.or{margin:1.25rem 0 .75rem;color:#545b66}\
";

/// The CSP source of the style above, by its hash.
static STYLE_HASH: LazyLock<String> = LazyLock::new(|| format!("'sha256-{}'", STANDARD.encode(Sha256::digest(STYLE))));

/// A whole page: `title` (escaped here) and `body` (markup, escaped by its maker).
pub fn page(status: StatusCode, title: &str, body: &str) -> Response {
    render(status, title, body, None)
}

/// A page with the card form in its `body`: Stripe.js and the form's script load, and the CSP allows them.
pub fn page_with_card_form(status: StatusCode, title: &str, body: &str, stripe_js: &StripeJs) -> Response {
    render(status, title, body, Some(stripe_js))
}

fn render(status: StatusCode, title: &str, body: &str, stripe_js: Option<&StripeJs>) -> Response {
    let html = format!(
        "<!doctype html><html lang=\"en\"><head><meta charset=\"utf-8\">\
         <meta name=\"viewport\" content=\"width=device-width,initial-scale=1\">\
         <meta name=\"robots\" content=\"noindex\"><title>{}</title><style>{STYLE}</style></head>\
         <body><main>{body}</main>{}</body></html>",
        escape(title),
        stripe_js.map(StripeJs::scripts).unwrap_or_default()
    );
    let mut csp = format!(
        "default-src 'none'; style-src {}; img-src data:; form-action 'self'; base-uri 'none'; frame-ancestors 'none'",
        *STYLE_HASH
    );
    if let Some(js) = stripe_js {
        csp.push_str("; ");
        csp.push_str(&js.csp());
    }
    Response::builder()
        .status(status)
        .header(header::CONTENT_TYPE, "text/html; charset=utf-8")
        .header(header::CONTENT_SECURITY_POLICY, csp)
        .body(html)
}

/// The top of a page: the agency's logo and name.
pub fn letterhead(logo: Option<&Logo>, seller: &str) -> String {
    let mut html = String::new();
    if let Some(logo) = logo {
        let kind = match logo.format {
            LogoFormat::Png => "image/png",
            LogoFormat::Svg => "image/svg+xml",
        };
        let data = STANDARD.encode(&logo.bytes);
        html.push_str(&format!("<img class=\"logo\" src=\"data:{kind};base64,{data}\" alt=\"{}\">", escape(seller)));
    }
    if !seller.is_empty() {
        html.push_str(&format!("<p class=\"seller\">{}</p>", escape(seller)));
    }
    html
}

/// A page that says only what went wrong, in plain words.
pub fn error_page(status: StatusCode, title: &str, message: &str) -> Response {
    page(status, title, &format!("<div class=\"card\"><h1>{}</h1><p>{}</p></div>", escape(title), escape(message)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_style_is_allowed_by_its_hash() {
        assert!(STYLE_HASH.starts_with("'sha256-") && STYLE_HASH.ends_with("='"));
    }
}
