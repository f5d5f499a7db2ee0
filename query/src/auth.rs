//! Who may use the API: local users with bcrypt or argon2 password hashes
//! (from the config and the data directory's `users.json`, where the first
//! start creates `admin`), bearer tokens stored as SHA-256 hashes, LDAP
//! simple bind for the web UI (`ldap`), and the web UI's sessions
//! (`session`). A verified credential is remembered by its SHA-256 so the
//! slow hash runs once per credential, not once per request. Each user and
//! token has a role: viewers read, admins also change things. Secrets are
//! never logged.

pub mod ldap;
pub mod session;

pub use carbonio_collector::config::Role;

use base64::Engine as _;
use sha2::{Digest, Sha256};
use std::collections::HashSet;
use std::path::Path;
use std::sync::Mutex;

#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct User {
    pub username: String,
    /// bcrypt (`$2b$…`, as `htpasswd -B` writes it) or argon2 (`$argon2id$…`).
    pub password_hash: String,
    #[serde(default)]
    pub role: Role,
}

#[derive(Debug, Clone, PartialEq, serde::Deserialize)]
pub struct Token {
    pub name: String,
    /// Hex SHA-256 of the token.
    pub sha256: String,
    #[serde(default)]
    pub role: Role,
}

#[derive(Debug, thiserror::Error)]
pub enum AuthError {
    #[error("{path}: {msg}")]
    Store { path: String, msg: String },
    #[error("hashing a password: {0}")]
    Hash(String),
}

/// Who a request was authenticated as.
#[derive(Debug, Clone, PartialEq)]
pub struct Principal {
    /// A user or token name.
    pub name: String,
    pub role: Role,
}

impl Principal {
    pub fn new(name: &str, role: Role) -> Principal {
        Principal {
            name: name.to_string(),
            role,
        }
    }
}

#[derive(Debug, Default)]
pub struct Auth {
    users: Vec<User>,
    tokens: Vec<Token>,
    verified: Mutex<HashSet<[u8; 32]>>,
    pub sessions: session::Sessions,
    pub ldap: Option<ldap::LdapLogin>,
}

/// The bootstrap password of `admin`, when freshly generated, to print once.
pub struct Bootstrap {
    pub generated_password: Option<String>,
}

const USERS_FILE: &str = "users.json";
const BCRYPT_COST: u32 = 10;
const MAX_REMEMBERED: usize = 10_000;

impl Auth {
    pub fn new(users: Vec<User>, tokens: Vec<Token>) -> Self {
        Auth {
            users,
            tokens,
            verified: Mutex::new(HashSet::new()),
            sessions: session::Sessions::default(),
            ldap: None,
        }
    }

    /// Users from the config plus `DATA/users.json`. With no user anywhere,
    /// creates `admin` with `admin_password` (CARBONIO_MONITOR_ADMIN_PASSWORD)
    /// or a random password returned for printing; a given password always
    /// replaces the stored admin hash.
    pub fn load(
        data: &Path,
        mut users: Vec<User>,
        tokens: Vec<Token>,
        admin_password: Option<&str>,
    ) -> Result<(Auth, Bootstrap), AuthError> {
        let path = data.join(USERS_FILE);
        let store_err = |msg: String| AuthError::Store {
            path: path.display().to_string(),
            msg,
        };
        let mut stored: Vec<User> = match std::fs::read(&path) {
            Ok(bytes) => serde_json::from_slice(&bytes).map_err(|e| store_err(e.to_string()))?,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Vec::new(),
            Err(e) => return Err(store_err(e.to_string())),
        };
        let mut generated = None;
        let needs_admin = users.is_empty() && stored.is_empty();
        if needs_admin || admin_password.is_some() {
            let password = match admin_password {
                Some(p) => p.to_string(),
                None => {
                    let p = random_password().map_err(|e| store_err(e.to_string()))?;
                    generated = Some(p.clone());
                    p
                }
            };
            let hash = hash_password(&password)?;
            stored.retain(|u| u.username != "admin");
            stored.push(User {
                username: "admin".into(),
                password_hash: hash,
                role: Role::Admin,
            });
            write_private(
                &path,
                &serde_json::to_vec_pretty(&stored).unwrap_or_default(),
            )
            .map_err(|e| store_err(e.to_string()))?;
        }
        users.extend(stored);
        Ok((
            Auth::new(users, tokens),
            Bootstrap {
                generated_password: generated,
            },
        ))
    }

    /// Checks an `Authorization` header value.
    pub fn check(&self, header: &str) -> Option<Principal> {
        let digest: [u8; 32] = Sha256::digest(header.as_bytes()).into();
        if let Some(token) = header.strip_prefix("Bearer ") {
            let hex = hex(&Sha256::digest(token.trim().as_bytes()));
            return self
                .tokens
                .iter()
                .find(|t| t.sha256.eq_ignore_ascii_case(&hex))
                .map(|t| Principal::new(&t.name, t.role));
        }
        let encoded = header.strip_prefix("Basic ")?;
        let decoded = base64::engine::general_purpose::STANDARD
            .decode(encoded.trim())
            .ok()?;
        let decoded = String::from_utf8(decoded).ok()?;
        let (name, password) = decoded.split_once(':')?;
        let user = self.users.iter().find(|u| u.username == name)?;
        let remembered = self.remembered(&digest);
        if remembered || verify_password(password, &user.password_hash) {
            if !remembered {
                self.remember(digest);
            }
            return Some(Principal::new(name, user.role));
        }
        None
    }

