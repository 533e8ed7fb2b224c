//! `broker-lite`: serve the store over RocketMQ's remoting protocol, or talk to a running
//! broker (`send`, `consume`, `topic`, `offsets`).

use std::path::PathBuf;
use std::process::ExitCode;

use broker_lite::acl::Credentials;
use broker_lite::remoting::tls::ClientTls;
use broker_lite::server::{serve, Listeners};
use broker_lite::{Broker, BrokerConfig};
use clap::{Parser, Subcommand};

mod cli;
use cli::client::{ClientCommand, ClientSettings};
use cli::verify;

#[derive(Parser, Debug)]
#[command(
    name = "broker-lite",
    version,
    about = "A RocketMQ 4.x-compatible broker over the mqstore message store"
)]
#[command(args_conflicts_with_subcommands = true)]
struct Cli {
    /// A RocketMQ-style broker.conf (`key=value`, RocketMQ's key names).
    #[arg(short = 'c', long = "config")]
    config: Option<PathBuf>,
    /// Overrides `storePathRootDir`.
    #[arg(long)]
    store: Option<PathBuf>,
    /// Overrides `listenPort` (0 = any free port).
    #[arg(long)]
    port: Option<u16>,
    /// Overrides the route-service port (`namesrvListenPort`; 0 = any free port).
    #[arg(long)]
    namesrv_port: Option<u16>,
    /// Turns the built-in route service off.
    #[arg(long)]
    no_namesrv: bool,
    /// The client subcommands sign their requests with this ACL account (for a broker
    /// with `aclEnable=true`); needs --secret-key.
    #[arg(
        long,
        global = true,
        env = "ROCKETMQ_ACCESS_KEY",
        requires = "secret_key"
    )]
    access_key: Option<String>,
    /// The account's secret key.
    #[arg(
        long,
        global = true,
        env = "ROCKETMQ_SECRET_KEY",
        hide_env_values = true,
        requires = "access_key"
    )]
    secret_key: Option<String>,
    /// The client subcommands connect with TLS, trusting the certificates in this PEM file
    /// (for a broker with `tls.server.mode` permissive or enforcing).
    #[arg(long, global = true, env = "ROCKETMQ_TLS_CA")]
    tls_ca: Option<PathBuf>,
    /// The name the broker's certificate must carry (default: the address dialled).
    #[arg(long, global = true, requires = "tls_ca")]
    tls_server_name: Option<String>,
    #[command(subcommand)]
    command: Option<Command>,
}

/// The server's commands, and the client subcommands beside them.
#[derive(Subcommand, Debug)]
enum Command {
    /// Runs the broker (the default).
    Serve,
    /// Checks a stopped store directory offline: every record's structure and CRCs, every
    /// ConsumeQueue unit and index item against its record, the checkpoint. Exits 1 when
    /// it finds a problem. `--repair` cuts a torn tail and rebuilds the derived files.
    Verify {
        /// A broker.conf to read the store settings from (file sizes, directories).
        #[arg(short = 'c', long = "config")]
        config: Option<PathBuf>,
        /// The store directory (`storePathRootDir`).
        #[arg(long)]
        store: Option<PathBuf>,
        /// Repair: cut a torn CommitLog tail, rebuild queues, index and checkpoints.
        #[arg(long)]
        repair: bool,
        /// With --repair: also cut at damage below the durable point or followed by valid
        /// records, losing the records from there on (they are saved in repair-<ms>/).
        #[arg(long, requires = "repair")]
        discard_after_corruption: bool,
        /// Cut the CommitLog at this offset (a record boundary), saving the cut bytes, and
        /// rebuild the derived files: what a slave whose log diverged from its master's
        /// needs (its error names the offset).
        #[arg(long)]
        truncate_at: Option<u64>,
        /// No progress bar.
        #[arg(long)]
        quiet: bool,
    },
    #[command(flatten)]
    Client(ClientCommand),
}

