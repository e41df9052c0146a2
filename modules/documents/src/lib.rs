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
