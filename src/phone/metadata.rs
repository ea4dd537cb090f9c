//! The libphonenumber metadata: an index of its territories ([`territories`]), from a table
//! that `build.rs` generates out of the vendored XML (`codegen/phone_table.rs`), and the compiler
//! of their number patterns into one automaton per territory ([`Matcher`]). See [`super`] for
//! why the policy does not use the `phonenumber` crate's own validation.

use std::collections::BTreeSet;

/// libphonenumber's resolution of a calling code to a territory (`getRegionCodeForNumber`): a
/// code with one territory is that territory; otherwise the first territory, main country
/// first, whose leading digits start the number or, without leading digits, whose patterns
/// know the number.
pub(super) fn region_for<'a>(
    territories: &'a [Matcher],
    code: u16,
    national: &[u8],
) -> Option<&'a Matcher> {
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
pub(super) enum Kind {
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

/// One territory of the vendored metadata, as `build.rs` read it with the `phonenumber`
/// crate's loader: what [`Matcher::compile`] needs and nothing else. Its strings are [`Span`]s
/// of one text and its patterns a [`Run`] of one array, not pointers (see
/// `codegen/phone_table.rs`: fewer bytes, and no relocations at start-up).
pub(super) struct Territory {
    id: Span,
    pub(super) code: u16,
    /// `mainCountryForCode`: resolved first among the territories sharing its calling code.
    main_country_for_code: bool,
    /// `leadingDigits`, without whitespace.
    leading_digits: Option<Span>,
    /// The patterns of the general descriptor, the refused ones in libphonenumber's order,
    /// fixed line and mobile (a descriptor without a pattern has none here), in [`PATTERNS`];
    /// `None` when the territory has no general descriptor, which is never compiled (the
    /// vendored metadata has no such territory).
    patterns: Option<Run>,
    /// Example numbers of the fixed-line and mobile descriptors, for the warm-up.
    examples: [Option<Span>; 2],
}

impl Territory {
    /// The region id: ISO 3166 alpha-2, or "001" for a non-geographical entity.
    pub(super) fn id(&self) -> &'static str {
        self.id.text()
    }
}

/// One descriptor's `nationalNumberPattern`, without whitespace, and its possible lengths.
struct Pattern {
    desc: Desc,
    regex: Span,
    /// Bit `n` set when `n` is a possible length; none set: any length (the descriptor lists
    /// none).
    lengths: u32,
}

impl Pattern {
    /// libphonenumber's length check (`isNumberMatchingDesc`).
    fn fits(&self, len: usize) -> bool {
        self.lengths == 0
            || u32::try_from(len)
                .ok()
                .and_then(|n| self.lengths.checked_shr(n))
                .is_some_and(|bits| bits & 1 == 1)
    }
}

/// Where one string of the table is in [`TEXT`].
#[derive(Clone, Copy)]
struct Span {
    start: u32,
    len: u32,
}

impl Span {
    /// The string; empty were the span outside `TEXT` (`build.rs` writes both, and a unit
    /// test reads every span back against the XML).
    fn text(self) -> &'static str {
        TEXT.get(self.start as usize..)
            .and_then(|rest| rest.get(..self.len as usize))
            .unwrap_or("")
    }
}

/// Where one territory's patterns are in [`PATTERNS`].
#[derive(Clone, Copy)]
struct Run {
    start: u16,
    len: u16,
}

// `TABLE: &[Territory]`, every territory with an id and a calling code, in file order;
// `PATTERNS: &[Pattern]`; `TEXT: &str`, the strings of both.
include!(concat!(env!("OUT_DIR"), "/phone_table.rs"));

/// One territory's number patterns, compiled once into a single automaton.
///
/// Matching follows libphonenumber (`getNumberTypeHelper`, `isNumberMatchingDesc`): a descriptor
/// matches when the number's length is one of its possible lengths (any, when it lists none)
/// and its pattern matches the *whole* number. The patterns are compiled with Unicode off
/// (`\d` is ASCII digits, which is what the metadata means and all a number here holds: a
/// smaller automaton, faster to build, than Unicode's `\d`), and all descriptors go into one
/// `RegexSet`, so a number is read once.
pub(super) struct Matcher {
    pub(super) id: &'static str,
    pub(super) code: u16,
    /// `leadingDigits`: anchored at the start only (libphonenumber's `lookingAt`).
    leading_digits: Option<regex::bytes::Regex>,
    set: regex::bytes::RegexSet,
    /// For each pattern of `set`: its descriptor and possible lengths.
    descs: &'static [Pattern],
    examples: [Option<Span>; 2],
}

