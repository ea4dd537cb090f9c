//! What only the DynamoDB outbox has: its items and their TTL, the sparse `outbox` index (and
//! no Scan), the one-transaction `complete`, the table's index and stream, and what the stream
//! carries. The rules it shares with the memory store are in the conformance suite.

use std::collections::HashMap;

use aws_sdk_dynamodb::types::{
    AttributeDefinition, AttributeValue, BillingMode, IndexStatus, KeySchemaElement, KeyType,
    ProjectionType, ScalarAttributeType, StreamViewType, TimeToLiveStatus,
};
use chamada::store::dynamodb::{self, DynamoStore, OUTBOX_INDEX};
use chamada::store::outbox::OUTBOX_RETENTION_MS;
use chamada::store::{
    Begin, Envelope, IdempotencyStore, Outbox, OutboxState, Settle, StoredResponse,
    IDEMPOTENCY_LEASE_MS,
};
use secrecy::SecretString;

use crate::conformance::{envelope, LEASE_MS, NOON_MS};
use crate::dynoxide::{num, raw, s, Dynoxide, RoundTrips, HASH_KEY, TABLE};

type Item = HashMap<String, AttributeValue>;

fn answer(body: &str) -> StoredResponse {
    StoredResponse {
        status: 200,
        headers: Vec::new(),
        body: body.into(),
    }
}

/// docs/DYNAMODB.md: `complete` with an event is one `TransactWriteItems`; only a failed
/// condition on one of its two items costs a second, single-item write.
#[tokio::test]
async fn complete_with_an_event_is_one_transact_write_items_call() {
    let server = Dynoxide::start().await;
    let (store, trips) = server.store().await;
    let t = NOON_MS;

    store.begin("k1", "fp-a", t).await.unwrap();
    trips.reset();
    let event = envelope("msg_1");
    store
        .complete("k1", "fp-a", &answer("a"), Some(&event), t + 1)
        .await
        .unwrap();
    assert_eq!(trips.operations(), ["TransactWriteItems"]);
    assert_eq!(
        store.begin("k1", "fp-a", t + 2).await.unwrap(),
        Begin::Replay(answer("a"))
    );
    let kept = store.get("msg_1").await.unwrap().unwrap();
    assert_eq!(
        (kept.state, kept.envelope),
        (OutboxState::Pending, event.clone())
    );

    // Taken over by another body: the transaction is cancelled on the record's condition,
    // and the event is written alone.
    store.begin("k2", "fp-a", t).await.unwrap();
    store
        .begin("k2", "fp-b", t + IDEMPOTENCY_LEASE_MS)
        .await
        .unwrap();
    trips.reset();
    store
        .complete(
            "k2",
            "fp-a",
            &answer("a"),
            Some(&envelope("msg_2")),
            t + IDEMPOTENCY_LEASE_MS + 1,
        )
        .await
        .unwrap();
    assert_eq!(trips.operations(), ["TransactWriteItems", "PutItem"]);
    assert!(store.get("msg_2").await.unwrap().is_some());

    // The event is kept already: the record is written alone.
    trips.reset();
    store
        .complete(
            "k2",
            "fp-b",
            &answer("b"),
            Some(&envelope("msg_2")),
            t + IDEMPOTENCY_LEASE_MS + 2,
        )
        .await
        .unwrap();
    assert_eq!(trips.operations(), ["TransactWriteItems", "UpdateItem"]);
    assert_eq!(
        store
            .begin("k2", "fp-b", t + IDEMPOTENCY_LEASE_MS + 3)
            .await
            .unwrap(),
        Begin::Replay(answer("b"))
    );

    // Neither condition holds: nothing more to write.
    trips.reset();
    store
        .complete("k3", "fp-a", &answer("a"), Some(&event), t + 3)
        .await
        .unwrap();
    assert_eq!(trips.operations(), ["TransactWriteItems"]);
    assert_eq!(
        store.begin("k3", "fp-a", t + 4).await.unwrap(),
        Begin::Started
    );

    // Without an event, as before: one UpdateItem.
    trips.reset();
    store
        .complete("k3", "fp-a", &answer("c"), None, t + 5)
        .await
        .unwrap();
    assert_eq!(trips.operations(), ["UpdateItem"]);
}

