//! `/proposals` endpoints.

use std::sync::Arc;

use poem::Request;
use poem_openapi::param::{Path, Query};
use poem_openapi::payload::Json;
use poem_openapi::types::MaybeUndefined;
use poem_openapi::{ApiResponse, Object, OpenApi, Tags};
use portal_core::ids::CustomerId;
use portal_core::money::to_major;
use portal_core::responses::NoContent;
use portal_core::{idempotency, Admin, Auth, JsonBody, ListResponse, PageRequest, PutBody, Result, Store, Timestamp};
use portal_documents::{render_blocking, PdfFile, Renderer};
use serde::Serialize;

use crate::document::ProposalPrint;
use crate::model::{Proposal, ProposalId, ProposalStatus, WHOLE};
use crate::service::{self, MilestoneInput, ProposalChange};

#[derive(Tags)]
enum ProposalsTag {
    /// Sales proposals with milestone billing schedules
    Proposals,
}

/// One step of a billing schedule: an invoice for `percentage` of the total.
#[derive(Debug, Clone, Object, Serialize)]
#[oai(rename = "BillingMilestone")]
pub struct MilestoneView {
    /// Share of the total in percent (> 0, at most 4 decimals); the schedule sums to 100.
    pub percentage: f64,
    /// Name of the milestone, e.g. "Design sign-off".
    #[oai(validator(max_length = 1024))]
    pub milestone: String,
    /// Days from the milestone invoice's issue to its due date (default: the customer's payment terms).
    #[oai(skip_serializing_if_is_none)]
    pub due_days: Option<i64>,
}

/// A sales proposal.
#[derive(Debug, Clone, Object)]
#[oai(rename = "Proposal")]
pub struct ProposalView {
    pub id: ProposalId,
    pub customer_id: CustomerId,
    pub title: String,
    #[oai(skip_serializing_if_is_none)]
    pub description: Option<String>,
    pub status: ProposalStatus,
    pub total_amount: f64,
    /// ISO 4217; the customer's billing currency.
    pub currency: String,
    pub billing_schedule: Vec<MilestoneView>,
    #[oai(skip_serializing_if_is_none)]
    pub valid_until: Option<Timestamp>,
    /// Billed with every recurring invoice once the proposal is accepted.
    pub monthly_recurring_amount: f64,
    pub created_at: Timestamp,
    pub updated_at: Timestamp,
    #[oai(skip_serializing_if_is_none)]
    pub accepted_at: Option<Timestamp>,
    #[oai(skip_serializing_if_is_none)]
    pub rejected_at: Option<Timestamp>,
}

impl ProposalView {
    fn at(p: &Proposal, now: Timestamp) -> Self {
        Self {
            id: p.id,
            customer_id: p.customer_id,
            title: p.title.clone(),
            description: p.description.clone(),
            status: p.status_at(now),
            total_amount: to_major(p.total_amount, p.currency),
            currency: p.currency.to_string(),
            billing_schedule: p
                .billing_schedule
                .iter()
                .map(|m| MilestoneView {
                    percentage: f64::from(m.share) / f64::from(WHOLE / 100),
                    milestone: m.name.clone(),
                    due_days: m.due_days.map(i64::from),
                })
                .collect(),
            valid_until: p.valid_until,
            monthly_recurring_amount: to_major(p.monthly_recurring_amount, p.currency),
            created_at: p.created_at,
            updated_at: p.updated_at,
            accepted_at: p.accepted_at,
            rejected_at: p.rejected_at,
        }
    }
}

impl From<&Proposal> for ProposalView {
    fn from(p: &Proposal) -> Self {
        Self::at(p, Timestamp::now())
    }
}

/// A new proposal.
#[derive(Debug, Clone, Object, Serialize)]
#[oai(deny_unknown_fields)]
struct CreateProposalRequest {
    customer_id: CustomerId,
    /// 1–200 characters.
    #[oai(validator(max_length = 1024))]
    title: String,
    #[oai(validator(max_length = 20000))]
    description: Option<String>,
    status: Option<ProposalStatus>,
    /// Greater than 0, in `currency`.
    total_amount: f64,
    /// ISO 4217; must be the customer's billing currency (the default).
    #[oai(validator(max_length = 3))]
    currency: Option<String>,
    /// 1–50 milestones whose percentages sum to 100.
    #[oai(validator(max_items = 1000))]
    billing_schedule: Vec<MilestoneView>,
    /// In the future; an open proposal expires then.
    valid_until: Option<Timestamp>,
    /// Default 0.
    monthly_recurring_amount: Option<f64>,
}

