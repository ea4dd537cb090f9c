//! The [`E164`] value: the byte-level syntax gate that makes one ([`normalize`]) and its
//! masked form for logs ([`Masked`]).

use std::fmt;

use super::metadata::territories;
use super::PhoneError;

/// Longest raw input we look at: 15 digits plus a generous number of separators.
const MAX_RAW_LEN: usize = 40;

/// A syntactically valid E.164 string (`+` and 8–15 digits, first digit not 0).
/// Valid by construction: the only way to get one is [`normalize`].
#[derive(Clone, PartialEq, Eq, Hash)]
pub struct E164(String);

impl E164 {
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// The number masked for logs (docs/API.md §11): the country code and the last three digits,
    /// e.g. `+351******678`. The country code is found in the metadata index; an unknown code
    /// keeps only the first digit. Formatted, without allocating, only when it is written (a
    /// log line that is on); `.to_string()` where a `String` is needed.
    pub fn masked(&self) -> Masked<'_> {
        Masked(self)
    }
}

/// The masked form of an [`E164`], as [`fmt::Display`].
#[derive(Clone, Copy)]
pub struct Masked<'a>(&'a E164);

impl fmt::Display for Masked<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let digits = &self.0 .0[1..];
        let cc_len = territories()
            .country_code_len(digits)
            .unwrap_or(1)
            .min(digits.len());
        let tail = digits.len().saturating_sub(3).max(cc_len);
        // The stars as slices of one run, not a `write_str` (a `dyn Write` call) per star.
        const STARS: &str = "****************";
        f.write_str("+")?;
        f.write_str(&digits[..cc_len])?;
        let mut stars = tail - cc_len;
        while stars > 0 {
            let run = stars.min(STARS.len());
            f.write_str(&STARS[..run])?;
            stars -= run;
        }
        f.write_str(&digits[tail..])
    }
}

impl fmt::Display for E164 {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl fmt::Debug for E164 {
    // Debug output never shows the full number, so a stray `?number` in a log is harmless.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "E164({})", self.masked())
    }
}

/// The byte-level syntax gate: after removing ASCII spaces and hyphens (anywhere), `+` then
/// 8–15 ASCII digits. Anything else (letters, `tel:`, `;ext=`, dots, brackets, Unicode
/// digits or spaces, a leading 0 after `+`) is refused before any metadata is consulted.
pub fn normalize(input: &str) -> Result<E164, PhoneError> {
    const BAD: PhoneError =
        PhoneError::Invalid("phone_number must be in E.164 form: + and 8 to 15 digits");
    let bytes = input.as_bytes();
    if bytes.len() > MAX_RAW_LEN {
        return Err(BAD);
    }
    let mut out = String::with_capacity(16);
    for &b in bytes {
        match b {
            b' ' | b'-' => {}
            b'+' if out.is_empty() => out.push('+'),
            b'0'..=b'9' if !out.is_empty() => out.push(b as char),
            _ => return Err(BAD),
        }
    }
    let digits = out.len().saturating_sub(1);
    if !(8..=15).contains(&digits) || out.as_bytes()[1] == b'0' {
        return Err(BAD);
    }
    Ok(E164(out))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn syntax_gate_strips_spaces_and_hyphens_only() {
        assert_eq!(
            normalize("+351 912-345-678").unwrap().as_str(),
            "+351912345678"
        );
        assert_eq!(
            normalize(" +351 912345678 ").unwrap().as_str(),
            "+351912345678"
        );
        for bad in [
            "351912345678",
            "+351.912.345.678",
            "+351(912)345678",
            "tel:+351912345678",
            "+351912345678;ext=1",
            "+351912345678x1",
            "+0351912345678",
            "+1234567",
            "+1234567890123456",
            "+３５１９１２３４５６７８",
            "+351\u{a0}912345678",
            "",
            "+",
            "++351912345678",
            "+351+912345678",
            "+351912345678\n",
        ] {
            assert!(normalize(bad).is_err(), "{bad:?} passed the gate");
        }
    }

    #[test]
    fn masking_keeps_the_country_code_and_last_three_digits() {
        assert_eq!(
            normalize("+351912345678").unwrap().masked().to_string(),
            "+351******678"
        );
        assert_eq!(
            normalize("+14155550123").unwrap().masked().to_string(),
            "+1*******123"
        );
        // The shortest and the longest E.164 numbers, and a code the metadata does not know.
        for (number, masked) in [
            ("+35191234", "+351**234"),
            ("+351912345678901", "+351*********901"),
            ("+99912345678", "+9*******678"),
        ] {
            assert_eq!(normalize(number).unwrap().masked().to_string(), masked);
        }
        assert!(!format!("{:?}", normalize("+351912345678").unwrap()).contains("912345"));
    }
}
