//! Micro-benchmarks of what every notification goes through: request
//! validation at ingest, frame encoding at the worker (once per
//! notification; the gateway forwards the bytes) and template rendering.
//! `cargo bench -p domain`.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::BTreeMap;
use std::hint::black_box;

use chrono::Utc;
use criterion::{Criterion, criterion_group, criterion_main};
use domain::{
    InboxCounts, Notification, NotificationFrame, NotificationRequest, Priority, ServerFrame,
};
use serde_json::{Map, Value, json};
use templates::{ParamKind, Template, TemplateSource};
use uuid::Uuid;

fn validation(c: &mut Criterion) {
    let plain = serde_json::to_vec(&json!({
        "user_id": "user-42",
        "title": "Your order shipped",
        "body": "Order #1234 is on its way and should arrive on Tuesday.",
        "priority": "high",
        "category": "orders",
        "data": {"order_id": 1234, "url": "https://shop.example/orders/1234"},
        "ttl_seconds": 86400
    }))
    .unwrap();
    c.bench_function("validate plain request", |b| {
        b.iter(|| NotificationRequest::parse(black_box(&plain)).unwrap())
    });
    let invalid = serde_json::to_vec(&json!({"user_id": "", "title": 5})).unwrap();
    c.bench_function("refuse invalid request", |b| {
        b.iter(|| NotificationRequest::parse(black_box(&invalid)).unwrap_err())
    });
}

fn frame_encoding(c: &mut Criterion) {
    let mut data = Map::new();
    data.insert("order_id".into(), json!(1234));
    let notification = Notification {
        id: Uuid::now_v7(),
        user_id: "user-42".into(),
        seq: 1_234,
        title: "Your order shipped".into(),
        body: "Order #1234 is on its way and should arrive on Tuesday.".into(),
        priority: Priority::Normal,
        category: Some("orders".into()),
        data: Some(data),
        created_at: Utc::now(),
        expires_at: None,
        read_at: None,
        seen_at: None,
        archived_at: None,
        snoozed_until: None,
        locale: Some("en".into()),
        muted: false,
    };
    // A live frame, as the worker publishes it: with the user's counts.
    let mut counts = InboxCounts {
        version: 17,
        ..InboxCounts::default()
    };
    counts.counts.add(Some("orders"), 3, 2);
    let frame = ServerFrame::Notification(NotificationFrame::live(notification, Some(counts)));
    c.bench_function("encode notification frame", |b| {
        b.iter(|| black_box(&frame).to_json())
    });
}

fn rendering(c: &mut Criterion) {
    let source = TemplateSource {
        params: BTreeMap::from([
            ("count".to_owned(), ParamKind::Number),
            ("order".to_owned(), ParamKind::String),
        ]),
        locales: BTreeMap::from([
            (
                "en".to_owned(),
                "title = Order { $order }\nbody = { $count ->\n    [one] One parcel is on its way.\n   *[other] { $count } parcels are on their way.\n}\n".to_owned(),
            ),
            (
                "pl".to_owned(),
                "title = Zamówienie { $order }\nbody = { $count ->\n    [one] Jedna paczka jest w drodze.\n    [few] { $count } paczki są w drodze.\n   *[many] { $count } paczek jest w drodze.\n}\n".to_owned(),
            ),
        ]),
    };
    let template = Template::compile("order_shipped", 1, &source).unwrap();
    let params: Map<String, Value> =
        serde_json::from_value(json!({"count": 3, "order": "#1234"})).unwrap();
    c.bench_function("render template (pl, plural)", |b| {
        b.iter(|| {
            template
                .render(black_box(&["pl-PL", "en"]), "en", black_box(&params))
                .unwrap()
        })
    });
    c.bench_function("check template params", |b| {
        b.iter(|| template.check_params(black_box(&params)).unwrap())
    });
}

criterion_group!(benches, validation, frame_encoding, rendering);
criterion_main!(benches);
