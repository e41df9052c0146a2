//! The `portal` command: `serve` runs the HTTP service; `openapi` prints the API document; `backup` takes a
//! snapshot (from the running server, or from the stopped store); `restore`, `admin` and `analytics` work
//! on the store directly while the server is stopped.
#![deny(unsafe_code)]

mod backup_command;
mod migrate_command;

use std::io::BufReader;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use clap::{Parser, Subcommand};
use portal::{logging, App, Config};
use portal_core::config::StoreConfig;
use portal_core::ids::CustomerId;
use portal_core::Store;

/// jemalloc rather than the system allocator: glibc's arenas keep the memory of every password hash
/// (argon2's 19 MiB) after a sign-in, so an idle server held ~140 MB after a few sign-ins; jemalloc
/// gives it back (~30 MB) and its thread caches make GETs ~10 % cheaper.
#[global_allocator]
static ALLOCATOR: tikv_jemallocator::Jemalloc = tikv_jemallocator::Jemalloc;

/// jemalloc's settings, read when it starts (`_RJEM_MALLOC_CONF` in the environment overrides them):
/// memory freed goes back to the system after about a second, by one background thread, instead of
/// staying for ten seconds and going back only when the process allocates again, which an idle server
/// does not. So what the start needed for a moment (~5 MB) does not stay with an idle server.
/// A reference to an array is a plain pointer, as jemalloc's `const char *malloc_conf` is.
#[allow(unsafe_code)] // an exported name; nothing unsafe runs
#[export_name = "_rjem_malloc_conf"]
static JEMALLOC_SETTINGS: &[u8; 68] = b"background_thread:true,max_background_threads:1,dirty_decay_ms:1000\0";

#[derive(Parser)]
#[command(name = "portal", version, about = "Self-hosted customer analytics and billing portal")]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
#[allow(clippy::large_enum_variant)] // parsed once at start-up
enum Command {
    /// Serve the HTTP API, `/docs` and `/openapi.json`.
    Serve(Config),
    /// Print the OpenAPI document.
    Openapi,
    /// Back up the store to a file: from a running server (`--server URL --token T`), or directly from
    /// --data-dir while the server is stopped.
    Backup(backup_command::BackupArgs),
    /// Replace the store with a backup (the server must be stopped).
    Restore(backup_command::RestoreArgs),
    /// Copy a stopped portal's store to the other backend: `--from DIR --to postgres://…`, or back.
    MigrateStore(migrate_command::MigrateArgs),
    /// Manage admins (works while the server is stopped).
    Admin {
        #[command(subcommand)]
        command: AdminCommand,
    },
    /// Load analytics data (works while the server is stopped).
    Analytics {
        #[command(subcommand)]
        command: AnalyticsCommand,
    },
}

#[derive(Subcommand)]
enum AnalyticsCommand {
    /// Import a Firebase BigQuery export (newline-delimited JSON) into a customer's analytics.
    Import {
        #[command(flatten)]
        store: StoreConfig,
        /// The customer whose app the events belong to.
        #[arg(long)]
        customer: CustomerId,
        /// The export file, one event per line.
        file: PathBuf,
    },
}

#[derive(Subcommand)]
enum AdminCommand {
    /// Create an admin user.
    Create {
        #[command(flatten)]
        store: StoreConfig,
        /// The admin's email (sign-in name).
        #[arg(long)]
        email: String,
        /// The admin's password (10–256 characters, not a common one).
        #[arg(long, env = "PORTAL_ADMIN_PASSWORD", hide_env_values = true)]
        password: String,
        /// Display name.
        #[arg(long, default_value = "Administrator")]
        name: String,
    },
}

/// Installs the SIGINT and SIGTERM handlers now, before the server answers (so a signal that comes right
/// after start-up still stops it gracefully), and resolves on the first of them.
fn shutdown_signal() -> impl std::future::Future<Output = ()> {
    #[cfg(unix)]
    let signals = {
        use tokio::signal::unix::{signal, SignalKind};
        (signal(SignalKind::interrupt()).ok(), signal(SignalKind::terminate()).ok())
    };
    async move {
        #[cfg(unix)]
        match signals {
            (Some(mut int), Some(mut term)) => {
                tokio::select! {
                    _ = int.recv() => {}
                    _ = term.recv() => {}
                }
            }
            _ => {
                let _ = tokio::signal::ctrl_c().await;
            }
        }
        #[cfg(not(unix))]
        let _ = tokio::signal::ctrl_c().await;
        tracing::info!("shutdown signal received; finishing in-flight requests");
    }
}

