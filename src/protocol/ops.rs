//! Encoders for server-to-client ops: MSG, HMSG, +OK, -ERR, PING, PONG.
//!
//! Encoders append to a caller's buffer (a connection's outbound queue), so a
//! delivery costs one copy of the payload and no allocation.

pub const OK: &[u8] = b"+OK\r\n";
pub const PING: &[u8] = b"PING\r\n";
pub const PONG: &[u8] = b"PONG\r\n";

/// Appends `MSG <subject> <sid> [reply] <#bytes>\r\n<payload>\r\n`, or the HMSG form
/// when `hdr_len` is given (`msg` then starts with the header block).
pub fn encode_msg(
    out: &mut Vec<u8>,
    subject: &[u8],
    sid: &[u8],
    reply: Option<&[u8]>,
    hdr_len: Option<usize>,
    msg: &[u8],
) {
    out.reserve(subject.len() + sid.len() + reply.map_or(0, |r| r.len()) + msg.len() + 48);
    out.extend_from_slice(if hdr_len.is_some() { b"HMSG " } else { b"MSG " });
    out.extend_from_slice(subject);
    out.push(b' ');
    out.extend_from_slice(sid);
    out.push(b' ');
    if let Some(reply) = reply {
        out.extend_from_slice(reply);
        out.push(b' ');
    }
    encode_sizes_and_payload(out, hdr_len, msg);
}

/// The end of a MSG/HMSG (and LMSG/HMSG) line and what follows it:
/// `[<#hdr> ]<#total>\r\n<msg>\r\n`.
pub fn encode_sizes_and_payload(out: &mut Vec<u8>, hdr_len: Option<usize>, msg: &[u8]) {
    if let Some(h) = hdr_len {
        push_decimal(out, h as u64);
        out.push(b' ');
    }
    push_decimal(out, msg.len() as u64);
    out.extend_from_slice(b"\r\n");
    out.extend_from_slice(msg);
    out.extend_from_slice(b"\r\n");
}

/// Appends `-ERR '<text>'\r\n`.
pub fn encode_err(out: &mut Vec<u8>, text: &str) {
    out.extend_from_slice(b"-ERR '");
    out.extend_from_slice(text.as_bytes());
    out.extend_from_slice(b"'\r\n");
}

/// "00" to "99": two digits per division (a delivery writes five numbers).
const PAIRS: [u8; 200] = {
    let mut t = [0u8; 200];
    let mut i = 0;
    while i < 100 {
        t[2 * i] = b'0' + (i / 10) as u8;
        t[2 * i + 1] = b'0' + (i % 10) as u8;
        i += 1;
    }
    t
};

/// Appends `n` in decimal.
pub fn push_decimal(out: &mut impl bytes::BufMut, mut n: u64) {
    let mut digits = [0u8; 20];
    let mut at = digits.len();
    while n >= 100 {
        let p = (n % 100) as usize * 2;
        n /= 100;
        at -= 2;
        digits[at..at + 2].copy_from_slice(&PAIRS[p..p + 2]);
    }
    if n >= 10 {
        let p = n as usize * 2;
        at -= 2;
        digits[at..at + 2].copy_from_slice(&PAIRS[p..p + 2]);
    } else {
        at -= 1;
        digits[at] = b'0' + n as u8;
    }
    out.put_slice(&digits[at..]);
}

#[cfg(test)]
mod tests {
    use super::*;

    fn msg(
        subject: &str,
        sid: &str,
        reply: Option<&str>,
        hdr: Option<usize>,
        body: &str,
    ) -> String {
        let mut out = Vec::new();
        encode_msg(
            &mut out,
            subject.as_bytes(),
            sid.as_bytes(),
            reply.map(str::as_bytes),
            hdr,
            body.as_bytes(),
        );
        String::from_utf8(out).unwrap()
    }

    #[test]
    fn msg_and_hmsg_layouts() {
        assert_eq!(msg("foo", "1", None, None, "hi"), "MSG foo 1 2\r\nhi\r\n");
        assert_eq!(
            msg("foo", "1", Some("r"), None, ""),
            "MSG foo 1 r 0\r\n\r\n"
        );
        assert_eq!(
            msg("foo", "9", Some("r"), Some(12), "NATS/1.0\r\n\r\nhi"),
            "HMSG foo 9 r 12 14\r\nNATS/1.0\r\n\r\nhi\r\n"
        );
    }

    #[test]
    fn decimals() {
        let edges = [
            0u64,
            7,
            9,
            10,
            99,
            100,
            101,
            999,
            1000,
            1234567890,
            u64::MAX,
        ];
        let powers = (1..20).flat_map(|k| [10u64.pow(k) - 1, 10u64.pow(k), 10u64.pow(k) + 1]);
        for n in edges.into_iter().chain(powers) {
            let mut out = Vec::new();
            push_decimal(&mut out, n);
            assert_eq!(out, n.to_string().into_bytes());
        }
    }
}
