//! PID files and port holders against the real process table: child processes started and
//! killed here, sockets bound on port 0.

use std::io::BufRead;
use std::net::TcpListener;
use std::process::{Child, Command, Stdio};

use schedulezero_host::{PidFile, PidFileError, PidRecord, PidStatus, ProcessInfo, port_holders};

/// A child killed (by PID) when dropped.
struct Kid(Child);

impl Drop for Kid {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// `sleep 30`, once its command line shows in /proc (right after spawn it may still be empty:
/// the exec is under way).
fn sleeper() -> Kid {
    let kid = Kid(Command::new("sleep").arg("30").spawn().expect("sleep starts"));
    for _ in 0..500 {
        if ProcessInfo::of(kid.0.id()).is_some_and(|p| p.cmdline.first().is_some_and(|c| c == "sleep")) {
            return kid;
        }
        std::thread::sleep(std::time::Duration::from_millis(10));
    }
    panic!("sleep did not show its command line within 5 s");
}

fn record_of(pid: u32) -> PidRecord {
    let p = ProcessInfo::of(pid).expect("process exists");
    PidRecord { pid: p.pid, start_ticks: p.start_ticks, cmdline: p.cmdline }
}

#[test]
fn a_live_pid_file_blocks_a_second_owner_and_names_the_holder() {
    let dir = tempfile::tempdir().unwrap();
    let file = PidFile::new(dir.path().join("run/server.pid"));
    let kid = sleeper();
    file.write(&record_of(kid.0.id())).unwrap();
    assert!(matches!(file.status(), PidStatus::Live(r) if r.pid == kid.0.id()));
    let err = file.acquire().expect_err("a live holder refuses");
    assert!(matches!(&err, PidFileError::AlreadyRunning { record, .. } if record.pid == kid.0.id()));
    let message = err.to_string();
    assert!(message.contains(&kid.0.id().to_string()) && message.contains("sleep 30"), "{message}");
}

#[test]
fn a_dead_holder_is_stale_and_acquire_takes_the_file_over() {
    let dir = tempfile::tempdir().unwrap();
    let file = PidFile::new(dir.path().join("server.pid"));
    let mut kid = sleeper();
    let record = record_of(kid.0.id());
    file.write(&record).unwrap();
    kid.0.kill().unwrap();
    kid.0.wait().unwrap();
    assert_eq!(file.status(), PidStatus::Dead(record.clone()));
    let (guard, was) = file.acquire().expect("stale file taken over");
    assert_eq!(was, PidStatus::Dead(record));
    assert_eq!(guard.record().pid, std::process::id());
    assert!(matches!(file.status(), PidStatus::Live(r) if r.pid == std::process::id()));
    drop(guard);
    assert_eq!(file.status(), PidStatus::Absent, "the guard removes its own file");
}

#[test]
fn a_recycled_pid_is_not_taken_for_the_original() {
    let dir = tempfile::tempdir().unwrap();
    let file = PidFile::new(dir.path().join("server.pid"));
    let kid = sleeper();
    // The file's PID is alive, but that process started at another time: someone else's now.
    let mut record = record_of(kid.0.id());
    record.start_ticks += 1;
    file.write(&record).unwrap();
    match file.status() {
        PidStatus::Reused { record: r, now } => {
            assert_eq!(r, record);
            assert_eq!(now.pid, kid.0.id());
            assert_eq!(now.cmdline, vec!["sleep", "30"]);
        }
        other => panic!("expected Reused, got {other:?}"),
    }
    assert!(matches!(file.clean_if_stale(), PidStatus::Reused { .. }));
    assert_eq!(file.status(), PidStatus::Absent);
}

#[test]
fn an_unreadable_pid_file_is_stale() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("server.pid");
    std::fs::write(&path, "12345\n").unwrap();
    let file = PidFile::new(&path);
    assert!(matches!(file.status(), PidStatus::Unreadable(_)));
    let (_guard, was) = file.acquire().expect("replaced");
    assert!(matches!(was, PidStatus::Unreadable(_)));
}

#[test]
fn the_holder_of_a_listening_port_is_found_with_its_command_line() {
    // This process, IPv4 and IPv6.
    let v4 = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = v4.local_addr().unwrap().port();
    let holders = port_holders(port);
    assert_eq!(holders.len(), 1, "{holders:?}");
    assert_eq!(holders[0].local, format!("127.0.0.1:{port}"));
    assert_eq!(holders[0].state, "LISTEN");
    assert_eq!(holders[0].process.as_ref().map(|p| p.pid), Some(std::process::id()));
    if let Ok(v6) = TcpListener::bind("[::1]:0") {
        let port6 = v6.local_addr().unwrap().port();
        let h = port_holders(port6);
        assert_eq!(h.first().map(|h| h.local.clone()), Some(format!("[::1]:{port6}")));
    }

    // Another process: the PID and command line a user needs to act.
    let mut child = Command::new("python3")
        .args([
            "-c",
            "import socket,time; s=socket.socket(); s.bind(('127.0.0.1',0)); s.listen(); \
             print(s.getsockname()[1], flush=True); time.sleep(30)",
        ])
        .stdout(Stdio::piped())
        .spawn()
        .expect("python3 starts");
    let mut line = String::new();
    std::io::BufReader::new(child.stdout.take().unwrap()).read_line(&mut line).unwrap();
    let kid = Kid(child);
    let port: u16 = line.trim().parse().expect("a port");
    let holders = port_holders(port);
    assert_eq!(holders.len(), 1, "{holders:?}");
    let p = holders[0].process.as_ref().expect("found");
    assert_eq!(p.pid, kid.0.id());
    assert!(p.cmdline[0].ends_with("python3"), "{:?}", p.cmdline);
    assert_eq!(p.cmdline[1], "-c");
    let described = holders[0].describe();
    assert!(
        described.starts_with(&format!("PID {} (", kid.0.id())) && described.contains("python3 -c"),
        "{described}"
    );

    drop(kid);
    drop(v4);
    assert!(port_holders(port).is_empty(), "a free port has no holder");
}