/// `portal admin create`: opens the store directly (the server must be stopped) and adds an admin.
async fn create_admin(store: StoreConfig, email: &str, password: &str, name: &str) -> portal_core::Result<()> {
    let mut config = Config::for_data_dir(store.data_dir.clone());
    config.core.store = store;
    let store_config = config.core.store.clone();
    let store = tokio::task::spawn_blocking(move || {
        let store = Store::open_config(&store_config)?;
        portal::app::install(&store)?;
        Ok::<_, portal_core::Error>(store)
    })
    .await??;
    let ctx = portal::app::context(config, store)?;
    let user = portal_auth::create_admin(&ctx, email, password, name).await?;
    println!("admin {} created (id {})", user.email, user.id);
    Ok(())
}

/// `portal analytics import`: opens the store directly (the server must be stopped) and loads the export
/// in batches, printing progress.
fn import_analytics(store: StoreConfig, customer: CustomerId, file: &Path) -> portal_core::Result<()> {
    let input = std::fs::File::open(file)
        .map_err(|e| portal_core::Error::internal(format!("cannot open {}: {e}", file.display())))?;
    let store = Store::open_config(&store)?;
    portal::app::install(&store)?;
    let report = portal_analytics::import::import(&store, customer, BufReader::new(input), |r| {
        eprint!("\rimported {} events, skipped {} lines", r.imported, r.skipped);
    })?;
    eprintln!();
    for problem in &report.problems {
        eprintln!("skipped {problem}");
    }
    println!("imported {} events from {} lines ({} skipped)", report.imported, report.lines, report.skipped);
    Ok(())
}

fn block_on<F: std::future::Future<Output = portal_core::Result<()>>>(f: F) -> portal_core::Result<()> {
    match tokio::runtime::Runtime::new() {
        Ok(rt) => rt.block_on(f),
        Err(e) => Err(portal_core::Error::internal(e)),
    }
}

/// The runtime `serve` runs on. On PostgreSQL a point read holds its worker thread for a round trip to
/// the database (the store is called synchronously, as redb is), so twice as many workers as cores keep
/// the cores busy meanwhile; on redb, one per core. `TOKIO_WORKER_THREADS` overrides both.
fn serve_runtime(config: &Config) -> std::io::Result<tokio::runtime::Runtime> {
    let mut builder = tokio::runtime::Builder::new_multi_thread();
    builder.enable_all();
    if config.core.store.database_url.is_some() && std::env::var_os("TOKIO_WORKER_THREADS").is_none() {
        let cores = std::thread::available_parallelism().map_or(1, usize::from);
        builder.worker_threads(2 * cores);
    }
    builder.build()
}

async fn serve(config: Config) -> portal_core::Result<()> {
    let stop = shutdown_signal();
    let app = App::build(config).await?;
    app.run_until_stopped(stop).await
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let result = match cli.command {
        Command::Serve(config) => match logging::init(config.core.log_format) {
            Ok(_log) => match serve_runtime(&config) {
                Ok(runtime) => runtime.block_on(serve(config)).map_err(|e| e.to_string()),
                Err(e) => Err(format!("cannot start the runtime: {e}")),
            },
            Err(e) => Err(format!("cannot start the log writer: {e}")),
        },
        Command::Openapi => {
            print!("{}", portal::app::openapi_document());
            Ok(())
        }
        Command::Backup(args) => backup_command::run_backup(args).map_err(|e| e.0),
        Command::Restore(args) => backup_command::run_restore(args).map_err(|e| e.0),
        Command::MigrateStore(args) => migrate_command::run(args).map_err(|e| e.0),
        Command::Admin { command: AdminCommand::Create { store, email, password, name } } => {
            block_on(create_admin(store, &email, &password, &name)).map_err(|e| e.to_string())
        }
        Command::Analytics { command: AnalyticsCommand::Import { store, customer, file } } => {
            import_analytics(store, customer, &file).map_err(|e| e.to_string())
        }
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("portal: {e}");
            ExitCode::FAILURE
        }
    }
}

#[cfg(test)]
mod tests {
    use clap::CommandFactory;

    #[test]
    fn the_command_line_is_well_formed() {
        super::Cli::command().debug_assert();
    }
}
