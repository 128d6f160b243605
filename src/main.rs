use clap::Parser;
use pgphase::cli::{self, Cli, Output};
use pgphase::error::exit;

#[tokio::main]
async fn main() {
    let cli = Cli::parse();
    let json = cli.output == Output::Json;
    let code = match cli::run(cli).await {
        Ok(code) => code,
        Err(e) => {
            match &e {
                // "interrupted by SIGTERM: …"
                pgphase::error::CmdError::Interrupted(_) => eprintln!("pgphase: {e}"),
                pgphase::error::CmdError::Invalid(_) => eprintln!("pgphase: error: {e}"),
                other => eprintln!("pgphase: {}: {e}", other.kind()),
            }
            if json {
                println!(
                    "{}",
                    serde_json::json!({ "error": e.kind(), "message": e.to_string(), "exit_code": e.exit_code() })
                );
            }
            e.exit_code()
        }
    };
    std::process::exit(if code == 0 { exit::OK } else { code });
}
