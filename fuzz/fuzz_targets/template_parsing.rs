//! Templates uploaded by operators: any Fluent source and any parameters
//! either compile or are refused with issues; a compiled template renders
//! (or says why not) without panicking, whatever the params.
#![no_main]

use std::collections::BTreeMap;

use libfuzzer_sys::fuzz_target;
use templates::{Template, TemplateSource};

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    // The first line names params as JSON (often not: then none), the rest
    // is the Fluent source of one locale.
    let (first, source) = text.split_once('\n').unwrap_or(("", text));
    let params: serde_json::Map<String, serde_json::Value> =
        serde_json::from_str(first).unwrap_or_default();
    let declared = params
        .keys()
        .map(|name| (name.clone(), templates::ParamKind::String))
        .collect::<BTreeMap<_, _>>();
    let upload = TemplateSource {
        params: declared,
        locales: BTreeMap::from([("en".to_owned(), source.to_owned())]),
    };
    match Template::compile("fuzzed", 1, &upload) {
        Ok(template) => {
            let _ = template.check_params(&params);
            let _ = template.render(&["pl", "en"], "en", &params);
        }
        Err(issues) => assert!(!issues.is_empty()),
    }
});
