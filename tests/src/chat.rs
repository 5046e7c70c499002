//! The chat functions' handlers, driven the way API Gateway drives them: events
//! built from the JSON fixtures in `tests/events/`, an in-memory or DynamoDB
//! store, a recording gateway and a manual clock.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use aws_lambda_events::apigw::{ApiGatewayProxyResponse, ApiGatewayV2httpRequest, ApiGatewayWebsocketProxyRequest};
use aws_lambda_events::encodings::Body;
use chat_core::clock::{Clock, ManualClock, Timestamp};
use chat_core::config::{Config, vars};
use chat_core::domain::RetentionPolicy;
use chat_core::domain::*;
use chat_core::gateway::RecordingGateway;
use chat_core::storage::SiteStore;
use serde_json::{Value, json};

use crate::backends::Backend;
use crate::fixtures::{T0, site};

/// The site every chat test uses, and its widget's origin.
pub const SITE: &str = "acme";
/// The demo site's origin.
pub const ORIGIN: &str = "https://acme.example";
/// A second site, for cross-site checks.
pub const OTHER_SITE: &str = "globex";
/// Its origin.
pub const OTHER_ORIGIN: &str = "https://globex.example";
/// The WebSocket API's domain in the fixtures.
pub const DOMAIN: &str = "abc123.execute-api.eu-central-1.amazonaws.com";

fn fixture(name: &str) -> Value {
    let text = match name {
        "http" => include_str!("../events/http-post-sessions.json"),
        "connect" => include_str!("../events/ws-connect.json"),
        "message" => include_str!("../events/ws-message.json"),
        _ => include_str!("../events/ws-disconnect.json"),
    };
    serde_json::from_str(text).expect("fixture is JSON")
}

/// The configuration tests run with (EU region, test secrets, default limits).
pub fn test_config() -> Config {
    Config::from_lookup(|k| match k {
        vars::REGION => Some("eu-central-1".into()),
        vars::TABLE_NAME => Some("unused".into()),
        vars::AGENT_TOKEN_SECRET => Some("agent-token-secret-for-tests-only!".into()),
        vars::PSEUDONYM_KEY => Some("pseudonym-key-for-tests-only-xxxx".into()),
        _ => None,
    })
    .expect("test configuration")
}

/// A visitor as the widget knows it after `POST /v1/sessions`.
#[derive(Debug, Clone)]
pub struct Visitor {
    /// The token.
    pub token: String,
    /// The session.
    pub session_id: String,
    /// The visitor.
    pub visitor_id: String,
}

/// A response to `POST /v1/sessions`, decoded.
#[derive(Debug)]
pub struct HttpReply {
    /// Status.
    pub status: u16,
    /// Body JSON.
    pub body: Value,
    /// `Set-Cookie` values.
    pub cookies: Vec<String>,
    /// `Retry-After`, if any.
    pub retry_after: Option<String>,
    /// `Access-Control-Allow-Origin`, if any.
    pub allow_origin: Option<String>,
}

/// The world of a chat test.
pub struct Chat<B: Backend> {
    /// The store.
    pub backend: B,
    /// Everything sent to WebSocket clients.
    pub gateway: Arc<RecordingGateway>,
    /// Time.
    pub clock: ManualClock,
    /// Configuration; replaced whole by [`Chat::set_policy_limit`], so a flow can
    /// change the deployment's settings between requests.
    config: std::sync::RwLock<Arc<Config>>,
    /// Each admitted connection's `$connect` authorizer context, which API
    /// Gateway passes with every later event of the connection.
    verdicts: std::sync::Mutex<std::collections::HashMap<String, Value>>,
}

