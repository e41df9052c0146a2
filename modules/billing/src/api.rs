//! `/billing` invoice endpoints.

use std::sync::Arc;

use chrono::NaiveDate;
use poem::Request;
use poem_openapi::param::{Header, Path, Query};
use poem_openapi::payload::Json;
use poem_openapi::{ApiResponse, Enum, Object, OpenApi, Tags};
use portal_core::ids::CustomerId;
use portal_core::{
    idempotency, Admin, Auth, Context, Error, JsonBody, ListResponse, PageRequest, PutBody, Result, SerdeJson,
    SerdeListResponse, Store, Timestamp,
};
use portal_documents::{render_blocking, PdfFile, Renderer};
use portal_proposals::model::ProposalId;
use serde::Serialize;

use crate::document::InvoicePrint;
use crate::model::{InvoiceId, InvoiceStatus, UnmatchedPaymentId};
use crate::views::{BillingOverview, BillingStats, InvoiceMailView, InvoiceView, UnmatchedPaymentView};
use crate::{invoices, mail, milestones, recurring, stats, unmatched, webhooks};

#[derive(Tags)]
pub(crate) enum BillingTag {
    /// Invoices, recurring billing, payments and billing figures
    Billing,
}

#[derive(Debug, Clone, Object, Serialize)]
#[oai(deny_unknown_fields)]
struct GenerateFromProposalRequest {
    /// An accepted proposal; it is invoiced once.
    proposal_id: ProposalId,
}

#[derive(Debug, Clone, Object, Serialize)]
#[oai(deny_unknown_fields)]
struct GenerateRecurringRequest {
    customer_id: CustomerId,
    /// `YYYY-MM-DD`, one of the customer's billing dates; default the period today falls in.
    #[oai(validator(max_length = 10))]
    period_start: Option<String>,
}

#[derive(Debug, Clone, Object)]
#[oai(deny_unknown_fields)]
struct InfrastructureCostsRequest {
    /// Passed through at cost (untaxed), in the invoice's currency.
    infrastructure_costs: f64,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Enum, Serialize)]
#[oai(rename_all = "snake_case")]
#[serde(rename_all = "snake_case")]
/// How the money of a payment recorded by hand arrived.
enum ManualPaymentMethod {
    BankTransfer,
    Paypal,
    Manual,
    CreditCard,
}

#[derive(Debug, Clone, Object)]
#[oai(deny_unknown_fields)]
struct MarkPaidRequest {
    payment_method: ManualPaymentMethod,
    /// When it arrived; default now.
    paid_date: Option<Timestamp>,
}

#[derive(ApiResponse)]
enum Generated {
    /// The milestone invoices, in schedule order (or, for a repeated `Idempotency-Key`, the first answer).
    #[oai(status = 201)]
    Created(SerdeJson<Vec<InvoiceView>>),
}

#[derive(ApiResponse)]
enum GeneratedOne {
    /// The period's invoice (or, for a repeated `Idempotency-Key`, the first answer).
    #[oai(status = 201)]
    Created(SerdeJson<InvoiceView>),
}

pub struct BillingApi {
    store: Store,
    webhook_secret: Option<String>,
    renderer: Arc<Renderer>,
    /// Where the portal is reached, for pay links (none: documents and mail carry no link).
    public_url: Option<String>,
}

impl BillingApi {
    pub fn new(ctx: &Context, webhook_secret: Option<String>) -> Result<Self> {
        Ok(Self {
            store: ctx.store.clone(),
            webhook_secret,
            renderer: portal_documents::renderer(ctx)?,
            public_url: ctx.config.public_url.clone(),
        })
    }
}

#[derive(ApiResponse)]
enum MailQueued {
    /// The mail, recorded and queued; it goes out within seconds (`sent_at` says when).
    #[oai(status = 202)]
    Accepted(Json<InvoiceMailView>),
}

/// What the webhook did with the event.
#[derive(Debug, Clone, Object)]
struct WebhookReceipt {
    /// Always true: Stripe stops retrying on any 2xx.
    received: bool,
    /// `applied`, `duplicate` (seen before, nothing done again) or `ignored` (a type the portal does not use).
    outcome: String,
}

#[OpenApi(prefix_path = "/billing", tag = "BillingTag::Billing")]
impl BillingApi {
    /// Billing figures (admin)
    ///
    /// Revenue collected (all time, this month), outstanding and overdue amounts and counts, MRR and ARR
    /// per currency; invoices and customers by status.
    #[oai(path = "/stats", method = "get")]
    async fn stats(&self, _admin: Admin) -> Result<Json<BillingStats>> {
        Ok(Json(self.store.read(|tx| stats::stats(tx, Timestamp::now())).await?))
    }

