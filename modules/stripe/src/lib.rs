//! The Stripe client. async-stripe's `Client` supplies authentication, the pinned API version header
//! (2023-10-16), idempotency keys and error parsing; responses are read into our own lenient types (only the
//! fields we use), because Stripe renders objects in the account's API version and test servers speak
//! older ones. Calls time out instead of holding a request.
#![forbid(unsafe_code)]

mod config;
pub mod webhook;

use std::collections::BTreeMap;
use std::time::Duration;

pub use config::StripeConfig;
use portal_core::{Error, ErrorCode, Result};
use serde::{Deserialize, Serialize};
use stripe::{Client, RequestStrategy, StripeError};

/// The API version this build speaks (async-stripe 0.41's pinned version).
pub const API_VERSION: &str = "2023-10-16";
#[derive(Clone)]
pub struct Stripe {
    client: Client,
    /// A call slower than this fails with 503 rather than holding the request (`STRIPE_TIMEOUT_SECONDS`).
    timeout: Duration,
}

/// A card saved on a Stripe customer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Card {
    pub id: String,
    pub brand: String,
    pub last4: String,
    pub exp_month: u32,
    pub exp_year: u32,
}

/// A setup intent: a new one is confirmed with Stripe.js using the secret; once `succeeded` it names the
/// card it saved.
#[derive(Debug, Clone, Deserialize)]
pub struct SetupIntent {
    pub id: String,
    pub client_secret: Option<String>,
    #[serde(default)]
    pub status: String,
    #[serde(default)]
    pub customer: Option<String>,
    #[serde(default)]
    pub payment_method: Option<String>,
}

/// A payment intent as Stripe holds it (only the fields the portal reads).
#[derive(Debug, Clone, Deserialize)]
pub struct PaymentIntent {
    pub id: String,
    pub status: String,
    pub amount: Option<i64>,
    pub currency: Option<String>,
    /// The customer's id, or the customer object when expanded.
    customer: Option<serde_json::Value>,
    /// What the browser confirms the intent with (3-D Secure).
    #[serde(default)]
    pub client_secret: Option<String>,
    #[serde(default)]
    last_payment_error: Option<PaymentError>,
    #[serde(default)]
    pub metadata: BTreeMap<String, String>,
    /// Unix seconds.
    #[serde(default)]
    pub created: i64,
}

#[derive(Debug, Clone, Deserialize)]
struct PaymentError {
    code: Option<String>,
    decline_code: Option<String>,
    message: Option<String>,
}

/// An off-session charge to make.
#[derive(Debug, Clone)]
pub struct ChargeRequest<'a> {
    /// Minor units.
    pub amount: i64,
    /// ISO 4217, any case.
    pub currency: &'a str,
    pub customer: &'a str,
    pub payment_method: &'a str,
    pub invoice_id: String,
    /// Same key, same charge: Stripe answers a retry with the first result.
    pub idempotency_key: String,
    /// The customer is at the page and can authenticate (3-D Secure); otherwise the charge is off-session.
    pub customer_present: bool,
}

/// How a charge ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ChargeOutcome {
    /// What Stripe says it charged: the amount (smallest currency unit), currency and customer, so that the
    /// caller can check them against what it meant to charge.
    Succeeded { payment_intent_id: String, amount: i64, currency: String, customer: Option<String> },
    /// Stripe accepted the intent but it is not paid yet (`processing`, `requires_action`…).
    Pending { payment_intent_id: String, status: String },
    /// The card was declined (HTTP 402).
    Declined { code: Option<String>, decline_code: Option<String>, message: String },
}

#[derive(Deserialize)]
struct Created {
    id: String,
}

#[derive(Deserialize)]
struct List<T> {
    data: Vec<T>,
    #[serde(default)]
    has_more: bool,
}

