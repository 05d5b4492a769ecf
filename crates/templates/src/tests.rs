use std::collections::BTreeMap;

use serde_json::{Map, Value, json};

use super::*;

const CATEGORIES: &str = "title = { $count }
body = { $count ->
    [zero] zero
    [one] one
    [two] two
    [few] few
    [many] many
   *[other] other
}
";

fn source(locales: &[(&str, &str)], params: &[(&str, ParamKind)]) -> TemplateSource {
    TemplateSource {
        params: params.iter().map(|(k, v)| ((*k).to_owned(), *v)).collect(),
        locales: locales
            .iter()
            .map(|(l, s)| ((*l).to_owned(), (*s).to_owned()))
            .collect(),
    }
}

fn params(value: Value) -> Map<String, Value> {
    value.as_object().cloned().unwrap()
}

#[test]
fn plural_categories_follow_cldr_in_seven_languages() {
    let langs = ["en", "de", "pl", "ru", "ar", "ja", "pt-BR"];
    let template = Template::compile(
        "categories",
        1,
        &source(
            &langs.map(|l| (l, CATEGORIES)),
            &[("count", ParamKind::Number)],
        ),
    )
    .unwrap();
    let counts = [0, 1, 2, 5, 22, 101];
    let expected: BTreeMap<&str, [&str; 6]> = BTreeMap::from([
        ("en", ["other", "one", "other", "other", "other", "other"]),
        ("de", ["other", "one", "other", "other", "other", "other"]),
        ("pl", ["many", "one", "few", "many", "few", "many"]),
        ("ru", ["many", "one", "few", "many", "few", "one"]),
        ("ar", ["zero", "one", "two", "few", "many", "other"]),
        ("ja", ["other", "other", "other", "other", "other", "other"]),
        ("pt-BR", ["one", "one", "other", "other", "other", "other"]),
    ]);
    for (lang, categories) in expected {
        for (count, category) in counts.iter().zip(categories) {
            let rendered = template
                .render(&[lang], "en", &params(json!({ "count": count })))
                .unwrap();
            assert_eq!(rendered.body, category, "{lang} {count}");
            assert_eq!(rendered.title, count.to_string());
        }
    }
}

#[test]
fn real_sentences_with_plurals() {
    let en = "title = Order shipped
body = { $count ->
    [one] One item is on its way, { $name }.
   *[other] { $count } items are on their way, { $name }.
}
";
    let pl = "title = Zamówienie wysłane
body = { $count ->
    [one] { $count } przedmiot jest w drodze, { $name }.
    [few] { $count } przedmioty są w drodze, { $name }.
   *[many] { $count } przedmiotów jest w drodze, { $name }.
}
";
    let template = Template::compile(
        "order_shipped",
        3,
        &source(
            &[("en", en), ("pl", pl)],
            &[("count", ParamKind::Number), ("name", ParamKind::String)],
        ),
    )
    .unwrap();
    let render = |lang: &str, count: i64| {
        template
            .render(
                &[lang],
                "en",
                &params(json!({"count": count, "name": "Ada"})),
            )
            .unwrap()
            .body
    };
    assert_eq!(render("en", 1), "One item is on its way, Ada.");
    assert_eq!(render("en", 2), "2 items are on their way, Ada.");
    assert_eq!(render("pl", 1), "1 przedmiot jest w drodze, Ada.");
    assert_eq!(render("pl", 3), "3 przedmioty są w drodze, Ada.");
    assert_eq!(render("pl", 5), "5 przedmiotów jest w drodze, Ada.");
    assert_eq!(render("pl", 22), "22 przedmioty są w drodze, Ada.");
}

#[test]
fn locale_fallback_chains() {
    let simple = |text: &str| format!("title = {text}\nbody = {text}\n");
    let template = Template::compile(
        "hello",
        1,
        &source(
            &[
                ("en", &simple("en")),
                ("pt", &simple("pt")),
                ("zh-Hant", &simple("zh-Hant")),
                ("de", &simple("de")),
            ],
            &[],
        ),
    )
    .unwrap();
    let used = |wanted: &[&str], default: &str| {
        template
            .render(wanted, default, &Map::new())
            .unwrap()
            .locale
    };
    assert_eq!(used(&["pt-BR"], "en"), "pt", "pt-BR -> pt");
    assert_eq!(
        used(&["zh-Hant-TW"], "en"),
        "zh-Hant",
        "zh-Hant-TW -> zh-Hant"
    );
    assert_eq!(used(&["fr-CA"], "en"), "en", "no French: the default");
    assert_eq!(used(&["fr-CA"], "de"), "de", "the configured default");
    assert_eq!(
        used(&["zh-Hans-CN"], "en"),
        "en",
        "Simplified is not Traditional"
    );
    // First preference that fits wins: request, then user preference, then default.
    assert_eq!(used(&["fr", "de", "pt"], "en"), "de");
    // A default the template lacks: its first locale.
    assert_eq!(used(&["fr"], "it"), "de");
}