/// An event is the item `outbox#<id>` (the id as it is, for an operator), expiring by TTL a
/// retention period after it was written; it is in the index while pending (by due time) or
/// failed (by creation), and leaves it once delivered.
#[tokio::test]
async fn outbox_items_are_keyed_by_event_id_with_a_ttl_and_leave_the_index_once_delivered() {
    let server = Dynoxide::start().await;
    let (store, _) = server.store().await;
    let client = server.client(&RoundTrips::default()).await;
    let t = NOON_MS;
    let ttl = num((t + OUTBOX_RETENTION_MS).div_ceil(1000));

    store.enqueue(&envelope("msg_abc"), t).await.unwrap();
    let item = raw(&client, TABLE, "outbox#msg_abc")
        .await
        .expect("the item");
    let expected: Item = [
        ("pk", s("outbox#msg_abc")),
        ("st", s("pending")),
        ("attempts", num(0)),
        ("due_at", num(t)),
        ("lease_until", num(0)),
        ("created_at", num(t)),
        ("body", s(&envelope("msg_abc").body)),
        ("ob_state", s("pending")),
        ("ob_at", num(t)),
        ("expires_at", ttl.clone()),
    ]
    .into_iter()
    .map(|(name, value)| (name.to_string(), value))
    .collect();
    assert_eq!(item, expected);

    // A claim leaves the index as it is (the lease is filtered, the due time stays).
    store.claim("msg_abc", t + 1, LEASE_MS).await.unwrap();
    let item = raw(&client, TABLE, "outbox#msg_abc").await.unwrap();
    assert_eq!(item["ob_at"], num(t));
    assert_eq!(item["lease_until"], num(t + 1 + LEASE_MS));
    assert_eq!(item["attempts"], num(1));

    let retry = Settle::RetryAt {
        due_at_ms: t + 300_000,
        error: "status 503".into(),
    };
    assert!(store.settle("msg_abc", 1, &retry, t + 2).await.unwrap());
    let item = raw(&client, TABLE, "outbox#msg_abc").await.unwrap();
    assert_eq!(
        item["ob_at"],
        num(t + 300_000),
        "listed by its new due time"
    );
    assert_eq!(item["due_at"], num(t + 300_000));
    assert_eq!(item["last_error"], s("status 503"));

    store.claim("msg_abc", t + 300_000, LEASE_MS).await.unwrap();
    assert!(store
        .settle("msg_abc", 2, &Settle::Delivered, t + 300_001)
        .await
        .unwrap());
    let item = raw(&client, TABLE, "outbox#msg_abc").await.unwrap();
    assert_eq!(item["st"], s("delivered"));
    for gone in ["ob_state", "ob_at", "last_error"] {
        assert!(!item.contains_key(gone), "{gone} left: {item:?}");
    }
    assert_eq!(
        item["expires_at"], ttl,
        "kept for the retention, delivered or not"
    );

    store.enqueue(&envelope("msg_def"), t + 10).await.unwrap();
    store.claim("msg_def", t + 20, LEASE_MS).await.unwrap();
    let failed = Settle::Failed {
        error: "refused: status 410".into(),
    };
    assert!(store.settle("msg_def", 1, &failed, t + 30).await.unwrap());
    let item = raw(&client, TABLE, "outbox#msg_def").await.unwrap();
    assert_eq!(
        (&item["st"], &item["ob_state"], &item["ob_at"]),
        (&s("failed"), &s("failed"), &num(t + 10))
    );

    // The index holds the failed event only: the delivered one is not in it.
    let index = client
        .scan()
        .table_name(TABLE)
        .index_name(OUTBOX_INDEX)
        .send()
        .await
        .unwrap();
    let pks: Vec<_> = index
        .items()
        .iter()
        .map(|item| item["pk"].clone())
        .collect();
    assert_eq!(pks, [s("outbox#msg_def")]);

    assert!(store.redeliver("msg_def", t + 40).await.unwrap());
    let item = raw(&client, TABLE, "outbox#msg_def").await.unwrap();
    assert_eq!(
        (&item["st"], &item["ob_state"], &item["ob_at"]),
        (&s("pending"), &s("pending"), &num(t + 40))
    );
    assert_eq!(
        item["last_error"],
        s("refused: status 410"),
        "the last error stays"
    );
}

