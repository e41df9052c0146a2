//! The stored profile and logo.

use portal_core::{Record, Timestamp};
use serde::{Deserialize, Serialize};

/// The agency's own details, printed on every document and mail. Empty until an admin fills it in.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Organization {
    pub legal_name: String,
    pub address: Address,
    pub tax_id: Option<String>,
    pub email: Option<String>,
    pub phone: Option<String>,
    pub website: Option<String>,
    pub iban: Option<String>,
    pub bic: Option<String>,
    /// Payment instructions in the agency's own words (another bank, a reference to quote…).
    pub bank_details: Option<String>,
    pub invoice_footer: Option<String>,
    /// BCP 47; documents and mail use it unless a customer's user has its own.
    pub default_locale: String,
    pub updated_at: Option<Timestamp>,
}

impl Record for Organization {}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Address {
    pub street: String,
    pub city: String,
    pub state: String,
    pub postal_code: String,
    /// ISO 3166-1 alpha-2, upper case; empty until set.
    pub country: String,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum LogoFormat {
    Png,
    Svg,
}

impl LogoFormat {
    pub fn content_type(self) -> &'static str {
        match self {
            Self::Png => "image/png",
            Self::Svg => "image/svg+xml",
        }
    }
}

/// The logo as uploaded, checked.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Logo {
    pub format: LogoFormat,
    pub bytes: Vec<u8>,
    pub updated_at: Timestamp,
}

impl Record for Logo {}