#[test]
fn syntax_errors_are_reported_with_line_and_column() {
    let broken = "title = Fine\nbody = { $count ->\n    [one] one\n}\n";
    let issues = Template::compile(
        "k",
        1,
        &source(&[("en", broken)], &[("count", ParamKind::Number)]),
    )
    .unwrap_err();
    assert!(!issues.is_empty());
    let issue = &issues[0];
    assert_eq!(issue.locale.as_deref(), Some("en"));
    assert!(issue.line.unwrap() >= 2, "{issue:?}");
    assert!(issue.column.is_some());
    assert!(issue.message.starts_with("syntax error"), "{issue:?}");
}

#[test]
fn unknown_parameters_and_missing_messages_are_reported() {
    let ftl = "title = Hi { $name }\nbody = You have { $cuont } items\n";
    let issues = Template::compile(
        "k",
        1,
        &source(&[("en", ftl)], &[("name", ParamKind::String)]),
    )
    .unwrap_err();
    assert_eq!(issues.len(), 1);
    assert_eq!(issues[0].message, "`$cuont` is not a declared parameter");
    assert_eq!((issues[0].line, issues[0].column), (Some(2), Some(19)));

    let issues = Template::compile("k", 1, &source(&[("de", "title = Hallo\n")], &[])).unwrap_err();
    assert_eq!(issues[0].message, "message `body` is missing");
}

#[test]
fn bad_templates_as_a_whole() {
    let ok = "title = a\nbody = b\n";
    assert!(Template::compile("Bad Key", 1, &source(&[("en", ok)], &[])).is_err());
    assert!(Template::compile("k", 1, &source(&[], &[])).is_err());
    let issues = Template::compile("k", 1, &source(&[("not a tag!", ok)], &[])).unwrap_err();
    assert_eq!(issues[0].locale.as_deref(), Some("not a tag!"));
    let huge = format!("title = a\nbody = {}\n", "x".repeat(MAX_SOURCE_BYTES));
    let issues = Template::compile("k", 1, &source(&[("en", &huge)], &[])).unwrap_err();
    assert!(issues[0].message.contains("at most"));
    let many: Vec<(String, ParamKind)> = (0..=MAX_PARAMS)
        .map(|i| (format!("p{i}"), ParamKind::String))
        .collect();
    let many: Vec<(&str, ParamKind)> = many.iter().map(|(k, v)| (k.as_str(), *v)).collect();
    assert!(Template::compile("k", 1, &source(&[("en", ok)], &many)).is_err());
}

#[test]
fn params_are_checked_against_the_declaration() {
    let ftl = "title = { $name }\nbody = { $count ->\n   *[other] { $count }\n}\n";
    let template = Template::compile(
        "k",
        1,
        &source(
            &[("en", ftl)],
            &[("name", ParamKind::String), ("count", ParamKind::Number)],
        ),
    )
    .unwrap();
    assert!(
        template
            .check_params(&params(json!({"name": "a", "count": 2})))
            .is_ok()
    );
    let err = template
        .check_params(&params(json!({"name": "a"})))
        .unwrap_err();
    assert_eq!(err.param, "count");
    let err = template
        .check_params(&params(json!({"name": "a", "count": "two"})))
        .unwrap_err();
    assert_eq!(err.param, "count");
    assert!(err.problem.contains("number"));
    let err = template
        .check_params(&params(json!({"name": "a", "count": 1, "extra": 1})))
        .unwrap_err();
    assert_eq!(err.param, "extra");
}

/// Found by `make fuzz` (template_parsing): fluent-syntax 0.12 panicked on
/// an incomplete `\u` escape followed by a multi-byte character.
#[test]
fn an_incomplete_unicode_escape_before_a_non_ascii_character_is_an_issue_not_a_panic() {
    for ftl in [
        "title = {\"\\u77ó\"}\nbody = x\n",
        "title = {\"\\U1F6é\"}\nbody = x\n",
        "{\"cna.body =c{\"a\nbody =c{\"co\\u777\u{2d3}\u{a3}o\\u7775l=<",
    ] {
        let issues = Template::compile("t", 1, &source(&[("en", ftl)], &[])).unwrap_err();
        assert!(
            issues.iter().any(|i| i.message.contains("incomplete")),
            "{ftl:?}: {issues:?}"
        );
    }
    // Complete escapes, and a backslash before ASCII, are the parser's to judge.
    let ok = "title = {\"\\u00E9t\\u00E9\"}\nbody = Caf\\u00E9\n";
    assert!(Template::compile("t", 1, &source(&[("en", ok)], &[])).is_ok());
}