#[derive(Serialize)]
struct ListEvents<'a> {
    #[serde(rename = "created[gte]")]
    created_gte: i64,
    limit: u32,
    #[serde(skip_serializing_if = "Option::is_none")]
    starting_after: Option<&'a str>,
}

#[derive(Serialize)]
struct ListPaymentIntents<'a> {
    limit: u32,
    #[serde(skip_serializing_if = "Option::is_none")]
    starting_after: Option<&'a str>,
}

#[derive(Deserialize)]
struct PaymentMethodObject {
    id: String,
    card: Option<CardObject>,
}

#[derive(Deserialize)]
struct CardObject {
    brand: String,
    last4: String,
    exp_month: u32,
    exp_year: u32,
}

/// A refund as Stripe answered it.
#[derive(Debug, Clone, Deserialize)]
pub struct Refund {
    pub id: String,
    /// `succeeded`, `pending` (on its way), `failed` or `canceled`.
    #[serde(default)]
    pub status: String,
}

/// A refund to make of a PaymentIntent's charge.
#[derive(Debug, Clone)]
pub struct RefundRequest<'a> {
    pub payment_intent: &'a str,
    /// Minor units.
    pub amount: i64,
    pub invoice_id: String,
    pub refund_id: String,
    /// Same key, same refund: Stripe answers a retry with the first result.
    pub idempotency_key: String,
}

#[derive(Serialize)]
struct NewRefund<'a> {
    payment_intent: &'a str,
    amount: i64,
    metadata: BTreeMap<&'static str, String>,
}

#[derive(Deserialize)]
struct PaymentMethodOwner {
    customer: Option<String>,
}

impl PaymentIntent {
    pub fn customer_id(&self) -> Option<String> {
        match &self.customer {
            Some(serde_json::Value::String(id)) => Some(id.clone()),
            Some(object) => object.get("id").and_then(|id| id.as_str()).map(str::to_string),
            None => None,
        }
    }

    /// What the intent's state means for the invoice: paid, still waiting, or failed (a card declined or
    /// 3-D Secure not passed leaves it needing another payment method).
    pub fn outcome(&self, asked_amount: i64, asked_currency: &str) -> ChargeOutcome {
        match self.status.as_str() {
            "succeeded" => ChargeOutcome::Succeeded {
                customer: self.customer_id(),
                // A PaymentIntent always states these; a lenient read falls back to what was asked for.
                amount: self.amount.unwrap_or(asked_amount),
                currency: self.currency.clone().unwrap_or_else(|| asked_currency.to_string()),
                payment_intent_id: self.id.clone(),
            },
            "requires_payment_method" | "canceled" => {
                let error = self.last_payment_error.as_ref();
                ChargeOutcome::Declined {
                    code: error.and_then(|e| e.code.clone()),
                    decline_code: error.and_then(|e| e.decline_code.clone()),
                    message: error
                        .and_then(|e| e.message.clone())
                        .unwrap_or_else(|| "the payment was not completed".into()),
                }
            }
            _ => ChargeOutcome::Pending { payment_intent_id: self.id.clone(), status: self.status.clone() },
        }
    }
}

#[derive(Serialize)]
struct NewCustomer<'a> {
    name: &'a str,
    email: &'a str,
    metadata: BTreeMap<&'static str, String>,
}

#[derive(Serialize)]
struct NewSetupIntent<'a> {
    customer: &'a str,
    usage: &'static str,
    payment_method_types: [&'static str; 1],
    metadata: BTreeMap<&'static str, &'static str>,
}

#[derive(Serialize)]
struct Attach<'a> {
    customer: &'a str,
}

#[derive(Serialize)]
struct ListCards<'a> {
    customer: &'a str,
    #[serde(rename = "type")]
    kind: &'static str,
    limit: u32,
}

#[derive(Serialize)]
struct NewPaymentIntent<'a> {
    amount: i64,
    currency: String,
    customer: &'a str,
    payment_method: &'a str,
    off_session: bool,
    confirm: bool,
    payment_method_types: [&'static str; 1],
    metadata: BTreeMap<&'static str, String>,
}

