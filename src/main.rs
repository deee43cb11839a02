//! `maxx`: parses the command line and dispatches; exit codes are 0 (ok), 1 (bad config or a
//! failed run) and 2 (bad command line, from clap).

use std::process::ExitCode;

use clap::Parser;
use maxx::cli::{Cli, Command, ConfigCommand};
use maxx::commands::{config_check, init_logging, kill_cmd, load_config, replay_cmd, sim_cmd};

fn main() -> ExitCode {
    // Before any thread exists, so every thread inherits the mask and SIGUSR2 stays pending for
    // the `kill-watch` thread (maxx_hot::kill) instead of ending the process.
    if let Err(e) = maxx_hot::kill::block_kill_signal() {
        eprintln!("maxx: cannot block SIGUSR2 (kill signal path disabled): {e}");
    }
    let cli = Cli::parse();
    let result = match &cli.command {
        Command::Config(ConfigCommand::Check { path }) => return config_check(path),
        Command::Run(args) => with_config(&args.config, |c| maxx::run::run(args, c)),
        Command::Replay(args) => with_config(&args.config, |c| replay_cmd(args, &c)),
        Command::Sim(args) => with_config(&args.config, |c| sim_cmd(args, &c)),
        Command::Kill(args) => match load_config(&args.config) {
            Ok(c) => kill_cmd(args, &c),
            Err(code) => return code,
        },
        Command::Tail(args) => maxx::tail::tail_cmd(args),
        Command::Top(args) => maxx::top::top_cmd(args),
        Command::Bench(args) => match load_config(&args.config) {
            Ok(c) if args.wire => return maxx::wire::wire_cmd(args, &c),
            Ok(c) => return maxx::bench::bench_cmd(args, &c),
            Err(code) => return code,
        },
    };
    match result {
        Ok(code) => code,
        Err(e) => {
            eprintln!("maxx: {e:#}");
            ExitCode::from(1)
        }
    }
}

fn with_config(
    path: &std::path::Path,
    f: impl FnOnce(maxx_cold::config::Config) -> anyhow::Result<()>,
) -> anyhow::Result<ExitCode> {
    let config = match load_config(path) {
        Ok(c) => c,
        Err(code) => return Ok(code),
    };
    let logs = init_logging(&config);
    let result = f(config).map(|()| ExitCode::SUCCESS);
    // Every log line is out before main reports an error.
    logs.finish();
    result
}
