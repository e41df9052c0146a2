//! Field checks of customer and billing input, each returning the reason a value is refused.

pub use portal_core::validate::{country, postal_code, text, Check};

/// A Firebase project id: 6–30 lower-case letters, digits and hyphens, starting with a letter, not ending
/// with a hyphen.
pub fn firebase_project_id(value: &str) -> Check {
    let ok = (6..=30).contains(&value.len())
        && value.starts_with(|c: char| c.is_ascii_lowercase())
        && !value.ends_with('-')
        && value.chars().all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-');
    if ok {
        Ok(())
    } else {
        Err("must be a Firebase project id: 6–30 lower-case letters, digits or hyphens, starting with a letter".into())
    }
}

/// A Firebase app id: `1:<project number>:<ios|android|web>:<hex>`.
pub fn firebase_app_id(value: &str) -> Check {
    let parts: Vec<&str> = value.split(':').collect();
    let digits = |s: &str| !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit());
    let ok = match parts.as_slice() {
        [one, project, platform, hex] => {
            digits(one)
                && digits(project)
                && matches!(*platform, "ios" | "android" | "web")
                && !hex.is_empty()
                && hex.len() <= 64
                && hex.bytes().all(|b| b.is_ascii_hexdigit())
        }
        _ => false,
    };
    if ok {
        Ok(())
    } else {
        Err("must be a Firebase app id like 1:1234567890:android:0a1b2c3d4e5f".into())
    }
}

/// A Stripe object id with the given prefix (`cus`, `pm`): `prefix_` then 1–250 letters, digits or `_`.
pub fn stripe_id(value: &str, prefix: &str) -> Check {
    let ok = value.strip_prefix(prefix).and_then(|rest| rest.strip_prefix('_')).is_some_and(|rest| {
        !rest.is_empty() && rest.len() <= 250 && rest.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_')
    });
    if ok {
        Ok(())
    } else {
        Err(format!("must be a Stripe id like {prefix}_1a2B3c"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn countries_are_the_assigned_alpha_2_codes() {
        assert_eq!(country("de").unwrap(), "DE");
        assert!(country("UK").is_err());
        assert!(country("USA").is_err());
        assert!(country("").is_err());
    }

    #[test]
    fn ids_of_outside_services_are_checked() {
        assert!(firebase_project_id("my-app-123").is_ok());
        assert!(firebase_project_id("My-App").is_err());
        assert!(firebase_project_id("app-").is_err());
        assert!(firebase_app_id("1:1234567890:android:0a1b2c3d4e5f").is_ok());
        assert!(firebase_app_id("1:123:windows:ab").is_err());
        assert!(stripe_id("cus_NffrFeUfNV2Hib", "cus").is_ok());
        assert!(stripe_id("pm_123", "cus").is_err());
        assert!(stripe_id("cus_", "cus").is_err());
        assert!(text("  a  ", 1, 3).unwrap() == "a");
        assert!(text(" ", 1, 3).is_err());
        assert!(postal_code("94103-1234").is_ok());
        assert!(postal_code("<script>").is_err());
    }
}
