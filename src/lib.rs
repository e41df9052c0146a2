//! The portal binary's library half: assembles the modules into one HTTP app (`app`), with the
//! cross-cutting middleware, the health endpoint and the API documentation.
#![forbid(unsafe_code)]

pub mod app;
pub mod backup;
mod bare_answers;
pub mod config;
pub mod docs;
pub mod health;
pub mod log_writer;
pub mod logging;
pub mod middleware;
mod operations;
pub mod server;

pub use app::App;

/// The portal's version, as `/health` and the OpenAPI document report it.
pub const VERSION: &str = env!("CARGO_PKG_VERSION");

pub use config::Config;
