//! The `[incident]` settings of the shared cfdr configuration file. No
//! secret lives here: the file names the environment variables that hold
//! them (see [`crate::notify::Credentials`]).

use serde::{Deserialize, Serialize};

use crate::model::Severity;
use crate::sla::SlaPolicy;
use crate::{Error, Result};

/// A notification channel.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Channel {
    /// PagerDuty Events API v2.
    Pagerduty,
    /// A Slack incoming webhook (the #incidents channel).
    Slack,
    /// Email over SMTP.
    Email,
}

impl Channel {
    /// Lower-case name.
    pub fn name(self) -> &'static str {
        match self {
            Channel::Pagerduty => "pagerduty",
            Channel::Slack => "slack",
            Channel::Email => "email",
        }
    }
}

impl std::fmt::Display for Channel {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

/// Channels per severity. Defaults follow the runbook: PagerDuty for
/// P0/P1, Slack #incidents for P0-P2, email for P2/P3.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Routes {
    /// P0 channels.
    #[serde(rename = "P0")]
    pub p0: Vec<Channel>,
    /// P1 channels.
    #[serde(rename = "P1")]
    pub p1: Vec<Channel>,
    /// P2 channels.
    #[serde(rename = "P2")]
    pub p2: Vec<Channel>,
    /// P3 channels.
    #[serde(rename = "P3")]
    pub p3: Vec<Channel>,
}

impl Default for Routes {
    fn default() -> Self {
        use Channel::*;
        Self {
            p0: vec![Pagerduty, Slack],
            p1: vec![Pagerduty, Slack],
            p2: vec![Slack, Email],
            p3: vec![Email],
        }
    }
}

impl Routes {
    /// The channels of `severity`.
    pub fn of(&self, severity: Severity) -> &[Channel] {
        match severity {
            Severity::P0 => &self.p0,
            Severity::P1 => &self.p1,
            Severity::P2 => &self.p2,
            Severity::P3 => &self.p3,
        }
    }
}

/// PagerDuty Events API v2 settings.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, rename_all = "kebab-case", deny_unknown_fields)]
pub struct PagerDutyConfig {
    /// Events API endpoint.
    pub url: String,
    /// Variable holding the integration's routing key.
    pub routing_key_env: String,
    /// `payload.source`: the system the events are about.
    pub source: String,
    /// `payload.component`.
    pub component: Option<String>,
}

impl Default for PagerDutyConfig {
    fn default() -> Self {
        Self {
            url: "https://events.pagerduty.com/v2/enqueue".into(),
            routing_key_env: "CFDR_PAGERDUTY_ROUTING_KEY".into(),
            source: "cryptofunk".into(),
            component: None,
        }
    }
}

/// Slack incoming webhook settings.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, rename_all = "kebab-case", deny_unknown_fields)]
pub struct SlackConfig {
    /// Variable holding the webhook URL (the URL is the secret).
    pub webhook_url_env: String,
}

impl Default for SlackConfig {
    fn default() -> Self {
        Self {
            webhook_url_env: "CFDR_SLACK_WEBHOOK_URL".into(),
        }
    }
}

/// How to talk to the SMTP server.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum SmtpTls {
    /// Plain connection upgraded with STARTTLS (required), port 587.
    #[default]
    Starttls,
    /// TLS from the first byte, port 465.
    Tls,
    /// No encryption (a relay on localhost only), port 25.
    None,
}

/// Email settings.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, rename_all = "kebab-case", deny_unknown_fields)]
pub struct EmailConfig {
    /// SMTP server host name; email is off without it.
    pub host: Option<String>,
    /// Port (default by `tls`: 587, 465 or 25).
    pub port: Option<u16>,
    /// Transport security.
    pub tls: SmtpTls,
    /// Sender address, e.g. `cfdr <cfdr@cryptofunk.example>`.
    pub from: Option<String>,
    /// Recipients.
    pub to: Vec<String>,
    /// Variable holding the SMTP user name (default `CFDR_SMTP_USERNAME`).
    pub username_env: Option<String>,
    /// Variable holding the SMTP password (default `CFDR_SMTP_PASSWORD`).
    pub password_env: Option<String>,
}

/// Delivery retries: exponential backoff from `min-delay-ms`, doubling up
/// to `max-delay-ms`, `attempts` tries in all, each bounded by
/// `timeout-secs`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, rename_all = "kebab-case", deny_unknown_fields)]
pub struct RetryPolicy {
    /// Tries in all (at least 1).
    pub attempts: u32,
    /// First delay.
    pub min_delay_ms: u64,
    /// Largest delay.
    pub max_delay_ms: u64,
    /// Timeout of one try.
    pub timeout_secs: u64,
}

impl Default for RetryPolicy {
    fn default() -> Self {
        Self {
            attempts: 4,
            min_delay_ms: 500,
            max_delay_ms: 8_000,
            timeout_secs: 10,
        }
    }
}

impl RetryPolicy {
    /// Delay before try `n + 1` (after `n` failed tries, from 1).
    pub fn delay(&self, n: u32) -> std::time::Duration {
        let factor = 1u64.checked_shl(n.saturating_sub(1)).unwrap_or(u64::MAX);
        std::time::Duration::from_millis(
            self.min_delay_ms
                .saturating_mul(factor)
                .min(self.max_delay_ms),
        )
    }
}

/// The `[incident]` section.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, rename_all = "kebab-case", deny_unknown_fields)]
pub struct IncidentConfig {
    /// Whether opening a P0 halts trading unless told otherwise.
    pub halt_on_p0: bool,
    /// Service levels.
    pub sla: SlaPolicy,
    /// Channels per severity.
    pub routes: Routes,
    /// PagerDuty.
    pub pagerduty: PagerDutyConfig,
    /// Slack.
    pub slack: SlackConfig,
    /// Email.
    pub email: EmailConfig,
    /// Delivery retries.
    pub retry: RetryPolicy,
}

impl Default for IncidentConfig {
    fn default() -> Self {
        Self {
            halt_on_p0: true,
            sla: SlaPolicy::default(),
            routes: Routes::default(),
            pagerduty: PagerDutyConfig::default(),
            slack: SlackConfig::default(),
            email: EmailConfig::default(),
            retry: RetryPolicy::default(),
        }
    }
}

impl IncidentConfig {
    /// Checks what serde cannot.
    pub fn validate(&self) -> Result<()> {
        self.sla.validate()?;
        if self.retry.attempts == 0 {
            return Err(Error::InvalidSetting {
                setting: "incident.retry.attempts".into(),
                reason: "must be at least 1".into(),
            });
        }
        if self.email.host.is_some() && (self.email.from.is_none() || self.email.to.is_empty()) {
            return Err(Error::InvalidSetting {
                setting: "incident.email".into(),
                reason: "with a host set, `from` and `to` are required".into(),
            });
        }
        Ok(())
    }
}