impl Matcher {
    /// Compiles one territory; `None` when it has no general descriptor or a pattern does not
    /// compile (the vendored metadata has neither case: a unit test compiles every territory).
    /// The table's patterns have no whitespace left, so the XML's whitespace-insensitive
    /// patterns compile without that mode (a unit test checks they parse the same).
    /// regex is built without its Unicode tables (`Cargo.toml`); none is needed with Unicode
    /// off, and `codegen/phone_table.rs` refuses a pattern that is not ASCII or sets a flag.
    /// (The tests build regex with its defaults, through the `phonenumber` dev-dependency.)
    fn compile(territory: &Territory) -> Option<Matcher> {
        let Run { start, len } = territory.patterns?;
        let start = usize::from(start);
        let descs = PATTERNS.get(start..start + usize::from(len))?;
        let set = regex::bytes::RegexSetBuilder::new(
            descs.iter().map(|p| format!("^(?:{})$", p.regex.text())),
        )
        .unicode(false)
        .build()
        .ok()?;
        let leading_digits = match territory.leading_digits {
            Some(p) => Some(
                regex::bytes::RegexBuilder::new(&format!("^(?:{})", p.text()))
                    .unicode(false)
                    .build()
                    .ok()?,
            ),
            None => None,
        };
        Some(Matcher {
            id: territory.id(),
            code: territory.code,
            leading_digits,
            set,
            descs,
            examples: territory.examples,
        })
    }

