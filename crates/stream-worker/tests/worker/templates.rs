//! Templates rendered in the user's language, edits picked up, mutes, and unrenderable notifications.

use std::time::Duration;

use domain::Priority;
use platform::redis::RedisSubscriber;
use platform::storage::inbox;
use testkit::{TestEnv, eventually};
use testkit::{append, new_notification as notification};

use crate::support::*;

const GREETING_EN: &str = "title = Hello\nbody = { $count ->\n    [one] You have one message\n   *[other] You have { $count } messages\n}\n";

const GREETING_PL: &str = "title = Cześć\nbody = { $count ->\n    [one] Masz jedną wiadomość\n    [few] Masz { $count } wiadomości\n   *[many] Masz { $count } wiadomości\n}\n";

const GREETING_PT: &str = "title = Olá\nbody = { $count ->\n    [one] Você tem uma mensagem\n   *[other] Você tem { $count } mensagens\n}\n";

async fn upload_greeting(env: &TestEnv, de_title: Option<&str>) -> i32 {
    let mut locales = std::collections::BTreeMap::from([
        ("en".to_owned(), GREETING_EN.to_owned()),
        ("pl".to_owned(), GREETING_PL.to_owned()),
        ("pt".to_owned(), GREETING_PT.to_owned()),
    ]);
    if let Some(title) = de_title {
        locales.insert(
            "de".into(),
            format!("title = {title}\nbody = Du hast {{ $count }} Nachrichten\n"),
        );
    }
    let source = templates::TemplateSource {
        params: std::collections::BTreeMap::from([(
            "count".to_owned(),
            templates::ParamKind::Number,
        )]),
        locales,
    };
    platform::storage::templates::create_version(&mut env.db().await, "greeting", &source)
        .await
        .unwrap()
}

fn templated(
    user: &str,
    version: i32,
    count: i64,
    locale: Option<&str>,
    category: Option<&str>,
) -> domain::NewNotification {
    let mut n = notification(user, 0, Priority::Normal);
    n.title = String::new();
    n.body = String::new();
    n.category = category.map(str::to_owned);
    n.template = Some(domain::TemplateRef {
        key: "greeting".into(),
        version,
        params: serde_json::json!({ "count": count })
            .as_object()
            .cloned()
            .unwrap(),
        locale: locale.map(str::to_owned),
    });
    n
}

async fn set_preferences(env: &TestEnv, user: &str, locale: Option<&str>, muted: &[&str]) {
    let preferences = domain::Preferences {
        locale: locale.map(str::to_owned),
        timezone: None,
        muted_categories: muted.iter().map(|c| (*c).to_owned()).collect(),
    };
    platform::storage::preferences::put(&mut env.db().await, user, &preferences)
        .await
        .unwrap();
}

