//! Money is exact: integer minor units (cents) plus an ISO 4217 currency. Floats appear only at the JSON
//! edge, where `parse_minor` turns a number into minor units (refusing more decimals than the currency has)
//! and `to_major` turns minor units back into the nearest float, which JSON prints as the exact decimal.

use std::fmt;

use serde::{Deserialize, Serialize};

/// Largest accepted magnitude, in major units (the contract's ±10^13).
const MAX_MAJOR: f64 = 1e13;

/// Active ISO 4217 codes with their minor-unit exponents (2 unless listed with another).
#[rustfmt::skip]
const CURRENCIES: &[(&str, u8)] = &[
    ("AED", 2), ("AFN", 2), ("ALL", 2), ("AMD", 2), ("ANG", 2), ("AOA", 2), ("ARS", 2), ("AUD", 2), ("AWG", 2), ("AZN", 2),
    ("BAM", 2), ("BBD", 2), ("BDT", 2), ("BGN", 2), ("BHD", 3), ("BIF", 0), ("BMD", 2), ("BND", 2), ("BOB", 2), ("BOV", 2),
    ("BRL", 2), ("BSD", 2), ("BTN", 2), ("BWP", 2), ("BYN", 2), ("BZD", 2), ("CAD", 2), ("CDF", 2), ("CHE", 2), ("CHF", 2),
    ("CHW", 2), ("CLF", 4), ("CLP", 0), ("CNY", 2), ("COP", 2), ("COU", 2), ("CRC", 2), ("CUP", 2), ("CVE", 2), ("CZK", 2),
    ("DJF", 0), ("DKK", 2), ("DOP", 2), ("DZD", 2), ("EGP", 2), ("ERN", 2), ("ETB", 2), ("EUR", 2), ("FJD", 2), ("FKP", 2),
    ("GBP", 2), ("GEL", 2), ("GHS", 2), ("GIP", 2), ("GMD", 2), ("GNF", 0), ("GTQ", 2), ("GYD", 2), ("HKD", 2), ("HNL", 2),
    ("HTG", 2), ("HUF", 2), ("IDR", 2), ("ILS", 2), ("INR", 2), ("IQD", 3), ("IRR", 2), ("ISK", 0), ("JMD", 2), ("JOD", 3),
    ("JPY", 0), ("KES", 2), ("KGS", 2), ("KHR", 2), ("KMF", 0), ("KPW", 2), ("KRW", 0), ("KWD", 3), ("KYD", 2), ("KZT", 2),
    ("LAK", 2), ("LBP", 2), ("LKR", 2), ("LRD", 2), ("LSL", 2), ("LYD", 3), ("MAD", 2), ("MDL", 2), ("MGA", 2), ("MKD", 2),
    ("MMK", 2), ("MNT", 2), ("MOP", 2), ("MRU", 2), ("MUR", 2), ("MVR", 2), ("MWK", 2), ("MXN", 2), ("MXV", 2), ("MYR", 2),
    ("MZN", 2), ("NAD", 2), ("NGN", 2), ("NIO", 2), ("NOK", 2), ("NPR", 2), ("NZD", 2), ("OMR", 3), ("PAB", 2), ("PEN", 2),
    ("PGK", 2), ("PHP", 2), ("PKR", 2), ("PLN", 2), ("PYG", 0), ("QAR", 2), ("RON", 2), ("RSD", 2), ("RUB", 2), ("RWF", 0),
    ("SAR", 2), ("SBD", 2), ("SCR", 2), ("SDG", 2), ("SEK", 2), ("SGD", 2), ("SHP", 2), ("SLE", 2), ("SOS", 2), ("SRD", 2),
    ("SSP", 2), ("STN", 2), ("SVC", 2), ("SYP", 2), ("SZL", 2), ("THB", 2), ("TJS", 2), ("TMT", 2), ("TND", 3), ("TOP", 2),
    ("TRY", 2), ("TTD", 2), ("TWD", 2), ("TZS", 2), ("UAH", 2), ("UGX", 0), ("USD", 2), ("USN", 2), ("UYI", 0), ("UYU", 2),
    ("UYW", 4), ("UZS", 2), ("VED", 2), ("VES", 2), ("VND", 0), ("VUV", 0), ("WST", 2), ("XAF", 0), ("XCD", 2), ("XCG", 2),
    ("XOF", 0), ("XPF", 0), ("YER", 2), ("ZAR", 2), ("ZMW", 2), ("ZWG", 2),
];