/// Fields to change; left out fields keep their values, `null` clears an optional one. Editing a rejected
/// or expired proposal reopens it as a draft.
#[derive(Debug, Clone, Object)]
#[oai(deny_unknown_fields)]
struct UpdateProposalRequest {
    #[oai(validator(max_length = 1024))]
    title: Option<String>,
    #[oai(validator(max_length = 20000))]
    description: MaybeUndefined<String>,
    status: Option<ProposalStatus>,
    total_amount: Option<f64>,
    #[oai(validator(max_length = 3))]
    currency: Option<String>,
    #[oai(validator(max_items = 1000))]
    billing_schedule: Option<Vec<MilestoneView>>,
    valid_until: MaybeUndefined<Timestamp>,
    monthly_recurring_amount: Option<f64>,
}

fn schedule(milestones: &[MilestoneView]) -> Vec<MilestoneInput> {
    milestones
        .iter()
        .map(|m| MilestoneInput { percentage: m.percentage, milestone: m.milestone.clone(), due_days: m.due_days })
        .collect()
}

fn patch<T: Clone>(field: &MaybeUndefined<T>) -> Option<Option<T>> {
    match field {
        MaybeUndefined::Undefined => None,
        MaybeUndefined::Null => Some(None),
        MaybeUndefined::Value(v) => Some(Some(v.clone())),
    }
}

#[derive(ApiResponse)]
enum CreatedProposal {
    /// Created (or, for a repeated `Idempotency-Key`, the first answer again).
    #[oai(status = 201)]
    Created(Json<ProposalView>),
}

pub struct ProposalsApi {
    store: Store,
    renderer: Arc<Renderer>,
}

impl ProposalsApi {
    pub fn new(store: Store, renderer: Arc<Renderer>) -> Self {
        Self { store, renderer }
    }
}

#[OpenApi(prefix_path = "/proposals", tag = "ProposalsTag::Proposals")]
impl ProposalsApi {
    /// Create a proposal (admin)
    ///
    /// Honours `Idempotency-Key` like every create.
    #[oai(path = "/", method = "post")]
    async fn create(
        &self,
        admin: Admin,
        body: JsonBody<CreateProposalRequest>,
        #[oai(name = "Idempotency-Key")] idempotency_key: idempotency::IdempotencyKey,
    ) -> Result<CreatedProposal> {
        let body = body.into_inner()?;
        let claim =
            idempotency::begin(&self.store, admin.0.user_id, "POST /proposals", &idempotency_key, &body).await?;
        if let Some((_, view)) = claim.replayed::<ProposalView>()? {
            return Ok(CreatedProposal::Created(Json(view)));
        }
        let change = ProposalChange {
            customer_id: Some(body.customer_id),
            title: Some(body.title),
            description: body.description.map(Some),
            status: body.status,
            total_amount: Some(body.total_amount),
            currency: body.currency,
            billing_schedule: Some(schedule(&body.billing_schedule)),
            valid_until: body.valid_until.map(Some),
            monthly_recurring_amount: body.monthly_recurring_amount,
        };
        let recorder = claim.clone();
        let view = self
            .store
            .write(move |tx| {
                let view = ProposalView::from(&service::create(tx, &change)?);
                recorder.complete(tx, 201, &view)?;
                Ok(view)
            })
            .await?;
        drop(claim);
        Ok(CreatedProposal::Created(Json(view)))
    }

    /// List a customer's proposals (admin or its users)
    ///
    /// Newest first, paged like every list; `status` filters (as of now, so `expired` finds open proposals
    /// past their `valid_until`).
    #[oai(path = "/customer/:customer_id", method = "get")]
    async fn list(
        &self,
        req: &Request,
        auth: Auth,
        customer_id: Path<CustomerId>,
        status: Query<Option<ProposalStatus>>,
        limit: Query<Option<u32>>,
        cursor: Query<Option<String>>,
    ) -> Result<ListResponse<ProposalView>> {
        let page = PageRequest::<ProposalId>::parse(limit.0, cursor.0.as_deref())?;
        let caller = auth.0;
        let fetch = page.fetch();
        let rows = self
            .store
            .read(move |tx| {
                let scope = portal_customers::scope(tx, &caller, customer_id.0)?;
                service::list(tx, &scope, status.0, page.after, fetch)
            })
            .await?;
        let views = rows.iter().map(ProposalView::from).collect();
        Ok(ListResponse::new(req, views, page.limit, |p| p.id.to_string()))
    }

