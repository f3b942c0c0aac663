//! What a consumer tells the world besides messages: status header blocks
//! (100/404/408/409), advisories and sampled-ack metrics on `$JS.EVENT.>`,
//! headers-only deliveries; and the text helpers they share.

use bytes::Bytes;

use crate::js::consumer::state::Pend;
use crate::js::consumer::Consumer;
use crate::js::types::json::{self, now_nanos};
use crate::js::types::seq::{ConsumerSeq, DeliveryCount, Nanos, StreamSeq};
use crate::shard::Shard;

pub fn random_token(shard: &Shard, n: usize) -> String {
    const ALPHABET: &[u8] = b"0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz";
    (0..n)
        .map(|_| ALPHABET[(shard.random() % 62) as usize] as char)
        .collect()
}

pub use crate::js::types::json::go_duration;

pub fn status(code: &str, extra: &[(&str, String)]) -> Vec<u8> {
    let mut h = format!("NATS/1.0 {code}\r\n");
    for (k, v) in extra {
        h.push_str(&format!("{k}: {v}\r\n"));
    }
    h.push_str("\r\n");
    h.into_bytes()
}

impl Consumer {
    pub(super) fn sample_ack(&self, shard: &Shard, pct: u64, sseq: StreamSeq, p: Pend, now: Nanos) {
        if pct == 0 || shard.random() % 100 >= pct {
            return;
        }
        let (cseq, dc, delivered_at) = (p.cseq.0, p.dc.0, p.delivered);
        let body = format!(
            concat!(
                "{{\"type\":\"io.nats.jetstream.metric.v1.consumer_ack\",\"id\":\"{}\",",
                "\"timestamp\":\"{}\",\"stream\":{},\"consumer\":{},\"consumer_seq\":{},",
                "\"stream_seq\":{},\"ack_time\":{},\"deliveries\":{}}}"
            ),
            random_token(shard, 22),
            json::rfc3339(now.0),
            serde_json::to_string(&self.stream.name).expect("str"),
            serde_json::to_string(&self.name).expect("str"),
            cseq,
            sseq.0,
            now.since(delivered_at).max(0),
            dc
        );
        let subject = Bytes::from(format!(
            "$JS.EVENT.METRIC.CONSUMER.ACK.{}.{}",
            self.stream.name, self.name
        ));
        shard.reply(&subject, None, body.as_bytes());
    }

    pub(super) fn advisory_term(
        &self,
        shard: &Shard,
        sseq: StreamSeq,
        cseq: ConsumerSeq,
        dc: DeliveryCount,
        reason: Option<&str>,
    ) {
        let mut body = format!(
            concat!(
                "{{\"type\":\"io.nats.jetstream.advisory.v1.terminated\",\"id\":\"{}\",",
                "\"timestamp\":\"{}\",\"stream\":{},\"consumer\":{},\"consumer_seq\":{},",
                "\"stream_seq\":{},\"deliveries\":{}"
            ),
            random_token(shard, 22),
            json::rfc3339(now_nanos()),
            serde_json::to_string(&self.stream.name).expect("str"),
            serde_json::to_string(&self.name).expect("str"),
            cseq.0,
            sseq.0,
            dc.0
        );
        if let Some(r) = reason {
            body.push_str(&format!(
                ",\"reason\":{}",
                serde_json::to_string(&r).expect("str")
            ));
        }
        body.push('}');
        let subject = Bytes::from(format!(
            "$JS.EVENT.ADVISORY.CONSUMER.MSG_TERMINATED.{}.{}",
            self.stream.name, self.name
        ));
        shard.reply(&subject, None, body.as_bytes());
    }

    pub(super) fn advisory_max_deliver(&self, shard: &Shard, sseq: StreamSeq, dc: DeliveryCount) {
        let body = format!(
            concat!(
                "{{\"type\":\"io.nats.jetstream.advisory.v1.max_deliver\",\"id\":\"{}\",",
                "\"timestamp\":\"{}\",\"stream\":{},\"consumer\":{},\"stream_seq\":{},",
                "\"deliveries\":{}}}"
            ),
            random_token(shard, 22),
            json::rfc3339(now_nanos()),
            serde_json::to_string(&self.stream.name).expect("str"),
            serde_json::to_string(&self.name).expect("str"),
            sseq.0,
            dc.0
        );
        let subject = Bytes::from(format!(
            "$JS.EVENT.ADVISORY.CONSUMER.MAX_DELIVERIES.{}.{}",
            self.stream.name, self.name
        ));
        shard.reply(&subject, None, body.as_bytes());
    }
}

/// The header block of a headers-only delivery: stored headers plus
/// `Nats-Msg-Size`.
pub fn headers_only(hdr: &[u8], size: usize) -> Vec<u8> {
    let mut out = if hdr.len() >= 4 && hdr.ends_with(b"\r\n\r\n") {
        hdr[..hdr.len() - 2].to_vec()
    } else {
        b"NATS/1.0\r\n".to_vec()
    };
    out.extend_from_slice(format!("Nats-Msg-Size: {size}\r\n\r\n").as_bytes());
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn go_durations() {
        assert_eq!(go_duration(2_000_000_000), "2s");
        assert_eq!(go_duration(1_500_000_000), "1.5s");
        assert_eq!(go_duration(500_000_000), "500ms");
        assert_eq!(go_duration(90_000_000_000), "1m30s");
        assert_eq!(go_duration(3_600_000_000_000), "1h0m0s");
    }

    #[test]
    fn headers_only_block() {
        assert_eq!(
            headers_only(b"", 3),
            b"NATS/1.0\r\nNats-Msg-Size: 3\r\n\r\n".to_vec()
        );
        assert_eq!(
            headers_only(b"NATS/1.0\r\nX-Foo: bar\r\n\r\n", 4),
            b"NATS/1.0\r\nX-Foo: bar\r\nNats-Msg-Size: 4\r\n\r\n".to_vec()
        );
    }
}
