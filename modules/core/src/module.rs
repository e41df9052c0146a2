//! The `Module` trait: what a feature crate gives the app. `app.rs` lists the modules once; their
//! `install`s run in one start-up write transaction, their `register`s next (before any API or job is
//! built), their APIs join one OpenAPI service and their jobs go to the scheduler.

use std::any::{Any, TypeId};
use std::collections::HashMap;
use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use crate::WriteTx;

use crate::config::Config;
use crate::error::Result;
use crate::store::Store;

/// What modules share at run time.
#[derive(Clone)]
pub struct Context {
    pub store: Store,
    /// The settings every part shares; each feature's own are in [`settings`](Self::settings).
    pub config: Arc<Config>,
    pub services: Services,
    settings: Services,
}

impl Context {
    pub fn new(store: Store, config: Config) -> Self {
        Self { store, config: Arc::new(config), services: Services::default(), settings: Services::default() }
    }

    /// Adds a feature's settings (the app gives each module's at start).
    pub fn with_settings<T: Send + Sync + 'static>(self, settings: T) -> Self {
        self.settings.get_or_init(|| settings);
        self
    }

    /// A feature's settings, as the app gave them.
    pub fn settings<T: Send + Sync + 'static>(&self) -> Result<Arc<T>> {
        self.settings.get::<T>().ok_or_else(|| {
            crate::Error::internal(format!("no settings of type {} were given", std::any::type_name::<T>()))
        })
    }
}

/// One instance per type of the services modules build from the context (the auth service, the Stripe
/// client…), so every module that needs one shares it.
#[derive(Clone, Default)]
pub struct Services {
    map: Arc<Mutex<HashMap<TypeId, Arc<dyn Any + Send + Sync>>>>,
}

impl Services {
    /// The shared `T`, built by `init` the first time it is asked for. `init` runs without the lock
    /// held, so it may ask for other services.
    pub fn get_or_init<T: Send + Sync + 'static>(&self, init: impl FnOnce() -> T) -> Arc<T> {
        if let Some(found) = self.get::<T>() {
            return found;
        }
        let built = Arc::new(init());
        let mut map = self.lock();
        let entry = map.entry(TypeId::of::<T>()).or_insert_with(|| Arc::clone(&built) as Arc<dyn Any + Send + Sync>);
        Arc::clone(entry).downcast::<T>().unwrap_or(built)
    }

    /// Like [`get_or_init`](Self::get_or_init) for a fallible `init`; a failure is not remembered.
    pub fn get_or_try_init<T: Send + Sync + 'static>(&self, init: impl FnOnce() -> Result<T>) -> Result<Arc<T>> {
        if let Some(found) = self.get::<T>() {
            return Ok(found);
        }
        let built = init()?;
        Ok(self.get_or_init(|| built))
    }

    /// The shared `T`, if built.
    pub fn get<T: Send + Sync + 'static>(&self) -> Option<Arc<T>> {
        self.lock().get(&TypeId::of::<T>()).and_then(|s| Arc::clone(s).downcast::<T>().ok())
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<TypeId, Arc<dyn Any + Send + Sync>>> {
        self.map.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}

type JobFn = dyn Fn(Context) -> Pin<Box<dyn Future<Output = Result<()>> + Send>> + Send + Sync;

/// A background job the server runs every `every` (sweeps, recurring invoices, expiry), and at once when
/// its `wake` is notified.
#[derive(Clone)]
pub struct Job {
    pub name: &'static str,
    pub every: Duration,
    pub run: Arc<JobFn>,
    pub wake: Option<&'static tokio::sync::Notify>,
}

impl Job {
    pub fn new<F, Fut>(name: &'static str, every: Duration, run: F) -> Self
    where
        F: Fn(Context) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = Result<()>> + Send + 'static,
    {
        Self { name, every, run: Arc::new(move |ctx| Box::pin(run(ctx))), wake: None }
    }

    /// Also runs the job as soon as `wake` is notified (`notify_one`: a notice given while the job runs
    /// makes it run once more right after), e.g. from a commit hook of the write that gave it work.
    pub fn woken_by(self, wake: &'static tokio::sync::Notify) -> Self {
        Self { wake: Some(wake), ..self }
    }
}

pub trait Module {
    /// Prefix of the module's table names (`billing.invoices`) and its schema-version key.
    const NAME: &'static str;
    type Api: poem_openapi::OpenApi;

    /// Creates the module's tables and runs its migrations, inside the start-up write transaction.
    fn install(tx: &WriteTx) -> Result<()>;

    /// Registers what the module gives other modules (e.g. its per-customer data with the customers
    /// module) and checks its settings; runs once at start, before any API or job is built.
    fn register(_ctx: &Context) -> Result<()> {
        Ok(())
    }

    /// Builds the module's API handlers (a bad configuration fails start-up here).
    fn api(ctx: &Context) -> Result<Self::Api>;

    /// Background jobs run on a schedule.
    fn jobs(_ctx: &Context) -> Vec<Job> {
        Vec::new()
    }
}
