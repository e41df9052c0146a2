//! The user store: records plus the indexes that keep emails and phones unique and list users per
//! customer. Other modules reach users only through these functions, inside their own transaction.

use portal_core::audit;
use portal_core::ids::{CustomerId, UserId};
use portal_core::table::{key, key_from, Page};
use portal_core::WriteTx;
use portal_core::{Error, ReadTx, Result, Role};

use crate::model::User;
use crate::tables::{ADMINS, SESSIONS_BY_USER, USERS, USERS_BY_CUSTOMER, USERS_BY_EMAIL, USERS_BY_PHONE};

/// Lower-cased, trimmed.
pub fn normalize_email(email: &str) -> String {
    email.trim().to_lowercase()
}

/// A plain syntax check: one `@`, a non-empty local part, a dotted domain, no spaces, at most 254 chars.
pub fn validate_email(email: &str) -> std::result::Result<(), String> {
    let valid = email.len() <= 254
        && !email.chars().any(|c| c.is_whitespace() || c.is_control())
        && match email.split_once('@') {
            Some((local, domain)) => {
                !local.is_empty()
                    && local.len() <= 64
                    && !domain.contains('@')
                    && domain.contains('.')
                    && !domain.starts_with('.')
                    && !domain.ends_with('.')
                    && !domain.contains("..")
            }
            None => false,
        };
    if valid {
        Ok(())
    } else {
        Err("must be an email address like name@example.com".into())
    }
}

/// E.164: `+`, then 8 to 15 digits, the first not 0.
pub fn validate_phone(phone: &str) -> std::result::Result<(), String> {
    let digits = phone.strip_prefix('+').unwrap_or("");
    if (8..=15).contains(&digits.len()) && digits.bytes().all(|b| b.is_ascii_digit()) && !digits.starts_with('0') {
        Ok(())
    } else {
        Err("must be an E.164 phone number like +14155550123".into())
    }
}

/// A display name: 1 to 200 characters after trimming, no control characters.
pub fn validate_name(name: &str) -> std::result::Result<(), String> {
    let trimmed = name.trim();
    if trimmed.is_empty() {
        Err("must not be empty".into())
    } else if trimmed.chars().count() > 200 {
        Err("must be at most 200 characters".into())
    } else if let Some(why) = portal_core::text::hidden_characters(trimmed) {
        Err(why)
    } else {
        Ok(())
    }
}

pub fn get(tx: &impl ReadTx, id: UserId) -> Result<Option<User>> {
    Ok(USERS.get(tx, &id.to_key())?)
}

pub fn by_email(tx: &impl ReadTx, email: &str) -> Result<Option<User>> {
    match USERS_BY_EMAIL.get(tx, normalize_email(email).as_bytes())? {
        Some(id) => Ok(USERS.get(tx, &id)?),
        None => Ok(None),
    }
}

pub fn by_phone(tx: &impl ReadTx, phone: &str) -> Result<Option<User>> {
    match USERS_BY_PHONE.get(tx, phone.trim().as_bytes())? {
        Some(id) => Ok(USERS.get(tx, &id)?),
        None => Ok(None),
    }
}

/// Whether any admin exists.
pub fn any_admin(tx: &impl ReadTx) -> Result<bool> {
    Ok(ADMINS.any_with_prefix(tx, &[])?)
}

/// Stores a new user; a taken email or phone is a 409.
pub fn insert(tx: &WriteTx, user: &User) -> Result<()> {
    if USERS_BY_EMAIL.contains(tx, user.email.as_bytes())? {
        return Err(Error::conflict("a user with this email already exists"));
    }
    if let Some(phone) = &user.phone {
        if USERS_BY_PHONE.contains(tx, phone.as_bytes())? {
            return Err(Error::conflict("a user with this phone number already exists"));
        }
    }
    write_indexes(tx, user)?;
    audit::record(tx, "users", "create", user.id, user.customer_id)?;
    Ok(USERS.insert(tx, &user.id.to_key(), user)?)
}

/// Replaces `old` by `new` (same id), keeping the indexes in step; a taken email or phone is a 409.
pub fn update(tx: &WriteTx, old: &User, new: &User) -> Result<()> {
    if old.email != new.email && USERS_BY_EMAIL.contains(tx, new.email.as_bytes())? {
        return Err(Error::conflict("a user with this email already exists"));
    }
    if old.phone != new.phone {
        if let Some(phone) = &new.phone {
            if USERS_BY_PHONE.contains(tx, phone.as_bytes())? {
                return Err(Error::conflict("a user with this phone number already exists"));
            }
        }
    }
    remove_indexes(tx, old)?;
    write_indexes(tx, new)?;
    audit::record(tx, "users", "update", new.id, new.customer_id)?;
    Ok(USERS.insert(tx, &new.id.to_key(), new)?)
}

