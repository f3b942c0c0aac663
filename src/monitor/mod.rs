//! The HTTP monitoring port (`-m`, `http_port`, `http`): nats-server's
//! `/varz`, `/connz`, `/subsz`, `/jsz`, `/healthz`, `/accountz` and the root
//! page, with its field names, types, parameters and error texts.
//!
//! Lives on: shard 0, beside its clients, as ordinary tasks (one per HTTP
//! connection). A request gathers each shard's counters and connections
//! through the mesh (`Shard::gather_stats`), and JetStream's through its
//! gather; publishing takes no lock and does no work for it beyond the
//! per-connection counts (see `shard::stats`).
//!
//! Bound: `HTTP_CONNS_MAX` HTTP connections at once (more are closed at
//! accept); answers are built whole (a `/connz` page is at most its `limit`
//! of connections).

pub mod connz;
pub mod http;
pub mod jsz;
pub mod leafz;
pub mod query;
pub mod varz;

use std::cell::{Cell, OnceCell, RefCell};
use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::rc::Rc;

use glommio::net::TcpListener;

use crate::js::Js;
use crate::monitor::http::{Request, Response};
use crate::shard::Shard;

/// HTTP connections served at once.
pub const HTTP_CONNS_MAX: usize = 256;

/// Monitoring on shard 0.
pub struct Monitor {
    pub shard: Rc<Shard>,
    /// JetStream on shard 0, once it has opened (None before and without it).
    pub js: Rc<OnceCell<Rc<Js>>>,
    pub addr: SocketAddr,
    /// Unix nanoseconds: when the server started.
    pub started: i64,
    /// Requests served per endpoint (`http_req_stats`).
    pub req_stats: RefCell<BTreeMap<&'static str, u64>>,
    /// The last CPU sample (process CPU seconds, at Unix nanoseconds) for `cpu`.
    pub cpu_sample: Cell<(f64, i64)>,
    conns: Cell<usize>,
}

/// Binds the monitoring port and serves it on this shard until shutdown.
pub fn start(shard: &Rc<Shard>, js: Rc<OnceCell<Rc<Js>>>) -> Result<(), String> {
    let Some(want) = shard.cfg.http else {
        return Ok(());
    };
    let listener = TcpListener::bind(want)
        .map_err(|e| format!("cannot listen for monitoring on {want}: {e}"))?;
    let addr = listener
        .local_addr()
        .map_err(|e| format!("monitoring listener: {e}"))?;
    let scheme = if shard.cfg.https { "https" } else { "http" };
    crate::info!("Starting {scheme} monitor on {}:{}", addr.ip(), addr.port());
    let now = crate::js::types::json::now_nanos();
    let monitor = Rc::new(Monitor {
        shard: shard.clone(),
        js,
        addr,
        started: now,
        req_stats: RefCell::new(BTreeMap::new()),
        cpu_sample: Cell::new((varz::process_cpu_secs(), now)),
        conns: Cell::new(0),
    });
    glommio::spawn_local(accept_loop(monitor, listener)).detach();
    Ok(())
}

async fn accept_loop(monitor: Rc<Monitor>, listener: TcpListener) {
    loop {
        let stream = match listener.accept().await {
            Ok(s) => s,
            Err(e) => {
                crate::debug!("monitoring accept: {e}");
                glommio::timer::sleep(std::time::Duration::from_millis(10)).await;
                continue;
            }
        };
        if monitor.shard.stopping.get() {
            return;
        }
        if monitor.conns.get() >= HTTP_CONNS_MAX {
            drop(stream); // over the bound: closed at once
            continue;
        }
        monitor.conns.set(monitor.conns.get() + 1);
        let m = monitor.clone();
        glommio::spawn_local(async move {
            let tls = m.shard.server.tls.as_ref().filter(|_| m.shard.cfg.https);
            http::serve(stream, tls, |req| m.answer(req)).await;
            m.conns.set(m.conns.get() - 1);
        })
        .detach();
    }
}

impl Monitor {
    async fn answer(&self, req: Request) -> Response {
        let path: &'static str = match req.path.as_str() {
            "/" => "/",
            "/varz" => "/varz",
            "/connz" => "/connz",
            "/subsz" => "/subsz",
            "/subscriptionsz" => "/subscriptionsz",
            "/jsz" => "/jsz",
            "/healthz" => "/healthz",
            "/accountz" => "/accountz",
            "/leafz" => "/leafz",
            _ => return Response::text(404, "404 page not found\n"),
        };
        // As nats-server: a /connz refused for a bad parameter is not counted.
        if path != "/connz" {
            self.count(path);
        }
        let answer = match path {
            "/" => Ok(Response::html(root_page())),
            "/varz" => Ok(varz::varz(self).await),
            "/connz" => connz::connz(self, &req).await,
            "/subsz" | "/subscriptionsz" => connz::subsz(self, &req).await,
            "/jsz" => jsz::jsz(self, &req).await,
            "/healthz" => jsz::healthz(self, &req).await,
            "/leafz" => leafz::leafz(self, &req).await,
            _ => jsz::accountz(self, &req).await,
        };
        if path == "/connz" && answer.is_ok() {
            self.count(path);
        }
        answer.unwrap_or_else(|e| e)
    }

    fn count(&self, path: &'static str) {
        *self.req_stats.borrow_mut().entry(path).or_default() += 1;
    }
}

