//! Hosted pages: what a customer opens from a mail, without signing in. `/pay/{token}` shows an invoice,
//! its PDF and pays it. Server-rendered HTML from the binary, no build chain; errors are plain pages, not
//! the API's JSON envelope.
#![forbid(unsafe_code)]

mod html;
mod pay;

use poem::http::{Method, StatusCode};
use poem::{Endpoint, Request, Response};
use portal_core::{Context, Result};

use crate::html::error_page;
use crate::pay::PayPages;

/// Whether `path` is one of the pages (the app sends those requests here instead of to the API).
pub fn serves(path: &str) -> bool {
    path.starts_with("/pay/")
}

/// The pages' endpoint.
pub struct Pages {
    pay: PayPages,
}

/// Builds the pages for `ctx`.
pub fn pages(ctx: &Context) -> Result<Pages> {
    Ok(Pages {
        pay: PayPages {
            store: ctx.store.clone(),
            renderer: portal_documents::renderer(ctx)?,
            stripe: portal_billing::collect::client(ctx)?,
            public_url: ctx.config.public_url.clone(),
        },
    })
}

impl Endpoint for Pages {
    type Output = Response;

    async fn call(&self, req: Request) -> poem::Result<Response> {
        let path = req.uri().path().to_owned();
        let parts: Vec<&str> = path.trim_start_matches('/').split('/').collect();
        let method = req.method().clone();
        let get = method == Method::GET || method == Method::HEAD;
        Ok(match (parts.as_slice(), get, method == Method::POST) {
            (["pay", token], true, _) => self.pay.show(token).await,
            (["pay", token], _, true) => self.pay.pay_with_saved_card(token).await,
            (["pay", token, "invoice.pdf"], true, _) => self.pay.pdf(token).await,
            (["pay", _] | ["pay", _, "invoice.pdf"], _, _) => {
                error_page(StatusCode::METHOD_NOT_ALLOWED, "Not allowed", "This page cannot be used that way.")
            }
            _ => error_page(StatusCode::NOT_FOUND, "Page not found", "There is no page at this address."),
        })
    }
}
