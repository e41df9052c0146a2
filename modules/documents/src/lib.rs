//! Documents: invoices and proposals as PDF, typeset in-process by typst from a template and fonts compiled
//! into the binary. No system font is read and nothing is fetched, so a document renders the same on every
//! machine, and the same data gives the same bytes.
//!
//! The modules that own the records (billing, proposals) turn them into the [`model`] types; this crate
//! formats nothing about their rules, only how a document reads.
#![forbid(unsafe_code)]

pub mod format;
pub mod model;
mod render;
pub mod sample;
mod world;

use std::path::PathBuf;

use clap::Args;

pub use render::{Job, Logo, Renderer};

/// Documents' settings.
#[derive(Debug, Clone, Default, Args)]
pub struct DocumentsConfig {
    /// A typst file that replaces the built-in invoice template (it reads the invoice from `data.json` and
    /// the logo from `logo.png` or `logo.svg`; see docs/documents.md). Checked at start.
    #[arg(long, env = "PORTAL_INVOICE_TEMPLATE")]
    pub invoice_template: Option<PathBuf>,
}

#[derive(Debug)]
pub enum DocumentError {
    /// The template did not compile with the data it was given.
    Template(String),
}

impl std::fmt::Display for DocumentError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Template(why) => write!(f, "the document template failed: {why}"),
        }
    }
}

impl std::error::Error for DocumentError {}

impl From<DocumentError> for portal_core::Error {
    fn from(e: DocumentError) -> Self {
        portal_core::Error::internal(e.to_string())
    }
}

/// The renderer every module shares, built (and a replaced template checked) the first time it is asked
/// for, at start.
pub fn renderer(ctx: &portal_core::Context) -> portal_core::Result<std::sync::Arc<Renderer>> {
    let config = ctx.settings::<DocumentsConfig>()?;
    ctx.services.get_or_try_init(|| Ok(Renderer::new(&config)?))
}

/// Renders on a blocking thread: typesetting takes milliseconds of CPU, which must not stall the server's
/// async workers. At most one render per core runs at a time, the others wait their turn: more at once
/// would only share the cores and make each slower (and the process larger).
pub async fn render_blocking<F>(render: F) -> portal_core::Result<Vec<u8>>
where
    F: FnOnce() -> Result<Vec<u8>, DocumentError> + Send + 'static,
{
    static RENDERING: std::sync::OnceLock<tokio::sync::Semaphore> = std::sync::OnceLock::new();
    let places = RENDERING
        .get_or_init(|| tokio::sync::Semaphore::new(std::thread::available_parallelism().map_or(2, |n| n.get())));
    let _place = places.acquire().await.map_err(portal_core::Error::internal)?;
    match tokio::task::spawn_blocking(render).await {
        Ok(pdf) => Ok(pdf?),
        Err(e) => Err(portal_core::Error::internal(format!("rendering stopped: {e}"))),
    }
}

/// A document answered as a PDF file.
#[derive(poem_openapi::ApiResponse)]
pub enum PdfFile {
    /// The document as PDF (A4), named in `Content-Disposition`. The same record gives the same bytes.
    #[oai(status = 200, content_type = "application/pdf")]
    Pdf(
        poem_openapi::payload::Binary<Vec<u8>>,
        /// `inline; filename="INV-2026-000001.pdf"`.
        #[oai(header = "Content-Disposition")]
        String,
    ),
}

impl PdfFile {
    /// `bytes` shown in the browser, saved as `name.pdf` (a name made only of letters, digits, `-` and `_`).
    pub fn inline(name: &str, bytes: Vec<u8>) -> Self {
        let safe: String =
            name.chars().map(|c| if c.is_ascii_alphanumeric() || c == '-' || c == '_' { c } else { '_' }).collect();
        Self::Pdf(poem_openapi::payload::Binary(bytes), format!("inline; filename=\"{safe}.pdf\""))
    }
}
