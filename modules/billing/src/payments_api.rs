//! `/billing` payment endpoints: saving cards through Stripe SetupIntents, listing them, and paying
//! invoices. Without `STRIPE_SECRET_KEY` they answer 503 and everything else works.

use poem_openapi::param::Path;
use poem_openapi::payload::Json;
use poem_openapi::{ApiResponse, Object, OpenApi};
use portal_core::error::ErrorEnvelope;
use portal_core::idempotency::{self, Claim};
use portal_core::ids::CustomerId;
use portal_core::{Auth, Context, Error, ErrorCode, JsonBody, Principal, Result, Store, Timestamp};
use portal_stripe::{Stripe, StripeConfig};
use serde::Serialize;

use portal_customers::CustomerScope;

use crate::api::BillingTag;
use crate::cards;
use crate::collect::{self, Trigger};
use crate::invoices;
use crate::links::{self, LinkKind};
use crate::model::InvoiceId;
use crate::views::{CardLinkView, PaymentMethodView, PaymentView, SetupIntentView};

#[derive(Debug, Clone, Object)]
#[oai(deny_unknown_fields)]
struct SetupRequest {
    /// The customer the card is for: customer users may leave it out (their own customer); admins name it.
    customer_id: Option<CustomerId>,
}

#[derive(Debug, Clone, Object, Serialize)]
#[oai(deny_unknown_fields)]
struct PayInvoiceRequest {
    invoice_id: InvoiceId,
    /// A card saved on the customer (`pm_…`); default the customer's default card.
    #[oai(validator(min_length = 1, max_length = 255))]
    payment_method_id: Option<String>,
}

#[derive(ApiResponse)]
#[allow(clippy::large_enum_variant)] // built once per request
enum PayInvoiceResponse {
    /// Paid (`status` `succeeded`), or accepted by Stripe and settling later (`processing`); a repeated
    /// `Idempotency-Key` answers the first success again.
    #[oai(status = 200)]
    Paid(Json<PaymentView>),
    /// The card was declined: `payment_failed`, with Stripe's `code` and `decline_code` in `details`; the
    /// invoice is unchanged.
    #[oai(status = 402)]
    Declined(Json<ErrorEnvelope>),
}

#[derive(ApiResponse)]
enum CardLinkResponse {
    /// A new link; every earlier card link of the customer stops working.
    #[oai(status = 201)]
    Created(Json<CardLinkView>),
}

pub struct PaymentsApi {
    store: Store,
    stripe: Option<Stripe>,
    /// Where the portal is reached from outside (`PORTAL_PUBLIC_URL`), for links.
    public_url: Option<String>,
    /// The card page can take cards (`STRIPE_PUBLISHABLE_KEY` is set).
    card_page: bool,
}

impl PaymentsApi {
    pub fn new(ctx: &Context, stripe: Option<Stripe>) -> Result<Self> {
        Ok(Self {
            store: ctx.store.clone(),
            stripe,
            public_url: ctx.config.public_url.clone(),
            card_page: ctx.settings::<StripeConfig>()?.stripe_publishable_key.is_some(),
        })
    }

    fn stripe(&self) -> Result<&Stripe> {
        self.stripe.as_ref().ok_or_else(portal_stripe::not_configured)
    }

    /// The caller's scope on `customer` (admin, or one of its users, and the customer listed).
    fn scope(&self, caller: &Principal, customer: CustomerId) -> Result<CustomerScope> {
        self.store.read_blocking(|tx| portal_customers::scope(tx, caller, customer))
    }
}

#[OpenApi(prefix_path = "/billing", tag = "BillingTag::Billing")]
impl PaymentsApi {
    /// Start saving a card (customer users; admins name the customer)
    ///
    /// Creates a Stripe SetupIntent for off-session use (and the customer's Stripe customer on first use).
    /// Confirm it in the browser with Stripe.js and the `client_secret`; when Stripe reports success the
    /// card becomes the customer's default. 503 when payments are not configured.
    #[oai(path = "/payment-methods/setup", method = "post")]
    async fn setup(&self, auth: Auth, body: JsonBody<SetupRequest>) -> Result<Json<SetupIntentView>> {
        let stripe = self.stripe()?;
        let caller = auth.0;
        let customer = match (caller.is_admin(), body.into_inner()?.customer_id) {
            (true, Some(id)) => id,
            (true, None) => return Err(Error::invalid("customer_id", "admins name the customer")),
            (false, named) => {
                let own = caller.own_customer()?;
                if named.is_some_and(|id| id != own) {
                    return Err(Error::not_found("customer"));
                }
                own
            }
        };
        let scope = self.scope(&caller, customer)?;
        let intent = cards::start(&self.store, stripe, &scope, true).await?;
        let client_secret = intent
            .client_secret
            .ok_or_else(|| Error::upstream("Stripe is unavailable", "setup intent without secret"))?;
        Ok(Json(SetupIntentView { client_secret, setup_intent_id: intent.id, customer_id: customer }))
    }

