//! Reading and changing the profile. One record under one key: the portal serves one agency.

use portal_core::error::Validation;
use portal_core::validate::{country, locale, postal_code, text};
use portal_core::WriteTx;
use portal_core::{audit, Error, ReadTx, Result, Table, Timestamp};

use crate::logo;
use crate::model::{Logo, LogoFormat, Organization};

pub(crate) const PROFILE: Table<Organization> = Table::new("organization.profile");
pub(crate) const LOGO: Table<Logo> = Table::new("organization.logo");
const KEY: &[u8] = b"agency";

/// Checks a field's raw value; the value to keep, or why it is refused.
type FieldCheck = dyn Fn(&str) -> Result<String, String>;

/// An optional field: its name, the change to it, where it is kept, and its check.
type OptionalField<'a> = (&'static str, &'a Option<Option<String>>, &'a mut Option<String>, &'a FieldCheck);

/// The locale of a portal whose admin has not chosen one.
pub const DEFAULT_LOCALE: &str = "en-US";

/// The profile (an empty one, in the default locale, until an admin fills it in).
pub fn get(tx: &impl ReadTx) -> Result<Organization> {
    Ok(PROFILE
        .get(tx, KEY)?
        .unwrap_or_else(|| Organization { default_locale: DEFAULT_LOCALE.into(), ..Organization::default() }))
}

/// Tells the store that the profile and the logo will be read soon.
pub fn expect(tx: &impl ReadTx) {
    PROFILE.expect(tx, KEY);
    LOGO.expect(tx, KEY);
}

pub fn logo(tx: &impl ReadTx) -> Result<Option<Logo>> {
    Ok(LOGO.get(tx, KEY)?)
}

/// Fields to change: `None` keeps a field, `Some(None)` clears an optional one.
#[derive(Debug, Clone, Default)]
pub struct OrganizationChange {
    pub legal_name: Option<String>,
    pub street: Option<String>,
    pub city: Option<String>,
    pub state: Option<String>,
    pub postal_code: Option<String>,
    pub country: Option<String>,
    pub tax_id: Option<Option<String>>,
    pub email: Option<Option<String>>,
    pub phone: Option<Option<String>>,
    pub website: Option<Option<String>>,
    pub iban: Option<Option<String>>,
    pub bic: Option<Option<String>>,
    pub bank_details: Option<Option<String>>,
    pub invoice_footer: Option<Option<String>>,
    pub default_locale: Option<String>,
}

/// Applies `change` (every bad field named in one 422) and records who changed the profile: its bank
/// details are what customers pay to.
pub fn update(tx: &WriteTx, change: &OrganizationChange) -> Result<Organization> {
    let old = get(tx)?;
    let mut new = old.clone();
    let mut v = Validation::default();
    if let Some(name) = checked(&mut v, "legal_name", &change.legal_name, |s| text(s, 1, 200)) {
        new.legal_name = name;
    }
    let a = &mut new.address;
    for (field, value, slot, max) in [
        ("address.street", &change.street, &mut a.street, 200),
        ("address.city", &change.city, &mut a.city, 100),
        ("address.state", &change.state, &mut a.state, 100),
    ] {
        if let Some(line) = checked(&mut v, field, value, |s| text(s, 0, max)) {
            *slot = line;
        }
    }
    if let Some(code) = checked(&mut v, "address.postal_code", &change.postal_code, postal_code) {
        a.postal_code = code;
    }
    if let Some(code) = checked(&mut v, "address.country", &change.country, country) {
        a.country = code;
    }
    let optional: [OptionalField; 8] = [
        ("tax_id", &change.tax_id, &mut new.tax_id, &|s| text(s, 1, 50)),
        ("email", &change.email, &mut new.email, &email),
        ("phone", &change.phone, &mut new.phone, &phone),
        ("website", &change.website, &mut new.website, &website),
        ("iban", &change.iban, &mut new.iban, &iban),
        ("bic", &change.bic, &mut new.bic, &bic),
        ("bank_details", &change.bank_details, &mut new.bank_details, &|s| multiline(s, 1000)),
        ("invoice_footer", &change.invoice_footer, &mut new.invoice_footer, &|s| multiline(s, 2000)),
    ];
    for (field, value, slot, check) in optional {
        match value {
            None => {}
            Some(None) => *slot = None,
            Some(Some(raw)) if raw.trim().is_empty() => *slot = None,
            Some(Some(raw)) => {
                if let Some(checked) = v.check(field, check(raw)) {
                    *slot = Some(checked);
                }
            }
        }
    }
    if let Some(tag) = &change.default_locale {
        if v.check("default_locale", locale(tag)).is_some() {
            new.default_locale = tag.clone();
        }
    }
    v.finish()?;
    if new == old {
        return Ok(old);
    }
    new.updated_at = Some(Timestamp::now());
    PROFILE.insert(tx, KEY, &new)?;
    audit::record(tx, "organization", "update", "profile", None)?;
    Ok(new)
}

/// A given value checked (recorded in `v` when refused); `None` when not given or refused.
fn checked(
    v: &mut Validation,
    field: &str,
    value: &Option<String>,
    check: impl Fn(&str) -> Result<String, String>,
) -> Option<String> {
    value.as_deref().and_then(|raw| v.check(field, check(raw)))
}

