//! Phone policy (SPEC §6): the toll-fraud guard in front of the paid call path.
//!
//! Three gates, in order:
//! 1. [`normalize`]: a strict byte-level syntax gate (`+`, 8–15 digits, spaces and hyphens removed).
//!    Letters, `tel:` URIs, extensions and Unicode digits never get past it.
//! 2. Validity against Google's libphonenumber metadata: the calling code, then the territory
//!    (libphonenumber's rules for a calling code shared by several), then the number's type from
//!    the territory's patterns. The digits after the calling code are the national number as
//!    dialled; nothing is stripped or rewritten.
//! 3. Region in the allowed set and number type in {mobile, fixed line, fixed line or mobile}.
//!
//! **Metadata and cost.** The metadata is the libphonenumber XML the `phonenumber` crate ships
//! (vendored in `assets/phonenumber/`, see its README), read with the crate's own loader. Only the
//! territories that share a calling code with an allowed region are loaded, and each one's
//! patterns are compiled once, with Unicode off, into one automaton ([`Matcher`]). The crate's
//! own validation is not on the request path: its global database deserialises all 254
//! territories on first use (~100 ms), and even with a small database each check re-parses the
//! number and looks every pattern up in a locked cache (most of a request's time, measured in
//! docs/PERFORMANCE.md). Its verdicts remain the oracle of the unit tests, which compare the two
//! on every example number of the metadata and its neighbours.

use std::collections::BTreeSet;
use std::fmt;
use std::sync::OnceLock;

use phonenumber::metadata::loader;

/// libphonenumber metadata, the same version as the `phonenumber` crate we depend on.
const METADATA_XML: &str = include_str!("../../assets/phonenumber/PhoneNumberMetadata.xml");

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
        self.masked_display().to_string()
    }

    /// [`masked`](Self::masked), written only when a log line is.
    pub fn masked_display(&self) -> Masked<'_> {
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
        f.write_str("+")?;
        f.write_str(&digits[..cc_len])?;
        for _ in cc_len..tail {
            f.write_str("*")?;
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

/// A number that passed every gate, with what we learned about it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AllowedNumber {
    pub e164: E164,
    /// ISO 3166 region, e.g. `PT`.
    pub region: String,
}

/// The phone policy for a set of allowed regions, with its own compiled metadata.
pub struct PhonePolicy {
    allowed: BTreeSet<String>,
    /// Country calling codes of the allowed regions.
    codes: BTreeSet<u16>,
    /// Every territory sharing one of `codes`, main country for its code first, then in file
    /// order: the order libphonenumber resolves a shared calling code in.
    territories: Vec<Matcher>,
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
    /// Builds the policy for `regions` (ISO 3166 alpha-2, upper case): loads the territories of
    /// their calling codes and compiles their patterns, so the first request pays nothing more.
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
        let territories = index.matchers_for(&codes);
        let policy = PhonePolicy {
            allowed,
            codes,
            territories,
        };
        policy.warm_up();
        Ok(policy)
    }

    /// Runs every gate. Never panics, whatever the input (see the property tests).
    pub fn check(&self, input: &str) -> Result<AllowedNumber, PhoneError> {
        const INVALID: PhoneError = PhoneError::Invalid("phone_number is not a valid number");
        let e164 = normalize(input)?;
        let digits = &e164.as_str()[1..];
        let Some(cc_len) = territories().country_code_len(digits) else {
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
        // In E.164 the digits after the calling code are the national significant number, as
        // dialled: no national prefix is stripped (a `0` after `+44` is refused, not ignored).
        let national = &digits.as_bytes()[cc_len..];
        let Some(territory) = region_for(&self.territories, code, national) else {
            return Err(INVALID);
        };
        let kind = territory.kind(national);
        if kind == Kind::Unknown {
            return Err(INVALID);
        }
        if !self.allowed.contains(&territory.id) {
            return Err(PhoneError::NotAllowed(
                "calls to this country are not allowed",
            ));
        }
        match kind {
            Kind::FixedOrMobile => Ok(AllowedNumber {
                e164,
                region: territory.id.clone(),
            }),
            _ => Err(PhoneError::NotAllowed(
                "calls to this kind of number (premium rate, toll free, VoIP, shared cost, ...) are not allowed",
            )),
        }
    }

    /// Runs each allowed region's own example numbers through the checks once, so the lazily
    /// built matching states and caches are in place before the first request.
    fn warm_up(&self) {
        for territory in self.territories.iter() {
            if !self.allowed.contains(&territory.id) {
                continue;
            }
            for example in &territory.examples {
                let _ = self.check(&format!("+{}{}", territory.code, example));
            }
        }
    }
}

