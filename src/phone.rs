//! Phone policy (SPEC §6): the toll-fraud guard in front of the paid call path.
//!
//! Three gates, in order:
//! 1. [`normalize`]: a strict byte-level syntax gate (`+`, 8–15 digits, spaces and hyphens removed).
//!    `phonenumber::parse` alone accepts `tel:` URIs, extensions and letters, so nothing reaches it
//!    before this gate.
//! 2. `phonenumber` validity against Google's libphonenumber metadata, with a round trip: the number
//!    must format back to exactly the E.164 string we were given.
//! 3. Region in the allowed set and number type in {mobile, fixed line, fixed line or mobile}.
//!
//! **Cold start.** The `phonenumber` crate's built-in database deserialises all 254 territories on
//! first use (100–150 ms in a release build here). A serverless cold start would pay that on the
//! first call, so [`PhonePolicy`] builds its own small database holding only the territories that
//! share a country calling code with an allowed region (about 1.5 ms for one region, then ~7 ms
//! compiling its regular expressions in the warm-up; see docs/PERFORMANCE.md), from the same
//! libphonenumber XML the crate ships (vendored in `assets/phonenumber/`, see its README), and warms
//! the regular expressions it will use before the first request. Nothing here ever touches the
//! crate's global database.

use std::collections::BTreeSet;
use std::fmt;
use std::sync::OnceLock;

use phonenumber::metadata::Database;
use phonenumber::Type;

/// libphonenumber metadata, the same version as the `phonenumber` crate we depend on.
const METADATA_XML: &str = include_str!("../assets/phonenumber/PhoneNumberMetadata.xml");

/// Longest raw input we look at: 15 digits plus a generous number of separators.
const MAX_RAW_LEN: usize = 40;

