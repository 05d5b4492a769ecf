//! The two kinds of client the scenarios drive: a keep-alive HTTP/1.1
//! connection posting JSON with the API key, and an authenticated
//! WebSocket user.

use std::net::{IpAddr, SocketAddr};

use anyhow::Context;
use bytes::Bytes;
use futures_util::StreamExt;
use http_body_util::{BodyExt, Full};
use hyper::client::conn::http1::SendRequest;
use hyper::{Request, StatusCode};
use hyper_util::rt::TokioIo;
use serde_json::json;
use tokio::net::{TcpSocket, TcpStream};
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::protocol::WebSocketConfig;
use tokio_tungstenite::{MaybeTlsStream, WebSocketStream};

/// Host and port of an `http://host:port` base URL.
pub fn authority(base: &str) -> anyhow::Result<String> {
    let uri: hyper::Uri = base.parse().with_context(|| format!("bad URL {base}"))?;
    uri.authority()
        .map(|a| a.to_string())
        .with_context(|| format!("no host in {base}"))
}

/// One producer connection to ingest-api.
pub struct Producer {
    authority: String,
    api_key: String,
    sender: SendRequest<Full<Bytes>>,
}

impl Producer {
    pub async fn connect(authority: &str, api_key: &str) -> anyhow::Result<Self> {
        Ok(Self {
            authority: authority.to_owned(),
            api_key: api_key.to_owned(),
            sender: handshake(authority).await?,
        })
    }

    /// POSTs a JSON body; answers the status and the response body. A
    /// connection the server closed is reopened once.
    pub async fn post(&mut self, path: &str, body: Bytes) -> anyhow::Result<(StatusCode, Bytes)> {
        if self.sender.ready().await.is_err() {
            self.sender = handshake(&self.authority).await?;
        }
        let request = Request::post(path)
            .header("host", &self.authority)
            .header("content-type", "application/json")
            .header("x-api-key", &self.api_key)
            .body(Full::new(body))?;
        let response = self.sender.send_request(request).await?;
        let status = response.status();
        let body = response.into_body().collect().await?.to_bytes();
        Ok((status, body))
    }
}

async fn handshake(authority: &str) -> anyhow::Result<SendRequest<Full<Bytes>>> {
    let stream = TcpStream::connect(authority).await?;
    stream.set_nodelay(true)?;
    let (sender, connection) = hyper::client::conn::http1::handshake(TokioIo::new(stream)).await?;
    tokio::spawn(connection);
    Ok(sender)
}

pub type Socket = WebSocketStream<MaybeTlsStream<TcpStream>>;

/// A user's JWT, signed with the gateway's secret, valid for two hours.
pub fn token(secret: &str, user: &str) -> anyhow::Result<String> {
    let now = jsonwebtoken::get_current_timestamp();
    Ok(jsonwebtoken::encode(
        &jsonwebtoken::Header::new(jsonwebtoken::Algorithm::HS256),
        &json!({"sub": user, "exp": now + 7200}),
        &jsonwebtoken::EncodingKey::from_secret(secret.as_bytes()),
    )?)
}

/// Connects `user` to the gateway's `/v1/ws`, from `source` when given (a
/// loopback address other than 127.0.0.1 gets its own ephemeral ports).
/// Buffers are small: the bench holds tens of thousands of these.
pub async fn connect_user(
    gateway: &str,
    secret: &str,
    user: &str,
    source: Option<IpAddr>,
) -> anyhow::Result<Socket> {
    let target: SocketAddr = tokio::net::lookup_host(authority(gateway)?)
        .await?
        .next()
        .context("gateway address")?;
    let socket = TcpSocket::new_v4()?;
    if let Some(source) = source {
        socket.bind(SocketAddr::new(source, 0))?;
    }
    let stream = socket.connect(target).await?;
    stream.set_nodelay(true)?;
    let mut request =
        format!("{}/v1/ws", gateway.replacen("http", "ws", 1)).into_client_request()?;
    request.headers_mut().insert(
        "authorization",
        format!("Bearer {}", token(secret, user)?).parse()?,
    );
    let config = WebSocketConfig::default()
        .read_buffer_size(4096)
        .write_buffer_size(0);
    let (mut socket, _) = tokio_tungstenite::client_async_with_config(
        request,
        MaybeTlsStream::Plain(stream),
        Some(config),
    )
    .await?;
    // The gateway subscribes to the user's channel before it says hello:
    // from then on, nothing published for the user can be missed.
    match socket.next().await {
        Some(Ok(Message::Text(hello))) if hello.contains("\"hello\"") => Ok(socket),
        other => anyhow::bail!("expected hello from the gateway, got {other:?}"),
    }
}

/// GETs `path` from an `http://host:port` base and answers the body as text.
pub async fn get_text(base: &str, path: &str) -> anyhow::Result<String> {
    let authority = authority(base)?;
    let mut sender = handshake(&authority).await?;
    let request = Request::get(path)
        .header("host", &authority)
        .body(Full::new(Bytes::new()))?;
    let response = sender.send_request(request).await?;
    let body = response.into_body().collect().await?.to_bytes();
    Ok(String::from_utf8_lossy(&body).into_owned())
}
