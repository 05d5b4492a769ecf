//! A real WebSocket client (tokio-tungstenite) speaking Herald's frames.

use std::time::Duration;

use futures_util::{SinkExt, StreamExt};
use serde_json::Value;
use tokio::net::TcpStream;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::protocol::CloseFrame;
use tokio_tungstenite::tungstenite::{Error as WsError, Message};
use tokio_tungstenite::{MaybeTlsStream, WebSocketStream};

pub struct WsClient {
    stream: WebSocketStream<MaybeTlsStream<TcpStream>>,
}

/// How a connection attempt ended when it was not upgraded.
#[derive(Debug)]
pub struct Refused {
    pub status: u16,
    pub body: String,
}

/// How the server ended a connection.
#[derive(Debug, PartialEq, Eq)]
pub enum Ended {
    Closed(Option<u16>),
    Dropped,
}

impl WsClient {
    /// Connects to `ws://127.0.0.1:{port}{path_and_query}` with an optional bearer token.
    pub async fn connect(
        port: u16,
        path_and_query: &str,
        bearer: Option<&str>,
    ) -> Result<Self, Refused> {
        let authorization = bearer.map(|token| format!("Bearer {token}"));
        let headers: Vec<(&str, &str)> = authorization
            .iter()
            .map(|value| ("authorization", value.as_str()))
            .collect();
        Self::connect_with_headers(port, path_and_query, &headers)
            .await
            .map(|(client, _)| client)
    }

    /// Connects with these request headers (`origin`, `sec-websocket-protocol`,
    /// ...); answers the client and the handshake's response headers.
    pub async fn connect_with_headers(
        port: u16,
        path_and_query: &str,
        headers: &[(&str, &str)],
    ) -> Result<(Self, tokio_tungstenite::tungstenite::http::HeaderMap), Refused> {
        let mut request = format!("ws://127.0.0.1:{port}{path_and_query}")
            .into_client_request()
            .expect("valid ws url");
        for (name, value) in headers {
            request.headers_mut().insert(
                tokio_tungstenite::tungstenite::http::HeaderName::from_bytes(name.as_bytes())
                    .expect("header name"),
                value.parse().expect("header value"),
            );
        }
        match tokio_tungstenite::connect_async(request).await {
            Ok((stream, response)) => Ok((Self { stream }, response.headers().clone())),
            Err(WsError::Http(response)) => Err(Refused {
                status: response.status().as_u16(),
                body: response
                    .body()
                    .as_ref()
                    .map(|b| String::from_utf8_lossy(b).into_owned())
                    .unwrap_or_default(),
            }),
            Err(other) => panic!("WebSocket connect failed: {other}"),
        }
    }

    /// Like [`connect`](Self::connect), but a refused TCP connection (a
    /// server that is going away) is an error instead of a panic.
    pub async fn try_connect(
        port: u16,
        path_and_query: &str,
        bearer: &str,
    ) -> Result<Self, String> {
        let mut request = format!("ws://127.0.0.1:{port}{path_and_query}")
            .into_client_request()
            .map_err(|e| e.to_string())?;
        request.headers_mut().insert(
            "authorization",
            format!("Bearer {bearer}")
                .parse()
                .map_err(|_| "bad token".to_owned())?,
        );
        tokio_tungstenite::connect_async(request)
            .await
            .map(|(stream, _)| Self { stream })
            .map_err(|e| e.to_string())
    }

    /// Connects as a user with a token and returns the client with its `hello` frame.
    pub async fn connect_user(port: u16, token: &str) -> (Self, Value) {
        let mut client = Self::connect(port, "/v1/ws", Some(token))
            .await
            .unwrap_or_else(|refused| panic!("connection refused: {refused:?}"));
        let hello = client
            .next_json(Duration::from_secs(5))
            .await
            .expect("hello frame");
        assert_eq!(hello["type"], "hello", "first frame is hello: {hello}");
        (client, hello)
    }

    /// The next text frame as JSON, skipping pings; `None` after `timeout`.
    pub async fn next_json(&mut self, timeout: Duration) -> Option<Value> {
        let deadline = tokio::time::Instant::now() + timeout;
        loop {
            let message = tokio::time::timeout_at(deadline, self.stream.next())
                .await
                .ok()??;
            match message {
                Ok(Message::Text(text)) => {
                    return Some(serde_json::from_str(&text).expect("server frames are JSON"));
                }
                Ok(Message::Close(_)) | Err(_) => return None,
                Ok(_) => continue,
            }
        }
    }

    /// The next text frame, or how the connection ended; `None` after `timeout`.
    pub async fn next_or_end(&mut self, timeout: Duration) -> Option<Result<Value, Ended>> {
        let deadline = tokio::time::Instant::now() + timeout;
        loop {
            match tokio::time::timeout_at(deadline, self.stream.next()).await {
                Err(_) => return None,
                Ok(None) | Ok(Some(Err(_))) => return Some(Err(Ended::Dropped)),
                Ok(Some(Ok(Message::Close(frame)))) => {
                    return Some(Err(Ended::Closed(
                        frame.map(|f: CloseFrame| u16::from(f.code)),
                    )));
                }
                Ok(Some(Ok(Message::Text(text)))) => {
                    return Some(Ok(
                        serde_json::from_str(&text).expect("server frames are JSON")
                    ));
                }
                Ok(Some(Ok(_))) => continue,
            }
        }
    }

    /// Waits for the server to end the connection and reports the close code.
    pub async fn closed(&mut self, timeout: Duration) -> Ended {
        let deadline = tokio::time::Instant::now() + timeout;
        loop {
            match tokio::time::timeout_at(deadline, self.stream.next()).await {
                Err(_) => panic!("connection still open after {timeout:?}"),
                Ok(None) | Ok(Some(Err(_))) => return Ended::Dropped,
                Ok(Some(Ok(Message::Close(frame)))) => {
                    return Ended::Closed(frame.map(|f: CloseFrame| u16::from(f.code)));
                }
                Ok(Some(Ok(_))) => continue,
            }
        }
    }

    /// Reads until the server ends the connection: frames read, and how it ended.
    pub async fn drain_until_closed(&mut self, timeout: Duration) -> (usize, Ended) {
        let deadline = tokio::time::Instant::now() + timeout;
        let mut frames = 0;
        loop {
            match tokio::time::timeout_at(deadline, self.stream.next()).await {
                Err(_) => panic!("connection still open after {timeout:?} ({frames} frames read)"),
                Ok(None) | Ok(Some(Err(_))) => return (frames, Ended::Dropped),
                Ok(Some(Ok(Message::Close(frame)))) => {
                    return (
                        frames,
                        Ended::Closed(frame.map(|f: CloseFrame| u16::from(f.code))),
                    );
                }
                Ok(Some(Ok(Message::Text(_)))) => frames += 1,
                Ok(Some(Ok(_))) => continue,
            }
        }
    }

    pub async fn send_text(&mut self, text: &str) {
        self.stream
            .send(Message::text(text))
            .await
            .expect("send text frame");
    }

    pub async fn send_binary(&mut self, bytes: Vec<u8>) {
        self.stream
            .send(Message::binary(bytes))
            .await
            .expect("send binary frame");
    }

    pub async fn close(mut self) {
        let _ = self.stream.close(None).await;
        // Drain until the server's close arrives so the server sees a clean close.
        while let Ok(Some(_)) =
            tokio::time::timeout(Duration::from_secs(2), self.stream.next()).await
        {}
    }
}
