//! What browsers need: CORS on the inbox API for the allowed origins only,
//! the WebSocket refused to other sites' pages, the token carried in the
//! subprotocol list, and REST taking the token from the header only.

use reqwest::{Method, StatusCode, header};
use serde_json::Value;
use testkit::TestEnv;
use testkit::ws::WsClient;

use crate::support::{TestGateway, WAIT};

const APP: &str = "http://app.example.test:8084";
const OTHER: &str = "http://evil.example.test";

async fn gateway() -> TestGateway {
    let mut env = TestEnv::new().await;
    env.set(
        "HERALD__GATEWAY__ALLOWED_ORIGINS",
        format!("{APP},https://second.example.test"),
    );
    TestGateway::spawn_in(env).await
}

fn url(gw: &TestGateway, path: &str) -> String {
    format!("http://127.0.0.1:{}{path}", gw.port)
}

async fn preflight(gw: &TestGateway, origin: &str, method: &str) -> reqwest::Response {
    reqwest::Client::new()
        .request(Method::OPTIONS, url(gw, "/v1/me/notifications/read-all"))
        .header(header::ORIGIN, origin)
        .header(header::ACCESS_CONTROL_REQUEST_METHOD, method)
        .header(header::ACCESS_CONTROL_REQUEST_HEADERS, "authorization")
        .send()
        .await
        .unwrap()
}

fn allow_origin(response: &reqwest::Response) -> Option<&str> {
    response
        .headers()
        .get(header::ACCESS_CONTROL_ALLOW_ORIGIN)
        .map(|v| v.to_str().unwrap())
}

#[tokio::test]
async fn preflight_is_answered_for_allowed_origins_only() {
    let gw = gateway().await;

    let allowed = preflight(&gw, APP, "POST").await;
    assert_eq!(allowed.status(), StatusCode::OK);
    assert_eq!(allow_origin(&allowed), Some(APP));
    let allowed_headers = allowed.headers()[header::ACCESS_CONTROL_ALLOW_HEADERS]
        .to_str()
        .unwrap()
        .to_ascii_lowercase();
    assert!(
        allowed_headers.contains("authorization"),
        "{allowed_headers}"
    );
    assert!(
        allowed.headers()[header::ACCESS_CONTROL_ALLOW_METHODS]
            .to_str()
            .unwrap()
            .contains("POST")
    );
    assert!(
        allowed
            .headers()
            .get(header::ACCESS_CONTROL_ALLOW_CREDENTIALS)
            .is_none(),
        "tokens travel in a header: no credentials"
    );
    assert_eq!(allowed.headers()[header::ACCESS_CONTROL_MAX_AGE], "600");

    // PUT /v1/me/preferences sends JSON: content-type must be allowed too.
    let put = reqwest::Client::new()
        .request(Method::OPTIONS, url(&gw, "/v1/me/preferences"))
        .header(header::ORIGIN, APP)
        .header(header::ACCESS_CONTROL_REQUEST_METHOD, "PUT")
        .header(
            header::ACCESS_CONTROL_REQUEST_HEADERS,
            "authorization, content-type",
        )
        .send()
        .await
        .unwrap();
    assert_eq!(put.status(), StatusCode::OK);
    assert_eq!(allow_origin(&put), Some(APP));

    // Another site's page gets no CORS headers, and a problem+json answer.
    let refused = preflight(&gw, OTHER, "POST").await;
    assert_eq!(refused.status(), StatusCode::FORBIDDEN);
    assert_eq!(allow_origin(&refused), None);
    assert_eq!(
        refused.headers()[header::CONTENT_TYPE],
        "application/problem+json"
    );
    let body: Value = refused.json().await.unwrap();
    assert_eq!(
        body["type"],
        "https://herald.dev/problems/origin-not-allowed"
    );

    // An allowed origin asking for a method the API does not have.
    let refused = preflight(&gw, APP, "DELETE").await;
    assert_eq!(refused.status(), StatusCode::BAD_REQUEST);
    assert_eq!(
        refused.headers()[header::CONTENT_TYPE],
        "application/problem+json"
    );
}

#[tokio::test]
async fn inbox_answers_carry_cors_headers_for_allowed_origins_only() {
    let gw = gateway().await;
    let token = gw.env.token("alice", 300);
    let http = reqwest::Client::new();
    let get = |origin: &'static str| {
        http.get(url(&gw, "/v1/me/unread-count"))
            .header(header::ORIGIN, origin)
            .bearer_auth(&token)
            .send()
    };

    let allowed = get(APP).await.unwrap();
    assert_eq!(allowed.status(), StatusCode::OK);
    assert_eq!(allow_origin(&allowed), Some(APP));
    let vary = allowed.headers()[header::VARY].to_str().unwrap();
    assert!(vary.to_ascii_lowercase().contains("origin"), "{vary}");
    let exposed = allowed.headers()[header::ACCESS_CONTROL_EXPOSE_HEADERS]
        .to_str()
        .unwrap()
        .to_ascii_lowercase();
    assert!(
        exposed.contains("retry-after") && exposed.contains("www-authenticate"),
        "{exposed}"
    );

    // The request is answered, but without the header the browser keeps the
    // answer from the other site's page.
    let other = get(OTHER).await.unwrap();
    assert_eq!(allow_origin(&other), None);

    // Errors are readable by the allowed page too (a 401 it must act on).
    let unauthorized = http
        .get(url(&gw, "/v1/me/unread-count"))
        .header(header::ORIGIN, APP)
        .send()
        .await
        .unwrap();
    assert_eq!(unauthorized.status(), StatusCode::UNAUTHORIZED);
    assert_eq!(allow_origin(&unauthorized), Some(APP));
    assert_eq!(
        unauthorized.headers()[header::CONTENT_TYPE],
        "application/problem+json"
    );

    // Endpoints outside the inbox API get no CORS headers.
    let metrics = http
        .get(url(&gw, "/metrics"))
        .header(header::ORIGIN, APP)
        .send()
        .await
        .unwrap();
    assert_eq!(allow_origin(&metrics), None);
}

