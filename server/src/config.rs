//! How the server is configured: its tokens, the origins it trusts, its limits; and why it may
//! refuse to start.

use std::fmt;
use std::net::SocketAddr;
use std::path::Path;

/// The fewest characters a token may have.
pub const MIN_TOKEN_LEN: usize = 16;

/// Pipeline runs a server executes at once unless told otherwise
/// ([`ServerConfig::pipeline_workers`]).
pub const DEFAULT_PIPELINE_WORKERS: usize = 2;

/// The most pipeline runs a server executes at once.
pub const MAX_PIPELINE_WORKERS: usize = 1024;

/// An API token (a secret). Its `Debug` and `Display` never show it, and it is compared in
/// constant time.
///
/// ```
/// use weft_server::Token;
///
/// let t = Token::new("0123456789abcdef0123").unwrap();
/// assert_eq!(format!("{t:?}"), "Token(***)");
/// assert!(Token::new("short").unwrap_err().contains("at least 16"));
/// ```
#[derive(Clone)]
pub struct Token(String);

impl Token {
    /// A token of at least [`MIN_TOKEN_LEN`] printable ASCII characters without spaces.
    pub fn new(secret: impl Into<String>) -> Result<Token, String> {
        let secret = secret.into();
        if secret.len() < MIN_TOKEN_LEN {
            return Err(format!(
                "a token needs at least {MIN_TOKEN_LEN} characters (make one with \
                 `openssl rand -hex 32`)"
            ));
        }
        if !secret.bytes().all(|b| b.is_ascii_graphic()) {
            return Err(
                "a token may hold printable ASCII characters only, without spaces".to_owned(),
            );
        }
        Ok(Token(secret))
    }

    /// The token in the first line of the file at `path`, surrounding spaces trimmed.
    pub fn from_file(path: &Path) -> Result<Token, String> {
        let text = std::fs::read_to_string(path)
            .map_err(|e| format!("cannot read the token file {}: {e}", path.display()))?;
        let line = text.lines().next().unwrap_or("").trim();
        Token::new(line).map_err(|e| format!("{}: {e}", path.display()))
    }

    /// True when `given` is this token; takes the same time wherever the two differ.
    pub fn matches(&self, given: &[u8]) -> bool {
        use subtle::ConstantTimeEq;
        self.0.as_bytes().ct_eq(given).into()
    }
}

impl fmt::Debug for Token {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Token(***)")
    }
}

/// What the server trusts and allows: tokens, origins, limits.
///
/// Without tokens every request may read and operate, which [`crate::Server::bind`] allows on
/// loopback addresses only. With an operator token every `/api` request needs
/// `Authorization: Bearer <token>`: the operator token may do everything, the read token
/// (optional) only read.
///
/// ```
/// use weft_server::{ServerConfig, Token};
///
/// let config = ServerConfig::new()
///     .token(Token::new("operator-secret-0123456789").unwrap())
///     .read_token(Token::new("reader-secret-0123456789").unwrap())
///     .allow_origin("https://weft.example.com");
/// assert!(config.has_token());
/// ```
#[derive(Debug, Clone)]
pub struct ServerConfig {
    pub(crate) operator_token: Option<Token>,
    pub(crate) read_token: Option<Token>,
    pub(crate) origins: Vec<String>,
    pub(crate) hosts: Vec<String>,
    pub(crate) max_body_bytes: usize,
    pub(crate) pipeline_workers: usize,
}

impl Default for ServerConfig {
    fn default() -> Self {
        ServerConfig {
            operator_token: None,
            read_token: None,
            origins: Vec::new(),
            hosts: Vec::new(),
            max_body_bytes: 64 * 1024,
            pipeline_workers: DEFAULT_PIPELINE_WORKERS,
        }
    }
}

