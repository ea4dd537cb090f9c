//! What only the DynamoDB call records have: their items (`call#`, `callref#`), their TTL and
//! version, the round trips of each operation (a change and its event in one
//! `TransactWriteItems`), and a change that lost a race decided again on the item the failed
//! condition returned. The rules they share with the memory store are in the conformance suite.

use std::collections::HashMap;

use aws_sdk_dynamodb::types::AttributeValue;
use aws_sdk_dynamodb::Client;
use chamada::store::{
    Advance, CallRecord, CallRecords, CallStatus, Change, Envelope, Outbox, OutboxState, Step,
};
use dynoxide::actions::update_item::UpdateItemRequest;

use crate::conformance::{call_record, envelope, NOON_MS};
use crate::dynoxide::{num, s, BeforeSend, Dynoxide, RoundTrips, TABLE};

type Item = HashMap<String, AttributeValue>;

const CALL: &str = "6a0c54f4-8d1e-4c3b-9a47-0c2f9e4b7d11";

/// The item under `pk`, read as it is in the table.
async fn raw(client: &Client, pk: &str) -> Option<Item> {
    crate::dynoxide::raw(client, TABLE, pk).await
}

fn applied(advance: Advance) -> CallRecord {
    match advance {
        Advance::Applied(record) => *record,
        other => panic!("expected the change applied, got {other:?}"),
    }
}

/// docs/DYNAMODB.md: creating a record is one write (a transaction with its way back when the
/// provider gave an id); reading and finding one `GetItem` each; a change is one `GetItem`
/// and one write — with its event, one `TransactWriteItems`. Only an event already kept costs
/// a second, single-item write; a change that moves nothing writes nothing.
#[tokio::test]
async fn advance_with_an_event_is_one_transact_write_items_call() {
    let server = Dynoxide::start().await;
    let (store, trips) = server.store().await;
    let t = NOON_MS;

    store
        .create(call_record(CALL, Some("conv_rt"), t))
        .await
        .unwrap();
    assert_eq!(trips.operations(), ["TransactWriteItems"]);
    trips.reset();
    let other = "6a0c54f4-8d1e-4c3b-9a47-0c2f9e4b7d12";
    store.create(call_record(other, None, t)).await.unwrap();
    assert_eq!(trips.operations(), ["PutItem"]);

    trips.reset();
    assert!(CallRecords::get(store.as_ref(), CALL, t)
        .await
        .unwrap()
        .is_some());
    assert_eq!(trips.operations(), ["GetItem"]);
    trips.reset();
    assert_eq!(
        store.find("conv_rt", t).await.unwrap().as_deref(),
        Some(CALL)
    );
    assert_eq!(trips.operations(), ["GetItem"]);

    trips.reset();
    let ringing = Change::to(CallStatus::Ringing, t + 1);
    let event = envelope("msg_call_ringing");
    let advanced = store.advance(CALL, &ringing, Some(&event)).await.unwrap();
    assert_eq!(applied(advanced).status, CallStatus::Ringing);
    assert_eq!(trips.operations(), ["GetItem", "TransactWriteItems"]);
    let kept = Outbox::get(store.as_ref(), "msg_call_ringing")
        .await
        .unwrap()
        .expect("the event");
    assert_eq!(
        (kept.state, kept.created_at_ms),
        (OutboxState::Pending, t + 1)
    );

    // Without an event: one UpdateItem.
    trips.reset();
    let answered = Change::to(CallStatus::InProgress, t + 2);
    applied(store.advance(CALL, &answered, None).await.unwrap());
    assert_eq!(trips.operations(), ["GetItem", "UpdateItem"]);

    // Nothing to move: the read only.
    trips.reset();
    let late = Change::to(CallStatus::Ringing, t + 3);
    let event = envelope("msg_late");
    assert_eq!(
        store.advance(CALL, &late, Some(&event)).await.unwrap(),
        Advance::Unchanged
    );
    assert_eq!(trips.operations(), ["GetItem"]);

    // An event of that id is kept already (a retried advance): the record is written alone,
    // and the kept event stays as it was.
    trips.reset();
    let same_id = Envelope {
        id: "msg_call_ringing".into(),
        body: "another body".into(),
    };
    let completed = Change::to(CallStatus::Completed, t + 4);
    let advanced = store
        .advance(CALL, &completed, Some(&same_id))
        .await
        .unwrap();
    assert_eq!(applied(advanced).status, CallStatus::Completed);
    assert_eq!(
        trips.operations(),
        ["GetItem", "TransactWriteItems", "UpdateItem"]
    );
    assert_eq!(
        Outbox::get(store.as_ref(), "msg_call_ringing")
            .await
            .unwrap(),
        Some(kept)
    );
    let record = CallRecords::get(store.as_ref(), CALL, t + 5)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(record.status, CallStatus::Completed);
}

