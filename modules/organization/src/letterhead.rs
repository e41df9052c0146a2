//! The profile as documents and mail print it.

use portal_core::{ReadTx, Result};
use portal_documents::format::address_lines;
use portal_documents::model::{Letterhead, Party};

use crate::model::{Logo, LogoFormat, Organization};
use crate::service;

/// Tells the store that the letterhead will be read soon (fetched with the next read).
pub fn expect(tx: &impl ReadTx) {
    service::expect(tx);
}

/// The seller block, bank details, footer and locale of every document, and the logo, as stored now.
pub fn read(tx: &impl ReadTx) -> Result<(Letterhead, Option<Logo>)> {
    Ok((of(&service::get(tx)?), service::logo(tx)?))
}

pub fn of(org: &Organization) -> Letterhead {
    let a = &org.address;
    let mut lines = address_lines(&a.street, &a.city, &a.state, &a.postal_code, &a.country);
    lines.extend(org.tax_id.iter().map(|id| format!("Tax ID {id}")));
    lines.extend(org.email.iter().cloned());
    lines.extend(org.phone.iter().cloned());
    lines.extend(org.website.iter().cloned());
    let mut bank: Vec<String> = org.iban.iter().map(|iban| format!("IBAN {}", grouped(iban))).collect();
    bank.extend(org.bic.iter().map(|bic| format!("BIC {bic}")));
    bank.extend(org.bank_details.iter().flat_map(|text| text.lines().map(str::to_owned)));
    Letterhead {
        seller: Party { name: org.legal_name.clone(), lines },
        bank,
        footer: org.invoice_footer.clone(),
        locale: org.default_locale.clone(),
    }
}

/// An IBAN in groups of four, as it is printed to be read and typed.
fn grouped(iban: &str) -> String {
    let chars: Vec<char> = iban.chars().filter(|c| !c.is_whitespace()).collect();
    chars.chunks(4).map(|group| group.iter().collect::<String>()).collect::<Vec<_>>().join(" ")
}

impl Logo {
    pub fn for_document(&self) -> portal_documents::Logo<'_> {
        match self.format {
            LogoFormat::Png => portal_documents::Logo::Png(&self.bytes),
            LogoFormat::Svg => portal_documents::Logo::Svg(&self.bytes),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_profile_prints_as_a_letterhead() {
        let mut org =
            Organization { legal_name: "Northwind".into(), default_locale: "de-DE".into(), ..Default::default() };
        org.address.street = "Hauptstraße 5".into();
        org.address.city = "Berlin".into();
        org.address.postal_code = "10115".into();
        org.address.country = "DE".into();
        org.tax_id = Some("DE123456789".into());
        org.iban = Some("DE89370400440532013000".into());
        org.bank_details = Some("Reference: invoice number\nThank you".into());
        let lh = of(&org);
        assert_eq!(lh.seller.lines, ["Hauptstraße 5", "10115 Berlin", "DE", "Tax ID DE123456789"]);
        assert_eq!(lh.bank, ["IBAN DE89 3704 0044 0532 0130 00", "Reference: invoice number", "Thank you"]);
        assert_eq!(lh.locale, "de-DE");
    }
}
