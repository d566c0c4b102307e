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

    /// Claims flow run `run_id` for the caller until the returned [`RunClaim`] drops: a resumed
    /// run (or a `persist` run) holds it, so that a second resume of the same run while the
    /// first is alive is refused instead of running the same tasks twice. `Ok(None)`: someone
    /// else holds it. The default claims within this process only (enough for [`MemoryStore`]
    /// and, across machines, the best an object store offers without conditional writes);
    /// [`LocalStore`] also locks a file, so other processes see the claim.
    fn claim_run(&self, run_id: uuid::Uuid) -> io::Result<Option<RunClaim>> {
        let store = (self as *const Self).cast::<()>() as usize;
        Ok(RunClaim::in_process(store, run_id))
    }
}

/// A flow run claimed in a result store (see [`ResultStore::claim_run`]); dropping it (or the
/// process ending, however it ends) releases the claim.
#[derive(Debug)]
pub struct RunClaim {
    key: (usize, uuid::Uuid),
    /// The locked lock file of a [`LocalStore`]; the lock goes with the file's closing.
    _file: Option<std::fs::File>,
}

/// Runs claimed in this process: (store, run id).
fn claimed() -> &'static Mutex<std::collections::HashSet<(usize, uuid::Uuid)>> {
    static CLAIMED: OnceLock<Mutex<std::collections::HashSet<(usize, uuid::Uuid)>>> =
        OnceLock::new();
    CLAIMED.get_or_init(Default::default)
}

impl RunClaim {
    /// Claims `run_id` of the store identified by `store` (any number unique to it, such as
    /// its address) within this process; None when it is claimed already.
    pub fn in_process(store: usize, run_id: uuid::Uuid) -> Option<RunClaim> {
        let key = (store, run_id);
        let fresh = claimed()
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .insert(key);
        // (Built only when fresh: a dropped claim would release the holder's.)
        fresh.then(|| RunClaim { key, _file: None })
    }
}

impl Drop for RunClaim {
    fn drop(&mut self) {
        claimed()
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .remove(&self.key);
    }
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
    /// Set once the first write swept old temporary files.
    swept: std::sync::Once,
}

/// How old a temporary file of an interrupted write must be before a [`LocalStore`] deletes it
/// (a write in progress takes far less; a process killed mid-write leaves its file behind).
pub const STALE_TEMP_AGE: std::time::Duration = std::time::Duration::from_secs(3600);

impl LocalStore {
    /// A store below `dir` (created on the first write).
    pub fn new(dir: impl Into<PathBuf>) -> Self {
        LocalStore {
            dir: dir.into(),
            made: Mutex::new(Default::default()),
            swept: std::sync::Once::new(),
        }
    }

