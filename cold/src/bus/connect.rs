//! How every Redis client of the project connects: one [`RedisEndpoint`] built from the
//! config's `redis` section and handed to the publisher, the stream writer, the lifecycle
//! events, the readers and `maxx tail`.
//!
//! It carries the URL, a password read from an environment variable (`redis.password_env`, so
//! that no secret sits in the config file), the PEM root certificates of a private CA for
//! `rediss://` (`redis.tls_ca_file`), the connect and response timeouts, and the reconnect
//! backoff (first delay, doubled on every failure up to the cap).
//!
//! Secrets never reach a log or an error: [`RedisEndpoint`]'s `Debug` hides the password, and
//! every message that shows a URL shows [`redacted_url`], which masks the URL's user info and
//! any `pass=` parameter.

use std::fmt;
use std::time::Duration;

use redis::{AsyncConnectionConfig, IntoConnectionInfo};
use rustls::pki_types::CertificateDer;
use rustls::pki_types::pem::PemObject;

use crate::config::RedisConfig;

/// Default `redis.connect_timeout_ms`.
pub const CONNECT_TIMEOUT: Duration = Duration::from_millis(2000);
/// Default `redis.response_timeout_ms`.
pub const RESPONSE_TIMEOUT: Duration = Duration::from_millis(5000);
/// Default `redis.reconnect_min_ms`.
pub const RECONNECT_MIN: Duration = Duration::from_millis(50);
/// Default `redis.reconnect_max_ms`.
pub const RECONNECT_MAX: Duration = Duration::from_millis(5000);

/// Where and how to connect to Redis. Cheap to clone; `Debug` never shows the password.
#[derive(Clone, PartialEq, Eq)]
pub struct RedisEndpoint {
    /// `redis://[:password@]host:port[/db]`, `rediss://…` for TLS, or `unix:///path`.
    pub url: String,
    /// The password, set on the connection in place of any in the URL.
    pub password: Option<String>,
    /// PEM root certificates trusted for `rediss://` instead of the system's.
    pub tls_root_ca: Option<Vec<u8>>,
    /// Longest wait to connect (TCP, TLS and the handshake).
    pub connect_timeout: Duration,
    /// Longest wait for a reply before the connection counts as lost.
    pub response_timeout: Duration,
    /// First delay before reconnecting.
    pub reconnect_min: Duration,
    /// Largest such delay.
    pub reconnect_max: Duration,
}

impl RedisEndpoint {
    /// `url` with no password, no private CA, and the default timeouts and backoff.
    pub fn new(url: impl Into<String>) -> Self {
        Self {
            url: url.into(),
            password: None,
            tls_root_ca: None,
            connect_timeout: CONNECT_TIMEOUT,
            response_timeout: RESPONSE_TIMEOUT,
            reconnect_min: RECONNECT_MIN,
            reconnect_max: RECONNECT_MAX,
        }
    }

    /// The endpoint of the config's `redis` section: reads the password from the environment
    /// variable named by `redis.password_env` and the CA file named by `redis.tls_ca_file`
    /// (already resolved against the config's directory). Errors name the key.
    pub fn from_config(redis: &RedisConfig) -> Result<Self, String> {
        let password = match &redis.password_env {
            None => None,
            Some(var) => match std::env::var(var) {
                Ok(p) if !p.is_empty() => Some(p),
                Ok(_) => return Err(format!("redis.password_env: environment variable {var} is empty")),
                Err(std::env::VarError::NotPresent) => {
                    return Err(format!("redis.password_env: environment variable {var} is not set"));
                }
                Err(std::env::VarError::NotUnicode(_)) => {
                    return Err(format!("redis.password_env: environment variable {var} is not UTF-8"));
                }
            },
        };
        let tls_root_ca = match &redis.tls_ca_file {
            None => None,
            Some(path) => {
                let pem = std::fs::read(path)
                    .map_err(|e| format!("redis.tls_ca_file {}: cannot read it: {e}", path.display()))?;
                check_pem(&pem).map_err(|e| format!("redis.tls_ca_file {}: {e}", path.display()))?;
                Some(pem)
            }
        };
        Ok(Self {
            url: redis.url.clone(),
            password,
            tls_root_ca,
            connect_timeout: redis.connect_timeout,
            response_timeout: redis.response_timeout,
            reconnect_min: redis.reconnect_min,
            reconnect_max: redis.reconnect_max,
        })
    }

    /// The URL for messages: user info and `pass=` masked.
    pub fn redacted_url(&self) -> String {
        redacted_url(&self.url)
    }

