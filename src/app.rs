//! Assembles the portal: opens the store, installs every module's tables in one start-up transaction,
//! joins the module APIs into one OpenAPI service, wraps it in the middleware and serves it until a
//! shutdown signal, letting in-flight requests finish.

use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use poem::error::MethodNotAllowedError;
use poem::http::Method;
use poem::middleware::{CookieJarManager, CookieJarManagerEndpoint};
use poem::{Endpoint, EndpointExt, IntoEndpoint, IntoResponse, Middleware, Request, Response};
use poem_openapi::OpenApiService;
use portal_core::{store, Context, Job, Result, Store};

use crate::Config;
use tokio::net::TcpListener;

use portal_analytics::AnalyticsModule;
use portal_audit::AuditModule;
use portal_auth::AuthModule;
use portal_billing::BillingModule;
use portal_core::rate_limit;
use portal_core::Module;
use portal_core::WriteTx;
use portal_customers::CustomersModule;
use portal_notify::NotifyModule;
use portal_organization::OrganizationModule;
use portal_proposals::ProposalsModule;
use portal_users::UsersModule;
use portal_webhooks::WebhooksModule;

use crate::backup::BackupApi;
use crate::health::HealthApi;
use crate::operations::{self, Described};
use crate::{docs, middleware, server};

/// Declares the feature modules once, in start-up order, and derives from that one list everything the app
/// does with them: their joined API type, building their APIs, installing their tables, running their
/// registrations and collecting their jobs.
macro_rules! modules {
    ($($module:ty),* $(,)?) => {
        /// Every module's API, joined in one tuple.
        type ModuleApis = ($(<$module as Module>::Api,)*);

        fn module_apis(ctx: &Context) -> Result<ModuleApis> {
            Ok(($(<$module>::api(ctx)?,)*))
        }

        fn install_modules(tx: &WriteTx) -> Result<()> {
            $(<$module>::install(tx)?;)*
            Ok(())
        }

        fn register_modules(ctx: &Context) -> Result<()> {
            $(<$module>::register(ctx)?;)*
            Ok(())
        }

        fn module_jobs(ctx: &Context) -> Vec<Job> {
            [$(<$module>::jobs(ctx),)*].concat()
        }
    };
}

// Adding a module is one line here.
modules!(
    NotifyModule,
    WebhooksModule,
    AuthModule,
    UsersModule,
    CustomersModule,
    OrganizationModule,
    ProposalsModule,
    BillingModule,
    AnalyticsModule,
    AuditModule,
);

/// The whole API: the portal's own operations, then every module's.
type Apis = (HealthApi, BackupApi, ModuleApis);

fn apis(ctx: &Context) -> Result<Apis> {
    Ok((
        HealthApi::new(ctx.store.clone()),
        BackupApi::new(ctx.store.clone(), ctx.config.store.data_dir.clone()),
        module_apis(ctx)?,
    ))
}

/// Creates or migrates the core's and every module's tables, in one transaction.
pub fn install(store: &Store) -> Result<()> {
    store.write_blocking(|tx| {
        store::install_core(tx)?;
        install_modules(tx)
    })
}

/// The context the modules run in, with their registrations made.
pub fn context(config: Config, store: Store) -> Result<Context> {
    let ctx = config.into_context(store);
    register_modules(&ctx)?;
    Ok(ctx)
}

/// The core's own jobs, then every module's.
fn jobs(ctx: &Context) -> Vec<Job> {
    let purge = Job::new("rate-limit-purge", Duration::from_secs(60), |ctx: Context| async move {
        rate_limit::shared(&ctx).purge_stale();
        Ok(())
    });
    let forget_keys = Job::new("idempotency-sweep", Duration::from_secs(3600), |ctx: Context| async move {
        portal_core::idempotency::sweep(&ctx.store).await.map(|_| ())
    });
    [vec![purge, forget_keys], module_jobs(ctx)].concat()
}

/// How long in-flight requests may take to finish after a shutdown signal.
const SHUTDOWN_GRACE: Duration = Duration::from_secs(4);

/// poem-openapi's service for the API's description: the OpenAPI document and Swagger UI.
pub fn openapi_service() -> OpenApiService<Described<Apis>, ()> {
    OpenApiService::new(Described::default(), "Portal", crate::VERSION).description(
        "Customer analytics and billing portal: customers, proposals with milestone billing, invoices \
         paid through Stripe, and app analytics. Errors always use the envelope \
         `{\"error\":{\"code\",\"message\",\"details\"}}`.",
    )
}

/// The OpenAPI document as served at `/openapi.json` and committed as `openapi/openapi.json`.
pub fn openapi_document() -> String {
    openapi_service().spec() + "\n"
}

