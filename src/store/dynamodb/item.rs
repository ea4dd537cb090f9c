//! Attribute values: the numbers written, and the attributes read back from items.

use std::collections::HashMap;

use aws_sdk_dynamodb::types::AttributeValue;

use crate::store::StoreError;

/// An item as the SDK gives and takes it.
pub(super) type Item = HashMap<String, AttributeValue>;

pub(super) fn n(value: u64) -> AttributeValue {
    AttributeValue::N(value.to_string())
}

pub(super) fn epoch_secs(ms: u64) -> u64 {
    ms.div_ceil(1000)
}

pub(super) fn number(item: &Item, name: &str) -> Result<u64, StoreError> {
    match item.get(name) {
        Some(AttributeValue::N(value)) => value.parse().map_err(|error| {
            StoreError::corrupt(format!("attribute {name} is not a whole number")).caused_by(error)
        }),
        _ => Err(StoreError::corrupt(format!("attribute {name} is missing"))),
    }
}

pub(super) fn number_list(item: &Item, name: &str) -> Result<Vec<u64>, StoreError> {
    match item.get(name) {
        Some(AttributeValue::L(values)) => values
            .iter()
            .map(|v| match v {
                AttributeValue::N(t) => t.parse().ok(),
                _ => None,
            })
            .collect::<Option<Vec<u64>>>()
            .ok_or_else(|| StoreError::corrupt(format!("attribute {name} holds a non-number"))),
        _ => Err(StoreError::corrupt(format!("attribute {name} is missing"))),
    }
}

pub(super) fn string<'a>(item: &'a Item, name: &str) -> Result<&'a str, StoreError> {
    match item.get(name) {
        Some(AttributeValue::S(value)) => Ok(value),
        _ => Err(StoreError::corrupt(format!("attribute {name} is missing"))),
    }
}

pub(super) fn optional_number(item: &Item, name: &str) -> Result<Option<u64>, StoreError> {
    match item.get(name) {
        None => Ok(None),
        Some(_) => number(item, name).map(Some),
    }
}

pub(super) fn optional_string(item: &Item, name: &str) -> Result<Option<String>, StoreError> {
    match item.get(name) {
        None => Ok(None),
        Some(AttributeValue::S(value)) => Ok(Some(value.clone())),
        Some(_) => Err(StoreError::corrupt(format!("attribute {name} is not text"))),
    }
}
