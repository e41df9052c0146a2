//! Compiling a template with a document's data into PDF bytes.

use std::path::Path;
use std::sync::OnceLock;

use chrono::{Datelike, NaiveDate};
use serde::Serialize;
use typst::diag::SourceDiagnostic;
use typst::foundations::{Bytes, Datetime, Smart};
use typst::syntax::Source;
use typst::WorldExt;
use typst_layout::PagedDocument;
use typst_pdf::{PdfOptions, Timestamp};

use crate::world::{template_source, DocumentWorld, Fonts, LOGO_PNG_PATH, LOGO_SVG_PATH};
use crate::{sample, DocumentError, DocumentsConfig};

const INVOICE_TEMPLATE: &str = include_str!("../templates/invoice.typ");
const PROPOSAL_TEMPLATE: &str = include_str!("../templates/proposal.typ");
const CREDIT_NOTE_TEMPLATE: &str = include_str!("../templates/credit_note.typ");
/// Places a logo and nothing else: a logo that renders here renders on every document.
const LOGO_CHECK: &str = "#image(json(\"data.json\").logo, width: 4cm)";

/// Compiled documents are cached by typst between renders; this many renders' worth is kept, so repeated
/// documents stay fast and memory stays flat.
const CACHE_AGE: usize = 16;

/// The agency's logo as stored: checked PNG or SVG bytes.
#[derive(Debug, Clone, Copy)]
pub enum Logo<'a> {
    Png(&'a [u8]),
    Svg(&'a [u8]),
}

/// What makes a document's bytes: its data, its logo, a stable identity and its date.
pub struct Job<'a, T: Serialize> {
    pub data: &'a T,
    pub logo: Option<Logo<'a>>,
    /// Names the document for the PDF's identifier: the same document keeps the same identifier.
    pub ident: String,
    /// The document's own date; the PDF carries it, never the time it was rendered.
    pub date: NaiveDate,
}

/// The templates and fonts documents are made with, ready to render. Build once at start.
pub struct Renderer {
    /// Loaded on the first render: a portal that makes no document keeps no typesetter in memory.
    fonts: OnceLock<Fonts>,
    invoice: Source,
    proposal: Source,
    credit_note: Source,
    logo_check: Source,
}

impl Renderer {
    /// The built-in templates (their tests render them), or the invoice template `config` names, checked by
    /// rendering a sample.
    pub fn new(config: &DocumentsConfig) -> Result<Self, DocumentError> {
        let invoice = match &config.invoice_template {
            Some(path) => read_template(path)?,
            None => INVOICE_TEMPLATE.to_owned(),
        };
        let renderer = Self {
            fonts: OnceLock::new(),
            invoice: template_source(invoice)?,
            proposal: template_source(PROPOSAL_TEMPLATE.to_owned())?,
            credit_note: template_source(CREDIT_NOTE_TEMPLATE.to_owned())?,
            logo_check: template_source(LOGO_CHECK.to_owned())?,
        };
        if config.invoice_template.is_some() {
            renderer.invoice(&sample::job(&sample::invoice()))?;
            // What the check compiled is not needed again: an idle portal keeps no typesetting caches.
            comemo::evict(0);
        }
        Ok(renderer)
    }

    pub fn invoice<T: Serialize>(&self, job: &Job<T>) -> Result<Vec<u8>, DocumentError> {
        self.render(&self.invoice, job)
    }

    pub fn proposal<T: Serialize>(&self, job: &Job<T>) -> Result<Vec<u8>, DocumentError> {
        self.render(&self.proposal, job)
    }

    pub fn credit_note<T: Serialize>(&self, job: &Job<T>) -> Result<Vec<u8>, DocumentError> {
        self.render(&self.credit_note, job)
    }

    /// Whether documents can show `logo`: it is decoded as the documents decode it. Why not, if not.
    pub fn check_logo(&self, logo: Logo) -> Result<(), String> {
        let job = Job { data: &serde_json::json!({}), logo: Some(logo), ident: "logo".into(), date: NaiveDate::MIN };
        self.render(&self.logo_check, &job).map(drop).map_err(|DocumentError::Template(why)| why)
    }

    fn render<T: Serialize>(&self, template: &Source, job: &Job<T>) -> Result<Vec<u8>, DocumentError> {
        let logo = job.logo.map(|logo| match logo {
            Logo::Png(bytes) => (LOGO_PNG_PATH, Bytes::new(bytes.to_vec())),
            Logo::Svg(bytes) => (LOGO_SVG_PATH, Bytes::new(bytes.to_vec())),
        });
        let world = DocumentWorld {
            shared: self.fonts.get_or_init(Fonts::load),
            template,
            data: Bytes::new(data_json(job.data, logo.as_ref().map(|(path, _)| *path))?),
            logo,
            today: job.date,
        };
        let compiled = typst::compile::<PagedDocument>(&world).output;
        let pdf = compiled.and_then(|document| {
            let options = PdfOptions {
                ident: Smart::Custom(job.ident.clone()),
                creator: Smart::Custom(Some("Portal".into())),
                timestamp: timestamp(job.date),
                ..PdfOptions::default()
            };
            typst_pdf::pdf(&document, &options)
        });
        comemo::evict(CACHE_AGE);
        pdf.map_err(|errors| DocumentError::Template(describe(&world, template, &errors)))
    }
}

