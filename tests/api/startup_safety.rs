//! Starts that must not go ahead, run as the real binary as an operator would: `--insecure` on
//! an address other than loopback without the switch that says the network is trusted, and an
//! address already in use, which the error names with the setting that chose it.

use std::io::Read;
use std::net::TcpListener;
use std::process::{Command, Output, Stdio};
use std::time::Duration;

use crate::support::try_eventually_blocking;

/// How long a start that must fail may take to fail.
const EXIT_DEADLINE: Duration = Duration::from_secs(30);

/// The binary on an embedded catalog under `data_dir`, with `env` on top.
fn binary(data_dir: &std::path::Path, env: &[(&str, &str)]) -> Command {
    let mut command = Command::new(env!("CARGO_BIN_EXE_tenant-plane"));
    command
        .env_clear()
        .env("TENANT_PLANE_DATA_DIR", data_dir)
        .env("TENANT_PLANE_LISTEN", "127.0.0.1:0")
        .env("TENANT_PLANE_METRICS_LISTEN", "off")
        .env("TENANT_PLANE_LOG", "warn")
        .envs(env.iter().copied())
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped());
    command
}

/// Runs a start that must end by itself, and returns how it ended.
fn run_to_exit(mut command: Command) -> Output {
    let mut child = command.spawn().expect("start the binary");
    let ended = try_eventually_blocking("the start's end", EXIT_DEADLINE, || {
        child.try_wait().expect("wait")
    });
    if let Err(timed_out) = ended {
        let _ = child.kill();
        let mut stderr = String::new();
        let _ = child
            .stderr
            .take()
            .map(|mut e| e.read_to_string(&mut stderr));
        panic!("{timed_out}: {stderr}");
    }
    child.wait_with_output().expect("output")
}

fn stderr(output: &Output) -> String {
    String::from_utf8_lossy(&output.stderr).into_owned()
}

#[test]
fn insecure_on_a_non_loopback_address_refuses_to_start_unless_the_network_is_declared_trusted() {
    let dir = tempfile::tempdir().expect("dir");
    let refused = run_to_exit(binary(
        dir.path(),
        &[
            ("TENANT_PLANE_INSECURE", "true"),
            ("TENANT_PLANE_LISTEN", "0.0.0.0:0"),
        ],
    ));
    assert!(!refused.status.success(), "{refused:?}");
    let text = stderr(&refused);
    assert!(text.contains("0.0.0.0:0"), "{text}");
    assert!(
        text.contains("TENANT_PLANE_INSECURE_TRUSTED_NETWORK"),
        "{text}"
    );

    // Declared trusted, it starts; and on loopback --insecure needs no declaration.
    for env in [
        vec![
            ("TENANT_PLANE_INSECURE", "true"),
            ("TENANT_PLANE_LISTEN", "0.0.0.0:0"),
            ("TENANT_PLANE_INSECURE_TRUSTED_NETWORK", "true"),
        ],
        vec![("TENANT_PLANE_INSECURE", "true")],
    ] {
        let mut child = binary(dir.path(), &env).spawn().expect("start");
        let mut stderr = child.stderr.take().expect("stderr");
        let mut seen = String::new();
        let mut buffer = [0u8; 4096];
        // The start banner ends with the `list` example.
        while !seen.contains(" list") {
            let n = stderr.read(&mut buffer).expect("read stderr");
            assert!(n > 0, "the server ended before serving: {seen}");
            seen.push_str(&String::from_utf8_lossy(&buffer[..n]));
        }
        assert!(seen.contains("WITHOUT authentication"), "{seen}");
        child.kill().expect("stop the server");
        child.wait().expect("wait");
    }
}

#[test]
fn a_start_on_a_taken_metrics_port_names_the_address_and_its_setting() {
    let dir = tempfile::tempdir().expect("dir");
    let taken = TcpListener::bind("127.0.0.1:0").expect("take a port");
    let addr = taken.local_addr().expect("addr").to_string();

    let output = run_to_exit(binary(
        dir.path(),
        &[("TENANT_PLANE_METRICS_LISTEN", addr.as_str())],
    ));

    assert!(!output.status.success(), "{output:?}");
    let text = stderr(&output);
    assert!(text.contains(&addr), "{text}");
    assert!(text.contains("TENANT_PLANE_METRICS_LISTEN"), "{text}");
    assert!(text.contains("--metrics-listen"), "{text}");
}

#[test]
fn a_start_on_a_taken_grpc_port_names_the_address_and_its_setting() {
    let dir = tempfile::tempdir().expect("dir");
    let taken = TcpListener::bind("127.0.0.1:0").expect("take a port");
    let addr = taken.local_addr().expect("addr").to_string();

    let output = run_to_exit(binary(
        dir.path(),
        &[("TENANT_PLANE_LISTEN", addr.as_str())],
    ));

    assert!(!output.status.success(), "{output:?}");
    let text = stderr(&output);
    assert!(text.contains(&addr), "{text}");
    assert!(text.contains("TENANT_PLANE_LISTEN"), "{text}");
    assert!(!text.contains("TENANT_PLANE_METRICS_LISTEN"), "{text}");
}