    /// Payments that did not pay their invoice (admin)
    ///
    /// Successful Stripe payments the portal did not count as paying their invoice: another amount,
    /// currency or Stripe customer than the invoice's, or an invoice already paid or cancelled. Each also
    /// has a `payment_unmatched` audit entry on its invoice. Newest first, paged like every list.
    #[oai(path = "/unmatched-payments", method = "get")]
    async fn unmatched_payments(
        &self,
        _admin: Admin,
        req: &Request,
        limit: Query<Option<u32>>,
        cursor: Query<Option<String>>,
    ) -> Result<ListResponse<UnmatchedPaymentView>> {
        let page = PageRequest::<UnmatchedPaymentId>::parse(limit.0, cursor.0.as_deref())?;
        let fetch = page.fetch();
        let rows = self.store.read(move |tx| unmatched::list(tx, page.after, fetch)).await?;
        let views = rows.iter().map(UnmatchedPaymentView::from).collect();
        Ok(ListResponse::new(req, views, page.limit, |p| p.id.to_string()))
    }

    /// A customer's billing overview (admin or its users)
    #[oai(path = "/customer/:customer_id/overview", method = "get")]
    async fn overview(&self, auth: Auth, customer_id: Path<CustomerId>) -> Result<Json<BillingOverview>> {
        let caller = auth.0;
        let overview = self
            .store
            .read(move |tx| {
                let scope = portal_customers::scope(tx, &caller, customer_id.0)?;
                stats::overview(tx, &scope, Timestamp::now())
            })
            .await?;
        Ok(Json(overview))
    }

    /// My customer's billing overview (customer users)
    #[oai(path = "/my-billing", method = "get")]
    async fn my_billing(&self, auth: Auth) -> Result<Json<BillingOverview>> {
        let id = auth.0.own_customer()?;
        let caller = auth.0;
        let overview = self
            .store
            .read(move |tx| {
                let scope = portal_customers::scope(tx, &caller, id)?;
                stats::overview(tx, &scope, Timestamp::now())
            })
            .await?;
        Ok(Json(overview))
    }

    /// A customer's invoices (admin or its users)
    ///
    /// Newest first, paged like every list; `status` filters on the status as of now.
    #[oai(path = "/invoices/customer/:customer_id", method = "get")]
    async fn customer_invoices(
        &self,
        req: &Request,
        auth: Auth,
        customer_id: Path<CustomerId>,
        status: Query<Option<InvoiceStatus>>,
        limit: Query<Option<u32>>,
        cursor: Query<Option<String>>,
    ) -> Result<SerdeListResponse<InvoiceView>> {
        let page = PageRequest::<InvoiceId>::parse(limit.0, cursor.0.as_deref())?;
        let caller = auth.0;
        let fetch = page.fetch();
        let rows = self
            .store
            .read(move |tx| {
                let scope = portal_customers::scope(tx, &caller, customer_id.0)?;
                invoices::list(tx, &scope, status.0, page.after, fetch)
            })
            .await?;
        let now = Timestamp::now();
        let views = rows.into_iter().map(|i| InvoiceView::of(i, now)).collect();
        Ok(SerdeListResponse::new(req, views, page.limit, |i| i.id.to_string()))
    }

    /// Get an invoice (admin or its customer's users)
    #[oai(path = "/invoices/:invoice_id", method = "get")]
    async fn invoice(&self, auth: Auth, invoice_id: Path<InvoiceId>) -> Result<SerdeJson<InvoiceView>> {
        let (invoice, _) = self.store.read_blocking(|tx| invoices::visible(tx, &auth.0, invoice_id.0))?;
        Ok(SerdeJson(InvoiceView::of(invoice, Timestamp::now())))
    }

    /// Get an invoice as PDF (admin or its customer's users)
    ///
    /// The invoice as the customer receives it: the agency's letterhead and logo, the customer, the line
    /// items, tax, infrastructure costs and totals in the currency's format, how to pay while it is open,
    /// and a PAID or CANCELLED mark once settled. The same invoice gives the same bytes.
    #[oai(path = "/invoices/:invoice_id/pdf", method = "get")]
    async fn invoice_pdf(&self, auth: Auth, invoice_id: Path<InvoiceId>) -> Result<PdfFile> {
        let (now, public_url) = (Timestamp::now(), self.public_url.as_deref());
        let print = self.store.read_blocking(|tx| {
            let (invoice, scope) = invoices::visible(tx, &auth.0, invoice_id.0)?;
            Ok::<_, Error>((invoice.number.clone(), InvoicePrint::read(tx, &invoice, &scope, now, public_url)?))
        })?;
        let (number, print) = print;
        let renderer = Arc::clone(&self.renderer);
        let pdf = render_blocking(move || print.render_pdf(&renderer)).await?;
        Ok(PdfFile::inline(&number, pdf))
    }

