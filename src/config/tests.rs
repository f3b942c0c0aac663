//! The command line and its checks.
//!
//! Unit tests only: each unwrap() here is an assertion on a fixed input.

use super::*;

fn run(args: &[&str]) -> Result<Config, String> {
    match parse(args.iter().map(|s| s.to_string()))? {
        Command::Run(cfg) => Ok(*cfg),
        Command::Version | Command::Help(_) | Command::Check(_) | Command::Signal(..) => {
            Err("not a run".into())
        }
    }
}

#[test]
fn go_style_flags_are_accepted() {
    let cfg = run(&["-a", "127.0.0.1", "-port", "4333", "-n", "x", "--shards=3"]).unwrap();
    assert_eq!(cfg.addr.to_string(), "127.0.0.1");
    assert_eq!(cfg.port, 4333);
    assert_eq!(cfg.name.as_deref(), Some("x"));
    assert_eq!(cfg.shards, 3);
    let cfg = run(&["--addr=127.0.0.1", "-p=-1", "-DV"]).unwrap();
    assert_eq!(cfg.port, 0);
    assert_eq!(cfg.log_level, crate::log::Level::Trace);
    let cfg = run(&["-p", "-1", "-D"]).unwrap();
    assert_eq!(cfg.port, 0);
    assert_eq!(cfg.log_level, crate::log::Level::Debug);
    let cfg = run(&["-net", "0.0.0.0", "-server_name", "n1"]).unwrap();
    assert_eq!(cfg.name.as_deref(), Some("n1"));
}

#[test]
fn domains_follow_nats_server_rules() {
    let cfg = run(&["-js", "-sd", "/tmp/x", "--domain", "hub"]).unwrap();
    assert_eq!(cfg.domain.as_deref(), Some("hub"));
    assert_eq!(
        run(&["-js", "-domain=hub"]).unwrap().domain.as_deref(),
        Some("hub")
    );
    for bad in ["a.b", "a*", ">", "", "a b"] {
        let e = run(&["-js", "--domain", bad]).unwrap_err();
        assert!(e.contains("invalid domain name"), "{bad}: {e}");
    }
    let e = run(&["--domain", "hub"]).unwrap_err();
    assert!(e.contains("needs JetStream"), "{e}");
}

#[test]
fn unsupported_flags_are_refused_by_name() {
    for flag in [
        "--routes",
        "--profile",
        "--cluster_name",
        "-routes",
        "--cluster=x",
    ] {
        let err = run(&[flag, "v"]).unwrap_err();
        assert!(err.contains("not supported yet"), "{flag}: {err}");
    }
    let js = run(&["-js", "-sd", "/tmp/x", "--sync=interval=1s"]).unwrap();
    assert_eq!(
        js.jetstream.as_deref(),
        Some(std::path::Path::new("/tmp/x"))
    );
    assert_eq!(js.sync, SyncMode::Interval(Duration::from_secs(1)));
    assert!(run(&["-sd", "/tmp/y"]).unwrap().jetstream.is_some());
    assert!(run(&[]).unwrap().jetstream.is_none());
    assert!(run(&["-js", "--sync", "sometimes"])
        .unwrap_err()
        .contains("--sync"));
    assert!(run(&["--bogus"]).is_err());
    assert!(run(&["-p", "70000"]).is_err());
    assert!(run(&["--shards", "0"]).is_err());
}

#[test]
fn version_flag() {
    assert!(matches!(parse(["-v".to_string()]), Ok(Command::Version)));
    assert!(matches!(
        parse(["--version".to_string()]),
        Ok(Command::Version)
    ));
}

#[test]
fn go_durations() {
    assert_eq!(parse_duration("2m"), Some(Duration::from_secs(120)));
    assert_eq!(parse_duration("1h30m"), Some(Duration::from_secs(5400)));
    assert_eq!(parse_duration("250ms"), Some(Duration::from_millis(250)));
    assert_eq!(parse_duration("1.5s"), Some(Duration::from_millis(1500)));
    assert_eq!(parse_duration("5"), Some(Duration::from_secs(5)));
    assert_eq!(parse_duration("5x"), None);
    assert_eq!(parse_duration(""), None);
}