impl Stripe {
    /// `None` when no secret key is configured; a version this build cannot speak is a start-up error.
    pub fn from_config(config: &StripeConfig) -> Result<Option<Self>> {
        if config.stripe_api_version != API_VERSION {
            return Err(Error::internal(format!(
                "STRIPE_API_VERSION is {}, but this build speaks Stripe API {API_VERSION}",
                config.stripe_api_version
            )));
        }
        let Some(key) = &config.stripe_secret_key else { return Ok(None) };
        if !config.stripe_api_base.starts_with("http://") && !config.stripe_api_base.starts_with("https://") {
            return Err(Error::internal("STRIPE_API_BASE must be an http(s) URL"));
        }
        Ok(Some(Self {
            client: Client::from_url(config.stripe_api_base.as_str(), key.expose()),
            timeout: Duration::from_secs(config.stripe_timeout_seconds),
        }))
    }

    fn idempotent(&self, key: &str) -> Client {
        self.client.clone().with_strategy(RequestStrategy::Idempotent(key.to_string()))
    }

    /// Creates the Stripe customer of a portal customer (the key makes a retry return the same one).
    pub async fn create_customer(&self, portal_id: &str, name: &str, email: &str) -> Result<String> {
        let form =
            NewCustomer { name, email, metadata: BTreeMap::from([("portal_customer_id", portal_id.to_string())]) };
        let client = self.idempotent(&format!("portal-customer-{portal_id}"));
        let created: Created = call(self.timeout, client.post_form("/customers", form)).await?;
        Ok(created.id)
    }

    /// A setup intent for saving a card for off-session charges. `make_default: false` marks it (metadata
    /// `portal_make_default`) so that its `setup_intent.succeeded` event leaves the default card alone.
    pub async fn create_setup_intent(
        &self,
        customer: &str,
        idempotency_key: &str,
        make_default: bool,
    ) -> Result<SetupIntent> {
        let metadata = if make_default { BTreeMap::new() } else { BTreeMap::from([(KEEP_DEFAULT.0, KEEP_DEFAULT.1)]) };
        let form = NewSetupIntent { customer, usage: "off_session", payment_method_types: ["card"], metadata };
        call(self.timeout, self.idempotent(idempotency_key).post_form("/setup_intents", form)).await
    }

    /// A setup intent by id.
    pub async fn setup_intent(&self, id: &str) -> Result<SetupIntent> {
        let id = object_id(id, "seti_")?;
        call(self.timeout, self.client.get(&format!("/setup_intents/{id}"))).await
    }

    /// A payment intent by id.
    pub async fn payment_intent(&self, id: &str) -> Result<PaymentIntent> {
        let id = object_id(id, "pi_")?;
        call(self.timeout, self.client.get(&format!("/payment_intents/{id}"))).await
    }

    /// The Stripe customer a payment method is attached to.
    pub async fn payment_method_owner(&self, id: &str) -> Result<Option<String>> {
        let id = object_id(id, "pm_")?;
        let owner: PaymentMethodOwner = call(self.timeout, self.client.get(&format!("/payment_methods/{id}"))).await?;
        Ok(owner.customer)
    }

    /// Attaches a payment method to a customer (Stripe.js's setup confirmation normally has).
    pub async fn attach(&self, payment_method: &str, customer: &str) -> Result<()> {
        let id = object_id(payment_method, "pm_")?;
        let _: PaymentMethodOwner =
            call(self.timeout, self.client.post_form(&format!("/payment_methods/{id}/attach"), Attach { customer }))
                .await?;
        Ok(())
    }

    /// Detaches a payment method from its customer: it can no longer be charged.
    pub async fn detach(&self, payment_method: &str) -> Result<()> {
        let id = object_id(payment_method, "pm_")?;
        let _: PaymentMethodOwner =
            call(self.timeout, self.client.post(&format!("/payment_methods/{id}/detach"))).await?;
        Ok(())
    }