impl<B: Backend> Chat<B> {
    /// A world at `T0` with sites `acme` (agents alice: admin, bob: agent) and `globex` (agent eve).
    pub async fn new(backend: B) -> Self {
        let chat = Self {
            backend,
            gateway: Arc::new(RecordingGateway::new()),
            clock: ManualClock::at(T0),
            config: std::sync::RwLock::new(Arc::new(test_config())),
            verdicts: std::sync::Mutex::default(),
        };
        for (site_id, agents) in [
            (SITE, vec![("alice", AgentRole::Admin), ("bob", AgentRole::Agent)]),
            (OTHER_SITE, vec![("eve", AgentRole::Admin)]),
        ] {
            let s = site(site_id);
            chat.backend.store().put_site(&s).await.expect("put site");
            for (id, role) in agents {
                let agent = Agent {
                    site_id: s.id.clone(),
                    id: AgentId::parse(id).unwrap(),
                    display_name: id.to_owned(),
                    role,
                    active: true,
                    created_at: T0,
                    tokens_valid_after: None,
                };
                chat.backend.store().put_agent(&agent).await.expect("put agent");
            }
        }
        chat
    }

    /// The `acme` site as stored.
    pub async fn site(&self) -> Site {
        self.backend
            .store()
            .get_site(&SiteId::parse(SITE).unwrap())
            .await
            .expect("read site")
            .expect("acme exists")
    }

    /// Changes the `acme` site's settings (as `eurochat-admin put-site` would).
    pub async fn update_site(&self, change: impl FnOnce(&mut Site)) {
        let mut site = self.site().await;
        change(&mut site);
        self.backend.store().put_site(&site).await.expect("put site");
    }

    /// A session as stored (live or not yet swept), by id string.
    pub async fn stored_session(&self, id: &str) -> Option<chat_core::domain::Session> {
        use chat_core::storage::SubjectStore;
        self.backend
            .store()
            .session_any(&SessionId::parse(id).expect("session id"))
            .await
            .expect("read session")
    }

    /// Moves time forward.
    pub fn advance(&self, d: Duration) {
        self.clock.advance(d);
    }

    /// The configuration the next request runs with.
    pub fn config(&self) -> Arc<Config> {
        Arc::clone(&self.config.read().unwrap_or_else(|e| e.into_inner()))
    }

    /// Redeploys with another retention and IP limit (`EUROCHAT_MAX_*`).
    pub fn set_policy_limit(&self, limit: RetentionPolicy) {
        self.update_config(|c| c.policy_limit = limit);
    }

    /// Changes the configuration for the following requests, as a redeploy would.
    pub fn update_config(&self, change: impl FnOnce(&mut Config)) {
        let mut config = (*self.config()).clone();
        change(&mut config);
        *self.config.write().unwrap_or_else(|e| e.into_inner()) = Arc::new(config);
    }

    /// Now.
    pub fn now(&self) -> Timestamp {
        self.clock.now()
    }

    /// A 12-hour agent token.
    pub fn agent_token(&self, site: &str, agent: &str, role: AgentRole) -> String {
        self.config().agent_keys.mint(
            &SiteId::parse(site).unwrap(),
            &AgentId::parse(agent).unwrap(),
            role,
            self.now(),
            Duration::from_secs(12 * 3600),
        )
    }

    /// `POST /v1/sessions` with a JSON body and extra headers (`origin` defaults to acme's).
    pub async fn post_session(&self, body: &Value, headers: &[(&str, &str)], cookies: &[&str]) -> HttpReply {
        let mut e = fixture("http");
        e["body"] = Value::String(body.to_string());
        for (k, v) in headers {
            e["headers"][k.to_lowercase()] = Value::String((*v).to_owned());
        }
        if !cookies.is_empty() {
            e["cookies"] = json!(cookies);
        }
        self.post_session_event(e).await
    }

    /// `POST /v1/sessions` from acme's origin and source address `ip`.
    pub async fn post_session_from(&self, body: &Value, ip: &str) -> HttpReply {
        let mut e = fixture("http");
        e["body"] = Value::String(body.to_string());
        e["headers"]["origin"] = json!(ORIGIN);
        e["requestContext"]["http"]["sourceIp"] = json!(ip);
        self.post_session_event(e).await
    }

