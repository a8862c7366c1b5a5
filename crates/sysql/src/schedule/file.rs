//! A results file rotated by size, as logrotate would: `PATH` is renamed to
//! `PATH.1`, older ones shift up to `PATH.<keep>`, the oldest is removed.

use std::fs::{File, OpenOptions, Permissions};
use std::io::{self, BufWriter, Write};
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};

/// A file that is renamed to `PATH.1` (and older ones shifted up to
/// `PATH.<keep>`) before a write would take it past `max_bytes`.
pub struct RotatingFile {
    path: PathBuf,
    max_bytes: u64,
    keep: usize,
    file: BufWriter<File>,
    size: u64,
}

impl RotatingFile {
    /// Opens (appending) or creates the file, readable by its owner only:
    /// results can be as sensitive as the events. An existing file readable
    /// by others is narrowed to that.
    pub fn open(path: &Path, max_bytes: u64, keep: usize) -> io::Result<RotatingFile> {
        let file = OpenOptions::new().create(true).append(true).mode(0o600).open(path)?;
        let meta = file.metadata()?;
        if meta.permissions().mode() & 0o077 != 0 {
            file.set_permissions(Permissions::from_mode(meta.permissions().mode() & 0o700))?;
        }
        let size = meta.len();
        Ok(RotatingFile { path: path.to_path_buf(), max_bytes, keep, file: BufWriter::new(file), size })
    }

    /// Writes `body`, rotating first if it would not fit; a fresh file
    /// starts with `header`, if there is one.
    pub fn write<H>(&mut self, body: &[u8], header: Option<H>) -> io::Result<()>
    where
        H: FnOnce() -> io::Result<Vec<u8>>,
    {
        if self.size > 0 && self.size + body.len() as u64 > self.max_bytes {
            self.rotate()?;
        }
        if let (0, Some(header)) = (self.size, header) {
            let header = header()?;
            self.file.write_all(&header)?;
            self.size += header.len() as u64;
        }
        self.file.write_all(body)?;
        self.size += body.len() as u64;
        Ok(())
    }

    pub fn flush(&mut self) -> io::Result<()> {
        self.file.flush()
    }

    fn rotate(&mut self) -> io::Result<()> {
        self.file.flush()?;
        let numbered = |i: usize| {
            let mut p = self.path.clone().into_os_string();
            p.push(format!(".{i}"));
            PathBuf::from(p)
        };
        for i in (1..self.keep).rev() {
            match std::fs::rename(numbered(i), numbered(i + 1)) {
                Err(e) if e.kind() != io::ErrorKind::NotFound => return Err(e),
                _ => {}
            }
        }
        if self.keep > 0 {
            std::fs::rename(&self.path, numbered(1))?;
        } else {
            std::fs::remove_file(&self.path)?;
        }
        *self = RotatingFile::open(&self.path, self.max_bytes, self.keep)?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rotates_before_a_write_that_would_not_fit() {
        let dir = std::env::temp_dir().join(format!("sysql-file-test-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("r.csv");
        let mut f = RotatingFile::open(&path, 10, 2).unwrap();
        let header = || Some(|| Ok(b"h\n".to_vec()));
        for body in ["aaaa\n", "bbbb\n", "cccccccccccc\n", "dd\n"] {
            f.write(body.as_bytes(), header()).unwrap();
        }
        f.flush().unwrap();
        let read = |name: &str| std::fs::read_to_string(dir.join(name)).unwrap();
        assert_eq!(read("r.csv"), "h\ndd\n");
        // a body larger than the limit goes into a file of its own, once
        assert_eq!(read("r.csv.1"), "h\ncccccccccccc\n");
        assert_eq!(read("r.csv.2"), "h\nbbbb\n");
        assert!(!dir.join("r.csv.3").exists());
        for name in ["r.csv", "r.csv.1", "r.csv.2"] {
            let mode = std::fs::metadata(dir.join(name)).unwrap().permissions().mode() & 0o777;
            assert_eq!(mode, 0o600, "{name}");
        }
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn an_existing_file_readable_by_others_is_narrowed() {
        let path = std::env::temp_dir().join(format!("sysql-file-test-wide-{}", std::process::id()));
        std::fs::write(&path, "old\n").unwrap();
        std::fs::set_permissions(&path, Permissions::from_mode(0o644)).unwrap();
        let mut f = RotatingFile::open(&path, 1 << 20, 1).unwrap();
        f.write::<fn() -> io::Result<Vec<u8>>>(b"new\n", None).unwrap();
        f.flush().unwrap();
        assert_eq!(std::fs::read_to_string(&path).unwrap(), "old\nnew\n");
        assert_eq!(std::fs::metadata(&path).unwrap().permissions().mode() & 0o777, 0o600);
        std::fs::remove_file(&path).unwrap();
    }
}