    /// Deletes the temporary files of interrupted writes (`<name>.tmp.<pid>.<hex>`, left by a
    /// process killed between writing and renaming) older than `age` anywhere below the
    /// store's directory; returns how many it deleted. The first write of each `LocalStore`
    /// does this with [`STALE_TEMP_AGE`] (one hour).
    pub fn remove_stale_temp_files(&self, age: std::time::Duration) -> io::Result<usize> {
        let now = std::time::SystemTime::now();
        let mut removed = 0;
        let mut dirs = vec![self.dir.clone()];
        while let Some(dir) = dirs.pop() {
            let entries = match std::fs::read_dir(&dir) {
                Ok(e) => e,
                Err(e) if e.kind() == io::ErrorKind::NotFound => continue,
                Err(e) => return Err(e),
            };
            for entry in entries {
                let entry = entry?;
                let kind = entry.file_type()?;
                if kind.is_dir() {
                    dirs.push(entry.path());
                    continue;
                }
                if !kind.is_file() || !is_temp_name(&entry.file_name().to_string_lossy()) {
                    continue;
                }
                let old = entry
                    .metadata()
                    .and_then(|m| m.modified())
                    .is_ok_and(|t| now.duration_since(t).is_ok_and(|d| d >= age));
                if old && std::fs::remove_file(entry.path()).is_ok() {
                    removed += 1;
                }
            }
        }
        Ok(removed)
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
    /// Also takes an exclusive lock (`flock`) on `runs/<run id>/.lock`, which the system
    /// releases when the process ends, however it ends. The file itself stays.
    fn claim_run(&self, run_id: uuid::Uuid) -> io::Result<Option<RunClaim>> {
        let store = (self as *const Self).cast::<()>() as usize;
        let Some(mut claim) = RunClaim::in_process(store, run_id) else {
            return Ok(None);
        };
        let dir = self.dir.join("runs").join(run_id.to_string());
        std::fs::create_dir_all(&dir)?;
        let file = std::fs::OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(dir.join(".lock"))?;
        #[cfg(unix)]
        {
            use std::os::fd::AsRawFd;
            // SAFETY: flock on a descriptor this function owns; no memory is involved.
            let rc = unsafe { libc::flock(file.as_raw_fd(), libc::LOCK_EX | libc::LOCK_NB) };
            if rc != 0 {
                let e = io::Error::last_os_error();
                return match e.raw_os_error() {
                    Some(libc::EWOULDBLOCK) => Ok(None),
                    _ => Err(e),
                };
            }
        }
        claim._file = Some(file);
        Ok(Some(claim))
    }

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
            self.swept.call_once(|| match self.remove_stale_temp_files(STALE_TEMP_AGE) {
                Ok(0) => {}
                Ok(n) => tracing::info!(target: "weft", "Result store {}: deleted {n} temporary files of interrupted writes", self.dir.display()),
                Err(e) => tracing::warn!(target: "weft", "Result store {}: could not sweep temporary files of interrupted writes ({e})", self.dir.display()),
            });
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

/// True for the name of a temporary file [`write_atomically`] makes: `<stem>.tmp.<pid>.<hex>`.
fn is_temp_name(name: &str) -> bool {
    let mut parts = name.rsplit('.');
    let (Some(hex), Some(pid), Some("tmp")) = (parts.next(), parts.next(), parts.next()) else {
        return false;
    };
    !hex.is_empty()
        && hex.bytes().all(|b| b.is_ascii_hexdigit())
        && !pid.is_empty()
        && pid.bytes().all(|b| b.is_ascii_digit())
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
        uuid::Uuid::new_v4().as_u64_pair().0
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
        let dir = std::env::temp_dir().join(format!("weft-test-{}", uuid::Uuid::new_v4().simple()));
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

    #[tokio::test]
    async fn the_first_write_deletes_stale_temporary_files_only() {
        let dir = std::env::temp_dir().join(format!("weft-test-{}", uuid::Uuid::new_v4().simple()));
        std::fs::create_dir_all(dir.join("runs/r1")).unwrap();
        let two_hours_ago = std::time::SystemTime::now() - std::time::Duration::from_secs(7200);
        let file = |name: &str, old: bool| {
            let path = dir.join(name);
            let f = std::fs::File::create(&path).unwrap();
            if old {
                f.set_modified(two_hours_ago).unwrap();
            }
            path
        };
        let stale = file("runs/r1/3.tmp.4242.9f3a0c", true);
        let stale_top = file("x.tmp.1.0", true);
        let fresh = file("runs/r1/4.tmp.4242.77aa", false);
        let old_entry = file("runs/r1/2.bin", true);
        let look_alike = file("runs/r1/notes.tmp.draft", true);
        let store = LocalStore::new(&dir);
        store.put("cache/t/k.bin", vec![1]).await.unwrap();
        assert!(
            !stale.exists() && !stale_top.exists(),
            "stale temp files deleted"
        );
        assert!(fresh.exists(), "a write that may be in progress is kept");
        assert!(
            old_entry.exists() && look_alike.exists(),
            "other files are kept"
        );
        file("runs/r1/5.tmp.4242.1", true);
        store.put("cache/t/k.bin", vec![2]).await.unwrap();
        assert!(
            dir.join("runs/r1/5.tmp.4242.1").exists(),
            "swept once per store"
        );
        assert_eq!(store.remove_stale_temp_files(STALE_TEMP_AGE).unwrap(), 1);
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