    /// An HTTP API event with a JSON body and a bearer token, sent without `Origin`
    /// (as curl or a server would) unless `origin` names one.
    fn http_event(bearer: Option<&str>, body: &Value, origin: Option<&str>) -> ApiGatewayV2httpRequest {
        let mut e = fixture("http");
        e["body"] = Value::String(body.to_string());
        if let Some(b) = bearer {
            e["headers"]["authorization"] = json!(format!("Bearer {b}"));
        }
        match origin {
            Some(o) => e["headers"]["origin"] = json!(o),
            None => {
                e["headers"].as_object_mut().map(|h| h.remove("origin"));
            }
        }
        serde_json::from_value(e).expect("HTTP API event")
    }

    fn reply(r: aws_lambda_events::apigw::ApiGatewayV2httpResponse) -> HttpReply {
        let body = match r.body {
            Some(Body::Text(t)) => serde_json::from_str(&t).expect("JSON body"),
            _ => Value::Null,
        };
        HttpReply {
            status: u16::try_from(r.status_code).unwrap_or(0),
            body,
            cookies: r.cookies,
            allow_origin: r
                .headers
                .get("access-control-allow-origin")
                .and_then(|v| v.to_str().ok())
                .map(str::to_owned),
            retry_after: r
                .headers
                .get("retry-after")
                .and_then(|v| v.to_str().ok())
                .map(str::to_owned),
        }
    }

    /// `POST /v1/gdpr/export` with pages of at most `page_bytes`, without `Origin`.
    pub async fn export(&self, bearer: Option<&str>, body: &Value, page_bytes: usize) -> HttpReply {
        self.export_from(None, bearer, body, page_bytes).await
    }

    /// `POST /v1/gdpr/export` from a browser page of `origin` (or none).
    pub async fn export_from(
        &self,
        origin: Option<&str>,
        bearer: Option<&str>,
        body: &Value,
        page_bytes: usize,
    ) -> HttpReply {
        let deps = gdpr_export::Deps {
            store: self.backend.store(),
            clock: &self.clock,
            config: &self.config(),
            page_bytes,
        };
        Self::reply(gdpr_export::handle(Self::http_event(bearer, body, origin), &deps).await)
    }

    /// `POST /v1/gdpr/export` with any event (generated input), pages of 4 MB.
    pub async fn export_event(&self, event: ApiGatewayV2httpRequest) -> HttpReply {
        let deps = gdpr_export::Deps {
            store: self.backend.store(),
            clock: &self.clock,
            config: &self.config(),
            page_bytes: chat_core::gdpr::EXPORT_PAGE_BYTES,
        };
        Self::reply(gdpr_export::handle(event, &deps).await)
    }

    /// `POST /v1/gdpr/erase` with any event (generated input).
    pub async fn erase_event(&self, event: ApiGatewayV2httpRequest) -> HttpReply {
        let deps = gdpr_delete::Deps {
            store: self.backend.store(),
            gateway: self.gateway.as_ref(),
            clock: &self.clock,
            config: &self.config(),
        };
        Self::reply(gdpr_delete::handle(event, &deps).await)
    }

    /// `POST /v1/gdpr/erase`, without `Origin`.
    pub async fn erase(&self, bearer: Option<&str>, body: &Value) -> HttpReply {
        self.erase_from(None, bearer, body).await
    }

    /// `POST /v1/gdpr/erase` from a browser page of `origin` (or none).
    pub async fn erase_from(&self, origin: Option<&str>, bearer: Option<&str>, body: &Value) -> HttpReply {
        let deps = gdpr_delete::Deps {
            store: self.backend.store(),
            gateway: self.gateway.as_ref(),
            clock: &self.clock,
            config: &self.config(),
        };
        Self::reply(gdpr_delete::handle(Self::http_event(bearer, body, origin), &deps).await)
    }