/// The region (ISO code) of an E.164 number, using only the territories of its country code.
/// Used to default `ALLOWED_COUNTRIES` to the region of `CALLER_ID`.
pub fn region_of(e164: &E164) -> Option<String> {
    let index = territories();
    let digits = &e164.as_str()[1..];
    let cc_len = index.country_code_len(digits)?;
    let code: u16 = digits[..cc_len].parse().ok()?;
    let matchers = index.matchers_for(&BTreeSet::from([code]));
    region_for(&matchers, code, &digits.as_bytes()[cc_len..]).map(|t| t.id.clone())
}

/// libphonenumber's resolution of a calling code to a territory (`getRegionCodeForNumber`): a
/// code with one territory is that territory; otherwise the first territory, main country
/// first, whose leading digits start the number or, without leading digits, whose patterns
/// know the number.
fn region_for<'a>(territories: &'a [Matcher], code: u16, national: &[u8]) -> Option<&'a Matcher> {
    let mut candidates = territories.iter().filter(|t| t.code == code).peekable();
    let first = candidates.next()?;
    if candidates.peek().is_none() {
        return Some(first);
    }
    std::iter::once(first)
        .chain(candidates)
        .find(|t| match &t.leading_digits {
            Some(leading) => leading.is_match(national),
            None => t.kind(national) != Kind::Unknown,
        })
}

/// What a territory's metadata says a national number is, reduced to what the policy needs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    /// Fixed line, mobile, or either: a number we may call.
    FixedOrMobile,
    /// Premium rate, toll free, shared cost, VoIP, personal, pager, UAN or voicemail.
    Refused,
    /// Not a valid number of the territory.
    Unknown,
}

/// Which of libphonenumber's number descriptors a pattern of a [`Matcher`] is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Desc {
    General,
    Refused,
    FixedLine,
    Mobile,
}

/// One territory's number patterns, compiled once into a single automaton.
///
/// Matching follows libphonenumber (`getNumberTypeHelper`, `isNumberMatchingDesc`): a descriptor
/// matches when the number's length is one of its possible lengths (any, when it lists none)
/// and its pattern matches the *whole* number. The patterns are compiled with Unicode off
/// (`\d` is ASCII digits, which is what the metadata means and all a number here holds: a
/// smaller automaton, faster to build, than Unicode's `\d`), and all descriptors go into one
/// `RegexSet`, so a number is read once.
struct Matcher {
    id: String,
    code: u16,
    /// `leadingDigits`: anchored at the start only (libphonenumber's `lookingAt`).
    leading_digits: Option<regex::bytes::Regex>,
    set: regex::bytes::RegexSet,
    /// For each pattern of `set`: its descriptor and possible lengths.
    descs: Vec<(Desc, Vec<u16>)>,
    /// Example numbers of the fixed-line and mobile descriptors, for the warm-up.
    examples: Vec<String>,
}

