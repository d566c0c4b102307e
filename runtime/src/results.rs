//! Where task results live beyond one run: the [`ResultStore`] trait, a local directory (the
//! default) and memory, and the entry format every store shares.
//!
//! An entry is `WEFT`, a format version, created-at, expiry, payload length, a BLAKE3 checksum,
//! then the payload (a value encoded with bincode 2 through serde). A truncated, corrupted or
//! undecodable entry is treated as missing, never as a value.

use crate::task::BoxFuture;
use chrono::{DateTime, TimeZone, Utc};
use std::collections::HashMap;
use std::fmt;
use std::io;
use std::path::{Component, Path, PathBuf};
use std::sync::{Arc, Mutex, OnceLock};

/// Stores result entries by key (a relative path such as `cache/extract/3f2a….bin`).
///
/// ```
/// use weft::results::{MemoryStore, ResultStore};
/// # #[tokio::main] async fn main() -> std::io::Result<()> {
/// let store = MemoryStore::default();
/// store.put("a/b.bin", b"bytes".to_vec()).await?;
/// assert_eq!(store.get("a/b.bin").await?, Some(b"bytes".to_vec()));
/// assert_eq!(store.get("missing").await?, None);
/// # Ok(()) }
/// ```
pub trait ResultStore: Send + Sync + fmt::Debug {
    /// The bytes under `key`, or None.
    fn get<'a>(&'a self, key: &'a str) -> BoxFuture<'a, io::Result<Option<Vec<u8>>>>;
    /// Stores `bytes` under `key` atomically: a reader sees the old entry or the new one.
    fn put<'a>(&'a self, key: &'a str, bytes: Vec<u8>) -> BoxFuture<'a, io::Result<()>>;
}

/// Entries as files below a directory; writes go to a temporary file renamed into place.
///
/// ```
/// use weft::results::{LocalStore, ResultStore};
/// # #[tokio::main] async fn main() -> std::io::Result<()> {
/// let dir = std::env::temp_dir().join(format!("weft-doc-{}", std::process::id()));
/// let store = LocalStore::new(&dir);
/// store.put("x/y.bin", vec![1, 2, 3]).await?;
/// assert!(dir.join("x/y.bin").exists());
/// assert!(store.put("../escape.bin", vec![]).await.is_err(), "keys stay inside the directory");
/// # std::fs::remove_dir_all(&dir)?; Ok(()) }
/// ```
#[derive(Debug)]
pub struct LocalStore {
    dir: PathBuf,
    /// Directories known to exist, so a put costs a write and a rename, not a `mkdir -p` too.
    made: Mutex<std::collections::HashSet<PathBuf>>,
}

impl LocalStore {
    /// A store below `dir` (created on the first write).
    pub fn new(dir: impl Into<PathBuf>) -> Self {
        LocalStore {
            dir: dir.into(),
            made: Mutex::new(Default::default()),
        }
    }

    /// `$WEFT_HOME/.weft/results`, `WEFT_HOME` defaulting to the current directory.
    pub fn default_location() -> PathBuf {
        let home = std::env::var_os("WEFT_HOME")
            .map(PathBuf::from)
            .unwrap_or_else(|| PathBuf::from("."));
        home.join(".weft").join("results")
    }

    /// The directory entries live in.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    fn path_of(&self, key: &str) -> io::Result<PathBuf> {
        let rel = Path::new(key);
        let safe = !key.is_empty() && rel.components().all(|c| matches!(c, Component::Normal(_)));
        if !safe {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                format!("result key {key:?} must be a relative path without `..`"),
            ));
        }
        Ok(self.dir.join(rel))
    }
}

impl ResultStore for LocalStore {
    // Entries are small; plain file calls cost less than a hop to the blocking pool.
    fn get<'a>(&'a self, key: &'a str) -> BoxFuture<'a, io::Result<Option<Vec<u8>>>> {
        Box::pin(async move {
            match std::fs::read(self.path_of(key)?) {
                Ok(bytes) => Ok(Some(bytes)),
                Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(None),
                Err(e) => Err(e),
            }
        })
    }

