//! `/webhooks`: the endpoints admins register, their secrets and their deliveries.

use std::sync::Arc;

use poem::Request;
use poem_openapi::param::{Path, Query};
use poem_openapi::payload::Json;
use poem_openapi::{ApiResponse, Object, OpenApi, Tags};
use portal_core::table::{key, key_tail};
use portal_core::{Admin, Error, JsonBody, ListResponse, PageRequest, PutBody, Result, Store, Timestamp};

use crate::config::WebhooksConfig;
use crate::model::{Attempt, Delivery, DeliveryId, DeliveryStatus, Endpoint, EndpointId, EventKind, SealedSecret};
use crate::tables::{BY_ENDPOINT, DELIVERIES, DUE, ENDPOINTS, EVENTS};
use crate::{secrets, target, worker};

#[derive(Tags)]
enum WebhooksTag {
    /// Events sent to the agency's own systems (Standard Webhooks)
    Webhooks,
}

/// A registered endpoint. Events are POSTed to `url` as `{type, timestamp, data}` with the Standard
/// Webhooks headers `webhook-id`, `webhook-timestamp` and `webhook-signature`.
#[derive(Debug, Clone, Object)]
#[oai(rename = "WebhookEndpoint")]
pub struct EndpointView {
    pub id: EndpointId,
    pub url: String,
    pub description: String,
    /// The event types it receives; empty: all.
    pub events: Vec<EventKind>,
    /// A disabled endpoint receives nothing; its pending deliveries fail.
    pub enabled: bool,
    /// Why the portal disabled it (it answered 410 Gone).
    #[oai(skip_serializing_if_is_none)]
    pub disabled_reason: Option<String>,
    /// When the secret replaced by the latest rotation stops signing, while it still does.
    #[oai(skip_serializing_if_is_none)]
    pub previous_secret_expires_at: Option<Timestamp>,
    pub created_at: Timestamp,
    pub updated_at: Timestamp,
}

impl EndpointView {
    fn of(e: &Endpoint, now: Timestamp) -> Self {
        Self {
            id: e.id,
            url: e.url.clone(),
            description: e.description.clone(),
            events: e.events.clone(),
            enabled: e.enabled,
            disabled_reason: e.disabled_reason.clone(),
            previous_secret_expires_at: e.secrets.iter().filter_map(|s| s.expires_at).filter(|at| *at > now).max(),
            created_at: e.created_at,
            updated_at: e.updated_at,
        }
    }
}

/// A new endpoint with its signing secret, shown this once.
#[derive(Debug, Clone, Object)]
struct NewEndpointView {
    #[oai(flatten)]
    endpoint: EndpointView,
    /// `whsec_…`: verify each delivery's `webhook-signature` with it. Not shown again.
    secret: String,
}

#[derive(Debug, Clone, Object)]
#[oai(deny_unknown_fields)]
struct NewEndpoint {
    /// https (or http on loopback when `PORTAL_WEBHOOKS_ALLOW_HTTP=loopback`), resolving to public addresses.
    url: String,
    #[oai(validator(max_length = 500))]
    description: Option<String>,
    /// The event types to receive; absent or empty: all.
    events: Option<Vec<EventKind>>,
}

#[derive(Debug, Clone, Object)]
#[oai(deny_unknown_fields)]
struct EndpointUpdate {
    url: String,
    #[oai(validator(max_length = 500))]
    description: String,
    events: Vec<EventKind>,
    /// Re-enabling an endpoint the portal disabled clears its `disabled_reason`.
    enabled: bool,
}

#[derive(Debug, Clone, Object)]
#[oai(deny_unknown_fields)]
struct RotateSecret {
    /// How long the current secret keeps signing beside the new one (default 86400, at most 7 days; 0:
    /// not at all).
    #[oai(validator(maximum(value = "604800")))]
    previous_secret_expires_in_seconds: Option<u32>,
}

/// The new secret.
#[derive(Debug, Clone, Object)]
struct RotatedSecret {
    /// `whsec_…`, signing from now on. Not shown again.
    secret: String,
    /// Until then each delivery carries both signatures.
    #[oai(skip_serializing_if_is_none)]
    previous_secret_expires_at: Option<Timestamp>,
}

/// One attempt to deliver an event.
#[derive(Debug, Clone, Object)]
#[oai(rename = "WebhookAttempt")]
pub struct AttemptView {
    pub at: Timestamp,
    /// The endpoint's HTTP status; absent when no answer came.
    #[oai(skip_serializing_if_is_none)]
    pub status_code: Option<u16>,
    #[oai(skip_serializing_if_is_none)]
    pub error: Option<String>,
    pub duration_ms: u64,
}

