//! Faults between the functions and DynamoDB: an HTTP/1.1 proxy in front of
//! moto that answers chosen requests itself, the way DynamoDB fails
//! (throttling, a 5xx, `UnprocessedItems`, a request that never comes back),
//! so the fault suite (`tests/tests/faults.rs`) can prove what a client sees
//! and what the table holds afterwards.

use std::sync::{Arc, Mutex, PoisonError};

use serde_json::{Value, json};
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::TcpStream;

/// How a matching request fails.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Fault {
    /// `400 ProvisionedThroughputExceededException` (the SDK retries it).
    Throttle,
    /// `500 InternalServerError` (the SDK retries it).
    ServerError,
    /// A `BatchWriteItem` answered with all its items unprocessed.
    Unprocessed,
    /// `400 ValidationException`, which nothing retries: the function stops
    /// there, as if it had been killed between two writes.
    Fatal,
}

/// One rule: requests of operation `op` fail with `fault`, after `skip`
/// matching requests went through, `times` times (`u32::MAX`: until cleared).
#[derive(Debug, Clone)]
pub struct Rule {
    /// The DynamoDB operation (`TransactWriteItems`, …).
    pub op: &'static str,
    /// How it fails.
    pub fault: Fault,
    /// Matching requests let through first.
    pub skip: u32,
    /// How many fail.
    pub times: u32,
}

/// The proxy's rules and what it did.
#[derive(Debug, Clone, Default)]
pub struct Faults(Arc<Mutex<State>>);

#[derive(Debug, Default)]
struct State {
    rules: Vec<Rule>,
    injected: u32,
}

impl Faults {
    /// Replaces the rules.
    pub fn set(&self, rules: Vec<Rule>) {
        let mut s = self.0.lock().unwrap_or_else(PoisonError::into_inner);
        s.rules = rules;
    }

    /// Removes every rule.
    pub fn clear(&self) {
        self.set(Vec::new());
    }

    /// Faults injected so far.
    pub fn injected(&self) -> u32 {
        self.0.lock().unwrap_or_else(PoisonError::into_inner).injected
    }

    /// The fault for a request of `op`, if a rule says so.
    fn decide(&self, op: &str) -> Option<Fault> {
        let mut s = self.0.lock().unwrap_or_else(PoisonError::into_inner);
        let rule = s.rules.iter_mut().find(|r| r.op == op && r.times > 0)?;
        if rule.skip > 0 {
            rule.skip -= 1;
            return None;
        }
        rule.times = rule.times.saturating_sub(1);
        let fault = rule.fault;
        s.injected += 1;
        Some(fault)
    }
}

/// Starts the proxy in front of `upstream` (`http://host:port`); returns its URL.
/// Every request waits `delay` first (a modelled network latency, see
/// [`crate::capacity::delayed_endpoint`]). Each forwarded request gets its own
/// upstream connection, opened when the request is complete: moto closes a
/// connection after each answer, and the test's moto serves one connection at
/// a time, so an idle upstream connection would hold up every other client.
pub async fn proxy(upstream: &str, faults: Faults, delay: std::time::Duration) -> String {
    let target = upstream.trim_start_matches("http://").to_owned();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind the fault proxy");
    let addr = listener.local_addr().expect("proxy address");
    tokio::spawn(async move {
        while let Ok((client, _)) = listener.accept().await {
            let (target, faults) = (target.clone(), faults.clone());
            tokio::spawn(async move {
                let _ = serve(client, &target, &faults, delay).await;
            });
        }
    });
    format!("http://{addr}")
}

/// One HTTP/1.1 message: head lines and body.
struct HttpMessage {
    head: Vec<String>,
    body: Vec<u8>,
}

impl HttpMessage {
    fn header(&self, name: &str) -> Option<&str> {
        self.head.iter().skip(1).find_map(|l| {
            let (k, v) = l.split_once(':')?;
            k.trim().eq_ignore_ascii_case(name).then(|| v.trim())
        })
    }

    fn bytes(&self) -> Vec<u8> {
        let mut out = self.head.join("\r\n").into_bytes();
        out.extend_from_slice(b"\r\n\r\n");
        out.extend_from_slice(&self.body);
        out
    }
}

async fn read_message<R: tokio::io::AsyncRead + Unpin>(r: &mut BufReader<R>) -> std::io::Result<Option<HttpMessage>> {
    let mut head = Vec::new();
    loop {
        let mut line = String::new();
        if r.read_line(&mut line).await? == 0 {
            return Ok(None);
        }
        let line = line.trim_end_matches(['\r', '\n']).to_owned();
        if line.is_empty() {
            break;
        }
        head.push(line);
    }
    let mut m = HttpMessage { head, body: Vec::new() };
    let len: usize = m.header("content-length").and_then(|v| v.parse().ok()).unwrap_or(0);
    m.body = vec![0; len];
    r.read_exact(&mut m.body).await?;
    Ok(Some(m))
}

async fn serve(client: TcpStream, target: &str, faults: &Faults, delay: std::time::Duration) -> std::io::Result<()> {
    let (cr, mut cw) = client.into_split();
    let mut cr = BufReader::new(cr);
    while let Some(req) = read_message(&mut cr).await? {
        if !delay.is_zero() {
            tokio::time::sleep(delay).await;
        }
        let op = req
            .header("x-amz-target")
            .and_then(|t| t.rsplit('.').next())
            .unwrap_or_default()
            .to_owned();
        let answer = match faults.decide(&op) {
            Some(fault) => canned(fault, &req.body),
            None => {
                let upstream = TcpStream::connect(target).await?;
                let (ur, mut uw) = upstream.into_split();
                let mut ur = BufReader::new(ur);
                uw.write_all(&req.bytes()).await?;
                match read_message(&mut ur).await? {
                    Some(resp) => resp.bytes(),
                    None => return Ok(()),
                }
            }
        };
        cw.write_all(&answer).await?;
    }
    Ok(())
}

fn canned(fault: Fault, request: &[u8]) -> Vec<u8> {
    let (status, body) = match fault {
        Fault::Throttle => (
            "400 Bad Request",
            json!({"__type": "com.amazonaws.dynamodb.v20120810#ProvisionedThroughputExceededException",
                   "message": "injected: throughput exceeded"}),
        ),
        Fault::ServerError => (
            "500 Internal Server Error",
            json!({"__type": "com.amazonaws.dynamodb.v20120810#InternalServerError", "message": "injected"}),
        ),
        Fault::Fatal => (
            "400 Bad Request",
            json!({"__type": "com.amazon.coral.validate#ValidationException", "message": "injected: stopped here"}),
        ),
        Fault::Unprocessed => {
            let asked: Value = serde_json::from_slice(request).unwrap_or(Value::Null);
            ("200 OK", json!({"UnprocessedItems": asked["RequestItems"]}))
        }
    };
    let body = body.to_string();
    format!(
        "HTTP/1.1 {status}\r\ncontent-type: application/x-amz-json-1.0\r\nx-amzn-requestid: injected\r\ncontent-length: {}\r\n\r\n{body}",
        body.len()
    )
    .into_bytes()
}