#[tokio::test]
async fn the_rest_api_takes_the_token_from_the_header_only() {
    let gw = gateway().await;
    let token = gw.env.token("alice", 300);
    let response = reqwest::get(url(&gw, &format!("/v1/me/unread-count?token={token}")))
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::UNAUTHORIZED);
    assert!(response.headers().contains_key(header::WWW_AUTHENTICATE));
}

#[tokio::test]
async fn websockets_from_other_sites_pages_are_refused_before_the_upgrade() {
    let gw = gateway().await;
    let authorization = format!("Bearer {}", gw.env.token("alice", 300));

    let refused = WsClient::connect_with_headers(
        gw.port,
        "/v1/ws",
        &[("authorization", &authorization), ("origin", OTHER)],
    )
    .await
    .err()
    .expect("another origin is refused");
    assert_eq!(refused.status, 403);
    let body: Value = serde_json::from_str(&refused.body).unwrap();
    assert_eq!(
        body["type"],
        "https://herald.dev/problems/origin-not-allowed"
    );

    for origin in [APP, "https://second.example.test"] {
        let (mut client, _) = WsClient::connect_with_headers(
            gw.port,
            "/v1/ws",
            &[("authorization", &authorization), ("origin", origin)],
        )
        .await
        .unwrap_or_else(|refused| panic!("{origin}: {refused:?}"));
        assert_eq!(client.next_json(WAIT).await.unwrap()["type"], "hello");
    }

    // No Origin: not a browser page (an app, a server): allowed.
    let (mut client, _) =
        WsClient::connect_with_headers(gw.port, "/v1/ws", &[("authorization", &authorization)])
            .await
            .unwrap();
    assert_eq!(client.next_json(WAIT).await.unwrap()["type"], "hello");
}

#[tokio::test]
async fn the_token_may_travel_in_the_subprotocol_list() {
    let gw = gateway().await;
    let token = gw.env.token("carol", 300);
    let protocols = format!("herald.v1, herald.token.{token}");

    let (mut client, response) = WsClient::connect_with_headers(
        gw.port,
        "/v1/ws",
        &[("sec-websocket-protocol", &protocols), ("origin", APP)],
    )
    .await
    .unwrap_or_else(|refused| panic!("{refused:?}"));
    // The server selects herald.v1, never echoes the token.
    assert_eq!(response[header::SEC_WEBSOCKET_PROTOCOL], "herald.v1");
    let hello = client.next_json(WAIT).await.unwrap();
    assert_eq!(hello["type"], "hello");
    assert_eq!(hello["user_id"], "carol");

    // Subprotocols without herald.v1: no handshake could succeed.
    let refused = WsClient::connect_with_headers(
        gw.port,
        "/v1/ws",
        &[("sec-websocket-protocol", &format!("herald.token.{token}"))],
    )
    .await
    .err()
    .expect("herald.v1 must be offered");
    assert_eq!(refused.status, 400);
    assert!(refused.body.contains("herald.v1"), "{}", refused.body);

    // A wrong token there is a 401 like anywhere else.
    let refused = WsClient::connect_with_headers(
        gw.port,
        "/v1/ws",
        &[(
            "sec-websocket-protocol",
            "herald.v1, herald.token.not.a.jwt",
        )],
    )
    .await
    .err()
    .expect("a bad token is refused");
    assert_eq!(refused.status, 401);
}

#[tokio::test]
async fn no_origin_is_allowed_by_default_and_star_allows_any() {
    let by_default = TestGateway::spawn().await;
    let authorization = format!("Bearer {}", by_default.env.token("alice", 300));
    let refused = WsClient::connect_with_headers(
        by_default.port,
        "/v1/ws",
        &[("authorization", &authorization), ("origin", APP)],
    )
    .await
    .err()
    .expect("no browser origin is allowed unless configured");
    assert_eq!(refused.status, 403);
    assert_eq!(
        allow_origin(&preflight(&by_default, APP, "POST").await),
        None
    );

    let mut env = TestEnv::new().await;
    env.set("HERALD__GATEWAY__ALLOWED_ORIGINS", "*");
    let any = TestGateway::spawn_in(env).await;
    let authorization = format!("Bearer {}", any.env.token("alice", 300));
    let (mut client, _) = WsClient::connect_with_headers(
        any.port,
        "/v1/ws",
        &[("authorization", &authorization), ("origin", OTHER)],
    )
    .await
    .unwrap_or_else(|refused| panic!("{refused:?}"));
    assert_eq!(client.next_json(WAIT).await.unwrap()["type"], "hello");
    assert_eq!(
        allow_origin(&preflight(&any, OTHER, "POST").await),
        Some(OTHER)
    );
}
