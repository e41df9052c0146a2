//! The card form of the pay and card pages: Stripe.js's card Element, so card details go from the browser
//! to Stripe and never reach the portal. The form confirms a SetupIntent (`confirmCardSetup`); the page's
//! endpoint then checks the card is the customer's and, on the pay page, charges it under the invoice's
//! exactly-once reservation, with `confirmCardPayment` when the bank asks for 3-D Secure. Shown only when
//! Stripe.js has loaded: without JavaScript the pages offer the saved card and bank transfer.

use std::sync::LazyLock;

use base64::engine::general_purpose::STANDARD;
use base64::Engine;
use poem::http::{header, StatusCode};
use poem::{Request, Response};
use poem_openapi::types::ToJSON;
use portal_core::{Error, Result};
use portal_stripe::StripeConfig;
use serde::de::DeserializeOwned;
use sha2::{Digest, Sha256};

use crate::html::escape;

/// Where Stripe.js comes from and the key it runs with.
#[derive(Debug, Clone)]
pub struct StripeJs {
    url: String,
    publishable_key: String,
    /// The origins the page's CSP allows for scripts and frames (Stripe.js) and for its calls (Stripe's API).
    js_origin: String,
    api_origin: String,
}

impl StripeJs {
    /// `None` without a publishable key: the pages then take no new cards.
    pub fn from_config(config: &StripeConfig) -> Result<Option<Self>> {
        let Some(key) = &config.stripe_publishable_key else { return Ok(None) };
        let js_origin =
            origin(&config.stripe_js_url).ok_or_else(|| Error::internal("STRIPE_JS_URL must be an http(s) URL"))?;
        let api_origin =
            origin(&config.stripe_api_base).ok_or_else(|| Error::internal("STRIPE_API_BASE must be an http(s) URL"))?;
        Ok(Some(Self { url: config.stripe_js_url.clone(), publishable_key: key.clone(), js_origin, api_origin }))
    }

    /// The CSP directives the form adds to a page's: Stripe.js's origin for scripts and frames (and, with
    /// Stripe's own Stripe.js, its 3-D Secure frames), the form's script by its hash, and the calls it makes.
    pub fn csp(&self) -> String {
        let frames = if self.js_origin == "https://js.stripe.com" {
            format!("{} https://hooks.stripe.com", self.js_origin)
        } else {
            self.js_origin.clone()
        };
        format!(
            "script-src {} {}; connect-src 'self' {} {}; frame-src {frames}",
            self.js_origin, *SCRIPT_HASH, self.js_origin, self.api_origin
        )
    }

    /// The scripts at the end of the page's body.
    pub fn scripts(&self) -> String {
        format!("<script src=\"{}\"></script><script>{SCRIPT}</script>", escape(&self.url))
    }

    /// The form. `start`, `finish` and `confirm` are the page's endpoints (see the script); `save_choice`
    /// offers keeping the card; `submit` is the button's text.
    pub fn form(&self, endpoints: &Endpoints, save_choice: Option<&str>, submit: &str) -> String {
        let save = save_choice.map_or(String::new(), |label| {
            format!("<label class=\"check\"><input type=\"checkbox\" id=\"save-card\"> {}</label>", escape(label))
        });
        format!(
            "<form id=\"card-form\" hidden data-key=\"{}\" data-start=\"{}\" data-finish=\"{}\" data-confirm=\"{}\">\
             <fieldset><legend>Card details</legend><div id=\"card-element\" class=\"card-input\"></div></fieldset>\
             {save}<p id=\"card-error\" class=\"error\" role=\"alert\" hidden></p>\
             <button type=\"submit\">{}</button></form>",
            escape(&self.publishable_key),
            escape(&endpoints.start),
            escape(&endpoints.finish),
            escape(&endpoints.confirm),
            escape(submit)
        )
    }
}

/// The paths the card form posts to.
pub struct Endpoints {
    /// → `{client_secret}` of a new SetupIntent (body `{save}`).
    pub start: String,
    /// → `{status, client_secret?}` once the SetupIntent succeeded (body `{setup_intent_id, save}`).
    pub finish: String,
    /// → `{status}` after 3-D Secure (body as `finish`'s).
    pub confirm: String,
}

