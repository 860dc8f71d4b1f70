//! A chat client over a real WebSocket, for the chat tests and the chat bench.
#![allow(clippy::unwrap_used, clippy::missing_panics_doc)]

use std::time::Duration;

use futures::{SinkExt, StreamExt};
use serde_json::{Value, json};
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;

pub type Socket = tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>>;

/// `POST /v1/chats` → `(session_id, token)`.
pub async fn start(http: &reqwest::Client, port: u16, body: Value) -> (String, String) {
    let r = http.post(format!("http://127.0.0.1:{port}/v1/chats")).json(&body).send().await.unwrap();
    assert_eq!(r.status(), 201);
    let v: Value = r.json().await.unwrap();
    (v["session_id"].as_str().unwrap().to_owned(), v["token"].as_str().unwrap().to_owned())
}

/// Opens a session's socket with `token` (customer or desk) in `Authorization: Bearer`; `Err`
/// is the HTTP refusal status.
pub async fn connect(port: u16, session: &str, token: &str, origin: Option<&str>) -> Result<Socket, u16> {
    let mut request = format!("ws://127.0.0.1:{port}/v1/chats/{session}/ws").into_client_request().unwrap();
    request.headers_mut().insert("authorization", format!("Bearer {token}").parse().unwrap());
    if let Some(origin) = origin {
        request.headers_mut().insert("origin", origin.parse().unwrap());
    }
    match tokio_tungstenite::connect_async(request).await {
        Ok((socket, _)) => Ok(socket),
        Err(tokio_tungstenite::tungstenite::Error::Http(response)) => Err(response.status().as_u16()),
        Err(e) => panic!("connecting: {e}"),
    }
}

/// Opens a session's socket with no token in the URL and sends `token` as the first frame, as
/// the widget does.
pub async fn connect_by_frame(port: u16, session: &str, token: &str) -> Socket {
    let request = format!("ws://127.0.0.1:{port}/v1/chats/{session}/ws").into_client_request().unwrap();
    let (mut socket, _) = tokio_tungstenite::connect_async(request).await.unwrap();
    send(&mut socket, json!({"type": "auth", "token": token})).await;
    socket
}

/// The close code a socket ends with (after any frames before it).
pub async fn close_code(socket: &mut Socket) -> Option<u16> {
    loop {
        match tokio::time::timeout(Duration::from_secs(30), socket.next()).await.expect("a frame within 30 s") {
            Some(Ok(Message::Close(frame))) => return frame.map(|f| u16::from(f.code)),
            Some(Ok(_)) => continue,
            Some(Err(_)) | None => return None,
        }
    }
}

pub async fn send(socket: &mut Socket, frame: Value) {
    socket.send(Message::Text(frame.to_string().into())).await.unwrap();
}

pub async fn say(socket: &mut Socket, id: &str, text: &str) {
    send(socket, json!({"type": "message", "text": text, "client_message_id": id})).await;
}

/// The next JSON frame (fails after 30 s).
pub async fn next(socket: &mut Socket) -> Value {
    loop {
        let message = tokio::time::timeout(Duration::from_secs(30), socket.next()).await.expect("a frame within 30 s").unwrap().unwrap();
        if let Message::Text(text) = message {
            return serde_json::from_str(&text).unwrap();
        }
    }
}

/// Frames until one satisfies `until` (fails after 30 s); returns them all.
pub async fn read_until(socket: &mut Socket, until: impl Fn(&Value) -> bool) -> Vec<Value> {
    let mut seen = Vec::new();
    loop {
        let message = tokio::time::timeout(Duration::from_secs(30), socket.next()).await.unwrap_or_else(|_| panic!("waited 30 s; saw {seen:?}")).unwrap().unwrap();
        if let Message::Text(text) = message {
            let v: Value = serde_json::from_str(&text).unwrap();
            let done = until(&v);
            seen.push(v);
            if done {
                return seen;
            }
        }
    }
}

/// The next frame if one arrives within 700 ms.
pub async fn quiet(socket: &mut Socket) -> Option<Value> {
    match tokio::time::timeout(Duration::from_millis(700), socket.next()).await {
        Err(_) => None,
        Ok(Some(Ok(Message::Text(text)))) => Some(serde_json::from_str(&text).unwrap()),
        Ok(other) => Some(json!(format!("{other:?}"))),
    }
}

pub fn text_of(frame: &Value) -> Option<&str> {
    frame["event"]["payload"]["MessagePosted"]["text"].as_str()
}

pub fn joined(frame: &Value) -> Option<&str> {
    frame["event"]["payload"]["ParticipantJoined"]["participant_id"].as_str()
}
