//! Tokens from an identity provider: RS256, ES256 and EdDSA keys generated
//! by the test (openssl), published as a JWKS by a local HTTP server or
//! given as files; rotation, refetch limits, and every refusal answered 401
//! before the upgrade.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use jsonwebtoken::jwk::Jwk;
use jsonwebtoken::{Algorithm, EncodingKey, Header};
use serde_json::{Value, json};
use testkit::tls::openssl;
use testkit::ws::WsClient;
use testkit::{TestEnv, eventually};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use crate::support::{TestGateway, WAIT};

const ISSUER: &str = "https://id.example.test/";
const AUDIENCE: &str = "herald";

/// A signing key of the "provider", made with openssl in a scratch folder.
struct ProviderKey {
    kid: String,
    alg: Algorithm,
    encoding: EncodingKey,
    public_pem: Vec<u8>,
    jwk: Value,
}

impl ProviderKey {
    fn generate(kind: &str, kid: &str) -> Self {
        let dir = std::env::temp_dir().join(format!("herald-idp-{}", uuid::Uuid::now_v7()));
        std::fs::create_dir_all(&dir).unwrap();
        let private = dir.join("key.pem");
        let args: &[&str] = match kind {
            "rsa" => &["-algorithm", "RSA", "-pkeyopt", "rsa_keygen_bits:2048"],
            "ec" => &["-algorithm", "EC", "-pkeyopt", "ec_paramgen_curve:P-256"],
            "ed" => &["-algorithm", "ED25519"],
            other => panic!("no key kind {other}"),
        };
        openssl(&dir, &[&["genpkey"], args, &["-out", "key.pem"]].concat());
        let public_pem = openssl(&dir, &["pkey", "-in", "key.pem", "-pubout"]);
        let pem = std::fs::read(&private).unwrap();
        std::fs::remove_dir_all(&dir).unwrap();
        let (alg, encoding) = match kind {
            "rsa" => (Algorithm::RS256, EncodingKey::from_rsa_pem(&pem).unwrap()),
            "ec" => (Algorithm::ES256, EncodingKey::from_ec_pem(&pem).unwrap()),
            _ => (Algorithm::EdDSA, EncodingKey::from_ed_pem(&pem).unwrap()),
        };
        let mut jwk = Jwk::from_encoding_key(&encoding, alg).unwrap();
        jwk.common.key_id = Some(kid.to_owned());
        Self {
            kid: kid.to_owned(),
            alg,
            encoding,
            public_pem,
            jwk: serde_json::to_value(jwk).unwrap(),
        }
    }

    fn sign(&self, claims: &Value) -> String {
        self.sign_as(self.alg, Some(&self.kid), claims)
    }

    fn sign_as(&self, alg: Algorithm, kid: Option<&str>, claims: &Value) -> String {
        let mut header = Header::new(alg);
        header.kid = kid.map(str::to_owned);
        jsonwebtoken::encode(&header, claims, &self.encoding).unwrap()
    }
}

/// A provider's JWKS endpoint: serves the current key set and counts requests.
struct JwksServer {
    port: u16,
    keys: Arc<Mutex<Vec<Value>>>,
    fetches: Arc<AtomicUsize>,
}

impl JwksServer {
    async fn start(keys: Vec<Value>, cache_control: &'static str) -> Self {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        let keys = Arc::new(Mutex::new(keys));
        let fetches = Arc::new(AtomicUsize::new(0));
        let (served, counted) = (keys.clone(), fetches.clone());
        tokio::spawn(async move {
            while let Ok((mut socket, _)) = listener.accept().await {
                let (served, counted) = (served.clone(), counted.clone());
                tokio::spawn(async move {
                    let mut request = Vec::new();
                    let mut buf = [0u8; 1024];
                    while !request.windows(4).any(|w| w == b"\r\n\r\n") {
                        match socket.read(&mut buf).await {
                            Ok(0) | Err(_) => return,
                            Ok(n) => request.extend_from_slice(&buf[..n]),
                        }
                    }
                    counted.fetch_add(1, Ordering::SeqCst);
                    let body = json!({"keys": *served.lock().unwrap()}).to_string();
                    let response = format!(
                        "HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncache-control: {cache_control}\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}",
                        body.len()
                    );
                    let _ = socket.write_all(response.as_bytes()).await;
                    let _ = socket.shutdown().await;
                });
            }
        });
        Self {
            port,
            keys,
            fetches,
        }
    }

    fn url(&self) -> String {
        format!("http://127.0.0.1:{}/.well-known/jwks.json", self.port)
    }

    fn fetches(&self) -> usize {
        self.fetches.load(Ordering::SeqCst)
    }

    fn publish(&self, key: &ProviderKey) {
        self.keys.lock().unwrap().push(key.jwk.clone());
    }
}