/// An event on its way to an endpoint, with its attempts.
#[derive(Debug, Clone, Object)]
#[oai(rename = "WebhookDelivery")]
pub struct DeliveryView {
    pub id: DeliveryId,
    /// The `webhook-id` it is sent under (the same on every attempt and for every endpoint).
    pub webhook_id: String,
    pub event_type: EventKind,
    pub status: DeliveryStatus,
    pub attempts: Vec<AttemptView>,
    #[oai(skip_serializing_if_is_none)]
    pub next_attempt_at: Option<Timestamp>,
    pub created_at: Timestamp,
}

impl DeliveryView {
    fn of(d: &Delivery, webhook_id: String) -> Self {
        let attempt = |a: &Attempt| AttemptView {
            at: a.at,
            status_code: a.status_code,
            error: a.error.clone(),
            duration_ms: a.duration_ms,
        };
        Self {
            id: d.id,
            webhook_id,
            event_type: d.kind,
            status: d.status,
            attempts: d.attempts.iter().map(attempt).collect(),
            next_attempt_at: d.next_attempt_at.filter(|_| d.status == DeliveryStatus::Pending),
            created_at: d.created_at,
        }
    }
}

#[derive(ApiResponse)]
enum Created {
    /// The endpoint, with its secret shown this once.
    #[oai(status = 201)]
    Created(Json<NewEndpointView>),
}

#[derive(ApiResponse)]
enum Deleted {
    /// Removed; its pending deliveries end.
    #[oai(status = 204)]
    Deleted,
}

#[derive(ApiResponse)]
enum Replayed {
    /// Scheduled for an attempt now.
    #[oai(status = 202)]
    Accepted(Json<DeliveryView>),
}

pub struct WebhooksApi {
    store: Store,
    config: Arc<WebhooksConfig>,
}

impl WebhooksApi {
    pub fn new(store: Store, config: Arc<WebhooksConfig>) -> Self {
        Self { store, config }
    }

    /// An endpoint URL that may receive events: its form, and where it resolves to now.
    async fn checked_url(&self, url: &str) -> Result<String> {
        let parsed = target::check_url(url, self.config.allow_http).map_err(|why| Error::invalid("url", why))?;
        target::resolve(&parsed, self.config.allow_http).await.map_err(|why| Error::invalid("url", why))?;
        Ok(parsed.to_string())
    }

    fn endpoint(&self, id: EndpointId) -> Result<Endpoint> {
        self.store
            .read_blocking(|tx| Ok::<_, Error>(ENDPOINTS.get(tx, &id.to_key())?))?
            .ok_or_else(|| Error::not_found("webhook endpoint"))
    }
}

#[OpenApi(prefix_path = "/webhooks", tag = "WebhooksTag::Webhooks")]
impl WebhooksApi {
    /// Register a webhook endpoint (admin)
    ///
    /// Answers the endpoint with its signing secret (`whsec_…`), shown this once. From now on every event
    /// it listens for is POSTed to it, signed; see the README's Webhooks section for the payload, the
    /// headers and the retry schedule. The URL must be https and resolve to public addresses (422 names
    /// why not).
    #[oai(path = "/endpoints", method = "post")]
    async fn create(&self, _admin: Admin, body: JsonBody<NewEndpoint>) -> Result<Created> {
        let body = body.into_inner()?;
        let url = self.checked_url(&body.url).await?;
        let now = Timestamp::now();
        let (endpoint, secret) = self
            .store
            .write(move |tx| {
                let id = EndpointId::generate();
                let (shown, sealed) = secrets::generate(tx, id)?;
                let endpoint = Endpoint {
                    id,
                    url: url.clone(),
                    description: body.description.clone().unwrap_or_default(),
                    events: dedup(body.events.clone().unwrap_or_default()),
                    enabled: true,
                    disabled_reason: None,
                    secrets: vec![sealed],
                    created_at: now,
                    updated_at: now,
                };
                ENDPOINTS.insert(tx, &id.to_key(), &endpoint)?;
                portal_core::audit::record(tx, "webhooks", "create", id, None)?;
                Ok::<_, Error>((endpoint, shown))
            })
            .await?;
        Ok(Created::Created(Json(NewEndpointView { endpoint: EndpointView::of(&endpoint, now), secret })))
    }

