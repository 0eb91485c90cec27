//! Notifications: PagerDuty Events API v2, Slack incoming webhooks and SMTP
//! email, routed by severity ([`crate::Routes`]).
//!
//! A notification is sent only after its event is stored. Each channel is
//! tried with retries and exponential backoff on temporary failures (HTTP
//! 429 and 5xx, timeouts, refused connections, SMTP 4xx); a delivery that
//! still fails becomes a `notification-failed` event in the incident's
//! timeline ([`announce`]) and never blocks or undoes the record.
//!
//! | event | PagerDuty (`dedup_key` = incident id) | Slack, email |
//! |---|---|---|
//! | opened, reopened, severity raised to a paged level | `trigger` | message |
//! | acknowledged | `acknowledge` | message |
//! | resolved | `resolve` | message |
//! | status update, identified, mitigated, closed, halt, resume, severity change | - | message |
//! | note, action items, post-mortem edits, links | - | - |
//!
//! Acknowledge and resolve go to PagerDuty when the incident was ever at a
//! severity routed there, so a de-escalated incident's page is still closed.
//!
//! Secrets (routing key, webhook URL, SMTP password) come from environment
//! variables named in the configuration, are redacted in `Debug`, and are
//! scrubbed from every error message.

use std::time::Duration;

use futures::future::join_all;
use jiff::Timestamp;
use serde_json::json;

use crate::config::{Channel, IncidentConfig, SmtpTls};
use crate::event::{Change, Event};
use crate::journal::{Journal, Stamp};
use crate::model::Severity;
use crate::record::Incident;
use crate::{Error, Result};

/// A secret string: redacted in `Debug`, wiped from memory on drop.
#[derive(Clone)]
pub struct Secret(zeroize::Zeroizing<String>);

impl Secret {
    /// Wraps a value.
    pub fn new(value: impl Into<String>) -> Self {
        Self(zeroize::Zeroizing::new(value.into()))
    }

    /// The value, for the one place that sends it.
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl std::fmt::Debug for Secret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Secret([redacted])")
    }
}

/// The secrets of the channels, read from the environment.
#[derive(Clone, Debug, Default)]
pub struct Credentials {
    /// PagerDuty routing (integration) key.
    pub pagerduty_routing_key: Option<Secret>,
    /// Slack webhook URL.
    pub slack_webhook_url: Option<Secret>,
    /// SMTP user name.
    pub smtp_username: Option<String>,
    /// SMTP password.
    pub smtp_password: Option<Secret>,
}

fn env_secret(name: &str) -> Option<Secret> {
    std::env::var(name)
        .ok()
        .filter(|v| !v.trim().is_empty())
        .map(|v| Secret::new(v.trim()))
}

impl Credentials {
    /// Reads the variables that `config` names.
    pub fn from_env(config: &IncidentConfig) -> Self {
        let e = &config.email;
        Self {
            pagerduty_routing_key: env_secret(&config.pagerduty.routing_key_env),
            slack_webhook_url: env_secret(&config.slack.webhook_url_env),
            smtp_username: env_secret(e.username_env.as_deref().unwrap_or("CFDR_SMTP_USERNAME"))
                .map(|s| s.expose().to_owned()),
            smtp_password: env_secret(e.password_env.as_deref().unwrap_or("CFDR_SMTP_PASSWORD")),
        }
    }

    fn secrets(&self) -> Vec<&str> {
        [
            &self.pagerduty_routing_key,
            &self.slack_webhook_url,
            &self.smtp_password,
        ]
        .into_iter()
        .flatten()
        .map(Secret::expose)
        .collect()
    }
}

/// How one channel's delivery ended.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Outcome {
    /// Accepted by the service.
    Sent {
        /// Tries used.
        attempts: u32,
    },
    /// Not accepted after every try.
    Failed {
        /// Tries used.
        attempts: u32,
        /// The last error, free of secrets.
        error: String,
    },
    /// Routed but not set up (no secret or server); what to set.
    NotConfigured {
        /// What to set.
        hint: String,
    },
}

/// One channel's delivery of one event.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Delivery {
    /// The channel.
    pub channel: Channel,
    /// What happened.
    pub outcome: Outcome,
}

enum Try {
    Done,
    Retry(String),
    Fatal(String),
}

/// Sends notifications for stored events.
#[derive(Clone, Debug)]
pub struct Notifier {
    config: IncidentConfig,
    credentials: Credentials,
    http: reqwest::Client,
}

/// PagerDuty's severity for ours.
pub fn pagerduty_severity(s: Severity) -> &'static str {
    match s {
        Severity::P0 => "critical",
        Severity::P1 => "error",
        Severity::P2 => "warning",
        Severity::P3 => "info",
    }
}