    /// Send an invoice again (admin)
    ///
    /// Mails the invoice, its PDF attached, to the customer's billing address and to its users who receive
    /// invoice mail, under a new Message-ID. An open invoice gets a new pay link: the links sent before stop
    /// working. Draft invoices are not sent (409).
    #[oai(path = "/invoices/:invoice_id/send", method = "post")]
    async fn send(&self, admin: Admin, invoice_id: Path<InvoiceId>) -> Result<MailQueued> {
        let caller = admin.0;
        let mail = self.store.write(move |tx| mail::resend(tx, &caller, invoice_id.0, Timestamp::now())).await?;
        Ok(MailQueued::Accepted(Json(InvoiceMailView::from(&mail))))
    }

    /// List an invoice's mails (admin)
    ///
    /// Every mail about the invoice, oldest first: why it was sent, to whom, when it went out or why not.
    #[oai(path = "/invoices/:invoice_id/mails", method = "get")]
    async fn mails(&self, admin: Admin, invoice_id: Path<InvoiceId>) -> Result<Json<Vec<InvoiceMailView>>> {
        let mails = self.store.read_blocking(|tx| {
            invoices::visible(tx, &admin.0, invoice_id.0)?;
            mail::of_invoice(tx, invoice_id.0)
        })?;
        Ok(Json(mails.iter().map(InvoiceMailView::from).collect()))
    }

    /// Set an invoice's infrastructure costs (admin)
    ///
    /// Recomputes `total_amount`. Only draft, pending or overdue invoices (409 otherwise). Also takes the
    /// invoice as `GET /billing/invoices/{id}` gives it, with only `infrastructure_costs` changed.
    #[oai(path = "/invoices/:invoice_id/infrastructure-costs", method = "put")]
    async fn infrastructure_costs(
        &self,
        admin: Admin,
        invoice_id: Path<InvoiceId>,
        body: PutBody<InfrastructureCostsRequest, InvoiceView>,
    ) -> Result<SerdeJson<InvoiceView>> {
        let (current, _) = self.store.read_blocking(|tx| invoices::visible(tx, &admin.0, invoice_id.0))?;
        let costs = body.into_inner(&InvoiceView::from(&current))?.infrastructure_costs;
        let caller = admin.0;
        let invoice =
            self.store.write(move |tx| invoices::set_infrastructure_costs(tx, &caller, invoice_id.0, costs)).await?;
        Ok(SerdeJson((&invoice).into()))
    }

    /// Cancel an unpaid invoice (admin)
    ///
    /// Paid and cancelled invoices never change (409).
    #[oai(path = "/invoices/:invoice_id/cancel", method = "post")]
    async fn cancel(&self, admin: Admin, invoice_id: Path<InvoiceId>) -> Result<SerdeJson<InvoiceView>> {
        let caller = admin.0;
        let invoice = self.store.write(move |tx| invoices::cancel(tx, &caller, invoice_id.0)).await?;
        Ok(SerdeJson((&invoice).into()))
    }

    /// Record a payment received outside Stripe (admin)
    ///
    /// For bank transfers and other manual payments. Only draft, pending or overdue invoices (409
    /// otherwise); a paid invoice never changes again.
    #[oai(path = "/invoices/:invoice_id/mark-paid", method = "post")]
    async fn mark_paid(
        &self,
        admin: Admin,
        invoice_id: Path<InvoiceId>,
        body: JsonBody<MarkPaidRequest>,
    ) -> Result<SerdeJson<InvoiceView>> {
        let body = body.into_inner()?;
        let now = Timestamp::now();
        let paid_at = body.paid_date.unwrap_or(now);
        if paid_at > now {
            return Err(Error::invalid("paid_date", "must not be in the future"));
        }
        let method = serde_json::to_value(body.payment_method)
            .ok()
            .and_then(|v| v.as_str().map(str::to_string))
            .unwrap_or_else(|| "manual".into());
        let caller = admin.0;
        let invoice = self
            .store
            .write(move |tx| {
                invoices::visible(tx, &caller, invoice_id.0)?;
                invoices::mark_paid(tx, invoice_id.0, &method, paid_at, None)
            })
            .await?;
        Ok(SerdeJson((&invoice).into()))
    }

