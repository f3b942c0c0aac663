//! `jetcore-bench`, the load generator: client-side protocol (`wire`), latency
//! maths (`latency`), the modes (`run`), JetStream consumers (`consume`), reports
//! (`report`) and the side-by-side comparison with nats-server (`compare`, with
//! the servers it starts in `process`).

pub mod compare;
pub mod consume;
pub mod copy;
pub mod latency;
pub mod process;
pub mod report;
pub mod run;
pub mod tls;
pub mod wire;
