//! The npm install path, end to end: `scripts/package.sh` packs the plugin and
//! this machine's platform package, a private registry (verdaccio on loopback,
//! no uplink) receives them, and a real OpenCode whose `opencode.json` names
//! the plugin only by name installs it from there, starts the agent from the
//! platform package, and runs `mattermost_status` through it. Then `npx
//! opencode-mattermost --version` from the same registry runs the agent too.
//!
//! Nothing leaves loopback: npm's registry is the local one, verdaccio has no
//! uplink, and every other proxy-aware client is pointed at a closed port.

// Test code: panicking on a broken expectation is the point.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::print_stdout)]

use std::path::{Path, PathBuf};
use std::time::Duration;

use harness::model::{ScriptedModel, Step, tool_results};
use harness::opencode::{OpenCode, Options, Sandbox};
use harness::registry::Registry;
use harness::repo_root;
use serde_json::{Value, json};

const VERSION: &str = env!("CARGO_PKG_VERSION");

/// This machine in npm's words (`process.platform-process.arch`), if we ship for it.
fn npm_platform() -> Option<&'static str> {
    match (std::env::consts::OS, std::env::consts::ARCH) {
        ("linux", "x86_64") => Some("linux-x64"),
        ("linux", "aarch64") => Some("linux-arm64"),
        ("macos", "aarch64") => Some("darwin-arm64"),
        ("macos", "x86_64") => Some("darwin-x64"),
        _ => None,
    }
}

/// The test build of the agent without its debug info: the same program, a
/// fraction of the bytes to gzip and publish (the release build is not made here).
fn slim_agent(dir: &Path) -> PathBuf {
    let bin = PathBuf::from(env!("CARGO_BIN_EXE_opencode-mattermost"));
    let slim = dir.join("opencode-mattermost");
    let stripped = std::process::Command::new("strip")
        .arg("-o")
        .arg(&slim)
        .arg(&bin)
        .status()
        .is_ok_and(|s| s.success());
    if !stripped {
        std::fs::copy(&bin, &slim).unwrap();
    }
    slim
}

/// Runs `scripts/package.sh` for `agent`; answers the tarballs it printed.
fn package(agent: &Path, platform: &str, out: &Path) -> Vec<PathBuf> {
    let run = std::process::Command::new(repo_root().join("scripts/package.sh"))
        .arg("--agent")
        .arg(format!("{platform}={}", agent.display()))
        .arg("--out")
        .arg(out)
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&run.stdout);
    assert!(
        run.status.success(),
        "package.sh failed: {stdout}{}",
        String::from_utf8_lossy(&run.stderr)
    );
    stdout
        .lines()
        .filter_map(|l| l.split('\t').next())
        .filter(|f| f.ends_with(".tgz"))
        .map(PathBuf::from)
        .collect()
}

