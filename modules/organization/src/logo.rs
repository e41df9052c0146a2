//! What a logo must be: a PNG or an SVG of at most 512 KiB that a renderer can draw without fetching
//! anything or running anything.

use crate::model::LogoFormat;

/// The largest logo accepted.
pub const MAX_LOGO_BYTES: usize = 512 * 1024;

const PNG_SIGNATURE: &[u8] = b"\x89PNG\r\n\x1a\n";
/// Wider or taller than this is no logo.
const MAX_SIDE: u32 = 4096;

/// What `bytes` claim to be: a PNG when they start with its signature, an SVG when they are text that
/// holds an `<svg` element ([`check`] then holds them to it).
pub fn format_of(bytes: &[u8]) -> Result<LogoFormat, String> {
    if bytes.starts_with(PNG_SIGNATURE) {
        Ok(LogoFormat::Png)
    } else if std::str::from_utf8(bytes).is_ok_and(|text| text.to_ascii_lowercase().contains("<svg")) {
        Ok(LogoFormat::Svg)
    } else {
        Err("must be a PNG or an SVG image".into())
    }
}

/// Checks `bytes` as a logo of `format`; the reason it is refused otherwise.
pub fn check(format: LogoFormat, bytes: &[u8]) -> Result<(), String> {
    if bytes.is_empty() {
        return Err("the logo is empty".into());
    }
    match format {
        LogoFormat::Png => check_png(bytes),
        LogoFormat::Svg => check_svg(bytes),
    }
}

/// A PNG: the signature, an IHDR chunk with a size within bounds, and an IEND chunk at the end.
fn check_png(bytes: &[u8]) -> Result<(), String> {
    let not_png = || "not a PNG image".to_string();
    let rest = bytes.strip_prefix(PNG_SIGNATURE).ok_or_else(not_png)?;
    let be32 = |at: usize| rest.get(at..at + 4).and_then(|b| <[u8; 4]>::try_from(b).ok()).map(u32::from_be_bytes);
    if be32(0) != Some(13) || rest.get(4..8) != Some(b"IHDR".as_slice()) {
        return Err(not_png());
    }
    let (width, height) = (be32(8).ok_or_else(not_png)?, be32(12).ok_or_else(not_png)?);
    if width == 0 || height == 0 || width > MAX_SIDE || height > MAX_SIDE {
        return Err(format!("the image is {width}×{height} pixels; a logo is at most {MAX_SIDE} on each side"));
    }
    if !bytes.ends_with(b"IEND\xaeB`\x82") {
        return Err("the PNG image is cut short (no IEND chunk)".into());
    }
    Ok(())
}

/// An SVG: UTF-8 text whose root element is `<svg>`, with nothing that runs or fetches: no scripts, event
/// handlers, foreign objects, entity declarations or links outside the document.
fn check_svg(bytes: &[u8]) -> Result<(), String> {
    let text = std::str::from_utf8(bytes).map_err(|_| "an SVG image must be UTF-8 text".to_string())?;
    let lower = text.to_ascii_lowercase();
    let root = skip_prolog(&lower);
    if !(root.starts_with("<svg") && root.get(4..5).is_some_and(|c| c == " " || c == ">" || c == "\n" || c == "\t")) {
        return Err("not an SVG image (the root element must be <svg>)".into());
    }
    if !lower.trim_end().ends_with("</svg>") && !lower.trim_end().ends_with("/>") {
        return Err("the SVG image is cut short (no closing </svg>)".into());
    }
    let forbidden = [
        ("<script", "scripts"),
        ("<foreignobject", "foreign objects"),
        ("<!entity", "entity declarations"),
        ("javascript:", "javascript: links"),
        ("href=\"http", "links to other documents"),
        ("href='http", "links to other documents"),
        ("href=\"//", "links to other documents"),
        ("href='//", "links to other documents"),
        ("url(http", "links to other documents"),
    ];
    if let Some((_, what)) = forbidden.iter().find(|(needle, _)| lower.contains(needle)) {
        return Err(format!("the SVG image contains {what}, which a logo must not"));
    }
    if has_event_handler(&lower) {
        return Err("the SVG image contains event handlers, which a logo must not".into());
    }
    Ok(())
}