impl Matcher {
    /// Compiles one territory; `None` when it has no general descriptor or a pattern does not
    /// compile (the vendored metadata has neither case: a unit test compiles every territory).
    fn compile(meta: &loader::Metadata) -> Option<Matcher> {
        let id = meta.id.clone()?;
        let code = meta.country_code?;
        let mut patterns = Vec::new();
        let mut descs = Vec::new();
        let mut push = |desc: Desc, d: &loader::Descriptor| {
            if let Some(pattern) = &d.national_number {
                patterns.push(format!("^(?:{pattern})$"));
                descs.push((desc, d.possible_length.clone()));
            }
        };
        push(Desc::General, meta.general.as_ref()?);
        // libphonenumber's order: these are tested before fixed line and mobile, and any of
        // them decides the type even when a fixed-line or mobile pattern also matches.
        for d in [
            &meta.premium_rate,
            &meta.toll_free,
            &meta.shared_cost,
            &meta.voip,
            &meta.personal_number,
            &meta.pager,
            &meta.uan,
            &meta.voicemail,
        ]
        .into_iter()
        .flatten()
        {
            push(Desc::Refused, d);
        }
        let mut examples = Vec::new();
        for (desc, d) in [
            (Desc::FixedLine, &meta.fixed_line),
            (Desc::Mobile, &meta.mobile),
        ] {
            if let Some(d) = d {
                push(desc, d);
                examples.extend(d.example.clone());
            }
        }
        let set = regex::bytes::RegexSetBuilder::new(&patterns)
            .ignore_whitespace(true)
            .unicode(false)
            .build()
            .ok()?;
        let leading_digits = match &meta.leading_digits {
            Some(p) => Some(
                regex::bytes::RegexBuilder::new(&format!("^(?:{p})"))
                    .ignore_whitespace(true)
                    .unicode(false)
                    .build()
                    .ok()?,
            ),
            None => None,
        };
        Some(Matcher {
            id,
            code,
            leading_digits,
            set,
            descs,
            examples,
        })
    }

    fn kind(&self, national: &[u8]) -> Kind {
        let len = national.len();
        let matches = self.set.matches(national);
        let hits = matches.iter().filter_map(|i| {
            let (desc, lengths) = self.descs.get(i)?;
            let fits = lengths.is_empty() || lengths.iter().any(|&l| usize::from(l) == len);
            fits.then_some(*desc)
        });
        let mut general = false;
        let mut fixed_or_mobile = false;
        for desc in hits {
            match desc {
                Desc::General => general = true,
                Desc::Refused => {
                    return if general {
                        Kind::Refused
                    } else {
                        Kind::Unknown
                    }
                }
                Desc::FixedLine | Desc::Mobile => fixed_or_mobile = true,
            }
        }
        match (general, fixed_or_mobile) {
            (true, true) => Kind::FixedOrMobile,
            _ => Kind::Unknown,
        }
    }
}