    // Written in place, like reads: thousands of small writes sent to the blocking pool at once
    // contend on the file system and measured 2-5x slower than writing them one after another.
    fn put<'a>(&'a self, key: &'a str, bytes: Vec<u8>) -> BoxFuture<'a, io::Result<()>> {
        Box::pin(async move {
            let path = self.path_of(key)?;
            let parent = path.parent().map(Path::to_path_buf);
            let known = parent
                .as_ref()
                .is_none_or(|p| self.made.lock().unwrap().contains(p));
            write_atomically(&path, &bytes, known)?;
            if let (false, Some(p)) = (known, parent) {
                self.made.lock().unwrap().insert(p);
            }
            Ok(())
        })
    }
}

/// Writes `bytes` to a temporary file beside `path`, then renames it into place.
fn write_atomically(path: &Path, bytes: &[u8], dir_known: bool) -> io::Result<()> {
    let parent = path.parent().unwrap_or(Path::new("."));
    if !dir_known {
        std::fs::create_dir_all(parent)?;
    }
    let tmp = path.with_extension(format!(
        "tmp.{}.{:x}",
        std::process::id(),
        rand::random::<u64>()
    ));
    if let Err(e) = std::fs::write(&tmp, bytes) {
        // The directory may have been removed behind our back: make it again, once.
        if e.kind() != io::ErrorKind::NotFound {
            return Err(e);
        }
        std::fs::create_dir_all(parent)?;
        std::fs::write(&tmp, bytes)?;
    }
    std::fs::rename(&tmp, path).inspect_err(|_| {
        let _ = std::fs::remove_file(&tmp);
    })
}

/// Entries in memory, for tests.
#[derive(Debug, Default)]
pub struct MemoryStore {
    entries: Mutex<HashMap<String, Vec<u8>>>,
}

impl MemoryStore {
    /// Number of entries.
    pub fn len(&self) -> usize {
        self.entries.lock().unwrap().len()
    }
    /// True when empty.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
    /// Replaces the raw bytes under `key` (to simulate corruption in tests).
    pub fn tamper(&self, key: &str, f: impl FnOnce(&mut Vec<u8>)) {
        if let Some(v) = self.entries.lock().unwrap().get_mut(key) {
            f(v);
        }
    }
    /// Every key.
    pub fn keys(&self) -> Vec<String> {
        let mut k: Vec<String> = self.entries.lock().unwrap().keys().cloned().collect();
        k.sort();
        k
    }
}

impl ResultStore for MemoryStore {
    fn get<'a>(&'a self, key: &'a str) -> BoxFuture<'a, io::Result<Option<Vec<u8>>>> {
        Box::pin(async move { Ok(self.entries.lock().unwrap().get(key).cloned()) })
    }
    fn put<'a>(&'a self, key: &'a str, bytes: Vec<u8>) -> BoxFuture<'a, io::Result<()>> {
        Box::pin(async move {
            self.entries.lock().unwrap().insert(key.to_owned(), bytes);
            Ok(())
        })
    }
}

/// The store used when a run names none: a [`LocalStore`] at its default location.
pub fn default_store() -> Arc<dyn ResultStore> {
    static DEFAULT: OnceLock<Arc<dyn ResultStore>> = OnceLock::new();
    DEFAULT
        .get_or_init(|| Arc::new(LocalStore::new(LocalStore::default_location())))
        .clone()
}

const MAGIC: &[u8; 4] = b"WEFT";
const FORMAT: u8 = 1;
const HEADER: usize = 4 + 1 + 8 + 8 + 8 + 32;

/// A decoded entry: when it was written, until when it is valid, and the encoded value.
#[derive(Debug, Clone, PartialEq)]
pub struct Entry {
    /// When the entry was written.
    pub created: DateTime<Utc>,
    /// After this instant the entry is ignored (None: never).
    pub expires: Option<DateTime<Utc>>,
    /// The value, bincode-encoded.
    pub payload: Vec<u8>,
}

impl Entry {
    /// True when `now` is past the expiry.
    pub fn is_expired(&self, now: DateTime<Utc>) -> bool {
        self.expires.is_some_and(|e| now >= e)
    }
}

/// Why stored bytes are not a valid entry.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EntryError(pub String);

impl fmt::Display for EntryError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for EntryError {}

