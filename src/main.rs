//! The `jetcore` binary: parse the command line, run the server, exit with its code.

fn main() {
    let code = match jetcore::config::parse(std::env::args().skip(1)) {
        Ok(jetcore::config::Command::Version) => {
            println!(
                "jetcore version {} (NATS protocol {})",
                env!("CARGO_PKG_VERSION"),
                jetcore::config::NATS_COMPAT_VERSION
            );
            0
        }
        Ok(jetcore::config::Command::Help(text)) => {
            print!("{text}");
            0
        }
        Ok(jetcore::config::Command::Check(line)) => {
            println!("{line}");
            0
        }
        Ok(jetcore::config::Command::Signal(sig, pid)) => {
            match jetcore::server::send_signal(sig, pid.as_deref()) {
                Ok(()) => 0,
                Err(e) => {
                    eprintln!("{e}");
                    1
                }
            }
        }
        Ok(jetcore::config::Command::Run(cfg)) => jetcore::server::run(*cfg),
        Err(message) => {
            eprintln!("{}", message.trim_end());
            1
        }
    };
    std::process::exit(code);
}
