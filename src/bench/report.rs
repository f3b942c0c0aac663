//! What a run prints and writes: `nats bench`-style throughput lines, a JSON
//! summary, and an SVG chart of latency by percentile (several runs on one chart).

use std::fmt::Write;
use std::time::Duration;

use hdrhistogram::Histogram;
use serde::Serialize;

use crate::bench::latency::Percentiles;
use crate::bench::run::{ClientStat, Outcome};

/// Aggregate numbers of one run, as written to JSON.
#[derive(Debug, Clone, Serialize)]
pub struct Summary {
    pub msgs_per_sec: f64,
    pub mb_per_sec: f64,
    pub pub_msgs: u64,
    pub sub_msgs: u64,
    pub elapsed_secs: f64,
    pub latency: Option<Percentiles>,
    /// Ordered consumers: recreations after a sequence gap.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub consumer_resets: Option<u64>,
}

pub fn summarize(outcome: &Outcome) -> Summary {
    let side = if outcome.subs.is_empty() {
        &outcome.pubs
    } else {
        &outcome.subs
    };
    let (rate, mb) = aggregate(side);
    Summary {
        msgs_per_sec: rate,
        mb_per_sec: mb,
        pub_msgs: outcome.pubs.iter().map(|s| s.msgs).sum(),
        sub_msgs: outcome.subs.iter().map(|s| s.msgs).sum(),
        elapsed_secs: outcome.elapsed.as_secs_f64(),
        latency: (!outcome.latency.is_empty()).then(|| Percentiles::of(&outcome.latency)),
        consumer_resets: outcome.resets,
    }
}

/// Aggregate rate: all messages over the longest client's active time.
fn aggregate(stats: &[ClientStat]) -> (f64, f64) {
    let msgs: u64 = stats.iter().map(|s| s.msgs).sum();
    let bytes: u64 = stats.iter().map(|s| s.bytes).sum();
    let longest = stats
        .iter()
        .map(|s| s.elapsed)
        .max()
        .unwrap_or(Duration::ZERO)
        .as_secs_f64();
    if longest == 0.0 {
        return (0.0, 0.0);
    }
    (msgs as f64 / longest, bytes as f64 / longest / 1e6)
}

fn thousands(n: f64) -> String {
    let digits = format!("{:.0}", n);
    let mut out = String::new();
    for (i, c) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i) % 3 == 0 {
            out.push(',');
        }
        out.push(c);
    }
    out
}

fn side(out: &mut String, title: &str, stats: &[ClientStat]) {
    if stats.is_empty() {
        return;
    }
    let (rate, mb) = aggregate(stats);
    let _ = writeln!(
        out,
        "{title} stats: {} msgs/sec ~ {mb:.2} MB/sec",
        thousands(rate)
    );
    let rates: Vec<f64> = stats
        .iter()
        .map(|s| s.msgs as f64 / s.elapsed.as_secs_f64().max(1e-9))
        .collect();
    if stats.len() > 1 {
        for (i, s) in stats.iter().enumerate() {
            let mb = s.bytes as f64 / s.elapsed.as_secs_f64().max(1e-9) / 1e6;
            let _ = writeln!(
                out,
                " [{}] {} msgs/sec ~ {mb:.2} MB/sec ({} msgs)",
                i + 1,
                thousands(rates[i]),
                s.msgs
            );
        }
        let mean = rates.iter().sum::<f64>() / rates.len() as f64;
        let var = rates.iter().map(|r| (r - mean).powi(2)).sum::<f64>() / rates.len() as f64;
        let min = rates.iter().cloned().fold(f64::INFINITY, f64::min);
        let max = rates.iter().cloned().fold(0.0, f64::max);
        let _ = writeln!(
            out,
            " min {} | avg {} | max {} | stddev {} msgs",
            thousands(min),
            thousands(mean),
            thousands(max),
            thousands(var.sqrt())
        );
    }
}

/// The human-readable report.
pub fn render(outcome: &Outcome) -> String {
    let mut out = String::new();
    side(&mut out, "Pub", &outcome.pubs);
    side(&mut out, "Sub", &outcome.subs);
    if !outcome.latency.is_empty() {
        let p = Percentiles::of(&outcome.latency);
        let _ = writeln!(
            out,
            "Latency (µs): p50 {:.1} | p90 {:.1} | p99 {:.1} | p99.9 {:.1} | p99.99 {:.1} | max {:.1} ({} samples)",
            p.p50_us, p.p90_us, p.p99_us, p.p999_us, p.p9999_us, p.max_us, p.count
        );
    }
    if let Some(n) = outcome.resets {
        let _ = writeln!(out, "Ordered consumer resets (sequence gaps): {n}");
    }
    out
}

