//! Hosted pages: what a customer opens from a mail or a link, without signing in. `/pay/{token}` shows an
//! invoice, its PDF and pays it; `/cards/{token}` saves a card. Server-rendered HTML from the binary, no
//! build chain; errors are plain pages, not the API's JSON envelope (the card form's calls answer JSON).
#![forbid(unsafe_code)]

mod card_form;
mod cards;
mod html;
mod pay;

use poem::http::{Method, StatusCode};
use poem::{Endpoint, Request, Response};
use portal_core::{Context, Result};
use portal_stripe::StripeConfig;

use crate::card_form::StripeJs;
use crate::cards::CardPages;
use crate::html::error_page;
use crate::pay::PayPages;

/// Whether `path` is one of the pages (the app sends those requests here instead of to the API).
pub fn serves(path: &str) -> bool {
    path.starts_with("/pay/") || path.starts_with("/cards/")
}

/// The pages' endpoint.
pub struct Pages {
    pay: PayPages,
    cards: CardPages,
}

/// Builds the pages for `ctx`.
pub fn pages(ctx: &Context) -> Result<Pages> {
    let stripe = portal_billing::collect::client(ctx)?;
    let stripe_js = StripeJs::from_config(&*ctx.settings::<StripeConfig>()?)?;
    Ok(Pages {
        pay: PayPages {
            store: ctx.store.clone(),
            renderer: portal_documents::renderer(ctx)?,
            stripe: stripe.clone(),
            stripe_js: stripe_js.clone(),
            public_url: ctx.config.public_url.clone(),
        },
        cards: CardPages { store: ctx.store.clone(), stripe, stripe_js },
    })
}

impl Endpoint for Pages {
    type Output = Response;

    async fn call(&self, mut req: Request) -> poem::Result<Response> {
        let path = req.uri().path().to_owned();
        let parts: Vec<&str> = path.trim_start_matches('/').split('/').collect();
        let method = req.method().clone();
        let (get, post) = (method == Method::GET || method == Method::HEAD, method == Method::POST);
        Ok(match (parts.as_slice(), get, post) {
            (["pay", token], true, _) => self.pay.show(token).await,
            (["pay", token], _, true) => self.pay.pay_with_saved_card(token).await,
            (["pay", token, "invoice.pdf"], true, _) => self.pay.pdf(token).await,
            (["pay", token, "card"], _, true) => self.pay.start_card(token).await,
            (["pay", token, "card", "pay"], _, true) => match card_form::body(&mut req).await {
                Ok(request) => self.pay.pay_with_new_card(token, request).await,
                Err(e) => card_form::error(&e),
            },
            (["pay", token, "card", "confirm"], _, true) => match card_form::body(&mut req).await {
                Ok(request) => self.pay.confirm_new_card(token, request).await,
                Err(e) => card_form::error(&e),
            },
            (["cards", token], true, _) => self.cards.show(token).await,
            (["cards", token, "setup"], _, true) => self.cards.start(token).await,
            (["cards", token, "saved"], _, true) => match card_form::body(&mut req).await {
                Ok(request) => self.cards.saved(token, request).await,
                Err(e) => card_form::error(&e),
            },
            (["pay", _] | ["pay", _, "invoice.pdf" | "card"] | ["pay", _, "card", "pay" | "confirm"], _, _)
            | (["cards", _] | ["cards", _, "setup" | "saved"], _, _) => {
                error_page(StatusCode::METHOD_NOT_ALLOWED, "Not allowed", "This page cannot be used that way.")
            }
            _ => error_page(StatusCode::NOT_FOUND, "Page not found", "There is no page at this address."),
        })
    }
}
