//! Which protocol a peer of the server's ROUTER socket speaks, from the frames it sent.
//!
//! One ROUTER port serves both: a version-1 client uses a REQ socket, whose messages arrive as an
//! empty delimiter frame and one JSON frame; a native handler's DEALER sends the signature frame
//! and one JSON frame. Anything else is refused.

use crate::native::SIGNATURE;

/// A ROUTER message without its routing-id frame, classified.
#[derive(Debug, PartialEq, Eq)]
pub enum Envelope<'a> {
    /// Native: the JSON frame after the signature.
    Native(&'a [u8]),
    /// Version 1: the JSON frame after the REQ delimiter.
    V1(&'a [u8]),
    /// Not a message of either protocol; the text says why.
    Malformed(String),
}

/// Classifies the frames that followed the routing id.
pub fn classify(frames: &[Vec<u8>]) -> Envelope<'_> {
    match frames {
        [first, body] if first.is_empty() => Envelope::V1(body),
        [first, body] if first.as_slice() == SIGNATURE => Envelope::Native(body),
        [first, ..] if first.as_slice() == SIGNATURE => {
            Envelope::Malformed(format!("a native message has 2 frames, got {}", frames.len()))
        }
        [first, ..] if first.starts_with(b"SZ") && first.len() <= 8 => Envelope::Malformed(format!(
            "unsupported protocol '{}': this server speaks {}",
            String::from_utf8_lossy(first),
            String::from_utf8_lossy(SIGNATURE)
        )),
        [] => Envelope::Malformed("empty message".into()),
        _ => Envelope::Malformed(format!(
            "{} frame(s) without the {} signature or a REQ delimiter",
            frames.len(),
            String::from_utf8_lossy(SIGNATURE)
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tells_the_protocols_apart() {
        let v1 = vec![vec![], b"{}".to_vec()];
        assert_eq!(classify(&v1), Envelope::V1(b"{}"));
        let native = vec![b"SZ1".to_vec(), b"{}".to_vec()];
        assert_eq!(classify(&native), Envelope::Native(b"{}"));
        assert!(
            matches!(classify(&[b"SZ2".to_vec(), b"{}".to_vec()]), Envelope::Malformed(m) if m.contains("SZ2"))
        );
        assert!(matches!(classify(&[b"SZ1".to_vec()]), Envelope::Malformed(m) if m.contains("2 frames")));
        assert!(matches!(classify(&[b"GET / HTTP/1.1".to_vec()]), Envelope::Malformed(_)));
        assert!(matches!(classify(&[]), Envelope::Malformed(_)));
    }
}
