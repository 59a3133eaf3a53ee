//! Where ember keeps what it writes and reads by name: checkpoints, write-ahead and selection
//! logs, the directories a file stream watches, and the directories of text and object files.
//!
//! A [`Location`] is a local directory (a path or a `file://` URL) or a prefix of an S3 bucket
//! (`s3://bucket/prefix`, also spelled `s3a://`, with the `s3` feature). Every user of a
//! directory goes through it, so the same code runs on both; only this module knows which it
//! is. The rules that make that safe on object storage, where there is no rename and no append:
//!
//! - [`Location::put`] writes a whole object at once (S3's PUT is atomic; on a local disk a
//!   temporary file, fsynced, renamed into place, and the directory fsynced). A commit is always
//!   one small object written last (a checkpoint's manifest, a batch directory's `_SUCCESS`),
//!   naming what it commits; nothing else is ever renamed.
//! - An append-only log ([`AppendLog`]) is a local file appended to and fsynced, or on object
//!   storage one object per synced group of appends, read back in name order.
//! - Listing is trusted only as far as S3 promises (a completed PUT is listed, a deleted object
//!   is not); readers go by the commit object, never by what else happens to be listed.
//!
//! On S3 the settings are the usual environment variables (`AWS_ACCESS_KEY_ID`,
//! `AWS_SECRET_ACCESS_KEY`, `AWS_SESSION_TOKEN`, `AWS_REGION`/`AWS_DEFAULT_REGION`,
//! `AWS_ENDPOINT_URL` for an S3-compatible server, path-style requests unless
//! `AWS_VIRTUAL_HOSTED_STYLE_REQUEST=true`; an `http://` endpoint is allowed without TLS).
//! Requests that fail for a reason worth retrying (the server away, a 5xx) are retried with
//! backoff for `EMBER_S3_RETRY_TIMEOUT_S` seconds (default 120), then the operation fails
//! naming the URL. Credentials never appear in what a location displays or in its errors.

use std::fmt;
use std::io::{self, Write};
use std::path::{Path, PathBuf};

/// A directory of named objects: local, or a prefix of an object store.
#[derive(Clone)]
pub struct Location {
    kind: Kind,
}

#[derive(Clone)]
enum Kind {
    Local(PathBuf),
    #[cfg(feature = "s3")]
    Objects(objects::Prefix),
}

impl fmt::Debug for Location {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Location({self})")
    }
}

/// The path, or the URL without credentials.
impl fmt::Display for Location {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.kind {
            Kind::Local(path) => write!(f, "{}", path.display()),
            #[cfg(feature = "s3")]
            Kind::Objects(prefix) => write!(f, "{prefix}"),
        }
    }
}

/// An object directly inside a location, as a listing shows it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Entry {
    /// Its name inside the location.
    pub name: String,
    /// Its size in bytes.
    pub size: u64,
    /// Last modification, nanoseconds since the Unix epoch.
    pub modified_ns: u64,
}

fn invalid(message: String) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidInput, message)
}

/// A name inside a location: `/`-separated, no empty, `.` or `..` parts.
fn check_name(name: &str) -> io::Result<()> {
    if name.split('/').any(|part| part.is_empty() || part == "." || part == "..") {
        return Err(invalid(format!("{name:?} is not a name inside a directory")));
    }
    Ok(())
}

impl Location {
    /// A location from what a user wrote: a path, a `file://` URL, or `s3://bucket/prefix`
    /// (`s3a://` alike).
    ///
    /// # Errors
    ///
    /// [`io::ErrorKind::InvalidInput`] naming the problem: another scheme (`hdfs://` is not
    /// supported yet), an `s3://` URL without the `s3` feature, a bucket missing, credentials
    /// written into the URL (they belong in the environment), a relative `file://` URL.
    pub fn parse(text: &str) -> io::Result<Location> {
        if let Some(rest) = text.strip_prefix("file://") {
            if !rest.starts_with('/') {
                return Err(invalid(format!("{text}: a file URL must name an absolute path (file:///dir)")));
            }
            return Ok(Location::local(rest));
        }
        let Some((scheme, rest)) = text.split_once("://") else {
            return Ok(Location::local(text.strip_prefix("file:").unwrap_or(text)));
        };
        match scheme.to_ascii_lowercase().as_str() {
            "s3" | "s3a" => Self::s3(scheme, rest),
            "hdfs" => Err(invalid(format!(
                "{text}: hdfs:// is not supported yet; use a local or shared path, or s3://bucket/prefix"
            ))),
            other => Err(invalid(format!(
                "{text}: the {other}:// scheme is not supported; use a local path, file:///path or s3://bucket/prefix"
            ))),
        }
    }

    #[cfg(feature = "s3")]
    fn s3(scheme: &str, rest: &str) -> io::Result<Location> {
        let (bucket, prefix) = rest.split_once('/').unwrap_or((rest, ""));
        if bucket.contains('@') {
            // Never echo what was written: it may be a secret.
            return Err(invalid(format!(
                "an {scheme}:// URL must not carry credentials; set AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY instead"
            )));
        }
        if bucket.is_empty() {
            return Err(invalid(format!("{scheme}://{rest}: the URL names no bucket (s3://bucket/prefix)")));
        }
        let prefix = prefix.trim_end_matches('/');
        if !prefix.is_empty() {
            check_name(prefix).map_err(|_| invalid(format!("{scheme}://{rest}: the prefix has an empty, `.` or `..` part")))?;
        }
        Ok(Location {
            kind: Kind::Objects(objects::Prefix::new(bucket, prefix)?),
        })
    }

    #[cfg(not(feature = "s3"))]
    fn s3(scheme: &str, rest: &str) -> io::Result<Location> {
        Err(invalid(format!(
            "{scheme}://{rest}: object storage needs ember built with its `s3` feature (ember = {{ features = [\"s3\"] }})"
        )))
    }