/// Whether `bytes` may be a logo of `format`: their size (413), then what they hold (422).
pub fn check_logo(format: LogoFormat, bytes: &[u8]) -> Result<()> {
    if bytes.len() > logo::MAX_LOGO_BYTES {
        return Err(Error::payload_too_large().with_detail("max_bytes", logo::MAX_LOGO_BYTES));
    }
    logo::check(format, bytes).map_err(|why| Error::invalid("logo", why))
}

/// Replaces the logo after checking it.
pub fn set_logo(tx: &WriteTx, format: LogoFormat, bytes: &[u8]) -> Result<Logo> {
    check_logo(format, bytes)?;
    let stored = Logo { format, bytes: bytes.to_vec(), updated_at: Timestamp::now() };
    LOGO.insert(tx, KEY, &stored)?;
    audit::record(tx, "organization", "logo_set", "logo", None)?;
    Ok(stored)
}

/// Removes the logo; `not_found` when there is none.
pub fn remove_logo(tx: &WriteTx) -> Result<()> {
    if !LOGO.remove(tx, KEY)? {
        return Err(Error::not_found("logo"));
    }
    audit::record(tx, "organization", "logo_remove", "logo", None)
}

fn email(value: &str) -> Result<String, String> {
    let normalized = portal_auth::users::normalize_email(value);
    portal_auth::users::validate_email(&normalized).map(|()| normalized)
}

fn phone(value: &str) -> Result<String, String> {
    let trimmed = value.trim();
    portal_auth::users::validate_phone(trimmed).map(|()| trimmed.to_string())
}

/// An http(s) address of at most 200 characters without spaces.
fn website(value: &str) -> Result<String, String> {
    let trimmed = value.trim();
    let scheme_ok = trimmed.starts_with("https://") || trimmed.starts_with("http://");
    let host_ok =
        trimmed.split("//").nth(1).is_some_and(|rest| rest.split('/').next().is_some_and(|h| h.contains('.')));
    if scheme_ok && host_ok && trimmed.len() <= 200 && !trimmed.chars().any(|c| c.is_whitespace() || c.is_control()) {
        Ok(trimmed.to_string())
    } else {
        Err("must be a web address like https://agency.example".into())
    }
}

/// An IBAN: spaces dropped, upper case, 15–34 letters and digits whose check digits are right (ISO 13616:
/// the number read with A=10…Z=35, country and check digits moved to the end, leaves 1 modulo 97).
pub fn iban(value: &str) -> Result<String, String> {
    let compact: String = value.chars().filter(|c| !c.is_whitespace()).collect::<String>().to_ascii_uppercase();
    let shape_ok = (15..=34).contains(&compact.len())
        && compact.chars().all(|c| c.is_ascii_alphanumeric())
        && compact.chars().take(2).all(|c| c.is_ascii_uppercase())
        && compact.chars().skip(2).take(2).all(|c| c.is_ascii_digit());
    if !shape_ok {
        return Err("must be an IBAN like DE89 3704 0044 0532 0130 00".into());
    }
    let rotated = compact.chars().skip(4).chain(compact.chars().take(4));
    let remainder = rotated.fold(0u32, |acc, c| match c.to_digit(36) {
        Some(d) if d >= 10 => (acc * 100 + d) % 97,
        Some(d) => (acc * 10 + d) % 97,
        None => acc,
    });
    if remainder == 1 {
        Ok(compact)
    } else {
        Err("is not a valid IBAN (its check digits do not match)".into())
    }
}

/// A BIC (SWIFT code): 4 letters for the bank, 2 for the country, 2 letters or digits for the place and
/// optionally 3 for the branch.
pub fn bic(value: &str) -> Result<String, String> {
    let upper = value.trim().to_ascii_uppercase();
    let ok = (upper.len() == 8 || upper.len() == 11)
        && upper.chars().take(6).all(|c| c.is_ascii_uppercase())
        && upper.chars().skip(6).all(|c| c.is_ascii_alphanumeric());
    if ok {
        Ok(upper)
    } else {
        Err("must be a BIC like DEUTDEFF or DEUTDEFF500".into())
    }
}

/// Text over several lines, at most `max` characters, each line without control or invisible characters.
fn multiline(value: &str, max: usize) -> Result<String, String> {
    let normalized = value.replace("\r\n", "\n");
    let trimmed = normalized.trim();
    if trimmed.chars().count() > max {
        return Err(format!("must be at most {max} characters"));
    }
    match trimmed.lines().find_map(portal_core::text::hidden_characters) {
        Some(why) => Err(why),
        None => Ok(trimmed.to_string()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ibans_are_checked_by_their_check_digits() {
        assert_eq!(iban("de89 3704 0044 0532 0130 00"), Ok("DE89370400440532013000".to_string()));
        assert_eq!(iban("GB82 WEST 1234 5698 7654 32"), Ok("GB82WEST12345698765432".to_string()));
        assert!(iban("DE88 3704 0044 0532 0130 00").unwrap_err().contains("check digits"));
        assert!(iban("not an iban").is_err());
    }

    #[test]
    fn bics_and_websites() {
        assert_eq!(bic("deutdeff"), Ok("DEUTDEFF".to_string()));
        assert_eq!(bic("DEUTDEFF500"), Ok("DEUTDEFF500".to_string()));
        assert!(bic("DEUT1EFF").is_err());
        assert!(website("https://agency.example").is_ok());
        assert!(website("agency.example").is_err());
        assert!(website("https://localhost").is_err());
        assert!(multiline("Line one\nLine two", 100).is_ok());
        assert!(multiline("bidi \u{202e} override", 100).is_err());
    }
}