/// A test environment whose gateway trusts only the provider's keys.
async fn provider_env(jwks_url: &str) -> TestEnv {
    let mut env = TestEnv::new().await;
    env.set("HERALD__AUTH__JWT_SECRET", "");
    env.set("HERALD__AUTH__JWT_JWKS_URL", jwks_url);
    env.set("HERALD__AUTH__JWT_JWKS_MIN_REFRESH_SECS", "1");
    env.set("HERALD__AUTH__JWT_ISSUER", ISSUER);
    env.set("HERALD__AUTH__JWT_AUDIENCE", AUDIENCE);
    env.set("HERALD__AUTH__JWT_MAX_LIFETIME_SECS", "3600");
    env
}

fn claims(user: &str) -> Value {
    let now = jsonwebtoken::get_current_timestamp();
    json!({"sub": user, "iss": ISSUER, "aud": AUDIENCE, "iat": now, "exp": now + 600})
}

fn with(mut claims: Value, changes: Value) -> Value {
    for (key, value) in changes.as_object().unwrap() {
        if value.is_null() {
            claims.as_object_mut().unwrap().remove(key);
        } else {
            claims[key] = value.clone();
        }
    }
    claims
}

async fn accepted_user(port: u16, token: &str) -> String {
    let (_, hello) = WsClient::connect_user(port, token).await;
    assert_eq!(hello["type"], "hello", "{hello}");
    hello["user_id"].as_str().unwrap().to_owned()
}