/// An index of the `<territory>` elements of the vendored metadata: where each one is, its
/// region id and calling code. Built once per process by scanning the text (well under 1 ms).
struct Territories {
    head: &'static str,
    tail: &'static str,
    entries: Vec<Territory>,
    /// `known[code]`: some territory has this calling code (codes are below 1000).
    known: Vec<bool>,
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
        let mut known = vec![false; 1000];
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
                if let Ok(code) = code.parse::<u16>() {
                    if let Some(slot) = known.get_mut(usize::from(code)) {
                        *slot = true;
                        entries.push(Territory { id, code, text });
                    }
                }
            }
            rest = stop;
        }
        Territories {
            head: &xml[..start],
            tail: &xml[end..],
            entries,
            known,
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
                .parse::<usize>()
                .is_ok_and(|code| self.known.get(code).copied().unwrap_or(false))
        })
    }

    /// The metadata document reduced to the territories of the given calling codes, in file
    /// order.
    fn xml_for(&self, codes: &BTreeSet<u16>) -> String {
        let mut xml = String::from(self.head);
        for t in self.entries.iter().filter(|t| codes.contains(&t.code)) {
            xml.push_str(t.text);
        }
        xml.push_str(self.tail);
        xml
    }

    /// The compiled territories of the given calling codes, each code's main country first,
    /// then in file order (libphonenumber's resolution order for a shared calling code).
    fn matchers_for(&self, codes: &BTreeSet<u16>) -> Vec<Matcher> {
        let xml = self.xml_for(codes);
        let mut metas =
            loader::load(xml.as_bytes()).expect("vendored libphonenumber metadata parses");
        metas.sort_by_key(|m| !m.main_country_for_code);
        metas.iter().filter_map(Matcher::compile).collect()
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

    /// libphonenumber matches a pattern against the whole national number; the `phonenumber`
    /// crate accepts a match of a prefix when the length is possible. Each of these is a valid
    /// number with one digit appended (the crate allows them).
    #[test]
    fn a_pattern_must_match_the_whole_national_number() {
        let policy = PhonePolicy::new(&["DZ", "IE", "CN"]).unwrap();
        for number in ["+213123456785", "+35322123455", "+8610123456785"] {
            assert_eq!(
                policy.check(number),
                Err(PhoneError::Invalid("phone_number is not a valid number")),
                "{number}"
            );
        }
        assert!(policy.check("+21312345678").is_ok());
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

    /// The policy as it was first written on the `phonenumber` crate (parse, number type,
    /// E.164 round trip, region): kept as the oracle the compiled matcher is checked against.
    fn crate_verdict(
        db: &phonenumber::metadata::Database,
        allowed: &BTreeSet<String>,
        e164: &str,
    ) -> Result<String, &'static str> {
        use phonenumber::Type;
        let number = phonenumber::parse_with(db, None, e164).map_err(|_| "invalid")?;
        let kind = number.number_type(db);
        if kind == Type::Unknown {
            return Err("invalid");
        }
        if format!("+{}{}", number.code().value(), number.national()) != e164 {
            return Err("rewritten");
        }
        let region = number
            .metadata(db)
            .map(|m| m.id().to_string())
            .unwrap_or_default();
        if !allowed.contains(&region) {
            return Err("not allowed");
        }
        match kind {
            Type::Mobile | Type::FixedLine | Type::FixedLineOrMobile => Ok(region),
            _ => Err("not allowed"),
        }
    }

    /// The crate judges a national number by its integer value: leading zeros (Italy, Côte
    /// d'Ivoire, ...) are lost before the patterns see it, so it calls such numbers invalid
    /// where libphonenumber, and the matcher, read them whole.
    fn national_starts_with_zero(e164: &str) -> bool {
        let digits = &e164[1..];
        let cc = territories().country_code_len(digits).unwrap_or(0);
        digits[cc..].starts_with('0')
    }

    fn verdict(policy: &PhonePolicy, e164: &str) -> Result<String, &'static str> {
        match policy.check(e164) {
            Ok(n) => Ok(n.region),
            Err(PhoneError::Invalid(_)) => Err("invalid"),
            Err(PhoneError::NotAllowed(_)) => Err("not allowed"),
        }
    }

    #[test]
    fn every_territory_of_the_metadata_compiles() {
        let index = territories();
        let codes: BTreeSet<u16> = index.entries.iter().map(|t| t.code).collect();
        assert_eq!(index.matchers_for(&codes).len(), index.entries.len());
    }

    /// The whole vendored metadata: as the crate's database, and as loaded records.
    fn whole_metadata() -> (phonenumber::metadata::Database, Vec<loader::Metadata>) {
        let index = territories();
        let codes: BTreeSet<u16> = index.entries.iter().map(|t| t.code).collect();
        let xml = index.xml_for(&codes);
        (
            phonenumber::metadata::Database::parse(&xml).unwrap(),
            loader::load(xml.as_bytes()).unwrap(),
        )
    }

    /// The example number of every descriptor of every territory, in E.164.
    fn example_numbers(metas: &[loader::Metadata]) -> Vec<String> {
        let mut numbers = Vec::new();
        for meta in metas {
            let descs = [
                &meta.fixed_line,
                &meta.mobile,
                &meta.toll_free,
                &meta.premium_rate,
                &meta.shared_cost,
                &meta.voip,
                &meta.personal_number,
                &meta.pager,
                &meta.uan,
                &meta.voicemail,
            ];
            for example in descs
                .into_iter()
                .flatten()
                .filter_map(|d| d.example.as_ref())
            {
                numbers.push(format!("+{}{}", meta.country_code.unwrap(), example));
            }
        }
        numbers
    }

    /// The vendored XML is the metadata the crate was built with: the crate judges every
    /// example number of every territory the same on both. Catches an upgrade of the crate
    /// without the file (assets/phonenumber/README.md).
    #[test]
    fn the_vendored_metadata_is_the_crate_s_own() {
        let (vendored, metas) = whole_metadata();
        let builtin = &*phonenumber::metadata::DATABASE;
        let allowed: BTreeSet<String> = metas.iter().filter_map(|m| m.id.clone()).collect();
        let numbers = example_numbers(&metas);
        for number in &numbers {
            assert_eq!(
                crate_verdict(&vendored, &allowed, number),
                crate_verdict(builtin, &allowed, number),
                "{number}"
            );
        }
        assert!(
            numbers.len() > 500,
            "only {} numbers compared",
            numbers.len()
        );
    }

    /// Every example number of every descriptor of every territory, and neighbours of each
    /// (last digit changed, one digit fewer, one more): the compiled matcher gives the same
    /// verdict and region as the crate, except where libphonenumber and the crate part: the
    /// matcher may refuse what the crate allows (the crate accepts a pattern matching only a
    /// prefix of the number), and may allow what the crate refuses when the crate rewrote the
    /// number (national prefix stripped from an international number) or lost its leading
    /// zeros. Both may refuse for different reasons. Anything else fails.
    #[test]
    fn the_compiled_matcher_agrees_with_the_phonenumber_crate() {
        let regions: Vec<&str> = territories()
            .entries
            .iter()
            .map(|t| t.id)
            .filter(|id| id.len() == 2)
            .collect();
        let policy = PhonePolicy::new(&regions).unwrap();
        let (db, metas) = whole_metadata();
        let mut numbers = BTreeSet::new();
        for base in example_numbers(&metas) {
            numbers.insert(base[..base.len() - 1].to_string());
            numbers.insert(format!("{base}5"));
            for d in '0'..='9' {
                numbers.insert(format!("{}{d}", &base[..base.len() - 1]));
            }
            numbers.insert(base);
        }
        let (mut same, mut refused_otherwise, mut stricter, mut rewritten, mut zeros) =
            (0, 0, 0, 0, 0);
        let mut disagreements = Vec::new();
        for number in numbers.iter().filter(|n| normalize(n).is_ok()) {
            let ours = verdict(&policy, number);
            let theirs = crate_verdict(&db, &policy.allowed, number);
            match (&ours, &theirs) {
                _ if ours == theirs => same += 1,
                (Err(_), Err(_)) => refused_otherwise += 1,
                (Err(_), Ok(_)) => stricter += 1,
                (Ok(_), Err("rewritten")) => rewritten += 1,
                (Ok(_), Err(_)) if national_starts_with_zero(number) => zeros += 1,
                _ => disagreements.push(format!("{number}: ours {ours:?}, crate {theirs:?}")),
            }
        }
        assert!(
            disagreements.is_empty(),
            "{} disagreements (of {same} agreeing), e.g. {:#?}",
            disagreements.len(),
            &disagreements[..disagreements.len().min(20)]
        );
        assert!(same > 10_000, "only {same} numbers compared");
        eprintln!(
            "same verdict {same}; both refuse, for another reason {refused_otherwise}; only \
             the matcher refuses {stricter}; only the matcher allows: crate rewrote the number \
             {rewritten}, leading zero {zeros}"
        );
    }
}
