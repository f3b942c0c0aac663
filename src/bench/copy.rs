//! `js copy`: mirror or source apply rate. Origins `<stream>_O<i>` take
//! `<subject>.<i>` (one publisher each, async with `--window` acks in
//! flight); the target `<stream>` mirrors the one origin, or sources them
//! all. A watcher polls the target's stream info until it holds every
//! message: the run's rate is the messages over that time (publish start
//! until the target is complete), and its one latency sample is how long
//! after the last pub ack the target was complete.

use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use hdrhistogram::Histogram;
use serde_json::json;

use crate::bench::latency::new_histogram;
use crate::bench::run::{api_request, inbox, now_ns, ClientStat, Shared, Spec};
use crate::bench::wire::{encode_pub, Reader, ServerOp, Writer};

/// Polls while publishers run, and after the last ack (when the tail is
/// measured). Each poll is a stream info request on both servers alike.
const POLL_WHILE_PUBLISHING: Duration = Duration::from_millis(20);
const POLL_AFTER_ACKS: Duration = Duration::from_millis(1);

/// The origins' names.
pub fn origin(spec: &Spec, i: usize) -> String {
    format!("{}_O{i}", spec.stream)
}

/// Creates the origins and the target (a mirror of the one origin, or a
/// stream sourcing them all).
pub fn create(spec: &Spec) -> Result<(), String> {
    for i in 0..spec.copy.origins {
        let cfg = json!({
            "name": origin(spec, i), "subjects": [format!("{}.{i}", spec.subject)],
            "storage": spec.storage,
        });
        request(
            spec,
            &format!("$JS.API.STREAM.CREATE.{}", origin(spec, i)),
            &cfg,
        )?;
    }
    let cfg = if spec.copy.mirror {
        json!({"name": spec.stream, "storage": spec.storage, "mirror": {"name": origin(spec, 0)}})
    } else {
        let sources: Vec<_> = (0..spec.copy.origins)
            .map(|i| json!({ "name": origin(spec, i) }))
            .collect();
        json!({"name": spec.stream, "storage": spec.storage, "sources": sources,
               "subjects": [format!("{}.target", spec.subject)]})
    };
    request(
        spec,
        &format!("$JS.API.STREAM.CREATE.{}", spec.stream),
        &cfg,
    )
}

pub fn delete(spec: &Spec) {
    let _ = api_request(spec, &format!("$JS.API.STREAM.DELETE.{}", spec.stream), "");
    for i in 0..spec.copy.origins {
        let _ = api_request(
            spec,
            &format!("$JS.API.STREAM.DELETE.{}", origin(spec, i)),
            "",
        );
    }
}

fn request(spec: &Spec, subject: &str, cfg: &serde_json::Value) -> Result<(), String> {
    let reply = api_request(spec, subject, &cfg.to_string())?;
    let v: serde_json::Value =
        serde_json::from_slice(&reply).map_err(|e| format!("bad API reply: {e}"))?;
    match v.get("error") {
        Some(e) => Err(format!("{subject}: {e}")),
        None => Ok(()),
    }
}

/// The watcher: polls the target until it holds `spec.msgs` messages.
pub(crate) async fn watch(
    spec: &Spec,
    mut reader: Reader,
    writer: Writer,
    shared: &Shared,
) -> Result<(ClientStat, Histogram<u64>), String> {
    let start = Instant::now();
    let reply = format!("{}.1", inbox("copy", 0));
    writer
        .write_all(format!("SUB {reply} 1\r\n").as_bytes())
        .await?;
    let subject = format!("$JS.API.STREAM.INFO.{}", spec.stream);
    let mut out = Vec::new();
    loop {
        out.clear();
        encode_pub(&mut out, subject.as_bytes(), Some(reply.as_bytes()), b"");
        writer.write_all(&out).await?;
        let have = loop {
            match reader.next().await? {
                ServerOp::Msg { msg, .. } => {
                    let v: serde_json::Value = serde_json::from_slice(&msg)
                        .map_err(|e| format!("bad stream info: {e}"))?;
                    break v["state"]["messages"].as_u64().unwrap_or(0);
                }
                ServerOp::Ping => writer.write_all(b"PONG\r\n").await?,
                _ => {}
            }
        };
        if have >= spec.msgs {
            break;
        }
        if start.elapsed() > spec.duration {
            return Err(format!(
                "the target held {have} of {} messages after {:?}",
                spec.msgs, spec.duration
            ));
        }
        let acked = shared.publishers_done.load(Ordering::SeqCst) >= spec.pubs;
        glommio::timer::sleep(if acked {
            POLL_AFTER_ACKS
        } else {
            POLL_WHILE_PUBLISHING
        })
        .await;
    }
    let done = now_ns();
    let last_ack = shared.last_ack_ns.load(Ordering::SeqCst);
    let mut tail = new_histogram();
    let _ = tail.record(done.saturating_sub(last_ack).max(1));
    Ok((
        ClientStat {
            msgs: spec.msgs,
            bytes: spec.msgs * spec.size as u64,
            elapsed: start.elapsed(),
        },
        tail,
    ))
}
