//! The Firebase provider: a customer's figures from the Google Analytics 4 property linked to its
//! Firebase project, read with the portal's service account. The property (and the data stream of the
//! customer's Firebase app) come from the Firebase Management API; the counts from the Analytics Data
//! API's `runReport`, one report per figure, run concurrently. Answers are cached per customer and
//! range; every Google failure becomes a 503 `upstream_unavailable`.

mod cache;
mod credentials;
mod http;
mod reports;
mod token;

use std::time::Duration;

use crate::config::AnalyticsConfig;
use async_trait::async_trait;
use futures_util::future::try_join_all;
use portal_core::ids::CustomerId;
use portal_core::{Error, Result};
use portal_customers::model::Customer;
use reqwest::Method;
use serde_json::Value;

use self::cache::TtlCache;
use self::credentials::ServiceAccount;
use self::token::TokenSource;
use crate::metrics::Figures;
use crate::provider::{AnalyticsProvider, Source};
use crate::range::{DateRange, Day};

/// How long a project's property and streams are reused: they change rarely.
const PROPERTY_TTL: Duration = Duration::from_secs(3600);
/// Cached dashboards and properties, at most.
const CACHE_ENTRIES: usize = 10_000;

#[derive(Clone, PartialEq, Eq, Hash)]
struct FiguresKey {
    customer: CustomerId,
    project: String,
    app: Option<String>,
    start: Day,
    end: Day,
}

/// A project's GA4 property and its data streams.
#[derive(Clone)]
struct Property {
    /// `properties/123456789`
    name: String,
    /// (Firebase app id, GA4 stream id)
    streams: Vec<(String, String)>,
}

pub struct FirebaseProvider {
    client: reqwest::Client,
    tokens: TokenSource,
    retries: u32,
    management_base: String,
    data_base: String,
    figures: TtlCache<FiguresKey, Figures>,
    properties: TtlCache<String, Property>,
}

impl FirebaseProvider {
    /// The provider, when `FIREBASE_CREDENTIALS` is configured (a broken key file fails start-up).
    pub fn from_config(config: &AnalyticsConfig) -> Result<Option<Self>> {
        let Some(path) = &config.firebase_credentials else { return Ok(None) };
        let account = ServiceAccount::load(path)?;
        tracing::info!(service_account = %account.client_email, "analytics: Firebase customers read Google Analytics");
        let timeout = Duration::from_secs(config.analytics_timeout_seconds.max(1));
        let client = reqwest::Client::builder()
            .timeout(timeout)
            .connect_timeout(timeout.min(Duration::from_secs(5)))
            .user_agent(concat!("portal/", env!("CARGO_PKG_VERSION")))
            .build()
            .map_err(|e| Error::internal(format!("cannot build the Google API client: {e}")))?;
        let base = |url: &str| url.trim_end_matches('/').to_string();
        Ok(Some(Self {
            client,
            tokens: TokenSource::new(account, config.firebase_token_url.clone(), config.analytics_retries),
            retries: config.analytics_retries,
            management_base: base(&config.firebase_management_api_base),
            data_base: base(&config.ga4_data_api_base),
            figures: TtlCache::new(Duration::from_secs(config.analytics_cache_seconds), CACHE_ENTRIES),
            properties: TtlCache::new(PROPERTY_TTL, CACHE_ENTRIES),
        }))
    }

    /// One authorised call; a 401 drops the cached token and tries once more with a fresh one.
    async fn call(&self, what: &str, method: Method, url: &str, body: Option<&Value>) -> Result<Value> {
        let mut refreshed = false;
        loop {
            let token = self.tokens.get(&self.client).await.map_err(|f| f.into_error("access token"))?;
            let outcome = http::send(self.retries, || {
                let request = self.client.request(method.clone(), url).bearer_auth(token.expose());
                match body {
                    Some(body) => request.json(body),
                    None => request,
                }
            })
            .await;
            match outcome {
                Err(f) if f.is_unauthorized() && !refreshed => {
                    self.tokens.forget(&token).await;
                    refreshed = true;
                }
                other => return other.map_err(|f| f.into_error(what)),
            }
        }
    }

