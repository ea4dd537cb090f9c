//! What text from a caller may reach the agent's prompt (`name`, `variables` values).
//!
//! Only what a person sees: letters, marks, digits, punctuation, symbols and the plain space.
//! Refused: control characters, every format character (`Cf`: bidirectional overrides,
//! zero-width characters, Unicode tag characters that spell hidden text, U+00AD, U+061C,
//! U+180E, …), line and paragraph separators, every space other than U+0020, private-use,
//! surrogate and unassigned code points, and the fillers and selectors that render as nothing
//! (U+3164, U+FE0F, …). Two format characters are kept where scripts need them: U+200C ZERO
//! WIDTH NON-JOINER and U+200D ZERO WIDTH JOINER, only between a letter (or a combining mark,
//! such as an Indic virama) and a letter — Persian and Indic names use them so.

use unicode_properties::{GeneralCategoryGroup, UnicodeGeneralCategory};

/// The first character of `text` that may not reach the agent, if any.
pub fn first_invisible(text: &str) -> Option<char> {
    // Printable ASCII is letters, digits, punctuation, symbols and the plain space: all
    // allowed, decided without the table lookups (a test holds the two ways equal).
    if text.bytes().all(|b| matches!(b, b' '..=b'~')) {
        return None;
    }
    let chars: Vec<char> = text.chars().collect();
    chars.iter().enumerate().find_map(|(i, &c)| {
        let allowed = match c {
            ' ' => true,
            '\u{200C}' | '\u{200D}' => {
                let before = i.checked_sub(1).map(|j| chars[j]);
                let after = chars.get(i + 1).copied();
                before.is_some_and(|b| is_letter(b) || is_mark(b)) && after.is_some_and(is_letter)
            }
            _ if renders_as_nothing(c) => false,
            _ => matches!(
                c.general_category_group(),
                GeneralCategoryGroup::Letter
                    | GeneralCategoryGroup::Mark
                    | GeneralCategoryGroup::Number
                    | GeneralCategoryGroup::Punctuation
                    | GeneralCategoryGroup::Symbol
            ),
        };
        (!allowed).then_some(c)
    })
}

fn is_letter(c: char) -> bool {
    c.general_category_group() == GeneralCategoryGroup::Letter
}

fn is_mark(c: char) -> bool {
    c.general_category_group() == GeneralCategoryGroup::Mark
}

/// Letters, marks and symbols that show nothing: Hangul fillers, the Braille blank, the
/// combining grapheme joiner, Khmer inherent vowels and the variation selectors.
fn renders_as_nothing(c: char) -> bool {
    matches!(c,
        '\u{034F}'
        | '\u{115F}' | '\u{1160}'
        | '\u{17B4}' | '\u{17B5}'
        | '\u{180B}'..='\u{180F}'
        | '\u{2800}'
        | '\u{3164}'
        | '\u{FE00}'..='\u{FE0F}'
        | '\u{FFA0}'
        | '\u{E0100}'..='\u{E01EF}')
}

#[cfg(test)]
mod tests {
    use super::first_invisible;

    #[test]
    fn printable_ascii_is_allowed_by_the_tables_too() {
        // The fast path's claim, checked against the general categories: with a character
        // outside ASCII appended, the table path judges the ASCII one.
        for c in ' '..='~' {
            assert_eq!(first_invisible(&format!("é{c}")), None, "{c:?}");
        }
        for c in ('\0'..' ').chain(['\u{7F}']) {
            assert_eq!(
                first_invisible(&format!("Ana{c}")),
                Some(c),
                "U+{:04X}",
                c as u32
            );
        }
    }

    #[test]
    fn names_in_any_script_pass() {
        for name in [
            "Maria José",
            "Zoë",
            "李雷",
            "محمد",
            "Nguyễn Văn An",
            "O'Brien-Smith",
            "Ølstad, Jr.",
            // Persian: ZWNJ between two letters.
            "مهرنوش نیک\u{200C}نام",
            // Devanagari: ZWJ after a virama, before a letter.
            "क्\u{200D}ष",
            "José 3º",
        ] {
            assert_eq!(first_invisible(name), None, "{name:?}");
        }
    }

    #[test]
    fn invisible_and_hidden_characters_are_refused() {
        for c in [
            '\u{E0041}', // tag LATIN CAPITAL LETTER A: hidden text
            '\u{E0001}',
            '\u{E007F}',
            '\u{2028}',
            '\u{2029}',
            '\u{00AD}',
            '\u{061C}',
            '\u{180E}',
            '\u{3164}',
            '\u{FE0F}',
            '\u{200B}',
            '\u{202E}',
            '\u{2066}',
            '\u{FEFF}',
            '\u{00A0}', // a space, but not the plain one
            '\u{3000}',
            '\u{E000}',  // private use
            '\u{F0000}', // private use, plane 15
            '\u{0378}',  // unassigned
            '\u{FFFF}',  // noncharacter
            '\u{0007}',
            '\n',
            '\t',
            '\u{115F}',
            '\u{2800}',
            '\u{034F}',
        ] {
            let name = format!("Ana{c}Silva");
            assert_eq!(first_invisible(&name), Some(c), "U+{:04X}", c as u32);
        }
    }

    #[test]
    fn joiners_only_between_letters() {
        for bad in [
            "\u{200C}Ana",
            "Ana\u{200D}",
            "Ana \u{200C}Silva",
            "Ana\u{200D} Silva",
            "👨\u{200D}👩",
            "1\u{200C}2",
        ] {
            assert!(first_invisible(bad).is_some(), "{bad:?}");
        }
    }
}