/// The record is `call#<call id>` with its fields, `rank`, `version` (0, then +1 per change)
/// and the TTL `expires_at` = its end in seconds (rounded up); the way back is
/// `callref#<provider id>` → `call_id`, with the same end. Neither holds the full number.
#[tokio::test]
async fn call_items_hold_the_record_its_rank_version_and_ttl() {
    let server = Dynoxide::start().await;
    let (store, _) = server.store().await;
    let client = server.client(&RoundTrips::default()).await;
    let t = NOON_MS;
    let mut created = call_record(CALL, Some("conv_items"), t);
    created.expires_at_ms += 1; // not a whole second: the TTL rounds up
    store.create(created.clone()).await.unwrap();

    let item = raw(&client, &format!("call#{CALL}"))
        .await
        .expect("the record");
    let end_secs = created.expires_at_ms / 1000 + 1;
    for (name, value) in [
        ("st", s("initiated")),
        ("rank", num(0)),
        ("version", num(0)),
        ("exp_ms", num(created.expires_at_ms)),
        ("expires_at", num(end_secs)),
        ("to_masked", s("+351******678")),
        ("provider_call_id", s("conv_items")),
        ("created_at", num(t)),
    ] {
        assert_eq!(item.get(name), Some(&value), "{name}");
    }
    for absent in ["duration_secs", "end_reason", "summary", "successful"] {
        assert!(!item.contains_key(absent), "{absent} is absent until known");
    }
    let way_back = raw(&client, "callref#conv_items")
        .await
        .expect("the way back");
    assert_eq!(
        way_back,
        Item::from([
            ("pk".to_string(), s("callref#conv_items")),
            ("call_id".to_string(), s(CALL)),
            ("exp_ms".to_string(), num(created.expires_at_ms)),
            ("expires_at".to_string(), num(end_secs)),
        ])
    );

    let done = Change {
        duration_secs: Some(61),
        end_reason: Some("hangup".into()),
        ..Change::to(CallStatus::Completed, t + 9)
    };
    applied(store.advance(CALL, &done, None).await.unwrap());
    let item = raw(&client, &format!("call#{CALL}")).await.unwrap();
    for (name, value) in [
        ("st", s("completed")),
        ("rank", num(3)),
        ("version", num(1)),
        ("updated_at", num(t + 9)),
        ("duration_secs", num(61)),
        ("end_reason", s("hangup")),
        ("expires_at", num(end_secs)),
    ] {
        assert_eq!(item.get(name), Some(&value), "{name}");
    }
    let history = item.get("history").and_then(|h| h.as_l().ok()).unwrap();
    assert_eq!(history.len(), 2);

    let scan = client.scan().table_name(TABLE).send().await.unwrap();
    for item in scan.items() {
        let text = format!("{item:?}");
        assert!(!text.contains("351912345678"), "{text}");
    }
}

/// Another writer's change, landing between `advance`'s read and its write (made here through
/// the server's database, just before the write is sent).
fn competitor(server: &Dynoxide, status: &str, rank: u64, at_ms: u64) -> impl FnOnce() + Send {
    use dynoxide::types::AttributeValue as V;
    let db = server.db.clone();
    let status = status.to_string();
    move || {
        let step = V::M(HashMap::from([
            ("st".to_string(), V::S(status.clone())),
            ("at".to_string(), V::N(at_ms.to_string())),
        ]));
        db.update_item(UpdateItemRequest {
            table_name: TABLE.into(),
            key: HashMap::from([("pk".to_string(), V::S(format!("call#{CALL}")))]),
            update_expression: Some(
                "SET st = :st, #rank = :rank, updated_at = :at, \
                 history = list_append(history, :step), version = version + :one"
                    .into(),
            ),
            expression_attribute_names: Some(HashMap::from([(
                "#rank".to_string(),
                "rank".to_string(),
            )])),
            expression_attribute_values: Some(HashMap::from([
                (":st".to_string(), V::S(status)),
                (":rank".to_string(), V::N(rank.to_string())),
                (":at".to_string(), V::N(at_ms.to_string())),
                (":step".to_string(), V::L(vec![step])),
                (":one".to_string(), V::N("1".into())),
            ])),
            ..Default::default()
        })
        .expect("the competing change");
    }
}