/// The document's fields, and `logo`: the path to read the logo from, or null.
fn data_json<T: Serialize>(data: &T, logo: Option<&str>) -> Result<Vec<u8>, DocumentError> {
    let broken = |e: serde_json::Error| DocumentError::Template(e.to_string());
    let mut value = serde_json::to_value(data).map_err(broken)?;
    if let serde_json::Value::Object(fields) = &mut value {
        fields.insert("logo".into(), logo.into());
    }
    serde_json::to_vec(&value).map_err(broken)
}

fn read_template(path: &Path) -> Result<String, DocumentError> {
    std::fs::read_to_string(path)
        .map_err(|e| DocumentError::Template(format!("cannot read the template {}: {e}", path.display())))
}

fn timestamp(day: NaiveDate) -> Option<Timestamp> {
    let date = Datetime::from_ymd(day.year(), u8::try_from(day.month()).ok()?, u8::try_from(day.day()).ok()?)?;
    Some(Timestamp::new_utc(date))
}

/// Typst's errors as one line each, with where in the template they are.
fn describe(world: &DocumentWorld, template: &Source, errors: &[SourceDiagnostic]) -> String {
    let text = template.text();
    let lines: Vec<String> = errors
        .iter()
        .map(|error| {
            let line = world
                .range(error.span)
                .and_then(|range| text.get(..range.start))
                .map(|before| before.matches('\n').count() + 1);
            match line {
                Some(line) => format!("line {line}: {}", error.message),
                None => error.message.to_string(),
            }
        })
        .collect();
    lines.join("; ")
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sample;

    fn renderer() -> Renderer {
        Renderer::new(&DocumentsConfig::default()).unwrap()
    }

    /// Keeps a rendering where a person can look at it: `target/documents/NAME.pdf`.
    fn keep(name: &str, pdf: &[u8]) {
        let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../target/documents");
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::write(dir.join(format!("{name}.pdf")), pdf).unwrap();
    }

    #[test]
    fn the_same_invoice_gives_the_same_bytes() {
        let r = renderer();
        let doc = sample::invoice_with_lines(20);
        let first = r.invoice(&sample::job(&doc)).unwrap();
        let second = r.invoice(&sample::job(&doc)).unwrap();
        assert!(first.starts_with(b"%PDF-"));
        assert_eq!(first, second);
        keep("sample-invoice", &first);
        let mut other = doc.clone();
        other.number = "INV-2026-000043".into();
        assert_ne!(r.invoice(&sample::job(&other)).unwrap(), first);
    }

    #[test]
    fn long_invoices_proposals_and_credit_notes_render() {
        let r = renderer();
        let long = r.invoice(&sample::job(&sample::invoice_with_lines(200))).unwrap();
        assert!(long.len() > 10_000, "{} bytes", long.len());
        keep("sample-invoice-200-lines", &long);
        let proposal = r.proposal(&sample::job(&sample::proposal())).unwrap();
        assert!(proposal.starts_with(b"%PDF-"));
        keep("sample-proposal", &proposal);
        let note = sample::credit_note();
        let credit_note = r.credit_note(&sample::job(&note)).unwrap();
        assert_eq!(credit_note, r.credit_note(&sample::job(&note)).unwrap());
        keep("sample-credit-note", &credit_note);
    }

    #[test]
    fn a_logo_is_placed() {
        let r = renderer();
        let svg = br##"<svg xmlns="http://www.w3.org/2000/svg" width="120" height="40"><rect width="120" height="40" fill="#c33"/></svg>"##;
        let doc = sample::invoice();
        let mut job = sample::job(&doc);
        let without = r.invoice(&job).unwrap();
        job.logo = Some(Logo::Svg(svg));
        let with = r.invoice(&job).unwrap();
        assert_ne!(with, without);
        keep("sample-invoice-logo", &with);
    }

    #[test]
    fn logos_are_checked_with_the_decoder_documents_use() {
        let r = renderer();
        assert_eq!(
            r.check_logo(Logo::Svg(br#"<svg xmlns="http://www.w3.org/2000/svg" width="4" height="4"/>"#)),
            Ok(())
        );
        assert!(r.check_logo(Logo::Svg(b"<svg")).is_err());
        let header_only = b"\x89PNG\r\n\x1a\n\0\0\0\rIHDR\0\0\0\x01\0\0\0\x01\x08\0\0\0\0\0\0\0\0IEND";
        assert!(r.check_logo(Logo::Png(header_only)).is_err());
    }

    #[test]
    fn a_broken_template_is_refused_at_start_with_its_line() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("invoice.typ");
        std::fs::write(&path, "#let data = json(\"data.json\")\n= Invoice #data.number\n#data.no_such_field\n")
            .unwrap();
        let config = DocumentsConfig { invoice_template: Some(path.clone()) };
        let err = Renderer::new(&config).err().unwrap().to_string();
        assert!(err.contains("line 3"), "{err}");
        assert!(err.contains("no_such_field"), "{err}");

        std::fs::write(&path, "#let data = json(\"data.json\")\n= Invoice #data.number\n").unwrap();
        let custom = Renderer::new(&config).unwrap();
        assert!(custom.invoice(&sample::job(&sample::invoice())).unwrap().starts_with(b"%PDF-"));

        let missing = DocumentsConfig { invoice_template: Some(dir.path().join("nope.typ")) };
        assert!(Renderer::new(&missing).err().unwrap().to_string().contains("cannot read"));
    }

    #[test]
    fn a_template_cannot_read_files_it_was_not_given() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("invoice.typ");
        std::fs::write(&path, "#read(\"/etc/passwd\")\n").unwrap();
        let err = Renderer::new(&DocumentsConfig { invoice_template: Some(path) }).err().unwrap().to_string();
        assert!(err.contains("line 1"), "{err}");
    }
}
