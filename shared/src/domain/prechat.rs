//! The pre-chat form: what a visitor may tell about themselves before
//! chatting, always under a recorded consent.

use serde::{Deserialize, Serialize};

use super::{Email, PersonName};
use crate::clock::Timestamp;

/// The visitor's consent given with a pre-chat form.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Consent {
    /// What the data is for, as shown to the visitor (e.g. `support-follow-up`).
    pub purpose: String,
    /// The version of the site's privacy policy the visitor saw.
    pub policy_version: String,
    /// When consent was given.
    pub given_at: Timestamp,
}

/// Optional fields a visitor gives before chatting, always with consent.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct PreChat {
    /// The visitor's name, if given.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<PersonName>,
    /// The visitor's email, if given.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub email: Option<Email>,
    /// The consent record under which they were given.
    pub consent: Consent,
}
