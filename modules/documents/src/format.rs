//! How amounts and dates read on documents and in mail: exact (from minor units, never through a float),
//! grouped and placed as the reader's locale writes money.

use chrono::{Datelike, NaiveDate};
use portal_core::Currency;

/// How a locale writes an amount: digit group separator, decimal mark, symbol before the number.
struct Style {
    group: &'static str,
    decimal: &'static str,
    symbol_first: bool,
}

fn style(locale: &str) -> Style {
    let language = locale.split(['-', '_']).next().unwrap_or("");
    let speaks = |languages: &[&str]| languages.iter().any(|l| language.eq_ignore_ascii_case(l));
    if speaks(&["de", "es", "it", "nl", "pt", "da", "id", "tr", "el", "ro", "hr", "sl"]) {
        if locale.eq_ignore_ascii_case("de-CH") {
            Style { group: "’", decimal: ".", symbol_first: true }
        } else {
            Style { group: ".", decimal: ",", symbol_first: false }
        }
    } else if speaks(&["fr", "sv", "nb", "no", "fi", "pl", "cs", "sk", "ru", "uk", "hu", "bg", "lt", "lv", "et"]) {
        Style { group: "\u{202f}", decimal: ",", symbol_first: false }
    } else {
        Style { group: ",", decimal: ".", symbol_first: true }
    }
}

fn symbol(currency: Currency) -> Option<&'static str> {
    Some(match currency.as_str() {
        "USD" => "$",
        "EUR" => "€",
        "GBP" => "£",
        "JPY" => "¥",
        "INR" => "₹",
        "KRW" => "₩",
        "ILS" => "₪",
        "NGN" => "₦",
        "PHP" => "₱",
        "VND" => "₫",
        "UAH" => "₴",
        _ => return None,
    })
}

/// `minor` units of `currency` as `locale` writes them: `$1,234.50`, `1.234,50 €`, `CHF 1,234.50`.
pub fn money(minor: i64, currency: Currency, locale: &str) -> String {
    let style = style(locale);
    let symbol = symbol(currency);
    let mut out = String::with_capacity(32);
    if minor < 0 {
        out.push('-');
    }
    if style.symbol_first {
        match symbol {
            Some(s) => out.push_str(s),
            None => {
                out.push_str(currency.as_str());
                out.push('\u{a0}');
            }
        }
    }
    push_number(&mut out, minor.unsigned_abs(), currency.exponent(), &style);
    if !style.symbol_first {
        out.push('\u{a0}');
        out.push_str(symbol.unwrap_or(currency.as_str()));
    }
    out
}

/// Appends `minor` units with `exponent` decimals: digits grouped in threes, the decimals zero-padded.
fn push_number(out: &mut String, minor: u64, exponent: u32, style: &Style) {
    let scale = 10u64.pow(exponent);
    let whole = (minor / scale).to_string();
    for (i, digit) in whole.chars().enumerate() {
        if i > 0 && (whole.len() - i).is_multiple_of(3) {
            out.push_str(style.group);
        }
        out.push(digit);
    }
    if exponent == 0 {
        return;
    }
    out.push_str(style.decimal);
    let decimals = (minor % scale).to_string();
    out.extend(std::iter::repeat_n('0', (exponent as usize).saturating_sub(decimals.len())));
    out.push_str(&decimals);
}

/// A postal address as lines, in the order its country writes them (empty parts left out).
pub fn address_lines(street: &str, city: &str, state: &str, postal_code: &str, country: &str) -> Vec<String> {
    let join =
        |parts: &[&str], sep: &str| parts.iter().filter(|p| !p.is_empty()).copied().collect::<Vec<_>>().join(sep);
    let mut lines = vec![street.to_owned()];
    if matches!(country, "US" | "CA" | "AU") {
        lines.push(join(&[city, &join(&[state, postal_code], " ")], ", "));
    } else {
        lines.push(join(&[postal_code, city], " "));
        lines.push(state.to_owned());
    }
    lines.push(country.to_owned());
    lines.retain(|line| !line.is_empty());
    lines
}

