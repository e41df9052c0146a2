//! `GET /health`: liveness plus a read of the store, for load balancers and uptime checks.

use poem_openapi::{payload::Json, Object, OpenApi, Tags};
use portal_core::{Error, Store};

#[derive(Tags)]
enum HealthTag {
    /// Service health
    Health,
}

/// The service is up and its store answers.
#[derive(Debug, Object)]
pub struct HealthStatus {
    /// Always `ok` when the status code is 200.
    pub status: String,
    /// The portal's version.
    pub version: String,
    /// `ok` when the store could be read and takes writes.
    pub database: String,
}

pub struct HealthApi {
    store: Store,
}

impl HealthApi {
    pub fn new(store: Store) -> Self {
        Self { store }
    }
}

#[OpenApi(tag = "HealthTag::Health")]
impl HealthApi {
    /// Health check
    ///
    /// 200 when the service runs and its store can be read and written; 503 (`upstream_unavailable`) when
    /// the store cannot be read, or refuses writes after a failed disk write (a restart recovers it). Needs
    /// no credentials and is not rate limited.
    #[oai(path = "/health", method = "get")]
    async fn health(&self) -> Result<Json<HealthStatus>, Error> {
        self.store.ping().map_err(|e| Error::upstream("the database cannot be read", e))?;
        self.store.writable().map_err(|e| {
            Error::upstream("the database refuses writes since a disk write failed; restart the portal", e)
        })?;
        Ok(Json(HealthStatus { status: "ok".into(), version: crate::VERSION.into(), database: "ok".into() }))
    }
}