/// Listing reads the index (`Query`), never the table (`Scan`); one event is one item
/// operation. Leased events before the due ones cost more pages, not a wrong answer.
#[tokio::test]
async fn the_outbox_queries_its_index_and_never_scans_the_table() {
    let server = Dynoxide::start().await;
    let (store, trips) = server.store().await;
    let t = NOON_MS;
    let count = |what: &str, trips: &RoundTrips| {
        let ops = trips.operations();
        trips.reset();
        eprintln!("{what}: {ops:?}");
        ops
    };

    store.enqueue(&envelope("msg_1"), t).await.unwrap();
    assert_eq!(count("enqueue", &trips), ["PutItem"]);
    store.enqueue(&envelope("msg_1"), t).await.unwrap();
    assert_eq!(count("enqueue again", &trips), ["PutItem"]);
    store.enqueue(&envelope("msg_2"), t + 1).await.unwrap();
    store.enqueue(&envelope("msg_3"), t + 2).await.unwrap();
    trips.reset();

    assert_eq!(store.due(t + 5, 10).await.unwrap().len(), 3);
    assert_eq!(count("due", &trips), ["Query"]);
    store.claim("msg_1", t + 5, LEASE_MS).await.unwrap();
    assert_eq!(count("claim", &trips), ["UpdateItem"]);
    store.claim("msg_2", t + 5, LEASE_MS).await.unwrap();
    trips.reset();
    // Two leased events come first in the index: one page each, then the due one.
    let due = store.due(t + 5, 1).await.unwrap();
    assert_eq!(due.len(), 1);
    assert_eq!(due[0].envelope.id, "msg_3");
    assert_eq!(
        count("due past leases", &trips),
        ["Query", "Query", "Query"]
    );

    let failed = Settle::Failed {
        error: "status 500 in the last window".into(),
    };
    assert!(store.settle("msg_1", 1, &failed, t + 6).await.unwrap());
    assert_eq!(count("settle", &trips), ["UpdateItem"]);
    assert_eq!(store.failed(10).await.unwrap().len(), 1);
    assert_eq!(count("failed", &trips), ["Query"]);
    assert!(store.redeliver("msg_1", t + 7).await.unwrap());
    assert_eq!(count("redeliver", &trips), ["UpdateItem"]);
    store.get("msg_1").await.unwrap();
    assert_eq!(count("get", &trips), ["GetItem"]);
}

/// `create-table` makes the index (`ob_state` + `ob_at`, every attribute) and a `NEW_IMAGE`
/// stream on a new table.
#[tokio::test]
async fn create_table_makes_the_outbox_index_and_a_new_image_stream() {
    let server = Dynoxide::start().await;
    let client = server.client(&RoundTrips::default()).await;
    assert!(dynamodb::create_table(&client, "chamada-new")
        .await
        .unwrap());
    let described = client
        .describe_table()
        .table_name("chamada-new")
        .send()
        .await
        .unwrap();
    let table = described.table().unwrap();
    assert_outbox_index_and_stream(table);
}

