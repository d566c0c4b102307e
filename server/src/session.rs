//! Dashboard sessions: signing in with a token gives the browser a random session id in an
//! HttpOnly, SameSite=Strict cookie; the server maps the id to the token's role. The token
//! itself never goes into the cookie, and a session ends at sign-out, after
//! [`SESSION_LIFETIME`], or when the server stops.

use crate::auth::Role;
use axum::http::{header, HeaderMap};
use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// The cookie's name.
pub(crate) const COOKIE: &str = "weft_session";
/// How long a session lasts.
pub(crate) const SESSION_LIFETIME: Duration = Duration::from_secs(12 * 3600);
/// The most sessions kept at once; beyond it the oldest is dropped.
const MAX_SESSIONS: usize = 10_000;

/// The live sessions: id → (role, expiry).
#[derive(Default)]
pub(crate) struct Sessions {
    map: Mutex<HashMap<String, (Role, Instant)>>,
}

impl Sessions {
    /// A new session for `role`; returns its id (64 hex digits from the OS's random source).
    pub(crate) fn create(&self, role: Role) -> String {
        let id = format!(
            "{}{}",
            uuid::Uuid::new_v4().simple(),
            uuid::Uuid::new_v4().simple()
        );
        let now = Instant::now();
        let mut map = self.map.lock().unwrap_or_else(|e| e.into_inner());
        if map.len() >= MAX_SESSIONS {
            map.retain(|_, (_, expires)| *expires > now);
        }
        if map.len() >= MAX_SESSIONS {
            let oldest = map.iter().min_by_key(|(_, v)| v.1).map(|(k, _)| k.clone());
            if let Some(k) = oldest {
                map.remove(&k);
            }
        }
        map.insert(id.clone(), (role, now + SESSION_LIFETIME));
        id
    }

    /// The role of the session the request's cookie names, if it is live.
    pub(crate) fn role(&self, headers: &HeaderMap) -> Option<Role> {
        let id = cookie(headers)?;
        let mut map = self.map.lock().unwrap_or_else(|e| e.into_inner());
        match map.get(id) {
            Some((role, expires)) if *expires > Instant::now() => Some(*role),
            Some(_) => {
                map.remove(id);
                None
            }
            None => None,
        }
    }

    /// Ends the session the request's cookie names.
    pub(crate) fn remove(&self, headers: &HeaderMap) {
        if let Some(id) = cookie(headers) {
            self.map
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .remove(id);
        }
    }
}

/// The session id in the request's `Cookie` headers.
pub(crate) fn cookie(headers: &HeaderMap) -> Option<&str> {
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|pair| pair.trim().split_once('='))
        .find(|(name, _)| *name == COOKIE)
        .map(|(_, value)| value)
        .filter(|v| v.len() == 64 && v.bytes().all(|b| b.is_ascii_hexdigit()))
}

/// The `Set-Cookie` value giving the browser session `id`.
pub(crate) fn set_cookie(id: &str) -> String {
    format!(
        "{COOKIE}={id}; HttpOnly; SameSite=Strict; Path=/; Max-Age={}",
        SESSION_LIFETIME.as_secs()
    )
}

/// The `Set-Cookie` value that removes the session cookie.
pub(crate) fn clear_cookie() -> String {
    format!("{COOKIE}=; HttpOnly; SameSite=Strict; Path=/; Max-Age=0")
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::http::HeaderValue;

    #[test]
    fn a_session_maps_its_cookie_to_its_role_until_removed() {
        let sessions = Sessions::default();
        let id = sessions.create(Role::Reader);
        let mut headers = HeaderMap::new();
        let cookie = format!("other=1; {COOKIE}={id}");
        headers.insert(header::COOKIE, HeaderValue::from_str(&cookie).unwrap());
        assert_eq!(sessions.role(&headers), Some(Role::Reader));
        sessions.remove(&headers);
        assert_eq!(sessions.role(&headers), None);
        assert!(set_cookie(&id).contains("HttpOnly; SameSite=Strict; Path=/"));
    }

    #[test]
    fn garbage_cookies_name_no_session() {
        let mut headers = HeaderMap::new();
        headers.insert(header::COOKIE, HeaderValue::from_static("weft_session=x"));
        assert_eq!(cookie(&headers), None);
    }
}
