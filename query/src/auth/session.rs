//! Web UI sessions: a random id in an HttpOnly cookie, a CSRF token the
//! page sends back in `X-CSRF-Token` on every state-changing request, and
//! an idle timeout. Kept in memory: a restart logs everybody out.
//!
//! Failed logins are limited per user name (brute force against one
//! account) and in all (spraying many): over the limit, logins are refused
//! until the window has passed, whatever the password.

use super::{random_password, Principal};
use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// Failures allowed per user name, and in all, per window.
pub const FAILURES_PER_USER: usize = 5;
pub const FAILURES_IN_ALL: usize = 100;
pub const FAILURE_WINDOW: Duration = Duration::from_secs(300);
/// Sessions kept at most (the oldest go first).
const MAX_SESSIONS: usize = 10_000;

#[derive(Debug, Clone, PartialEq)]
pub struct Session {
    pub principal: Principal,
    pub csrf: String,
    last_used: Instant,
}

#[derive(Debug)]
pub struct Sessions {
    idle: Mutex<Duration>,
    live: Mutex<HashMap<String, Session>>,
    failures: Mutex<Vec<(Instant, String)>>,
}

impl Default for Sessions {
    fn default() -> Self {
        Sessions {
            idle: Mutex::new(Duration::from_secs(12 * 3600)),
            live: Mutex::default(),
            failures: Mutex::default(),
        }
    }
}

impl Sessions {
    pub fn set_idle_timeout(&self, idle: Duration) {
        *self.idle.lock().unwrap_or_else(|p| p.into_inner()) = idle;
    }

    pub fn idle_timeout(&self) -> Duration {
        *self.idle.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// A new session: (id for the cookie, the session).
    pub fn create(&self, principal: Principal) -> std::io::Result<(String, Session)> {
        let id = format!("{}{}", random_password()?, random_password()?);
        let session = Session {
            principal,
            csrf: random_password()?,
            last_used: Instant::now(),
        };
        let mut live = self.live.lock().unwrap_or_else(|p| p.into_inner());
        if live.len() >= MAX_SESSIONS {
            if let Some(oldest) = live
                .iter()
                .min_by_key(|(_, s)| s.last_used)
                .map(|(k, _)| k.clone())
            {
                live.remove(&oldest);
            }
        }
        live.insert(id.clone(), session.clone());
        Ok((id, session))
    }

    /// The live session of a cookie value; using it restarts its idle time.
    pub fn get(&self, id: &str) -> Option<Session> {
        let idle = self.idle_timeout();
        let mut live = self.live.lock().unwrap_or_else(|p| p.into_inner());
        let now = Instant::now();
        match live.get_mut(id) {
            Some(s) if now.duration_since(s.last_used) <= idle => {
                s.last_used = now;
                Some(s.clone())
            }
            Some(_) => {
                live.remove(id);
                None
            }
            None => None,
        }
    }

    pub fn end(&self, id: &str) {
        self.live
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .remove(id);
    }

    /// Whether `user` may try to log in now.
    pub fn login_allowed(&self, user: &str) -> bool {
        let mut failures = self.failures.lock().unwrap_or_else(|p| p.into_inner());
        let now = Instant::now();
        failures.retain(|(at, _)| now.duration_since(*at) < FAILURE_WINDOW);
        failures.len() < FAILURES_IN_ALL
            && failures.iter().filter(|(_, u)| u == user).count() < FAILURES_PER_USER
    }

    pub fn login_failed(&self, user: &str) {
        self.failures
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .push((Instant::now(), user.to_string()));
    }
}

/// The session id a request's `Cookie` header carries.
pub fn id_in(headers: &axum::http::HeaderMap) -> Option<&str> {
    headers
        .get(axum::http::header::COOKIE)
        .and_then(|v| v.to_str().ok())
        .and_then(cookie_value)
}

/// The `cm_session` cookie's value in a `Cookie` header.
pub fn cookie_value(header: &str) -> Option<&str> {
    header
        .split(';')
        .filter_map(|c| c.trim().split_once('='))
        .find(|(k, _)| *k == COOKIE)
        .map(|(_, v)| v)
}

pub const COOKIE: &str = "cm_session";

#[cfg(test)]
mod tests {
    use super::*;
    use crate::auth::Role;

    #[test]
    fn sessions_expire_when_idle() {
        let s = Sessions::default();
        let (id, session) = s.create(Principal::new("ops", Role::Viewer)).unwrap();
        assert_eq!(s.get(&id).unwrap().csrf, session.csrf);
        assert!(s.get("other").is_none());
        s.set_idle_timeout(Duration::ZERO);
        std::thread::sleep(Duration::from_millis(5));
        assert!(s.get(&id).is_none());
    }

    #[test]
    fn failures_lock_one_user_out() {
        let s = Sessions::default();
        for _ in 0..FAILURES_PER_USER {
            assert!(s.login_allowed("admin"));
            s.login_failed("admin");
        }
        assert!(!s.login_allowed("admin"));
        assert!(s.login_allowed("ops"));
    }

    #[test]
    fn cookie_is_found_among_others() {
        assert_eq!(cookie_value("a=1; cm_session=xyz; b=2"), Some("xyz"));
        assert_eq!(cookie_value("a=1"), None);
    }
}