/// Why a number was refused. The two variants map to the two error codes of SPEC §6.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PhoneError {
    /// Not a well-formed, existing E.164 number: `422 invalid_phone_number`.
    #[error("{0}")]
    Invalid(&'static str),
    /// A real number we will not call: `422 destination_not_allowed`.
    #[error("{0}")]
    NotAllowed(&'static str),
}

/// A syntactically valid E.164 string (`+` and 8–15 digits, first digit not 0).
/// Valid by construction: the only way to get one is [`normalize`].
#[derive(Clone, PartialEq, Eq, Hash)]
pub struct E164(String);

impl E164 {
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// The number masked for logs (SPEC §11): the country code and the last three digits,
    /// e.g. `+351******678`. The country code is found in the metadata index; an unknown code
    /// keeps only the first digit.
    pub fn masked(&self) -> String {
        let digits = &self.0[1..];
        let cc_len = territories()
            .country_code_len(digits)
            .unwrap_or(1)
            .min(digits.len());
        let tail = digits.len().saturating_sub(3).max(cc_len);
        let stars = tail - cc_len;
        format!(
            "+{}{}{}",
            &digits[..cc_len],
            "*".repeat(stars),
            &digits[tail..]
        )
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

/// A number that passed every gate, with what we learned about it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AllowedNumber {
    pub e164: E164,
    /// ISO 3166 region, e.g. `PT`.
    pub region: String,
}

/// The phone policy for a set of allowed regions, with its own small metadata database.
pub struct PhonePolicy {
    db: Database,
    allowed: BTreeSet<String>,
    /// Country calling codes present in `db`.
    codes: BTreeSet<u16>,
}

impl fmt::Debug for PhonePolicy {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("PhonePolicy")
            .field("allowed", &self.allowed)
            .field("codes", &self.codes)
            .finish()
    }
}

/// A region named in `ALLOWED_COUNTRIES` that libphonenumber does not know.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unknown region {0}")]
pub struct UnknownRegion(pub String);

impl PhonePolicy {
    /// Builds the policy for `regions` (ISO 3166 alpha-2, upper case) and warms it, so the first
    /// request does not pay for regular-expression compilation.
    pub fn new<S: AsRef<str>>(regions: &[S]) -> Result<Self, UnknownRegion> {
        let index = territories();
        let mut allowed = BTreeSet::new();
        let mut codes = BTreeSet::new();
        for region in regions {
            let region = region.as_ref();
            let code = index
                .code_of(region)
                .ok_or_else(|| UnknownRegion(region.to_string()))?;
            allowed.insert(region.to_string());
            codes.insert(code);
        }
        let db = index.database_for(&codes);
        let policy = PhonePolicy { db, allowed, codes };
        policy.warm_up();
        Ok(policy)
    }

    /// Runs every gate. Never panics, whatever the input (see the property tests).
    pub fn check(&self, input: &str) -> Result<AllowedNumber, PhoneError> {
        let e164 = normalize(input)?;
        let digits = &e164.as_str()[1..];
        let index = territories();
        let Some(cc_len) = index.country_code_len(digits) else {
            return Err(PhoneError::Invalid(
                "phone_number has no known country code",
            ));
        };
        let code: u16 = digits[..cc_len].parse().unwrap_or(0);
        if !self.codes.contains(&code) {
            return Err(PhoneError::NotAllowed(
                "calls to this country are not allowed",
            ));
        }
        let number = phonenumber::parse_with(&self.db, None, e164.as_str())
            .map_err(|_| PhoneError::Invalid("phone_number is not a valid number"))?;
        // `is_valid_with` is exactly `number_type != Unknown` (same metadata lookup, same
        // matcher): the type is computed once here, not twice (it is most of this check's cost,
        // see docs/PERFORMANCE.md).
        let kind = number.number_type(&self.db);
        if kind == Type::Unknown {
            return Err(PhoneError::Invalid("phone_number is not a valid number"));
        }
        // E.164 written out as the crate's `Mode::E164` writes it. Not through `format_with`:
        // its `Display` evaluates `unwrap_or(&DATABASE)` eagerly, which deserialises the
        // crate's global database (~100 ms, 6 MB) even when given ours.
        let formatted = format!("+{}{}", number.code().value(), number.national());
        if formatted != e164.as_str() {
            return Err(PhoneError::Invalid("phone_number is not a valid number"));
        }
        let region = number
            .metadata(&self.db)
            .map(|m| m.id().to_string())
            .unwrap_or_default();
        if !self.allowed.contains(&region) {
            return Err(PhoneError::NotAllowed(
                "calls to this country are not allowed",
            ));
        }
        match kind {
            Type::Mobile | Type::FixedLine | Type::FixedLineOrMobile => Ok(AllowedNumber {
                e164,
                region,
            }),
            _ => Err(PhoneError::NotAllowed(
                "calls to this kind of number (premium rate, toll free, VoIP, shared cost, ...) are not allowed",
            )),
        }
    }

    /// Compiles the regular expressions the checks use by validating each allowed region's own
    /// example numbers once.
    fn warm_up(&self) {
        for region in &self.allowed {
            let Some(meta) = self.db.by_id(region.as_str()) else {
                continue;
            };
            let descriptors = meta.descriptors();
            for example in [descriptors.mobile(), descriptors.fixed_line()]
                .into_iter()
                .flatten()
                .filter_map(|d| d.example())
            {
                let _ = self.check(&format!("+{}{}", meta.country_code(), example));
            }
        }
    }
}

/// The region (ISO code) of an E.164 number, using only the territories of its country code.
/// Used to default `ALLOWED_COUNTRIES` to the region of `CALLER_ID`.
pub fn region_of(e164: &E164) -> Option<String> {
    let index = territories();
    let digits = &e164.as_str()[1..];
    let code: u16 = digits[..index.country_code_len(digits)?].parse().ok()?;
    let db = index.database_for(&BTreeSet::from([code]));
    let number = phonenumber::parse_with(&db, None, e164.as_str()).ok()?;
    number.metadata(&db).map(|m| m.id().to_string())
}

/// An index of the `<territory>` elements of the vendored metadata: where each one is, its
/// region id and calling code. Built once per process by scanning the text (well under 1 ms).
struct Territories {
    head: &'static str,
    tail: &'static str,
    entries: Vec<Territory>,
}

struct Territory {
    id: &'static str,
    code: u16,
    text: &'static str,
}

fn territories() -> &'static Territories {
    static INDEX: OnceLock<Territories> = OnceLock::new();
    INDEX.get_or_init(|| Territories::scan(METADATA_XML))
}