/// Where `pid`'s executable lives (Linux's /proc; elsewhere `ps`).
fn exe_of(pid: u32) -> PathBuf {
    if let Ok(p) = std::fs::read_link(format!("/proc/{pid}/exe")) {
        return p;
    }
    let out = std::process::Command::new("ps")
        .args(["-o", "comm=", "-p", &pid.to_string()])
        .output()
        .unwrap();
    PathBuf::from(String::from_utf8_lossy(&out.stdout).trim())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn opencode_installs_the_plugin_by_name_from_a_registry_and_runs_its_platform_agent() {
    let Some(platform) = npm_platform() else {
        println!("no platform package for this machine; nothing to install");
        return;
    };
    let work = tempfile::Builder::new()
        .prefix("ocmm-install-")
        .tempdir()
        .unwrap();
    let agent = slim_agent(work.path());
    let tarballs = package(&agent, platform, &work.path().join("dist"));
    let names: Vec<String> = tarballs
        .iter()
        .map(|t| t.file_name().unwrap().to_string_lossy().into_owned())
        .collect();
    assert_eq!(
        names,
        [
            format!("opencode-mattermost-{platform}-{VERSION}.tgz"),
            format!("opencode-mattermost-{VERSION}.tgz"),
        ],
        "package.sh packs the platform package, then the plugin"
    );

    let registry = Registry::start().await.unwrap();
    // The platform package first: the plugin's optional dependency must resolve.
    for t in &tarballs {
        registry.publish(t).unwrap();
    }
    // The plugin's only run-time dependency is zod: publish the pinned one from
    // the shim's own install, so the registry holds everything the plugin needs.
    harness::opencode::ensure_npm(&repo_root().join("opencode-plugin")).unwrap();
    let zod = work.path().join("zod");
    std::fs::create_dir_all(&zod).unwrap();
    let packed = std::process::Command::new("npm")
        .args(["pack", "--silent", "--ignore-scripts", "--pack-destination"])
        .arg(&zod)
        .arg(repo_root().join("opencode-plugin/node_modules/zod"))
        .env("npm_config_cache", work.path().join("npm-cache"))
        .output()
        .unwrap();
    assert!(packed.status.success(), "{packed:?}");
    let zod_tgz = zod.join(String::from_utf8_lossy(&packed.stdout).trim());
    registry.publish(&zod_tgz).unwrap();
    let plugin = registry
        .packument("opencode-mattermost")
        .await
        .unwrap()
        .expect("the plugin is in the registry");
    assert_eq!(plugin["dist-tags"]["latest"], VERSION);

    let model = ScriptedModel::start().await.unwrap();
    model.on(
        "status of the installed plugin",
        vec![
            Step::tool("mattermost_status", json!({})),
            Step::text("Installed plugin answered."),
        ],
    );
    let mut sandbox = Sandbox::new(&Options {
        model: &model,
        agent_bin: agent.clone(),
        env: vec![],
    })
    .unwrap();
    // The user's whole set-up: the plugin's name in opencode.json.
    let config_path = sandbox.project.join("opencode.json");
    let mut config: Value =
        serde_json::from_str(&std::fs::read_to_string(&config_path).unwrap()).unwrap();
    config["plugin"] = json!(["opencode-mattermost"]);
    std::fs::write(&config_path, config.to_string()).unwrap();
    // No explicit agent: it must come from the platform package.
    sandbox.env.retain(|(k, _)| k != "OPENCODE_MATTERMOST_BIN");
    // OpenCode installs plugins with npm's own machinery, which reads the
    // user's .npmrc: the one place a user names a private registry.
    std::fs::write(
        sandbox.home.path().join(".npmrc"),
        format!("registry={}\n", registry.url),
    )
    .unwrap();
    // Anything that would still try the internet meets a closed loopback port.
    for (k, v) in [
        ("HTTP_PROXY", "http://127.0.0.1:9"),
        ("HTTPS_PROXY", "http://127.0.0.1:9"),
        ("NO_PROXY", "127.0.0.1,localhost"),
    ] {
        sandbox.env.push((k.into(), v.into()));
    }
    let home = sandbox.home.path().to_path_buf();
    let oc = OpenCode::serve_in(sandbox).await.unwrap();

    let session = oc.create_session("installed by name").await.unwrap();
    let reply = oc
        .prompt(&session, "please report the status of the installed plugin")
        .await
        .unwrap();
    let request = model
        .wait_for_request(Duration::from_secs(60), |r| {
            tool_results(r)
                .iter()
                .any(|t| t.contains("opencode-mattermost status"))
        })
        .await
        .unwrap_or_else(|e| {
            panic!(
                "mattermost_status never answered: {e}; registry log: {}",
                registry.log()
            )
        });
    let status = tool_results(&request)
        .into_iter()
        .find(|t| t.contains("opencode-mattermost status"))
        .unwrap();
    println!("--- status from the installed plugin ---\n{status}");
    assert!(
        status.contains(&format!("Plugin shim: {VERSION}")),
        "{status}"
    );
    assert!(
        status.contains(&format!("{session} \"installed by name\" (this session)")),
        "{status}"
    );
    assert!(reply.to_string().contains("Installed plugin answered."));

    // The agent that answered is the platform package's copy inside OpenCode's
    // package cache, under the sandbox's home, not the test build.
    let pid: u32 = status
        .split("pid ")
        .nth(1)
        .and_then(|s| s.split(|c: char| !c.is_ascii_digit()).next())
        .and_then(|d| d.parse().ok())
        .expect("status names the agent's pid");
    let exe = exe_of(pid);
    let home = home.canonicalize().unwrap();
    assert!(
        exe.starts_with(&home),
        "{} is not under {}",
        exe.display(),
        home.display()
    );
    assert!(
        exe.ends_with(format!(
            "node_modules/opencode-mattermost-{platform}/bin/opencode-mattermost"
        )),
        "{}",
        exe.display()
    );
    // Beside it, the plugin of the same release, and no other platform's package.
    let modules = exe.ancestors().nth(3).unwrap();
    let installed: Value = serde_json::from_str(
        &std::fs::read_to_string(modules.join("opencode-mattermost/package.json")).unwrap(),
    )
    .unwrap();
    assert_eq!(installed["version"], VERSION);
    let platforms: Vec<String> = std::fs::read_dir(modules)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|n| n.starts_with("opencode-mattermost-"))
        .collect();
    assert_eq!(platforms, [format!("opencode-mattermost-{platform}")]);

    // The command line from the same registry, as a user first meets it:
    // `npx opencode-mattermost …` runs the platform package's agent, with no
    // Rust toolchain and no path to remember.
    let npx = std::process::Command::new("npx")
        .args(["--yes", "opencode-mattermost", "--version"])
        .current_dir(work.path())
        .env("HOME", &home)
        .env("npm_config_cache", work.path().join("npx-cache"))
        .env("npm_config_registry", &registry.url)
        .env("HTTP_PROXY", "http://127.0.0.1:9")
        .env("HTTPS_PROXY", "http://127.0.0.1:9")
        .env("NO_PROXY", "127.0.0.1,localhost")
        .env_remove("OPENCODE_MATTERMOST_BIN")
        .output()
        .unwrap();
    assert!(
        npx.status.success(),
        "{npx:?}; registry log: {}",
        registry.log()
    );
    assert_eq!(
        String::from_utf8_lossy(&npx.stdout).trim(),
        format!("opencode-mattermost {VERSION}")
    );

    oc.stop().await;
    drop(registry);
}