async fn only_notification(env: &TestEnv, user: &str) -> (String, String, Option<String>) {
    use diesel::prelude::*;
    use diesel_async::RunQueryDsl;
    use platform::storage::schema::notifications::dsl;
    dsl::notifications
        .filter(dsl::user_id.eq(user))
        .select((dsl::title, dsl::body, dsl::locale))
        .first(&mut env.db().await)
        .await
        .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn templates_render_in_the_chosen_locale_with_fallbacks() {
    let env = TestEnv::new().await;
    let redis = env.redis().await;
    let version = upload_greeting(&env, None).await;
    set_preferences(&env, "polish-user", Some("pl"), &[]).await;
    set_preferences(&env, "brazilian-user", Some("pt-BR"), &[]).await;
    set_preferences(&env, "french-user", Some("fr"), &[]).await;
    let _worker = start_worker(&env).await;

    let cases = [
        ("polish-user", None, 22, "Cześć", "Masz 22 wiadomości", "pl"),
        (
            "polish-user-override",
            Some("en"),
            1,
            "Hello",
            "You have one message",
            "en",
        ),
        (
            "brazilian-user",
            None,
            1,
            "Olá",
            "Você tem uma mensagem",
            "pt",
        ),
        ("french-user", None, 5, "Hello", "You have 5 messages", "en"),
        (
            "nobody-knows",
            None,
            2,
            "Hello",
            "You have 2 messages",
            "en",
        ),
    ];
    set_preferences(&env, "polish-user-override", Some("pl"), &[]).await;
    for (user, locale, count, _, _, _) in cases {
        append(&redis, &templated(user, version, count, locale, None)).await;
    }
    for (user, _, _, title, body, used) in cases {
        eventually(
            &format!("{user} stored"),
            Duration::from_secs(10),
            || async { (stored_count(&env, user).await == 1).then_some(()) },
        )
        .await;
        let (stored_title, stored_body, stored_locale) = only_notification(&env, user).await;
        assert_eq!(
            (stored_title.as_str(), stored_body.as_str()),
            (title, body),
            "{user}"
        );
        assert_eq!(stored_locale.as_deref(), Some(used), "{user}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_template_edit_reaches_a_running_worker() {
    let env = TestEnv::new().await;
    let redis = env.redis().await;
    set_preferences(&env, "hans", Some("de"), &[]).await;
    let v1 = upload_greeting(&env, None).await;
    let _worker = start_worker(&env).await;
    append(&redis, &templated("hans", v1, 2, None, None)).await;
    wait_until_stored(&env, "hans", 1, Duration::from_secs(10)).await;
    assert_eq!(
        only_notification(&env, "hans").await.0,
        "Hello",
        "no German in v1: the default"
    );

    // An admin adds German; the running worker renders the new version at once.
    let v2 = upload_greeting(&env, Some("Hallo")).await;
    assert_eq!(v2, v1 + 1);
    append(&redis, &templated("hans", v2, 2, None, None)).await;
    wait_until_stored(&env, "hans", 2, Duration::from_secs(10)).await;
    let titles: Vec<String> =
        platform::storage::inspect::list_for_user(&mut env.db().await, "hans")
            .await
            .unwrap()
            .into_iter()
            .map(|n| n.title)
            .collect();
    assert_eq!(titles, ["Hello", "Hallo"]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn muted_categories_are_stored_but_not_published_or_counted() {
    let env = TestEnv::new().await;
    let redis = env.redis().await;
    set_preferences(&env, "mia", None, &["social"]).await;
    let subscriber = RedisSubscriber::connect(&env.settings().redis, 1_024)
        .await
        .unwrap();
    let mut frames = subscriber.frames();
    subscriber.subscribe_user("mia").await.unwrap();
    let _worker = start_worker(&env).await;

    let mut muted = notification("mia", 0, Priority::Normal);
    muted.category = Some("social".into());
    let mut loud = notification("mia", 1, Priority::Normal);
    loud.category = Some("billing".into());
    append(&redis, &muted).await;
    append(&redis, &loud).await;
    wait_until_stored(&env, "mia", 2, Duration::from_secs(10)).await;

    let (_, value) = next_frame(&mut frames).await;
    assert_eq!(
        value["id"],
        loud.id.to_string(),
        "only the unmuted one is pushed"
    );
    no_more_frames(&mut frames).await;
    let mut conn = env.db().await;
    let state = inbox::state(&mut conn, "mia").await.unwrap();
    assert_eq!(state.counts.unread, 1, "the muted one is not counted");
    assert_eq!(
        state.counts.unread,
        platform::storage::inspect::count_unread_rows(&mut conn, "mia")
            .await
            .unwrap()
    );
    let history = platform::storage::inspect::list_for_user(&mut conn, "mia")
        .await
        .unwrap();
    assert_eq!(history.len(), 2, "both are in the history");
    assert!(history.iter().any(|n| n.muted && n.id == muted.id));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_missing_template_version_is_dead_lettered() {
    let env = TestEnv::new().await;
    let redis = env.redis().await;
    let _worker = start_worker(&env).await;
    append(&redis, &templated("nia", 42, 1, None, None)).await;
    let letters = eventually("dead-lettered", Duration::from_secs(10), || async {
        let letters = platform::storage::dead_letters::list(&mut env.db().await, false, 10)
            .await
            .unwrap();
        (!letters.is_empty()).then_some(letters)
    })
    .await;
    assert!(
        letters[0].error.contains("greeting"),
        "{}",
        letters[0].error
    );
    assert_eq!(stored_count(&env, "nia").await, 0);
}

/// A redelivered copy read in the same round as the original (the same id
/// twice) is refused with it: both entries become dead letters, neither is
/// stored or counted as stored.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_copy_of_an_unrenderable_notification_in_a_round_is_dead_lettered() {
    let env = TestEnv::new().await;
    let redis = env.redis().await;
    let twice = templated("noa", 42, 1, None, None);
    append(&redis, &twice).await;
    append(&redis, &twice).await;
    let _worker = start_worker(&env).await;
    let letters = eventually("both dead-lettered", Duration::from_secs(10), || async {
        let letters = platform::storage::dead_letters::list(&mut env.db().await, false, 10)
            .await
            .unwrap();
        (letters.len() >= 2).then_some(letters)
    })
    .await;
    assert_eq!(letters.len(), 2, "one dead letter per entry");
    assert!(letters.iter().all(|l| l.error.contains("greeting")));
    assert_eq!(stored_count(&env, "noa").await, 0);
}