/// Frames `payload` as an entry.
///
/// ```
/// use weft::results::{decode_entry, encode_entry};
/// let bytes = encode_entry(b"value", None);
/// assert_eq!(decode_entry(&bytes).unwrap().payload, b"value");
/// assert!(decode_entry(&bytes[..bytes.len() - 1]).is_err(), "truncated");
/// ```
pub fn encode_entry(payload: &[u8], expires: Option<DateTime<Utc>>) -> Vec<u8> {
    let mut out = Vec::with_capacity(HEADER + payload.len());
    out.extend_from_slice(MAGIC);
    out.push(FORMAT);
    out.extend_from_slice(&Utc::now().timestamp_millis().to_le_bytes());
    out.extend_from_slice(&expires.map_or(0, |e| e.timestamp_millis()).to_le_bytes());
    out.extend_from_slice(&(payload.len() as u64).to_le_bytes());
    out.extend_from_slice(blake3::hash(payload).as_bytes());
    out.extend_from_slice(payload);
    out
}

/// Checks and unframes an entry.
pub fn decode_entry(bytes: &[u8]) -> Result<Entry, EntryError> {
    let bad = |why: &str| Err(EntryError(why.to_owned()));
    if bytes.len() < HEADER {
        return bad("truncated header");
    }
    if &bytes[..4] != MAGIC {
        return bad("not a weft result entry");
    }
    if bytes[4] != FORMAT {
        return Err(EntryError(format!(
            "entry format {} is not supported (this weft reads format {FORMAT})",
            bytes[4]
        )));
    }
    let int = |at: usize| i64::from_le_bytes(bytes[at..at + 8].try_into().expect("8 bytes"));
    let len = u64::from_le_bytes(bytes[21..29].try_into().expect("8 bytes")) as usize;
    let payload = &bytes[HEADER..];
    if payload.len() != len {
        return bad("truncated payload");
    }
    if blake3::hash(payload).as_bytes()[..] != bytes[29..61] {
        return bad("checksum mismatch");
    }
    let time = |ms: i64| Utc.timestamp_millis_opt(ms).single();
    Ok(Entry {
        created: time(int(5)).unwrap_or_default(),
        expires: match int(13) {
            0 => None,
            ms => time(ms),
        },
        payload: payload.to_vec(),
    })
}

/// Encodes a value with bincode 2 (standard configuration) through serde.
pub fn encode_value<T: serde::Serialize>(v: &T) -> Result<Vec<u8>, String> {
    bincode::serde::encode_to_vec(v, bincode::config::standard()).map_err(|e| e.to_string())
}