    /// Stripe webhook (signed by Stripe)
    ///
    /// Takes the raw event body with its `Stripe-Signature` (HMAC-SHA256, 300 s tolerance, any of several
    /// v1 signatures during a secret roll); a bad or stale signature → 400. Each event id is applied once.
    /// Handles `payment_intent.succeeded` (the invoice named in its metadata becomes paid),
    /// `payment_intent.payment_failed` (recorded; never moves an invoice back) and `setup_intent.succeeded`
    /// (the card becomes the customer's default); other types answer 200 and are ignored.
    #[oai(path = "/webhooks/stripe", method = "post")]
    async fn stripe_webhook(
        &self,
        body: poem_openapi::payload::Binary<Vec<u8>>,
        #[oai(name = "Stripe-Signature")] signature: Header<Option<String>>,
    ) -> Result<Json<WebhookReceipt>> {
        let secret = self.webhook_secret.clone().ok_or_else(|| {
            Error::upstream("webhooks are not configured on this portal (set STRIPE_WEBHOOK_SECRET)", "no secret")
        })?;
        let header = signature.0.ok_or_else(|| Error::bad_request("missing Stripe-Signature header"))?;
        portal_stripe::webhook::verify(&header, &body.0, &secret, Timestamp::now().unix_secs())?;
        let event: portal_stripe::webhook::Event = serde_json::from_slice(&body.0)
            .map_err(|e| Error::bad_request(format!("the body is not a Stripe event: {e}")))?;
        let applied = self.store.write(move |tx| webhooks::apply(tx, &event)).await?;
        let outcome = match applied {
            webhooks::Applied::Applied => "applied",
            webhooks::Applied::Duplicate => "duplicate",
            webhooks::Applied::Ignored => "ignored",
        };
        Ok(Json(WebhookReceipt { received: true, outcome: outcome.into() }))
    }

    /// Invoice an accepted proposal (admin)
    ///
    /// One invoice per milestone: amounts split by the largest-remainder method (they sum to the total to
    /// the cent), tax at the customer's rate, due after the milestone's `due_days` or the customer's
    /// payment terms. A proposal is invoiced once: a second call → 409 naming the invoices, unless it
    /// repeats an `Idempotency-Key`, which answers the first result again.
    #[oai(path = "/generate-from-proposal", method = "post")]
    async fn generate_from_proposal(
        &self,
        admin: Admin,
        body: JsonBody<GenerateFromProposalRequest>,
        #[oai(name = "Idempotency-Key")] idempotency_key: idempotency::IdempotencyKey,
    ) -> Result<Generated> {
        let body = body.into_inner()?;
        let op = "POST /billing/generate-from-proposal";
        let claim = idempotency::begin(&self.store, admin.0.user_id, op, &idempotency_key, &body).await?;
        if let Some((_, views)) = claim.replayed::<Vec<InvoiceView>>()? {
            return Ok(Generated::Created(SerdeJson(views)));
        }
        let recorder = claim.clone();
        let views = self
            .store
            .write(move |tx| {
                let now = Timestamp::now();
                let created = milestones::generate(tx, body.proposal_id, now)?;
                let views: Vec<InvoiceView> = created.iter().map(|i| InvoiceView::at(i, now)).collect();
                recorder.complete(tx, 201, &views)?;
                Ok(views)
            })
            .await?;
        drop(claim);
        Ok(Generated::Created(SerdeJson(views)))
    }

    /// Invoice a billing period (admin)
    ///
    /// One invoice per period (monthly, quarterly or annual; one-time billing never recurs): the monthly
    /// fee and each accepted proposal's monthly recurring amount, times the months in the period. A
    /// period already billed → 409 naming its invoice. The scheduler does this by itself on each
    /// customer's billing day.
    #[oai(path = "/generate-recurring", method = "post")]
    async fn generate_recurring(
        &self,
        admin: Admin,
        body: JsonBody<GenerateRecurringRequest>,
        #[oai(name = "Idempotency-Key")] idempotency_key: idempotency::IdempotencyKey,
    ) -> Result<GeneratedOne> {
        let body = body.into_inner()?;
        let start = match &body.period_start {
            Some(s) => Some(
                s.parse::<NaiveDate>().map_err(|_| Error::invalid("period_start", "must be a date like 2026-11-01"))?,
            ),
            None => None,
        };
        let op = "POST /billing/generate-recurring";
        let claim = idempotency::begin(&self.store, admin.0.user_id, op, &idempotency_key, &body).await?;
        if let Some((_, view)) = claim.replayed::<InvoiceView>()? {
            return Ok(GeneratedOne::Created(SerdeJson(view)));
        }
        let recorder = claim.clone();
        let customer = body.customer_id;
        let view = self
            .store
            .write(move |tx| {
                let now = Timestamp::now();
                // Admins only: the customer is named in the body, so a missing one is a 422.
                let scope = portal_customers::system_scope(tx, customer)
                    .map_err(|_| Error::invalid("customer_id", "no such customer"))?;
                let view = InvoiceView::at(&recurring::generate(tx, &scope, start, now)?, now);
                recorder.complete(tx, 201, &view)?;
                Ok(view)
            })
            .await?;
        drop(claim);
        Ok(GeneratedOne::Created(SerdeJson(view)))
    }
}