/// An SVG line chart of latency (log scale) against percentile (log scale of
/// 1/(1-p), from 0% to 99.999%), one line per named histogram.
pub fn svg(title: &str, series: &[(&str, &Histogram<u64>)]) -> String {
    const W: f64 = 800.0;
    const H: f64 = 480.0;
    const L: f64 = 80.0;
    const R: f64 = 20.0;
    const T: f64 = 40.0;
    const B: f64 = 60.0;
    const COLORS: [&str; 6] = [
        "#d62728", "#1f77b4", "#2ca02c", "#ff7f0e", "#9467bd", "#8c564b",
    ];
    let max_x = 5.0f64; // 99.999%
    let points = |h: &Histogram<u64>| -> Vec<(f64, f64)> {
        (0..=100)
            .map(|i| {
                let x = max_x * i as f64 / 100.0;
                let q = 1.0 - 10f64.powf(-x);
                (
                    x,
                    (h.value_at_quantile(q).max(1) as f64 / 1000.0).max(0.001),
                )
            })
            .collect()
    };
    let all: Vec<Vec<(f64, f64)>> = series.iter().map(|(_, h)| points(h)).collect();
    let lo = all
        .iter()
        .flatten()
        .map(|p| p.1)
        .fold(f64::INFINITY, f64::min)
        .max(0.001);
    let hi = all
        .iter()
        .flatten()
        .map(|p| p.1)
        .fold(0.0, f64::max)
        .max(lo * 10.0);
    let (ylo, yhi) = (lo.log10().floor(), hi.log10().ceil());
    let px = |x: f64| L + (W - L - R) * x / max_x;
    let py = |y: f64| T + (H - T - B) * (1.0 - (y.log10() - ylo) / (yhi - ylo));
    let mut s = format!(
        "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"{W}\" height=\"{H}\" font-family=\"sans-serif\" font-size=\"12\">\n<rect width=\"100%\" height=\"100%\" fill=\"white\"/>\n<text x=\"{}\" y=\"24\" text-anchor=\"middle\" font-size=\"16\">{}</text>\n",
        W / 2.0,
        escape(title)
    );
    for (i, label) in ["0%", "90%", "99%", "99.9%", "99.99%", "99.999%"]
        .iter()
        .enumerate()
    {
        let x = px(i as f64);
        let _ = writeln!(s, "<line x1=\"{x}\" y1=\"{T}\" x2=\"{x}\" y2=\"{}\" stroke=\"#ddd\"/><text x=\"{x}\" y=\"{}\" text-anchor=\"middle\">{label}</text>", H - B, H - B + 18.0);
    }
    let mut e = ylo;
    while e <= yhi {
        let y = py(10f64.powf(e));
        let _ = writeln!(s, "<line x1=\"{L}\" y1=\"{y}\" x2=\"{}\" y2=\"{y}\" stroke=\"#ddd\"/><text x=\"{}\" y=\"{}\" text-anchor=\"end\">{}</text>", W - R, L - 6.0, y + 4.0, format_us(10f64.powf(e)));
        e += 1.0;
    }
    let _ = writeln!(
        s,
        "<text x=\"{}\" y=\"{}\" text-anchor=\"middle\">percentile</text>",
        L + (W - L - R) / 2.0,
        H - 20.0
    );
    let _ = writeln!(s, "<text x=\"16\" y=\"{}\" transform=\"rotate(-90 16 {})\" text-anchor=\"middle\">latency</text>", H / 2.0, H / 2.0);
    for (i, ((name, _), pts)) in series.iter().zip(&all).enumerate() {
        let color = COLORS[i % COLORS.len()];
        let path: Vec<String> = pts
            .iter()
            .map(|(x, y)| format!("{:.1},{:.1}", px(*x), py(*y)))
            .collect();
        let _ = writeln!(
            s,
            "<polyline fill=\"none\" stroke=\"{color}\" stroke-width=\"2\" points=\"{}\"/>",
            path.join(" ")
        );
        let ly = T + 16.0 + 18.0 * i as f64;
        let _ = writeln!(s, "<rect x=\"{}\" y=\"{}\" width=\"14\" height=\"4\" fill=\"{color}\"/><text x=\"{}\" y=\"{}\">{}</text>", L + 12.0, ly - 4.0, L + 32.0, ly, escape(name));
    }
    s.push_str("</svg>\n");
    s
}

fn format_us(us: f64) -> String {
    if us >= 1000.0 {
        format!("{} ms", us / 1000.0)
    } else {
        format!("{us} µs")
    }
}

fn escape(text: &str) -> String {
    text.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
}

#[cfg(test)]
mod tests {
    // Test-only: unwrap() records in-range values into histograms sized for
    // them, so it cannot fail; a failure would be a test bug worth a panic.
    use super::*;

    #[test]
    fn thousands_separators() {
        assert_eq!(thousands(0.0), "0");
        assert_eq!(thousands(999.0), "999");
        assert_eq!(thousands(1234567.4), "1,234,567");
    }

    #[test]
    fn aggregate_uses_the_longest_client() {
        let stats = [
            ClientStat {
                msgs: 100,
                bytes: 1000,
                elapsed: Duration::from_secs(1),
            },
            ClientStat {
                msgs: 100,
                bytes: 1000,
                elapsed: Duration::from_secs(2),
            },
        ];
        let (rate, mb) = aggregate(&stats);
        assert_eq!(rate, 100.0);
        assert!((mb - 0.001).abs() < 1e-9);
    }

    #[test]
    fn svg_draws_one_line_per_series() {
        let mut a = crate::bench::latency::new_histogram();
        let mut b = crate::bench::latency::new_histogram();
        for v in 1..1000u64 {
            a.record(v * 1000).unwrap();
            b.record(v * 2000).unwrap();
        }
        let text = svg("t <x>", &[("jetcore", &a), ("nats-server", &b)]);
        assert_eq!(text.matches("<polyline").count(), 2);
        assert!(text.contains("t &lt;x&gt;"));
        assert!(text.contains("nats-server"));
    }
}