/// Text made safe to place in HTML, as content or in a quoted attribute (mail and pages show documents'
/// text in HTML too).
pub fn html(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

/// A date as every reader understands it, whatever their locale: `2026-12-02`.
pub fn date(day: NaiveDate) -> String {
    let text = portal_core::time::iso_date(day.year().into(), day.month(), day.day());
    match text.as_ref().map(|text| std::str::from_utf8(text)) {
        Some(Ok(text)) => text.to_owned(),
        // chrono's `%Y` signs a year outside 0–9999.
        _ => day.format("%Y-%m-%d").to_string(),
    }
}

/// A tax rate in percent: `19 %`, `7.5 %`.
pub fn percent(value: f64) -> String {
    let text = format!("{value:.4}");
    let trimmed = text.trim_end_matches('0').trim_end_matches('.');
    format!("{trimmed}\u{a0}%")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn c(code: &str) -> Currency {
        Currency::parse(code).unwrap()
    }

    #[test]
    fn amounts_read_as_their_locale_writes_them() {
        assert_eq!(money(123_450, c("USD"), "en-US"), "$1,234.50");
        assert_eq!(money(123_450, c("EUR"), "de-DE"), "1.234,50\u{a0}€");
        assert_eq!(money(123_450_000, c("EUR"), "fr-FR"), "1\u{202f}234\u{202f}500,00\u{a0}€");
        assert_eq!(money(-5, c("GBP"), "en-GB"), "-£0.05");
        assert_eq!(money(1_000, c("JPY"), "en-US"), "¥1,000");
        assert_eq!(money(100, c("CHF"), "de-CH"), "CHF\u{a0}1.00");
        assert_eq!(money(99_999, c("KWD"), "en"), "KWD\u{a0}99.999");
        assert_eq!(money(-99_999, c("KWD"), "fr-FR"), "-99,999\u{a0}KWD");
        assert_eq!(money(-100, c("CHF"), "de-CH"), "-CHF\u{a0}1.00");
        assert_eq!(money(123_405, c("EUR"), "DE_at"), "1.234,05\u{a0}€");
        assert_eq!(money(100_000_007, c("GBP"), "FR"), "1\u{202f}000\u{202f}000,07\u{a0}£");
        assert_eq!(money(0, c("USD"), ""), "$0.00");
        assert_eq!(money(i64::MIN, c("USD"), "en"), "-$92,233,720,368,547,758.08");
    }

    #[test]
    fn addresses_read_as_their_country_writes_them() {
        assert_eq!(
            address_lines("1 Main St", "Springfield", "IL", "62704", "US"),
            ["1 Main St", "Springfield, IL 62704", "US"]
        );
        assert_eq!(
            address_lines("Hauptstraße 5", "Berlin", "", "10115", "DE"),
            ["Hauptstraße 5", "10115 Berlin", "DE"]
        );
        assert_eq!(address_lines("", "", "", "", ""), Vec::<String>::new());
    }

    #[test]
    fn html_text_is_escaped() {
        assert_eq!(html("<a href=\"x\">'&'</a>"), "&lt;a href=&quot;x&quot;&gt;&#39;&amp;&#39;&lt;/a&gt;");
    }

    #[test]
    fn rates_and_dates() {
        assert_eq!(percent(19.0), "19\u{a0}%");
        assert_eq!(percent(7.5), "7.5\u{a0}%");
        assert_eq!(percent(0.0), "0\u{a0}%");
        assert_eq!(date(NaiveDate::from_ymd_opt(2026, 3, 9).unwrap()), "2026-03-09");
    }

    #[test]
    fn dates_read_as_chrono_writes_them() {
        let far = [(-1, 12, 31), (0, 1, 1), (9999, 12, 31), (10_000, 1, 1), (-262_143, 1, 1), (262_142, 12, 31)];
        let far = far.into_iter().map(|(y, m, d)| NaiveDate::from_ymd_opt(y, m, d).unwrap());
        let near = NaiveDate::from_ymd_opt(1900, 1, 1).unwrap().iter_days().take(366 * 300);
        for day in far.chain(near) {
            assert_eq!(date(day), day.format("%Y-%m-%d").to_string());
        }
    }
}
