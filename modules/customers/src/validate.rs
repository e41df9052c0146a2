//! Field checks of customer and billing input, each returning the reason a value is refused.

/// ISO 3166-1 alpha-2: the 249 officially assigned codes.
const COUNTRIES: &str = "AD AE AF AG AI AL AM AO AQ AR AS AT AU AW AX AZ BA BB BD BE BF BG BH BI BJ BL BM BN BO BQ BR \
BS BT BV BW BY BZ CA CC CD CF CG CH CI CK CL CM CN CO CR CU CV CW CX CY CZ DE DJ DK DM DO DZ EC EE EG EH ER ES ET FI FJ \
FK FM FO FR GA GB GD GE GF GG GH GI GL GM GN GP GQ GR GS GT GU GW GY HK HM HN HR HT HU ID IE IL IM IN IO IQ IR IS IT JE \
JM JO JP KE KG KH KI KM KN KP KR KW KY KZ LA LB LC LI LK LR LS LT LU LV LY MA MC MD ME MF MG MH MK ML MM MN MO MP MQ MR \
MS MT MU MV MW MX MY MZ NA NC NE NF NG NI NL NO NP NR NU NZ OM PA PE PF PG PH PK PL PM PN PR PS PT PW PY QA RE RO RS RU \
RW SA SB SC SD SE SG SH SI SJ SK SL SM SN SO SR SS ST SV SX SY SZ TC TD TF TG TH TJ TK TL TM TN TO TR TT TV TW TZ UA UG \
UM US UY UZ VA VC VE VG VI VN VU WF WS YE YT ZA ZM ZW";

pub type Check = Result<(), String>;

/// Upper-cased ISO 3166-1 alpha-2 code.
pub fn country(code: &str) -> Result<String, String> {
    let upper = code.trim().to_ascii_uppercase();
    if upper.len() == 2 && COUNTRIES.split(' ').any(|c| c == upper) {
        Ok(upper)
    } else {
        Err("must be an ISO 3166-1 alpha-2 country code like US or DE".into())
    }
}

/// Trimmed text of `min..=max` characters without control or invisible formatting characters.
pub fn text(value: &str, min: usize, max: usize) -> Result<String, String> {
    let trimmed = value.trim();
    let len = trimmed.chars().count();
    if len < min {
        return Err(if min == 1 { "must not be empty".into() } else { format!("must be at least {min} characters") });
    }
    if len > max {
        return Err(format!("must be at most {max} characters"));
    }
    if let Some(why) = portal_core::text::hidden_characters(trimmed) {
        return Err(why);
    }
    Ok(trimmed.to_string())
}

/// A postal code: letters, digits, spaces and hyphens, at most 16 characters (empty where none is used).
pub fn postal_code(value: &str) -> Result<String, String> {
    let trimmed = value.trim();
    if trimmed.len() <= 16 && trimmed.chars().all(|c| c.is_ascii_alphanumeric() || c == ' ' || c == '-') {
        Ok(trimmed.to_string())
    } else {
        Err("must be at most 16 letters, digits, spaces or hyphens".into())
    }
}

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
        assert_eq!(COUNTRIES.split(' ').count(), 249);
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
