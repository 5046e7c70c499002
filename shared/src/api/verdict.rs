//! The `$connect` authorizer's verdict, as API Gateway carries it.
//!
//! The WebSocket API's `$connect` route has a Lambda REQUEST authorizer (the
//! `connect` function). Whatever context an authorizer returns, API Gateway puts
//! into `requestContext.authorizer` of the `$connect` event and of **every later
//! route event of that connection**; clients cannot set or change it. So the
//! principal decided once at the handshake reaches every frame without a
//! DynamoDB read of the connection record (issue 14: a sent message costs three
//! sequential round trips, not four).
//!
//! An authorizer can only answer Allow, Deny (a bare 403) or fail (401/500), so
//! eurochat's refusals (400, 401, 403, 429 with a JSON body and `Retry-After`,
//! `docs/protocol.md`) would be lost. The verdict therefore always comes back as
//! Allow on the `$connect` route only, with either the principal or the refusal
//! in the context, and `$connect` answers it: a refused handshake never opens a
//! connection, so no later route ever sees a refusal.
//!
//! Context values are flat strings (API Gateway accepts only strings, numbers
//! and booleans, and may hand numbers back as strings). No personal data: ids
//! are random, `principalId` (which access logs may show) is only the kind.

use std::collections::HashMap;

use aws_lambda_events::apigw::{ApiGatewayCustomAuthorizerPolicy, ApiGatewayCustomAuthorizerResponse};
use aws_lambda_events::iam::{IamPolicyEffect, IamPolicyStatement};
use serde_json::{Map, Value};

use crate::domain::{AgentId, AgentRole, Principal, SessionId, SiteId, VisitorId};
use crate::error::ApiError;

/// What the authorizer decided about one handshake.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Verdict {
    /// Let in as `principal` of `site_id`.
    Admitted {
        /// The connection's site.
        site_id: SiteId,
        /// Who is behind the connection.
        principal: Principal,
    },
    /// Refused: `$connect` answers with this status, body and `Retry-After`.
    Refused {
        /// The HTTP status of the refused handshake.
        status: u16,
        /// The error body (`ErrorBody` JSON).
        body: String,
        /// Seconds, for `rate_limited` and `unavailable`.
        retry_after: Option<u64>,
    },
}

const KIND: &str = "verdict";

impl Verdict {
    /// A refusal answering `e`.
    pub fn refused(e: &ApiError) -> Self {
        Self::Refused {
            status: e.status(),
            body: e.body_json(),
            retry_after: e.retry_after,
        }
    }

    /// The authorizer's `principalId`: the kind only (access logs may show it).
    pub fn principal_id(&self) -> &'static str {
        match self {
            Self::Admitted {
                principal: Principal::Visitor { .. },
                ..
            } => "visitor",
            Self::Admitted {
                principal: Principal::Agent { .. },
                ..
            } => "agent",
            Self::Refused { .. } => "refused",
        }
    }

    /// The flat context API Gateway passes on.
    pub fn to_context(&self) -> Map<String, Value> {
        let mut m = Map::new();
        let mut put = |k: &str, v: String| {
            m.insert(k.to_owned(), Value::String(v));
        };
        put(KIND, self.principal_id().to_owned());
        match self {
            Self::Admitted { site_id, principal } => {
                put("siteId", site_id.to_string());
                match principal {
                    Principal::Visitor { session_id, visitor_id } => {
                        put("sessionId", session_id.to_string());
                        put("visitorId", visitor_id.to_string());
                    }
                    Principal::Agent {
                        agent_id,
                        role,
                        token_exp,
                        token_iat,
                    } => {
                        put("agentId", agent_id.to_string());
                        put("role", role_str(*role).to_owned());
                        put("tokenExp", token_exp.to_string());
                        put("tokenIat", token_iat.to_string());
                    }
                }
            }
            Self::Refused {
                status,
                body,
                retry_after,
            } => {
                put("status", status.to_string());
                put("body", body.clone());
                if let Some(s) = retry_after {
                    put("retryAfter", s.to_string());
                }
            }
        }
        m
    }

    /// Reads a verdict from a route event's `requestContext.authorizer`; `None`
    /// when there is none (no authorizer configured) or it is not one of ours.
    pub fn from_context(fields: &HashMap<String, Value>) -> Option<Self> {
        let text = |k: &str| match fields.get(k)? {
            Value::String(s) => Some(s.clone()),
            Value::Number(n) => Some(n.to_string()),
            _ => None,
        };
        let number = |k: &str| text(k)?.parse::<i64>().ok();
        match text(KIND)?.as_str() {
            "refused" => Some(Self::Refused {
                status: u16::try_from(number("status")?).ok()?,
                body: text("body")?,
                retry_after: number("retryAfter").and_then(|s| u64::try_from(s).ok()),
            }),
            kind => {
                let site_id = SiteId::parse(&text("siteId")?).ok()?;
                let principal = match kind {
                    "visitor" => Principal::Visitor {
                        session_id: SessionId::parse(&text("sessionId")?).ok()?,
                        visitor_id: VisitorId::parse(&text("visitorId")?).ok()?,
                    },
                    "agent" => Principal::Agent {
                        agent_id: AgentId::parse(&text("agentId")?).ok()?,
                        role: match text("role")?.as_str() {
                            "admin" => AgentRole::Admin,
                            "agent" => AgentRole::Agent,
                            _ => return None,
                        },
                        token_exp: number("tokenExp")?,
                        token_iat: number("tokenIat")?,
                    },
                    _ => return None,
                };
                Some(Self::Admitted { site_id, principal })
            }
        }
    }

    /// The authorizer's answer: Allow on `method_arn` (the `$connect` route),
    /// with this verdict as the context (see the module header for why a
    /// refusal is also an Allow).
    pub fn authorizer_response(&self, method_arn: &str) -> ApiGatewayCustomAuthorizerResponse<Map<String, Value>> {
        let mut statement = IamPolicyStatement::default();
        statement.action = vec!["execute-api:Invoke".to_owned()];
        statement.effect = IamPolicyEffect::Allow;
        statement.resource = vec![method_arn.to_owned()];
        let mut policy = ApiGatewayCustomAuthorizerPolicy::default();
        policy.version = Some("2012-10-17".to_owned());
        policy.statement = vec![statement];
        let mut r = ApiGatewayCustomAuthorizerResponse::default();
        r.principal_id = Some(self.principal_id().to_owned());
        r.policy_document = policy;
        r.context = self.to_context();
        r
    }
}