    /// A local directory.
    pub fn local(path: impl Into<PathBuf>) -> Location {
        Location {
            kind: Kind::Local(path.into()),
        }
    }

    /// The local directory, if this is one.
    pub fn as_local(&self) -> Option<&Path> {
        match &self.kind {
            Kind::Local(path) => Some(path),
            #[cfg(feature = "s3")]
            Kind::Objects(_) => None,
        }
    }

    /// The location `name` inside this one (`/`-separated).
    pub fn join(&self, name: &str) -> Location {
        Location {
            kind: match &self.kind {
                Kind::Local(path) => Kind::Local(path.join(name)),
                #[cfg(feature = "s3")]
                Kind::Objects(prefix) => Kind::Objects(prefix.join(name)),
            },
        }
    }

    /// The last part of the location's name (`counts-1000` of `s3://b/out/counts-1000`).
    pub fn file_name(&self) -> Option<String> {
        match &self.kind {
            Kind::Local(path) => path.file_name().map(|n| n.to_string_lossy().into_owned()),
            #[cfg(feature = "s3")]
            Kind::Objects(prefix) => prefix.file_name(),
        }
    }

    /// The location that holds this one, with this one's name in it.
    pub fn parent(&self) -> (Location, String) {
        let name = self.file_name().unwrap_or_default();
        let kind = match &self.kind {
            Kind::Local(path) => Kind::Local(match path.parent() {
                Some(p) if !p.as_os_str().is_empty() => p.to_owned(),
                _ => PathBuf::from("."),
            }),
            #[cfg(feature = "s3")]
            Kind::Objects(prefix) => Kind::Objects(prefix.parent()),
        };
        (Location { kind }, name)
    }

    /// How `name` inside this location is shown in messages (its path or URL).
    pub fn show(&self, name: &str) -> String {
        self.join(name).to_string()
    }

    /// Makes sure the location can be written: creates a local directory; checks that an
    /// object store answers (so a wrong endpoint or bucket is reported when it is named, not
    /// at the first checkpoint).
    ///
    /// # Errors
    ///
    /// What the file system or the store said, naming the location.
    pub fn prepare(&self) -> io::Result<()> {
        match &self.kind {
            Kind::Local(path) => std::fs::create_dir_all(path).map_err(|e| named(self, "cannot create", e)),
            #[cfg(feature = "s3")]
            Kind::Objects(prefix) => prefix.list("", false).map(drop),
        }
    }

    /// Writes `bytes` as the object `name`, whole or not at all, and durably: a reader sees
    /// the old object or the new one, never part of one.
    ///
    /// # Errors
    ///
    /// What the file system or the store said, naming the object.
    pub fn put(&self, name: &str, bytes: Vec<u8>) -> io::Result<()> {
        check_name(name)?;
        match &self.kind {
            Kind::Local(path) => local::put(&path.join(name), &bytes).map_err(|e| named(&self.join(name), "cannot write", e)),
            #[cfg(feature = "s3")]
            Kind::Objects(prefix) => prefix.put(name, bytes),
        }
    }

    /// The object `name`, or `None` when there is none.
    ///
    /// # Errors
    ///
    /// What the file system or the store said, naming the object.
    pub fn get(&self, name: &str) -> io::Result<Option<Vec<u8>>> {
        check_name(name)?;
        match &self.kind {
            Kind::Local(path) => match std::fs::read(path.join(name)) {
                Ok(bytes) => Ok(Some(bytes)),
                Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(None),
                Err(e) => Err(named(&self.join(name), "cannot read", e)),
            },
            #[cfg(feature = "s3")]
            Kind::Objects(prefix) => prefix.get(name, None),
        }
    }

    /// The first `length` bytes of the object `name` (a file as it was when it was listed).
    ///
    /// # Errors
    ///
    /// What the file system or the store said, naming the object; a missing object is
    /// [`io::ErrorKind::NotFound`].
    pub fn read_prefix(&self, name: &str, length: u64) -> io::Result<Vec<u8>> {
        check_name(name)?;
        match &self.kind {
            Kind::Local(path) => {
                use std::io::Read;
                let file = std::fs::File::open(path.join(name)).map_err(|e| named(&self.join(name), "cannot open", e))?;
                let mut bytes = Vec::with_capacity(length as usize);
                file.take(length)
                    .read_to_end(&mut bytes)
                    .map_err(|e| named(&self.join(name), "cannot read", e))?;
                Ok(bytes)
            }
            #[cfg(feature = "s3")]
            Kind::Objects(prefix) => prefix
                .get(name, Some(length))?
                .ok_or_else(|| named(&self.join(name), "cannot read", io::ErrorKind::NotFound.into())),
        }
    }

    /// The files (objects) directly inside the location, in no particular order; none when
    /// the location does not exist.
    ///
    /// # Errors
    ///
    /// What the file system or the store said, naming the location.
    pub fn list(&self) -> io::Result<Vec<Entry>> {
        match &self.kind {
            Kind::Local(path) => local::list(path).map_err(|e| named(self, "cannot list", e)),
            #[cfg(feature = "s3")]
            Kind::Objects(prefix) => prefix.list("", false),
        }
    }

    /// The names of the directories (common prefixes) directly inside the location.
    ///
    /// # Errors
    ///
    /// What the file system or the store said, naming the location.
    pub fn list_dirs(&self) -> io::Result<Vec<String>> {
        match &self.kind {
            Kind::Local(path) => local::list_dirs(path).map_err(|e| named(self, "cannot list", e)),
            #[cfg(feature = "s3")]
            Kind::Objects(prefix) => prefix.list_dirs(),
        }
    }

    /// Deletes the object `name`; deleting what is not there is not an error.
    ///
    /// # Errors
    ///
    /// What the file system or the store said, naming the object.
    pub fn delete(&self, name: &str) -> io::Result<()> {
        check_name(name)?;
        match &self.kind {
            Kind::Local(path) => match std::fs::remove_file(path.join(name)) {
                Err(e) if e.kind() != io::ErrorKind::NotFound => Err(named(&self.join(name), "cannot delete", e)),
                _ => Ok(()),
            },
            #[cfg(feature = "s3")]
            Kind::Objects(prefix) => prefix.delete(name),
        }
    }