fn main() -> ExitCode {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info")),
        )
        .with_writer(std::io::stderr)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .init();
    let cli = Cli::parse();
    let tls = match &cli.tls_ca {
        None => None,
        Some(ca) => match broker_lite::remoting::tls::client_config(ca) {
            Ok(config) => Some(ClientTls {
                config,
                server_name: cli.tls_server_name.clone(),
            }),
            Err(e) => {
                eprintln!("broker-lite: --tls-ca: {e}");
                return ExitCode::FAILURE;
            }
        },
    };
    cli::client::set_settings(ClientSettings {
        credentials: cli.access_key.clone().zip(cli.secret_key.clone()).map(
            |(access_key, secret_key)| Credentials {
                access_key,
                secret_key,
            },
        ),
        tls,
    });
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .max_blocking_threads(256)
        .build()
    {
        Ok(r) => r,
        Err(e) => {
            eprintln!("broker-lite: cannot start the runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    if let Some(Command::Verify {
        config,
        store,
        repair,
        discard_after_corruption,
        truncate_at,
        quiet,
    }) = cli.command
    {
        return verify::run(
            config.as_deref(),
            store,
            repair,
            discard_after_corruption,
            truncate_at,
            quiet,
        );
    }
    let result = match cli.command {
        None | Some(Command::Serve) => runtime.block_on(run_server(
            cli.config,
            cli.store,
            cli.port,
            cli.namesrv_port,
            cli.no_namesrv,
        )),
        Some(Command::Client(cmd)) => runtime.block_on(cli::client::run(cmd)),
        Some(Command::Verify { .. }) => unreachable!("verify returned above"),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("broker-lite: {e}");
            ExitCode::FAILURE
        }
    }
}

async fn run_server(
    config_file: Option<PathBuf>,
    store: Option<PathBuf>,
    port: Option<u16>,
    namesrv_port: Option<u16>,
    no_namesrv: bool,
) -> Result<(), String> {
    let mut config = BrokerConfig::from_file(config_file.as_deref())?;
    if let Some(s) = store {
        config.store.store_path_root_dir = s;
    }
    if let Some(p) = port {
        config.listen_port = p;
    }
    if let Some(p) = namesrv_port {
        config.namesrv_listen_port = Some(p);
    }
    if no_namesrv {
        config.namesrv_listen_port = None;
    }
    // Bind first so that port 0 resolves to the real port before the store records it.
    let listeners = Listeners::bind(&config).await.map_err(|e| e.to_string())?;
    let bound = listeners.broker_addr().map_err(|e| e.to_string())?;
    config.listen_port = bound.port();
    if let Some(ha) = listeners.ha_addr() {
        config.ha_listen_port = Some(ha.port());
    }
    config.sync_store_host();
    let broker = tokio::task::spawn_blocking(move || Broker::open(config))
        .await
        .map_err(|e| e.to_string())?
        .map_err(|e| format!("cannot start: {e}"))?;
    let root = std::fs::canonicalize(&broker.config.store.store_path_root_dir)
        .unwrap_or_else(|_| broker.config.store.store_path_root_dir.clone());
    let replication = match listeners.ha_addr() {
        Some(ha) => format!(
            "{} with HA on {ha}",
            broker.config.store.broker_role.as_str()
        ),
        None => format!(
            "SLAVE of {}",
            broker
                .ha
                .master_ha()
                .unwrap_or_else(|| "the master named by namesrvAddr".to_owned())
        ),
    };
    let routes = match listeners.routes_addr() {
        Some(a) => format!("route service on {a}"),
        None if broker.config.namesrv_addr.is_empty() => "no route service".to_owned(),
        None => format!("name servers {}", broker.config.namesrv_addr.join(";")),
    };
    let routes = match listeners.metrics_addr() {
        Some(m) => format!("{routes}, metrics on http://{m}/metrics"),
        None => routes,
    };
    let routes = match listeners.console_addr() {
        Some(c) => format!("{routes}, console on http://{c}/"),
        None => routes,
    };
    println!(
        "broker-lite listening on {bound} (clients dial {}), {routes}, {replication}, store at {}",
        broker.config.broker_addr(),
        root.display()
    );
    serve(broker, listeners, shutdown_signal())
        .await
        .map_err(|e| format!("store shutdown: {e}"))?;
    println!("broker-lite stopped cleanly");
    Ok(())
}

async fn shutdown_signal() {
    let ctrl_c = tokio::signal::ctrl_c();
    match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
        Ok(mut term) => {
            tokio::select! {
                _ = ctrl_c => {}
                _ = term.recv() => {}
            }
        }
        Err(_) => {
            let _ = ctrl_c.await;
        }
    }
}
