//! `/analytics-dashboard` endpoints: the dashboards (admin, or the customer's own users), event
//! ingestion (admin or ingest key) and ingest keys (admin).

use poem_openapi::param::{Path, Query};
use poem_openapi::payload::Json;
use poem_openapi::{ApiResponse, OpenApi, Tags};
use portal_core::error::Validation;
use portal_core::ids::CustomerId;
use portal_core::responses::NoContent;
use portal_core::{Admin, Auth, Error, JsonBody, Principal, Result, Store, Timestamp};
use portal_customers::scope;
use portal_customers::service::record;

use crate::events::{self, Candidate, Event};
use crate::ingest_auth::IngestCaller;
use crate::keys::{self, IngestKeyId};
use crate::metrics;
use crate::provider::Providers;
use crate::range::{parse_range, Day};
use crate::views::{AnalyticsMetrics, EventBatch, EventsStored, IngestKeyCreated};

#[derive(Tags)]
enum AnalyticsTag {
    /// App usage analytics per customer: dashboards, events, ingest keys
    Analytics,
}

/// Most events one request may carry.
const MAX_BATCH: usize = 1000;
/// At most this many bad fields are listed in one 422.
const MAX_COMPLAINTS: usize = 100;

#[derive(ApiResponse)]
enum DashboardResponse {
    /// The customer's figures for the range.
    #[oai(status = 200)]
    Ok(
        Json<AnalyticsMetrics>,
        /// Where the figures come from: `firebase` (Google Analytics 4) or `local` (events sent to the portal).
        #[oai(header = "X-Analytics-Source")]
        String,
    ),
}

#[derive(ApiResponse)]
enum StoredResponse {
    /// The whole batch was stored.
    #[oai(status = 202)]
    Accepted(Json<EventsStored>),
}

#[derive(ApiResponse)]
enum KeyCreated {
    /// The new key; its secret is shown only here.
    #[oai(status = 201)]
    Created(Json<IngestKeyCreated>),
}

pub struct AnalyticsApi {
    store: Store,
    providers: Providers,
}

impl AnalyticsApi {
    pub fn new(store: Store, providers: Providers) -> Self {
        Self { store, providers }
    }

    async fn dashboard(
        &self,
        caller: Principal,
        id: CustomerId,
        start: Option<String>,
        end: Option<String>,
    ) -> Result<DashboardResponse> {
        let customer = self.store.read_blocking(|tx| Ok(record(tx, &scope(tx, &caller, id)?)?.customer))?;
        let range = parse_range(start.as_deref(), end.as_deref(), Day::today())?;
        let provider = self.providers.for_customer(&customer);
        let figures = provider.figures(&customer, range).await?;
        Ok(DashboardResponse::Ok(Json(metrics::compute(range, &figures)), provider.source().as_str().to_string()))
    }
}

/// Checks every event of a batch; one 422 names each bad `events[i].field`.
fn check_batch(batch: &EventBatch, now: Timestamp) -> Result<Vec<Event>> {
    if batch.events.is_empty() || batch.events.len() > MAX_BATCH {
        return Err(Error::invalid("events", format!("must hold 1–{MAX_BATCH} events")));
    }
    let mut complaints = Validation::default();
    let mut count = 0;
    let mut good = Vec::with_capacity(batch.events.len());
    for (i, e) in batch.events.iter().enumerate() {
        let candidate = Candidate {
            user_id: &e.user_id,
            event_name: &e.event_name,
            timestamp: Timestamp::parse(&e.timestamp),
            platform: e.platform,
            session_id: &e.session_id,
            engagement_time_msec: e.engagement_time_msec,
        };
        match events::check(candidate, now) {
            Ok(event) => good.push(event),
            Err(problems) => {
                for (field, why) in problems {
                    if count < MAX_COMPLAINTS {
                        complaints.add(format!("events[{i}].{field}"), why);
                        count += 1;
                    }
                }
            }
        }
    }
    complaints.finish()?;
    Ok(good)
}