fn truncate(s: &str, max: usize) -> String {
    if s.chars().count() <= max {
        s.to_owned()
    } else {
        let mut t: String = s.chars().take(max.saturating_sub(1)).collect();
        t.push('…');
        t
    }
}

impl Notifier {
    /// A notifier with `config`'s routes and the given secrets.
    pub fn new(config: &IncidentConfig, credentials: Credentials) -> Result<Self> {
        config.validate()?;
        let http = reqwest::Client::builder()
            .timeout(Duration::from_secs(config.retry.timeout_secs.max(1)))
            .user_agent(concat!("cfdr-incident/", env!("CARGO_PKG_VERSION")))
            .build()
            .map_err(|e| Error::InvalidSetting {
                setting: "incident notifications".into(),
                reason: e.without_url().to_string(),
            })?;
        Ok(Self {
            config: config.clone(),
            credentials,
            http,
        })
    }

    /// The PagerDuty action for `event`, if any.
    fn pagerduty_action(&self, inc: &Incident, event: &Event) -> Option<&'static str> {
        let paged_now = self
            .config
            .routes
            .of(inc.severity)
            .contains(&Channel::Pagerduty);
        let paged_ever = paged_now
            || self
                .config
                .routes
                .of(inc.peak_severity)
                .contains(&Channel::Pagerduty);
        match &event.change {
            Change::Opened { .. } | Change::Reopened { .. } | Change::SeverityChanged { .. } => {
                paged_now.then_some("trigger")
            }
            Change::Acknowledged { .. } => paged_ever.then_some("acknowledge"),
            Change::Resolved { .. } => paged_ever.then_some("resolve"),
            _ => None,
        }
    }

    /// The channels `event` goes to, given the record after it.
    pub fn plan(&self, incident: &Incident, event: &Event) -> Vec<Channel> {
        let mut out = Vec::new();
        if !event.change.is_communicated() {
            return out;
        }
        if self.pagerduty_action(incident, event).is_some() {
            out.push(Channel::Pagerduty);
        }
        for c in self.config.routes.of(incident.severity) {
            if *c != Channel::Pagerduty && !out.contains(c) {
                out.push(*c);
            }
        }
        out
    }

    /// Delivers `event` (already stored) on its channels, concurrently.
    pub async fn deliver(&self, incident: &Incident, event: &Event) -> Vec<Delivery> {
        let sends = self.plan(incident, event).into_iter().map(|channel| async move {
            let outcome = match channel {
                Channel::Pagerduty => self.pagerduty(incident, event).await,
                Channel::Slack => self.slack(incident, event).await,
                Channel::Email => self.email(incident, event).await,
            };
            match &outcome {
                Outcome::Sent { attempts } => {
                    tracing::info!(incident = %incident.id, %channel, attempts, "notification sent");
                }
                Outcome::Failed { attempts, error } => {
                    tracing::info!(incident = %incident.id, %channel, attempts, %error, "notification failed");
                }
                Outcome::NotConfigured { hint } => {
                    tracing::debug!(incident = %incident.id, %channel, %hint, "notification channel not configured");
                }
            }
            Delivery { channel, outcome }
        });
        join_all(sends).await
    }

    fn scrub(&self, text: &str) -> String {
        let mut out = text.to_owned();
        for s in self.credentials.secrets() {
            if !s.is_empty() {
                out = out.replace(s, "[redacted]");
            }
        }
        out
    }

    async fn retry<F, Fut>(&self, mut once: F) -> Outcome
    where
        F: FnMut() -> Fut,
        Fut: Future<Output = Try>,
    {
        let policy = &self.config.retry;
        let mut n = 0;
        loop {
            n += 1;
            let err = match once().await {
                Try::Done => return Outcome::Sent { attempts: n },
                Try::Fatal(e) => {
                    return Outcome::Failed {
                        attempts: n,
                        error: self.scrub(&e),
                    };
                }
                Try::Retry(e) => e,
            };
            if n >= policy.attempts.max(1) {
                return Outcome::Failed {
                    attempts: n,
                    error: self.scrub(&err),
                };
            }
            tracing::debug!(attempt = n, error = %self.scrub(&err), "notification failed, retrying");
            tokio::time::sleep(policy.delay(n)).await;
        }
    }

    async fn post_json(
        &self,
        url: &str,
        body: &serde_json::Value,
        expect: fn(u16, &str) -> bool,
    ) -> Try {
        match self.http.post(url).json(body).send().await {
            Err(e) => Try::Retry(format!("request failed: {}", e.without_url())),
            Ok(resp) => {
                let status = resp.status().as_u16();
                let text = resp.text().await.unwrap_or_default();
                let detail = format!("HTTP {status}: {}", truncate(text.trim(), 200));
                if expect(status, &text) {
                    Try::Done
                } else if status == 429 || status >= 500 {
                    Try::Retry(detail)
                } else {
                    Try::Fatal(detail)
                }
            }
        }
    }

    /// The PagerDuty Events v2 body for `event`, or `None` if PagerDuty is
    /// not told about it.
    pub fn pagerduty_body(
        &self,
        inc: &Incident,
        event: &Event,
        routing_key: &str,
    ) -> Option<serde_json::Value> {
        let action = self.pagerduty_action(inc, event)?;
        let mut body = json!({
            "routing_key": routing_key,
            "event_action": action,
            "dedup_key": inc.id.as_str(),
            "client": "cfdr",
        });
        if action == "trigger" {
            let mut payload = json!({
                "summary": truncate(&format!("[{}] {}: {}", inc.severity, inc.id, inc.title), 1024),
                "source": self.config.pagerduty.source,
                "severity": pagerduty_severity(inc.severity),
                "timestamp": event.at.to_string(),
                "class": "incident",
                "custom_details": details(inc, event),
            });
            if let Some(c) = &self.config.pagerduty.component {
                payload["component"] = json!(c);
            }
            body["payload"] = payload;
        }
        Some(body)
    }

    async fn pagerduty(&self, inc: &Incident, event: &Event) -> Outcome {
        let Some(key) = &self.credentials.pagerduty_routing_key else {
            return Outcome::NotConfigured {
                hint: format!("set ${}", self.config.pagerduty.routing_key_env),
            };
        };
        let Some(body) = self.pagerduty_body(inc, event, key.expose()) else {
            return Outcome::Sent { attempts: 0 };
        };
        let url = self.config.pagerduty.url.clone();
        self.retry(|| self.post_json(&url, &body, |s, _| s == 202 || s == 200))
            .await
    }

    /// The Slack webhook body for `event`.
    pub fn slack_body(&self, inc: &Incident, event: &Event) -> serde_json::Value {
        let line = headline(inc, event);
        let halted = if inc.trading_halted() {
            "HALTED"
        } else {
            "not halted"
        };
        json!({
            "text": format!("[{}] {} {}: {}", inc.severity, inc.id, inc.title, line),
            "blocks": [
                {"type": "header", "text": {"type": "plain_text",
                    "text": truncate(&format!("{} {} {}", inc.severity, inc.id, inc.title), 150)}},
                {"type": "section", "text": {"type": "mrkdwn",
                    "text": truncate(&format!("*{}* ({})", line, event.author), 3000)}},
                {"type": "context", "elements": [{"type": "mrkdwn", "text": format!(
                    "Status: {} | Commander: {} | Trading: {} | {}",
                    inc.status, inc.commander.as_deref().unwrap_or("unassigned"), halted, event.at
                )}]},
            ],
        })
    }

    async fn slack(&self, inc: &Incident, event: &Event) -> Outcome {
        let Some(url) = &self.credentials.slack_webhook_url else {
            return Outcome::NotConfigured {
                hint: format!("set ${}", self.config.slack.webhook_url_env),
            };
        };
        let body = self.slack_body(inc, event);
        self.retry(|| self.post_json(url.expose(), &body, |s, t| s == 200 && t.trim() == "ok"))
            .await
    }

    async fn email(&self, inc: &Incident, event: &Event) -> Outcome {
        use lettre::message::header::ContentType;
        use lettre::transport::smtp::authentication::Credentials as SmtpCredentials;
        use lettre::{AsyncSmtpTransport, AsyncTransport, Message, Tokio1Executor};

        let cfg = &self.config.email;
        let (Some(host), Some(from)) = (&cfg.host, &cfg.from) else {
            return Outcome::NotConfigured {
                hint: "set incident.email.host, from and to".into(),
            };
        };
        let fatal = |what: &str, e: &dyn std::fmt::Display| Outcome::Failed {
            attempts: 0,
            error: self.scrub(&format!("{what}: {e}")),
        };
        let mut builder = Message::builder()
            .subject(truncate(
                &format!(
                    "[{}] {} {}: {}",
                    inc.severity,
                    inc.id,
                    inc.title,
                    headline(inc, event)
                ),
                200,
            ))
            .header(ContentType::TEXT_PLAIN);
        builder = match from.parse() {
            Ok(f) => builder.from(f),
            Err(e) => return fatal("invalid incident.email.from", &e),
        };
        for to in &cfg.to {
            builder = match to.parse() {
                Ok(t) => builder.to(t),
                Err(e) => return fatal("invalid incident.email.to", &e),
            };
        }
        let message = match builder.body(email_body(inc, event)) {
            Ok(m) => m,
            Err(e) => return fatal("cannot build the message", &e),
        };
        let transport = match cfg.tls {
            SmtpTls::None => Ok(
                AsyncSmtpTransport::<Tokio1Executor>::builder_dangerous(host)
                    .port(cfg.port.unwrap_or(25)),
            ),
            SmtpTls::Starttls => AsyncSmtpTransport::<Tokio1Executor>::starttls_relay(host)
                .map(|b| b.port(cfg.port.unwrap_or(587))),
            SmtpTls::Tls => AsyncSmtpTransport::<Tokio1Executor>::relay(host)
                .map(|b| b.port(cfg.port.unwrap_or(465))),
        };
        let mut transport = match transport {
            Ok(t) => t.timeout(Some(Duration::from_secs(
                self.config.retry.timeout_secs.max(1),
            ))),
            Err(e) => return fatal("cannot set up SMTP", &e),
        };
        if let (Some(user), Some(pass)) = (
            &self.credentials.smtp_username,
            &self.credentials.smtp_password,
        ) {
            transport =
                transport.credentials(SmtpCredentials::new(user.clone(), pass.expose().to_owned()));
        }
        let transport = transport.build();
        self.retry(|| async {
            match transport.send(message.clone()).await {
                Ok(_) => Try::Done,
                Err(e) if e.is_permanent() => Try::Fatal(format!("SMTP {host}: {e}")),
                Err(e) => Try::Retry(format!("SMTP {host}: {e}")),
            }
        })
        .await
    }
}