/// An ISO 4217 currency code (upper case), with its exponent looked up once, when the code is parsed:
/// every amount printed needs it.
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
#[serde(into = "String")]
pub struct Currency {
    code: [u8; 3],
    exponent: u8,
}

impl Currency {
    pub const USD: Currency = Currency { code: *b"USD", exponent: 2 };

    /// Accepts an active ISO 4217 code in upper case.
    pub fn parse(code: &str) -> Result<Self, String> {
        let known = CURRENCIES.binary_search_by(|(c, _)| (*c).cmp(code)).ok().and_then(|i| CURRENCIES.get(i));
        match known {
            Some((_, exponent)) => {
                let bytes =
                    <[u8; 3]>::try_from(code.as_bytes()).map_err(|_| format!("`{code}` is not three letters"))?;
                Ok(Self { code: bytes, exponent: *exponent })
            }
            None => Err(format!("`{code}` is not an ISO 4217 currency code (upper case, e.g. USD)")),
        }
    }

    pub fn as_str(&self) -> &str {
        std::str::from_utf8(&self.code).unwrap_or("USD")
    }

    /// Digits after the decimal point (USD 2, JPY 0, KWD 3).
    pub fn exponent(&self) -> u32 {
        u32::from(self.exponent)
    }
}

/// Reads the code without a `String` of its own where the format lends it (stored records do).
impl<'de> Deserialize<'de> for Currency {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct Code;
        impl serde::de::Visitor<'_> for Code {
            type Value = Currency;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("an ISO 4217 currency code")
            }
            fn visit_str<E: serde::de::Error>(self, code: &str) -> Result<Currency, E> {
                Currency::parse(code).map_err(E::custom)
            }
        }
        deserializer.deserialize_str(Code)
    }
}

impl Default for Currency {
    fn default() -> Self {
        Self::USD
    }
}

impl fmt::Display for Currency {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl fmt::Debug for Currency {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl From<Currency> for String {
    fn from(c: Currency) -> String {
        c.as_str().to_string()
    }
}

/// An exact amount: minor units of a currency.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Money {
    pub minor: i64,
    pub currency: Currency,
}

impl Money {
    pub fn new(minor: i64, currency: Currency) -> Self {
        Self { minor, currency }
    }

    /// Parses a JSON number into money; see [`parse_minor`].
    pub fn from_major(value: f64, currency: Currency) -> Result<Self, String> {
        parse_minor(value, currency).map(|minor| Self { minor, currency })
    }

    /// The float JSON carries for this amount.
    pub fn to_major(&self) -> f64 {
        to_major(self.minor, self.currency)
    }
}

/// Decimal digits of a finite float as JSON would print them (shortest round-trip form, no exponent).
fn decimal_parts(value: f64) -> (bool, String, String) {
    let text = format!("{}", value.abs());
    let (int, frac) = text.split_once('.').unwrap_or((text.as_str(), ""));
    (value.is_sign_negative() && value != 0.0, int.to_string(), frac.to_string())
}

/// Minor units of a JSON number: refuses NaN/infinity, magnitudes beyond 10^13 and more decimals than
/// the currency has (`10.005` USD is an error, not a rounding).
pub fn parse_minor(value: f64, currency: Currency) -> Result<i64, String> {
    if !value.is_finite() {
        return Err("must be a finite number".into());
    }
    if value.abs() > MAX_MAJOR {
        return Err("must be between -10^13 and 10^13".into());
    }
    let exponent = currency.exponent();
    let (negative, int, frac) = decimal_parts(value);
    if frac.len() > exponent as usize {
        return Err(format!("{currency} amounts have at most {exponent} decimal places"));
    }
    let int: i64 = int.parse().map_err(|_| "must be a decimal number".to_string())?;
    let mut minor = int * 10i64.pow(exponent);
    for (i, digit) in frac.bytes().enumerate() {
        minor += i64::from(digit - b'0') * 10i64.pow(exponent - 1 - i as u32);
    }
    Ok(if negative { -minor } else { minor })
}

/// Like [`parse_minor`], refusing negative amounts.
pub fn parse_non_negative_minor(value: f64, currency: Currency) -> Result<i64, String> {
    let minor = parse_minor(value, currency)?;
    if minor < 0 {
        return Err("must not be negative".into());
    }
    Ok(minor)
}

/// The nearest float to `minor / 10^exponent`; JSON prints it as that exact decimal.
pub fn to_major(minor: i64, currency: Currency) -> f64 {
    minor as f64 / 10f64.powi(currency.exponent() as i32)
}

/// A fixed-point decimal with at most `scale` digits after the point, as an integer (`8.25`, scale 4 →
/// 82500). Used for tax rates and percentages, which must be exact too.
pub fn parse_fixed(value: f64, scale: u32) -> Result<i64, String> {
    if !value.is_finite() {
        return Err("must be a finite number".into());
    }
    if value.abs() > 1e12 {
        return Err("is too large".into());
    }
    let (negative, int, frac) = decimal_parts(value);
    if frac.len() > scale as usize {
        return Err(format!("at most {scale} decimal places"));
    }
    let int: i64 = int.parse().map_err(|_| "must be a decimal number".to_string())?;
    let mut fixed = int * 10i64.pow(scale);
    for (i, digit) in frac.bytes().enumerate() {
        fixed += i64::from(digit - b'0') * 10i64.pow(scale - 1 - i as u32);
    }
    Ok(if negative { -fixed } else { fixed })
}

/// A tax rate in percent with at most 4 decimals, stored as ten-thousandths of a percent.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(transparent)]
pub struct TaxRate(i64);

impl TaxRate {
    pub const SCALE: u32 = 4;

