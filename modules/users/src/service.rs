//! Profile and settings changes. Changing the email or the password needs the current password; a new
//! password ends every other session of the user.

use portal_auth::model::{Settings, User};
use portal_auth::{password, sessions, users, AuthService};
use portal_core::error::Validation;
use portal_core::{Error, Principal, Result, Timestamp};

/// A partial profile change; `None` leaves a field as it is.
pub struct ProfileChange {
    pub name: Option<String>,
    /// `Some(None)` clears the phone.
    pub phone: Option<Option<String>>,
    pub email: Option<String>,
    pub new_password: Option<String>,
    pub current_password: Option<String>,
}

/// A partial settings change.
pub struct SettingsChange {
    pub timezone: Option<String>,
    pub locale: Option<String>,
    pub invoice_emails: Option<bool>,
    pub product_updates: Option<bool>,
    pub security_alerts_sms: Option<bool>,
}

pub async fn update_profile(auth: &AuthService, caller: &Principal, change: ProfileChange) -> Result<User> {
    let current = auth.user(caller.user_id).await?;
    let mut v = Validation::default();
    let email = change.email.as_deref().map(users::normalize_email).filter(|e| *e != current.email);
    if let Some(name) = &change.name {
        v.check("name", users::validate_name(name));
    }
    if let Some(Some(phone)) = &change.phone {
        v.check("phone", users::validate_phone(phone));
    }
    if let Some(email) = &email {
        v.check("email", users::validate_email(email));
    }
    if let Some(new_password) = &change.new_password {
        let for_email = email.as_deref().unwrap_or(&current.email);
        v.check("new_password", password::check_policy(new_password, for_email));
    }
    let sensitive = email.is_some() || change.new_password.is_some();
    if sensitive && change.current_password.is_none() {
        v.add("current_password", "required to change the email or the password");
    }
    v.finish()?;
    if sensitive {
        let presented = change.current_password.clone().unwrap_or_default();
        if !password::verify(presented, current.password_hash.clone()).await? {
            return Err(Error::invalid("current_password", "is incorrect"));
        }
    }
    let new_hash = match change.new_password {
        Some(p) => Some(password::hash(p).await?),
        None => None,
    };
    let keep_session = caller.session_id;
    let id = caller.user_id;
    auth.store()
        .write(move |tx| {
            let old = users::get(tx, id)?.ok_or_else(|| Error::not_found("user"))?;
            let mut new = old.clone();
            if let Some(name) = &change.name {
                new.name = name.trim().to_string();
            }
            if let Some(phone) = &change.phone {
                new.phone = phone.as_ref().map(|p| p.trim().to_string());
            }
            if let Some(email) = &email {
                new.email = email.clone();
            }
            let password_changed = new_hash.is_some();
            if new_hash.is_some() {
                new.password_hash = new_hash.clone();
            }
            new.updated_at = Timestamp::now();
            users::update(tx, &old, &new)?;
            if password_changed {
                sessions::revoke_all(tx, id, Some(keep_session))?;
            }
            Ok(new)
        })
        .await
}

/// IANA zone names: `UTC`, or `Area/Location` made of letters, digits, `_`, `+` and `-`.
fn validate_timezone(tz: &str) -> std::result::Result<(), String> {
    let part_ok =
        |p: &str| !p.is_empty() && p.len() <= 32 && p.bytes().all(|b| b.is_ascii_alphanumeric() || b"_+-".contains(&b));
    let parts: Vec<&str> = tz.split('/').collect();
    if tz == "UTC" || ((2..=3).contains(&parts.len()) && parts.iter().all(|p| part_ok(p))) {
        Ok(())
    } else {
        Err("must be an IANA time zone like Europe/Berlin or UTC".into())
    }
}

pub async fn update_settings(auth: &AuthService, caller: &Principal, change: SettingsChange) -> Result<User> {
    let mut v = Validation::default();
    if let Some(tz) = &change.timezone {
        v.check("timezone", validate_timezone(tz));
    }
    if let Some(locale) = &change.locale {
        v.check("locale", portal_core::validate::locale(locale));
    }
    v.finish()?;
    let id = caller.user_id;
    auth.store()
        .write(move |tx| {
            let old = users::get(tx, id)?.ok_or_else(|| Error::not_found("user"))?;
            let mut new = old.clone();
            let s: &mut Settings = &mut new.settings;
            if let Some(tz) = &change.timezone {
                s.timezone = tz.clone();
            }
            if let Some(locale) = &change.locale {
                s.locale = locale.clone();
            }
            let n = &mut s.notifications;
            n.invoice_emails = change.invoice_emails.unwrap_or(n.invoice_emails);
            n.product_updates = change.product_updates.unwrap_or(n.product_updates);
            n.security_alerts_sms = change.security_alerts_sms.unwrap_or(n.security_alerts_sms);
            new.updated_at = Timestamp::now();
            users::update(tx, &old, &new)?;
            Ok(new)
        })
        .await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn timezones() {
        for ok in ["UTC", "Europe/Berlin", "America/Argentina/Buenos_Aires", "Etc/GMT+2"] {
            assert!(validate_timezone(ok).is_ok(), "{ok}");
        }
        for bad in ["", "Berlin", "Europe/", "Europe/Ber lin", "../../etc/passwd/x/y"] {
            assert!(validate_timezone(bad).is_err(), "{bad}");
        }
    }
}