/// One line about the event, for message titles.
fn headline(inc: &Incident, event: &Event) -> String {
    inc.timeline
        .iter()
        .find(|e| e.seq == event.seq)
        .map_or_else(|| event.change.action().to_owned(), |e| e.text.clone())
}

fn details(inc: &Incident, event: &Event) -> serde_json::Value {
    json!({
        "incident": inc.id.as_str(),
        "title": inc.title,
        "severity": inc.severity.to_string(),
        "status": inc.status.to_string(),
        "commander": inc.commander,
        "trading_halted": inc.trading_halted(),
        "event": headline(inc, event),
        "author": event.author,
        "detected": inc.detected.to_string(),
    })
}

fn email_body(inc: &Incident, event: &Event) -> String {
    format!(
        "{}\n\nIncident: {}\nTitle: {}\nSeverity: {} ({})\nStatus: {}\nCommander: {}\nTrading halted: {}\nDetected: {}\nEvent time: {}\nBy: {}\n\nFull report: cfdr-incident report {}\n",
        headline(inc, event),
        inc.id,
        inc.title,
        inc.severity,
        inc.severity.label(),
        inc.status,
        inc.commander.as_deref().unwrap_or("unassigned"),
        if inc.trading_halted() { "yes" } else { "no" },
        inc.detected,
        event.at,
        event.author,
        inc.id,
    )
}