    /// Make a link to the card page (admin or the customer's users)
    ///
    /// The link opens a page where the customer saves a card with Stripe.js, without signing in; the card
    /// becomes the customer's default. It works for 7 days, until a newer link is made. 503 when payments or
    /// the card page (`STRIPE_PUBLISHABLE_KEY`) are not configured; 409 without `PORTAL_PUBLIC_URL`.
    #[oai(path = "/payment-methods/customer/:customer_id/link", method = "post")]
    async fn card_link(&self, auth: Auth, customer_id: Path<CustomerId>) -> Result<CardLinkResponse> {
        let scope = self.scope(&auth.0, customer_id.0)?;
        self.stripe()?;
        if !self.card_page {
            return Err(Error::upstream(
                "the card page is not configured on this portal (set STRIPE_PUBLISHABLE_KEY)",
                "no STRIPE_PUBLISHABLE_KEY",
            ));
        }
        let public_url = self
            .public_url
            .clone()
            .ok_or_else(|| Error::conflict("links need the portal's public address: set PORTAL_PUBLIC_URL"))?;
        let id = scope.id();
        let expires_at = Timestamp::from_micros(Timestamp::now().micros() + links::CARD_LINK_DAYS * 86_400 * 1_000_000);
        let token = self
            .store
            .write(move |tx| {
                let link = links::issue(tx, LinkKind::Card, &id.to_key(), expires_at)?;
                links::token(tx, LinkKind::Card, &id.to_key(), &link)
            })
            .await?;
        let url = links::url(&public_url, LinkKind::Card, &token);
        Ok(CardLinkResponse::Created(Json(CardLinkView { url, expires_at, customer_id: id })))
    }

    /// A customer's saved cards (admin or its users)
    ///
    /// The cards Stripe holds for the customer; `is_default` marks the one used for automatic charges and
    /// for payments that name no card. Empty before the first card is saved.
    #[oai(path = "/payment-methods/customer/:customer_id", method = "get")]
    async fn payment_methods(&self, auth: Auth, customer_id: Path<CustomerId>) -> Result<Json<Vec<PaymentMethodView>>> {
        let stripe = self.stripe()?;
        let id = customer_id.0;
        let (stripe_customer, default) = self.store.read_blocking(|tx| {
            let record = portal_customers::service::record(tx, &portal_customers::scope(tx, &auth.0, id)?)?;
            Ok((record.customer.stripe_customer_id, record.billing.stripe_payment_method_id))
        })?;
        let Some(stripe_customer) = stripe_customer else { return Ok(Json(Vec::new())) };
        let cards = stripe.cards(&stripe_customer).await?;
        Ok(Json(
            cards
                .into_iter()
                .map(|c| PaymentMethodView {
                    is_default: default.as_deref() == Some(c.id.as_str()),
                    id: c.id,
                    brand: c.brand,
                    last4: c.last4,
                    exp_month: c.exp_month,
                    exp_year: c.exp_year,
                })
                .collect(),
        ))
    }

    /// Pay an invoice through Stripe (admin or its customer's users)
    ///
    /// Charges the invoice's total off-session with the named card or the customer's default card. The
    /// invoice becomes paid with its payment record in one step; a declined card → 402 `payment_failed`
    /// with Stripe's `decline_code` in `details`, the invoice unchanged. An invoice is charged once: while
    /// one payment runs, others → 409; a paid invoice → 409. Honours `Idempotency-Key` (a declined
    /// attempt does not use up the key).
    #[oai(path = "/pay-invoice", method = "post")]
    async fn pay_invoice(
        &self,
        auth: Auth,
        body: JsonBody<PayInvoiceRequest>,
        #[oai(name = "Idempotency-Key")] idempotency_key: idempotency::IdempotencyKey,
    ) -> Result<PayInvoiceResponse> {
        let body = body.into_inner()?;
        let caller = auth.0;
        let invoice_id = body.invoice_id;
        let (_, scope) = self.store.read_blocking(|tx| invoices::visible(tx, &caller, invoice_id))?;
        let stripe = self.stripe()?;
        let claim =
            idempotency::begin(&self.store, caller.user_id, "POST /billing/pay-invoice", &idempotency_key, &body)
                .await?;
        if let Some((_, view)) = claim.replayed::<PaymentView>()? {
            return Ok(PayInvoiceResponse::Paid(Json(view)));
        }
        if let Some(method) = &body.payment_method_id {
            self.check_saved_card(stripe, &scope, method).await?;
        }
        let method = body.payment_method_id;
        let view =
            collect::pay(&self.store, stripe, invoice_id, method, Trigger::Payer, &claim, Timestamp::now()).await;
        drop::<Claim>(claim);
        match view {
            Ok(view) => Ok(PayInvoiceResponse::Paid(Json(view))),
            Err(e) if e.code() == ErrorCode::PaymentFailed => Ok(PayInvoiceResponse::Declined(Json(e.envelope()))),
            Err(e) => Err(e),
        }
    }
}

impl PaymentsApi {
    /// A named card must be saved on the invoice's customer: no paying with another customer's card.
    async fn check_saved_card(&self, stripe: &Stripe, scope: &CustomerScope, method: &str) -> Result<()> {
        let stripe_customer = collect::stripe_customer(&self.store, stripe, scope).await?;
        if stripe.cards(&stripe_customer).await?.iter().any(|c| c.id == method) {
            Ok(())
        } else {
            Err(Error::invalid("payment_method_id", "no such card is saved for the invoice's customer"))
        }
    }
}