/// The whole HTTP app for `ctx`.
pub fn endpoint(ctx: &Context) -> Result<impl Endpoint<Output = Response>> {
    let description = openapi_service();
    let gate =
        Arc::new(middleware::Gate { authenticator: portal_auth::service(ctx)?, limiter: rate_limit::shared(ctx) });
    let site = Site {
        api: operations::routes(apis(ctx)?),
        spec: docs::spec_endpoint(description.spec() + "\n"),
        docs: docs::swagger_endpoint(description.swagger_ui_html()),
        pages: portal_pages::pages(ctx)?,
    };
    let routes = Arc::new(site.around(move |ep, req| middleware::admit(ep, req, Arc::clone(&gate))));
    // Not boxed: hyper already keeps each request's future in a box of the connection's, and a box of
    // its own here cost every request two copies of this future.
    let routes = CookieJarForSignIn { with_jar: CookieJarManager::new().transform(Arc::clone(&routes)), routes };
    let body_deadline = Duration::from_secs(ctx.config.connections.request_timeout_seconds);
    Ok(with_middleware(routes, ctx.config.served_over_tls(), body_deadline))
}

/// The API with its two documents and the hosted pages beside it: `/openapi.json` and `/docs` by their exact
/// paths, the pages (`/pay/…`) by their prefix, every other path to the API. A plain match, where poem's
/// router with the API nested under `/` would look each request up twice and rewrite its URI on the way in.
struct Site<A, S, D> {
    api: A,
    spec: S,
    docs: D,
    pages: portal_pages::Pages,
}

enum Document {
    Spec,
    Docs,
}

impl<A: Endpoint, S: Endpoint, D: Endpoint> Endpoint for Site<A, S, D> {
    type Output = Response;

    async fn call(&self, req: Request) -> poem::Result<Response> {
        let document = match req.uri().path() {
            "/openapi.json" => Document::Spec,
            "/docs" => Document::Docs,
            // Boxed: the pages' futures are large, and every API request would carry room for them.
            path if portal_pages::serves(path) => return Box::pin(self.pages.call(req)).await,
            _ => return self.api.call(req).await.map(IntoResponse::into_response),
        };
        if !matches!(*req.method(), Method::GET | Method::HEAD) {
            return Err(MethodNotAllowedError.into());
        }
        match document {
            Document::Spec => self.spec.call(req).await.map(IntoResponse::into_response),
            Document::Docs => self.docs.call(req).await.map(IntoResponse::into_response),
        }
    }
}

/// poem's cookie jar (the `Cookie` header parsed, shared state, the jar's changes written into the response)
/// for the sign-in routes under `/auth/`, the only ones that set or clear cookies; every other request goes
/// straight to `routes` (the credential check reads the session cookie from the header itself).
struct CookieJarForSignIn<E> {
    routes: Arc<E>,
    with_jar: CookieJarManagerEndpoint<Arc<E>>,
}

impl<E: Endpoint> Endpoint for CookieJarForSignIn<E> {
    type Output = Response;

    async fn call(&self, req: Request) -> poem::Result<Response> {
        if req.uri().path().starts_with("/auth/") {
            self.with_jar.call(req).await
        } else {
            // The endpoint itself, not `Arc`'s `Endpoint`, whose future would wrap this one in another.
            E::call(&self.routes, req).await.map(IntoResponse::into_response)
        }
    }
}

/// Wraps `ep` in the portal's cross-cutting middleware: the request's own handling (id, body limit, panics
/// and errors in the envelope, security headers, access log line).
pub fn with_middleware(
    ep: impl Endpoint + 'static,
    tls: bool,
    body_deadline: Duration,
) -> impl Endpoint<Output = Response> {
    ep.around(move |ep, req| middleware::handle(ep, req, tls, body_deadline)).into_endpoint()
}

/// A built portal, bound to its listener and ready to serve.
pub struct App {
    listener: TcpListener,
    ctx: Context,
    /// Set once every background job has had its first turn.
    first_round: Arc<tokio::sync::watch::Sender<bool>>,
}

impl App {
    /// Opens the store and binds `config.addr`.
    pub async fn build(config: Config) -> Result<Self> {
        let listener = TcpListener::bind(config.core.addr).await?;
        Self::with_listener(config, listener).await
    }

    /// Opens the store and serves on an already bound listener (tests bind port 0).
    pub async fn with_listener(config: Config, listener: TcpListener) -> Result<Self> {
        let store_config = config.core.store.clone();
        let store = tokio::task::spawn_blocking(move || {
            let store = Store::open_config(&store_config)?;
            install(&store)?;
            Ok::<_, portal_core::Error>(store)
        })
        .await??;
        let ctx = context(config, store)?;
        portal_auth::bootstrap_admin(&ctx).await?;
        Ok(Self { listener, ctx, first_round: Arc::new(tokio::sync::watch::Sender::new(false)) })
    }

    pub fn local_addr(&self) -> SocketAddr {
        self.listener.local_addr().unwrap_or_else(|_| SocketAddr::from(([127, 0, 0, 1], 0)))
    }

    pub fn port(&self) -> u16 {
        self.local_addr().port()
    }