impl Territories {
    fn scan(xml: &'static str) -> Self {
        const OPEN: &str = "<territories>";
        const CLOSE: &str = "</territories>";
        let start = xml.find(OPEN).map(|i| i + OPEN.len()).unwrap_or(0);
        let end = xml.rfind(CLOSE).unwrap_or(xml.len());
        let mut entries = Vec::with_capacity(256);
        let mut rest = start;
        while let Some(off) = xml[rest..end].find("<territory ") {
            let begin = rest + off;
            let Some(len) = xml[begin..end].find("</territory>") else {
                break;
            };
            let stop = begin + len + "</territory>".len();
            let text = &xml[begin..stop];
            let tag = &text[..text.find('>').unwrap_or(text.len())];
            if let (Some(id), Some(code)) = (attribute(tag, "id"), attribute(tag, "countryCode")) {
                if let Ok(code) = code.parse() {
                    entries.push(Territory { id, code, text });
                }
            }
            rest = stop;
        }
        Territories {
            head: &xml[..start],
            tail: &xml[end..],
            entries,
        }
    }

    fn code_of(&self, region: &str) -> Option<u16> {
        // "001" (non-geographical entities) is never a region a caller can allow.
        if region.len() != 2 {
            return None;
        }
        self.entries.iter().find(|t| t.id == region).map(|t| t.code)
    }

    /// Calling codes are prefix-free (ITU E.164), so at most one of the 1-, 2- and 3-digit
    /// prefixes is a known code.
    fn country_code_len(&self, digits: &str) -> Option<usize> {
        (1..=3.min(digits.len())).find(|&n| {
            digits[..n]
                .parse::<u16>()
                .is_ok_and(|code| self.entries.iter().any(|t| t.code == code))
        })
    }

    /// A database with every territory of the given calling codes, in file order (which keeps
    /// libphonenumber's main-country-for-code rules intact).
    fn database_for(&self, codes: &BTreeSet<u16>) -> Database {
        let mut xml = String::from(self.head);
        for t in self.entries.iter().filter(|t| codes.contains(&t.code)) {
            xml.push_str(t.text);
        }
        xml.push_str(self.tail);
        Database::parse(&xml).expect("vendored libphonenumber metadata parses")
    }
}

