//! GDPR: who may ask, whose data it is, and the export and erasure themselves.
//! Shared by the `gdpr-export` and `gdpr-delete` functions (and the retention job's
//! erasures), so every path applies the same rules.
//!
//! Who may ask: a site admin (agent token with the admin role, agent still
//! active and still admin, token not revoked, request from the site's agent IP
//! allow-list: [`crate::api::authn::authenticate_agent`]) for any visitor
//! of their own site, found by visitor id, session id or pre-chat email; and
//! the visitor themself with their own session token. Deleting one
//! conversation is open to any agent of the site.

mod export;

use std::collections::{BTreeMap, BTreeSet};

pub use export::{
    EXPORT_PAGE_BYTES, EXPORT_SCHEMA, ExportPage, FoundBy, UNVERIFIED_EMAIL_NOTE, export_page, parse_cursor,
};

use crate::api::authn::{VisitorDoor, authenticate_agent, authenticate_visitor};
use crate::api::json::{self, Object};
use crate::auth::AuthError;
use crate::clock::Timestamp;
use crate::config::Config;
use crate::domain::*;
use crate::error::{ApiError, ErrorCode};
use crate::gateway::ConnectionGateway;
use crate::policy::AUDIT_RETENTION;
use crate::storage::{ConnectionStore, ConversationStore, ErasedCounts, SiteStore, StoreError, SubjectStore};

/// Who is asking.
#[derive(Debug, Clone)]
pub enum Requester {
    /// An agent of `site`.
    Agent {
        /// Their site.
        site: SiteId,
        /// The agent.
        agent: AgentId,
        /// Their current role.
        role: AgentRole,
    },
    /// The data subject, holding a live session of `site`.
    Subject {
        /// The session's site.
        site: SiteId,
        /// The session the token opened.
        session: Box<Session>,
    },
}

impl Requester {
    /// The site the requester belongs to.
    pub fn site(&self) -> &SiteId {
        match self {
            Self::Agent { site, .. } | Self::Subject { site, .. } => site,
        }
    }

    /// The audit trail's actor.
    pub fn actor(&self) -> Actor {
        match self {
            Self::Agent { agent, .. } => Actor::Agent {
                agent_id: agent.clone(),
            },
            Self::Subject { .. } => Actor::Subject,
        }
    }
}

/// The door of both GDPR routes: the bearer token ([`authenticate`]) with the
/// request's source address, then the browser origin against the requester's
/// site ([`crate::api::cors::check_origin`]), both before anything is read for,
/// counted against or erased from the subject. Returns the requester and the
/// origin the answer may be shared with.
pub async fn authenticate_request(
    store: &(impl SiteStore + crate::storage::SessionStore + SubjectStore),
    config: &Config,
    req: &crate::api::http::HttpRequest<'_>,
    route: &'static str,
    now: Timestamp,
) -> Result<(Requester, Option<Origin>), ApiError> {
    let requester = authenticate(store, config, req.bearer(), req.source_ip(), route, now).await?;
    let origin = crate::api::cors::check_origin(store, req, requester.site()).await?;
    Ok((requester, origin))
}

/// Authenticates a bearer token: an agent token (checked as at `$connect`,
/// including the site's agent IP allow-list against `source_ip`, the address
/// from API Gateway's request context, never a header), or a visitor's session
/// token. `route` names the endpoint in security logs.
pub async fn authenticate(
    store: &(impl SiteStore + crate::storage::SessionStore + SubjectStore),
    config: &Config,
    bearer: Option<&str>,
    source_ip: Option<std::net::IpAddr>,
    route: &'static str,
    now: Timestamp,
) -> Result<Requester, ApiError> {
    let token = bearer.ok_or(AuthError::Invalid)?;
    if token.starts_with("at1.") {
        let ok = authenticate_agent(store, config, token, source_ip, route, now).await?;
        Ok(Requester::Agent {
            site: ok.site.id,
            agent: ok.agent.id,
            role: ok.role,
        })
    } else {
        // A session fenced by an interrupted erasure still opens GDPR requests, so
        // its visitor can retry "Delete my data" (and see what is left) themself;
        // every chat path treats it as gone. An expired session opens nothing.
        let session = authenticate_visitor(store, token, VisitorDoor::Gdpr, now).await?;
        Ok(Requester::Subject {
            site: session.site_id.clone(),
            session: Box::new(session),
        })
    }
}

/// How a request names its data subject.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SubjectRef {
    /// The requester themself (visitor self-service).
    Myself,
    /// A visitor id.
    Visitor(VisitorId),
    /// One of the visitor's sessions.
    Session(SessionId),
    /// The email of a pre-chat form.
    Email(Email),
}

/// Reads the subject from a request body: at most one of `visitorId`, `sessionId`, `email`.
pub fn subject_ref(body: &Object) -> Result<SubjectRef, ApiError> {
    let visitor = json::opt_str(body, "visitorId")?;
    let session = json::opt_str(body, "sessionId")?;
    let email = json::opt_str(body, "email")?;
    match (visitor, session, email) {
        (None, None, None) => Ok(SubjectRef::Myself),
        (Some(v), None, None) => Ok(SubjectRef::Visitor(VisitorId::parse(v)?)),
        (None, Some(s), None) => Ok(SubjectRef::Session(SessionId::parse(s)?)),
        (None, None, Some(e)) => Ok(SubjectRef::Email(Email::parse(e)?)),
        _ => Err(ValidationError::new("subject", "give one of visitorId, sessionId or email").into()),
    }
}