fn assert_outbox_index_and_stream(table: &aws_sdk_dynamodb::types::TableDescription) {
    let indexes = table.global_secondary_indexes();
    assert_eq!(indexes.len(), 1, "{indexes:?}");
    let index = &indexes[0];
    assert_eq!(index.index_name(), Some("outbox"));
    let keys: Vec<_> = index
        .key_schema()
        .iter()
        .map(|k| (k.attribute_name(), k.key_type().clone()))
        .collect();
    assert_eq!(
        keys,
        [("ob_state", KeyType::Hash), ("ob_at", KeyType::Range)]
    );
    assert_eq!(
        index.projection().and_then(|p| p.projection_type()),
        Some(&ProjectionType::All)
    );
    assert_eq!(index.index_status(), Some(&IndexStatus::Active));
    let types: HashMap<_, _> = table
        .attribute_definitions()
        .iter()
        .map(|d| (d.attribute_name(), d.attribute_type().clone()))
        .collect();
    assert_eq!(types["ob_state"], ScalarAttributeType::S);
    assert_eq!(types["ob_at"], ScalarAttributeType::N);
    let stream = table.stream_specification().expect("a stream");
    assert!(stream.stream_enabled());
    assert_eq!(stream.stream_view_type(), Some(&StreamViewType::NewImage));
    assert!(table.latest_stream_arn().is_some());
}

/// A table made before the outbox (`pk` and TTL only) is brought up to date by `create-table`:
/// the index (filled with the events already written) and the stream are added, nothing else
/// changes.
#[tokio::test]
async fn create_table_adds_the_index_and_the_stream_to_an_existing_table() {
    let server = Dynoxide::start().await;
    let client = server.client(&RoundTrips::default()).await;
    let table = "chamada-before-the-outbox";
    client
        .create_table()
        .table_name(table)
        .attribute_definitions(
            AttributeDefinition::builder()
                .attribute_name("pk")
                .attribute_type(ScalarAttributeType::S)
                .build()
                .unwrap(),
        )
        .key_schema(
            KeySchemaElement::builder()
                .attribute_name("pk")
                .key_type(KeyType::Hash)
                .build()
                .unwrap(),
        )
        .billing_mode(BillingMode::PayPerRequest)
        .send()
        .await
        .unwrap();
    let store = DynamoStore::new(client.clone(), table, &SecretString::from(HASH_KEY));
    store.begin("k1", "fp-a", NOON_MS).await.unwrap();
    // Writing needs no index: an event written before the upgrade.
    store
        .enqueue(&envelope("msg_early"), NOON_MS)
        .await
        .unwrap();
    assert!(
        store.due(NOON_MS, 10).await.is_err(),
        "no index to query yet"
    );

    assert!(!dynamodb::create_table(&client, table).await.unwrap());
    let described = client
        .describe_table()
        .table_name(table)
        .send()
        .await
        .unwrap();
    assert_outbox_index_and_stream(described.table().unwrap());
    let ttl = client
        .describe_time_to_live()
        .table_name(table)
        .send()
        .await
        .unwrap();
    assert_eq!(
        ttl.time_to_live_description()
            .and_then(|d| d.time_to_live_status()),
        Some(&TimeToLiveStatus::Enabled)
    );
    // Again: nothing left to add.
    assert!(!dynamodb::create_table(&client, table).await.unwrap());

    assert_eq!(
        store.begin("k1", "fp-a", NOON_MS + 1).await.unwrap(),
        Begin::InProgress,
        "the records are kept"
    );
    let due = store.due(NOON_MS + 1, 10).await.unwrap();
    assert_eq!(
        due.len(),
        1,
        "the index was filled with the event written before"
    );
    assert_eq!(due[0].envelope.id, "msg_early");
}

