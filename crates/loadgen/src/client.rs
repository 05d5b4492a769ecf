//! The two kinds of client the scenarios drive: a keep-alive HTTP/1.1
//! connection posting JSON with the API key, and an authenticated
//! WebSocket user.

use std::net::{IpAddr, SocketAddr};

use anyhow::Context;
use bytes::Bytes;
use futures_util::StreamExt;
use serde_json::json;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpSocket, TcpStream};
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::http::{StatusCode, Uri};
use tokio_tungstenite::tungstenite::protocol::WebSocketConfig;
use tokio_tungstenite::{MaybeTlsStream, WebSocketStream};

/// Host and port of an `http://host:port` base URL.
pub fn authority(base: &str) -> anyhow::Result<String> {
    let uri: Uri = base.parse().with_context(|| format!("bad URL {base}"))?;
    uri.authority()
        .map(|a| a.to_string())
        .with_context(|| format!("no host in {base}"))
}

/// One producer connection to ingest-api: HTTP/1.1 keep-alive, spoken by
/// hand. A request is one write (head and body), its answer is read into a
/// buffer kept for the connection and parsed with `httparse`, all in the
/// task that posts: no connection task and no channel hop per request, as
/// hyper's client has (the load generator shares the machine's two cores
/// with what it measures: hyper's cost about as much CPU per request as the
/// server did; see bench/README.md).
pub struct Producer {
    authority: String,
    /// `Host`, `Content-Type` and `x-api-key`, the same for every request.
    headers: String,
    connection: Option<TcpStream>,
    buffer: Vec<u8>,
}

impl Producer {
    pub async fn connect(authority: &str, api_key: &str) -> anyhow::Result<Self> {
        Ok(Self {
            authority: authority.to_owned(),
            headers: format!(
                "host: {authority}\r\ncontent-type: application/json\r\nx-api-key: {api_key}\r\n"
            ),
            connection: Some(open(authority).await?),
            buffer: Vec::with_capacity(4096),
        })
    }

    /// POSTs a JSON body; answers the status and the response body. A
    /// connection the server closed while it was idle is reopened before the
    /// request is written; once written, a request is never sent again (the
    /// server may have taken it), whatever happens to the answer.
    pub async fn post(&mut self, path: &str, body: Bytes) -> anyhow::Result<(StatusCode, Bytes)> {
        let mut request = format!(
            "POST {path} HTTP/1.1\r\n{}content-length: {}\r\n\r\n",
            self.headers,
            body.len()
        )
        .into_bytes();
        request.extend_from_slice(&body);
        let connection = match self.connection.take() {
            Some(connection) if still_open(&connection) => connection,
            _ => open(&self.authority).await?,
        };
        let connection = self.connection.insert(connection);
        let answer = send(connection, &mut self.buffer, &request).await;
        if answer.is_err() {
            self.connection = None;
        }
        answer
    }
}

/// Whether an idle keep-alive connection is still open: the server has
/// neither closed it nor written anything unasked.
fn still_open(connection: &TcpStream) -> bool {
    matches!(
        connection.try_read(&mut [0u8; 1]),
        Err(err) if err.kind() == std::io::ErrorKind::WouldBlock
    )
}

async fn open(authority: &str) -> anyhow::Result<TcpStream> {
    let stream = TcpStream::connect(authority).await?;
    stream.set_nodelay(true)?;
    Ok(stream)
}

/// The largest answer body read (ingest-api's answers are a few KiB).
const MAX_ANSWER_BYTES: usize = 16 << 20;

/// Writes `request` and reads one answer with a `Content-Length` (what
/// actix-web sends for JSON and problem+json bodies).
async fn send(
    connection: &mut TcpStream,
    buffer: &mut Vec<u8>,
    request: &[u8],
) -> anyhow::Result<(StatusCode, Bytes)> {
    connection.write_all(request).await?;
    buffer.clear();
    loop {
        let mut headers = [httparse::EMPTY_HEADER; 32];
        let mut response = httparse::Response::new(&mut headers);
        if let httparse::Status::Complete(head) = response.parse(buffer)? {
            let status = StatusCode::from_u16(response.code.unwrap_or(0))?;
            let length = content_length(response.headers)
                .filter(|length| *length <= MAX_ANSWER_BYTES)
                .context("answer without a Content-Length up to 16 MiB")?;
            while buffer.len() < head + length {
                read_some(connection, buffer).await?;
            }
            let body = Bytes::copy_from_slice(&buffer[head..head + length]);
            return Ok((status, body));
        }
        read_some(connection, buffer).await?;
    }
}

/// The `Content-Length` of a parsed head, if it has a valid one.
fn content_length(headers: &[httparse::Header]) -> Option<usize> {
    let header = headers
        .iter()
        .find(|h| h.name.eq_ignore_ascii_case("content-length"))?;
    std::str::from_utf8(header.value).ok()?.trim().parse().ok()
}

/// Appends what the connection has to `buffer`; an error at its end.
async fn read_some(connection: &mut TcpStream, buffer: &mut Vec<u8>) -> anyhow::Result<()> {
    if buffer.capacity() - buffer.len() < 1024 {
        buffer.reserve(4096);
    }
    if connection.read_buf(buffer).await? == 0 {
        anyhow::bail!("the server closed the connection");
    }
    Ok(())
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
    get(base, path, "").await
}

/// [`get_text`] as a user (a bearer token).
pub async fn get_text_as(base: &str, path: &str, token: &str) -> anyhow::Result<String> {
    get(base, path, &format!("authorization: Bearer {token}\r\n")).await
}

