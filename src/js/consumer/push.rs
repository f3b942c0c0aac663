//! Push delivery's own rules: flow control (a window of bytes, a request
//! when half of it is used, the window doubling on each answer up to
//! `FC_WINDOW_MAX`), the rate limit (a token bucket in bytes, holding at most
//! one largest message, as nats-server's), and idle heartbeats. Pure: the
//! shell sends what these return.

use bytes::Bytes;

use crate::js::consumer::advisory::status;
use crate::js::consumer::pull::Status;
use crate::js::consumer::state::State;
use crate::js::types::seq::Nanos;
use crate::limits::FC_WINDOW_MAX;

/// The consumer's push settings a delivery needs.
#[derive(Debug, Clone, Copy)]
pub struct PushRules {
    pub flow_control: bool,
    /// Bits per second; 0 = no limit.
    pub rate_limit_bps: u64,
    /// The rate limiter's burst: the largest message the stream may hold.
    pub burst_bytes: u64,
}

impl State {
    /// Accounts a push delivery of `size` bytes: flow-control bytes, and the
    /// rate limit (which may set `hold_until`).
    pub fn pushed(&mut self, size: u64, rules: PushRules, now: Nanos) {
        self.last_push = now;
        if rules.flow_control {
            self.fc_bytes += size;
        }
        if rules.rate_limit_bps > 0 {
            let rate = rules.rate_limit_bps as f64 / 8.0;
            let burst = rules.burst_bytes as f64;
            if self.tokens_at == Nanos(0) {
                self.tokens = burst;
            } else {
                let refill = now.since(self.tokens_at).max(0) as f64 * rate / 1e9;
                self.tokens = (self.tokens + refill).min(burst);
            }
            self.tokens_at = now;
            self.tokens -= size as f64;
            if self.tokens < 0.0 {
                let wait = (-self.tokens / rate * 1e9).min(i64::MAX as f64 / 2.0) as i64;
                self.hold_until = now.after(wait);
            }
        }
    }

    /// Whether push delivery must stop: the flow-control window is used up.
    pub fn window_full(&self, flow_control: bool) -> bool {
        flow_control && self.fc_bytes >= self.fc_window
    }

    /// Whether a flow-control request is due (half the window used, none open).
    pub fn fc_request_due(&self, flow_control: bool) -> bool {
        flow_control && self.fc_pending.is_none() && self.fc_bytes * 2 >= self.fc_window
    }

    /// A flow-control request went out on `subject`, covering the bytes so far.
    pub fn fc_requested(&mut self, subject: Bytes) {
        assert!(
            self.fc_pending.is_none(),
            "one flow-control request at a time"
        );
        self.fc_pending = Some((subject, self.fc_bytes));
    }

    /// An answer to a flow-control request; true when it was the open one
    /// (the window is then freed by what it covered, and doubled).
    pub fn fc_answered(&mut self, subject: &[u8]) -> bool {
        match &self.fc_pending {
            Some((fc, covered)) if fc.as_ref() == subject => {
                self.fc_bytes = self.fc_bytes.saturating_sub(*covered);
                self.fc_window = (self.fc_window * 2).min(FC_WINDOW_MAX);
                self.fc_pending = None;
                true
            }
            _ => false,
        }
    }

    /// The idle heartbeat to the deliver subject when nothing went there for
    /// `hb` ns (counted from `created` at first); it carries the open
    /// flow-control request as `Nats-Consumer-Stalled`.
    pub fn push_heartbeat(
        &mut self,
        hb: i64,
        created: Nanos,
        to: &str,
        now: Nanos,
    ) -> Option<Status> {
        if hb <= 0 || self.last_push.max(created).after(hb) > now {
            return None;
        }
        let mut extra = vec![
            ("Nats-Last-Consumer", self.delivered_consumer.0.to_string()),
            ("Nats-Last-Stream", self.delivered_stream.0.to_string()),
        ];
        if let Some((fc, _)) = &self.fc_pending {
            extra.push((
                "Nats-Consumer-Stalled",
                String::from_utf8_lossy(fc).into_owned(),
            ));
        }
        self.last_push = now;
        Some((
            Bytes::from(to.to_string()),
            status("100 Idle Heartbeat", &extra),
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::limits::FC_WINDOW_START;

    #[test]
    fn flow_control_window_doubles_on_each_answer() {
        let mut st = State::new(Nanos(0));
        let rules = PushRules {
            flow_control: true,
            rate_limit_bps: 0,
            burst_bytes: 0,
        };
        st.pushed(FC_WINDOW_START / 2, rules, Nanos(1));
        assert!(st.fc_request_due(true));
        st.fc_requested(Bytes::from_static(b"$JS.FC.S.C.x"));
        assert!(!st.fc_request_due(true));
        st.pushed(FC_WINDOW_START / 2, rules, Nanos(2));
        assert!(st.window_full(true));
        assert!(!st.fc_answered(b"$JS.FC.S.C.other"));
        assert!(st.fc_answered(b"$JS.FC.S.C.x"));
        assert_eq!(st.fc_window, FC_WINDOW_START * 2);
        assert_eq!(st.fc_bytes, FC_WINDOW_START / 2);
    }

    #[test]
    fn rate_limit_holds_once_the_burst_is_spent() {
        let mut st = State::new(Nanos(0));
        // 8000 bits/s = 1000 bytes/s, burst 100 bytes.
        let rules = PushRules {
            flow_control: false,
            rate_limit_bps: 8000,
            burst_bytes: 100,
        };
        st.pushed(100, rules, Nanos(1));
        assert_eq!(st.hold_until, Nanos(0));
        st.pushed(50, rules, Nanos(1));
        assert_eq!(st.hold_until, Nanos(1 + 50_000_000));
    }

    #[test]
    fn heartbeats_name_the_stalled_request() {
        let mut st = State::new(Nanos(0));
        assert!(st.push_heartbeat(100, Nanos(0), "d", Nanos(50)).is_none());
        st.fc_requested(Bytes::from_static(b"$JS.FC.S.C.x"));
        let (to, h) = st.push_heartbeat(100, Nanos(0), "d", Nanos(100)).unwrap();
        assert_eq!(&to[..], b"d");
        let h = String::from_utf8(h).unwrap();
        assert!(h.contains("Nats-Consumer-Stalled: $JS.FC.S.C.x\r\n"), "{h}");
        assert!(st.push_heartbeat(100, Nanos(0), "d", Nanos(150)).is_none());
    }
}
