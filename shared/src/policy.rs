//! Privacy and expiry policy: how long each kind of data lives, how much of
//! an IP address is kept, and rate windows. Pure values and functions of the
//! inputs and "now", shared by both store adapters so the in-memory store and
//! DynamoDB expire data identically.
//!
//! A leaf beside `clock`: the domain applies these rules (a session's expiry is
//! [`crate::domain::Session::expiry`], a site's retention bounds are checked by
//! `RetentionPolicy::validate` in `domain::site`), never the other way round.

use std::net::IpAddr;
use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::clock::Timestamp;

/// A session without messages is destroyed this long after its last access.
pub const EMPTY_SESSION_IDLE: Duration = Duration::from_secs(30 * 60);

/// A visitor token lives this long after it was issued or last renewed (six months).
pub const VISITOR_TOKEN_LIFETIME: Duration = Duration::from_secs(183 * 24 * 3600);

/// API Gateway closes WebSocket connections after 2 hours; `$disconnect` is
/// best-effort, so a connection record expires 10 minutes after that at the latest.
pub const CONNECTION_LIFETIME: Duration = Duration::from_secs(2 * 3600 + 10 * 60);

/// Default conversation retention after last activity.
pub const DEFAULT_CONVERSATION_RETENTION_DAYS: u32 = 365;

/// Default time an IP address is kept after it was recorded.
pub const DEFAULT_IP_RETENTION_DAYS: u32 = 30;

/// Audit records are kept this long for accountability (GDPR Art. 5(2)); they
/// contain no personal data.
pub const AUDIT_RETENTION: Duration = Duration::from_secs(3 * 365 * 24 * 3600);

/// Longest retention an operator may configure (10 years).
pub const MAX_RETENTION_DAYS: u32 = 3650;

const DAY: Duration = Duration::from_secs(24 * 3600);

/// How much of a visitor's IP address a site stores.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum IpPolicy {
    /// The full address.
    Full,
    /// The network only: IPv4 /24, IPv6 /48 (the default).
    #[default]
    Truncated,
    /// Nothing.
    None,
}

impl IpPolicy {
    /// Parses `full`, `truncated` or `none`.
    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "full" => Some(Self::Full),
            "truncated" => Some(Self::Truncated),
            "none" => Some(Self::None),
            _ => None,
        }
    }

    /// How much of an address the policy keeps: none < truncated < full.
    fn rank(self) -> u8 {
        match self {
            Self::None => 0,
            Self::Truncated => 1,
            Self::Full => 2,
        }
    }

    /// The policy that keeps less of the two.
    pub fn stricter(self, other: Self) -> Self {
        if other.rank() < self.rank() { other } else { self }
    }

    /// What to store of `ip` under this policy.
    pub fn apply(self, ip: IpAddr) -> Option<String> {
        match self {
            Self::None => None,
            Self::Full => Some(ip.to_string()),
            Self::Truncated => {
                let prefix = if ip.is_ipv4() { 24 } else { 48 };
                // Both prefixes are within range for their family, so this cannot fail.
                ipnet::IpNet::new(ip, prefix).ok().map(|n| n.trunc().to_string())
            }
        }
    }
}

/// A site's retention settings.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct RetentionPolicy {
    /// Days a conversation is kept after its last activity.
    pub conversation_days: u32,
    /// How much of the IP is stored.
    pub ip_policy: IpPolicy,
    /// Days a stored IP is kept after it was recorded.
    pub ip_retention_days: u32,
}

impl Default for RetentionPolicy {
    fn default() -> Self {
        Self {
            conversation_days: DEFAULT_CONVERSATION_RETENTION_DAYS,
            ip_policy: IpPolicy::Truncated,
            ip_retention_days: DEFAULT_IP_RETENTION_DAYS,
        }
    }
}

impl RetentionPolicy {
    /// The most a deployment lets any site keep when its operator sets no limit:
    /// sites then decide alone, within the 10-year bound.
    pub const UNLIMITED: Self = Self {
        conversation_days: MAX_RETENTION_DAYS,
        ip_policy: IpPolicy::Full,
        ip_retention_days: MAX_RETENTION_DAYS,
    };