    /// The cards saved on a Stripe customer.
    pub async fn cards(&self, customer: &str) -> Result<Vec<Card>> {
        let query = ListCards { customer, kind: "card", limit: 100 };
        let list: List<PaymentMethodObject> =
            call(self.timeout, self.client.get_query("/payment_methods", query)).await?;
        Ok(list
            .data
            .into_iter()
            .filter_map(|pm| {
                pm.card.map(|c| Card {
                    id: pm.id,
                    brand: c.brand,
                    last4: c.last4,
                    exp_month: c.exp_month,
                    exp_year: c.exp_year,
                })
            })
            .collect())
    }

    /// The account's events created at or after `since` (Unix seconds), oldest first; at most `max` of them.
    pub async fn events_since(&self, since: i64, max: usize) -> Result<Vec<webhook::Event>> {
        let mut events: Vec<webhook::Event> = Vec::new();
        loop {
            let query =
                ListEvents { created_gte: since, limit: 100, starting_after: events.last().map(|e| e.id.as_str()) };
            let page: List<webhook::Event> = call(self.timeout, self.client.get_query("/events", query)).await?;
            let more = page.has_more && !page.data.is_empty();
            events.extend(page.data);
            if !more || events.len() >= max {
                break;
            }
        }
        events.truncate(max);
        events.sort_by_key(|e| e.created.unwrap_or_default());
        Ok(events)
    }

    /// The PaymentIntents of a Stripe customer (the newest 1,000).
    pub async fn payment_intents_of(&self, customer: &str) -> Result<Vec<PaymentIntent>> {
        let mut intents: Vec<PaymentIntent> = Vec::new();
        loop {
            let query = ListPaymentIntents { limit: 100, starting_after: intents.last().map(|i| i.id.as_str()) };
            let page: List<PaymentIntent> =
                call(self.timeout, self.client.get_query("/payment_intents", query)).await?;
            let more = page.has_more && !page.data.is_empty();
            intents.extend(page.data);
            if !more || intents.len() >= 1_000 {
                intents.retain(|i| i.customer_id().as_deref() == Some(customer));
                return Ok(intents);
            }
        }
    }

    /// Refunds (part of) the charge of a PaymentIntent.
    pub async fn refund(&self, request: RefundRequest<'_>) -> Result<Refund> {
        let form = NewRefund {
            payment_intent: request.payment_intent,
            amount: request.amount,
            metadata: BTreeMap::from([("invoice_id", request.invoice_id), ("portal_refund_id", request.refund_id)]),
        };
        call(self.timeout, self.idempotent(&request.idempotency_key).post_form("/refunds", form)).await
    }

    /// Charges a saved card off-session (PaymentIntent with `confirm` and `off_session`).
    pub async fn charge(&self, request: ChargeRequest<'_>) -> Result<ChargeOutcome> {
        let form = NewPaymentIntent {
            amount: request.amount,
            currency: request.currency.to_ascii_lowercase(),
            customer: request.customer,
            payment_method: request.payment_method,
            off_session: !request.customer_present,
            confirm: true,
            payment_method_types: ["card"],
            metadata: BTreeMap::from([("invoice_id", request.invoice_id.clone())]),
        };
        let client = self.idempotent(&request.idempotency_key);
        match tokio::time::timeout(self.timeout, client.post_form::<PaymentIntent, _>("/payment_intents", form)).await {
            Err(_) => Err(Error::upstream("Stripe did not answer in time", "timeout")),
            Ok(Ok(intent)) => Ok(intent.outcome(request.amount, request.currency)),
            Ok(Err(StripeError::Stripe(e))) if e.http_status == 402 => Ok(ChargeOutcome::Declined {
                code: e.code.map(|c| c.to_string()),
                decline_code: e.decline_code,
                message: e.message.unwrap_or_else(|| "the card was declined".into()),
            }),
            Ok(Err(e)) => Err(upstream(e)),
        }
    }
}

