//! Web UI login against Carbonio's directory: a simple bind as the user
//! (the DN from a template), then the role from the user's own entry:
//! `zimbraIsAdminAccount: TRUE` (Carbonio's admins) or a `memberOf` among
//! the admin groups makes an admin; a `memberOf` among the viewer groups
//! (or any bound user, when none is configured) a viewer.

use super::{Principal, Role};
use carbonio_collector::config::LdapAuthConfig;
use ldap3::{dn_escape, LdapConn, LdapConnSettings, Scope, SearchEntry};

#[derive(Debug)]
pub struct LdapLogin {
    config: LdapAuthConfig,
    tls: Option<std::sync::Arc<rustls::ClientConfig>>,
}

#[derive(Debug, thiserror::Error)]
pub enum LdapLoginError {
    #[error("LDAP CA file: {0}")]
    Ca(String),
    #[error("LDAP server {url}: {message}")]
    Server { url: String, message: String },
}

impl LdapLogin {
    pub fn new(config: LdapAuthConfig) -> Result<LdapLogin, LdapLoginError> {
        let tls = config
            .ca_file
            .as_deref()
            .map(carbonio_exporters::tls::client_config)
            .transpose()
            .map_err(|e| LdapLoginError::Ca(e.to_string()))?;
        Ok(LdapLogin { config, tls })
    }

    /// `Ok(None)` for wrong credentials or a user with no role; `Err` when
    /// the server cannot be asked.
    pub fn login(&self, user: &str, password: &str) -> Result<Option<Principal>, LdapLoginError> {
        // An empty password is an anonymous bind that "succeeds".
        if user.is_empty() || password.is_empty() {
            return Ok(None);
        }
        let url = &self.config.url;
        let server = |e: ldap3::LdapError| LdapLoginError::Server {
            url: url.clone(),
            message: e.to_string(),
        };
        let mut settings = LdapConnSettings::new()
            .set_conn_timeout(self.config.timeout.0)
            .set_starttls(self.config.starttls);
        if let Some(cfg) = &self.tls {
            settings = settings.set_config(cfg.clone());
        }
        let mut conn = LdapConn::with_settings(settings, url).map_err(server)?;
        let dn = self.config.user_dn.replace("{user}", &dn_escape(user));
        let bind = conn
            .with_timeout(self.config.timeout.0)
            .simple_bind(&dn, password)
            .map_err(server)?;
        // 49: invalidCredentials.
        if bind.rc == 49 {
            return Ok(None);
        }
        bind.success().map_err(server)?;
        let (entries, _) = conn
            .with_timeout(self.config.timeout.0)
            .search(
                &dn,
                Scope::Base,
                "(objectClass=*)",
                vec!["memberOf", "zimbraIsAdminAccount"],
            )
            .and_then(|r| r.success())
            .map_err(server)?;
        let _ = conn.unbind();
        let Some(entry) = entries.into_iter().next().map(SearchEntry::construct) else {
            return Ok(None);
        };
        Ok(self.role_of(&entry).map(|role| Principal::new(user, role)))
    }

    fn role_of(&self, entry: &SearchEntry) -> Option<Role> {
        let values = |attr: &str| -> Vec<String> {
            entry
                .attrs
                .iter()
                .find(|(k, _)| k.eq_ignore_ascii_case(attr))
                .map(|(_, v)| v.clone())
                .unwrap_or_default()
        };
        let groups = values("memberOf");
        let member = |list: &[String]| {
            groups
                .iter()
                .any(|g| list.iter().any(|l| l.eq_ignore_ascii_case(g)))
        };
        let carbonio_admin = values("zimbraIsAdminAccount")
            .iter()
            .any(|v| v.eq_ignore_ascii_case("TRUE"));
        if carbonio_admin || member(&self.config.admin_groups) {
            Some(Role::Admin)
        } else if self.config.viewer_groups.is_empty() || member(&self.config.viewer_groups) {
            Some(Role::Viewer)
        } else {
            None
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    fn login(admin_groups: &[&str], viewer_groups: &[&str]) -> LdapLogin {
        LdapLogin::new(LdapAuthConfig {
            url: "ldap://127.0.0.1:1".into(),
            user_dn: "uid={user},ou=people,dc=example,dc=com".into(),
            starttls: false,
            ca_file: None,
            admin_groups: admin_groups.iter().map(|s| s.to_string()).collect(),
            viewer_groups: viewer_groups.iter().map(|s| s.to_string()).collect(),
            timeout: carbonio_collector::config::Dur(std::time::Duration::from_secs(1)),
        })
        .unwrap()
    }

    fn entry(attrs: &[(&str, &[&str])]) -> SearchEntry {
        SearchEntry {
            dn: "uid=x".into(),
            attrs: attrs
                .iter()
                .map(|(k, v)| (k.to_string(), v.iter().map(|s| s.to_string()).collect()))
                .collect::<HashMap<_, _>>(),
            bin_attrs: HashMap::new(),
        }
    }

    #[test]
    fn roles_from_the_entry() {
        let l = login(
            &["cn=Admins,dc=example,dc=com"],
            &["cn=ops,dc=example,dc=com"],
        );
        let carbonio_admin = entry(&[("zimbraIsAdminAccount", &["TRUE"])]);
        assert_eq!(l.role_of(&carbonio_admin), Some(Role::Admin));
        let group_admin = entry(&[("memberOf", &["cn=admins,dc=example,dc=com"])]);
        assert_eq!(l.role_of(&group_admin), Some(Role::Admin));
        let viewer = entry(&[("memberOf", &["cn=ops,dc=example,dc=com"])]);
        assert_eq!(l.role_of(&viewer), Some(Role::Viewer));
        assert_eq!(l.role_of(&entry(&[])), None);
        assert_eq!(login(&[], &[]).role_of(&entry(&[])), Some(Role::Viewer));
    }

    #[test]
    fn an_empty_password_never_binds() {
        assert!(login(&[], &[]).login("admin", "").unwrap().is_none());
    }
}
