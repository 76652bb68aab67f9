//! Per-process log files written by the governor from each child's stdout and stderr, rotated
//! by size (`NAME.log` → `NAME.log.1` → … → `NAME.log.N`, the oldest dropped), and read back by
//! `schedulezero logs`: the last lines, or followed across rotations (`-f`).

use std::fs::{File, OpenOptions};
use std::io::{BufRead, BufReader, Read, Seek, SeekFrom, Write};
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::time::Duration;

/// A log file that rotates itself when a write takes it past `max_bytes`.
#[derive(Debug)]
pub struct RotatingLog {
    path: PathBuf,
    max_bytes: u64,
    keep: usize,
    file: Option<File>,
    size: u64,
}

impl RotatingLog {
    pub fn open(path: &Path, max_bytes: u64, keep: usize) -> std::io::Result<RotatingLog> {
        if let Some(dir) = path.parent() {
            std::fs::create_dir_all(dir)?;
        }
        let file = OpenOptions::new().create(true).append(true).open(path)?;
        let size = file.metadata()?.len();
        Ok(RotatingLog { path: path.into(), max_bytes, keep, file: Some(file), size })
    }

    /// Appends one line (a newline is added when missing). Write errors are swallowed after
    /// one attempt to reopen: a full disk must not stop the process whose output this is.
    pub fn line(&mut self, bytes: &[u8]) {
        if self.file.is_none() {
            self.file = OpenOptions::new().create(true).append(true).open(&self.path).ok();
        }
        let Some(file) = self.file.as_mut() else { return };
        let newline = !bytes.ends_with(b"\n");
        let ok = file.write_all(bytes).and_then(|()| if newline { file.write_all(b"\n") } else { Ok(()) });
        if ok.is_err() {
            self.file = None;
            return;
        }
        self.size += bytes.len() as u64 + u64::from(newline);
        if self.size >= self.max_bytes {
            self.rotate();
        }
    }

    /// `NAME.log.{k}` → `.{k+1}` from the oldest kept, `NAME.log` → `.1`, a new `NAME.log`.
    fn rotate(&mut self) {
        self.file = None;
        let numbered = |k: usize| PathBuf::from(format!("{}.{k}", self.path.display()));
        if self.keep == 0 {
            let _ = std::fs::remove_file(&self.path);
        } else {
            let _ = std::fs::remove_file(numbered(self.keep));
            for k in (1..self.keep).rev() {
                let _ = std::fs::rename(numbered(k), numbered(k + 1));
            }
            let _ = std::fs::rename(&self.path, numbered(1));
        }
        self.file = OpenOptions::new().create(true).append(true).open(&self.path).ok();
        self.size = 0;
    }
}

/// The last `n` lines of a file (all of them when it is shorter).
pub fn last_lines(path: &Path, n: usize) -> std::io::Result<Vec<String>> {
    let mut file = File::open(path)?;
    let len = file.metadata()?.len();
    last_lines_of(&mut file, len, n)
}

/// The last `n` lines of the first `len` bytes of `file`.
fn last_lines_of(file: &mut File, len: u64, n: usize) -> std::io::Result<Vec<String>> {
    if n == 0 {
        return Ok(Vec::new());
    }
    // Read back from the end in growing windows until n lines are in, or the start is reached.
    let mut window: u64 = 64 * 1024;
    loop {
        let from = len.saturating_sub(window);
        file.seek(SeekFrom::Start(from))?;
        let mut buf = Vec::new();
        Read::by_ref(file).take(len - from).read_to_end(&mut buf)?;
        let text = String::from_utf8_lossy(&buf);
        let mut lines: Vec<&str> = text.lines().collect();
        if from > 0 && !lines.is_empty() {
            lines.remove(0); // most likely cut in the middle
        }
        if lines.len() >= n || from == 0 {
            let skip = lines.len().saturating_sub(n);
            return Ok(lines[skip..].iter().map(|l| l.to_string()).collect());
        }
        window *= 4;
    }
}

