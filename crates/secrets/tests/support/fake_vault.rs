//! FakeVaultKv2: a small HTTP server, inside the tests, that implements the
//! documented Vault KV v2 endpoints cfdr uses, and nothing else:
//!
//! - `LIST /v1/<mount>/metadata/<path>` (also `GET ...?list=true`)
//! - `GET /v1/<mount>/data/<path>` (404 with metadata when the current
//!   version is deleted)
//! - `GET /v1/<mount>/metadata/<path>` (`current_version`)
//! - `POST /v1/<mount>/data/<path>` with `options.cas`
//!
//! No Vault server can be installed on the test machine; this stands in
//! for one on 127.0.0.1. It checks `X-Vault-Token` and records every
//! request line and the namespace header.
#![allow(dead_code, clippy::unwrap_used)]

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::sync::{Arc, Mutex};

use serde_json::{Value, json};

#[derive(Default)]
struct State {
    /// path (without mount) -> versions (None: deleted).
    secrets: BTreeMap<String, Vec<Option<Value>>>,
    requests: Vec<String>,
    namespaces: Vec<String>,
    /// Before the next write to this path, another client writes first.
    race_next_write: Option<String>,
}

/// A fake Vault KV v2 on 127.0.0.1 with one mount.
#[derive(Clone)]
pub(crate) struct FakeVaultKv2 {
    pub(crate) addr: String,
    pub(crate) token: String,
    mount: String,
    state: Arc<Mutex<State>>,
}