    /// Deletes `name` and everything inside it.
    ///
    /// # Errors
    ///
    /// What the file system or the store said, naming the directory.
    pub fn delete_all(&self, name: &str) -> io::Result<()> {
        check_name(name)?;
        match &self.kind {
            Kind::Local(path) => {
                let target = path.join(name);
                let removed = match std::fs::metadata(&target) {
                    Ok(meta) if meta.is_dir() => std::fs::remove_dir_all(&target),
                    Ok(_) => std::fs::remove_file(&target),
                    Err(e) => Err(e),
                };
                match removed {
                    Err(e) if e.kind() != io::ErrorKind::NotFound => Err(named(&self.join(name), "cannot delete", e)),
                    _ => Ok(()),
                }
            }
            #[cfg(feature = "s3")]
            Kind::Objects(prefix) => prefix.delete_all(name),
        }
    }

    /// Writes a batch directory in Spark's layout, `part-00000` ... and `_SUCCESS`, with
    /// `write_part(i, out)` writing part `i`, so that a reader sees the whole directory or
    /// none of it, and a directory written again replaces the first copy whole.
    ///
    /// Locally: built under a hidden name beside it, fsynced and renamed into place (the old
    /// copy moved aside first, then deleted). On object storage, where there is no rename:
    /// `_SUCCESS` is deleted first (a copy being rewritten is not committed), the parts are
    /// written, then `_SUCCESS` names them (the commit), then parts of an older copy that it
    /// does not name are deleted. [`Location::read_directory`] honours the commit.
    ///
    /// # Errors
    ///
    /// What `write_part`, the file system or the store said; nothing is committed then.
    pub fn write_directory(&self, parts: usize, write_part: impl FnMut(usize, &mut dyn Write) -> io::Result<()>) -> io::Result<()> {
        match &self.kind {
            Kind::Local(path) => local::write_directory(path, parts, write_part),
            #[cfg(feature = "s3")]
            Kind::Objects(prefix) => prefix.write_directory(parts, write_part),
        }
    }

    /// The parts of a batch directory written by [`Location::write_directory`], in order,
    /// with their names; only a committed directory is read.
    ///
    /// # Errors
    ///
    /// [`io::ErrorKind::NotFound`] naming `_SUCCESS` when the directory is not committed;
    /// what the file system or the store said.
    pub fn read_directory(&self) -> io::Result<Vec<(String, Vec<u8>)>> {
        let uncommitted = || {
            io::Error::new(
                io::ErrorKind::NotFound,
                format!(
                    "{} is missing: the directory is not completely written, or was not written by ember or Spark",
                    self.show(SUCCESS)
                ),
            )
        };
        let mut names: Vec<String> = match &self.kind {
            Kind::Local(_) => {
                let listing = self.list()?;
                if !listing.iter().any(|e| e.name == SUCCESS) {
                    return Err(uncommitted());
                }
                listing.into_iter().map(|e| e.name).filter(|n| n.starts_with("part-")).collect()
            }
            #[cfg(feature = "s3")]
            Kind::Objects(_) => {
                let commit = self.get(SUCCESS)?.ok_or_else(uncommitted)?;
                objects::committed_parts(&commit).map_err(|e| invalid(format!("{}: {e}", self.show(SUCCESS))))?
            }
        };
        // `part-99999` before `part-100000`: Spark's five digits grow past 99,999 partitions.
        names.sort_by(|a, b| (a.len(), a).cmp(&(b.len(), b)));
        names
            .into_iter()
            .map(|name| {
                let bytes = self
                    .get(&name)?
                    .ok_or_else(|| named(&self.join(&name), "cannot read", io::ErrorKind::NotFound.into()))?;
                Ok((name, bytes))
            })
            .collect()
    }
}

/// The commit object of a batch directory.
pub const SUCCESS: &str = "_SUCCESS";

/// `error` with what was being done and to which location.
fn named(location: &Location, doing: &str, error: io::Error) -> io::Error {
    io::Error::new(error.kind(), format!("{doing} {location}: {error}"))
}

/// Local directories: temporary files, fsync and rename.
mod local {
    use super::*;
    use std::fs::{self, File};
    use std::io::BufWriter;
    use std::time::UNIX_EPOCH;

    /// Fsyncs a directory, so that the renames in it are durable.
    pub(super) fn sync_dir(dir: &Path) -> io::Result<()> {
        File::open(dir)?.sync_all()
    }

    fn parent_of(path: &Path) -> PathBuf {
        match path.parent() {
            Some(p) if !p.as_os_str().is_empty() => p.to_owned(),
            _ => PathBuf::from("."),
        }
    }

    /// Creates `dir` and its missing parents, each durably in its own parent.
    fn create_dirs(dir: &Path) -> io::Result<()> {
        if dir.is_dir() {
            return Ok(());
        }
        let parent = parent_of(dir);
        create_dirs(&parent)?;
        match fs::create_dir(dir) {
            Err(e) if e.kind() != io::ErrorKind::AlreadyExists => return Err(e),
            _ => {}
        }
        sync_dir(&parent)
    }

    /// A temporary file beside `path`, fsynced, renamed over it; the directory fsynced.
    pub(super) fn put(path: &Path, bytes: &[u8]) -> io::Result<()> {
        let dir = parent_of(path);
        create_dirs(&dir)?;
        let mut tmp = path.as_os_str().to_owned();
        tmp.push(".tmp");
        let tmp = PathBuf::from(tmp);
        let written = File::create(&tmp)
            .and_then(|mut file| file.write_all(bytes).and_then(|()| file.sync_all()))
            .and_then(|()| fs::rename(&tmp, path));
        if written.is_err() {
            let _ = fs::remove_file(&tmp);
        }
        written?;
        sync_dir(&dir)
    }