/// Writes the last `last` lines of `path` to `out`, then what is appended to it until `stop`
/// says so, across rotations: when the path names another file (the old one was renamed to
/// `.1`), the rest of the old file is written first, then the new one from its start. The file
/// is opened once for both, so no line written meanwhile is lost or printed twice.
pub fn follow(path: &Path, last: usize, out: &mut dyn Write, stop: &dyn Fn() -> bool) -> std::io::Result<()> {
    let mut current = open_with_tail(path, last, out)?;
    loop {
        if let Some((file, _)) = current.as_mut() {
            copy_available(file, out)?;
        }
        if stop() {
            return Ok(());
        }
        let now = std::fs::metadata(path).ok().map(|m| (m.dev(), m.ino()));
        match (&mut current, now) {
            (Some((file, id)), Some(now_id)) if *id != now_id => {
                // Rotated: finish the old file, then any file rotated since (when it rotated
                // more than once between two looks), then the new one from its beginning.
                copy_available(file, out)?;
                let old_id = *id;
                for between in rotated_since(path, old_id) {
                    if let Ok(mut f) = File::open(&between) {
                        copy_available(&mut f, out)?;
                    }
                }
                current = File::open(path).ok().map(|f| (f, now_id));
            }
            (None, Some(now_id)) => current = File::open(path).ok().map(|f| (f, now_id)),
            _ => {}
        }
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// The rotated files newer than the one with identity `old` (`NAME.log.{j-1}` … `.1` when the
/// old one is now `.j`), oldest first; none when the old one is not found (deleted already).
fn rotated_since(path: &Path, old: (u64, u64)) -> Vec<PathBuf> {
    let numbered = |k: usize| PathBuf::from(format!("{}.{k}", path.display()));
    let found = (1..=100).find(|k| std::fs::metadata(numbered(*k)).is_ok_and(|m| (m.dev(), m.ino()) == old));
    match found {
        Some(j) => (1..j).rev().map(numbered).collect(),
        None => Vec::new(),
    }
}

fn open_with_tail(
    path: &Path,
    last: usize,
    out: &mut dyn Write,
) -> std::io::Result<Option<(File, (u64, u64))>> {
    let Ok(mut file) = File::open(path) else { return Ok(None) };
    let meta = file.metadata()?;
    let len = meta.len();
    for line in last_lines_of(&mut file, len, last)? {
        out.write_all(line.as_bytes())?;
        out.write_all(b"\n")?;
    }
    out.flush()?;
    file.seek(SeekFrom::Start(len))?;
    Ok(Some((file, (meta.dev(), meta.ino()))))
}

fn copy_available(file: &mut File, out: &mut dyn Write) -> std::io::Result<()> {
    let mut reader = BufReader::new(file);
    let mut line = Vec::new();
    loop {
        line.clear();
        let n = reader.read_until(b'\n', &mut line)?;
        if n == 0 {
            break;
        }
        if !line.ends_with(b"\n") {
            // Half a line: leave it for the next round.
            let back = i64::try_from(n).unwrap_or(0);
            reader.seek(SeekFrom::Current(-back))?;
            break;
        }
        out.write_all(&line)?;
    }
    out.flush()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rotation_keeps_n_files_and_drops_the_oldest() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("p.log");
        let mut log = RotatingLog::open(&path, 1024, 2).expect("open");
        for i in 0..100 {
            log.line(format!("line {i:03} {}", "x".repeat(40)).as_bytes());
        }
        let names: Vec<String> = {
            let mut n: Vec<String> = std::fs::read_dir(dir.path())
                .expect("dir")
                .flatten()
                .map(|e| e.file_name().to_string_lossy().into_owned())
                .collect();
            n.sort();
            n
        };
        assert_eq!(names, ["p.log", "p.log.1", "p.log.2"]);
        for name in &names {
            let len = std::fs::metadata(dir.path().join(name)).expect("meta").len();
            assert!(len < 1024 + 60, "{name}: {len}");
        }
        let last = last_lines(&path, 1).expect("read");
        assert!(last[0].starts_with("line 099"), "{last:?}");
        // The rotated files hold the lines just before, in order.
        let older = last_lines(&dir.path().join("p.log.1"), 1).expect("read");
        assert!(older[0] < last[0]);
    }

    #[test]
    fn last_lines_reads_back_from_the_end() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("a.log");
        let text: String = (0..5000).map(|i| format!("{i}\n")).collect();
        std::fs::write(&path, text).expect("write");
        assert_eq!(last_lines(&path, 3).expect("read"), ["4997", "4998", "4999"]);
        assert_eq!(last_lines(&path, 10_000).expect("read").len(), 5000);
    }

    #[test]
    fn follow_goes_on_across_a_rotation() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("f.log");
        let mut log = RotatingLog::open(&path, 2048, 3).expect("open");
        log.line(b"before following");
        let (tx, rx) = std::sync::mpsc::channel::<()>();
        let follower_path = path.clone();
        let follower = std::thread::spawn(move || {
            let mut out = Vec::new();
            follow(&follower_path, 0, &mut out, &|| rx.try_recv().is_ok()).expect("follow");
            String::from_utf8(out).expect("utf-8")
        });
        std::thread::sleep(Duration::from_millis(300));
        // Bursts of ~100 lines (about two rotations) between two looks of the follower.
        for i in 0..200 {
            log.line(format!("followed {i:03} {}", "y".repeat(30)).as_bytes());
            if i % 100 == 0 {
                std::thread::sleep(Duration::from_millis(300));
            }
        }
        std::thread::sleep(Duration::from_millis(500));
        tx.send(()).expect("stop");
        let seen = follower.join().expect("follower");
        assert!(!seen.contains("before following"), "starts at the end");
        let numbers: Vec<&str> = seen.lines().map(|l| &l[9..12]).collect();
        let expected: Vec<String> = (0..200).map(|i| format!("{i:03}")).collect();
        assert_eq!(numbers, expected, "every line once, in order, across rotations");
        assert!(dir.path().join("f.log.1").exists(), "it did rotate");
    }
}
