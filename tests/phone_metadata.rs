//! The phone policy never loads the `phonenumber` crate's global database: deserialising it
//! costs ~100 ms of cold start (docs/PERFORMANCE.md). Its own test binary, so nothing else in
//! the process touches that database first.

use chamada::phone::PhonePolicy;
use phonenumber::metadata::DATABASE;

#[test]
fn the_policy_never_forces_the_crate_global_database() {
    let policy = PhonePolicy::new(&["PT", "US", "GB"]).unwrap();
    for number in [
        "+351912345678",
        "+351212345678",
        "+351800123456",
        "+12015550123",
        "+14165550123",
        "+447911123456",
        "+33612345678",
        "+351112345678",
    ] {
        let _ = policy.check(number);
    }
    assert!(
        once_cell::sync::Lazy::get(&DATABASE).is_none(),
        "phonenumber::metadata::DATABASE was initialised"
    );
}