    /// This site policy as a deployment's `limit` lets it apply: the shorter of
    /// each period and the stricter IP policy. A deployment's parameters are a
    /// ceiling, so a team can shorten retention for every site at once and no
    /// site setting can keep more than the deployment allows.
    pub fn within(self, limit: &Self) -> Self {
        Self {
            conversation_days: self.conversation_days.min(limit.conversation_days),
            ip_policy: self.ip_policy.stricter(limit.ip_policy),
            ip_retention_days: self.ip_retention_days.min(limit.ip_retention_days),
        }
    }
}

/// `days` whole days.
pub fn days(days: u32) -> Duration {
    DAY * days
}

/// Whether an item with this expiry is still alive at `now`. DynamoDB deletes
/// expired items up to two days late, so every read applies this itself.
pub fn is_live(expires_at: Timestamp, now: Timestamp) -> bool {
    expires_at > now
}

/// When a connection record expires if `$disconnect` never arrives.
pub fn connection_expiry(connected_at: Timestamp) -> Timestamp {
    connected_at.plus(CONNECTION_LIFETIME)
}

/// When a visitor token issued or renewed at `now` stops being accepted.
pub fn visitor_token_expiry(now: Timestamp) -> Timestamp {
    now.plus(VISITOR_TOKEN_LIFETIME)
}

/// A rate limit: at most `limit` requests per `window`.
///
/// Two algorithms use it. [`RateLimit::admit`] is a sliding window (an exact
/// sliding log): at most `limit` requests are admitted in *any* interval of
/// length `window`, so there is no double burst at a window boundary; the
/// per-IP and per-token limits ([`crate::storage::RateLimitStore`]) use it.
/// [`RateLimit::check`] is a fixed window (up to twice `limit` across a window
/// boundary); only the per-session message rate uses it, because its two
/// fields live on the session item.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RateLimit {
    /// Requests allowed per window.
    pub limit: u32,
    /// Window length.
    pub window: Duration,
}

/// The largest `limit` a sliding-window limit may have. Its counter item holds
/// one timestamp per request the window may admit, and DynamoDB's update that
/// shifts them must stay under the 4 KB expression limit (and the item within
/// two write units).
pub const MAX_SLIDING_LIMIT: u32 = 100;

/// The outcome of counting one request against a [`RateLimit`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RateDecision {
    /// Allowed; for a fixed window, the new window start and count to store.
    Allowed {
        /// Start of the window the request counted in (for a sliding window:
        /// `now - window`).
        window_start: Timestamp,
        /// Requests in that window including this one.
        count: u32,
    },
    /// Refused; retry after this long.
    Limited {
        /// Time until a request would be admitted again.
        retry_after: Duration,
    },
}

impl RateLimit {
    /// `limit` requests per `window`.
    pub const fn new(limit: u32, window: Duration) -> Self {
        Self { limit, window }
    }

    /// The start of the fixed window containing `now`.
    pub fn window_start(&self, now: Timestamp) -> Timestamp {
        let w = i64::try_from(self.window.as_millis()).unwrap_or(i64::MAX).max(1);
        Timestamp::from_millis(now.millis() - now.millis().rem_euclid(w))
    }

    /// Fixed window: counts one request given the stored window start and count.
    pub fn check(&self, stored_start: Timestamp, stored_count: u32, now: Timestamp) -> RateDecision {
        let start = self.window_start(now);
        let count = if stored_start == start { stored_count } else { 0 };
        if count >= self.limit {
            RateDecision::Limited {
                retry_after: now.until(start.plus(self.window)).max(Duration::from_secs(1)),
            }
        } else {
            RateDecision::Allowed {
                window_start: start,
                count: count + 1,
            }
        }
    }

    /// The instant at or before which an admitted request no longer counts at
    /// `now`: a request at `t` counts during `[t, t + window)`.
    pub fn cutoff(&self, now: Timestamp) -> Timestamp {
        now.minus(self.window)
    }

    /// Sliding window: decides one request at `now` given the times of the
    /// most recently admitted requests, newest first (only the first `limit`
    /// matter). The request is admitted if and only if fewer than `limit`
    /// admitted requests lie in `(now - window, now]`, which is exactly "at
    /// most `limit` in any interval of length `window`". Each store keeps the
    /// last `limit` admission times and writes this decision with one
    /// conditional update on the entry `limit - 1`.
    pub fn admit(&self, recent: &[Timestamp], now: Timestamp) -> RateDecision {
        let cutoff = self.cutoff(now);
        let Some(last) = (self.limit as usize).checked_sub(1) else {
            return RateDecision::Limited {
                retry_after: self.window,
            };
        };
        match recent.get(last) {
            Some(&oldest) if oldest > cutoff => RateDecision::Limited {
                retry_after: now.until(oldest.plus(self.window)),
            },
            _ => RateDecision::Allowed {
                window_start: cutoff,
                count: Self::counted(recent.iter().take(last), cutoff) + 1,
            },
        }
    }

