//! Rules for the text people type into names and titles, shared by every module that stores some.

/// Characters that are never shown but change what is: control characters, the bidirectional overrides,
/// embeddings and isolates (U+202E before `fdp.exe` makes it read `exe.pdf`), and invisible spaces
/// and joiners that make two equal-looking names differ. The zero-width joiner and non-joiner stay
/// allowed: Persian and Indic scripts need them to spell names.
pub fn is_hidden_or_control(c: char) -> bool {
    c.is_control()
        || matches!(c,
            '\u{202A}'..='\u{202E}' // bidi embeddings and overrides
            | '\u{2066}'..='\u{2069}' // bidi isolates
            | '\u{200B}' // zero-width space
            | '\u{2060}'..='\u{2064}' // word joiner, invisible operators
            | '\u{FEFF}' // zero-width no-break space
            | '\u{180E}' // Mongolian vowel separator
            | '\u{00AD}' // soft hyphen
        )
}

/// Why `text` may not be a name or title, if it may not.
pub fn hidden_characters(text: &str) -> Option<String> {
    text.chars()
        .find(|c| is_hidden_or_control(*c))
        .map(|c| format!("must not contain control or invisible formatting characters (found U+{:04X})", c as u32))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn overrides_and_invisible_characters_are_refused_but_scripts_keep_their_joiners() {
        for bad in ["Acme\u{202E}fdp.exe", "A\u{200B}cme", "\u{2066}x", "tab\tname", "a\u{FEFF}b", "soft\u{AD}hyphen"] {
            assert!(hidden_characters(bad).is_some(), "{bad:?}");
        }
        for good in ["Ada Lovelace", "Zoë Ñúñez", "مهدی\u{200C}زاده", "क्\u{200D}ष", "李小龍", "O'Brien-Smith"]
        {
            assert_eq!(hidden_characters(good), None, "{good:?}");
        }
        assert_eq!(
            hidden_characters("x\u{202E}").unwrap(),
            "must not contain control or invisible formatting characters (found U+202E)"
        );
    }
}