    fn modified_ns(meta: &fs::Metadata) -> u64 {
        meta.modified()
            .ok()
            .and_then(|m| m.duration_since(UNIX_EPOCH).ok())
            .map_or(0, |d| d.as_nanos() as u64)
    }

    /// The entries of `dir`; none when it does not exist.
    fn entries(dir: &Path) -> io::Result<Vec<fs::DirEntry>> {
        match fs::read_dir(dir) {
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(Vec::new()),
            entries => entries?.collect(),
        }
    }

    pub(super) fn list(dir: &Path) -> io::Result<Vec<Entry>> {
        let mut listing = Vec::new();
        for entry in entries(dir)? {
            // A file can vanish between listing and stat (a rename in progress); it shows up
            // under its new name.
            let Ok(meta) = fs::metadata(entry.path()) else { continue };
            if !meta.is_file() {
                continue;
            }
            listing.push(Entry {
                name: entry.file_name().to_string_lossy().into_owned(),
                size: meta.len(),
                modified_ns: modified_ns(&meta),
            });
        }
        Ok(listing)
    }

    pub(super) fn list_dirs(dir: &Path) -> io::Result<Vec<String>> {
        Ok(entries(dir)?
            .into_iter()
            .filter(|entry| entry.file_type().is_ok_and(|t| t.is_dir()))
            .map(|entry| entry.file_name().to_string_lossy().into_owned())
            .collect())
    }

    pub(super) fn write_directory(
        target: &Path,
        parts: usize,
        mut write_part: impl FnMut(usize, &mut dyn Write) -> io::Result<()>,
    ) -> io::Result<()> {
        let name = target
            .file_name()
            .ok_or_else(|| io::Error::new(io::ErrorKind::InvalidInput, "the output path has no file name"))?
            .to_string_lossy()
            .into_owned();
        let parent = parent_of(target);
        // Fixed names: a batch run again after a crash mid-write finds and removes what the
        // crashed run left.
        let (tmp, old) = (parent.join(format!(".{name}.tmp")), parent.join(format!(".{name}.old")));
        for leftover in [&tmp, &old] {
            if leftover.exists() {
                fs::remove_dir_all(leftover)?;
            }
        }
        fs::create_dir(&tmp)?;
        let written = (|| {
            for i in 0..parts {
                let mut out = BufWriter::new(File::create(tmp.join(format!("part-{i:05}")))?);
                write_part(i, &mut out)?;
                out.into_inner().map_err(|e| e.into_error())?.sync_all()?;
            }
            File::create(tmp.join(SUCCESS))?.sync_all()?;
            sync_dir(&tmp)
        })();
        if let Err(e) = written {
            let _ = fs::remove_dir_all(&tmp);
            return Err(e);
        }
        // A copy from before a recovery is moved aside, then deleted once the new one is in place.
        let replaced = target.exists() && {
            fs::rename(target, &old)?;
            true
        };
        fs::rename(&tmp, target)?;
        sync_dir(&parent)?;
        if replaced {
            fs::remove_dir_all(&old)?;
        }
        Ok(())
    }
}

/// An append-only log: what was appended and synced is there after a crash, in order.
///
/// Locally one file, appended to and fsynced (a crash can leave a torn last record, which the
/// log's own framing must detect). On object storage, which cannot append, each sync writes
/// the appends since the last one as one object, `<name>/<generation>-<sequence>`; the log is
/// the objects of the newest generation in sequence order. A rewrite writes the whole new
/// content as the first object of the next generation, then deletes the older generations.
pub struct AppendLog {
    inner: LogInner,
    shown: String,
    len: u64,
}

enum LogInner {
    Local {
        path: PathBuf,
        file: std::fs::File,
    },
    #[cfg(feature = "s3")]
    Objects(objects::ObjectLog),
}

impl fmt::Debug for AppendLog {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "AppendLog({})", self.shown)
    }
}

impl AppendLog {
    /// Opens the log `name` in `dir` (created empty when missing) and returns what it holds.
    ///
    /// # Errors
    ///
    /// What the file system or the store said, naming the log.
    pub fn open(dir: &Location, name: &str) -> io::Result<(AppendLog, Vec<u8>)> {
        check_name(name)?;
        let shown = dir.show(name);
        let (inner, content) = match &dir.kind {
            Kind::Local(path) => {
                let path = path.join(name);
                let content = match std::fs::read(&path) {
                    Ok(bytes) => bytes,
                    Err(e) if e.kind() == io::ErrorKind::NotFound => {
                        local::put(&path, &[]).map_err(|e| named(&dir.join(name), "cannot create", e))?;
                        Vec::new()
                    }
                    Err(e) => return Err(named(&dir.join(name), "cannot read", e)),
                };
                let file = std::fs::OpenOptions::new()
                    .append(true)
                    .open(&path)
                    .map_err(|e| named(&dir.join(name), "cannot open", e))?;
                (LogInner::Local { path, file }, content)
            }
            #[cfg(feature = "s3")]
            Kind::Objects(prefix) => {
                let (log, content) = objects::ObjectLog::open(prefix.join(name))?;
                (LogInner::Objects(log), content)
            }
        };
        let len = content.len() as u64;
        Ok((AppendLog { inner, shown, len }, content))
    }

    /// Appends `bytes`; durable at the next [`AppendLog::sync`].
    ///
    /// # Errors
    ///
    /// What the file system said, naming the log.
    pub fn append(&mut self, bytes: &[u8]) -> io::Result<()> {
        self.len += bytes.len() as u64;
        match &mut self.inner {
            LogInner::Local { file, .. } => file
                .write_all(bytes)
                .map_err(|e| io::Error::new(e.kind(), format!("cannot append to {}: {e}", self.shown))),
            #[cfg(feature = "s3")]
            LogInner::Objects(log) => {
                log.append(bytes);
                Ok(())
            }
        }
    }

