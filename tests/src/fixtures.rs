//! Builders for test data.

use std::time::Duration;

use chat_core::auth::issue_visitor_token;
use chat_core::clock::Timestamp;
use chat_core::domain::*;
use chat_core::domain::{IpPolicy, RetentionPolicy};
use chat_core::policy;
use chat_core::storage::NewMessage;

/// 2026-11-23T00:00:00Z, a fixed start for tests.
pub const T0: Timestamp = Timestamp::from_secs(1_795_392_000);

/// `T0` plus `mins` minutes.
pub fn at_min(mins: u64) -> Timestamp {
    T0.plus(Duration::from_secs(mins * 60))
}

/// A site with default retention (365 days, truncated IPs kept 30 days).
pub fn site(id: &str) -> Site {
    Site {
        id: SiteId::parse(id).expect("valid site id"),
        name: format!("Site {id}"),
        allowed_origins: vec![Origin::parse(&format!("https://{id}.example")).expect("valid origin")],
        retention: RetentionPolicy::default(),
        agent_ip_allowlist: None,
        created_at: T0,
        updated_at: T0,
    }
}

/// A fresh empty session of `site` created at `now`, with a truncated IP.
pub fn session(site: &Site, now: Timestamp) -> Session {
    session_of(site, &VisitorId::generate(), now)
}

/// A fresh empty session of a given visitor.
pub fn session_of(site: &Site, visitor: &VisitorId, now: Timestamp) -> Session {
    let id = SessionId::generate();
    let token = issue_visitor_token(&id);
    let ip = IpPolicy::Truncated
        .apply("203.0.113.77".parse().expect("ip"))
        .map(|address| StoredIp {
            address,
            recorded_at: now,
        });
    let mut s = Session::start(id, site, visitor.clone(), token.hash, now);
    s.ip = ip;
    s.user_agent = Some("Mozilla/5.0 (test)".into());
    s
}

/// A visitor's message.
pub fn visitor_msg(session: &Session, client_id: &str, text: &str) -> NewMessage {
    NewMessage {
        site_id: session.site_id.clone(),
        session_id: session.id.clone(),
        author: Author {
            role: AuthorRole::Visitor,
            id: session.visitor_id.to_string(),
        },
        text: MessageText::parse(text, 4096).expect("valid text"),
        client_msg_id: ClientMsgId::parse(client_id).expect("valid client id"),
    }
}

/// An agent's message.
pub fn agent_msg(session: &Session, agent: &str, client_id: &str, text: &str) -> NewMessage {
    NewMessage {
        site_id: session.site_id.clone(),
        session_id: session.id.clone(),
        author: Author {
            role: AuthorRole::Agent,
            id: agent.to_owned(),
        },
        text: MessageText::parse(text, 4096).expect("valid text"),
        client_msg_id: ClientMsgId::parse(client_id).expect("valid client id"),
    }
}

/// A visitor's connection to `session` opened at `now`.
pub fn visitor_conn(id: &str, session: &Session, now: Timestamp) -> Connection {
    Connection {
        id: ConnectionId::parse(id).expect("valid connection id"),
        site_id: session.site_id.clone(),
        principal: Principal::Visitor {
            session_id: session.id.clone(),
            visitor_id: session.visitor_id.clone(),
        },
        connected_at: now,
        expires_at: policy::connection_expiry(now),
    }
}

/// An agent's connection to `site` opened at `now`.
pub fn agent_conn(id: &str, site: &Site, agent: &str, now: Timestamp) -> Connection {
    Connection {
        id: ConnectionId::parse(id).expect("valid connection id"),
        site_id: site.id.clone(),
        principal: Principal::Agent {
            agent_id: AgentId::parse(agent).expect("valid agent id"),
            role: AgentRole::Agent,
            token_exp: now.plus(std::time::Duration::from_secs(12 * 3600)).epoch_seconds(),
            token_iat: now.epoch_seconds(),
        },
        connected_at: now,
        expires_at: policy::connection_expiry(now),
    }
}