/// The form's behaviour. Errors come back in the API's envelope and are shown in the form's alert.
const SCRIPT: &str = r#"(function () {
  var form = document.getElementById('card-form');
  if (!form || typeof Stripe !== 'function') return;
  var stripe = Stripe(form.dataset.key);
  var card = stripe.elements().create('card');
  card.mount('#card-element');
  form.hidden = false;
  var error = document.getElementById('card-error');
  var button = form.querySelector('button');
  var save = document.getElementById('save-card');
  function post(url, body) {
    return fetch(url, {method: 'POST', headers: {'content-type': 'application/json'}, body: JSON.stringify(body)})
      .then(function (r) {
        return r.json().catch(function () { return {}; }).then(function (json) {
          if (!r.ok) throw new Error((json.error && json.error.message) || 'Something went wrong. Please try again.');
          return json;
        });
      });
  }
  function fail(message) {
    error.textContent = message;
    error.hidden = false;
    button.disabled = false;
  }
  form.addEventListener('submit', function (event) {
    event.preventDefault();
    button.disabled = true;
    error.hidden = true;
    var used = {save: save ? save.checked : true};
    post(form.dataset.start, used)
      .then(function (started) {
        return stripe.confirmCardSetup(started.client_secret, {payment_method: {card: card}});
      })
      .then(function (setup) {
        if (setup.error) throw new Error(setup.error.message || 'Your card could not be used.');
        used.setup_intent_id = setup.setupIntent.id;
        return post(form.dataset.finish, used);
      })
      .then(function (done) {
        if (done.status !== 'requires_action') return done;
        return stripe.confirmCardPayment(done.client_secret).then(function () {
          return post(form.dataset.confirm, used);
        });
      })
      .then(function () { window.location.reload(); })
      .catch(function (e) { fail(e.message); });
  });
})();"#;

static SCRIPT_HASH: LazyLock<String> =
    LazyLock::new(|| format!("'sha256-{}'", STANDARD.encode(Sha256::digest(SCRIPT))));

/// `scheme://host[:port]` of an http(s) URL.
fn origin(url: &str) -> Option<String> {
    let (scheme, rest) = url.split_once("://")?;
    if scheme != "http" && scheme != "https" {
        return None;
    }
    let host = rest.split(['/', '?', '#']).next().filter(|h| !h.is_empty())?;
    Some(format!("{scheme}://{host}"))
}

/// The JSON body of a form call (at most 4 KB).
pub async fn body<T: DeserializeOwned>(req: &mut Request) -> std::result::Result<T, Error> {
    let bytes = req
        .take_body()
        .into_bytes_limit(4096)
        .await
        .map_err(|_| Error::bad_request("the body is missing or larger than 4 KB"))?;
    serde_json::from_slice(&bytes).map_err(|e| Error::bad_request(format!("the body is not the expected JSON: {e}")))
}

/// A JSON answer to a form call.
pub fn json(status: StatusCode, value: &serde_json::Value) -> Response {
    Response::builder().status(status).header(header::CONTENT_TYPE, "application/json").body(value.to_string())
}

/// An error in the API's envelope (the form shows its message).
pub fn error(e: &Error) -> Response {
    if e.code().status().is_server_error() {
        tracing::error!(error = %e, "card form call failed");
    }
    json(e.code().status(), &e.envelope().to_json().unwrap_or_default())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn origins_of_urls() {
        assert_eq!(origin("https://js.stripe.com/v3/").as_deref(), Some("https://js.stripe.com"));
        assert_eq!(origin("http://127.0.0.1:8420/js.stripe.com/v3/").as_deref(), Some("http://127.0.0.1:8420"));
        assert_eq!(origin("ftp://x/"), None);
        assert_eq!(origin("https:///v3"), None);
    }

    #[test]
    fn the_csp_allows_stripe_js_and_the_form_script_only() {
        let config = StripeConfig {
            stripe_publishable_key: Some("pk_test_1".into()),
            stripe_api_base: "https://api.stripe.com/".into(),
            ..StripeConfig::default()
        };
        let js = StripeJs::from_config(&config).unwrap().unwrap();
        assert_eq!(
            js.csp(),
            format!(
                "script-src https://js.stripe.com {}; connect-src 'self' https://js.stripe.com https://api.stripe.com; \
                 frame-src https://js.stripe.com https://hooks.stripe.com",
                *SCRIPT_HASH
            )
        );
        assert!(StripeJs::from_config(&StripeConfig::default()).unwrap().is_none());
    }
}
