//! Who holds a TCP port, from `/proc`: the sockets bound to it (`/proc/net/tcp` and `tcp6`),
//! then the processes that have those sockets open (`/proc/PID/fd`). Processes of other users
//! cannot be inspected without privileges; their sockets are reported with no process.

use std::collections::HashMap;

use crate::process::ProcessInfo;

/// One socket bound to the port, and who has it open.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PortHolder {
    /// `address:port` as bound (e.g. `127.0.0.1:8888`, `[::]:8888`).
    pub local: String,
    /// `LISTEN`, `ESTABLISHED`, … (a socket only bound, never listening, shows `CLOSE`).
    pub state: String,
    /// The process holding it, when it could be found.
    pub process: Option<ProcessInfo>,
}

impl PortHolder {
    /// "PID 123 (`cmd args`)" or "an unknown process", for messages.
    pub fn describe(&self) -> String {
        match &self.process {
            Some(p) => format!("PID {} ({})", p.pid, p.command()),
            None => "a process this user cannot inspect".to_string(),
        }
    }
}

/// Sockets bound to local TCP `port` that hold it against a new bind: listening ones, and
/// bound ones that are not connected to anything. Connections *to* that port from elsewhere
/// are not listed.
pub fn port_holders(port: u16) -> Vec<PortHolder> {
    let mut sockets = Vec::new();
    for (file, v6) in [("/proc/net/tcp", false), ("/proc/net/tcp6", true)] {
        if let Ok(text) = std::fs::read_to_string(file) {
            sockets.extend(parse_table(&text, v6).into_iter().filter(|s| s.port == port && s.holds_port()));
        }
    }
    if sockets.is_empty() {
        return Vec::new();
    }
    let owners = socket_owners();
    sockets
        .into_iter()
        .map(|s| PortHolder {
            local: s.local(),
            state: s.state_name().to_string(),
            process: owners.get(&s.inode).and_then(|pid| ProcessInfo::of(*pid)),
        })
        .collect()
}

#[derive(Debug, PartialEq)]
struct Socket {
    address: String,
    port: u16,
    state: u8,
    inode: u64,
    v6: bool,
}

impl Socket {
    /// Listening, or bound and closed (a socket that bound but did not listen yet).
    fn holds_port(&self) -> bool {
        self.state == 0x0A || self.state == 0x07
    }

    fn local(&self) -> String {
        if self.v6 {
            format!("[{}]:{}", self.address, self.port)
        } else {
            format!("{}:{}", self.address, self.port)
        }
    }

    fn state_name(&self) -> &'static str {
        match self.state {
            0x01 => "ESTABLISHED",
            0x06 => "TIME_WAIT",
            0x07 => "CLOSE",
            0x0A => "LISTEN",
            _ => "OTHER",
        }
    }
}

/// Rows of `/proc/net/tcp{,6}`: `sl local_address rem_address st … uid timeout inode …`.
fn parse_table(text: &str, v6: bool) -> Vec<Socket> {
    text.lines()
        .skip(1)
        .filter_map(|line| {
            let f: Vec<&str> = line.split_whitespace().collect();
            let (addr, port) = f.get(1)?.split_once(':')?;
            Some(Socket {
                address: if v6 { ipv6(addr)? } else { ipv4(addr)? },
                port: u16::from_str_radix(port, 16).ok()?,
                state: u8::from_str_radix(f.get(3)?, 16).ok()?,
                inode: f.get(9)?.parse().ok()?,
                v6,
            })
        })
        .collect()
}

/// `/proc` prints an IPv4 address as the 32-bit word it has in memory (network byte order),
/// read in host byte order: the word's native bytes are the address's bytes.
fn ipv4(hex: &str) -> Option<String> {
    let n = u32::from_str_radix(hex, 16).ok()?;
    Some(std::net::Ipv4Addr::from(n.to_ne_bytes()).to_string())
}

/// An IPv6 address is 32 hex digits: four 32-bit words, each in host byte order.
fn ipv6(hex: &str) -> Option<String> {
    if hex.len() != 32 {
        return None;
    }
    let mut bytes = [0u8; 16];
    for w in 0..4 {
        let word = u32::from_str_radix(&hex[w * 8..w * 8 + 8], 16).ok()?;
        bytes[w * 4..w * 4 + 4].copy_from_slice(&word.to_ne_bytes());
    }
    Some(std::net::Ipv6Addr::from(bytes).to_string())
}

/// Socket inode → PID, for every process whose descriptors this user can read.
fn socket_owners() -> HashMap<u64, u32> {
    let mut owners = HashMap::new();
    let Ok(procs) = std::fs::read_dir("/proc") else { return owners };
    for entry in procs.flatten() {
        let Some(pid) = entry.file_name().to_str().and_then(|n| n.parse::<u32>().ok()) else { continue };
        let Ok(fds) = std::fs::read_dir(entry.path().join("fd")) else { continue };
        for fd in fds.flatten() {
            if let Ok(target) = std::fs::read_link(fd.path())
                && let Some(inode) = target
                    .to_str()
                    .and_then(|t| t.strip_prefix("socket:["))
                    .and_then(|t| t.strip_suffix(']'))
                    .and_then(|t| t.parse::<u64>().ok())
            {
                owners.entry(inode).or_insert(pid);
            }
        }
    }
    owners
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn proc_net_tcp_rows_are_read() {
        let v4 = "  sl  local_address rem_address   st tx_queue rx_queue tr tm->when retrnsmt   uid  timeout inode\n   0: 0100007F:22B8 00000000:0000 0A 00000000:00000000 00:00000000 00000000     0        0 12345 1 0000000000000000 100 0 0 10 0\n";
        let rows = parse_table(v4, false);
        assert_eq!(rows.len(), 1);
        assert_eq!(rows[0].local(), "127.0.0.1:8888");
        assert_eq!((rows[0].state_name(), rows[0].inode), ("LISTEN", 12345));
        let v6 = "  sl  local_address                         remote_address                        st tx_queue rx_queue tr tm->when retrnsmt   uid  timeout inode\n   0: 00000000000000000000000001000000:1092 00000000000000000000000000000000:0000 0A 00000000:00000000 00:00000000 00000000     0        0 777 1 0000000000000000 100 0 0 10 0\n";
        let rows = parse_table(v6, true);
        assert_eq!(rows[0].local(), "[::1]:4242");
    }
}
