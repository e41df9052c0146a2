//! `/audit`: the trail of changes that every module records in its own write transactions (see
//! `portal_core::audit`), for admins, newest first, filtered by customer, object, user or module.
#![forbid(unsafe_code)]

use poem::Request;
use poem_openapi::param::Query;
use poem_openapi::{Object, OpenApi, Tags};
use portal_core::audit::{self, AuditId, Entry, Filter};
use portal_core::ids::{CustomerId, UserId};
use portal_core::WriteTx;
use portal_core::{Admin, Context, Error, ListResponse, Module, PageRequest, Result, Role, Store, Timestamp};

pub struct AuditModule;

impl Module for AuditModule {
    const NAME: &'static str = "audit";
    type Api = AuditApi;

    /// The trail's tables belong to the core (every write may record into them).
    fn install(_tx: &WriteTx) -> Result<()> {
        Ok(())
    }

    fn api(ctx: &Context) -> Result<AuditApi> {
        Ok(AuditApi { store: ctx.store.clone() })
    }
}

#[derive(Tags)]
enum AuditTag {
    /// Who changed what, and when
    Audit,
}

/// One change: who made it (user, role and request; none for the portal's own jobs), what changed and
/// when.
#[derive(Debug, Clone, Object)]
#[oai(rename = "AuditEntry")]
pub struct AuditEntryView {
    pub id: AuditId,
    pub at: Timestamp,
    /// The signed-in user who made the change; absent for the portal's own jobs and for requests made
    /// without signing in (sign-in itself, password resets, Stripe webhooks).
    #[oai(skip_serializing_if_is_none)]
    pub user_id: Option<UserId>,
    #[oai(skip_serializing_if_is_none)]
    pub role: Option<Role>,
    /// The request's `X-Request-Id`, to find its log lines.
    #[oai(skip_serializing_if_is_none)]
    pub request_id: Option<String>,
    /// `auth`, `users`, `customers`, `proposals`, `billing` or `analytics`.
    pub module: String,
    /// What happened: `create`, `update`, `delete`, `sign_in`, `issue`, `paid`, `refund`, …
    pub action: String,
    /// The id of the changed object (a user, customer, proposal, invoice, …).
    pub object_id: String,
    #[oai(skip_serializing_if_is_none)]
    pub customer_id: Option<CustomerId>,
}

impl From<Entry> for AuditEntryView {
    fn from(e: Entry) -> Self {
        Self {
            id: e.id,
            at: e.at,
            user_id: e.actor.user_id,
            role: e.actor.role,
            request_id: e.actor.request_id.map(|id| id.to_string()),
            module: e.module,
            action: e.action,
            object_id: e.object_id,
            customer_id: e.customer_id,
        }
    }
}

pub struct AuditApi {
    store: Store,
}

#[OpenApi(tag = "AuditTag::Audit")]
impl AuditApi {
    /// The audit trail (admin)
    ///
    /// Every change, newest first, paged like every list. Filters combine: `customer_id` (changes to that
    /// customer's objects), `object_id`, `user_id` (changes made by that user) and `module`.
    #[oai(path = "/audit", method = "get")]
    #[allow(clippy::too_many_arguments)]
    async fn list(
        &self,
        _admin: Admin,
        req: &Request,
        customer_id: Query<Option<CustomerId>>,
        object_id: Query<Option<String>>,
        user_id: Query<Option<UserId>>,
        module: Query<Option<String>>,
        limit: Query<Option<u32>>,
        cursor: Query<Option<String>>,
    ) -> Result<ListResponse<AuditEntryView>> {
        let page = PageRequest::<AuditId>::parse(limit.0, cursor.0.as_deref())?;
        if object_id.0.as_ref().is_some_and(|o| o.is_empty() || o.len() > 255) {
            return Err(Error::invalid("object_id", "must be 1 to 255 characters"));
        }
        let filter =
            Filter { customer_id: customer_id.0, user_id: user_id.0, object_id: object_id.0, module: module.0 };
        let fetch = page.fetch();
        let rows = self.store.read(move |tx| audit::list(tx, &filter, page.after, fetch)).await?;
        let views = rows.into_iter().map(AuditEntryView::from).collect();
        Ok(ListResponse::new(req, views, page.limit, |e| e.id.to_string()))
    }
}
