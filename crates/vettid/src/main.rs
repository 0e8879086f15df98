//! `vettid`: one binary for the whole stack.
//!
//! - `vettid up` starts nats-server and VettID's processes on this machine and supervises them;
//! - `vettid api` is the HTTP API process (started by `up`).
//!
//! - `vettid attest …` verifies attestation documents and manages the dev root and PCR manifests.
//!
//! - `vettid admin …` manages invites and registrations straight on the API's database.
//!
//! Later issues add `enclave`, `host` and `app …`.
#![deny(unsafe_code)]

mod admin;
mod api;
mod app;
mod app_backup;
mod app_connections;
mod app_credential;
mod app_devices;
mod app_feed;
mod app_personal;
mod app_recovery;
mod app_secrets;
mod attest;
mod demo;
mod host;
mod platform;
mod up;
mod vault;

use clap::{Parser, Subcommand};
use std::process::ExitCode;

#[derive(Parser)]
#[command(
    name = "vettid",
    version,
    about = "VettID: a privacy-first digital identity platform"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Start nats-server and the VettID processes on this machine; stop them all on Ctrl-C.
    Up(up::UpArgs),
    /// Run the HTTP API process (normally started by `vettid up`).
    Api(api::ApiArgs),
    /// Administer invites and registrations on this machine's API database.
    Admin(admin::AdminArgs),
    /// Run the host process: starts and restarts the enclave, serves its storage.
    Host(host::HostArgs),
    /// Run the dev platform (attestor and key service standing in for Nitro and AWS KMS).
    DevPlatform(platform::PlatformArgs),
    /// Drive a vault through the host's control socket (debug path).
    Vault(vault::VaultArgs),
    /// What the member's app does: enroll, unlock, lock, status, whoami, refresh-creds, events.
    App(app::AppArgs),
    /// The whole journey on this machine: stack, admin, two members enrolled and unlocked.
    Demo(demo::DemoArgs),
    /// Attestation: verify documents, the dev root, measurements, PCR manifests.
    #[command(subcommand)]
    Attest(attest::AttestCommand),
}

fn main() -> ExitCode {
    // Everything VettID writes (databases, logs, keys, sockets; and what its children write)
    // is for its own user only.
    nix::sys::stat::umask(nix::sys::stat::Mode::from_bits_truncate(0o077));
    let cli = Cli::parse();
    let result = match cli.command {
        Command::Up(args) => up::run(args),
        Command::Api(args) => api::run(args),
        Command::Admin(args) => admin::run(args),
        Command::Attest(cmd) => attest::run(cmd),
        Command::Host(args) => host::run(args),
        Command::DevPlatform(args) => platform::run(args),
        Command::Vault(args) => vault::run(args),
        Command::App(args) => app::run(args),
        Command::Demo(args) => demo::run(args),
    };
    match result {
        Ok(code) => code,
        Err(err) => {
            eprintln!("vettid: error: {err:#}");
            ExitCode::FAILURE
        }
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn the_command_line_definition_is_consistent() {
        use clap::CommandFactory;
        super::Cli::command().debug_assert();
    }
}