    /// The client (no connection is made yet). For `rediss://` with a private CA, only that
    /// CA's certificates are added to the trusted roots.
    pub fn client(&self) -> Result<redis::Client, String> {
        let bad = |e: redis::RedisError| format!("redis url {}: {e}", self.redacted_url());
        let mut info = self.url.as_str().into_connection_info().map_err(bad)?;
        if let Some(p) = &self.password {
            info.redis.password = Some(p.clone());
        }
        match &self.tls_root_ca {
            Some(pem) => {
                if !self.url.starts_with("rediss://") {
                    return Err(format!(
                        "redis url {}: a TLS root CA needs a rediss:// URL",
                        self.redacted_url()
                    ));
                }
                let certs = redis::TlsCertificates {
                    client_tls: None,
                    root_cert: Some(pem.clone()),
                };
                redis::Client::build_with_tls(info, certs).map_err(bad)
            }
            None => redis::Client::open(info).map_err(bad),
        }
    }

    /// Connection settings with this endpoint's timeouts.
    pub fn connection_config(&self) -> AsyncConnectionConfig {
        AsyncConnectionConfig::new()
            .set_connection_timeout(self.connect_timeout)
            .set_response_timeout(self.response_timeout)
    }

    /// Checks the timeouts and the backoff.
    pub fn validate(&self) -> Result<(), String> {
        for (name, d) in [
            ("connect_timeout", self.connect_timeout),
            ("response_timeout", self.response_timeout),
            ("reconnect_min", self.reconnect_min),
        ] {
            if d.is_zero() {
                return Err(format!("{name} must be above zero"));
            }
        }
        if self.reconnect_max < self.reconnect_min {
            return Err("reconnect_max must not be below reconnect_min".to_string());
        }
        Ok(())
    }

    /// The delay after `current`: doubled, at most [`reconnect_max`](Self::reconnect_max).
    pub fn next_backoff(&self, current: Duration) -> Duration {
        (current * 2).min(self.reconnect_max)
    }
}

impl fmt::Debug for RedisEndpoint {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RedisEndpoint")
            .field("url", &self.redacted_url())
            .field("password", &self.password.as_ref().map(|_| "***"))
            .field("tls_root_ca", &self.tls_root_ca.as_ref().map(|pem| pem.len()))
            .field("connect_timeout", &self.connect_timeout)
            .field("response_timeout", &self.response_timeout)
            .field("reconnect_min", &self.reconnect_min)
            .field("reconnect_max", &self.reconnect_max)
            .finish()
    }
}

impl Default for RedisEndpoint {
    /// `redis://127.0.0.1:6379`, the default of `redis.url`.
    fn default() -> Self {
        Self::new("redis://127.0.0.1:6379")
    }
}

impl From<&str> for RedisEndpoint {
    fn from(url: &str) -> Self {
        Self::new(url)
    }
}

impl From<String> for RedisEndpoint {
    fn from(url: String) -> Self {
        Self::new(url)
    }
}

impl From<&String> for RedisEndpoint {
    fn from(url: &String) -> Self {
        Self::new(url.as_str())
    }
}

impl From<&RedisEndpoint> for RedisEndpoint {
    fn from(e: &RedisEndpoint) -> Self {
        e.clone()
    }
}

/// `url` with its user info (`user:password@`) replaced by `***@` and the value of any
/// `pass=` query parameter by `***`, for logs and errors.
pub fn redacted_url(url: &str) -> String {
    let mut out = match url.split_once("://") {
        Some((scheme, rest)) => {
            // The authority ends at the first `/`, `?` or `#`; user info ends at its last `@`.
            let end = rest.find(['/', '?', '#']).unwrap_or(rest.len());
            match rest[..end].rfind('@') {
                Some(at) => format!("{scheme}://***@{}", &rest[at + 1..]),
                None => url.to_string(),
            }
        }
        None => url.to_string(),
    };
    if let Some(q) = out.find('?') {
        let query = out[q + 1..]
            .split('&')
            .map(|kv| match kv.split_once('=') {
                Some((k, _)) if k == "pass" || k == "password" => format!("{k}=***"),
                _ => kv.to_string(),
            })
            .collect::<Vec<_>>()
            .join("&");
        out.truncate(q + 1);
        out.push_str(&query);
    }
    out
}

/// `true` if `url` carries a password: `user:password@` or `:password@` in its user info, or
/// a `pass=` parameter. A user name alone (`redis://user@host`) is not one.
pub fn url_has_password(url: &str) -> bool {
    let in_userinfo = url.split_once("://").is_some_and(|(_, rest)| {
        let end = rest.find(['/', '?', '#']).unwrap_or(rest.len());
        rest[..end]
            .rfind('@')
            .and_then(|at| rest[..at].split_once(':'))
            .is_some_and(|(_, password)| !password.is_empty())
    });
    let in_query = url.split_once('?').is_some_and(|(_, q)| {
        q.split('&')
            .any(|kv| matches!(kv.split_once('='), Some(("pass" | "password", v)) if !v.is_empty()))
    });
    in_userinfo || in_query
}

