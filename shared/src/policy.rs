//! Privacy and expiry policy: how long each kind of data lives, how much of
//! an IP address is kept, and rate windows. Pure values and functions of the
//! inputs and "now", shared by both store adapters so the in-memory store and
//! DynamoDB expire data identically.
//!
//! A leaf beside `clock`: the domain applies these rules (a session's expiry is
//! [`crate::domain::Session::expiry`]; a site's retention settings, the site data
//! these bounds apply to, are `crate::domain::RetentionPolicy`), never the other
//! way round.

use std::time::Duration;

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
