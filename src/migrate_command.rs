//! `portal migrate-store`: moves a stopped portal's store between a redb file and PostgreSQL (either way,
//! or between two schemas), every table in one consistent read, with a progress bar and a row count check.

use clap::Args;
use portal_core::backup::{Error, Result};
use portal_store::Store;

use crate::backup_command::Bar;

#[derive(Debug, Args)]
pub struct MigrateArgs {
    /// The store to copy: a data directory (its `portal.redb`) or a PostgreSQL URL (`postgres://…`).
    #[arg(long)]
    from: String,
    /// Where to copy it, empty: a data directory or a PostgreSQL URL.
    #[arg(long)]
    to: String,
    /// The schema of a PostgreSQL source.
    #[arg(long, default_value = "portal")]
    from_schema: String,
    /// The schema of a PostgreSQL target (created if missing).
    #[arg(long, default_value = "portal")]
    to_schema: String,
}

/// `portal migrate-store`.
pub fn run(args: MigrateArgs) -> Result<()> {
    let from = open(&args.from, &args.from_schema)?;
    let to = open(&args.to, &args.to_schema)?;
    let mut bar = Bar::of("copy", "rows");
    let copied = portal_store::migrate::copy(&from, &to, |p| bar.show(p));
    eprintln!();
    let copied = copied?;
    println!(
        "copied {} tables, {} rows from {} to {} (row counts checked)",
        copied.tables,
        copied.rows,
        describe(&args.from, &args.from_schema),
        describe(&args.to, &args.to_schema)
    );
    Ok(())
}

fn is_database(location: &str) -> bool {
    location.starts_with("postgres://") || location.starts_with("postgresql://")
}

/// The store at `location`, refused while a portal serves it (a redb file is locked by its portal; a
/// PostgreSQL schema by the advisory lock every portal holds on it).
fn open(location: &str, schema: &str) -> Result<Store> {
    let opened = match is_database(location) {
        true => Store::open_postgres_alone(location, schema),
        false => Store::open(std::path::Path::new(location)),
    };
    opened.map_err(|e| Error(format!("cannot open {}: {e}", describe(location, schema))))
}

/// `location` for messages (never a database URL, which may carry a password).
fn describe(location: &str, schema: &str) -> String {
    match is_database(location) {
        true => format!("the PostgreSQL schema {schema:?}"),
        false => location.to_string(),
    }
}