    /// Makes everything appended so far durable.
    ///
    /// # Errors
    ///
    /// What the file system or the store said, naming the log.
    pub fn sync(&mut self) -> io::Result<()> {
        match &mut self.inner {
            LogInner::Local { file, .. } => file
                .sync_data()
                .map_err(|e| io::Error::new(e.kind(), format!("cannot sync {}: {e}", self.shown))),
            #[cfg(feature = "s3")]
            LogInner::Objects(log) => log.sync(),
        }
    }

    /// Replaces the whole log with `content`, durably, at once.
    ///
    /// # Errors
    ///
    /// What the file system or the store said, naming the log.
    pub fn rewrite(&mut self, content: Vec<u8>) -> io::Result<()> {
        self.len = content.len() as u64;
        let shown = &self.shown;
        match &mut self.inner {
            LogInner::Local { path, file } => {
                local::put(path, &content).map_err(|e| io::Error::new(e.kind(), format!("cannot rewrite {shown}: {e}")))?;
                *file = std::fs::OpenOptions::new()
                    .append(true)
                    .open(&*path)
                    .map_err(|e| io::Error::new(e.kind(), format!("cannot open {shown}: {e}")))?;
                Ok(())
            }
            #[cfg(feature = "s3")]
            LogInner::Objects(log) => log.rewrite(content),
        }
    }

    /// What the log holds now, as [`AppendLog::open`] returns it (what was appended since the
    /// last sync included).
    ///
    /// # Errors
    ///
    /// What the file system or the store said, naming the log.
    pub fn read(&self) -> io::Result<Vec<u8>> {
        match &self.inner {
            LogInner::Local { path, .. } => {
                std::fs::read(path).map_err(|e| io::Error::new(e.kind(), format!("cannot read {}: {e}", self.shown)))
            }
            #[cfg(feature = "s3")]
            LogInner::Objects(log) => log.read(),
        }
    }

    /// The log's size in bytes, synced or not.
    pub fn len(&self) -> u64 {
        self.len
    }

    /// Whether the log is empty.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// The log's path or URL, for messages.
    pub fn shown(&self) -> &str {
        &self.shown
    }
}

#[cfg(feature = "s3")]
mod objects {
    //! Object storage through `object_store`, driven on a small tokio runtime of ember's own,
    //! so that callers on ember's threads (and on a runtime of their own) can wait for it.

    use super::*;
    use object_store::aws::AmazonS3Builder;
    use object_store::path::Path as ObjectPath;
    use object_store::{ClientOptions, GetOptions, GetRange, ObjectStore, ObjectStoreExt, PutPayload, RetryConfig};
    use std::collections::HashMap;
    use std::sync::{Arc, Mutex, OnceLock};
    use std::time::Duration;

    /// A prefix of a bucket: `s3://bucket/prefix`.
    #[derive(Clone)]
    pub(super) struct Prefix {
        store: Arc<dyn ObjectStore>,
        scheme: &'static str,
        bucket: Arc<str>,
        /// No leading or trailing `/`; empty for the bucket's root.
        prefix: String,
    }