    /// Example numbers of the fixed-line and mobile descriptors, for the warm-up.
    pub(super) fn examples(&self) -> impl Iterator<Item = &'static str> {
        self.examples.into_iter().flatten().map(Span::text)
    }

    pub(super) fn kind(&self, national: &[u8]) -> Kind {
        let len = national.len();
        let matches = self.set.matches(national);
        let hits = matches.iter().filter_map(|i| {
            let pattern = self.descs.get(i)?;
            pattern.fits(len).then_some(pattern.desc)
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

/// An index of the territories of the metadata: the generated table, and which calling codes
/// it knows. Built at compile time: nothing to scan or parse at start-up.
pub(super) struct Territories {
    pub(super) entries: &'static [Territory],
    /// `known[code]`: some territory has this calling code (codes are below 1000, which
    /// `build.rs` checks).
    known: [bool; 1000],
}

pub(super) fn territories() -> &'static Territories {
    static INDEX: Territories = Territories {
        entries: TABLE,
        known: known_codes(TABLE),
    };
    &INDEX
}

const fn known_codes(table: &[Territory]) -> [bool; 1000] {
    let mut known = [false; 1000];
    let mut i = 0;
    while i < table.len() {
        known[table[i].code as usize] = true;
        i += 1;
    }
    known
}

impl Territories {
    pub(super) fn code_of(&self, region: &str) -> Option<u16> {
        // "001" (non-geographical entities) is never a region a caller can allow.
        if region.len() != 2 {
            return None;
        }
        self.entries
            .iter()
            .find(|t| t.id() == region)
            .map(|t| t.code)
    }

    /// Calling codes are prefix-free (ITU E.164), so at most one of the 1-, 2- and 3-digit
    /// prefixes is a known code.
    pub(super) fn country_code_len(&self, digits: &str) -> Option<usize> {
        (1..=3.min(digits.len())).find(|&n| {
            digits[..n]
                .parse::<usize>()
                .is_ok_and(|code| self.known.get(code).copied().unwrap_or(false))
        })
    }

    /// The compiled territories of the given calling codes, each code's main country first,
    /// then in file order (libphonenumber's resolution order for a shared calling code).
    pub(super) fn matchers_for(&self, codes: &BTreeSet<u16>) -> Vec<Matcher> {
        let mut selected: Vec<&Territory> = self
            .entries
            .iter()
            .filter(|t| codes.contains(&t.code))
            .collect();
        // Stable: file order within the main countries and within the others.
        selected.sort_by_key(|t| !t.main_country_for_code);
        selected.into_iter().filter_map(Matcher::compile).collect()
    }
}

/// The vendored XML that `build.rs` generates the table from: the tests read it with the
/// `phonenumber` crate's loader, as the oracle of the table and of the compiled matchers.
#[cfg(test)]
pub(super) const METADATA_XML: &str =
    include_str!("../../assets/phonenumber/PhoneNumberMetadata.xml");

#[cfg(test)]
mod tests {
    use super::*;
    use phonenumber::metadata::loader;

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
    fn every_territory_of_the_metadata_compiles() {
        let index = territories();
        let codes: BTreeSet<u16> = index.entries.iter().map(|t| t.code).collect();
        assert_eq!(index.matchers_for(&codes).len(), index.entries.len());
    }

    /// What `Matcher::compile` built from the loader's record before the table: the pattern as
    /// the XML writes it, of each descriptor in the order the matcher tests them.
    fn descriptors_of(meta: &loader::Metadata) -> Option<Vec<(Desc, &loader::Descriptor)>> {
        let mut descs = vec![(Desc::General, meta.general.as_ref()?)];
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
            descs.push((Desc::Refused, d));
        }
        descs.extend(meta.fixed_line.iter().map(|d| (Desc::FixedLine, d)));
        descs.extend(meta.mobile.iter().map(|d| (Desc::Mobile, d)));
        Some(descs)
    }

    /// `pattern` parsed as the runtime compiles it (bytes, Unicode off), whitespace-insensitive
    /// or not.
    fn parsed(pattern: &str, ignore_whitespace: bool) -> regex_syntax::hir::Hir {
        regex_syntax::ParserBuilder::new()
            .unicode(false)
            .utf8(false)
            .ignore_whitespace(ignore_whitespace)
            .build()
            .parse(pattern)
            .unwrap_or_else(|e| panic!("{pattern}: {e}"))
    }

    /// The table `build.rs` generated says what the XML says, read with the crate's loader
    /// here: the same territories in the same order, codes, main countries, patterns (the
    /// generated one, without whitespace, parses to the same expression as the XML's did in
    /// the whitespace-insensitive mode the runtime used to compile it with), possible lengths
    /// and example numbers. A change to the generator, or to the XML without a rebuild, fails.
    #[test]
    fn the_generated_table_is_the_vendored_metadata() {
        let metas = loader::load(METADATA_XML.as_bytes()).unwrap();
        let indexed: Vec<&loader::Metadata> = metas
            .iter()
            .filter(|m| m.id.is_some() && m.country_code.is_some())
            .collect();
        assert_eq!(indexed.len(), TABLE.len());
        let mut patterns = 0;
        for (meta, t) in indexed.into_iter().zip(TABLE) {
            let id = t.id();
            assert_eq!(meta.id.as_deref(), Some(id));
            assert_eq!(meta.country_code, Some(t.code), "{id}");
            assert_eq!(meta.main_country_for_code, t.main_country_for_code, "{id}");
            match (&meta.leading_digits, t.leading_digits.map(Span::text)) {
                (None, None) => {}
                (Some(xml), Some(ours)) => {
                    assert_eq!(xml.split_whitespace().collect::<String>(), ours, "{id}");
                    assert_eq!(
                        parsed(&format!("^(?:{xml})"), true),
                        parsed(&format!("^(?:{ours})"), false),
                        "{id}: leading digits"
                    );
                }
                (xml, ours) => panic!("{id}: leading digits {xml:?} against {ours:?}"),
            }
            let expected = descriptors_of(meta).map(|descs| {
                descs
                    .into_iter()
                    .filter_map(|(desc, d)| Some((desc, d.national_number.as_ref()?, d)))
                    .collect::<Vec<_>>()
            });
            let ours = t.patterns.map(|Run { start, len }| {
                let start = usize::from(start);
                PATTERNS
                    .get(start..start + usize::from(len))
                    .unwrap_or_else(|| panic!("{id}: patterns out of the table"))
            });
            match (expected, ours) {
                (None, None) => {}
                (Some(expected), Some(ours)) => {
                    assert_eq!(expected.len(), ours.len(), "{id}: number of patterns");
                    for ((desc, xml, d), p) in expected.into_iter().zip(ours) {
                        assert_eq!(desc, p.desc, "{id}");
                        let regex = p.regex.text();
                        let stripped: String = xml.split_whitespace().collect();
                        assert_eq!(stripped, regex, "{id}");
                        assert!(
                            !regex.chars().any(char::is_whitespace),
                            "{id}: whitespace left in {regex}"
                        );
                        assert_eq!(
                            parsed(&format!("^(?:{xml})$"), true),
                            parsed(&format!("^(?:{regex})$"), false),
                            "{id}: {xml}"
                        );
                        // The length check the loader's list meant: any length when it is
                        // empty, else one of its lengths.
                        let lengths = &d.possible_length;
                        for len in 0..64 {
                            assert_eq!(
                                p.fits(len),
                                lengths.is_empty()
                                    || lengths.iter().any(|&l| usize::from(l) == len),
                                "{id}: length {len} against {lengths:?}"
                            );
                        }
                        patterns += 1;
                    }
                }
                (expected, ours) => panic!(
                    "{id}: general descriptor {} in the XML, {} in the table",
                    expected.is_some(),
                    ours.is_some()
                ),
            }
            let examples: Vec<&str> = [&meta.fixed_line, &meta.mobile]
                .into_iter()
                .flatten()
                .filter_map(|d| d.example.as_deref())
                .collect();
            let ours: Vec<&str> = t.examples.into_iter().flatten().map(Span::text).collect();
            assert_eq!(examples, ours, "{id}: examples");
        }
        assert!(patterns > 1000, "only {patterns} patterns compared");
    }
}