    /// The open store (tests read it directly to check what a request left behind).
    pub fn store(&self) -> Store {
        self.ctx.store.clone()
    }

    /// Resolves once every background job has had its first turn after [`App::run_until_stopped`]
    /// started them: each ran once, or found that another portal runs the jobs. What a caller does after
    /// it does not race the jobs' runs at start (such as the billing of the customers due).
    pub fn first_round(&self) -> impl Future<Output = ()> + Send + 'static {
        let mut done = self.first_round.subscribe();
        async move {
            let _ = done.wait_for(|done| *done).await;
        }
    }

    /// Serves until `shutdown` resolves, then lets in-flight requests finish and closes the store.
    pub async fn run_until_stopped(self, shutdown: impl Future<Output = ()> + Send) -> Result<()> {
        let App { listener, ctx, first_round } = self;
        let jobs = jobs(&ctx);
        let round = FirstRound { left: Arc::new(std::sync::atomic::AtomicUsize::new(jobs.len())), done: first_round };
        let scheduled: Vec<_> = jobs.into_iter().map(|job| spawn_job(job, ctx.clone(), round.clone())).collect();
        // Room for many connections where the system allows it; the connection limits stay below it.
        let file_limit = rlimit::increase_nofile_limit(u64::MAX).ok();
        let limits =
            server::Limits::new(&ctx.config.connections, ctx.config.rate_limit.trusted_proxies.clone(), file_limit);
        tracing::info!(
            addr = %listener.local_addr()?,
            data = %ctx.store.path().display(),
            max_connections = limits.max_connections,
            "portal listening"
        );
        let endpoint = endpoint(&ctx)?;
        let result =
            server::serve(listener, endpoint, limits, ctx.config.served_over_tls(), shutdown, SHUTDOWN_GRACE).await;
        // Wait for the aborted jobs to let go of the store, so it is closed when this returns.
        for job in &scheduled {
            job.abort();
        }
        for job in scheduled {
            let _ = job.await;
        }
        drop(ctx);
        tracing::info!("portal stopped");
        Ok(result?)
    }
}

/// Runs `job` every `job.every` (and when its wake is notified) until aborted, while this process runs the
/// background jobs (one portal of those sharing a PostgreSQL database does); a failed run is logged and
/// retried next time.
fn spawn_job(job: Job, ctx: Context, first_round: FirstRound) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        let mut ticker = tokio::time::interval(job.every);
        ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let mut first_round = Some(first_round);
        loop {
            match job.wake {
                Some(wake) => {
                    tokio::select! {
                        _ = ticker.tick() => {}
                        () = wake.notified() => {}
                    }
                }
                None => {
                    ticker.tick().await;
                }
            }
            let store = ctx.store.clone();
            if tokio::task::spawn_blocking(move || store.leads_jobs()).await.unwrap_or(false) {
                if let Err(e) = (job.run)(ctx.clone()).await {
                    tracing::warn!(job = job.name, error = %e, "scheduled job failed");
                }
            }
            if let Some(round) = first_round.take() {
                round.took_turn();
            }
        }
    })
}

/// Counts the jobs that have yet to take their first turn.
#[derive(Clone)]
struct FirstRound {
    left: Arc<std::sync::atomic::AtomicUsize>,
    done: Arc<tokio::sync::watch::Sender<bool>>,
}

impl FirstRound {
    fn took_turn(self) {
        if self.left.fetch_sub(1, std::sync::atomic::Ordering::AcqRel) == 1 {
            self.done.send_replace(true);
        }
    }
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicUsize, Ordering};

    use super::*;

    static WAKE: tokio::sync::Notify = tokio::sync::Notify::const_new();
    static RUNS: AtomicUsize = AtomicUsize::new(0);

    async fn runs_reach(n: usize) {
        let reached = async {
            while RUNS.load(Ordering::SeqCst) < n {
                tokio::time::sleep(Duration::from_millis(5)).await;
            }
        };
        tokio::time::timeout(Duration::from_secs(30), reached).await.expect("the job did not run");
    }

    #[tokio::test]
    async fn a_job_runs_on_its_schedule_and_again_as_soon_as_it_is_woken() {
        let store = Store::in_memory().unwrap();
        install(&store).unwrap();
        let ctx = context(Config::for_data_dir(".".into()), store).unwrap();
        let job = Job::new("hourly", Duration::from_secs(3600), |_| async {
            RUNS.fetch_add(1, Ordering::SeqCst);
            Ok(())
        })
        .woken_by(&WAKE);
        let round =
            FirstRound { left: Arc::new(AtomicUsize::new(1)), done: Arc::new(tokio::sync::watch::Sender::new(false)) };
        let task = spawn_job(job, ctx, round);
        runs_reach(1).await; // the first round, at once
        WAKE.notify_one();
        runs_reach(2).await; // an hour early
        WAKE.notify_one();
        runs_reach(3).await;
        task.abort();
    }
}
