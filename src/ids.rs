//! Identifiers written as text on every call (request ids, call ids, event ids, digests),
//! straight into a `String` of their exact length: `to_string()` and `format!` go through
//! `core::fmt` and grow their buffer, ~1k instructions each on an admitted call
//! (docs/PERFORMANCE.md, "Admitted calls: what a refusal does not pay").

use uuid::Uuid;

/// A new random (version 4) UUID, from `rand`'s thread-local generator (ChaCha, seeded and
/// reseeded from the OS). `Uuid::new_v4` asks the kernel for every id: one `getrandom(2)` per
/// id, three per admitted call (request, call, event), seen with `strace -c` under load.
pub fn new_uuid() -> Uuid {
    uuid::Builder::from_random_bytes(rand::random()).into_uuid()
}

/// `id` in its usual form: 36 characters, lowercase, hyphenated (what `to_string` gives).
pub fn uuid(id: Uuid) -> String {
    prefixed_uuid("", id)
}

/// `prefix` then `id` in its hyphenated form.
pub fn prefixed_uuid(prefix: &str, id: Uuid) -> String {
    joined(
        prefix,
        id.hyphenated().encode_lower(&mut Uuid::encode_buffer()),
    )
}

/// `prefix` then `id` as 32 lowercase hex digits, no hyphens.
pub fn prefixed_simple_uuid(prefix: &str, id: Uuid) -> String {
    joined(prefix, id.simple().encode_lower(&mut Uuid::encode_buffer()))
}

/// `prefix` and `text` in one `String` of their exact length.
fn joined(prefix: &str, text: &str) -> String {
    let mut out = String::with_capacity(prefix.len() + text.len());
    out.push_str(prefix);
    out.push_str(text);
    out
}

/// `bytes` as lowercase hex (what `hex::encode` gives, without its `char` at a time).
pub fn hex(bytes: &[u8]) -> String {
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    let mut out = String::with_capacity(bytes.len() * 2);
    for &b in bytes {
        out.push(char::from(DIGITS[usize::from(b >> 4)]));
        out.push(char::from(DIGITS[usize::from(b & 0x0f)]));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn new_ids_are_random_version_4_uuids() {
        let ids: std::collections::HashSet<Uuid> = (0..1000).map(|_| new_uuid()).collect();
        assert_eq!(ids.len(), 1000);
        for id in ids {
            assert_eq!(id.get_version(), Some(uuid::Version::Random));
            assert_eq!(id.get_variant(), uuid::Variant::RFC4122);
        }
    }

    #[test]
    fn uuids_are_written_as_their_display_forms() {
        for _ in 0..100 {
            let id = Uuid::new_v4();
            assert_eq!(uuid(id), id.to_string());
            assert_eq!(prefixed_uuid("dry-run-", id), format!("dry-run-{id}"));
            assert_eq!(
                prefixed_simple_uuid("msg_", id),
                format!("msg_{}", id.simple())
            );
        }
    }

    #[test]
    fn hex_is_the_hex_crates_lowercase_form() {
        let every_byte: Vec<u8> = (0..=255).collect();
        assert_eq!(hex(&every_byte), hex::encode(&every_byte));
        assert_eq!(hex(&[]), "");
    }
}
