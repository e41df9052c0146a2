//! `cargo bench --bench documents`: how long typesetting an invoice takes, as the PDF endpoint renders it
//! (fonts and template compiled in, typst's caches warm from earlier renders of other invoices). Each round
//! renders a different invoice number, so no round is served whole from the cache. Prints p50 and p99.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing)] // a failed check is a panic here

use std::time::{Duration, Instant};

use portal_documents::{sample, DocumentsConfig, Renderer};

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    sorted[((sorted.len() as f64 - 1.0) * p).round() as usize]
}

fn measure(renderer: &Renderer, lines: usize, rounds: usize) {
    let mut took = Vec::with_capacity(rounds);
    let mut bytes = 0;
    for round in 0..rounds {
        let mut doc = sample::invoice_with_lines(lines);
        doc.number = format!("INV-2026-{round:06}");
        let job = sample::job(&doc);
        let start = Instant::now();
        let pdf = renderer.invoice(&job).unwrap();
        took.push(start.elapsed());
        bytes = pdf.len();
    }
    took.sort();
    println!(
        "invoice of {lines:>3} lines: p50 {:>6.1} ms  p99 {:>6.1} ms  ({rounds} renders, {} KiB each)",
        percentile(&took, 0.5).as_secs_f64() * 1e3,
        percentile(&took, 0.99).as_secs_f64() * 1e3,
        bytes / 1024
    );
}

fn main() {
    let start = Instant::now();
    let renderer = Renderer::new(&DocumentsConfig::default()).unwrap();
    println!("renderer ready (fonts parsed, both templates checked) in {:.0} ms", start.elapsed().as_secs_f64() * 1e3);
    measure(&renderer, 1, 200);
    measure(&renderer, 20, 200);
    measure(&renderer, 200, 50);
}