    /// 0–100 with at most 4 decimals.
    pub fn from_percent(value: f64) -> Result<Self, String> {
        let fixed = parse_fixed(value, Self::SCALE)?;
        if !(0..=100 * 10i64.pow(Self::SCALE)).contains(&fixed) {
            return Err("must be between 0 and 100".into());
        }
        Ok(Self(fixed))
    }

    pub fn percent(&self) -> f64 {
        self.0 as f64 / 10f64.powi(Self::SCALE as i32)
    }

    /// `round_half_even(amount * rate / 100)` in minor units, exactly.
    pub fn tax_on(&self, amount_minor: i64) -> i64 {
        let denominator = 100 * 10i128.pow(Self::SCALE);
        round_half_even_div(i128::from(amount_minor) * i128::from(self.0), denominator)
    }
}

/// `amount × part ÷ whole` minor units, rounded half to even (a fee for part of a period); `whole > 0`.
pub fn prorate(amount: i64, part: u32, whole: u32) -> i64 {
    round_half_even_div(i128::from(amount) * i128::from(part), i128::from(whole.max(1)))
}

/// `n / d` rounded half to even, for `d > 0`.
fn round_half_even_div(n: i128, d: i128) -> i64 {
    let q = n.div_euclid(d);
    let r = n.rem_euclid(d);
    let q = match (2 * r).cmp(&d) {
        std::cmp::Ordering::Greater => q + 1,
        std::cmp::Ordering::Equal if q % 2 != 0 => q + 1,
        _ => q,
    };
    i64::try_from(q).unwrap_or(if q > 0 { i64::MAX } else { i64::MIN })
}

/// Splits `total` minor units in proportion to `weights` by the largest-remainder method: each share is
/// `floor(total * w / sum)`, and the cents left over go one each to the shares with the largest remainders
/// (earlier shares first on ties). The shares always sum to `total` exactly. Empty or all-zero weights
/// give no shares.
pub fn split_largest_remainder(total: i64, weights: &[u64]) -> Vec<i64> {
    let sum: i128 = weights.iter().map(|&w| i128::from(w)).sum();
    if sum == 0 {
        return Vec::new();
    }
    let total = i128::from(total);
    let mut shares = Vec::with_capacity(weights.len());
    let mut remainders = Vec::with_capacity(weights.len());
    for (i, &w) in weights.iter().enumerate() {
        let product = total * i128::from(w);
        shares.push(product.div_euclid(sum));
        remainders.push((product.rem_euclid(sum), i));
    }
    let leftover = total - shares.iter().sum::<i128>();
    // Largest remainder first; the stable sort keeps earlier shares first on ties.
    remainders.sort_by_key(|r| std::cmp::Reverse(r.0));
    for &(_, i) in remainders.iter().take(leftover as usize) {
        if let Some(share) = shares.get_mut(i) {
            *share += 1;
        }
    }
    shares.into_iter().map(|s| s as i64).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn usd(v: f64) -> Result<i64, String> {
        parse_minor(v, Currency::USD)
    }

    #[test]
    fn parses_exact_minor_units() {
        assert_eq!(usd(10.1), Ok(1010));
        assert_eq!(usd(0.29), Ok(29));
        assert_eq!(usd(1234567.89), Ok(123456789));
        assert_eq!(usd(-5.5), Ok(-550));
        assert_eq!(usd(0.0), Ok(0));
        assert_eq!(parse_minor(1500.0, Currency::parse("JPY").unwrap()), Ok(1500));
        assert_eq!(parse_minor(1.234, Currency::parse("KWD").unwrap()), Ok(1234));
    }

    #[test]
    fn refuses_too_many_decimals_and_non_finite() {
        assert!(usd(10.005).is_err());
        assert!(usd(0.1 + 0.2).is_err());
        assert!(usd(f64::NAN).is_err());
        assert!(usd(f64::INFINITY).is_err());
        assert!(usd(2e13).is_err());
        assert!(parse_minor(1.5, Currency::parse("JPY").unwrap()).is_err());
        assert!(parse_non_negative_minor(-1.0, Currency::USD).is_err());
    }

    #[test]
    fn prints_back_the_same_decimal() {
        for minor in [0, 1, 29, 1010, 123456789, 99_999_999_999_999, -550] {
            let major = to_major(minor, Currency::USD);
            assert_eq!(usd(major), Ok(minor), "{minor} → {major}");
        }
    }

    #[test]
    fn currency_codes() {
        assert!(Currency::parse("USD").is_ok());
        assert!(Currency::parse("usd").is_err());
        assert!(Currency::parse("XYZ").is_err());
        assert_eq!(Currency::parse("JPY").unwrap().exponent(), 0);
        assert!(CURRENCIES.windows(2).all(|w| w[0].0 < w[1].0), "table must stay sorted");
    }

    #[test]
    fn prorating_rounds_half_even() {
        assert_eq!(prorate(100_000, 30, 31), 96_774); // 96,774.19…
        assert_eq!(prorate(5, 1, 2), 2); // 2.5 → 2
        assert_eq!(prorate(15, 1, 2), 8); // 7.5 → 8
        assert_eq!(prorate(1_000, 31, 31), 1_000);
        assert_eq!(prorate(0, 3, 7), 0);
    }

    #[test]
    fn tax_rounds_half_even() {
        let rate = TaxRate::from_percent(8.25).unwrap();
        assert_eq!(rate.tax_on(10_000), 825);
        // 0.5 cent rounds to even
        let ten = TaxRate::from_percent(10.0).unwrap();
        assert_eq!(ten.tax_on(5), 0);
        assert_eq!(ten.tax_on(15), 2);
        assert_eq!(ten.tax_on(25), 2);
        assert!(TaxRate::from_percent(100.00001).is_err());
        assert!(TaxRate::from_percent(-1.0).is_err());
        assert!(TaxRate::from_percent(8.12345).is_err());
    }

    #[test]
    fn split_sums_to_total() {
        assert_eq!(split_largest_remainder(1_000_000, &[3333, 3333, 3334]), vec![333_300, 333_300, 333_400]);
        assert_eq!(split_largest_remainder(10_000, &[1, 1, 1]), vec![3334, 3333, 3333]);
        assert_eq!(split_largest_remainder(2, &[1, 1, 1]), vec![1, 1, 0]);
        assert!(split_largest_remainder(100, &[]).is_empty());
        // pseudo-random schedules
        let mut seed: u64 = 0x9E37_79B9_7F4A_7C15;
        let mut next = || {
            seed ^= seed << 13;
            seed ^= seed >> 7;
            seed ^= seed << 17;
            seed
        };
        for _ in 0..5000 {
            let total = (next() % 10_000_000_000) as i64;
            let n = (next() % 12 + 1) as usize;
            let weights: Vec<u64> = (0..n).map(|_| next() % 1_000_000 + 1).collect();
            let shares = split_largest_remainder(total, &weights);
            assert_eq!(shares.iter().sum::<i64>(), total);
            assert!(shares.iter().all(|&s| s >= 0));
        }
    }
}