/// The text after an XML declaration, comments, a doctype without entities and whitespace.
fn skip_prolog(mut text: &str) -> &str {
    loop {
        text = text.trim_start();
        let end = if text.starts_with("<?") {
            text.find("?>").map(|i| i + 2)
        } else if text.starts_with("<!--") {
            text.find("-->").map(|i| i + 3)
        } else if text.starts_with("<!doctype") && !text.contains("<!entity") {
            text.find('>').map(|i| i + 1)
        } else {
            return text;
        };
        match end.and_then(|i| text.get(i..)) {
            Some(rest) => text = rest,
            None => return text,
        }
    }
}

/// Whether an attribute named `on…=` (onload, onclick…) appears inside a tag.
fn has_event_handler(lower: &str) -> bool {
    lower.split('<').skip(1).any(|tag| {
        let tag = tag.split('>').next().unwrap_or_default();
        tag.split(|c: char| c.is_whitespace())
            .skip(1)
            .any(|attribute| attribute.starts_with("on") && attribute.contains('='))
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The smallest valid PNG: 1×1, one grey pixel.
    pub(crate) fn png(width: u32, height: u32) -> Vec<u8> {
        let mut out = PNG_SIGNATURE.to_vec();
        out.extend_from_slice(&13u32.to_be_bytes());
        out.extend_from_slice(b"IHDR");
        out.extend_from_slice(&width.to_be_bytes());
        out.extend_from_slice(&height.to_be_bytes());
        out.extend_from_slice(&[8, 0, 0, 0, 0, 0, 0, 0, 0]);
        out.extend_from_slice(&[0, 0, 0, 0]);
        out.extend_from_slice(b"IEND\xaeB`\x82");
        out
    }

    #[test]
    fn the_format_comes_from_the_content() {
        assert_eq!(format_of(&png(1, 1)), Ok(LogoFormat::Png));
        assert_eq!(format_of(b"<?xml version=\"1.0\"?><svg></svg>"), Ok(LogoFormat::Svg));
        assert!(format_of(b"GIF89a").unwrap_err().contains("PNG or an SVG"));
    }

    #[test]
    fn pngs_are_checked_for_shape_and_size() {
        assert_eq!(check(LogoFormat::Png, &png(120, 40)), Ok(()));
        assert!(check(LogoFormat::Png, b"GIF89a....").unwrap_err().contains("not a PNG"));
        assert!(check(LogoFormat::Png, &png(5000, 10)).unwrap_err().contains("at most 4096"));
        let cut = png(10, 10);
        assert!(check(LogoFormat::Png, &cut[..cut.len() - 4]).unwrap_err().contains("cut short"));
        assert!(check(LogoFormat::Png, &[]).is_err());
    }

    #[test]
    fn svgs_may_draw_but_not_run_or_fetch() {
        let ok = r##"<?xml version="1.0"?><!-- logo --><svg xmlns="http://www.w3.org/2000/svg" viewBox="0 0 10 10"><rect width="10" height="10" fill="#112233"/></svg>"##;
        assert_eq!(check(LogoFormat::Svg, ok.as_bytes()), Ok(()));
        for (bad, why) in [
            ("<html><svg></svg></html>", "root element"),
            (r#"<svg xmlns="http://www.w3.org/2000/svg"><script>alert(1)</script></svg>"#, "scripts"),
            (r#"<svg xmlns="http://www.w3.org/2000/svg" onload="x()"></svg>"#, "event handlers"),
            (r#"<svg xmlns="http://www.w3.org/2000/svg"><image href="https://evil.example/x.png"/></svg>"#, "links"),
            (r#"<!DOCTYPE svg [<!ENTITY x SYSTEM "file:///etc/passwd">]><svg>&x;</svg>"#, "root element"),
            (r#"<svg xmlns="http://www.w3.org/2000/svg"><rect"#, "cut short"),
        ] {
            let err = check(LogoFormat::Svg, bad.as_bytes()).unwrap_err();
            assert!(err.contains(why), "{bad}: {err}");
        }
        assert!(check(LogoFormat::Svg, &[0xff, 0xfe]).unwrap_err().contains("UTF-8"));
    }
}