/// One line on a connection failure, saying what to fix when Redis or TLS named the cause.
pub fn describe(e: &redis::RedisError) -> String {
    let text = e.to_string();
    let lower = text.to_ascii_lowercase();
    let hint = if e.kind() == redis::ErrorKind::AuthenticationFailed
        || matches!(e.code(), Some("WRONGPASS" | "NOAUTH"))
        || lower.contains("wrongpass")
        || lower.contains("noauth")
    {
        "authentication failed (check the password: redis.password_env or the URL)"
    } else if lower.contains("certificate") || lower.contains("unknownissuer") || lower.contains("handshake") {
        "TLS certificate not trusted (check redis.tls_ca_file)"
    } else {
        return text;
    };
    format!("{hint}: {text}")
}

/// At least one PEM certificate, and nothing that does not parse.
fn check_pem(pem: &[u8]) -> Result<(), String> {
    let mut n = 0;
    for cert in CertificateDer::pem_slice_iter(pem) {
        cert.map_err(|e| format!("not a PEM certificate file: {e:?}"))?;
        n += 1;
    }
    if n == 0 {
        return Err("not a PEM certificate file: no -----BEGIN CERTIFICATE----- block".to_string());
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls_are_redacted() {
        assert_eq!(redacted_url("redis://127.0.0.1:6379"), "redis://127.0.0.1:6379");
        assert_eq!(redacted_url("redis://:pw@h:1/0"), "redis://***@h:1/0");
        assert_eq!(redacted_url("rediss://user:p@ss@h:1"), "rediss://***@h:1");
        assert_eq!(
            redacted_url("unix:///run/r.sock?db=1&pass=secret"),
            "unix:///run/r.sock?db=1&pass=***"
        );
        assert!(url_has_password("redis://:pw@h:1"));
        assert!(url_has_password("redis://u:pw@h:1"));
        assert!(url_has_password("unix:///r.sock?pass=pw"));
        assert!(!url_has_password("redis://h:1/2"));
        assert!(!url_has_password("redis://user@h:1"));
        assert!(!url_has_password("redis://:@h:1"));
    }

    #[test]
    fn debug_never_shows_the_password() {
        let e = RedisEndpoint {
            password: Some("hunter2".to_string()),
            ..RedisEndpoint::new("redis://:inurl@127.0.0.1:1")
        };
        let shown = format!("{e:?}");
        assert!(!shown.contains("hunter2") && !shown.contains("inurl"), "{shown}");
        assert!(shown.contains("***"), "{shown}");
    }

    #[test]
    fn the_client_takes_the_password_and_refuses_a_ca_without_tls() {
        let e = RedisEndpoint {
            password: Some("pw".to_string()),
            ..RedisEndpoint::new("redis://127.0.0.1:1")
        };
        let c = e.client().unwrap();
        assert_eq!(c.get_connection_info().redis.password.as_deref(), Some("pw"));
        let with_ca = RedisEndpoint {
            tls_root_ca: Some(b"x".to_vec()),
            ..RedisEndpoint::new("redis://:secret@127.0.0.1:1")
        };
        let err = with_ca.client().unwrap_err();
        assert!(err.contains("rediss://") && !err.contains("secret"), "{err}");
        assert!(RedisEndpoint::new("http://x").client().is_err());
    }

    #[test]
    fn pem_is_checked() {
        assert!(check_pem(b"hello").is_err());
        let cert = rcgen::generate_simple_self_signed(vec!["localhost".to_string()]).unwrap();
        assert!(check_pem(cert.cert.pem().as_bytes()).is_ok());
    }

    #[test]
    fn backoff_doubles_up_to_the_cap() {
        let e = RedisEndpoint {
            reconnect_min: Duration::from_millis(50),
            reconnect_max: Duration::from_millis(120),
            ..RedisEndpoint::default()
        };
        assert_eq!(e.next_backoff(e.reconnect_min), Duration::from_millis(100));
        assert_eq!(e.next_backoff(Duration::from_millis(100)), Duration::from_millis(120));
        assert!(e.validate().is_ok());
        let inverted = RedisEndpoint {
            reconnect_max: Duration::from_millis(10),
            ..e
        };
        assert!(inverted.validate().is_err());
    }
}