    /// One run of the retention job with this event.
    pub async fn retention(&self, event: Value) -> retention::Summary {
        retention::handle(
            event,
            &retention::Deps {
                store: self.backend.store(),
                clock: &self.clock,
                limit: &self.config().policy_limit,
            },
        )
        .await
        .expect("retention run")
    }

    /// `POST /v1/sessions` with a raw event.
    pub async fn post_session_event(&self, e: Value) -> HttpReply {
        let event: ApiGatewayV2httpRequest = serde_json::from_value(e).expect("HTTP API event");
        let deps = create_session::Deps {
            store: self.backend.store(),
            clock: &self.clock,
            config: &self.config(),
        };
        Self::reply(create_session::handle(event, &deps).await)
    }

    /// A new visitor of `site` (from its origin).
    pub async fn visitor_of(&self, site: &str, origin: &str) -> Visitor {
        let r = self
            .post_session(&json!({ "siteId": site }), &[("origin", origin)], &[])
            .await;
        assert_eq!(r.status, 201, "{:?}", r.body);
        Visitor {
            token: r.body["token"].as_str().unwrap().to_owned(),
            session_id: r.body["sessionId"].as_str().unwrap().to_owned(),
            visitor_id: r.body["visitorId"].as_str().unwrap().to_owned(),
        }
    }

    /// A new visitor of `acme`.
    pub async fn visitor(&self) -> Visitor {
        self.visitor_of(SITE, ORIGIN).await
    }

    /// `$connect` with the given connection id, query, headers and source IP.
    pub async fn connect_event(
        &self,
        conn: &str,
        query: &[(&str, &str)],
        headers: &[(&str, &str)],
        ip: &str,
    ) -> ApiGatewayProxyResponse {
        let mut e = fixture("connect");
        e["requestContext"]["connectionId"] = json!(conn);
        e["requestContext"]["identity"]["sourceIp"] = json!(ip);
        for (k, v) in query {
            e["queryStringParameters"][*k] = json!(v);
        }
        for (k, v) in headers {
            e["headers"][*k] = json!(v);
        }
        let deps = connect::Deps {
            store: self.backend.store(),
            clock: &self.clock,
            config: &self.config(),
        };
        // As deployed: API Gateway calls the authorizer, then `$connect` with its context.
        let mut call = e.clone();
        call["type"] = json!("REQUEST");
        call["methodArn"] = json!("arn:aws:execute-api:eu-central-1:123456789012:abc123/prod/$connect");
        let authorizer = connect::authorize(serde_json::from_value(call).expect("authorizer event"), &deps).await;
        assert!(
            authorizer
                .policy_document
                .statement
                .iter()
                .all(|s| s.resource == ["arn:aws:execute-api:eu-central-1:123456789012:abc123/prod/$connect"]),
            "the policy allows the $connect route only"
        );
        let mut context = Value::Object(authorizer.context);
        context["principalId"] = json!(authorizer.principal_id);
        e["requestContext"]["authorizer"] = context.clone();
        let event: ApiGatewayWebsocketProxyRequest = serde_json::from_value(e).expect("WebSocket event");
        let answer = connect::handle(event, &deps).await;
        let mut verdicts = self.verdicts.lock().unwrap();
        match answer.status_code {
            200 => verdicts.insert(conn.to_owned(), context),
            _ => verdicts.remove(conn),
        };
        answer
    }

    /// Adds the connection's authorizer context to a route event, as API Gateway
    /// does for every event after an admitted `$connect`, until the connection is
    /// closed (by a function, or `$disconnect`). Frames "sent" on a closed
    /// connection, which API Gateway would never deliver, get no context: the
    /// function then finds no connection record either.
    pub fn with_verdict(&self, e: &mut Value) {
        let conn = e["requestContext"]["connectionId"]
            .as_str()
            .unwrap_or_default()
            .to_owned();
        let closed = ConnectionId::parse(&conn).is_ok_and(|id| self.gateway.closed().contains(&id));
        if closed {
            self.verdicts.lock().unwrap().remove(&conn);
        }
        if let Some(context) = self.verdicts.lock().unwrap().get(&conn) {
            e["requestContext"]["authorizer"] = context.clone();
        }
    }