impl ServerConfig {
    /// No tokens, no extra origins, request bodies up to 64 KiB.
    pub fn new() -> Self {
        Self::default()
    }
    /// The operator token: may read and change (pause a deployment, ask for a run).
    pub fn token(mut self, token: Token) -> Self {
        self.operator_token = Some(token);
        self
    }
    /// The read-only token: may read everything, change nothing. Needs an operator token.
    pub fn read_token(mut self, token: Token) -> Self {
        self.read_token = Some(token);
        self
    }
    /// An origin (`https://host:port`) whose pages may send state-changing requests, besides
    /// the server's own address.
    pub fn allow_origin(mut self, origin: impl Into<String>) -> Self {
        self.origins
            .push(origin.into().trim_end_matches('/').to_owned());
        self
    }
    /// The largest request body accepted (default 64 KiB).
    pub fn max_body_bytes(mut self, n: usize) -> Self {
        self.max_body_bytes = n;
        self
    }
    /// How many pipeline runs started from the dashboard or the API this server executes at
    /// once (default [`DEFAULT_PIPELINE_WORKERS`], at most [`MAX_PIPELINE_WORKERS`]); 4 more
    /// per worker may wait, beyond that a start is refused (503). 0: it runs no pipelines.
    /// Their commands run in the server's working directory.
    pub fn pipeline_workers(mut self, n: usize) -> Self {
        self.pipeline_workers = n.min(MAX_PIPELINE_WORKERS);
        self
    }
    /// True when requests need a token.
    pub fn has_token(&self) -> bool {
        self.operator_token.is_some()
    }

    /// Refuses a configuration that cannot work: a read token without an operator token.
    pub(crate) fn check(&self) -> Result<(), ServeError> {
        if self.read_token.is_some() && self.operator_token.is_none() {
            return Err(ServeError::Config(
                "a read token needs an operator token too (--token or WEFT_API_TOKEN)".to_owned(),
            ));
        }
        if let (Some(op), Some(read)) = (&self.operator_token, &self.read_token) {
            if op.matches(read.0.as_bytes()) {
                return Err(ServeError::Config(
                    "the read-only token must differ from the operator token".to_owned(),
                ));
            }
        }
        Ok(())
    }

    /// Trusts the address the server listens on: its origins, and, on loopback, only the host
    /// names of loopback (so a page whose domain was rebound to 127.0.0.1 is refused).
    pub(crate) fn listening_on(mut self, addr: SocketAddr) -> Self {
        let port = addr.port();
        let mut own = vec![addr.to_string()];
        if addr.ip().is_loopback() {
            own.push(format!("localhost:{port}"));
            self.hosts.extend(own.iter().cloned());
        }
        self.origins
            .extend(own.iter().map(|host| format!("http://{host}")));
        self
    }
}

/// Why the server did not start or stopped.
#[derive(Debug)]
#[non_exhaustive]
pub enum ServeError {
    /// Asked to listen beyond loopback without a token.
    NeedToken {
        /// The address asked for.
        addr: SocketAddr,
    },
    /// The configuration cannot work.
    Config(String),
    /// The address could not be bound.
    Bind {
        /// The address asked for.
        addr: SocketAddr,
        /// The system's error.
        error: std::io::Error,
    },
    /// Serving failed.
    Io(std::io::Error),
}

impl fmt::Display for ServeError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ServeError::NeedToken { addr } => write!(
                f,
                "refusing to listen on {addr} without a token: anyone who reaches it could read \
                 and change the run history. Set one with --token (or WEFT_API_TOKEN, or \
                 --token-file / WEFT_API_TOKEN_FILE; make one with `openssl rand -hex 32`), or \
                 listen on 127.0.0.1"
            ),
            ServeError::Config(why) => f.write_str(why),
            ServeError::Bind { addr, error } => write!(
                f,
                "cannot listen on {addr}: {error} (is another server on that port? pick \
                 another with --port)"
            ),
            ServeError::Io(e) => write!(f, "the server stopped: {e}"),
        }
    }
}

impl std::error::Error for ServeError {}