async fn refused(port: u16, token: &str) -> Value {
    let refused = WsClient::connect(port, "/v1/ws", Some(token))
        .await
        .err()
        .expect("the upgrade is refused");
    assert_eq!(refused.status, 401, "{}", refused.body);
    serde_json::from_str(&refused.body).unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn provider_tokens_verify_against_the_jwks_and_every_refusal_is_401() {
    let rsa = ProviderKey::generate("rsa", "rsa-1");
    let ec = ProviderKey::generate("ec", "ec-1");
    let ed = ProviderKey::generate("ed", "ed-1");
    let jwks = JwksServer::start(
        vec![rsa.jwk.clone(), ec.jwk.clone(), ed.jwk.clone()],
        "public, max-age=3600",
    )
    .await;
    let gw = TestGateway::spawn_in(provider_env(&jwks.url()).await).await;

    for (key, user) in [(&rsa, "ann"), (&ec, "ben"), (&ed, "cat")] {
        assert_eq!(accepted_user(gw.port, &key.sign(&claims(user))).await, user);
    }
    // The inbox API takes the same tokens.
    let http = reqwest::Client::new();
    let unread = |token: String| {
        http.get(format!("http://127.0.0.1:{}/v1/me/unread-count", gw.port))
            .bearer_auth(token)
            .send()
    };
    assert_eq!(
        unread(rsa.sign(&claims("ann"))).await.unwrap().status(),
        200
    );
    let wrong_aud = rsa.sign(&with(claims("ann"), json!({"aud": "someone-else"})));
    assert_eq!(unread(wrong_aud).await.unwrap().status(), 401);

    let now = jsonwebtoken::get_current_timestamp();
    let stranger = ProviderKey::generate("rsa", "rsa-1");
    let public_pem_as_secret = EncodingKey::from_secret(&rsa.public_pem);
    let mut confused = Header::new(Algorithm::HS256);
    confused.kid = Some("rsa-1".into());
    let cases = [
        (
            "wrong iss",
            rsa.sign(&with(claims("ann"), json!({"iss": "https://evil.test/"}))),
        ),
        (
            "wrong aud",
            rsa.sign(&with(claims("ann"), json!({"aud": "other"}))),
        ),
        (
            "no aud",
            rsa.sign(&with(claims("ann"), json!({"aud": null}))),
        ),
        (
            "no iss",
            rsa.sign(&with(claims("ann"), json!({"iss": null}))),
        ),
        (
            "no exp",
            rsa.sign(&with(claims("ann"), json!({"exp": null}))),
        ),
        (
            "expired",
            rsa.sign(&with(
                claims("ann"),
                json!({"iat": now - 700, "exp": now - 100}),
            )),
        ),
        (
            "too long-lived",
            rsa.sign(&with(claims("ann"), json!({"exp": now + 7200}))),
        ),
        (
            "too long-lived without iat",
            rsa.sign(&with(
                claims("ann"),
                json!({"iat": null, "exp": now + 7200}),
            )),
        ),
        (
            "unknown kid",
            rsa.sign_as(Algorithm::RS256, Some("nope"), &claims("ann")),
        ),
        (
            "alg mismatch (ES256 under an RSA kid)",
            ec.sign_as(Algorithm::ES256, Some("rsa-1"), &claims("ann")),
        ),
        (
            "HS256 keyed with the RSA public key (confusion)",
            jsonwebtoken::encode(&confused, &claims("ann"), &public_pem_as_secret).unwrap(),
        ),
        (
            "HS256 without kid and no secret configured",
            jsonwebtoken::encode(
                &Header::new(Algorithm::HS256),
                &claims("ann"),
                &public_pem_as_secret,
            )
            .unwrap(),
        ),
        (
            "signed by another key under a known kid",
            stranger.sign(&claims("ann")),
        ),
        (
            "user claim not a user id",
            rsa.sign(&with(claims("ann"), json!({"sub": "a b"}))),
        ),
    ];
    for (case, token) in &cases {
        let body = refused(gw.port, token).await;
        assert_eq!(body["status"], 401, "{case}: {body}");
        // The reason is named, for whoever configures the provider.
        if *case == "unknown kid" {
            let detail = body["detail"].as_str().unwrap();
            assert!(detail.contains("unknown key id \"nope\""), "{detail}");
        }
    }

    // Made-up kids refetch the JWKS at most once per minimum interval (1 s).
    tokio::time::sleep(Duration::from_millis(1100)).await;
    let before = jwks.fetches();
    let started = Instant::now();
    let burst: Vec<String> = (0..5)
        .map(|i| {
            rsa.sign_as(
                Algorithm::RS256,
                Some(&format!("made-up-{i}")),
                &claims("ann"),
            )
        })
        .collect();
    futures_util::future::join_all(burst.iter().map(|token| refused(gw.port, token))).await;
    let elapsed = started.elapsed();
    let refetches = jwks.fetches() - before;
    let allowed = 1 + elapsed.as_secs() as usize;
    assert!(
        (1..=allowed).contains(&refetches),
        "{refetches} refetches for 5 unknown kids in {elapsed:?}"
    );

    // Rotation: a key published after start is found by the kid refetch.
    let rotated = ProviderKey::generate("ec", "ec-2");
    jwks.publish(&rotated);
    tokio::time::sleep(Duration::from_millis(1100)).await;
    assert_eq!(
        accepted_user(gw.port, &rotated.sign(&claims("dan"))).await,
        "dan"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn key_files_and_a_configured_user_claim() {
    let ec = ProviderKey::generate("ec", "ec-file");
    let ed = ProviderKey::generate("ed", "ed-file");
    let dir = std::env::temp_dir().join(format!("herald-keys-{}", uuid::Uuid::now_v7()));
    std::fs::create_dir_all(&dir).unwrap();
    let pem_file = dir.join("provider.pem");
    std::fs::write(&pem_file, &ec.public_pem).unwrap();
    let jwks_file = dir.join("jwks.json");
    std::fs::write(&jwks_file, json!({"keys": [ed.jwk]}).to_string()).unwrap();

    let mut env = TestEnv::new().await;
    env.set("HERALD__AUTH__JWT_SECRET", "");
    env.set(
        "HERALD__AUTH__JWT_PUBLIC_KEY_FILE",
        pem_file.to_str().unwrap(),
    );
    env.set("HERALD__AUTH__JWT_JWKS_FILE", jwks_file.to_str().unwrap());
    env.set("HERALD__AUTH__JWT_USER_CLAIM", "herald_user");
    let gw = TestGateway::spawn_in(env).await;
    std::fs::remove_dir_all(&dir).unwrap();

    let now = jsonwebtoken::get_current_timestamp();
    let claims = |user: &str| json!({"sub": "idp|123", "herald_user": user, "exp": now + 300});
    assert_eq!(
        accepted_user(gw.port, &ed.sign(&claims("eve"))).await,
        "eve"
    );
    // The PEM key has no kid: a token naming one it lacks still finds it.
    assert_eq!(
        accepted_user(gw.port, &ec.sign(&claims("fay"))).await,
        "fay"
    );
    refused(gw.port, &ed.sign(&json!({"sub": "gil", "exp": now + 300}))).await;
    // No secret configured: development tokens are not accepted.
    refused(gw.port, &gw.env.token("gil", 300)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_jwks_is_refreshed_as_its_cache_control_allows() {
    let rsa = ProviderKey::generate("rsa", "rsa-1");
    let jwks = JwksServer::start(vec![rsa.jwk.clone()], "max-age=1").await;
    let gw = TestGateway::spawn_in(provider_env(&jwks.url()).await).await;
    assert_eq!(
        accepted_user(gw.port, &rsa.sign(&claims("hal"))).await,
        "hal"
    );
    // max-age=1 (at the 1 s minimum): asked again every second, no token needed.
    eventually("two background refreshes", WAIT, || async {
        (jwks.fetches() >= 3).then_some(())
    })
    .await;
}
