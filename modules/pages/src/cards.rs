//! `/cards/{token}`: a customer saves a card without signing in. The link names one customer and stops
//! working when a newer one is made or it expires; the saved card becomes the customer's default (what
//! automatic charges and the pay page's saved-card button use).

use std::sync::Arc;

use poem::http::StatusCode;
use poem::Response;
use portal_billing::cards;
use portal_billing::links::{self, LinkKind, LinkRefusal};
use portal_core::ids::CustomerId;
use portal_core::{Error, Store, Timestamp};
use portal_customers::CustomerScope;
use portal_organization::model::Logo;
use portal_stripe::Stripe;
use serde::Deserialize;
use serde_json::json;

use crate::card_form::{self, Endpoints, StripeJs};
use crate::html::{error_page, escape, letterhead, page, page_with_card_form};

/// What the card pages need.
pub(crate) struct CardPages {
    pub store: Store,
    pub stripe: Arc<Option<Stripe>>,
    pub stripe_js: Option<StripeJs>,
}

/// A customer opened by its card link.
struct Opened {
    scope: CustomerScope,
    customer: String,
    seller: String,
    logo: Option<Logo>,
    stripe_customer: Option<String>,
    default_card: Option<String>,
}

/// The body of the form's last call.
#[derive(Debug, Deserialize)]
pub(crate) struct CardSaved {
    setup_intent_id: String,
}

impl CardPages {
    fn open(&self, token: &str) -> std::result::Result<Opened, Box<Response>> {
        let opened = self.store.read_blocking(|tx| {
            let id = match links::open(tx, LinkKind::Card, token, Timestamp::now())? {
                Ok(id) => CustomerId::from_key(&id).ok_or_else(|| Error::internal("a link names no customer"))?,
                Err(refusal) => return Ok(Err(refusal)),
            };
            let Ok(scope) = portal_customers::system_scope(tx, id) else { return Ok(Err(LinkRefusal::Unknown)) };
            let record = portal_customers::service::record(tx, &scope)?;
            let (letterhead, logo) = portal_organization::letterhead::read(tx)?;
            Ok::<_, Error>(Ok(Opened {
                scope,
                customer: if record.customer.company_name.is_empty() {
                    record.customer.name
                } else {
                    record.customer.company_name
                },
                seller: letterhead.seller.name,
                logo,
                stripe_customer: record.customer.stripe_customer_id,
                default_card: record.billing.stripe_payment_method_id,
            }))
        });
        match opened {
            Ok(Ok(opened)) => Ok(opened),
            Ok(Err(LinkRefusal::Expired)) => Err(Box::new(error_page(
                StatusCode::GONE,
                "This card link has expired",
                "Ask for a new link to save your card.",
            ))),
            Ok(Err(LinkRefusal::Unknown | LinkRefusal::Replaced)) => Err(Box::new(error_page(
                StatusCode::NOT_FOUND,
                "This card link is not valid",
                "It may have been replaced by a newer one. Use the latest link you were sent.",
            ))),
            Err(e) => {
                tracing::error!(error = %e, "card page failed");
                Err(Box::new(error_page(
                    e.code().status(),
                    "Something went wrong",
                    "The page cannot be shown right now. Please try again later.",
                )))
            }
        }
    }

    pub async fn show(&self, token: &str) -> Response {
        let opened = match self.open(token) {
            Ok(opened) => opened,
            Err(page) => return *page,
        };
        let mut body = format!(
            "<div class=\"card\">{}<h1>Save a card for {}</h1>",
            letterhead(opened.logo.as_ref(), &opened.seller),
            escape(&opened.customer)
        );
        body.push_str(&format!("<p>{}</p>", self.current_card(&opened).await));
        let form = self.stripe_js.as_ref().filter(|_| self.stripe.is_some());
        let Some(js) = form else {
            body.push_str("<p class=\"error\" role=\"alert\">Cards cannot be saved here at the moment.</p></div>");
            return page(StatusCode::OK, "Save a card", &body);
        };
        body.push_str(
            "<p class=\"muted\">The card becomes the one your invoices are charged to. Your card details go to our \
             payment processor, Stripe, and never to us.</p>",
        );
        let endpoints = Endpoints {
            start: format!("/cards/{token}/setup"),
            finish: format!("/cards/{token}/saved"),
            confirm: format!("/cards/{token}/saved"),
        };
        body.push_str(&js.form(&endpoints, None, "Save card"));
        body.push_str("<noscript><p class=\"error\">Saving a card needs JavaScript.</p></noscript></div>");
        page_with_card_form(StatusCode::OK, "Save a card", &body, js)
    }

    /// The default card in words ("Visa ending in 4242, expires 12/2031"), read from Stripe.
    async fn current_card(&self, opened: &Opened) -> String {
        let (Some(stripe), Some(customer), Some(default)) =
            (self.stripe.as_ref().as_ref(), &opened.stripe_customer, &opened.default_card)
        else {
            return "No card is saved yet.".into();
        };
        match stripe.cards(customer).await {
            Ok(cards) => match cards.iter().find(|c| &c.id == default) {
                Some(card) => format!(
                    "Your invoices are charged to the {} card ending in {}, expiring {:02}/{}.",
                    escape(&brand(&card.brand)),
                    escape(&card.last4),
                    card.exp_month,
                    card.exp_year
                ),
                None => "No card is saved yet.".into(),
            },
            Err(e) => {
                tracing::warn!(error = %e, "the saved card could not be read from Stripe");
                "The saved card cannot be shown right now.".into()
            }
        }
    }

    /// The form's first call: a SetupIntent whose card becomes the default once confirmed.
    pub async fn start(&self, token: &str) -> Response {
        let (opened, stripe) = match self.open_for_form(token) {
            Ok(both) => both,
            Err(answer) => return *answer,
        };
        match cards::start(&self.store, stripe, &opened.scope, true).await {
            Ok(intent) => card_form::json(StatusCode::OK, &json!({ "client_secret": intent.client_secret })),
            Err(e) => card_form::error(&e),
        }
    }

    /// The form's last call: the confirmed card, checked to be this customer's, becomes the default.
    pub async fn saved(&self, token: &str, request: CardSaved) -> Response {
        let (opened, stripe) = match self.open_for_form(token) {
            Ok(both) => both,
            Err(answer) => return *answer,
        };
        let saved = match cards::confirmed(&self.store, stripe, &opened.scope, &request.setup_intent_id).await {
            Ok(card) => cards::make_default(&self.store, &opened.scope, card).await,
            Err(e) => Err(e),
        };
        match saved {
            Ok(()) => card_form::json(StatusCode::OK, &json!({ "status": "saved" })),
            Err(e) => card_form::error(&e),
        }
    }

    fn open_for_form(&self, token: &str) -> std::result::Result<(Opened, &Stripe), Box<Response>> {
        let (Some(stripe), Some(_)) = (self.stripe.as_ref().as_ref(), &self.stripe_js) else {
            return Err(Box::new(card_form::error(&portal_stripe::not_configured())));
        };
        let opened = self.open(token).map_err(|_| Box::new(card_form::error(&Error::not_found("card link"))))?;
        Ok((opened, stripe))
    }
}

/// `visa` → `Visa`, `american_express` → `American express`.
fn brand(brand: &str) -> String {
    let words = brand.replace('_', " ");
    let mut chars = words.chars();
    chars.next().map(|first| first.to_uppercase().chain(chars).collect()).unwrap_or_default()
}