impl FakeVaultKv2 {
    pub(crate) fn start(mount: &str, token: &str) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = format!("http://{}", listener.local_addr().unwrap());
        let me = Self {
            addr,
            token: token.into(),
            mount: mount.into(),
            state: Arc::default(),
        };
        let server = me.clone();
        std::thread::spawn(move || {
            for stream in listener.incoming().flatten() {
                let s = server.clone();
                std::thread::spawn(move || s.serve(stream));
            }
        });
        me
    }

    /// Writes a new version directly (test setup).
    pub(crate) fn put(&self, path: &str, data: Value) {
        let mut st = self.state.lock().unwrap();
        st.secrets.entry(path.into()).or_default().push(Some(data));
    }

    /// Soft-deletes the current version (test setup).
    pub(crate) fn delete_current(&self, path: &str) {
        let mut st = self.state.lock().unwrap();
        if let Some(last) = st.secrets.get_mut(path).and_then(|v| v.last_mut()) {
            *last = None;
        }
    }

    /// The current data and version of `path`.
    pub(crate) fn current(&self, path: &str) -> Option<(Value, u64)> {
        let st = self.state.lock().unwrap();
        let versions = st.secrets.get(path)?;
        Some((versions.last()?.clone()?, versions.len() as u64))
    }

    pub(crate) fn requests(&self) -> Vec<String> {
        self.state.lock().unwrap().requests.clone()
    }

    pub(crate) fn namespaces(&self) -> Vec<String> {
        self.state.lock().unwrap().namespaces.clone()
    }

    pub(crate) fn race_next_write(&self, path: &str) {
        self.state.lock().unwrap().race_next_write = Some(path.into());
    }

    fn serve(&self, stream: TcpStream) {
        let mut reader = BufReader::new(stream.try_clone().unwrap());
        let mut line = String::new();
        if reader.read_line(&mut line).unwrap_or(0) == 0 {
            return;
        }
        let mut parts = line.split_whitespace();
        let method = parts.next().unwrap_or_default().to_owned();
        let target = parts.next().unwrap_or_default().to_owned();
        let (mut token, mut length, mut namespace) = (String::new(), 0usize, None);
        loop {
            let mut h = String::new();
            reader.read_line(&mut h).unwrap();
            let h = h.trim_end();
            if h.is_empty() {
                break;
            }
            let (k, v) = h.split_once(':').unwrap();
            match k.to_ascii_lowercase().as_str() {
                "x-vault-token" => token = v.trim().into(),
                "x-vault-namespace" => namespace = Some(v.trim().to_owned()),
                "content-length" => length = v.trim().parse().unwrap(),
                _ => {}
            }
        }
        let mut body = vec![0; length];
        reader.read_exact(&mut body).unwrap();
        let (status, reply) = self.handle(&method, &target, &token, namespace, &body);
        let text = reply.to_string();
        let mut stream = stream;
        let _ = write!(
            stream,
            "HTTP/1.1 {status} X\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{text}",
            text.len()
        );
    }

    fn handle(
        &self,
        method: &str,
        target: &str,
        token: &str,
        ns: Option<String>,
        body: &[u8],
    ) -> (u16, Value) {
        let mut st = self.state.lock().unwrap();
        st.requests.push(format!("{method} {target}"));
        st.namespaces.extend(ns);
        if token != self.token {
            return (403, json!({"errors": ["permission denied"]}));
        }
        let (path, query) = target.split_once('?').unwrap_or((target, ""));
        let prefix = format!("/v1/{}/", self.mount);
        let Some(rest) = path.strip_prefix(&prefix) else {
            return (404, json!({"errors": ["no handler for route"]}));
        };
        let (kind, secret) = rest.split_once('/').unwrap_or((rest, ""));
        let secret = secret.trim_end_matches('/').to_owned();
        let list = method == "LIST" || (method == "GET" && query.contains("list=true"));
        match (kind, method) {
            ("metadata", _) if list => {
                let folder = if secret.is_empty() {
                    String::new()
                } else {
                    format!("{secret}/")
                };
                let mut keys: Vec<String> = st
                    .secrets
                    .keys()
                    .filter_map(|k| k.strip_prefix(&folder))
                    .filter(|r| !r.is_empty())
                    .map(|r| match r.split_once('/') {
                        Some((dir, _)) => format!("{dir}/"),
                        None => r.to_owned(),
                    })
                    .collect();
                keys.dedup();
                if keys.is_empty() {
                    return (404, json!({"errors": []}));
                }
                (200, json!({"data": {"keys": keys}}))
            }
            ("metadata", "GET") => match st.secrets.get(&secret) {
                None => (404, json!({"errors": []})),
                Some(v) => (
                    200,
                    json!({"data": {"current_version": v.len(), "oldest_version": 1, "max_versions": 0, "cas_required": false}}),
                ),
            },
            ("data", "GET") => match st.secrets.get(&secret) {
                None => (404, json!({"errors": []})),
                Some(v) => {
                    let meta = json!({"version": v.len(), "destroyed": false, "created_time": "2026-01-01T00:00:00Z"});
                    match v.last().unwrap() {
                        Some(data) => (200, json!({"data": {"data": data, "metadata": meta}})),
                        None => (404, json!({"data": {"data": null, "metadata": meta}})),
                    }
                }
            },
            ("data", "POST" | "PUT") => {
                let req: Value = serde_json::from_slice(body).unwrap();
                if st.race_next_write.as_deref() == Some(secret.as_str()) {
                    st.race_next_write = None;
                    st.secrets
                        .entry(secret.clone())
                        .or_default()
                        .push(Some(json!({"raced": "yes"})));
                }
                let current = st.secrets.get(&secret).map_or(0, |v| v.len() as u64);
                if req["options"]["cas"]
                    .as_u64()
                    .is_some_and(|cas| cas != current)
                {
                    return (
                        400,
                        json!({"errors": ["check-and-set parameter did not match the current version"]}),
                    );
                }
                st.secrets
                    .entry(secret)
                    .or_default()
                    .push(Some(req["data"].clone()));
                (
                    200,
                    json!({"data": {"version": current + 1, "created_time": "2026-01-01T00:00:00Z"}}),
                )
            }
            _ => (405, json!({"errors": ["unsupported"]})),
        }
    }
}