async fn get(base: &str, path: &str, headers: &str) -> anyhow::Result<String> {
    let authority = authority(base)?;
    let mut connection = open(&authority).await?;
    let request = format!("GET {path} HTTP/1.1\r\nhost: {authority}\r\n{headers}\r\n");
    let (status, body) = send(&mut connection, &mut Vec::new(), request.as_bytes()).await?;
    anyhow::ensure!(status.is_success(), "GET {path}: {status}");
    Ok(String::from_utf8_lossy(&body).into_owned())
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use tokio::net::TcpListener;

    use super::*;

    /// Reads one request (head and `Content-Length` body) from `stream`;
    /// answers its head and body as text, `None` if the client closed first.
    async fn read_request(stream: &mut TcpStream) -> Option<(String, String)> {
        let mut buffer = Vec::new();
        loop {
            let mut headers = [httparse::EMPTY_HEADER; 16];
            let mut request = httparse::Request::new(&mut headers);
            if let httparse::Status::Complete(head) = request.parse(&buffer).unwrap() {
                let length = content_length(request.headers).unwrap_or(0);
                while buffer.len() < head + length {
                    assert!(stream.read_buf(&mut buffer).await.unwrap() > 0);
                }
                let text = |b: &[u8]| String::from_utf8(b.to_vec()).unwrap();
                return Some((text(&buffer[..head]), text(&buffer[head..head + length])));
            }
            if stream.read_buf(&mut buffer).await.unwrap() == 0 {
                return None;
            }
        }
    }

    async fn listener() -> (TcpListener, String) {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let authority = listener.local_addr().unwrap().to_string();
        (listener, authority)
    }

    #[tokio::test]
    async fn a_post_sends_the_key_and_body_and_reads_an_answer_that_arrives_in_pieces() {
        let (listener, authority) = listener().await;
        let server = tokio::spawn(async move {
            let (mut stream, _) = listener.accept().await.unwrap();
            let (head, body) = read_request(&mut stream).await.unwrap();
            stream
                .write_all(b"HTTP/1.1 202 Accepted\r\ncontent-length: 12\r\n\r\n{\"id\":")
                .await
                .unwrap();
            tokio::time::sleep(Duration::from_millis(50)).await;
            stream.write_all(b"\"abc\"}").await.unwrap();
            (head, body)
        });
        let mut producer = Producer::connect(&authority, "key-1").await.unwrap();
        let (status, body) = producer
            .post("/v1/notifications", Bytes::from_static(b"{\"a\":1}"))
            .await
            .unwrap();
        assert_eq!(status, StatusCode::ACCEPTED);
        assert_eq!(&body[..], br#"{"id":"abc"}"#);
        let (head, sent) = server.await.unwrap();
        assert!(
            head.starts_with("POST /v1/notifications HTTP/1.1\r\n"),
            "{head}"
        );
        assert!(head.contains("x-api-key: key-1\r\n"), "{head}");
        assert!(
            head.contains("content-type: application/json\r\n"),
            "{head}"
        );
        assert_eq!(sent, "{\"a\":1}");
    }

    #[tokio::test]
    async fn a_connection_the_server_closed_while_idle_is_reopened_before_the_request_is_written() {
        let (listener, authority) = listener().await;
        let server = tokio::spawn(async move {
            let mut handled = Vec::new();
            // Each connection answers one request, then is closed: the
            // second request must come on a new one.
            for _ in 0..2 {
                let (mut conn, _) = listener.accept().await.unwrap();
                handled.push(read_request(&mut conn).await.unwrap().1);
                conn.write_all(b"HTTP/1.1 202 Accepted\r\ncontent-length: 2\r\n\r\n{}")
                    .await
                    .unwrap();
            }
            handled
        });
        let mut producer = Producer::connect(&authority, "k").await.unwrap();
        for body in ["1", "2"] {
            let (status, _) = producer
                .post("/v1/notifications", Bytes::from(body))
                .await
                .unwrap();
            assert_eq!(status, StatusCode::ACCEPTED);
            // Idle long enough for the server's close to arrive.
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        // Each request was taken exactly once.
        assert_eq!(server.await.unwrap(), ["1", "2"]);
    }

    /// Serves one connection: reads one request, writes `answer` (nothing,
    /// or less than it announces) and closes; then the request must have
    /// failed and no second connection (a resend) come within 300 ms.
    async fn assert_not_sent_again(answer: &'static [u8]) {
        let (listener, authority) = listener().await;
        let server = tokio::spawn(async move {
            let (mut stream, _) = listener.accept().await.unwrap();
            read_request(&mut stream).await.unwrap();
            stream.write_all(answer).await.unwrap();
            drop(stream);
            tokio::time::timeout(Duration::from_millis(300), listener.accept())
                .await
                .is_err()
        });
        let mut producer = Producer::connect(&authority, "k").await.unwrap();
        let answer = producer
            .post("/v1/notifications", Bytes::from_static(b"{}"))
            .await;
        assert!(answer.is_err(), "{answer:?}");
        assert!(server.await.unwrap(), "the request was sent again");
    }

    #[tokio::test]
    async fn a_request_the_server_read_and_left_unanswered_is_an_error_and_not_sent_again() {
        // Taken (say, appended), then the server goes away unanswering.
        assert_not_sent_again(b"").await;
    }

    #[tokio::test]
    async fn an_answer_cut_short_is_an_error_and_the_request_is_not_sent_again() {
        assert_not_sent_again(b"HTTP/1.1 202 Accepted\r\ncontent-length: 10\r\n\r\n{\"i").await;
    }
}