    /// The GA4 property linked to `project` (`projects/{id}/analyticsDetails`).
    async fn property(&self, project: &str) -> Result<Property> {
        if let Some(hit) = self.properties.get(&project.to_string()) {
            return Ok(hit);
        }
        let url = format!("{}/v1beta1/projects/{project}/analyticsDetails", self.management_base);
        let details = self.call("analyticsDetails", Method::GET, &url, None).await?;
        let property = parse_details(&details)?;
        self.properties.put(project.to_string(), property.clone());
        Ok(property)
    }
}

fn unlinked(why: &str) -> Error {
    Error::upstream(format!("Google Analytics has no data for this customer: {why}"), why)
        .with_detail("upstream_status", "NOT_FOUND")
}

fn parse_details(details: &Value) -> Result<Property> {
    let id = details
        .get("analyticsProperty")
        .and_then(|property| property.get("id"))
        .and_then(Value::as_str)
        .ok_or_else(|| unlinked("the Firebase project is not linked to a Google Analytics property"))?;
    let number = id.strip_prefix("properties/").unwrap_or(id);
    if number.is_empty() || !number.bytes().all(|b| b.is_ascii_digit()) {
        return Err(Error::upstream("Google Analytics sent an unexpected answer", format!("property id {id:?}"))
            .with_detail("upstream_status", "INVALID_RESPONSE"));
    }
    let streams = details["streamMappings"]
        .as_array()
        .map(|mappings| {
            mappings
                .iter()
                .filter_map(|m| {
                    let app = m["app"].as_str()?.rsplit('/').next()?.to_string();
                    let stream = match &m["streamId"] {
                        Value::String(s) => s.clone(),
                        Value::Number(n) => n.to_string(),
                        _ => return None,
                    };
                    Some((app, stream))
                })
                .collect()
        })
        .unwrap_or_default();
    Ok(Property { name: format!("properties/{number}"), streams })
}

#[async_trait]
impl AnalyticsProvider for FirebaseProvider {
    fn source(&self) -> Source {
        Source::Firebase
    }

    async fn figures(&self, customer: &Customer, range: DateRange) -> Result<Figures> {
        let project = customer.firebase_project_id.clone().ok_or_else(|| Error::internal("no Firebase project"))?;
        let key = FiguresKey {
            customer: customer.id,
            project: project.clone(),
            app: customer.firebase_app_id.clone(),
            start: range.start,
            end: range.end,
        };
        if let Some(hit) = self.figures.get(&key) {
            return Ok(hit);
        }
        let property = self.property(&project).await?;
        let stream = match &customer.firebase_app_id {
            Some(app) => Some(
                property
                    .streams
                    .iter()
                    .find(|(a, _)| a == app)
                    .map(|(_, s)| s.clone())
                    .ok_or_else(|| unlinked("the customer's Firebase app has no Google Analytics data stream"))?,
            ),
            None => None,
        };
        let url = format!("{}/v1beta/{}:runReport", self.data_base, property.name);
        let calls = reports::requests(range, stream.as_deref()).into_iter().map(|(kind, body)| {
            let url = &url;
            async move { self.call("runReport", Method::POST, url, Some(&body)).await.map(|answer| (kind, answer)) }
        });
        let answers = try_join_all(calls).await?;
        let figures = reports::assemble(range, answers).map_err(|f| f.into_error("runReport"))?;
        self.figures.put(key, figures.clone());
        Ok(figures)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn reads_the_property_and_its_streams() {
        let details = json!({"name": "projects/acme/analyticsDetails",
            "analyticsProperty": {"id": "properties/123456789", "displayName": "Acme", "analyticsAccountId": "9"},
            "streamMappings": [
                {"app": "projects/acme/androidApps/1:111:android:aa", "streamId": "555", "measurementId": ""},
                {"app": "projects/acme/webApps/1:111:web:bb", "streamId": 777}]});
        let p = parse_details(&details).unwrap();
        assert_eq!(p.name, "properties/123456789");
        assert_eq!(p.streams, vec![("1:111:android:aa".into(), "555".into()), ("1:111:web:bb".into(), "777".into())]);
        let e = parse_details(&json!({})).err().unwrap();
        assert_eq!(e.code(), portal_core::ErrorCode::UpstreamUnavailable);
        assert!(parse_details(&json!({"analyticsProperty": {"id": "properties/../x"}})).is_err());
    }
}