/// When another change wins between the read and the write, the version condition fails and
/// returns the record as it is now; the change is decided again on that item, without a
/// second read: the loser of a race for a final status changes nothing and writes no event,
/// and a change still ahead of the winner is written on top of it.
#[tokio::test]
async fn a_change_that_lost_a_race_is_decided_again_on_the_item_the_condition_returned() {
    let t = NOON_MS;
    for operation in ["TransactWriteItems", "UpdateItem"] {
        let with_event = operation == "TransactWriteItems";
        let event = with_event.then(|| envelope("msg_loser"));

        // The other change is final: ours is dropped.
        let server = Dynoxide::start().await;
        let hook = BeforeSend::new(operation, competitor(&server, "busy", 3, t + 5));
        let (store, trips) = server.store_with(Some(hook)).await;
        store.create(call_record(CALL, None, t)).await.unwrap();
        trips.reset();
        let completed = Change::to(CallStatus::Completed, t + 6);
        assert_eq!(
            store
                .advance(CALL, &completed, event.as_ref())
                .await
                .unwrap(),
            Advance::Unchanged,
            "{operation}"
        );
        assert_eq!(trips.operations(), ["GetItem", operation]);
        assert_eq!(
            Outbox::get(store.as_ref(), "msg_loser").await.unwrap(),
            None
        );
        let record = CallRecords::get(store.as_ref(), CALL, t + 7)
            .await
            .unwrap()
            .unwrap();
        assert_eq!(record.status, CallStatus::Busy, "{operation}");

        // The other change is behind ours: ours is written on top of it.
        let server = Dynoxide::start().await;
        let hook = BeforeSend::new(operation, competitor(&server, "ringing", 1, t + 5));
        let (store, trips) = server.store_with(Some(hook)).await;
        store.create(call_record(CALL, None, t)).await.unwrap();
        trips.reset();
        let record = applied(
            store
                .advance(CALL, &completed, event.as_ref())
                .await
                .unwrap(),
        );
        assert_eq!(trips.operations(), ["GetItem", operation, operation]);
        assert_eq!(
            record.history,
            [
                Step {
                    status: CallStatus::Initiated,
                    at_ms: t
                },
                Step {
                    status: CallStatus::Ringing,
                    at_ms: t + 5
                },
                Step {
                    status: CallStatus::Completed,
                    at_ms: t + 6
                },
            ],
            "{operation}"
        );
        assert_eq!(
            CallRecords::get(store.as_ref(), CALL, t + 7).await.unwrap(),
            Some(record)
        );
        assert_eq!(
            Outbox::get(store.as_ref(), "msg_loser")
                .await
                .unwrap()
                .is_some(),
            with_event,
            "{operation}"
        );
    }
}

/// A provider id too long to be a key (DynamoDB: 2048 bytes) has no way back, but the record
/// is still kept, and looking the id up finds nothing rather than failing.
#[tokio::test]
async fn a_provider_id_too_long_for_a_key_keeps_the_record_without_a_way_back() {
    let server = Dynoxide::start().await;
    let (store, trips) = server.store().await;
    let t = NOON_MS;
    let long = "x".repeat(2100);
    let created = call_record(CALL, Some(&long), t);
    store.create(created.clone()).await.unwrap();
    assert_eq!(trips.operations(), ["PutItem"]);
    assert_eq!(
        CallRecords::get(store.as_ref(), CALL, t).await.unwrap(),
        Some(created)
    );
    assert_eq!(store.find(&long, t).await.unwrap(), None);
    let long_call = "y".repeat(2100);
    assert_eq!(
        CallRecords::get(store.as_ref(), &long_call, t)
            .await
            .unwrap(),
        None
    );
    assert_eq!(
        store
            .advance(&long_call, &Change::to(CallStatus::Busy, t), None)
            .await
            .unwrap(),
        Advance::Unknown
    );
}

/// An item that is not a record this code wrote is an error, never a record or a change.
#[tokio::test]
async fn a_corrupt_call_record_is_an_error_not_a_record() {
    let server = Dynoxide::start().await;
    let (store, _) = server.store().await;
    let client = server.client(&RoundTrips::default()).await;
    let t = NOON_MS;
    store.create(call_record(CALL, None, t)).await.unwrap();
    client
        .update_item()
        .table_name(TABLE)
        .key("pk", s(&format!("call#{CALL}")))
        .update_expression("SET st = :st")
        .expression_attribute_values(":st", s("exploded"))
        .send()
        .await
        .unwrap();
    let read = CallRecords::get(store.as_ref(), CALL, t).await;
    assert!(read.is_err(), "{read:?}");
    let change = Change::to(CallStatus::Completed, t + 1);
    let advanced = store.advance(CALL, &change, None).await;
    assert!(advanced.is_err(), "{advanced:?}");
    assert_eq!(
        advanced.unwrap_err().to_string(),
        "store answered something unexpected: a call record has an unknown status"
    );
}