    impl fmt::Display for Prefix {
        fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
            write!(f, "{}://{}/{}", self.scheme, self.bucket, self.prefix)
        }
    }

    fn runtime() -> &'static tokio::runtime::Runtime {
        static RUNTIME: OnceLock<tokio::runtime::Runtime> = OnceLock::new();
        RUNTIME.get_or_init(|| {
            tokio::runtime::Builder::new_multi_thread()
                .worker_threads(2)
                .thread_name("ember-storage")
                .enable_all()
                .build()
                .expect("cannot start the object storage runtime")
        })
    }

    /// Runs `future` on the storage runtime and waits for it, from any thread.
    fn wait<T: Send + 'static>(future: impl std::future::Future<Output = T> + Send + 'static) -> io::Result<T> {
        let (sender, receiver) = std::sync::mpsc::sync_channel(1);
        runtime().spawn(async move {
            let _ = sender.send(future.await);
        });
        receiver
            .recv()
            .map_err(|_| io::Error::other("an object storage request panicked; this is a bug in ember"))
    }

    fn retry_timeout() -> Duration {
        let seconds = std::env::var("EMBER_S3_RETRY_TIMEOUT_S")
            .ok()
            .and_then(|s| s.trim().parse::<f64>().ok())
            .filter(|s| *s >= 0.0)
            .unwrap_or(120.0);
        Duration::from_secs_f64(seconds)
    }

    /// One client per bucket, shared by every location in it.
    fn store_for(bucket: &str) -> io::Result<Arc<dyn ObjectStore>> {
        static STORES: OnceLock<Mutex<HashMap<String, Arc<dyn ObjectStore>>>> = OnceLock::new();
        let mut stores = STORES.get_or_init(Default::default).lock().unwrap_or_else(|e| e.into_inner());
        if let Some(store) = stores.get(bucket) {
            return Ok(Arc::clone(store));
        }
        let endpoint = ["AWS_ENDPOINT_URL_S3", "AWS_ENDPOINT_URL", "AWS_ENDPOINT"]
            .iter()
            .find_map(|key| std::env::var(key).ok());
        let timeout = retry_timeout();
        let mut builder = AmazonS3Builder::from_env()
            .with_bucket_name(bucket)
            .with_retry(RetryConfig {
                retry_timeout: timeout,
                max_retries: usize::MAX,
                ..RetryConfig::default()
            })
            .with_client_options(
                ClientOptions::new()
                    .with_connect_timeout(Duration::from_secs(5))
                    .with_timeout(Duration::from_secs(60)),
            );
        if let Ok(region) = std::env::var("AWS_REGION") {
            builder = builder.with_region(region);
        }
        if let Some(endpoint) = endpoint {
            builder = builder.with_allow_http(endpoint.starts_with("http://")).with_endpoint(endpoint);
        }
        // The builder's error names settings, never their values.
        let store: Arc<dyn ObjectStore> = Arc::new(
            builder
                .build()
                .map_err(|e| invalid(format!("s3://{bucket}: cannot set up the S3 client: {e}")))?,
        );
        stores.insert(bucket.to_owned(), Arc::clone(&store));
        Ok(store)
    }

    /// What a failed request is reported as: the URL and the store's reason.
    fn failed(url: &str, doing: &str, error: object_store::Error) -> io::Error {
        let kind = match error {
            object_store::Error::NotFound { .. } => io::ErrorKind::NotFound,
            _ => io::ErrorKind::Other,
        };
        io::Error::new(kind, format!("{doing} {url}: {error}"))
    }

    impl Prefix {
        pub(super) fn new(bucket: &str, prefix: &str) -> io::Result<Prefix> {
            Ok(Prefix {
                store: store_for(bucket)?,
                scheme: "s3",
                bucket: bucket.into(),
                prefix: prefix.to_owned(),
            })
        }

        /// A prefix over another store, for unit tests.
        #[cfg(test)]
        pub(super) fn over(store: Arc<dyn ObjectStore>, bucket: &str, prefix: &str) -> Prefix {
            Prefix {
                store,
                scheme: "s3",
                bucket: bucket.into(),
                prefix: prefix.to_owned(),
            }
        }

        pub(super) fn join(&self, name: &str) -> Prefix {
            let name = name.trim_matches('/');
            let prefix = match (self.prefix.is_empty(), name.is_empty()) {
                (_, true) => self.prefix.clone(),
                (true, false) => name.to_owned(),
                (false, false) => format!("{}/{name}", self.prefix),
            };
            Prefix { prefix, ..self.clone() }
        }

        pub(super) fn file_name(&self) -> Option<String> {
            self.prefix.rsplit('/').next().filter(|n| !n.is_empty()).map(str::to_owned)
        }

        pub(super) fn parent(&self) -> Prefix {
            let prefix = self.prefix.rsplit_once('/').map_or("", |(parent, _)| parent).to_owned();
            Prefix { prefix, ..self.clone() }
        }

        fn url(&self, name: &str) -> String {
            self.join(name).to_string()
        }

        fn path(&self, name: &str) -> io::Result<ObjectPath> {
            let full = self.join(name).prefix;
            ObjectPath::parse(&full).map_err(|e| invalid(format!("{}: not a valid object name: {e}", self.url(name))))
        }

        pub(super) fn put(&self, name: &str, bytes: Vec<u8>) -> io::Result<()> {
            let (store, path, url) = (Arc::clone(&self.store), self.path(name)?, self.url(name));
            wait(async move { store.put(&path, PutPayload::from(bytes)).await })?.map_err(|e| failed(&url, "cannot write", e))?;
            Ok(())
        }

        pub(super) fn get(&self, name: &str, length: Option<u64>) -> io::Result<Option<Vec<u8>>> {
            let (store, path, url) = (Arc::clone(&self.store), self.path(name)?, self.url(name));
            let got = wait(async move {
                let options = GetOptions {
                    range: length.filter(|l| *l > 0).map(|l| GetRange::Bounded(0..l)),
                    ..GetOptions::default()
                };
                match length {
                    // A range cannot be empty: an empty prefix is read without a request.
                    Some(0) => store.head(&path).await.map(|_| Vec::new()),
                    _ => match store.get_opts(&path, options).await {
                        Ok(result) => result.bytes().await.map(|b| b.to_vec()),
                        Err(e) => Err(e),
                    },
                }
            })?;
            match got {
                Ok(bytes) => Ok(Some(bytes)),
                Err(object_store::Error::NotFound { .. }) => Ok(None),
                Err(e) => Err(failed(&url, "cannot read", e)),
            }
        }

        /// The objects directly inside `name` (or, `recursive`, everywhere under it).
        pub(super) fn list(&self, name: &str, recursive: bool) -> io::Result<Vec<Entry>> {
            let dir = self.join(name);
            let (store, url) = (Arc::clone(&self.store), dir.to_string());
            let base = (!dir.prefix.is_empty()).then(|| ObjectPath::from(dir.prefix.as_str()));
            let skip = base.as_ref().map_or(0, |b| b.as_ref().len() + 1);
            let listed = wait(async move {
                use futures_util::TryStreamExt;
                if recursive {
                    store.list(base.as_ref()).try_collect::<Vec<_>>().await
                } else {
                    store.list_with_delimiter(base.as_ref()).await.map(|l| l.objects)
                }
            })?
            .map_err(|e| failed(&url, "cannot list", e))?;
            Ok(listed
                .into_iter()
                .map(|meta| Entry {
                    name: meta.location.as_ref().get(skip..).unwrap_or_default().to_owned(),
                    size: meta.size,
                    modified_ns: meta.last_modified.timestamp_nanos_opt().unwrap_or(0).max(0) as u64,
                })
                .collect())
        }

        pub(super) fn list_dirs(&self) -> io::Result<Vec<String>> {
            let (store, url) = (Arc::clone(&self.store), self.to_string());
            let base = (!self.prefix.is_empty()).then(|| ObjectPath::from(self.prefix.as_str()));
            let listed =
                wait(async move { store.list_with_delimiter(base.as_ref()).await })?.map_err(|e| failed(&url, "cannot list", e))?;
            Ok(listed
                .common_prefixes
                .iter()
                .filter_map(|p| p.filename().map(str::to_owned))
                .collect())
        }

        pub(super) fn delete(&self, name: &str) -> io::Result<()> {
            let (store, path, url) = (Arc::clone(&self.store), self.path(name)?, self.url(name));
            match wait(async move { store.delete(&path).await })? {
                Ok(()) | Err(object_store::Error::NotFound { .. }) => Ok(()),
                Err(e) => Err(failed(&url, "cannot delete", e)),
            }
        }

        pub(super) fn delete_all(&self, name: &str) -> io::Result<()> {
            // The object `name` itself, then everything under `name/`.
            self.delete(name)?;
            for entry in self.list(name, true)? {
                self.join(name).delete(&entry.name)?;
            }
            Ok(())
        }

        pub(super) fn write_directory(
            &self,
            parts: usize,
            mut write_part: impl FnMut(usize, &mut dyn Write) -> io::Result<()>,
        ) -> io::Result<()> {
            // A copy being rewritten is not committed while its parts change.
            self.delete(SUCCESS)?;
            let mut names = Vec::with_capacity(parts);
            for i in 0..parts {
                let mut bytes = Vec::new();
                write_part(i, &mut bytes)?;
                let name = format!("part-{i:05}");
                self.put(&name, bytes)?;
                names.push(name);
            }
            let commit = serde_json::to_vec(&Commit { parts: names.clone() }).map_err(io::Error::other)?;
            self.put(SUCCESS, commit)?;
            // Parts of an older copy with more partitions, which the commit does not name.
            for entry in self.list("", false)? {
                if entry.name.starts_with("part-") && !names.contains(&entry.name) {
                    self.delete(&entry.name)?;
                }
            }
            Ok(())
        }
    }

    /// What a batch directory's `_SUCCESS` holds on object storage: the parts it commits.
    #[derive(serde::Serialize, serde::Deserialize)]
    struct Commit {
        parts: Vec<String>,
    }

    pub(super) fn committed_parts(commit: &[u8]) -> Result<Vec<String>, String> {
        serde_json::from_slice::<Commit>(commit)
            .map(|c| c.parts)
            .map_err(|e| format!("not a commit written by ember ({e})"))
    }

    /// An append-only log as objects `<generation>-<sequence>` under its prefix.
    pub(super) struct ObjectLog {
        dir: Prefix,
        generation: u64,
        next: u64,
        pending: Vec<u8>,
    }

    fn object_name(generation: u64, sequence: u64) -> String {
        format!("{generation:010}-{sequence:012}")
    }

    fn parse_name(name: &str) -> Option<(u64, u64)> {
        let (generation, sequence) = name.split_once('-')?;
        Some((generation.parse().ok()?, sequence.parse().ok()?))
    }

    impl ObjectLog {
        /// The newest generation's objects, concatenated, and the generation and sequence
        /// number that come next.
        fn read_newest(dir: &Prefix) -> io::Result<(Vec<u8>, u64, u64)> {
            let mut names: Vec<(u64, u64)> = dir.list("", false)?.iter().filter_map(|e| parse_name(&e.name)).collect();
            names.sort_unstable();
            let generation = names.last().map_or(0, |(g, _)| *g);
            let mut content = Vec::new();
            let mut next = 0;
            for (g, sequence) in names.into_iter().filter(|(g, _)| *g == generation) {
                let name = object_name(g, sequence);
                let bytes = dir.get(&name, None)?.ok_or_else(|| {
                    io::Error::new(
                        io::ErrorKind::NotFound,
                        format!("{} vanished while the log was read", dir.url(&name)),
                    )
                })?;
                content.extend(bytes);
                next = sequence + 1;
            }
            Ok((content, generation, next))
        }

        pub(super) fn open(dir: Prefix) -> io::Result<(ObjectLog, Vec<u8>)> {
            let (content, generation, next) = Self::read_newest(&dir)?;
            let log = ObjectLog {
                dir,
                generation,
                next,
                pending: Vec::new(),
            };
            Ok((log, content))
        }

        pub(super) fn read(&self) -> io::Result<Vec<u8>> {
            let (mut content, _, _) = Self::read_newest(&self.dir)?;
            content.extend_from_slice(&self.pending);
            Ok(content)
        }

        pub(super) fn append(&mut self, bytes: &[u8]) {
            self.pending.extend_from_slice(bytes);
        }

        pub(super) fn sync(&mut self) -> io::Result<()> {
            if self.pending.is_empty() {
                return Ok(());
            }
            self.dir
                .put(&object_name(self.generation, self.next), std::mem::take(&mut self.pending))?;
            self.next += 1;
            Ok(())
        }

        pub(super) fn rewrite(&mut self, content: Vec<u8>) -> io::Result<()> {
            let generation = self.generation + 1;
            self.dir.put(&object_name(generation, 0), content)?;
            // The new generation is the log now; the older ones are garbage.
            for entry in self.dir.list("", false)? {
                if parse_name(&entry.name).is_some_and(|(g, _)| g < generation) {
                    self.dir.delete(&entry.name)?;
                }
            }
            (self.generation, self.next, self.pending) = (generation, 1, Vec::new());
            Ok(())
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn scratch(name: &str) -> (crate::testing::TempDir, Location) {
        let dir = crate::testing::TempDir::new(name).unwrap();
        let location = Location::local(dir.path());
        (dir, location)
    }

    #[test]
    fn urls_parse_to_locations_and_bad_ones_say_why() {
        assert_eq!(Location::parse("/tmp/x").unwrap().as_local(), Some(Path::new("/tmp/x")));
        assert_eq!(Location::parse("file:///tmp/x").unwrap().as_local(), Some(Path::new("/tmp/x")));
        assert_eq!(Location::parse("rel/dir").unwrap().as_local(), Some(Path::new("rel/dir")));
        let relative = Location::parse("file://tmp/x").unwrap_err().to_string();
        assert!(relative.contains("absolute path"), "{relative}");
        let hdfs = Location::parse("hdfs://nn:8020/ckpt").unwrap_err().to_string();
        assert!(hdfs.contains("hdfs:// is not supported yet"), "{hdfs}");
        let other = Location::parse("gs://b/p").unwrap_err().to_string();
        assert!(other.contains("gs:// scheme is not supported"), "{other}");
    }

    #[test]
    fn a_local_location_puts_gets_lists_and_deletes() {
        let (_dir, at) = scratch("storage-local");
        at.put("a/b.state", b"hello".to_vec()).unwrap();
        at.put("m.manifest", b"x".to_vec()).unwrap();
        assert_eq!(at.get("a/b.state").unwrap().as_deref(), Some(&b"hello"[..]));
        assert_eq!(at.get("missing").unwrap(), None);
        assert_eq!(at.read_prefix("a/b.state", 3).unwrap(), b"hel");
        let names: Vec<String> = at.list().unwrap().into_iter().map(|e| e.name).collect();
        assert_eq!(names, vec!["m.manifest"]);
        assert_eq!(at.list_dirs().unwrap(), vec!["a"]);
        at.delete_all("a").unwrap();
        at.delete("m.manifest").unwrap();
        at.delete("m.manifest").unwrap();
        assert!(at.list().unwrap().is_empty() && at.list_dirs().unwrap().is_empty());
        assert!(at.put("../escape", Vec::new()).is_err());
    }

    #[test]
    fn a_local_batch_directory_is_replaced_whole() {
        let (_dir, at) = scratch("storage-batch-dir");
        let target = at.join("counts-1000");
        target
            .write_directory(3, |i, out| out.write_all(format!("{i}\n").as_bytes()))
            .unwrap();
        target.write_directory(1, |_, out| out.write_all(b"again\n")).unwrap();
        let parts = target.read_directory().unwrap();
        assert_eq!(parts, vec![("part-00000".to_string(), b"again\n".to_vec())]);
        let missing = at.join("nothing").read_directory().unwrap_err().to_string();
        assert!(missing.contains("_SUCCESS is missing"), "{missing}");
    }

    #[test]
    fn a_local_append_log_keeps_what_was_synced_and_rewrites_at_once() {
        let (_dir, at) = scratch("storage-log");
        let (mut log, content) = AppendLog::open(&at, "receivers/r.wal").unwrap();
        assert!(content.is_empty());
        log.append(b"one,").unwrap();
        log.append(b"two,").unwrap();
        log.sync().unwrap();
        drop(log);
        let (mut log, content) = AppendLog::open(&at, "receivers/r.wal").unwrap();
        assert_eq!(content, b"one,two,");
        log.rewrite(b"two,".to_vec()).unwrap();
        log.append(b"three,").unwrap();
        log.sync().unwrap();
        assert_eq!(log.len(), 10);
        assert_eq!(AppendLog::open(&at, "receivers/r.wal").unwrap().1, b"two,three,");
    }

    #[cfg(feature = "s3")]
    mod on_objects {
        use super::*;
        use std::sync::Arc;

        fn memory() -> Location {
            let store = Arc::new(object_store::memory::InMemory::new());
            Location {
                kind: Kind::Objects(objects::Prefix::over(store, "bucket", "ckpt")),
            }
        }

        #[test]
        fn an_object_location_shows_its_url_and_behaves_as_a_directory() {
            let at = memory();
            assert_eq!(at.to_string(), "s3://bucket/ckpt");
            assert_eq!(at.join("a/b").to_string(), "s3://bucket/ckpt/a/b");
            assert_eq!(at.join("a/b").parent().0.to_string(), "s3://bucket/ckpt/a");
            at.put("checkpoint-1/worker-0.state", b"state".to_vec()).unwrap();
            at.put("checkpoint-1.manifest", b"m".to_vec()).unwrap();
            let names: Vec<String> = at.list().unwrap().into_iter().map(|e| e.name).collect();
            assert_eq!(names, vec!["checkpoint-1.manifest"]);
            assert_eq!(at.list_dirs().unwrap(), vec!["checkpoint-1"]);
            assert_eq!(at.read_prefix("checkpoint-1/worker-0.state", 2).unwrap(), b"st");
            assert_eq!(at.read_prefix("checkpoint-1/worker-0.state", 0).unwrap(), b"");
            at.delete_all("checkpoint-1").unwrap();
            assert!(at.list_dirs().unwrap().is_empty());
            assert_eq!(at.get("checkpoint-1.manifest").unwrap().as_deref(), Some(&b"m"[..]));
        }

        #[test]
        fn an_object_batch_directory_commits_with_its_success_object() {
            let at = memory().join("out/counts-1000");
            at.write_directory(3, |i, out| out.write_all(format!("{i}\n").as_bytes())).unwrap();
            at.write_directory(2, |i, out| out.write_all(format!("again {i}\n").as_bytes()))
                .unwrap();
            let parts = at.read_directory().unwrap();
            assert_eq!(
                parts,
                vec![
                    ("part-00000".to_string(), b"again 0\n".to_vec()),
                    ("part-00001".to_string(), b"again 1\n".to_vec())
                ]
            );
            // The third part of the first copy is gone; an uncommitted copy is not read.
            assert_eq!(at.get("part-00002").unwrap(), None);
            at.delete(SUCCESS).unwrap();
            assert!(at.read_directory().unwrap_err().to_string().contains("_SUCCESS is missing"));
        }

        #[test]
        fn an_object_append_log_is_one_object_per_sync_and_a_rewrite_starts_a_generation() {
            let at = memory();
            let (mut log, content) = AppendLog::open(&at, "receivers/r.wal").unwrap();
            assert!(content.is_empty());
            log.append(b"one,").unwrap();
            log.append(b"two,").unwrap();
            log.sync().unwrap();
            log.sync().unwrap();
            log.append(b"three,").unwrap();
            log.sync().unwrap();
            let objects = at.join("receivers/r.wal").list().unwrap().len();
            assert_eq!(objects, 2);
            // What was appended but not synced is not in the log.
            log.append(b"lost,").unwrap();
            let (mut log, content) = AppendLog::open(&at, "receivers/r.wal").unwrap();
            assert_eq!(content, b"one,two,three,");
            log.rewrite(b"three,".to_vec()).unwrap();
            log.append(b"four,").unwrap();
            log.sync().unwrap();
            assert_eq!(at.join("receivers/r.wal").list().unwrap().len(), 2);
            assert_eq!(AppendLog::open(&at, "receivers/r.wal").unwrap().1, b"three,four,");
        }
    }
}