    /// How many of `times` still count after `cutoff`.
    pub fn counted<'a>(times: impl IntoIterator<Item = &'a Timestamp>, cutoff: Timestamp) -> u32 {
        let n = times.into_iter().filter(|t| **t > cutoff).count();
        u32::try_from(n).unwrap_or(u32::MAX)
    }

    /// When a sliding-window counter last written at `now` stops mattering:
    /// every time it holds is then at or before the cutoff.
    pub fn counter_expiry(&self, now: Timestamp) -> Timestamp {
        now.plus(self.window)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn liveness_is_strict() {
        let t = Timestamp::from_secs(10);
        assert!(is_live(t, Timestamp::from_secs(9)));
        assert!(!is_live(t, t), "an item is gone at its expiry instant");
    }

    #[test]
    fn a_deployment_limit_shortens_and_tightens_but_never_loosens() {
        let site = RetentionPolicy {
            conversation_days: 400,
            ip_policy: IpPolicy::Full,
            ip_retention_days: 10,
        };
        let limit = RetentionPolicy {
            conversation_days: 90,
            ip_policy: IpPolicy::Truncated,
            ip_retention_days: 30,
        };
        let got = site.within(&limit);
        assert_eq!(got.conversation_days, 90);
        assert_eq!(got.ip_policy, IpPolicy::Truncated);
        assert_eq!(got.ip_retention_days, 10, "a site may keep less than the limit");
        assert_eq!(site.within(&RetentionPolicy::UNLIMITED), site);
        for (a, b, stricter) in [
            (IpPolicy::Full, IpPolicy::None, IpPolicy::None),
            (IpPolicy::None, IpPolicy::Truncated, IpPolicy::None),
            (IpPolicy::Truncated, IpPolicy::Full, IpPolicy::Truncated),
        ] {
            assert_eq!(a.stricter(b), stricter);
            assert_eq!(b.stricter(a), stricter);
        }
    }

    #[test]
    fn ip_policy_truncates_by_family() {
        let v4: IpAddr = "203.0.113.77".parse().unwrap();
        let v6: IpAddr = "2001:db8:1234:5678::1".parse().unwrap();
        assert_eq!(IpPolicy::Truncated.apply(v4).as_deref(), Some("203.0.113.0/24"));
        assert_eq!(IpPolicy::Truncated.apply(v6).as_deref(), Some("2001:db8:1234::/48"));
        assert_eq!(IpPolicy::Full.apply(v4).as_deref(), Some("203.0.113.77"));
        assert_eq!(IpPolicy::None.apply(v6), None);
        assert_eq!(IpPolicy::default(), IpPolicy::Truncated);
    }

    #[test]
    fn rate_limit_counts_within_a_window_and_resets_after() {
        let rl = RateLimit {
            limit: 2,
            window: Duration::from_secs(60),
        };
        let t0 = Timestamp::from_secs(120); // a window boundary
        let RateDecision::Allowed { window_start, count } = rl.check(Timestamp::from_secs(0), 0, t0) else {
            panic!("first request refused")
        };
        assert_eq!((window_start, count), (t0, 1));
        assert!(matches!(
            rl.check(t0, 1, t0.plus(Duration::from_secs(1))),
            RateDecision::Allowed { count: 2, .. }
        ));
        assert_eq!(
            rl.check(t0, 2, t0.plus(Duration::from_secs(15))),
            RateDecision::Limited {
                retry_after: Duration::from_secs(45)
            }
        );
        assert!(matches!(
            rl.check(t0, 2, t0.plus(Duration::from_secs(60))),
            RateDecision::Allowed { count: 1, .. }
        ));
    }

    fn sliding(limit: u32, secs: u64) -> RateLimit {
        RateLimit::new(limit, Duration::from_secs(secs))
    }

    /// Runs `admit` as the stores do: keeps the last `limit` admission times,
    /// newest first, and returns every admitted instant.
    fn admitted(rl: RateLimit, arrivals: impl IntoIterator<Item = Timestamp>) -> Vec<Timestamp> {
        let mut recent: Vec<Timestamp> = Vec::new();
        let mut out = Vec::new();
        for t in arrivals {
            if let RateDecision::Allowed { .. } = rl.admit(&recent, t) {
                recent.insert(0, t);
                recent.truncate(rl.limit as usize);
                out.push(t);
            }
        }
        out
    }

    /// The most admitted instants in any half-open interval `[a, a + window)`.
    fn worst_window(admitted: &[Timestamp], window: Duration) -> usize {
        admitted
            .iter()
            .map(|a| admitted.iter().filter(|t| **t >= *a && **t < a.plus(window)).count())
            .max()
            .unwrap_or(0)
    }

    #[test]
    fn sliding_window_has_no_double_burst_at_a_window_boundary() {
        let rl = sliding(10, 60);
        let boundary = Timestamp::from_secs(120);
        // A fixed window would admit 10 just before the boundary and 10 more just after.
        let just_before = (0..10).map(|i| boundary.minus(Duration::from_millis(10 - i)));
        let just_after = (0..10).map(|i| boundary.plus(Duration::from_millis(i)));
        let got = admitted(rl, just_before.chain(just_after));
        assert_eq!(got.len(), 10, "{got:?}");
        assert!(got.iter().all(|t| *t < boundary));
        assert!(
            matches!(
                rl.check(boundary.minus(Duration::from_secs(60)), 10, boundary),
                RateDecision::Allowed { .. }
            ),
            "the fixed window (messages only) does reset at the boundary"
        );
    }

    #[test]
    fn sliding_window_admits_at_most_limit_in_any_window_length_interval() {
        // Adversarial and dense arrival patterns, millisecond resolution.
        let rl = sliding(5, 10);
        let w = rl.window;
        let start = Timestamp::from_secs(1_000);
        let patterns: Vec<Vec<Timestamp>> = vec![
            // Every 100 ms for a minute.
            (0..600).map(|i| start.plus(Duration::from_millis(i * 100))).collect(),
            // Bursts at the end of each 10 s window, then at the start of the next.
            (0..6)
                .flat_map(|k| {
                    let b = start.plus(w * k);
                    (0..8)
                        .map(move |i| b.minus(Duration::from_millis(8 - i)))
                        .chain((0..8).map(move |i| b.plus(Duration::from_millis(i))))
                })
                .collect(),
            // A pseudo-random walk (xorshift), deterministic.
            {
                let mut x: u64 = 0x9e37_79b9_7f4a_7c15;
                let mut t = start;
                (0..2_000)
                    .map(|_| {
                        x ^= x << 13;
                        x ^= x >> 7;
                        x ^= x << 17;
                        t = t.plus(Duration::from_millis(x % 1_500));
                        t
                    })
                    .collect()
            },
        ];
        for arrivals in patterns {
            let got = admitted(rl, arrivals.iter().copied());
            assert!(worst_window(&got, w) <= 5, "more than 5 in some 10 s interval");
            // Not stricter than it must be: every refusal had 5 admissions in the last 10 s.
            for t in &arrivals {
                if !got.contains(t) {
                    let before = got.iter().filter(|a| **a <= *t && **a > t.minus(w)).count();
                    assert_eq!(before, 5, "refused at {t:?} with only {before} in the window");
                }
            }
        }
    }

    #[test]
    fn sliding_window_refusal_says_when_the_oldest_request_leaves_the_window() {
        let rl = sliding(2, 60);
        let t0 = Timestamp::from_secs(1_000);
        let recent = [t0.plus(Duration::from_secs(10)), t0];
        assert_eq!(
            rl.admit(&recent, t0.plus(Duration::from_secs(15))),
            RateDecision::Limited {
                retry_after: Duration::from_secs(45)
            }
        );
        // At exactly t0 + 60 s the request at t0 no longer counts.
        assert_eq!(
            rl.admit(&recent, t0.plus(Duration::from_secs(60))),
            RateDecision::Allowed {
                window_start: t0,
                count: 2
            }
        );
        assert!(matches!(rl.admit(&[], t0), RateDecision::Allowed { count: 1, .. }));
        assert!(matches!(sliding(0, 60).admit(&[], t0), RateDecision::Limited { .. }));
    }
}