    /// List webhook endpoints (admin)
    #[oai(path = "/endpoints", method = "get")]
    async fn list(&self, _admin: Admin) -> Result<Json<Vec<EndpointView>>> {
        let now = Timestamp::now();
        let endpoints = self.store.read_blocking(|tx| {
            let mut out = Vec::new();
            ENDPOINTS.scan_prefix(tx, &[], |_, e| {
                out.push(EndpointView::of(&e, now));
                Ok::<_, Error>(true)
            })?;
            Ok::<_, Error>(out)
        })?;
        Ok(Json(endpoints))
    }

    /// Get a webhook endpoint (admin)
    #[oai(path = "/endpoints/:endpoint_id", method = "get")]
    async fn get(&self, _admin: Admin, endpoint_id: Path<EndpointId>) -> Result<Json<EndpointView>> {
        Ok(Json(EndpointView::of(&self.endpoint(endpoint_id.0)?, Timestamp::now())))
    }

    /// Change a webhook endpoint (admin)
    ///
    /// Takes the endpoint as `GET` gives it, read-only fields unchanged or left out. Its secret stays.
    #[oai(path = "/endpoints/:endpoint_id", method = "put")]
    async fn update(
        &self,
        _admin: Admin,
        endpoint_id: Path<EndpointId>,
        body: PutBody<EndpointUpdate, EndpointView>,
    ) -> Result<Json<EndpointView>> {
        let now = Timestamp::now();
        let current = self.endpoint(endpoint_id.0)?;
        let body = body.into_inner(&EndpointView::of(&current, now))?;
        let url = if body.url == current.url { body.url.clone() } else { self.checked_url(&body.url).await? };
        let id = endpoint_id.0;
        let updated = self
            .store
            .write(move |tx| {
                let mut endpoint =
                    ENDPOINTS.get(tx, &id.to_key())?.ok_or_else(|| Error::not_found("webhook endpoint"))?;
                endpoint.url = url.clone();
                endpoint.description = body.description.clone();
                endpoint.events = dedup(body.events.clone());
                if body.enabled && !endpoint.enabled {
                    endpoint.disabled_reason = None;
                }
                endpoint.enabled = body.enabled;
                endpoint.updated_at = now.max(endpoint.updated_at);
                ENDPOINTS.insert(tx, &id.to_key(), &endpoint)?;
                portal_core::audit::record(tx, "webhooks", "update", id, None)?;
                Ok::<_, Error>(endpoint)
            })
            .await?;
        Ok(Json(EndpointView::of(&updated, now)))
    }

    /// Remove a webhook endpoint (admin)
    ///
    /// Its pending deliveries end (failed, "the endpoint was removed"); its delivery log stays 30 days.
    #[oai(path = "/endpoints/:endpoint_id", method = "delete")]
    async fn delete(&self, _admin: Admin, endpoint_id: Path<EndpointId>) -> Result<Deleted> {
        let id = endpoint_id.0;
        self.store
            .write(move |tx| {
                if !ENDPOINTS.remove(tx, &id.to_key())? {
                    return Err(Error::not_found("webhook endpoint"));
                }
                let mut pending = Vec::new();
                DUE.visit_keys(tx, &id.to_key(), |k| {
                    pending.extend(DeliveryId::from_key(key_tail(k, 16)));
                    Ok::<_, Error>(true)
                })?;
                for delivery in pending {
                    worker::abandon(tx, delivery, "the endpoint was removed")?;
                }
                portal_core::audit::record(tx, "webhooks", "delete", id, None)
            })
            .await?;
        Ok(Deleted::Deleted)
    }