/// `v` as nats-server writes monitoring JSON: indented by two spaces, with
/// Go's escapes of `<`, `>` and `&`.
pub fn pretty<T: serde::Serialize>(v: &T) -> Vec<u8> {
    let compact = serde_json::to_vec(v).expect("monitoring types serialize");
    indent(&compact)
}

/// Re-indents compact JSON by two spaces, keeping field order and values.
pub fn indent(compact: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(compact.len() * 2);
    let mut de = serde_json::Deserializer::from_slice(compact);
    let mut ser = serde_json::Serializer::pretty(&mut out);
    serde_transcode::transcode(&mut de, &mut ser).expect("our own JSON transcodes");
    crate::js::types::json::go_escape(out)
}

/// Serializes a float as Go does: whole numbers without a fraction (`2`,
/// not `2.0`), others in their shortest form.
pub fn go_float<S: serde::Serializer>(v: &f64, s: S) -> Result<S::Ok, S::Error> {
    use serde::Serialize;
    let text = if v.is_finite() {
        v.to_string()
    } else {
        "0".to_string()
    };
    let raw = serde_json::value::RawValue::from_string(text).map_err(serde::ser::Error::custom)?;
    raw.serialize(s)
}

/// nats-server's uptime text: `1y2d3h4m5s`, leading zero units left out.
pub fn uptime(ns: i64) -> String {
    let secs = ns.max(0) / 1_000_000_000;
    let (mins, hrs) = (secs / 60, secs / 3600);
    let (days, yrs) = (hrs / 24, hrs / 24 / 365);
    if yrs > 0 {
        format!(
            "{yrs}y{}d{}h{}m{}s",
            days % 365,
            hrs % 24,
            mins % 60,
            secs % 60
        )
    } else if days > 0 {
        format!("{days}d{}h{}m{}s", hrs % 24, mins % 60, secs % 60)
    } else if hrs > 0 {
        format!("{hrs}h{}m{}s", mins % 60, secs % 60)
    } else if mins > 0 {
        format!("{mins}m{}s", secs % 60)
    } else {
        format!("{secs}s")
    }
}

fn root_page() -> String {
    let links = [
        ("varz", "General"),
        ("jsz", "JetStream"),
        ("connz", "Connections"),
        ("accountz", "Accounts"),
        ("subsz", "Subscriptions"),
        ("leafz", "LeafNodes"),
        ("healthz", "Health Probe"),
    ];
    let mut body = String::from(
        "<html lang=\"en\">\n<head>\n<title>jetcore monitoring</title>\n</head>\n<body>\n",
    );
    body.push_str(&format!(
        "<p>jetcore {} (NATS {})</p>\n",
        env!("CARGO_PKG_VERSION"),
        crate::config::NATS_COMPAT_VERSION
    ));
    for (path, name) in links {
        body.push_str(&format!(
            "<a href=./{path}>{name}<span class=\"endpoint\"> /{path}</span></a><br/>\n"
        ));
    }
    body.push_str("</body>\n</html>\n");
    body
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn uptime_reads_as_nats_server_writes_it() {
        let s = 1_000_000_000i64;
        assert_eq!(uptime(0), "0s");
        assert_eq!(uptime(11 * s + 5), "11s");
        assert_eq!(uptime(62 * s), "1m2s");
        assert_eq!(uptime(3600 * s), "1h0m0s");
        assert_eq!(uptime(86_400 * s + 1), "1d0h0m0s");
        assert_eq!(uptime(366 * 86_400 * s), "1y1d0h0m0s");
    }

    #[test]
    fn floats_read_as_go_writes_them() {
        #[derive(serde::Serialize)]
        struct F {
            #[serde(serialize_with = "go_float")]
            a: f64,
            #[serde(serialize_with = "go_float")]
            b: f64,
            #[serde(serialize_with = "go_float")]
            c: f64,
        }
        let f = F {
            a: 0.0,
            b: 2.0,
            c: 0.25806451612903225,
        };
        assert_eq!(
            serde_json::to_string(&f).unwrap(),
            r#"{"a":0,"b":2,"c":0.25806451612903225}"#
        );
    }

    #[test]
    fn indent_keeps_order_and_escapes_as_go() {
        let out = indent(br#"{"b":1,"a":[],"c":{"x":"<&>"},"d":[1,2]}"#);
        let text = String::from_utf8(out).unwrap();
        assert_eq!(
            text,
            "{\n  \"b\": 1,\n  \"a\": [],\n  \"c\": {\n    \"x\": \"\\u003c\\u0026\\u003e\"\n  },\n  \"d\": [\n    1,\n    2\n  ]\n}"
        );
    }
}