/// The author of `notification-failed` events.
pub const NOTIFIER_AUTHOR: &str = "cfdr-notify";

/// Delivers a stored event and records each failed delivery in the
/// incident's timeline (at `now()` after the retries). Returns the record
/// after those entries, the deliveries, and errors from recording them
/// (logged; the original event is stored either way).
pub async fn announce(
    journal: &Journal,
    notifier: &Notifier,
    incident: Incident,
    event: &Event,
    now: impl Fn() -> Timestamp,
) -> (Incident, Vec<Delivery>, Vec<Error>) {
    let deliveries = notifier.deliver(&incident, event).await;
    let mut incident = incident;
    let mut errors = Vec::new();
    for d in &deliveries {
        if let Outcome::Failed { attempts, error } = &d.outcome {
            let change = Change::NotificationFailed {
                channel: d.channel.to_string(),
                about_seq: event.seq,
                attempts: *attempts,
                error: error.clone(),
            };
            match journal
                .append(
                    &incident.id,
                    &Stamp::new(NOTIFIER_AUTHOR, now().max(event.at)),
                    change,
                )
                .await
            {
                Ok(a) => incident = a.incident,
                Err(e) => {
                    tracing::warn!(incident = %incident.id, error = %e, "cannot record a failed notification");
                    errors.push(e);
                }
            }
        }
    }
    (incident, deliveries, errors)
}