/// Deletes a user, its indexes and its sessions.
pub fn delete(tx: &WriteTx, user: &User) -> Result<()> {
    crate::sessions::revoke_all(tx, user.id, None)?;
    remove_indexes(tx, user)?;
    USERS.remove(tx, &user.id.to_key())?;
    audit::record(tx, "users", "delete", user.id, user.customer_id)
}

fn write_indexes(tx: &WriteTx, user: &User) -> Result<()> {
    let id = user.id.to_key();
    USERS_BY_EMAIL.put(tx, user.email.as_bytes(), &id)?;
    if let Some(phone) = &user.phone {
        USERS_BY_PHONE.put(tx, phone.as_bytes(), &id)?;
    }
    if let Some(customer) = user.customer_id {
        USERS_BY_CUSTOMER.put(tx, &key(&[&customer.to_key(), &id]), &[])?;
    }
    if user.role == Role::Admin {
        ADMINS.put(tx, &id, &[])?;
    }
    Ok(())
}

fn remove_indexes(tx: &WriteTx, user: &User) -> Result<()> {
    let id = user.id.to_key();
    USERS_BY_EMAIL.remove(tx, user.email.as_bytes())?;
    if let Some(phone) = &user.phone {
        USERS_BY_PHONE.remove(tx, phone.as_bytes())?;
    }
    if let Some(customer) = user.customer_id {
        USERS_BY_CUSTOMER.remove(tx, &key(&[&customer.to_key(), &id]))?;
    }
    ADMINS.remove(tx, &id)?;
    Ok(())
}

/// A page of a customer's users, newest first, after the user id `after` (a cursor) when given.
pub fn page_by_customer(
    tx: &impl ReadTx,
    customer: CustomerId,
    after: Option<UserId>,
    limit: usize,
) -> Result<Vec<User>> {
    let prefix = customer.to_key();
    let after_key = after.map(|a| key(&[&prefix, &a.to_key()]));
    let keys = USERS_BY_CUSTOMER.page_keys(tx, &Page { prefix: &prefix, after: after_key.as_deref(), limit })?;
    let ids: Vec<&[u8]> = keys.iter().map(|k| key_from(k, 16)).collect();
    Ok(USERS.get_many(tx, &ids)?.into_iter().flatten().collect())
}

/// Ids of every user of a customer.
pub fn ids_of_customer(tx: &impl ReadTx, customer: CustomerId) -> Result<Vec<UserId>> {
    let prefix = customer.to_key();
    let keys = USERS_BY_CUSTOMER.page_keys(tx, &Page { prefix: &prefix, after: None, limit: usize::MAX })?;
    Ok(keys.iter().filter_map(|k| UserId::from_key(key_from(k, 16))).collect())
}

/// Turns sign-in on or off for every user of a customer (archiving), ending their sessions when off.
pub fn set_customer_disabled(tx: &WriteTx, customer: CustomerId, disabled: bool) -> Result<()> {
    for id in ids_of_customer(tx, customer)? {
        if let Some(mut user) = get(tx, id)? {
            user.disabled = disabled;
            USERS.insert(tx, &id.to_key(), &user)?;
            if disabled {
                crate::sessions::revoke_all(tx, id, None)?;
            }
        }
    }
    Ok(())
}

/// Whether the user has any session (for tests and admin views).
pub fn has_sessions(tx: &impl ReadTx, user: UserId) -> Result<bool> {
    Ok(SESSIONS_BY_USER.any_with_prefix(tx, &user.to_key())?)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn email_and_phone_syntax() {
        assert!(validate_email("jane@example.com").is_ok());
        for bad in ["jane", "jane@", "@example.com", "jane@example", "ja ne@example.com", "a@b@c.com", "a@.com"] {
            assert!(validate_email(bad).is_err(), "{bad}");
        }
        assert!(validate_phone("+14155550123").is_ok());
        for bad in ["14155550123", "+1", "+0123456789", "+1415555012a", "+1234567890123456"] {
            assert!(validate_phone(bad).is_err(), "{bad}");
        }
        assert_eq!(normalize_email("  Jane@Example.COM "), "jane@example.com");
    }
}
