//! Protocol 1.1 over real sockets, through the local gateway: `hello` and `ref`
//! end to end, and what the gateway does with frames the functions never see
//! (binary: close 1003, as API Gateway; text that is not UTF-8: close 1007).

use eurochat_tests::wire::{self, Socket, close_code, next_json};
use futures::SinkExt;
use local_gateway::{Options, Running, start};
use serde_json::json;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::protocol::frame::Frame;
use tokio_tungstenite::tungstenite::protocol::frame::coding::{Data, OpCode};

async fn gateway() -> Running {
    start(Options {
        listen: "127.0.0.1:0".parse().unwrap(),
        table: eurochat_tests::moto::unique_table("chat-gateway"),
        // The chat suite through the gateway delivers as deployed: the AWS SDK's
        // management client posting to the gateway's @connections endpoint.
        sdk_delivery: true,
        ..Options::default()
    })
    .await
    .expect("gateway starts")
}

async fn visitor(g: &Running) -> Socket {
    let r = wire::post(
        g.addr,
        None,
        "/v1/sessions",
        &g.base_url(),
        None,
        &json!({"siteId": g.site}),
    )
    .await;
    assert_eq!(r.status, 201, "{:?}", r.body);
    let token = r.body["token"].as_str().unwrap();
    wire::connect(g.addr, None, &g.ws_url(), &g.base_url(), token)
        .await
        .expect("visitor connects")
        .0
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hello_and_refs_over_the_gateway() {
    let g = gateway().await;
    let mut s = visitor(&g).await;
    s.send(Message::text(json!({"action": "hello", "ref": "h-1"}).to_string()))
        .await
        .unwrap();
    let h = next_json(&mut s).await;
    assert_eq!(
        (h["type"].as_str(), h["protocol"].as_str(), h["ref"].as_str()),
        (Some("hello"), Some("1.1"), Some("h-1"))
    );
    s.send(Message::text(
        json!({"action": "sendMessage", "ref": "s-1", "clientMsgId": "c-1", "text": "hi"}).to_string(),
    ))
    .await
    .unwrap();
    let ack = next_json(&mut s).await;
    assert_eq!(
        (ack["ref"].as_str(), ack["message"]["text"].as_str()),
        (Some("s-1"), Some("hi")),
        "{ack}"
    );
    s.send(Message::text(json!({"action": "nope", "ref": "x-1"}).to_string()))
        .await
        .unwrap();
    let e = next_json(&mut s).await;
    assert_eq!(
        (e["code"].as_str(), e["ref"].as_str()),
        (Some("unknown_action"), Some("x-1"))
    );
    g.stop().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn binary_frames_close_with_1003() {
    let g = gateway().await;
    let mut s = visitor(&g).await;
    let frame = json!({"action": "hello"}).to_string();
    s.send(Message::binary(frame.into_bytes())).await.unwrap();
    assert_eq!(close_code(&mut s).await, Some(1003));
    g.stop().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn text_that_is_not_utf8_closes_with_1007() {
    let g = gateway().await;
    let mut s = visitor(&g).await;
    let mut bytes = br#"{"action":"sendMessage","clientMsgId":"c-1","text":""#.to_vec();
    bytes.extend([0xff, 0xfe]);
    bytes.extend(br#""}"#);
    s.send(Message::Frame(Frame::message(bytes, OpCode::Data(Data::Text), true)))
        .await
        .unwrap();
    assert_eq!(close_code(&mut s).await, Some(1007));
    g.stop().await.unwrap();
}