/// The metadata entry of a setup intent whose card does not become the customer's default.
pub const KEEP_DEFAULT: (&str, &str) = ("portal_make_default", "false");

/// A Stripe object id from a browser, checked before it goes into a URL path.
fn object_id<'a>(id: &'a str, prefix: &str) -> Result<&'a str> {
    let well_formed =
        id.starts_with(prefix) && id.len() <= 255 && id.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_');
    if well_formed {
        Ok(id)
    } else {
        Err(Error::invalid("id", format!("not a Stripe id of the form {prefix}…")))
    }
}

/// Runs a Stripe call with the timeout, mapping its failures to the envelope.
async fn call<T>(
    timeout: Duration,
    response: impl std::future::Future<Output = std::result::Result<T, StripeError>>,
) -> Result<T> {
    match tokio::time::timeout(timeout, response).await {
        Err(_) => Err(Error::upstream("Stripe did not answer in time", "timeout")),
        Ok(result) => result.map_err(upstream),
    }
}

/// Stripe refusing a request we built from the caller's input (an unknown payment method, say) is the
/// caller's problem (422); anything else — Stripe down, slow or unhappy with us — is a 503.
fn upstream(e: StripeError) -> Error {
    match e {
        StripeError::Stripe(req) if matches!(req.http_status, 400 | 404) => Error::new(
            ErrorCode::ValidationFailed,
            format!("Stripe refused the request: {}", req.message.clone().unwrap_or_default()),
        )
        .with_detail("stripe", req.message.unwrap_or_default()),
        other => Error::upstream("Stripe is unavailable", other),
    }
}

/// The error of a payment endpoint when no Stripe key is configured.
pub fn not_configured() -> Error {
    Error::upstream("payments are not configured on this portal (set STRIPE_SECRET_KEY)", "no STRIPE_SECRET_KEY")
}

#[cfg(test)]
mod tests {
    use std::time::{Duration, Instant};

    use portal_core::config::Secret;
    use portal_core::ErrorCode;

    use super::{Stripe, StripeConfig};

    fn client(base: String, timeout_secs: u64) -> Stripe {
        let config = StripeConfig {
            stripe_secret_key: Some(Secret::new("sk_test_unreachable")),
            stripe_api_base: base,
            stripe_timeout_seconds: timeout_secs,
            ..StripeConfig::default()
        };
        Stripe::from_config(&config).unwrap().unwrap()
    }

    #[tokio::test]
    async fn a_closed_port_is_a_fast_503() {
        let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
        let stripe = client(format!("http://127.0.0.1:{port}/"), 20);
        let started = Instant::now();
        let err = stripe.create_customer("c1", "Acme", "ap@acme.test").await.unwrap_err();
        assert_eq!(err.code(), ErrorCode::UpstreamUnavailable, "{err}");
        assert!(started.elapsed() < Duration::from_secs(5), "took {:?}", started.elapsed());
    }

    #[tokio::test]
    async fn a_server_that_never_answers_times_out_after_the_configured_seconds() {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let silent = tokio::spawn(async move {
            let mut held = Vec::new();
            while let Ok((socket, _)) = listener.accept().await {
                held.push(socket);
            }
        });
        let stripe = client(format!("http://{addr}/"), 1);
        let started = Instant::now();
        let err = stripe.cards("cus_1").await.unwrap_err();
        let took = started.elapsed();
        assert_eq!(err.code(), ErrorCode::UpstreamUnavailable, "{err}");
        assert_eq!(err.message(), "Stripe did not answer in time");
        assert!(took >= Duration::from_secs(1) && took < Duration::from_secs(4), "took {took:?}");
        silent.abort();
    }
}
