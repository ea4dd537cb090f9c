//! The libphonenumber metadata: an index of the vendored XML's territories ([`territories`])
//! and the compiler of their number patterns into one automaton per territory ([`Matcher`]).
//! See [`super`] for why the policy does not use the `phonenumber` crate's own validation.

use std::collections::BTreeSet;
use std::sync::OnceLock;

use phonenumber::metadata::loader;

/// libphonenumber metadata, the same version as the `phonenumber` crate we depend on.
const METADATA_XML: &str = include_str!("../../assets/phonenumber/PhoneNumberMetadata.xml");

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

/// One territory's number patterns, compiled once into a single automaton.
///
/// Matching follows libphonenumber (`getNumberTypeHelper`, `isNumberMatchingDesc`): a descriptor
/// matches when the number's length is one of its possible lengths (any, when it lists none)
/// and its pattern matches the *whole* number. The patterns are compiled with Unicode off
/// (`\d` is ASCII digits, which is what the metadata means and all a number here holds: a
/// smaller automaton, faster to build, than Unicode's `\d`), and all descriptors go into one
/// `RegexSet`, so a number is read once.
pub(super) struct Matcher {
    pub(super) id: String,
    pub(super) code: u16,
    /// `leadingDigits`: anchored at the start only (libphonenumber's `lookingAt`).
    leading_digits: Option<regex::bytes::Regex>,
    set: regex::bytes::RegexSet,
    /// For each pattern of `set`: its descriptor and possible lengths.
    descs: Vec<(Desc, Vec<u16>)>,
    /// Example numbers of the fixed-line and mobile descriptors, for the warm-up.
    pub(super) examples: Vec<String>,
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

    pub(super) fn kind(&self, national: &[u8]) -> Kind {
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
pub(super) struct Territories {
    head: &'static str,
    tail: &'static str,
    pub(super) entries: Vec<Territory>,
    /// `known[code]`: some territory has this calling code (codes are below 1000).
    known: Vec<bool>,
}

pub(super) struct Territory {
    pub(super) id: &'static str,
    pub(super) code: u16,
    text: &'static str,
}

pub(super) fn territories() -> &'static Territories {
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

    /// The metadata document reduced to the territories of the given calling codes, in file
    /// order.
    pub(super) fn xml_for(&self, codes: &BTreeSet<u16>) -> String {
        let mut xml = String::from(self.head);
        for t in self.entries.iter().filter(|t| codes.contains(&t.code)) {
            xml.push_str(t.text);
        }
        xml.push_str(self.tail);
        xml
    }

    /// The compiled territories of the given calling codes, each code's main country first,
    /// then in file order (libphonenumber's resolution order for a shared calling code).
    pub(super) fn matchers_for(&self, codes: &BTreeSet<u16>) -> Vec<Matcher> {
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
}