fn role_str(role: AgentRole) -> &'static str {
    match role {
        AgentRole::Admin => "admin",
        AgentRole::Agent => "agent",
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::error::ErrorCode;

    fn round_trip(v: &Verdict) -> Option<Verdict> {
        let fields: HashMap<String, Value> = v.to_context().into_iter().collect();
        Verdict::from_context(&fields)
    }

    #[test]
    fn every_verdict_survives_the_context_as_flat_strings() {
        let site = SiteId::parse("acme").unwrap();
        let visitor = Verdict::Admitted {
            site_id: site.clone(),
            principal: Principal::Visitor {
                session_id: SessionId::generate(),
                visitor_id: VisitorId::generate(),
            },
        };
        let agent = Verdict::Admitted {
            site_id: site,
            principal: Principal::Agent {
                agent_id: AgentId::parse("alice").unwrap(),
                role: AgentRole::Admin,
                token_exp: 1_900_000_000,
                token_iat: 1_800_000_000,
            },
        };
        let refused = Verdict::refused(&ApiError::rate_limited(std::time::Duration::from_secs(7)));
        for v in [visitor, agent, refused] {
            assert!(v.to_context().values().all(Value::is_string), "{v:?}");
            assert_eq!(round_trip(&v), Some(v));
        }
    }

    #[test]
    fn numbers_handed_back_as_numbers_still_read() {
        let mut fields: HashMap<String, Value> = Verdict::refused(&ApiError::new(ErrorCode::Unauthorized, "no"))
            .to_context()
            .into_iter()
            .collect();
        fields.insert("status".into(), Value::from(401));
        assert!(matches!(
            Verdict::from_context(&fields),
            Some(Verdict::Refused { status: 401, .. })
        ));
    }

    #[test]
    fn a_context_that_is_not_a_verdict_is_none() {
        let mut fields = HashMap::new();
        assert_eq!(Verdict::from_context(&fields), None);
        fields.insert("verdict".into(), Value::from("agent"));
        fields.insert("siteId".into(), Value::from("acme"));
        assert_eq!(Verdict::from_context(&fields), None, "an agent without its id");
        fields.insert("verdict".into(), Value::from("superuser"));
        assert_eq!(Verdict::from_context(&fields), None);
    }

    #[test]
    fn the_policy_allows_only_the_connect_route_and_names_no_one() {
        let arn = "arn:aws:execute-api:eu-central-1:123456789012:abc/prod/$connect";
        let r = Verdict::refused(&ApiError::new(ErrorCode::Unauthorized, "no")).authorizer_response(arn);
        let json = serde_json::to_value(&r).unwrap();
        assert_eq!(json["principalId"], "refused");
        assert_eq!(json["policyDocument"]["Statement"][0]["Resource"][0], arn);
        assert_eq!(json["policyDocument"]["Statement"][0]["Effect"], "Allow");
    }
}
