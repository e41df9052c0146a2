//! Field checks shared by modules, each returning the reason a value is refused.

pub type Check = Result<(), String>;

/// ISO 3166-1 alpha-2: the 249 officially assigned codes.
const COUNTRIES: &str = "AD AE AF AG AI AL AM AO AQ AR AS AT AU AW AX AZ BA BB BD BE BF BG BH BI BJ BL BM BN BO BQ BR \
BS BT BV BW BY BZ CA CC CD CF CG CH CI CK CL CM CN CO CR CU CV CW CX CY CZ DE DJ DK DM DO DZ EC EE EG EH ER ES ET FI FJ \
FK FM FO FR GA GB GD GE GF GG GH GI GL GM GN GP GQ GR GS GT GU GW GY HK HM HN HR HT HU ID IE IL IM IN IO IQ IR IS IT JE \
JM JO JP KE KG KH KI KM KN KP KR KW KY KZ LA LB LC LI LK LR LS LT LU LV LY MA MC MD ME MF MG MH MK ML MM MN MO MP MQ MR \
MS MT MU MV MW MX MY MZ NA NC NE NF NG NI NL NO NP NR NU NZ OM PA PE PF PG PH PK PL PM PN PR PS PT PW PY QA RE RO RS RU \
RW SA SB SC SD SE SG SH SI SJ SK SL SM SN SO SR SS ST SV SX SY SZ TC TD TF TG TH TJ TK TL TM TN TO TR TT TV TW TZ UA UG \
UM US UY UZ VA VC VE VG VI VN VU WF WS YE YT ZA ZM ZW";

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
    if let Some(why) = crate::text::hidden_characters(trimmed) {
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

/// BCP 47 tags of the common shape: language, optional script, optional region (`en`, `en-US`, `zh-Hant-TW`).
pub fn locale(locale: &str) -> Check {
    let mut parts = locale.split('-');
    let language_ok =
        parts.next().is_some_and(|l| (2..=3).contains(&l.len()) && l.bytes().all(|b| b.is_ascii_lowercase()));
    let rest_ok = parts.all(|p| {
        (p.len() == 4
            && p.bytes().next().is_some_and(|b| b.is_ascii_uppercase())
            && p.bytes().skip(1).all(|b| b.is_ascii_lowercase()))
            || (p.len() == 2 && p.bytes().all(|b| b.is_ascii_uppercase()))
            || (p.len() == 3 && p.bytes().all(|b| b.is_ascii_digit()))
    });
    if language_ok && rest_ok && locale.len() <= 16 {
        Ok(())
    } else {
        Err("must be a BCP 47 language tag like en-US".into())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn locales_of_the_common_shape() {
        for ok in ["en", "en-US", "zh-Hant-TW", "es-419"] {
            assert!(locale(ok).is_ok(), "{ok}");
        }
        for bad in ["", "EN", "en_US", "english", "en-us"] {
            assert!(locale(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn countries_are_upper_cased_iso_codes() {
        assert_eq!(COUNTRIES.split(' ').count(), 249);
        assert_eq!(country(" de "), Ok("DE".to_string()));
        assert!(country("XX").is_err());
    }
}