/// The stream (`NEW_IMAGE`) carries every write of the table; an outbox item's new image with
/// `attempts` "0" marks exactly the events to start at once: written (alone or with the
/// answer) or redelivered — not the claims and schedules, which the sweep runs.
#[tokio::test]
async fn the_stream_marks_new_and_redelivered_events_with_attempts_zero() {
    let server = Dynoxide::start().await;
    let (store, _) = server.store().await;
    let t = NOON_MS;
    store.begin("k1", "fp-a", t).await.unwrap();
    store
        .complete("k1", "fp-a", &answer("a"), Some(&envelope("msg_1")), t)
        .await
        .unwrap();
    store.enqueue(&envelope("msg_2"), t).await.unwrap();
    store.claim("msg_1", t, LEASE_MS).await.unwrap();
    let retry = Settle::RetryAt {
        due_at_ms: t + 5_000,
        error: "timeout".into(),
    };
    store.settle("msg_1", 1, &retry, t + 1).await.unwrap();
    store.claim("msg_1", t + 5_000, LEASE_MS).await.unwrap();
    let failed = Settle::Failed {
        error: "refused: status 400".into(),
    };
    store.settle("msg_1", 2, &failed, t + 5_001).await.unwrap();
    store.redeliver("msg_1", t + 9_000).await.unwrap();

    let records = server.stream_records(TABLE);
    let all: Vec<(String, String, Option<String>)> = records
        .iter()
        .map(|record| {
            let image = &record["dynamodb"]["NewImage"];
            (
                record["eventName"].as_str().unwrap().to_string(),
                image["pk"]["S"].as_str().unwrap_or("").to_string(),
                image["attempts"]["N"].as_str().map(String::from),
            )
        })
        .collect();
    assert!(
        all.iter().any(|(_, pk, _)| pk.starts_with("idem#")),
        "the stream carries every item: {all:?}"
    );
    let outbox: Vec<_> = all
        .iter()
        .filter(|(_, pk, _)| pk.starts_with("outbox#"))
        .map(|(name, pk, attempts)| (name.as_str(), pk.as_str(), attempts.as_deref()))
        .collect();
    assert_eq!(
        outbox,
        [
            ("INSERT", "outbox#msg_1", Some("0")),
            ("INSERT", "outbox#msg_2", Some("0")),
            ("MODIFY", "outbox#msg_1", Some("1")),
            ("MODIFY", "outbox#msg_1", Some("1")),
            ("MODIFY", "outbox#msg_1", Some("2")),
            ("MODIFY", "outbox#msg_1", Some("2")),
            ("MODIFY", "outbox#msg_1", Some("0")),
        ]
    );
    // The filter the AWS function uses (docs/DYNAMODB.md): outbox items with attempts 0.
    let started: Vec<_> = outbox
        .iter()
        .filter(|(_, _, attempts)| *attempts == Some("0"))
        .map(|(name, pk, _)| (*name, dynamodb::outbox_event_id(pk).unwrap()))
        .collect();
    assert_eq!(
        started,
        [
            ("INSERT", "msg_1"),
            ("INSERT", "msg_2"),
            ("MODIFY", "msg_1")
        ]
    );
    // A record's image is the whole event: the function needs no read to know its body.
    let first = records
        .iter()
        .find(|r| r["dynamodb"]["NewImage"]["pk"]["S"] == "outbox#msg_2")
        .unwrap();
    assert_eq!(
        first["dynamodb"]["NewImage"]["body"]["S"],
        envelope("msg_2").body.as_str()
    );
    assert_eq!(first["dynamodb"]["Keys"]["pk"]["S"], "outbox#msg_2");
}

/// An outbox item this code cannot read is an error, never an event made up.
#[tokio::test]
async fn a_corrupt_outbox_item_is_an_error_not_an_event() {
    let server = Dynoxide::start().await;
    let (store, _) = server.store().await;
    let client = server.client(&RoundTrips::default()).await;
    client
        .put_item()
        .table_name(TABLE)
        .item("pk", s("outbox#msg_bad"))
        .item("st", s("lost"))
        .item("ob_state", s("pending"))
        .item("ob_at", num(NOON_MS))
        .item("lease_until", num(0))
        .send()
        .await
        .unwrap();
    assert!(store.get("msg_bad").await.is_err());
    assert!(store.due(NOON_MS, 10).await.is_err());
    let fine = Envelope {
        id: "msg_fine".into(),
        body: "{}".into(),
    };
    store.enqueue(&fine, NOON_MS).await.unwrap();
    assert_eq!(store.get("msg_fine").await.unwrap().unwrap().envelope, fine);
}