    /// Rotate an endpoint's signing secret (admin)
    ///
    /// Answers the new secret, shown this once. The previous one keeps signing beside it for
    /// `previous_secret_expires_in_seconds` (default a day), so a receiver can switch without losing an
    /// event: meanwhile each delivery carries both signatures.
    #[oai(path = "/endpoints/:endpoint_id/rotate-secret", method = "post")]
    async fn rotate(
        &self,
        _admin: Admin,
        endpoint_id: Path<EndpointId>,
        body: JsonBody<RotateSecret>,
    ) -> Result<Json<RotatedSecret>> {
        self.endpoint(endpoint_id.0)?;
        let overlap = i64::from(body.into_inner()?.previous_secret_expires_in_seconds.unwrap_or(86_400));
        let (id, now) = (endpoint_id.0, Timestamp::now());
        let rotated = self
            .store
            .write(move |tx| {
                let mut endpoint =
                    ENDPOINTS.get(tx, &id.to_key())?.ok_or_else(|| Error::not_found("webhook endpoint"))?;
                let (shown, sealed) = secrets::generate(tx, id)?;
                let expires = now.plus_secs(overlap);
                let mut kept: Vec<SealedSecret> = endpoint
                    .secrets
                    .drain(..)
                    .filter(|s| s.expires_at.is_none_or(|at| at > now))
                    .map(|mut s| {
                        s.expires_at = Some(s.expires_at.map_or(expires, |at| at.min(expires)));
                        s
                    })
                    .filter(|s| overlap > 0 && s.expires_at.is_some_and(|at| at > now))
                    .collect();
                kept.insert(0, sealed);
                endpoint.secrets = kept;
                endpoint.updated_at = now.max(endpoint.updated_at);
                ENDPOINTS.insert(tx, &id.to_key(), &endpoint)?;
                portal_core::audit::record(tx, "webhooks", "rotate_secret", id, None)?;
                Ok::<_, Error>(RotatedSecret {
                    secret: shown,
                    previous_secret_expires_at: (overlap > 0).then_some(expires),
                })
            })
            .await?;
        Ok(Json(rotated))
    }

    /// An endpoint's deliveries (admin)
    ///
    /// Newest first, paged like every list, each with its attempts: when, the endpoint's status code or
    /// the error, and how long it took.
    #[oai(path = "/endpoints/:endpoint_id/deliveries", method = "get")]
    async fn deliveries(
        &self,
        req: &Request,
        _admin: Admin,
        endpoint_id: Path<EndpointId>,
        limit: Query<Option<u32>>,
        cursor: Query<Option<String>>,
    ) -> Result<ListResponse<DeliveryView>> {
        let page = PageRequest::<DeliveryId>::parse(limit.0, cursor.0.as_deref())?;
        let (id, fetch) = (endpoint_id.0, page.fetch());
        let views = self
            .store
            .read(move |tx| {
                if !ENDPOINTS.contains(tx, &id.to_key())? {
                    return Err(Error::not_found("webhook endpoint"));
                }
                let after = page.after.map(|d| key(&[&id.to_key(), &d.to_key()]));
                let mut out = Vec::new();
                BY_ENDPOINT.visit_keys_desc(tx, &id.to_key(), after.as_deref(), |k| {
                    let delivery = DeliveryId::from_key(key_tail(k, 16))
                        .map(|d| DELIVERIES.get(tx, &d.to_key()))
                        .transpose()?
                        .flatten();
                    if let Some(d) = delivery {
                        let webhook_id =
                            EVENTS.get(tx, &d.event_id.to_key())?.map(|e| e.webhook_id()).unwrap_or_default();
                        out.push(DeliveryView::of(&d, webhook_id));
                    }
                    Ok::<_, Error>(out.len() < fetch)
                })?;
                Ok(out)
            })
            .await?;
        Ok(ListResponse::new(req, views, page.limit, |d| d.id.to_string()))
    }

    /// Send a delivery again (admin)
    ///
    /// Schedules an attempt now, under the same `webhook-id`, whether it succeeded, failed or is pending.
    #[oai(path = "/endpoints/:endpoint_id/deliveries/:delivery_id/retry", method = "post")]
    async fn retry(
        &self,
        _admin: Admin,
        endpoint_id: Path<EndpointId>,
        delivery_id: Path<DeliveryId>,
    ) -> Result<Replayed> {
        let (endpoint, delivery) = (endpoint_id.0, delivery_id.0);
        let view = self
            .store
            .write(move |tx| {
                let found = DELIVERIES.get(tx, &delivery.to_key())?.filter(|d| d.endpoint_id == endpoint);
                if found.is_none() || !ENDPOINTS.contains(tx, &endpoint.to_key())? {
                    return Err(Error::not_found("delivery"));
                }
                let replayed = worker::replay(tx, delivery, Timestamp::now())?;
                let webhook_id =
                    EVENTS.get(tx, &replayed.event_id.to_key())?.map(|e| e.webhook_id()).unwrap_or_default();
                Ok(DeliveryView::of(&replayed, webhook_id))
            })
            .await?;
        Ok(Replayed::Accepted(Json(view)))
    }
}

fn dedup(mut events: Vec<EventKind>) -> Vec<EventKind> {
    events.sort_unstable();
    events.dedup();
    events
}
