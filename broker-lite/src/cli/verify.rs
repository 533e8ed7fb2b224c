//! `broker-lite verify`: the offline check and repair of a store directory.

use broker_lite::BrokerConfig;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use indicatif::{ProgressBar, ProgressStyle};
use mqstore::verify::{repair_store, verify_store, RepairOptions, Severity, VerifyReport};

/// Exit status when the check finds problems (or a repair leaves some).
const PROBLEMS_FOUND: u8 = 1;
/// Exit status when the check cannot run or a repair is refused.
const CANNOT_RUN: u8 = 2;

pub(crate) fn run(
    config_file: Option<&Path>,
    store: Option<PathBuf>,
    repair: bool,
    discard_after_corruption: bool,
    truncate_at: Option<u64>,
    quiet: bool,
) -> ExitCode {
    let mut config = match BrokerConfig::from_file(config_file) {
        Ok(c) => c.store,
        Err(e) => {
            eprintln!("broker-lite verify: {e}");
            return ExitCode::from(CANNOT_RUN);
        }
    };
    if let Some(s) = store {
        config.store_path_root_dir = s;
    }
    let bar = if quiet {
        ProgressBar::hidden()
    } else {
        ProgressBar::new(0).with_style(
            ProgressStyle::with_template(
                "{msg} [{bar:40}] {bytes}/{total_bytes} ({bytes_per_sec}, {eta} left)",
            )
            .unwrap_or_else(|_| ProgressStyle::default_bar())
            .progress_chars("=> "),
        )
    };
    let mut progress = |done: u64, total: u64| {
        bar.set_length(total);
        bar.set_position(done);
    };
    let root = config.store_path_root_dir.display().to_string();
    if repair || truncate_at.is_some() {
        bar.set_message("checking");
        let options = RepairOptions {
            discard_after_corruption,
            truncate_at,
        };
        match repair_store(&config, options, &mut progress) {
            Ok(out) => {
                bar.finish_and_clear();
                println!("before repair:");
                print_report(&root, &out.before);
                if out.before.problems.is_empty() && out.cut_at.is_none() {
                    println!("nothing to repair");
                    return ExitCode::SUCCESS;
                }
                if let Some(at) = out.cut_at {
                    println!("CommitLog cut at offset {at}");
                }
                if let Some(dir) = &out.backup_dir {
                    println!(
                        "removed bytes and old derived files saved in {}",
                        dir.display()
                    );
                }
                println!("after repair:");
                print_report(&root, &out.after);
                if out.after.problems.is_empty() {
                    ExitCode::SUCCESS
                } else {
                    ExitCode::from(PROBLEMS_FOUND)
                }
            }
            Err(e) => {
                bar.finish_and_clear();
                eprintln!("broker-lite verify: repair refused or failed: {e}");
                ExitCode::from(CANNOT_RUN)
            }
        }
    } else {
        bar.set_message("verifying");
        match verify_store(&config, &mut progress) {
            Ok(report) => {
                bar.finish_and_clear();
                print_report(&root, &report);
                if report.problems.is_empty() {
                    ExitCode::SUCCESS
                } else {
                    ExitCode::from(PROBLEMS_FOUND)
                }
            }
            Err(e) => {
                bar.finish_and_clear();
                eprintln!("broker-lite verify: {e}");
                ExitCode::from(CANNOT_RUN)
            }
        }
    }
}

fn print_report(root: &str, r: &VerifyReport) {
    println!("store {root}");
    println!(
        "  commitlog: {} files, {} messages, {} bytes (offsets {}..{})",
        r.commit_log_files,
        r.messages,
        r.bytes(),
        r.min_offset,
        r.valid_end
    );
    println!(
        "  consumequeue: {} files, {} units; index: {} files, {} items",
        r.queue_files, r.queue_units, r.index_files, r.index_items
    );
    match r.checkpoint {
        Some(c) => println!(
            "  checkpoint: CommitLog durable to {}, dispatched durable to {}",
            c.commit_log_durable, c.dispatched_durable
        ),
        None => println!("  checkpoint: none (recovery starts from the first file)"),
    }
    if r.problems.is_empty() {
        println!("  OK: no problems");
        return;
    }
    println!("  {} problem(s):", r.problems.len());
    for p in &r.problems {
        let class = match p.severity {
            Severity::Derived => "derived (repair rebuilds it)",
            Severity::TornTail => "torn tail (repair cuts it)",
            Severity::Corrupt => "CORRUPT (repair needs --discard-after-corruption)",
        };
        println!(
            "  - {} @ {}: {} [{class}]",
            p.path.display(),
            p.offset,
            p.what
        );
    }
}