    /// `$connect` with a token offered as the subprotocol from acme's origin; returns the status.
    pub async fn connect(&self, conn: &str, token: &str) -> u16 {
        self.connect_from(conn, token, ORIGIN).await
    }

    /// `$connect` with a token offered as the subprotocol from `origin`; returns the status.
    pub async fn connect_from(&self, conn: &str, token: &str, origin: &str) -> u16 {
        let offered = subprotocols(token);
        let r = self
            .connect_event(
                conn,
                &[],
                &[("Origin", origin), ("Sec-WebSocket-Protocol", &offered)],
                "203.0.113.77",
            )
            .await;
        u16::try_from(r.status_code).unwrap_or(0)
    }

    /// A frame from connection `conn` (raw body).
    pub async fn send_raw(&self, conn: &str, body: &str, base64: bool) -> u16 {
        let mut e = fixture("message");
        e["requestContext"]["connectionId"] = json!(conn);
        e["body"] = json!(body);
        e["isBase64Encoded"] = json!(base64);
        self.message_event(e).await
    }

    /// A message route event.
    pub async fn message_event(&self, mut e: Value) -> u16 {
        self.with_verdict(&mut e);
        let event: ApiGatewayWebsocketProxyRequest = serde_json::from_value(e).expect("WebSocket event");
        let deps = message::Deps {
            store: self.backend.store(),
            gateways: &self.gateway,
            clock: &self.clock,
            config: &self.config(),
        };
        u16::try_from(message::handle(event, &deps).await.status_code).unwrap_or(0)
    }

    /// A JSON frame from connection `conn`.
    pub async fn send(&self, conn: &str, frame: Value) -> u16 {
        self.send_raw(conn, &frame.to_string(), false).await
    }

    /// `$disconnect` of `conn`.
    pub async fn disconnect(&self, conn: &str) -> u16 {
        let mut e = fixture("disconnect");
        e["requestContext"]["connectionId"] = json!(conn);
        self.with_verdict(&mut e);
        // API Gateway forgets the connection: nothing more arrives on it.
        self.verdicts.lock().unwrap().remove(conn);
        let event: ApiGatewayWebsocketProxyRequest = serde_json::from_value(e).expect("WebSocket event");
        u16::try_from(
            disconnect::handle(
                event,
                &disconnect::Deps {
                    store: self.backend.store(),
                },
            )
            .await
            .status_code,
        )
        .unwrap_or(0)
    }

    /// Frames delivered to `conn`, oldest first.
    pub fn frames(&self, conn: &str) -> Vec<Value> {
        self.gateway.frames_to(&ConnectionId::parse(conn).unwrap())
    }

    /// Frames of one `type` delivered to `conn`.
    pub fn frames_of(&self, conn: &str, kind: &str) -> Vec<Value> {
        self.frames(conn).into_iter().filter(|f| f["type"] == kind).collect()
    }

    /// The last frame delivered to `conn`.
    pub fn last(&self, conn: &str) -> Value {
        self.frames(conn).pop().unwrap_or(Value::Null)
    }

    /// The `acme` site's audit trail (its first page, newest first), as the store serves it.
    pub async fn audit_trail(&self) -> chat_core::storage::Page<AuditRecord> {
        use chat_core::storage::AuditStore;
        self.backend
            .store()
            .list_audit(&SiteId::parse(SITE).unwrap(), None, 10, self.now())
            .await
            .expect("list the audit trail")
    }

    /// Stored items by kind, without the per-IP attempt counters.
    pub async fn stored(&self) -> BTreeMap<String, usize> {
        let mut c = self.backend.counts().await;
        c.remove("rate");
        c
    }
}

/// The `Sec-WebSocket-Protocol` value a client offers with `token`: the only
/// place `$connect` takes a token from.
pub fn subprotocols(token: &str) -> String {
    format!("eurochat.v1, {token}")
}
