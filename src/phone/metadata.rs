//! The libphonenumber metadata: an index of its territories ([`territories`]), from a table
//! that `build.rs` generates out of the vendored XML (`build/phone_table.rs`), and the compiler
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
/// crate's loader: what [`Matcher::compile`] needs and nothing else.
pub(super) struct Territory {
    pub(super) id: &'static str,
    pub(super) code: u16,
    /// `mainCountryForCode`: resolved first among the territories sharing its calling code.
    main_country_for_code: bool,
    /// `leadingDigits`, without whitespace.
    leading_digits: Option<&'static str>,
    /// The patterns of the general descriptor, the refused ones in libphonenumber's order,
    /// fixed line and mobile (a descriptor without a pattern has none here); `None` when the
    /// territory has no general descriptor, which is never compiled (the vendored metadata has
    /// no such territory).
    patterns: Option<&'static [Pattern]>,
    /// Example numbers of the fixed-line and mobile descriptors, for the warm-up.
    examples: &'static [&'static str],
}

/// One descriptor's `nationalNumberPattern`, without whitespace, and its possible lengths.
struct Pattern {
    desc: Desc,
    regex: &'static str,
    lengths: &'static [u8],
}

// `static TABLE: &[Territory]`, every territory with an id and a calling code, in file order.
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
    /// Example numbers of the fixed-line and mobile descriptors, for the warm-up.
    pub(super) examples: &'static [&'static str],
}

impl Matcher {
    /// Compiles one territory; `None` when it has no general descriptor or a pattern does not
    /// compile (the vendored metadata has neither case: a unit test compiles every territory).
    /// The table's patterns have no whitespace left, so the XML's whitespace-insensitive
    /// patterns compile without that mode (a unit test checks they parse the same).
    fn compile(territory: &'static Territory) -> Option<Matcher> {
        let descs = territory.patterns?;
        let set = regex::bytes::RegexSetBuilder::new(
            descs.iter().map(|p| format!("^(?:{})$", p.regex)),
        )
        .unicode(false)
        .build()
        .ok()?;
        let leading_digits = match territory.leading_digits {
            Some(p) => Some(
                regex::bytes::RegexBuilder::new(&format!("^(?:{p})"))
                    .unicode(false)
                    .build()
                    .ok()?,
            ),
            None => None,
        };
        Some(Matcher {
            id: territory.id,
            code: territory.code,
            leading_digits,
            set,
            descs,
            examples: territory.examples,
        })
    }

    pub(super) fn kind(&self, national: &[u8]) -> Kind {
        let len = national.len();
        let matches = self.set.matches(national);
        let hits = matches.iter().filter_map(|i| {
            let Pattern { desc, lengths, .. } = self.descs.get(i)?;
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
        self.entries.iter().find(|t| t.id == region).map(|t| t.code)
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
        let mut selected: Vec<&'static Territory> = self
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
pub(super) const METADATA_XML: &str = include_str!("../../assets/phonenumber/PhoneNumberMetadata.xml");

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
            assert_eq!(meta.id.as_deref(), Some(t.id));
            let id = t.id;
            assert_eq!(meta.country_code, Some(t.code), "{id}");
            assert_eq!(meta.main_country_for_code, t.main_country_for_code, "{id}");
            match (&meta.leading_digits, t.leading_digits) {
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
            match (expected, t.patterns) {
                (None, None) => {}
                (Some(expected), Some(ours)) => {
                    assert_eq!(expected.len(), ours.len(), "{id}: number of patterns");
                    for ((desc, xml, d), p) in expected.into_iter().zip(ours) {
                        assert_eq!(desc, p.desc, "{id}");
                        assert!(
                            !p.regex.chars().any(char::is_whitespace),
                            "{id}: whitespace left in {}",
                            p.regex
                        );
                        let stripped: String = xml.split_whitespace().collect();
                        assert_eq!(stripped, p.regex, "{id}");
                        assert_eq!(
                            parsed(&format!("^(?:{xml})$"), true),
                            parsed(&format!("^(?:{})$", p.regex), false),
                            "{id}: {xml}"
                        );
                        let lengths: Vec<u16> = p.lengths.iter().map(|&l| l.into()).collect();
                        assert_eq!(d.possible_length, lengths, "{id}: {xml}");
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
            assert_eq!(examples, t.examples, "{id}: examples");
        }
        assert!(patterns > 1000, "only {patterns} patterns compared");
    }
}
