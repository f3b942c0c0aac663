//! Socket I/O shared by the server's connections and the load generator: a glommio
//! `TcpStream` in a `RefCell`, so a reader task and a writer task can use it at
//! once (glommio keeps separate read and write wakers). No borrow outlives a poll.

use std::cell::RefCell;
use std::future::poll_fn;
use std::pin::Pin;

use bytes::{BufMut, BytesMut};
use futures_lite::{AsyncRead, AsyncWrite};
use glommio::net::TcpStream;

/// Reads what the socket has into the spare capacity of `buf`; 0 means closed.
pub async fn read_into(stream: &RefCell<TcpStream>, buf: &mut BytesMut) -> std::io::Result<usize> {
    let n = poll_fn(|cx| {
        let spare = buf.chunk_mut();
        // SAFETY: the kernel only writes into this region; only the `n` bytes it
        // reports as read are exposed, by `advance_mut` below.
        let spare = unsafe { std::slice::from_raw_parts_mut(spare.as_mut_ptr(), spare.len()) };
        Pin::new(&mut *stream.borrow_mut()).poll_read(cx, spare)
    })
    .await?;
    // SAFETY: `n` bytes were just written by the read.
    unsafe { buf.advance_mut(n) };
    Ok(n)
}

/// Writes all of `bytes`.
pub async fn write_all(stream: &RefCell<TcpStream>, mut bytes: &[u8]) -> std::io::Result<()> {
    while !bytes.is_empty() {
        let n = poll_fn(|cx| Pin::new(&mut *stream.borrow_mut()).poll_write(cx, bytes)).await?;
        if n == 0 {
            return Err(std::io::ErrorKind::WriteZero.into());
        }
        bytes = &bytes[n..];
    }
    Ok(())
}

/// Runs a TLS handshake (server or client side) on `stream` until it is
/// done; application data that came with its end is appended to `plain`.
/// `server`: the peer's first byte must start a TLS handshake record (a
/// plaintext client is refused at once, as nats-server refuses it).
pub async fn tls_handshake<D>(
    stream: &RefCell<TcpStream>,
    tls: &mut rustls::ConnectionCommon<D>,
    plain: &mut BytesMut,
    server: bool,
) -> Result<(), String> {
    let mut raw = BytesMut::new();
    let mut out = Vec::new();
    let mut first = server;
    while tls.is_handshaking() || tls.wants_write() {
        if tls.wants_write() {
            out.clear();
            crate::tls::encrypt(tls, &[], &mut out).map_err(|e| e.to_string())?;
            write_all(stream, &out).await.map_err(|e| e.to_string())?;
            continue;
        }
        raw.clear();
        raw.reserve(16 * 1024);
        match read_into(stream, &mut raw).await {
            Ok(0) => return Err("connection closed".to_string()),
            Ok(_) => {}
            Err(e) => return Err(e.to_string()),
        }
        if std::mem::take(&mut first) && raw[0] != crate::tls::HANDSHAKE_RECORD {
            return Err("first record does not look like a TLS handshake".to_string());
        }
        crate::tls::decrypt(tls, &raw, plain).map_err(|e| e.to_string())?;
    }
    Ok(())
}

/// `work`, or an error when it takes longer than `limit` (handshakes, dials).
pub async fn within<T>(
    limit: std::time::Duration,
    work: impl std::future::Future<Output = Result<T, String>>,
) -> Result<T, String> {
    let timeout = async {
        glommio::timer::sleep(limit).await;
        Err("timeout".to_string())
    };
    futures_lite::future::or(work, timeout).await
}
