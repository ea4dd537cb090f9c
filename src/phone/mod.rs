//! Phone policy (docs/API.md §6): the toll-fraud guard in front of the paid call path.
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
//! (vendored in `assets/phonenumber/`, see its README), read with the crate's own loader at
//! build time: `build.rs` turns it into a static table of what the policy compiles (patterns,
//! possible lengths, example numbers), so the binaries carry neither the XML nor the crate.
//! Only the territories that share a calling code with an allowed region are compiled, each
//! once, with Unicode off, into one automaton (`Matcher`). The crate's own validation is not on
//! the request path: its global database deserialises all 254 territories on first use
//! (~100 ms), and even with a small database each check re-parses the number and looks every
//! pattern up in a locked cache (most of a request's time, measured in docs/PERFORMANCE.md).
//! Its verdicts remain the oracle of the unit tests, which compare the two on every example
//! number of the metadata and its neighbours, and check the table against the XML.

mod e164;
mod metadata;
#[cfg(test)]
mod tests;

use std::collections::BTreeSet;
use std::fmt;

pub use e164::{normalize, Masked, E164};
use metadata::{region_for, territories, Kind, Matcher};

/// Why a number was refused. The two variants map to the two error codes of docs/API.md §6.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PhoneError {
    /// Not a well-formed, existing E.164 number: `422 invalid_phone_number`.
    #[error("{0}")]
    Invalid(&'static str),
    /// A real number we will not call: `422 destination_not_allowed`.
    #[error("{0}")]
    NotAllowed(&'static str),
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

/// Whether libphonenumber knows `region` (ISO 3166 alpha-2, upper case) as a territory a
/// caller can allow.
pub fn is_known_region(region: &str) -> bool {
    territories().code_of(region).is_some()
}

impl PhonePolicy {
    /// Builds the policy for `regions` (ISO 3166 alpha-2, upper case): compiles the patterns of
    /// the territories of their calling codes, so the first request pays nothing more.
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
        if !self.allowed.contains(territory.id) {
            return Err(PhoneError::NotAllowed(
                "calls to this country are not allowed",
            ));
        }
        match kind {
            Kind::FixedOrMobile => Ok(AllowedNumber {
                e164,
                region: territory.id.to_string(),
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
            if !self.allowed.contains(territory.id) {
                continue;
            }
            for example in territory.examples() {
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
    region_for(&matchers, code, &digits.as_bytes()[cc_len..]).map(|t| t.id.to_string())
}