    /// A local user's password check (the web UI's login form): slow on
    /// purpose, never remembered.
    pub fn check_password(&self, name: &str, password: &str) -> Option<Principal> {
        let user = self.users.iter().find(|u| u.username == name)?;
        verify_password(password, &user.password_hash).then(|| Principal::new(name, user.role))
    }

    fn remembered(&self, digest: &[u8; 32]) -> bool {
        self.verified
            .lock()
            .map(|s| s.contains(digest))
            .unwrap_or(false)
    }

    fn remember(&self, digest: [u8; 32]) {
        if let Ok(mut s) = self.verified.lock() {
            if s.len() >= MAX_REMEMBERED {
                s.clear();
            }
            s.insert(digest);
        }
    }
}

/// bcrypt or argon2, by the hash's prefix.
fn verify_password(password: &str, hash: &str) -> bool {
    if hash.starts_with("$argon2") {
        use argon2::PasswordVerifier;
        return argon2::PasswordHash::new(hash).is_ok_and(|h| {
            argon2::Argon2::default()
                .verify_password(password.as_bytes(), &h)
                .is_ok()
        });
    }
    bcrypt::verify(password, hash).unwrap_or(false)
}

pub fn hash_password(password: &str) -> Result<String, AuthError> {
    bcrypt::hash(password, BCRYPT_COST).map_err(|e| AuthError::Hash(e.to_string()))
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// 18 random bytes, URL-safe base64.
pub fn random_password() -> std::io::Result<String> {
    use std::io::Read;
    let mut buf = [0u8; 18];
    std::fs::File::open("/dev/urandom")?.read_exact(&mut buf)?;
    Ok(base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(buf))
}

/// Writes a file readable by its owner only, replacing it atomically.
fn write_private(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir)?;
    }
    let tmp = path.with_extension("json.tmp");
    let mut f = std::fs::OpenOptions::new()
        .create(true)
        .write(true)
        .truncate(true)
        .mode(0o600)
        .open(&tmp)?;
    f.write_all(bytes)?;
    f.sync_all()?;
    std::fs::rename(&tmp, path)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn basic(user: &str, pass: &str) -> String {
        format!(
            "Basic {}",
            base64::engine::general_purpose::STANDARD.encode(format!("{user}:{pass}"))
        )
    }

    #[test]
    fn first_start_creates_admin_and_later_starts_keep_it() {
        let dir = tempfile::tempdir().unwrap();
        let (auth, boot) = Auth::load(dir.path(), vec![], vec![], None).unwrap();
        let password = boot.generated_password.unwrap();
        assert_eq!(
            auth.check(&basic("admin", &password)),
            Some(Principal::new("admin", Role::Admin))
        );
        assert_eq!(auth.check(&basic("admin", "wrong")), None);
        let (again, boot) = Auth::load(dir.path(), vec![], vec![], None).unwrap();
        assert!(boot.generated_password.is_none());
        assert!(again.check(&basic("admin", &password)).is_some());
        let text = std::fs::read_to_string(dir.path().join(USERS_FILE)).unwrap();
        assert!(!text.contains(&password), "the password is stored hashed");
    }

    #[test]
    fn tokens_match_by_hash() {
        let sha = hex(&Sha256::digest(b"s3cret-token"));
        let auth = Auth::new(
            vec![],
            vec![Token {
                name: "grafana".into(),
                sha256: sha,
                role: Role::Viewer,
            }],
        );
        assert_eq!(
            auth.check("Bearer s3cret-token"),
            Some(Principal::new("grafana", Role::Viewer))
        );
        assert_eq!(auth.check("Bearer other"), None);
        assert_eq!(auth.check("Digest x"), None);
    }

    #[test]
    fn argon2_hashes_verify() {
        use argon2::password_hash::{PasswordHasher, SaltString};
        let salt = SaltString::encode_b64(b"carbonio-salt-16").unwrap();
        let hash = argon2::Argon2::default()
            .hash_password(b"pw", &salt)
            .unwrap()
            .to_string();
        let auth = Auth::new(
            vec![User {
                username: "ops".into(),
                password_hash: hash,
                role: Role::Viewer,
            }],
            vec![],
        );
        assert_eq!(
            auth.check_password("ops", "pw"),
            Some(Principal::new("ops", Role::Viewer))
        );
        assert_eq!(auth.check_password("ops", "nope"), None);
        assert!(auth.check(&basic("ops", "pw")).is_some());
    }
}