/// Decodes a value written by [`encode_value`]; trailing bytes are an error.
pub fn decode_value<T: serde::de::DeserializeOwned>(bytes: &[u8]) -> Result<T, String> {
    match bincode::serde::decode_from_slice(bytes, bincode::config::standard()) {
        Ok((v, n)) if n == bytes.len() => Ok(v),
        Ok(_) => Err("trailing bytes after the value".to_owned()),
        Err(e) => Err(e.to_string()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn entries_round_trip_and_reject_damage() {
        let exp = Utc::now() + chrono::Duration::hours(1);
        let bytes = encode_entry(b"hello", Some(exp));
        let e = decode_entry(&bytes).unwrap();
        assert_eq!(e.payload, b"hello");
        assert_eq!(
            e.expires.unwrap().timestamp_millis(),
            exp.timestamp_millis()
        );
        assert!(!e.is_expired(Utc::now()));
        assert!(e.is_expired(exp));

        let mut flipped = bytes.clone();
        *flipped.last_mut().unwrap() ^= 1;
        assert_eq!(decode_entry(&flipped).unwrap_err().0, "checksum mismatch");
        assert_eq!(
            decode_entry(&bytes[..10]).unwrap_err().0,
            "truncated header"
        );
        assert_eq!(
            decode_entry(&bytes[..bytes.len() - 2]).unwrap_err().0,
            "truncated payload"
        );
        let mut other = bytes.clone();
        other[4] = 9;
        assert!(decode_entry(&other).unwrap_err().0.contains("format 9"));
        assert_eq!(
            decode_entry(b"PNG-and-more-bytes-here-to-fill-the-whole-header-xxxxxxxxxxxxxxx")
                .unwrap_err()
                .0,
            "not a weft result entry"
        );
    }

    #[test]
    fn values_round_trip_and_trailing_bytes_are_refused() {
        let v = (String::from("a"), vec![1u32, 2, 3]);
        let bytes = encode_value(&v).unwrap();
        assert_eq!(decode_value::<(String, Vec<u32>)>(&bytes).unwrap(), v);
        let mut longer = bytes.clone();
        longer.push(0);
        assert!(decode_value::<(String, Vec<u32>)>(&longer).is_err());
        assert!(decode_value::<(String, Vec<u32>)>(&bytes[..2]).is_err());
    }

    #[tokio::test]
    async fn the_local_store_writes_atomically_below_its_directory() {
        let dir = std::env::temp_dir().join(format!("weft-test-{}", rand::random::<u64>()));
        let store = LocalStore::new(&dir);
        store.put("a/b/c.bin", vec![1]).await.unwrap();
        store.put("a/b/c.bin", vec![2]).await.unwrap();
        assert_eq!(store.get("a/b/c.bin").await.unwrap(), Some(vec![2]));
        let leftovers: Vec<_> = std::fs::read_dir(dir.join("a/b")).unwrap().collect();
        assert_eq!(leftovers.len(), 1, "no temporary files left behind");
        for bad in ["", "/etc/passwd", "../x", "a/../../x"] {
            assert!(store.put(bad, vec![]).await.is_err(), "{bad}");
        }
        std::fs::remove_dir_all(dir).unwrap();
    }
}

/// Entries in any [`object_store`](https://docs.rs/object_store) backend: S3, GCS, Azure Blob
/// Storage, local files, memory (feature `object-store`). Prefect's `GCSResult`:
///
/// ```no_run
/// # async fn demo() -> Result<(), Box<dyn std::error::Error>> {
/// use std::sync::Arc;
/// use weft::results::ObjectStoreResults;
/// let gcs = weft::object_store::gcp::GoogleCloudStorageBuilder::from_env()
///     .with_bucket_name("prefect")
///     .build()?;
/// let store = Arc::new(ObjectStoreResults::new(Arc::new(gcs)).with_prefix("weft"));
/// let config = weft::RunConfig::new().result_store(store);
/// # let _ = config; Ok(()) }
/// ```
#[cfg(feature = "object-store")]
#[derive(Debug, Clone)]
pub struct ObjectStoreResults {
    inner: Arc<dyn object_store::ObjectStore>,
    prefix: String,
}

#[cfg(feature = "object-store")]
impl ObjectStoreResults {
    /// Entries at the root of `store`.
    pub fn new(store: Arc<dyn object_store::ObjectStore>) -> Self {
        ObjectStoreResults {
            inner: store,
            prefix: String::new(),
        }
    }

    /// Entries below `prefix` (a folder in the bucket).
    pub fn with_prefix(mut self, prefix: impl Into<String>) -> Self {
        self.prefix = prefix.into().trim_matches('/').to_owned();
        self
    }

    fn path_of(&self, key: &str) -> io::Result<object_store::path::Path> {
        let safe = !key.is_empty()
            && Path::new(key)
                .components()
                .all(|c| matches!(c, Component::Normal(_)));
        if !safe {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                format!("result key {key:?} must be a relative path without `..`"),
            ));
        }
        let full = if self.prefix.is_empty() {
            key.to_owned()
        } else {
            format!("{}/{key}", self.prefix)
        };
        object_store::path::Path::parse(&full)
            .map_err(|e| io::Error::new(io::ErrorKind::InvalidInput, e))
    }
}

#[cfg(feature = "object-store")]
impl ResultStore for ObjectStoreResults {
    fn get<'a>(&'a self, key: &'a str) -> BoxFuture<'a, io::Result<Option<Vec<u8>>>> {
        Box::pin(async move {
            let path = self.path_of(key)?;
            match self.inner.get(&path).await {
                Ok(found) => Ok(Some(
                    found.bytes().await.map_err(io::Error::other)?.to_vec(),
                )),
                Err(object_store::Error::NotFound { .. }) => Ok(None),
                Err(e) => Err(io::Error::other(e)),
            }
        })
    }

    // Object stores replace an object whole, so a put is atomic as the trait requires.
    fn put<'a>(&'a self, key: &'a str, bytes: Vec<u8>) -> BoxFuture<'a, io::Result<()>> {
        Box::pin(async move {
            let path = self.path_of(key)?;
            self.inner
                .put(&path, object_store::PutPayload::from(bytes))
                .await
                .map(|_| ())
                .map_err(io::Error::other)
        })
    }
}
