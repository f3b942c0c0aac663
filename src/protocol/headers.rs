//! NATS/1.0 header blocks: status-line messages the server originates.

/// Header block of a no-responders reply: status 503 plus the subject that had no
/// responders (nats-server 2.12+ adds `Nats-Subject`).
pub fn no_responders(subject: &[u8]) -> Vec<u8> {
    let mut block = Vec::with_capacity(subject.len() + 40);
    block.extend_from_slice(b"NATS/1.0 503\r\nNats-Subject: ");
    block.extend_from_slice(subject);
    block.extend_from_slice(b"\r\n\r\n");
    block
}

#[cfg(test)]
mod tests {
    #[test]
    fn no_responders_block() {
        assert_eq!(
            super::no_responders(b"a.b"),
            b"NATS/1.0 503\r\nNats-Subject: a.b\r\n\r\n"
        );
    }
}
