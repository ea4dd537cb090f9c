use super::metadata::{territories, METADATA_XML};
use super::*;
use phonenumber::metadata::loader;

fn pt() -> PhonePolicy {
    PhonePolicy::new(&["PT"]).unwrap()
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

/// The whole vendored metadata: as the crate's database, and as loaded records.
fn whole_metadata() -> (phonenumber::metadata::Database, Vec<loader::Metadata>) {
    (
        phonenumber::metadata::Database::parse(METADATA_XML).unwrap(),
        loader::load(METADATA_XML.as_bytes()).unwrap(),
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
        .map(|t| t.id())
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
    let (mut same, mut refused_otherwise, mut stricter, mut rewritten, mut zeros) = (0, 0, 0, 0, 0);
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