#[OpenApi(prefix_path = "/analytics-dashboard", tag = "AnalyticsTag::Analytics")]
impl AnalyticsApi {
    /// A customer's analytics (admin or its users)
    ///
    /// Figures for `start_date`–`end_date` (both `YYYY-MM-DD`, UTC, both included; default the 30 days
    /// ending today; at most 366 days). From the customer's Firebase project's Google Analytics 4
    /// property when it has one and the portal holds a service account, else from the events sent to
    /// the portal; a customer with neither gets zeros.
    #[oai(path = "/customer/:customer_id", method = "get")]
    async fn customer_analytics(
        &self,
        auth: Auth,
        customer_id: Path<CustomerId>,
        /// First day, `YYYY-MM-DD`; default 29 days before `end_date`.
        start_date: Query<Option<String>>,
        /// Last day, `YYYY-MM-DD`; default today (UTC).
        end_date: Query<Option<String>>,
    ) -> Result<DashboardResponse> {
        self.dashboard(auth.0, customer_id.0, start_date.0, end_date.0).await
    }

    /// My customer's analytics (customer users)
    ///
    /// The same figures as `/analytics-dashboard/customer/{customer_id}` for the caller's own customer.
    #[oai(path = "/my-analytics", method = "get")]
    async fn my_analytics(
        &self,
        auth: Auth,
        /// First day, `YYYY-MM-DD`; default 29 days before `end_date`.
        start_date: Query<Option<String>>,
        /// Last day, `YYYY-MM-DD`; default today (UTC).
        end_date: Query<Option<String>>,
    ) -> Result<DashboardResponse> {
        let id = auth.0.own_customer()?;
        self.dashboard(auth.0, id, start_date.0, end_date.0).await
    }

    /// Send app events (admin or the customer's ingest key)
    ///
    /// 1–1000 events, stored all or nothing: one bad event answers 422 naming `events[i].field` and
    /// nothing of the batch is kept. Events update the customer's daily rollups at once.
    #[oai(path = "/customer/:customer_id/events", method = "post")]
    async fn ingest(
        &self,
        caller: IngestCaller,
        customer_id: Path<CustomerId>,
        body: JsonBody<EventBatch>,
    ) -> Result<StoredResponse> {
        let id = customer_id.0;
        if let IngestCaller::User(user) = &caller {
            user.require_admin()?;
        }
        let now = Timestamp::now();
        let stored = self
            .store
            .write(move |tx| {
                let scope = match &caller {
                    IngestCaller::Key(secret) => keys::scope_of_key(tx, secret.expose(), id)?,
                    IngestCaller::User(user) => scope(tx, user, id)?,
                };
                let events = check_batch(body.get()?, now)?;
                crate::local::store_events(tx, &scope, &events)?;
                Ok(events.len() as u64)
            })
            .await?;
        Ok(StoredResponse::Accepted(Json(EventsStored { stored })))
    }

    /// Create an ingest key (admin)
    ///
    /// A key lets an app or a pipeline send this customer's events as `X-Ingest-Key`. The secret is
    /// answered once; only its hash is stored.
    #[oai(path = "/customer/:customer_id/ingest-keys", method = "post")]
    async fn create_key(&self, admin: Admin, customer_id: Path<CustomerId>) -> Result<KeyCreated> {
        let (id, caller) = (customer_id.0, admin.0);
        let (key, secret) =
            self.store.write(move |tx| keys::create(tx, &scope(tx, &caller, id)?, caller.user_id)).await?;
        Ok(KeyCreated::Created(Json(IngestKeyCreated {
            id: key.id,
            customer_id: key.customer_id,
            key: secret,
            created_at: key.created_at,
        })))
    }

    /// Revoke an ingest key (admin)
    ///
    /// The key stops working at once.
    #[oai(path = "/customer/:customer_id/ingest-keys/:key_id", method = "delete")]
    async fn revoke_key(
        &self,
        admin: Admin,
        customer_id: Path<CustomerId>,
        key_id: Path<IngestKeyId>,
    ) -> Result<NoContent> {
        let (id, key, caller) = (customer_id.0, key_id.0, admin.0);
        self.store.write(move |tx| keys::revoke(tx, &scope(tx, &caller, id)?, key)).await?;
        Ok(NoContent::NoContent)
    }
}
