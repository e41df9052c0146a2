//! `/billing` refund and credit note endpoints.

use std::sync::Arc;

use poem::Request;
use poem_openapi::param::{Path, Query};
use poem_openapi::payload::Json;
use poem_openapi::{ApiResponse, Object, OpenApi};
use portal_core::ids::CustomerId;
use portal_core::{idempotency, Admin, Auth, Context, Error, JsonBody, ListResponse, PageRequest, Result, Store};
use portal_documents::{render_blocking, PdfFile, Renderer};
use portal_stripe::Stripe;
use serde::Serialize;

use crate::api::BillingTag;
use crate::credit_notes;
use crate::document::CreditNotePrint;
use crate::invoices;
use crate::model::{CreditNoteId, InvoiceId};
use crate::refunds::{self, RefundOrder};
use crate::views::{CreditNoteView, RefundView};

#[derive(Debug, Clone, Object, Serialize)]
#[oai(deny_unknown_fields)]
struct RefundRequest {
    /// In the invoice's currency; default all that is left to refund.
    amount: Option<f64>,
    /// Why the money goes back; printed on the credit note.
    #[oai(validator(min_length = 1, max_length = 500))]
    reason: String,
}

#[derive(ApiResponse)]
#[allow(clippy::large_enum_variant)] // built once per request
enum RefundResponse {
    /// Refunded: the money is on its way back, and the credit note documents it (or, for a repeated
    /// `Idempotency-Key`, the first answer).
    #[oai(status = 201)]
    Created(Json<RefundView>),
}

pub struct CreditNotesApi {
    store: Store,
    stripe: Option<Stripe>,
    renderer: Arc<Renderer>,
}

impl CreditNotesApi {
    pub fn new(ctx: &Context, stripe: Option<Stripe>) -> Result<Self> {
        Ok(Self { store: ctx.store.clone(), stripe, renderer: portal_documents::renderer(ctx)? })
    }
}

#[OpenApi(prefix_path = "/billing", tag = "BillingTag::Billing")]
impl CreditNotesApi {
    /// Refund a paid invoice (admin)
    ///
    /// Returns `amount` (default: all that is left) of a paid invoice to its customer and issues a credit
    /// note `CN-YYYY-NNNNNN` for it. An invoice paid through Stripe is refunded through Stripe (each refund
    /// under its own idempotency key, reserved before Stripe is called, so concurrent refunds never return
    /// more than was paid); one paid by hand is recorded as refunded by hand. The invoice stays `paid`, its
    /// lines unchanged; it shows its `refunded_amount` and credit notes. More than is left → 422; nothing
    /// left, or an invoice not paid → 409. Stripe not answering → 503 with the refund kept: it is completed
    /// once Stripe answers, under the same key. Honours `Idempotency-Key`: a repeated request answers the
    /// first refund instead of making another.
    #[oai(path = "/invoices/:invoice_id/refund", method = "post")]
    async fn refund(
        &self,
        admin: Admin,
        invoice_id: Path<InvoiceId>,
        body: JsonBody<RefundRequest>,
        #[oai(name = "Idempotency-Key")] idempotency_key: idempotency::IdempotencyKey,
    ) -> Result<RefundResponse> {
        let caller = admin.0;
        self.store.read_blocking(|tx| invoices::visible(tx, &caller, invoice_id.0))?;
        let body = body.into_inner()?;
        let reason = body.reason.trim().to_string();
        if reason.is_empty() {
            return Err(Error::invalid("reason", "must not be blank"));
        }
        let operation = format!("POST /billing/invoices/{}/refund", invoice_id.0);
        let claim = idempotency::begin(&self.store, caller.user_id, &operation, &idempotency_key, &body).await?;
        if let Some((_, view)) = claim.replayed::<RefundView>()? {
            return Ok(RefundResponse::Created(Json(view)));
        }
        let order = RefundOrder { amount: body.amount, reason };
        let (note, invoice) =
            refunds::refund(&self.store, self.stripe.as_ref(), &caller, invoice_id.0, order, &claim).await?;
        Ok(RefundResponse::Created(Json(RefundView::of(&note, &invoice))))
    }

    /// A customer's credit notes (admin or its users)
    ///
    /// Newest first, paged like every list.
    #[oai(path = "/credit-notes/customer/:customer_id", method = "get")]
    async fn customer_credit_notes(
        &self,
        req: &Request,
        auth: Auth,
        customer_id: Path<CustomerId>,
        limit: Query<Option<u32>>,
        cursor: Query<Option<String>>,
    ) -> Result<ListResponse<CreditNoteView>> {
        let page = PageRequest::<CreditNoteId>::parse(limit.0, cursor.0.as_deref())?;
        let (caller, fetch) = (auth.0, page.fetch());
        let notes = self
            .store
            .read(move |tx| {
                let scope = portal_customers::scope(tx, &caller, customer_id.0)?;
                credit_notes::list(tx, &scope, page.after, fetch)
            })
            .await?;
        let views = notes.iter().map(CreditNoteView::from).collect();
        Ok(ListResponse::new(req, views, page.limit, |n| n.id.to_string()))
    }

    /// Get a credit note (admin or its customer's users)
    #[oai(path = "/credit-notes/:credit_note_id", method = "get")]
    async fn credit_note(&self, auth: Auth, credit_note_id: Path<CreditNoteId>) -> Result<Json<CreditNoteView>> {
        let (note, _) = self.store.read_blocking(|tx| credit_notes::visible(tx, &auth.0, credit_note_id.0))?;
        Ok(Json(CreditNoteView::from(&note)))
    }

    /// Get a credit note as PDF (admin or its customer's users)
    ///
    /// The credit note as the customer receives it: the agency's letterhead, the customer, the invoice it
    /// refers to, the amount refunded and why. The same credit note gives the same bytes.
    #[oai(path = "/credit-notes/:credit_note_id/pdf", method = "get")]
    async fn credit_note_pdf(&self, auth: Auth, credit_note_id: Path<CreditNoteId>) -> Result<PdfFile> {
        let print = self.store.read_blocking(|tx| {
            let (note, scope) = credit_notes::visible(tx, &auth.0, credit_note_id.0)?;
            CreditNotePrint::read(tx, &note, &scope)
        })?;
        let number = print.document.number.clone();
        let renderer = Arc::clone(&self.renderer);
        let pdf = render_blocking(move || print.render_pdf(&renderer)).await?;
        Ok(PdfFile::inline(&number, pdf))
    }
}