/// Checks that `requester` may act on `subject` in `site_hint` (the body's `siteId`, if
/// any). Visitors may only name themselves; agents must be admins of that site.
pub fn check_access(requester: &Requester, subject: &SubjectRef, site_hint: Option<&str>) -> Result<(), ApiError> {
    if let Some(site) = site_hint
        && site != requester.site().as_str()
    {
        return Err(ApiError::new(ErrorCode::Forbidden, "not allowed for this site"));
    }
    match (requester, subject) {
        (Requester::Subject { .. }, SubjectRef::Myself) => Ok(()),
        (Requester::Subject { .. }, _) => Err(ApiError::new(
            ErrorCode::Forbidden,
            "visitors may only ask for their own data",
        )),
        (
            Requester::Agent {
                role: AgentRole::Admin, ..
            },
            SubjectRef::Myself,
        ) => Err(ValidationError::new("subject", "give one of visitorId, sessionId or email").into()),
        (
            Requester::Agent {
                role: AgentRole::Admin, ..
            },
            _,
        ) => Ok(()),
        (Requester::Agent { .. }, _) => Err(ApiError::new(ErrorCode::Forbidden, "site admins only")),
    }
}

/// A data subject's sessions on one site (possibly none: an unknown subject and a
/// subject of another site look the same).
#[derive(Debug, Clone, Default)]
pub struct Subject {
    /// The visitor ids found.
    pub visitor_ids: BTreeSet<VisitorId>,
    /// Their sessions, oldest first.
    pub sessions: Vec<Session>,
}

/// Finds the subject's sessions on the requester's site.
pub async fn resolve(
    store: &impl SubjectStore,
    config: &Config,
    requester: &Requester,
    subject: &SubjectRef,
) -> Result<Subject, StoreError> {
    let site = requester.site();
    let mut visitors: BTreeSet<VisitorId> = BTreeSet::new();
    // Sessions already read consistently by id. The index behind
    // `sessions_of_visitor` is eventually consistent on DynamoDB, so a session
    // created a moment ago could be missing from it: these are added anyway.
    let mut known: Vec<Session> = Vec::new();
    match subject {
        SubjectRef::Myself => {
            if let Requester::Subject { session, .. } = requester {
                visitors.insert(session.visitor_id.clone());
                known.push((**session).clone());
            }
        }
        SubjectRef::Visitor(v) => {
            visitors.insert(v.clone());
        }
        SubjectRef::Session(id) => {
            if let Some(s) = store.session_any(id).await?.filter(|s| s.site_id == *site) {
                visitors.insert(s.visitor_id.clone());
                known.push(s);
            }
        }
        SubjectRef::Email(e) => {
            let lookup = config.pseudonymizer.email_lookup(site, e);
            for s in store.sessions_by_email(site, &lookup).await? {
                visitors.insert(s.visitor_id);
            }
        }
    }
    let mut sessions = known;
    for v in &visitors {
        sessions.extend(store.sessions_of_visitor(site, v).await?);
    }
    sessions.sort_by(|a, b| (a.created_at, &a.id).cmp(&(b.created_at, &b.id)));
    sessions.dedup_by(|a, b| a.id == b.id);
    let visitor_ids = if sessions.is_empty() { BTreeSet::new() } else { visitors };
    Ok(Subject { visitor_ids, sessions })
}

/// Erases sessions: first fences every one of them (from then on no writer can
/// add to them: messages, read markers, pre-chat forms, joins and reconnects
/// are refused as `not_found`), then closes their visitors' live connections,
/// then sweeps each partition until it is empty. Fails, never half-reports, if
/// any step fails; the sessions stay fenced and a rerun finishes the job,
/// counting only what it removed.
pub async fn erase_sessions(
    store: &(impl ConnectionStore + ConversationStore),
    gateway: &dyn ConnectionGateway,
    sessions: &[Session],
    now: Timestamp,
) -> Result<ErasedCounts, StoreError> {
    for s in sessions {
        store.fence_session(&s.id, now).await?;
    }
    let mut counts = ErasedCounts::default();
    for s in sessions {
        for c in store.conversation_connections(&s.id, now).await? {
            if matches!(c.principal, Principal::Visitor { .. })
                && let Err(e) = gateway.close(&c.id).await
            {
                tracing::warn!(error = %e, "could not close an erased visitor's connection");
            }
        }
        counts.merge(store.erase_session(&s.id, now).await?);
    }
    Ok(counts)
}

/// The conversation an agent names for deletion (WebSocket `deleteConversation`
/// and HTTP `scope: "conversation"` alike): a session of the agent's site that
/// is still held, live or expired-but-not-yet-removed or already fenced, so
/// both paths erase the same data. `None` if nothing of it is held on that site.
pub async fn held_conversation(
    store: &impl SubjectStore,
    site: &SiteId,
    id: &SessionId,
) -> Result<Option<Session>, StoreError> {
    Ok(store.session_any(id).await?.filter(|s| s.site_id == *site))
}

/// A time-ordered unique id for an audit record.
pub fn audit_id(now: Timestamp) -> String {
    let r: [u8; 8] = crate::random::random_bytes();
    format!("{}-{}", crate::storage::keys::ts(now), crate::random::hex(&r))
}

/// The audit record of a GDPR action on `subject` (no personal data: a keyed hash).
pub fn audit_record(
    config: &Config,
    requester: &Requester,
    action: AuditAction,
    subject: &Subject,
    counts: BTreeMap<String, u64>,
    now: Timestamp,
) -> AuditRecord {
    let site = requester.site().clone();
    let ids: Vec<&str> = subject.visitor_ids.iter().map(VisitorId::as_str).collect();
    AuditRecord {
        id: audit_id(now),
        subject_hash: (!ids.is_empty()).then(|| config.pseudonymizer.subject(&site, &ids.join(","))),
        site_id: site,
        action,
        actor: requester.actor(),
        counts,
        at: now,
        expires_at: now.plus(AUDIT_RETENTION),
    }
}
