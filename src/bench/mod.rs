//! `jetcore-bench`, the load generator: client-side protocol (`wire`), latency
//! maths (`latency`), the modes (`run`), JetStream consumers (`consume`), reports
//! (`report`) and the side-by-side comparison with nats-server (`compare`).

pub mod compare;
pub mod consume;
pub mod copy;
pub mod latency;
pub mod report;
pub mod run;
pub mod tls;
pub mod wire;