    /// Get a proposal (admin or its customer's users)
    #[oai(path = "/:proposal_id", method = "get")]
    async fn get(&self, auth: Auth, proposal_id: Path<ProposalId>) -> Result<Json<ProposalView>> {
        let caller = auth.0;
        let (proposal, _) = self.store.read_blocking(|tx| service::visible(tx, &caller, proposal_id.0))?;
        Ok(Json((&proposal).into()))
    }

    /// Get a proposal as PDF (admin or its customer's users)
    ///
    /// The proposal with the agency's letterhead, its total and its milestone schedule: each milestone's
    /// share, when its invoice falls due, and the amount its invoice will carry, split as the invoices will
    /// split it (with the customer's tax, when it pays any).
    #[oai(path = "/:proposal_id/pdf", method = "get")]
    async fn pdf(&self, auth: Auth, proposal_id: Path<ProposalId>) -> Result<PdfFile> {
        let caller = auth.0;
        let now = Timestamp::now();
        let print = self.store.read_blocking(|tx| {
            let (proposal, scope) = service::visible(tx, &caller, proposal_id.0)?;
            ProposalPrint::read(tx, &proposal, &scope, now)
        })?;
        let name = format!("proposal-{}", proposal_id.0);
        let renderer = Arc::clone(&self.renderer);
        let pdf = render_blocking(move || print.render_pdf(&renderer)).await?;
        Ok(PdfFile::inline(&name, pdf))
    }

    /// Update a proposal (admin)
    ///
    /// Partial. An accepted proposal can no longer be changed (409). Takes the proposal as the GET gives
    /// it: read-only fields (`id`, `customer_id`, the times) and an unchanged `status` are ignored, a
    /// changed read-only field → 422 naming it.
    #[oai(path = "/:proposal_id", method = "put")]
    async fn update(
        &self,
        admin: Admin,
        proposal_id: Path<ProposalId>,
        body: PutBody<UpdateProposalRequest, ProposalView>,
    ) -> Result<Json<ProposalView>> {
        let caller = admin.0;
        let current: ProposalView =
            (&self.store.read_blocking(|tx| service::visible(tx, &caller, proposal_id.0))?.0).into();
        let body = body.into_inner(&current)?;
        let change = ProposalChange {
            customer_id: None,
            title: body.title,
            description: patch(&body.description),
            // The status as read (`expired`, say) sent back is no request to change it.
            status: body.status.filter(|s| *s != current.status),
            total_amount: body.total_amount,
            currency: body.currency,
            billing_schedule: body.billing_schedule.as_deref().map(schedule),
            valid_until: patch(&body.valid_until),
            monthly_recurring_amount: body.monthly_recurring_amount,
        };
        let proposal = self.store.write(move |tx| service::update(tx, &caller, proposal_id.0, &change)).await?;
        Ok(Json((&proposal).into()))
    }

    /// Delete a proposal (admin)
    ///
    /// An accepted proposal is a financial record and cannot be deleted (409).
    #[oai(path = "/:proposal_id", method = "delete")]
    async fn delete(&self, admin: Admin, proposal_id: Path<ProposalId>) -> Result<NoContent> {
        let caller = admin.0;
        self.store.write(move |tx| service::delete(tx, &caller, proposal_id.0)).await?;
        Ok(NoContent::NoContent)
    }

    /// Accept a proposal (admin, on behalf of the customer)
    ///
    /// Only a draft or sent proposal that has not expired (409 otherwise).
    #[oai(path = "/:proposal_id/accept", method = "post")]
    async fn accept(&self, admin: Admin, proposal_id: Path<ProposalId>) -> Result<Json<ProposalView>> {
        let caller = admin.0;
        let proposal = self.store.write(move |tx| service::decide(tx, &caller, proposal_id.0, true)).await?;
        Ok(Json((&proposal).into()))
    }

    /// Reject a proposal (admin, on behalf of the customer)
    ///
    /// Only a draft or sent proposal that has not expired (409 otherwise).
    #[oai(path = "/:proposal_id/reject", method = "post")]
    async fn reject(&self, admin: Admin, proposal_id: Path<ProposalId>) -> Result<Json<ProposalView>> {
        let caller = admin.0;
        let proposal = self.store.write(move |tx| service::decide(tx, &caller, proposal_id.0, false)).await?;
        Ok(Json((&proposal).into()))
    }
}