/// The value of `name="..."` in an XML start tag.
fn attribute<'a>(tag: &'a str, name: &str) -> Option<&'a str> {
    let needle = format!(" {name}=\"");
    let start = tag.find(&needle)? + needle.len();
    let len = tag[start..].find('"')?;
    Some(&tag[start..start + len])
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pt() -> PhonePolicy {
        PhonePolicy::new(&["PT"]).unwrap()
    }

    #[test]
    fn the_index_finds_every_territory_of_the_metadata() {
        let index = territories();
        assert_eq!(index.entries.len(), 254);
        assert_eq!(index.code_of("PT"), Some(351));
        assert_eq!(index.code_of("US"), Some(1));
        assert_eq!(index.code_of("001"), None);
        assert_eq!(index.code_of("XX"), None);
    }

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
    fn a_portuguese_mobile_and_fixed_line_are_allowed() {
        let policy = pt();
        assert_eq!(policy.check("+351912345678").unwrap().region, "PT");
        assert_eq!(policy.check("+351 212 345 678").unwrap().region, "PT");
    }

    #[test]
    fn premium_rate_toll_free_and_shared_cost_are_refused() {
        let policy = pt();
        // 760: premium rate; 800: toll free; 808: shared cost (libphonenumber PT metadata).
        for number in ["+351760123456", "+351800123456", "+351808123456"] {
            assert!(
                matches!(policy.check(number), Err(PhoneError::NotAllowed(_))),
                "{number} was not refused as a destination"
            );
        }
    }

    #[test]
    fn other_countries_and_global_networks_are_not_allowed() {
        let policy = pt();
        for number in [
            "+14155550123",
            "+447911123456",
            "+881612345678",
            "+882345678901",
        ] {
            assert!(
                matches!(policy.check(number), Err(PhoneError::NotAllowed(_))),
                "{number} was not refused as a destination"
            );
        }
    }

    #[test]
    fn invalid_ranges_and_unknown_codes_are_invalid() {
        let policy = pt();
        assert!(matches!(
            policy.check("+351112345678"),
            Err(PhoneError::Invalid(_))
        ));
        assert!(matches!(
            policy.check("+99912345678"),
            Err(PhoneError::Invalid(_))
        ));
    }

    #[test]
    fn shared_calling_codes_resolve_to_the_right_region() {
        let us = PhonePolicy::new(&["US"]).unwrap();
        // A Toronto number shares +1 with the US but is Canadian.
        assert!(matches!(
            us.check("+14165550123"),
            Err(PhoneError::NotAllowed(_)) | Err(PhoneError::Invalid(_))
        ));
        assert_eq!(us.check("+12015550123").unwrap().region, "US");
    }

    #[test]
    fn masking_keeps_the_country_code_and_last_three_digits() {
        assert_eq!(
            normalize("+351912345678").unwrap().masked(),
            "+351******678"
        );
        assert_eq!(normalize("+14155550123").unwrap().masked(), "+1*******123");
        assert!(!format!("{:?}", normalize("+351912345678").unwrap()).contains("912345"));
    }

    #[test]
    fn region_of_caller_id() {
        assert_eq!(
            region_of(&normalize("+351211234567").unwrap()).as_deref(),
            Some("PT")
        );
        assert_eq!(
            region_of(&normalize("+442079460000").unwrap()).as_deref(),
            Some("GB")
        );
    }

    #[test]
    fn unknown_regions_are_reported() {
        assert_eq!(
            PhonePolicy::new(&["PT", "ZZ"]).unwrap_err(),
            UnknownRegion("ZZ".into())
        );
    }

    #[test]
    fn the_vendored_metadata_agrees_with_the_crate_database() {
        use phonenumber::metadata::DATABASE;
        let regions = ["PT", "ES", "GB", "US", "DE", "FR", "BR", "IN", "CA", "IT"];
        let policy = PhonePolicy::new(&regions).unwrap();
        let mut compared = 0;
        for region in regions {
            let meta = policy.db.by_id(region).unwrap();
            let d = meta.descriptors();
            let typed = [
                d.mobile(),
                d.fixed_line(),
                d.toll_free(),
                d.premium_rate(),
                d.shared_cost(),
                d.voip(),
                d.uan(),
                d.personal_number(),
            ];
            for example in typed.into_iter().flatten().filter_map(|x| x.example()) {
                let number = format!("+{}{}", meta.country_code(), example);
                let ours = policy.check(&number);
                let theirs = phonenumber::parse(None, &number).unwrap();
                let allowed_type = matches!(
                    theirs.number_type(&DATABASE),
                    Type::Mobile | Type::FixedLine | Type::FixedLineOrMobile
                );
                assert_eq!(
                    ours.is_ok(),
                    theirs.is_valid() && allowed_type,
                    "{number}: ours {ours:?}, crate valid={} type={:?}",
                    theirs.is_valid(),
                    theirs.number_type(&DATABASE)
                );
                compared += 1;
            }
        }
        assert!(compared > 50, "only {compared} numbers compared");
    }
}
