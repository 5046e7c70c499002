//! A site's retention settings: how long conversations and IP addresses are
//! kept and how much of an IP is stored. Site data (`eurochat-admin put-site`),
//! bounded by the deployment's limit ([`RetentionPolicy::within`]) and by the
//! rules in [`crate::policy`].

use std::net::IpAddr;

use serde::{Deserialize, Serialize};

use crate::policy::{DEFAULT_CONVERSATION_RETENTION_DAYS, DEFAULT_IP_RETENTION_DAYS, MAX_RETENTION_DAYS};

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

#[cfg(test)]
mod tests {
    use super::*;

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
}
