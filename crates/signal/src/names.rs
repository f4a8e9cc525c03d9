//! Display names: what a participant may call itself so that others see it plainly.
//!
//! Format characters (Unicode category Cf: bidi overrides and isolates, zero-width
//! spaces and joiners, the BOM, …) are removed, so a name cannot reorder itself or hide
//! characters to impersonate another; control characters are refused.

use unicode_properties::{GeneralCategory, UnicodeGeneralCategory};

/// Characters that render as nothing although they are not Cf.
const INVISIBLE: [char; 6] = ['\u{034F}', '\u{115F}', '\u{1160}', '\u{3164}', '\u{FFA0}', '\u{2800}'];

fn is_hidden(c: char) -> bool {
    c.general_category() == GeneralCategory::Format || INVISIBLE.contains(&c)
}

/// The name as others will see it (`None` when empty), or why it is refused.
pub fn clean_name(name: Option<String>, max_chars: usize) -> Result<Option<String>, String> {
    let Some(name) = name else { return Ok(None) };
    if name.chars().any(char::is_control) {
        return Err("a display name cannot hold control characters".into());
    }
    let visible: String = name.chars().filter(|&c| !is_hidden(c)).collect();
    let name = visible.trim();
    if name.chars().count() > max_chars {
        return Err(format!("a display name has at most {max_chars} characters"));
    }
    Ok((!name.is_empty()).then(|| name.to_owned()))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn clean(s: &str) -> Result<Option<String>, String> {
        clean_name(Some(s.to_owned()), 64)
    }

    #[test]
    fn bidi_and_zero_width_characters_are_removed() {
        // "Alice" spoofed with a right-to-left override, zero-width space/joiners, isolates, BOM.
        for spoof in [
            "Al\u{202E}ecil",
            "Al\u{200B}ice",
            "\u{2066}Alice\u{2069}",
            "\u{FEFF}Alice",
            "A\u{200D}l\u{200C}i\u{200E}c\u{200F}e",
            "Alice\u{061C}",
            "Al\u{00AD}ice",
            "Al\u{2060}ice",
            "Alice\u{E0041}",
        ] {
            let got = clean(spoof).unwrap().unwrap();
            assert!(got.chars().all(|c| !is_hidden(c)), "{spoof:?} → {got:?}");
        }
        assert_eq!(clean("Al\u{200B}ice").unwrap().as_deref(), Some("Alice"));
        assert_eq!(clean("\u{202E}\u{200B}").unwrap(), None, "nothing visible left");
        assert_eq!(clean("\u{3164}").unwrap(), None, "Hangul filler");
    }

    #[test]
    fn ordinary_names_pass_and_controls_are_refused() {
        for ok in ["Ann", "José Müller", "李小龍", "محمد", "Zoë 🚀"] {
            assert_eq!(clean(ok).unwrap().as_deref(), Some(ok));
        }
        assert!(clean("a\u{7}b").is_err());
        assert!(clean("a\nb").is_err());
        assert!(clean("a\u{85}b").is_err(), "C1 control");
        assert!(clean(&"n".repeat(65)).is_err());
        assert_eq!(clean("  ").unwrap(), None);
    }
}
