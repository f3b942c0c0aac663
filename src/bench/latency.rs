//! Latency recording done right: open-loop schedules, coordinated-omission
//! correction, percentiles, and HdrHistogram's `.hgrm` percentile text.
//!
//! In `--rate` mode message `i` is *intended* to leave at `start + i / rate`. When
//! the sender falls behind (the server stalled it), the message still carries its
//! intended time, so the stall shows up in every message it delayed instead of
//! only in the one that was waiting (coordinated omission).

use std::time::Duration;

use hdrhistogram::Histogram;
use serde::Serialize;

/// Latencies are recorded in nanoseconds, 1 ns to 1 hour, 3 significant digits.
pub fn new_histogram() -> Histogram<u64> {
    Histogram::new_with_bounds(1, 3_600_000_000_000, 3).expect("valid histogram bounds")
}

/// Intended send time of message `index` (0-based) at `rate` msgs/s, as an offset
/// from the run's start.
pub fn intended_offset(index: u64, rate: f64) -> Duration {
    assert!(rate > 0.0, "rate must be positive");
    Duration::from_secs_f64(index as f64 / rate)
}

/// The summary reported for a latency histogram (values in microseconds).
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct Percentiles {
    pub count: u64,
    pub min_us: f64,
    pub mean_us: f64,
    pub p50_us: f64,
    pub p90_us: f64,
    pub p99_us: f64,
    pub p999_us: f64,
    pub p9999_us: f64,
    pub max_us: f64,
}

impl Percentiles {
    pub fn of(h: &Histogram<u64>) -> Percentiles {
        let us = |ns: u64| ns as f64 / 1000.0;
        Percentiles {
            count: h.len(),
            min_us: us(h.min()),
            mean_us: h.mean() / 1000.0,
            p50_us: us(h.value_at_quantile(0.50)),
            p90_us: us(h.value_at_quantile(0.90)),
            p99_us: us(h.value_at_quantile(0.99)),
            p999_us: us(h.value_at_quantile(0.999)),
            p9999_us: us(h.value_at_quantile(0.9999)),
            max_us: us(h.max()),
        }
    }
}

/// The percentile distribution in HdrHistogram's `.hgrm` text format, values in
/// milliseconds (the format's usual unit), 5 ticks per half distance.
pub fn hgrm(h: &Histogram<u64>) -> String {
    let ms = |ns: u64| ns as f64 / 1_000_000.0;
    let mut out = String::from("       Value     Percentile TotalCount 1/(1-Percentile)\n\n");
    let mut total = 0u64;
    for v in h.iter_quantiles(5) {
        total += v.count_since_last_iteration();
        let q = v.quantile_iterated_to();
        if q < 1.0 {
            out.push_str(&format!(
                "{:12.3} {:2.12} {:10} {:14.2}\n",
                ms(v.value_iterated_to()),
                q,
                total,
                1.0 / (1.0 - q)
            ));
        } else {
            out.push_str(&format!(
                "{:12.3} {:2.12} {:10}\n",
                ms(v.value_iterated_to()),
                q,
                total
            ));
        }
    }
    out.push_str(&format!(
        "#[Mean    = {:12.3}, StdDeviation   = {:12.3}]\n#[Max     = {:12.3}, Total count    = {:12}]\n#[Buckets = {:12}, SubBuckets     = {:12}]\n",
        h.mean() / 1e6,
        h.stdev() / 1e6,
        ms(h.max()),
        h.len(),
        h.buckets(),
        h.distinct_values()
    ));
    out
}

#[cfg(test)]
mod tests {
    // Test-only: unwrap() records in-range values into histograms sized for
    // them, so it cannot fail; a failure would be a test bug worth a panic.
    use super::*;

    #[test]
    fn percentiles_of_a_known_distribution() {
        let mut h = new_histogram();
        // 1..=1000 microseconds, one each.
        for us in 1..=1000u64 {
            h.record(us * 1000).unwrap();
        }
        let p = Percentiles::of(&h);
        assert_eq!(p.count, 1000);
        assert!((p.p50_us - 500.0).abs() <= 1.0, "{p:?}");
        assert!((p.p90_us - 900.0).abs() <= 1.0, "{p:?}");
        assert!((p.p99_us - 990.0).abs() <= 1.0, "{p:?}");
        assert!((p.max_us - 1000.0).abs() <= 1.0, "{p:?}");
        assert!((p.min_us - 1.0).abs() <= 0.01, "{p:?}");
        assert!((p.mean_us - 500.5).abs() <= 1.0, "{p:?}");
    }

    #[test]
    fn intended_times_follow_the_rate() {
        assert_eq!(intended_offset(0, 1000.0), Duration::ZERO);
        assert_eq!(intended_offset(1000, 1000.0), Duration::from_secs(1));
        assert_eq!(intended_offset(5, 10.0), Duration::from_millis(500));
    }

    /// A 100 ms stall at a fixed 1000 msgs/s: closed-loop timing sees one slow
    /// message; measuring from intended send times sees the ~100 delayed ones.
    #[test]
    fn coordinated_omission_correction_counts_every_delayed_message() {
        let rate = 1000.0;
        let service = Duration::from_micros(100);
        let stall_at = 500u64;
        let stall = Duration::from_millis(100);
        let mut naive = new_histogram();
        let mut corrected = new_histogram();
        let mut clock = Duration::ZERO; // when the sender is free again
        for i in 0..2000u64 {
            let intended = intended_offset(i, rate);
            let sent = clock.max(intended);
            let took = if i == stall_at {
                stall + service
            } else {
                service
            };
            clock = sent + took;
            naive.record(took.as_nanos() as u64).unwrap();
            corrected
                .record((clock - intended).as_nanos() as u64)
                .unwrap();
        }
        // Closed loop: only the stalled message is slow, p99 looks healthy.
        assert!(naive.value_at_quantile(0.99) < 200_000);
        // Corrected: ~100 messages waited behind the stall, so p99 shows it.
        assert!(
            corrected.value_at_quantile(0.99) > 10_000_000,
            "{}",
            corrected.value_at_quantile(0.99)
        );
        // The stalled message plus the 100 due during the stall: message 500+k
        // finishes at 600.1 + 0.1k ms but was due at 500 + k ms, so it waited
        // 100.1 - 0.9k ms, more than 10 ms for k = 0..=100.
        let delayed = corrected.count_between(10_000_000, u64::MAX);
        assert_eq!(delayed, 101);
        assert!(corrected.max() >= 100_000_000);
    }

    #[test]
    fn hgrm_has_header_rows_and_footer() {
        let mut h = new_histogram();
        for v in [1_000u64, 2_000, 3_000, 1_000_000] {
            h.record(v).unwrap();
        }
        let text = hgrm(&h);
        assert!(text.starts_with("       Value     Percentile TotalCount 1/(1-Percentile)\n\n"));
        assert!(text.contains("#[Mean    ="));
        assert!(text.contains("Total count    =            4]"));
        let last_row = text
            .lines()
            .rfind(|l| !l.starts_with('#') && !l.is_empty())
            .unwrap();
        assert!(last_row.contains("1.000000000000"), "{last_row}");
    }
}
