//! Outbound webhooks following the Standard Webhooks specification: admins register endpoints; every
//! module records its events with [`emit`] in the transaction of the change that caused them; a worker
//! delivers them, signed, with retries, and keeps each attempt.
#![forbid(unsafe_code)]

mod api;
mod config;
mod emit;
pub mod model;
mod secrets;
pub mod signature;
mod tables;
pub mod target;
mod worker;

use std::sync::{Arc, OnceLock};
use std::time::Duration;

use portal_core::WriteTx;
use portal_core::{Context, Job, Module, Result};

pub use api::WebhooksApi;
pub use config::{AllowHttp, RetryDelays, WebhooksConfig};
pub use emit::emit;
pub use model::EventKind;
pub use secrets::key_of;

pub struct WebhooksModule;

impl Module for WebhooksModule {
    const NAME: &'static str = "webhooks";
    type Api = WebhooksApi;

    fn install(tx: &WriteTx) -> Result<()> {
        tables::create_all(tx)?;
        secrets::install(tx)
    }

    fn api(ctx: &Context) -> Result<WebhooksApi> {
        Ok(WebhooksApi::new(ctx.store.clone(), ctx.settings::<WebhooksConfig>()?))
    }

    fn jobs(_ctx: &Context) -> Vec<Job> {
        // One worker for every run, so that its HTTP client keeps its connections to the endpoints (and
        // their TLS sessions) from one run to the next: the worker runs after every write that made
        // deliveries.
        let worker = Arc::new(OnceLock::new());
        vec![
            Job::new("webhook-deliveries", Duration::from_secs(1), move |ctx: Context| {
                let worker = Arc::clone(&worker);
                async move {
                    let worker = match worker.get() {
                        Some(worker) => worker,
                        None => {
                            let new = worker::Worker::new(ctx.store.clone(), ctx.settings::<WebhooksConfig>()?)?;
                            worker.get_or_init(|| new)
                        }
                    };
                    worker.run().await.map(drop)
                }
            })
            .woken_by(&worker::NEW_DELIVERIES),
            // On start, then daily: the delivery log keeps 30 days.
            Job::new("webhook-retention", Duration::from_secs(86_400), |ctx: Context| async move {
                loop {
                    let pruned = ctx.store.write(|tx| worker::prune(tx, portal_core::Timestamp::now(), 5_000)).await?;
                    if pruned < 5_000 {
                        return Ok(());
                    }
                }
            }),
        ]
    }
}

/// What `emit` takes as `data`: an API view as its JSON.
pub fn data<T: poem_openapi::types::ToJSON>(view: &T) -> serde_json::Value {
    view.to_json().unwrap_or(serde_json::Value::Null)
}
