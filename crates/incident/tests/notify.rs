//! Notifications against real receivers started by the tests on 127.0.0.1:
//! a tiny HTTP server standing in for PagerDuty's Events API and Slack's
//! webhooks, and a minimal in-test SMTP receiver (no MTA runs on the test
//! machines; it speaks just enough SMTP for a client to deliver a message).
#![allow(clippy::unwrap_used)]

mod support;

use std::sync::{Arc, Mutex};

use cfdr_incident::notify::{Credentials, Notifier, Outcome, Secret, announce};
use cfdr_incident::{Change, Channel, EntryKind, IncidentConfig, RetryPolicy, Severity, SmtpTls};
use serde_json::Value;
use support::at;
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::TcpListener;

/// A request as the receiver saw it.
#[derive(Clone, Debug)]
struct Request {
    path: String,
    content_type: String,
    body: Value,
}

/// An HTTP/1.1 server on 127.0.0.1 that records JSON requests and answers
/// with scripted responses (then the last one, repeated).
struct Receiver {
    url: String,
    requests: Arc<Mutex<Vec<Request>>>,
}

async fn receiver(script: Vec<(u16, &'static str)>) -> Receiver {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    let requests = Arc::new(Mutex::new(Vec::new()));
    let seen = requests.clone();
    tokio::spawn(async move {
        let mut n = 0;
        loop {
            let Ok((stream, _)) = listener.accept().await else {
                return;
            };
            let (status, body) = script[n.min(script.len() - 1)];
            n += 1;
            let seen = seen.clone();
            tokio::spawn(async move {
                let mut reader = BufReader::new(stream);
                let mut head = Vec::new();
                let mut line = String::new();
                loop {
                    line.clear();
                    if reader.read_line(&mut line).await.unwrap_or(0) == 0 {
                        return;
                    }
                    if line == "\r\n" {
                        break;
                    }
                    head.push(line.trim_end().to_owned());
                }
                let header = |name: &str| {
                    head.iter()
                        .find_map(|h| {
                            let (k, v) = h.split_once(':')?;
                            k.eq_ignore_ascii_case(name).then(|| v.trim().to_owned())
                        })
                        .unwrap_or_default()
                };
                let len: usize = header("content-length").parse().unwrap_or(0);
                let mut buf = vec![0; len];
                reader.read_exact(&mut buf).await.unwrap();
                seen.lock().unwrap().push(Request {
                    path: head[0].split(' ').nth(1).unwrap_or("").to_owned(),
                    content_type: header("content-type"),
                    body: serde_json::from_slice(&buf).unwrap_or(Value::Null),
                });
                let reply = format!(
                    "HTTP/1.1 {status} X\r\ncontent-type: text/plain\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}",
                    body.len()
                );
                let mut stream = reader.into_inner();
                let _ = stream.write_all(reply.as_bytes()).await;
                let _ = stream.shutdown().await;
            });
        }
    });
    Receiver { url, requests }
}

impl Receiver {
    fn bodies(&self) -> Vec<Value> {
        self.requests
            .lock()
            .unwrap()
            .iter()
            .map(|r| r.body.clone())
            .collect()
    }
}

const ROUTING_KEY: &str = "R0UT1NGKEYSECRET0000000000000000";
const SLACK_SECRET_PATH: &str = "/services/T000/B000/XXXXsecretXXXX";

fn config(pagerduty_url: &str) -> IncidentConfig {
    let mut cfg = IncidentConfig::default();
    cfg.pagerduty.url = pagerduty_url.to_owned();
    cfg.retry = RetryPolicy {
        attempts: 3,
        min_delay_ms: 10,
        max_delay_ms: 40,
        timeout_secs: 5,
    };
    cfg
}

fn credentials(slack: &str) -> Credentials {
    Credentials {
        pagerduty_routing_key: Some(Secret::new(ROUTING_KEY)),
        slack_webhook_url: Some(Secret::new(format!("{slack}{SLACK_SECRET_PATH}"))),
        ..Credentials::default()
    }
}

#[tokio::test]
async fn pagerduty_trigger_acknowledge_resolve_use_the_incident_id_as_dedup_key() {
    let pd = receiver(vec![(
        202,
        r#"{"status":"success","message":"Event processed"}"#,
    )])
    .await;
    let slack = receiver(vec![(200, "ok")]).await;
    let n = Notifier::new(
        &config(&format!("{}/v2/enqueue", pd.url)),
        credentials(&slack.url),
    )
    .unwrap();
    let j = support::memory_journal("pd");
    let opened = support::open(&j, Severity::P0, at("14:30")).await;
    let id = opened.incident.id.clone();
    let d = n.deliver(&opened.incident, &opened.event).await;
    assert_eq!(d.len(), 2, "P0 goes to PagerDuty and Slack: {d:?}");
    assert!(
        d.iter().all(|d| d.outcome == Outcome::Sent { attempts: 1 }),
        "{d:?}"
    );
    for (when, change) in [
        ("14:31", Change::Acknowledged { text: None }),
        (
            "14:35",
            Change::StatusUpdate {
                text: "failing over".into(),
            },
        ),
        ("14:50", Change::Resolved { text: None }),
    ] {
        let a = support::append(&j, &id, at(when), change).await;
        n.deliver(&a.incident, &a.event).await;
    }

    let sent = pd.bodies();
    let actions: Vec<&str> = sent
        .iter()
        .map(|b| b["event_action"].as_str().unwrap())
        .collect();
    assert_eq!(
        actions,
        ["trigger", "acknowledge", "resolve"],
        "status updates are not paged"
    );
    for b in &sent {
        assert_eq!(b["routing_key"], ROUTING_KEY);
        assert_eq!(b["dedup_key"], id.as_str());
    }
    // The documented required trigger fields and their types.
    let p = &sent[0]["payload"];
    assert_eq!(
        p["summary"],
        "[P0] INC-20251106-001: Database connection failures"
    );
    assert_eq!(p["severity"], "critical");
    assert_eq!(p["source"], "cryptofunk");
    assert_eq!(p["timestamp"], "2025-11-06T14:30:00Z");
    assert_eq!(p["custom_details"]["incident"], id.as_str());
    assert!(sent[1].get("payload").is_none());
    let reqs = pd.requests.lock().unwrap().clone();
    assert!(
        reqs.iter()
            .all(|r| r.path == "/v2/enqueue" && r.content_type == "application/json")
    );

    // Slack got all four, each with text and Block Kit blocks.
    let s = slack.bodies();
    assert_eq!(s.len(), 4);
    assert!(s.iter().all(|b| {
        b["text"]
            .as_str()
            .is_some_and(|t| t.starts_with("[P0] INC-20251106-001"))
    }));
    let kinds: Vec<&str> = s[0]["blocks"]
        .as_array()
        .unwrap()
        .iter()
        .map(|b| b["type"].as_str().unwrap())
        .collect();
    assert_eq!(kinds, ["header", "section", "context"]);
    assert_eq!(s[0]["blocks"][0]["text"]["type"], "plain_text");
    assert!(s[2]["text"].as_str().unwrap().ends_with(": failing over"));
    assert_eq!(slack.requests.lock().unwrap()[0].path, SLACK_SECRET_PATH);
}

#[tokio::test]
async fn retries_on_5xx_and_429_but_not_on_400() {
    let pd = receiver(vec![(503, "busy"), (429, "slow down"), (202, "{}")]).await;
    let slack = receiver(vec![(400, "invalid_payload")]).await;
    let n = Notifier::new(&config(&pd.url), credentials(&slack.url)).unwrap();
    let j = support::memory_journal("retry");
    let a = support::open(&j, Severity::P1, at("09:00")).await;
    let mut d = n.deliver(&a.incident, &a.event).await;
    d.sort_by_key(|d| d.channel);
    assert_eq!(d[0].channel, Channel::Pagerduty);
    assert_eq!(d[0].outcome, Outcome::Sent { attempts: 3 });
    assert_eq!(pd.bodies().len(), 3);
    assert_eq!(
        d[1].outcome,
        Outcome::Failed {
            attempts: 1,
            error: "HTTP 400: invalid_payload".into()
        }
    );
    assert_eq!(slack.bodies().len(), 1);
}

#[tokio::test]
async fn slack_needs_ok_in_the_body() {
    let slack = receiver(vec![(200, "no_text")]).await;
    let mut cfg = config("http://127.0.0.1:9");
    cfg.routes.p2 = vec![Channel::Slack];
    let n = Notifier::new(&cfg, credentials(&slack.url)).unwrap();
    let j = support::memory_journal("slack-ok");
    let a = support::open(&j, Severity::P2, at("09:00")).await;
    let d = n.deliver(&a.incident, &a.event).await;
    assert!(
        matches!(&d[0].outcome, Outcome::Failed { error, .. } if error.contains("no_text")),
        "{d:?}"
    );
}

#[tokio::test]
async fn a_dead_receiver_becomes_a_timeline_entry_without_secrets() {
    let dead = format!("http://127.0.0.1:{}", cfdr_testing::closed_port());
    let n = Notifier::new(&config(&dead), credentials(&dead)).unwrap();
    let j = support::memory_journal("dead");
    let a = support::open(&j, Severity::P0, at("14:30")).await;
    let after = support::ts("2025-11-06T14:30:07Z");
    let (inc, deliveries, errors) = announce(&j, &n, a.incident, &a.event, || after).await;
    assert!(errors.is_empty(), "{errors:?}");
    assert_eq!(deliveries.len(), 2);
    for d in &deliveries {
        let Outcome::Failed { attempts, error } = &d.outcome else {
            panic!("{d:?}")
        };
        assert_eq!(*attempts, 3);
        assert!(
            !error.contains("XXXXsecretXXXX") && !error.contains(ROUTING_KEY),
            "{error}"
        );
    }
    // Both failures are in the stored timeline, after the opening.
    let loaded = j.load(&inc.id).await.unwrap();
    let failed: Vec<_> = loaded
        .incident
        .timeline
        .iter()
        .filter(|e| e.kind == EntryKind::NotificationFailed)
        .collect();
    assert_eq!(failed.len(), 2);
    assert!(
        failed
            .iter()
            .all(|e| e.at == after && e.author == "cfdr-notify")
    );
    assert!(failed.iter().any(|e| {
        e.text
            .starts_with("Notification via slack failed after 3 attempt(s) (event 1)")
    }));
    assert_eq!(loaded.incident, inc);
    // No secret reached the repository.
    for m in j.store().list("incidents/").await.unwrap() {
        let text = String::from_utf8(j.store().get(&m.key).await.unwrap().to_vec()).unwrap();
        assert!(
            !text.contains("XXXXsecretXXXX") && !text.contains(ROUTING_KEY),
            "{text}"
        );
    }
    // Failure entries do not notify again.
    let last = loaded.events.last().unwrap();
    assert!(n.plan(&loaded.incident, last).is_empty());
}

#[tokio::test]
async fn routes_follow_the_runbook_and_config() {
    let n = Notifier::new(&IncidentConfig::default(), Credentials::default()).unwrap();
    let j = support::memory_journal("routes");
    let mut plans = Vec::new();
    for s in Severity::ALL {
        let a = support::open(&j, s, at("10:00")).await;
        plans.push(n.plan(&a.incident, &a.event));
    }
    use Channel::*;
    assert_eq!(
        plans,
        [
            vec![Pagerduty, Slack],
            vec![Pagerduty, Slack],
            vec![Slack, Email],
            vec![Email]
        ]
    );

    // Notes and record edits are not announced.
    let a = support::open(&j, Severity::P0, at("10:00")).await;
    let note = support::append(
        &j,
        &a.incident.id,
        at("10:01"),
        Change::Note { text: "x".into() },
    )
    .await;
    assert!(n.plan(&note.incident, &note.event).is_empty());

    // De-escalated from P0 to P2: the page is still resolved at the end.
    let id = a.incident.id;
    let down = support::append(
        &j,
        &id,
        at("10:02"),
        Change::SeverityChanged {
            to: Severity::P2,
            reason: None,
        },
    )
    .await;
    assert_eq!(n.plan(&down.incident, &down.event), [Slack, Email]);
    let done = support::append(&j, &id, at("10:03"), Change::Resolved { text: None }).await;
    assert_eq!(
        n.plan(&done.incident, &done.event),
        [Pagerduty, Slack, Email]
    );
    let body = n.pagerduty_body(&done.incident, &done.event, "k").unwrap();
    assert_eq!(body["event_action"], "resolve");

    // Routes are configurable.
    let cfg: IncidentConfig = toml::from_str("[routes]\nP3 = [\"slack\"]\nP0 = []").unwrap();
    let n = Notifier::new(&cfg, Credentials::default()).unwrap();
    let a = support::open(&j, Severity::P3, at("10:00")).await;
    assert_eq!(n.plan(&a.incident, &a.event), [Slack]);
    let a = support::open(&j, Severity::P0, at("10:00")).await;
    assert!(n.plan(&a.incident, &a.event).is_empty());

    // A routed channel without its secret is reported, not failed.
    let n = Notifier::new(&IncidentConfig::default(), Credentials::default()).unwrap();
    let d = n.deliver(&a.incident, &a.event).await;
    assert!(d.iter().all(|d| matches!(&d.outcome, Outcome::NotConfigured { hint } if hint.starts_with("set $CFDR_"))), "{d:?}");
}

/// A minimal in-test SMTP receiver: answers MAIL FROM with 451 (try again
/// later) `transient_failures` times, then accepts; records each message.
async fn smtp_sink(transient_failures: usize) -> (u16, Arc<Mutex<Vec<String>>>) {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    let messages = Arc::new(Mutex::new(Vec::new()));
    let store = messages.clone();
    let failures = Arc::new(Mutex::new(transient_failures));
    tokio::spawn(async move {
        loop {
            let Ok((stream, _)) = listener.accept().await else {
                return;
            };
            let (store, failures) = (store.clone(), failures.clone());
            tokio::spawn(async move {
                let (r, mut w) = stream.into_split();
                let mut lines = BufReader::new(r).lines();
                let _ = w.write_all(b"220 sink.test ESMTP test receiver\r\n").await;
                while let Ok(Some(line)) = lines.next_line().await {
                    let verb = line
                        .split([' ', ':'])
                        .next()
                        .unwrap_or("")
                        .to_ascii_uppercase();
                    let reply: &[u8] = match verb.as_str() {
                        "EHLO" | "HELO" => b"250 sink.test\r\n",
                        "MAIL" => {
                            let mut f = failures.lock().unwrap();
                            if *f > 0 {
                                *f -= 1;
                                b"451 4.3.0 try again later\r\n"
                            } else {
                                b"250 2.1.0 ok\r\n"
                            }
                        }
                        "RCPT" | "RSET" | "NOOP" => b"250 2.1.5 ok\r\n",
                        "DATA" => {
                            let _ = w.write_all(b"354 end with <CRLF>.<CRLF>\r\n").await;
                            let mut msg = String::new();
                            while let Ok(Some(l)) = lines.next_line().await {
                                if l == "." {
                                    break;
                                }
                                msg.push_str(&l);
                                msg.push('\n');
                            }
                            store.lock().unwrap().push(msg);
                            b"250 2.0.0 queued\r\n"
                        }
                        "QUIT" => {
                            let _ = w.write_all(b"221 2.0.0 bye\r\n").await;
                            return;
                        }
                        _ => b"502 5.5.2 not implemented\r\n",
                    };
                    if w.write_all(reply).await.is_err() {
                        return;
                    }
                }
            });
        }
    });
    (port, messages)
}

fn email_config(port: u16) -> IncidentConfig {
    let mut cfg = config("http://127.0.0.1:9");
    cfg.email.host = Some("127.0.0.1".into());
    cfg.email.port = Some(port);
    cfg.email.tls = SmtpTls::None;
    cfg.email.from = Some("cfdr <cfdr@cryptofunk.test>".into());
    cfg.email.to = vec![
        "oncall@cryptofunk.test".into(),
        "ops@cryptofunk.test".into(),
    ];
    cfg
}

#[tokio::test]
async fn email_is_delivered_over_smtp_with_retries() {
    let (port, messages) = smtp_sink(1).await;
    let n = Notifier::new(&email_config(port), Credentials::default()).unwrap();
    let j = support::memory_journal("smtp");
    let a = support::open(&j, Severity::P3, at("16:00")).await;
    let d = n.deliver(&a.incident, &a.event).await;
    assert_eq!(d.len(), 1);
    assert_eq!(d[0].channel, Channel::Email);
    assert_eq!(
        d[0].outcome,
        Outcome::Sent { attempts: 2 },
        "one 451, then accepted"
    );
    let msgs = messages.lock().unwrap().clone();
    assert_eq!(msgs.len(), 1);
    let m = &msgs[0].replace("\n ", " "); // unfold headers
    assert!(
        m.contains(
            "Subject: [P3] INC-20251106-001 Database connection failures: Incident opened (P3)"
        ),
        "{m}"
    );
    assert!(
        m.contains("To: oncall@cryptofunk.test, ops@cryptofunk.test"),
        "{m}"
    );
    assert!(m.contains("Severity: P3 (Low)"), "{m}");
}

#[tokio::test]
async fn a_refusing_smtp_server_becomes_a_timeline_entry() {
    let (port, messages) = smtp_sink(usize::MAX).await;
    let n = Notifier::new(&email_config(port), Credentials::default()).unwrap();
    let j = support::memory_journal("smtp-fail");
    let a = support::open(&j, Severity::P3, at("16:00")).await;
    let (inc, d, _) = announce(&j, &n, a.incident, &a.event, || at("16:01")).await;
    assert!(
        matches!(&d[0].outcome, Outcome::Failed { attempts: 3, error } if error.contains("try again later")),
        "{d:?}"
    );
    assert!(messages.lock().unwrap().is_empty());
    let last = inc.timeline.last().unwrap();
    assert_eq!(last.kind, EntryKind::NotificationFailed);
    assert!(last.text.contains("via email"));
    // The record itself was stored before any delivery was tried.
    assert_eq!(j.load(&inc.id).await.unwrap().events.len(), 2);
}
