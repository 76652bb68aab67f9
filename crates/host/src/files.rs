//! Who has a file open, from `/proc`: every process's descriptors (`/proc/PID/fd`) compared with
//! the file by device and inode, so any spelling of the path (relative, through a symlink, a
//! hard link) and a file since renamed or deleted are all recognised. Memory maps without an open
//! descriptor are not seen (SQLite keeps descriptors to the database, `-wal` and `-shm` open for
//! as long as it maps them). Processes of other users cannot be inspected without privileges.

use std::collections::BTreeSet;
use std::os::unix::fs::MetadataExt;
use std::path::Path;

use crate::process::ProcessInfo;

/// A process that has the file open.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FileHolder {
    pub pid: u32,
    /// Its command line and start time, when it could still be read.
    pub process: Option<ProcessInfo>,
}

impl FileHolder {
    /// "PID 123 (`cmd args`)", for messages.
    pub fn describe(&self) -> String {
        match &self.process {
            Some(p) => format!("PID {} ({})", p.pid, p.command()),
            None => format!("PID {}", self.pid),
        }
    }
}

/// The processes that have `path` open, in PID order; none when the file does not exist.
pub fn file_holders(path: &Path) -> Vec<FileHolder> {
    let Ok(meta) = std::fs::metadata(path) else { return Vec::new() };
    let wanted = (meta.dev(), meta.ino());
    let mut pids = BTreeSet::new();
    let Ok(procs) = std::fs::read_dir("/proc") else { return Vec::new() };
    for entry in procs.flatten() {
        let Some(pid) = entry.file_name().to_str().and_then(|n| n.parse::<u32>().ok()) else { continue };
        let Ok(fds) = std::fs::read_dir(entry.path().join("fd")) else { continue };
        for fd in fds.flatten() {
            // `metadata` follows the descriptor's magic link to the open file itself, which
            // works for deleted and renamed files too (a `readlink` path would not).
            if let Ok(m) = std::fs::metadata(fd.path())
                && (m.dev(), m.ino()) == wanted
            {
                pids.insert(pid);
                break;
            }
        }
    }
    pids.into_iter().map(|pid| FileHolder { pid, process: ProcessInfo::of(pid) }).collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::process::{Command, Stdio};

    /// Kills the child on drop, so a failed assertion leaves no process behind.
    struct Child(std::process::Child);

    impl Drop for Child {
        fn drop(&mut self) {
            let _ = self.0.kill();
            let _ = self.0.wait();
        }
    }

    #[test]
    fn holders_are_found_by_inode_whatever_the_path_and_gone_when_closed() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("store.db");
        std::fs::write(&path, b"data").expect("write");
        assert!(file_holders(&path).is_empty(), "nobody has it open yet");

        let mine = std::fs::File::open(&path).expect("open");
        let holders = file_holders(&path);
        assert_eq!(holders.iter().map(|h| h.pid).collect::<Vec<_>>(), vec![std::process::id()]);
        assert!(holders[0].describe().starts_with(&format!("PID {} (", std::process::id())));

        // Another process, holding it as its standard input; found through another spelling
        // of the path (a symlink) too.
        let stdin = std::fs::File::open(&path).expect("open");
        let child =
            Child(Command::new("sleep").arg("30").stdin(Stdio::from(stdin)).spawn().expect("sleep starts"));
        let link = dir.path().join("link.db");
        std::os::unix::fs::symlink(&path, &link).expect("symlink");
        let pids: Vec<u32> = file_holders(&link).iter().map(|h| h.pid).collect();
        assert!(pids.contains(&child.0.id()) && pids.contains(&std::process::id()), "{pids:?}");
        let theirs = file_holders(&path).into_iter().find(|h| h.pid == child.0.id()).expect("child");
        assert!(theirs.describe().contains("sleep 30"), "{}", theirs.describe());

        drop(child);
        drop(mine);
        assert!(file_holders(&path).is_empty(), "closed and exited: {:?}", file_holders(&path));
        assert!(file_holders(&dir.path().join("missing")).is_empty());
    }

    #[test]
    fn a_file_that_was_renamed_while_open_is_still_recognised() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("a");
        std::fs::write(&path, b"x").expect("write");
        let _held = std::fs::File::open(&path).expect("open");
        let moved = dir.path().join("b");
        std::fs::rename(&path, &moved).expect("rename");
        assert_eq!(file_holders(&moved).len(), 1);
        // A new file at the old path is another file: not held.
        std::fs::write(&path, b"y").expect("write");
        assert!(file_holders(&path).is_empty());
    }
}
