//! The Kubernetes manifests (deploy/kubernetes/), checked offline the way `kubectl apply -f
//! deploy/kubernetes/` would take them: every object against the Kubernetes schemas
//! (kubernetes-validate, installed by scripts/install-test-deps.sh), the KEDA objects against KEDA's
//! CRD schemas (@kubernetes-models/keda through scripts/validate-keda.mjs, installed by
//! scripts/test), the settings they set against what pagecast knows, and the record queue the
//! autoscaler reads against the stream pagecast really queues on.

mod common;
#[path = "support/redis.rs"]
mod redis_support;
#[path = "support/service.rs"]
mod service_support;

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use common::*;
use serde_json::{Value, json};

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

fn tools() -> PathBuf {
    std::env::var_os("PAGECAST_TOOLS_DIR").map_or_else(
        || PathBuf::from(std::env::var("HOME").expect("HOME")).join(".cache/pagecast-tools"),
        PathBuf::from,
    )
}

/// The manifests `kubectl apply -f deploy/kubernetes/` applies, then the examples.
fn manifest_files() -> Vec<PathBuf> {
    let mut files = Vec::new();
    for dir in ["deploy/kubernetes", "deploy/kubernetes/examples"] {
        let mut here: Vec<PathBuf> = std::fs::read_dir(root().join(dir))
            .unwrap_or_else(|e| panic!("{dir}: {e}"))
            .map(|e| e.unwrap().path())
            .filter(|p| p.extension().is_some_and(|x| x == "yaml" || x == "yml"))
            .collect();
        here.sort();
        files.extend(here);
    }
    assert!(files.len() >= 5, "{files:?}");
    files
}

/// Every document of a YAML file, as JSON.
fn documents(path: &Path) -> Vec<Value> {
    use serde::Deserialize;
    let text = std::fs::read_to_string(path).unwrap();
    serde_norway::Deserializer::from_str(&text)
        .map(|d| Value::deserialize(d).unwrap_or_else(|e| panic!("{}: {e}", path.display())))
        .filter(|v| !v.is_null())
        .collect()
}

fn all_objects() -> Vec<Value> {
    manifest_files().iter().flat_map(|f| documents(f)).collect()
}

fn find<'a>(objects: &'a [Value], kind: &str, name: &str) -> &'a Value {
    objects
        .iter()
        .find(|o| o["kind"] == kind && o["metadata"]["name"] == name)
        .unwrap_or_else(|| panic!("no {kind}/{name} in the manifests"))
}

fn kubernetes_validate(files: &[PathBuf]) -> (bool, String) {
    let bin = tools().join("kubernetes-validate-venv/bin/kubernetes-validate");
    assert!(
        bin.is_file(),
        "{} is missing: run scripts/install-test-deps.sh",
        bin.display()
    );
    let o = Command::new(&bin)
        .arg("--strict")
        .args(files)
        .output()
        .expect("run kubernetes-validate");
    (
        o.status.success(),
        String::from_utf8_lossy(&o.stdout).to_string() + &String::from_utf8_lossy(&o.stderr),
    )
}

fn validate_keda(objects: &[Value]) -> (bool, String) {
    let models = tools().join("keda-models");
    assert!(
        models
            .join("node_modules/@kubernetes-models/keda/package.json")
            .is_file(),
        "@kubernetes-models/keda is missing from {}: scripts/test installs it",
        models.display()
    );
    let mut child = Command::new("node")
        .arg(root().join("scripts/validate-keda.mjs"))
        .arg(&models)
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("run node");
    use std::io::Write;
    child
        .stdin
        .take()
        .unwrap()
        .write_all(serde_json::to_string(objects).unwrap().as_bytes())
        .unwrap();
    let o = child.wait_with_output().unwrap();
    (
        o.status.success(),
        String::from_utf8_lossy(&o.stdout).to_string() + &String::from_utf8_lossy(&o.stderr),
    )
}

#[test]
fn every_manifest_passes_the_kubernetes_and_keda_schemas() {
    let files = manifest_files();
    let (ok, out) = kubernetes_validate(&files);
    assert!(ok, "kubernetes-validate:\n{out}");
    // The only objects it has no schema for are KEDA's, checked below.
    for line in out.lines().filter(|l| l.starts_with("WARN")) {
        assert!(
            line.contains("Couldn't find schema for kind ScaledObject")
                || line.contains("Couldn't find schema for kind TriggerAuthentication"),
            "{line}"
        );
    }
    let keda: Vec<Value> = all_objects()
        .into_iter()
        .filter(|o| {
            o["apiVersion"]
                .as_str()
                .unwrap_or("")
                .starts_with("keda.sh/")
        })
        .collect();
    assert_eq!(
        keda.len(),
        2,
        "a ScaledObject and its TriggerAuthentication"
    );
    let (ok, out) = validate_keda(&keda);
    assert!(ok, "KEDA schemas:\n{out}");
    assert_eq!(
        out.lines().filter(|l| l.starts_with("ok")).count(),
        2,
        "{out}"
    );
}

#[test]
fn the_validators_reject_a_broken_manifest() {
    let dir = scratch("deploy-broken");
    let mut objects = documents(&root().join("deploy/kubernetes/worker.yaml"));
    objects[0]["spec"]["replicas"] = json!("two");
    let broken = dir.join("worker.yaml");
    std::fs::write(&broken, serde_json::to_string(&objects[0]).unwrap()).unwrap();
    let (ok, out) = kubernetes_validate(&[broken]);
    assert!(!ok && out.contains("spec.replicas"), "{out}");

    let mut scaled = find(
        &documents(&root().join("deploy/kubernetes/autoscaling.yaml")),
        "ScaledObject",
        "pagecast-worker",
    )
    .clone();
    scaled["spec"]["maxReplicaCount"] = json!("many");
    let (ok, out) = validate_keda(&[scaled]);
    assert!(!ok && out.contains("maxReplicaCount"), "{out}");
    let _ = std::fs::remove_dir_all(&dir);
}

/// The names after `[env: ` in `serve --help` and `worker --help`.
fn known_settings() -> BTreeSet<String> {
    let mut out = BTreeSet::new();
    for cmd in ["serve", "worker"] {
        let o = pagecast().args([cmd, "--help"]).output().unwrap();
        for rest in String::from_utf8_lossy(&o.stdout).split("[env: ").skip(1) {
            out.insert(
                rest.chars()
                    .take_while(|c| c.is_ascii_uppercase() || c.is_ascii_digit() || *c == '_')
                    .collect(),
            );
        }
    }
    assert!(out.contains("PAGECAST_REDIS_URL"), "{out:?}");
    out
}

/// The `env` and `envFrom` of a pod template's first container, and the ConfigMap's data.
fn container(o: &Value) -> &Value {
    &o["spec"]["template"]["spec"]["containers"][0]
}

fn env_value<'a>(c: &'a Value, name: &str) -> &'a Value {
    c["env"]
        .as_array()
        .unwrap()
        .iter()
        .find(|e| e["name"] == name)
        .unwrap_or_else(|| panic!("{name} is not set"))
}

#[test]
fn the_manifests_keep_recordings_across_restarts_and_use_only_real_settings() {
    let objects = all_objects();
    let known = known_settings();
    let config = find(&objects, "ConfigMap", "pagecast");
    let secret = find(&objects, "Secret", "pagecast");
    let api = find(&objects, "Deployment", "pagecast-api");
    let worker = find(&objects, "StatefulSet", "pagecast-worker");
    let mut used: Vec<String> = config["data"]
        .as_object()
        .unwrap()
        .keys()
        .cloned()
        .collect();
    for o in [api, worker] {
        let c = container(o);
        for e in c["env"].as_array().unwrap() {
            used.push(e["name"].as_str().unwrap().to_string());
            if let Some(key) = e["valueFrom"]["secretKeyRef"]["key"].as_str() {
                assert!(
                    secret["stringData"][key].is_string(),
                    "the example Secret lacks {key}"
                );
            }
        }
        // Probes on the health endpoints; non-root; no privilege escalation.
        let port = &c["readinessProbe"]["httpGet"];
        assert_eq!(port["path"], "/readyz", "{o}");
        assert_eq!(c["livenessProbe"]["httpGet"]["path"], "/healthz", "{o}");
        let pod = &o["spec"]["template"]["spec"];
        assert_eq!(pod["securityContext"]["runAsNonRoot"], true);
        assert_eq!(pod["securityContext"]["runAsUser"], 10001);
        assert_eq!(c["securityContext"]["allowPrivilegeEscalation"], false);
        assert_eq!(c["securityContext"]["capabilities"]["drop"], json!(["ALL"]));
    }
    for name in used.iter().filter(|n| n.starts_with("PAGECAST_")) {
        assert!(
            known.contains(name),
            "the manifests set {name}, which no command knows"
        );
    }

    // Recordings survive a worker's restart: it comes back with the same node id (its pod
    // name) and the same work volume, and hands its recordings over to itself on SIGTERM.
    let c = container(worker);
    assert_eq!(
        env_value(c, "PAGECAST_NODE_ID")["valueFrom"]["fieldRef"]["fieldPath"],
        "metadata.name"
    );
    assert_eq!(env_value(c, "PAGECAST_SHUTDOWN")["value"], "handover");
    let work_dir = env_value(c, "PAGECAST_WORK_DIR")["value"].as_str().unwrap();
    let claims = worker["spec"]["volumeClaimTemplates"].as_array().unwrap();
    let mounts = c["volumeMounts"].as_array().unwrap();
    let work_mount = mounts.iter().find(|m| m["mountPath"] == work_dir).unwrap();
    assert!(
        claims
            .iter()
            .any(|v| v["metadata"]["name"] == work_mount["name"]),
        "the work directory is the pod's own persistent volume"
    );
    // The drain fits in the grace period: handover takes seconds, and the pod's uploads get
    // time to finish.
    let grace = worker["spec"]["template"]["spec"]["terminationGracePeriodSeconds"]
        .as_u64()
        .unwrap();
    assert!((60..=300).contains(&grace), "{grace}");
    let timeout: u64 = env_value(c, "PAGECAST_HANDOVER_TIMEOUT")["value"]
        .as_str()
        .unwrap()
        .parse()
        .unwrap();
    assert!(
        timeout >= 2 * grace,
        "the pod has time to come back: {timeout}"
    );
    // Chromium's shared memory in RAM.
    let pod = &worker["spec"]["template"]["spec"];
    let shm = mounts
        .iter()
        .find(|m| m["mountPath"] == "/dev/shm")
        .unwrap();
    let volume = pod["volumes"]
        .as_array()
        .unwrap()
        .iter()
        .find(|v| v["name"] == shm["name"])
        .unwrap();
    assert_eq!(volume["emptyDir"]["medium"], "Memory");
    // One recording slot per pod, and the autoscaler counts in slots of that size.
    let capacity = env_value(c, "PAGECAST_WORKER_CAPACITY")["value"]
        .as_str()
        .unwrap();
    let scaled = find(&objects, "ScaledObject", "pagecast-worker");
    assert_eq!(scaled["spec"]["scaleTargetRef"]["kind"], "StatefulSet");
    assert_eq!(scaled["spec"]["scaleTargetRef"]["name"], "pagecast-worker");
    assert_eq!(
        scaled["spec"]["advanced"]["scalingModifiers"]["target"],
        capacity
    );
    for kind_name in ["pagecast-api", "pagecast-worker"] {
        find(&objects, "PodDisruptionBudget", kind_name);
    }
}

/// A Kubernetes quantity in base units (cores, bytes): `2`, `100m`, `1Gi`, `128Mi`.
fn quantity(v: &Value) -> f64 {
    let s = v.as_str().unwrap_or_else(|| panic!("not a quantity: {v}"));
    for (suffix, factor) in [
        ("Gi", 1024f64.powi(3)),
        ("Mi", 1024f64.powi(2)),
        ("Ki", 1024.0),
        ("m", 0.001),
    ] {
        if let Some(n) = s.strip_suffix(suffix) {
            return n.parse::<f64>().unwrap() * factor;
        }
    }
    s.parse().unwrap()
}

/// A worker setting as the pod gets it: its `env` value, else the default `worker --help` shows.
fn worker_setting(c: &Value, name: &str) -> f64 {
    if let Some(e) = c["env"]
        .as_array()
        .unwrap()
        .iter()
        .find(|e| e["name"] == name)
    {
        return e["value"].as_str().unwrap().parse().unwrap();
    }
    let o = pagecast().args(["worker", "--help"]).output().unwrap();
    let help = String::from_utf8_lossy(&o.stdout).to_string();
    let after = &help[help
        .find(&format!("[env: {name}="))
        .unwrap_or_else(|| panic!("{name}"))..];
    let default = &after[after.find("[default: ").unwrap() + "[default: ".len()..];
    default[..default.find(']').unwrap()].parse().unwrap()
}

/// The worker's requests and limits fit its recording slots, as BENCHMARKS.md measured one
/// recording (720p30 with sound: up to 1.1 cores and 760 MB at its peak): a page's memory cap
/// plus the memory-backed /dev/shm within the limit, and a volume for a task's media.
#[test]
fn the_worker_is_sized_for_its_recording_slots() {
    let objects = all_objects();
    let worker = find(&objects, "StatefulSet", "pagecast-worker");
    let c = container(worker);
    let slots = worker_setting(c, "PAGECAST_WORKER_CAPACITY");
    let r = &c["resources"];
    const MB: f64 = 1e6;
    const MIB: f64 = 1024.0 * 1024.0;
    assert!(quantity(&r["requests"]["cpu"]) >= slots * 1.0, "{r}");
    assert!(
        quantity(&r["requests"]["memory"]) >= slots * 760.0 * MB,
        "{r}"
    );
    assert!(
        quantity(&r["limits"]["cpu"]) >= quantity(&r["requests"]["cpu"]),
        "{r}"
    );
    let pod = &worker["spec"]["template"]["spec"];
    let shm = pod["volumes"]
        .as_array()
        .unwrap()
        .iter()
        .find(|v| v["emptyDir"]["medium"] == "Memory")
        .expect("a memory-backed /dev/shm");
    let page = worker_setting(c, "PAGECAST_PAGE_MEMORY_MB") * MIB;
    // pagecast, Xvfb, PulseAudio and ffmpeg beside the page: 256 MiB at least.
    assert!(
        quantity(&r["limits"]["memory"])
            >= slots * page + quantity(&shm["emptyDir"]["sizeLimit"]) + 256.0 * MIB,
        "{r}"
    );
    let claim =
        &worker["spec"]["volumeClaimTemplates"][0]["spec"]["resources"]["requests"]["storage"];
    let disk = (slots * worker_setting(c, "PAGECAST_TASK_DISK_MB")
        + worker_setting(c, "PAGECAST_MIN_FREE_MB"))
        * MIB;
    assert!(quantity(claim) >= disk, "{claim} < {disk} bytes");
    // The API pod asks for little and is capped.
    let api = container(find(&objects, "Deployment", "pagecast-api"));
    assert!(quantity(&api["resources"]["limits"]["memory"]) <= 1024.0 * MIB);
}

/// What KEDA's `redis-streams` scaler measures, by the rules its documentation states ("Setting
/// the `consumerGroup` causes the scaler to operate on `pendingEntriesCount`. Lack of
/// `consumerGroup` will cause the scaler to be based on `streamLength`"; with `lagCount` and a
/// group, the group's lag).
#[derive(Debug, PartialEq)]
enum KedaMeasure {
    /// XLEN of the stream.
    Length,
    /// XPENDING of the group: entries delivered and not yet acknowledged.
    Pending(String),
    /// The group's lag (XINFO GROUPS, Redis 7).
    Lag(String),
}

fn keda_measure(metadata: &Value) -> KedaMeasure {
    match metadata["consumerGroup"].as_str() {
        None => KedaMeasure::Length,
        Some(g) if metadata.get("lagCount").is_some() => KedaMeasure::Lag(g.to_string()),
        Some(g) => KedaMeasure::Pending(g.to_string()),
    }
}

/// The value KEDA reads for `measure` from the real Redis.
fn keda_reads(conn: &mut redis::Connection, stream: &str, measure: &KedaMeasure) -> u64 {
    match measure {
        KedaMeasure::Length => redis::cmd("XLEN").arg(stream).query(conn).unwrap(),
        KedaMeasure::Pending(group) => {
            let (count, ..): (u64, redis::Value, redis::Value, redis::Value) =
                redis::cmd("XPENDING")
                    .arg(stream)
                    .arg(group)
                    .query(conn)
                    .unwrap();
            count
        }
        KedaMeasure::Lag(group) => {
            panic!("lag of {group}: not a measure pagecast's queue supports")
        }
    }
}

/// The ScaledObject's `redis-streams` trigger: its stream and what KEDA measures on it.
fn scaled_stream() -> (String, KedaMeasure) {
    let objects = documents(&root().join("deploy/kubernetes/autoscaling.yaml"));
    let scaled = find(&objects, "ScaledObject", "pagecast-worker");
    let trigger = scaled["spec"]["triggers"]
        .as_array()
        .unwrap()
        .iter()
        .find(|t| t["type"] == "redis-streams")
        .expect("a redis-streams trigger");
    let metadata = &trigger["metadata"];
    // One worker per waiting task.
    assert_eq!(metadata["streamLength"], "1", "{metadata}");
    (
        metadata["stream"].as_str().unwrap().to_string(),
        keda_measure(metadata),
    )
}

#[test]
fn keda_measures_what_its_documentation_says() {
    let m = |v: Value| keda_measure(&v);
    assert_eq!(
        m(json!({ "stream": "s", "streamLength": "1" })),
        KedaMeasure::Length
    );
    assert_eq!(
        m(json!({ "stream": "s", "consumerGroup": "workers", "streamLength": "1" })),
        KedaMeasure::Pending("workers".into()),
        "streamLength is ignored once a group is named"
    );
    assert_eq!(
        m(json!({ "stream": "s", "consumerGroup": "workers", "lagCount": "1" })),
        KedaMeasure::Lag("workers".into())
    );
}

/// The KEDA auth logs in as the URL's user: a `username` next to the password, from the Secret.
#[test]
fn the_autoscaler_logs_in_as_an_acl_user() {
    let objects = all_objects();
    let auth = find(&objects, "TriggerAuthentication", "pagecast-redis");
    let secret = find(&objects, "Secret", "pagecast");
    let refs = auth["spec"]["secretTargetRef"].as_array().unwrap();
    for parameter in ["address", "username", "password"] {
        let r = refs
            .iter()
            .find(|r| r["parameter"] == parameter)
            .unwrap_or_else(|| panic!("the TriggerAuthentication sets no {parameter}"));
        assert_eq!(r["name"], "pagecast");
        let key = r["key"].as_str().unwrap();
        assert!(
            secret["stringData"][key].is_string(),
            "the example Secret lacks {key}"
        );
    }
}

#[test]
fn the_autoscaler_reads_the_stream_pagecast_queues_recordings_on() {
    let redis = redis_support::TestRedis::start();
    let (stream, measure) = scaled_stream();
    assert_eq!(
        measure,
        KedaMeasure::Length,
        "the trigger must measure the queue's length"
    );
    let dir = scratch("deploy-stream");
    // pagecast as deployed: the default key prefix, the API alone at first.
    let env = |port: u16, extra: &[(&'static str, String)]| {
        let mut env = vec![
            ("PAGECAST_REDIS_URL", redis.url.clone()),
            ("PAGECAST_LISTEN", format!("127.0.0.1:{port}")),
            ("PAGECAST_WORK_DIR", dir.join("work").display().to_string()),
            ("PAGECAST_OUTPUT_DIR", dir.join("out").display().to_string()),
            ("PAGECAST_ALLOW_PRIVATE_URLS", "true".to_string()),
            (
                "PAGECAST_ALLOWED_PRIVATE_NETWORKS",
                "127.0.0.0/8,::1".to_string(),
            ),
        ];
        env.extend(extra.iter().cloned());
        env
    };
    // Up when the listener is this serve and it has reached Redis; a port another process took
    // meanwhile is replaced.
    let api_log = dir.join("api.log");
    let (_api, port) = (1..=5)
        .find_map(|attempt| {
            let port = service_support::free_port();
            let mut api =
                service_support::spawn(&["serve", "--no-worker"], &env(port, &[]), &api_log);
            match service_support::wait_serving(&mut api, port, &api_log, Some(&redis.url)) {
                Ok(()) => Some((api, port)),
                Err(why) if attempt < 5 && why.contains("Address already in use") => None,
                Err(why) => panic!("serve did not start: {why}"),
            }
        })
        .expect("serve started within 5 ports");
    let url = format!("http://127.0.0.1:{port}");
    let fixtures = fixture_server();
    let first = service_support::start(
        &url,
        json!({ "RecordURL": format!("{fixtures}/static.html"), "MaxDurationLimit": 60 }),
    );
    let mut redis_conn = redis::Client::open(redis.url.as_str())
        .unwrap()
        .get_connection()
        .unwrap();
    assert_eq!(
        keda_reads(&mut redis_conn, &stream, &measure),
        1,
        "the waiting task is one entry of {stream}"
    );

    // A worker of one slot, as deployed, takes it: the entry goes.
    let _worker = service_support::spawn(
        &["worker"],
        &env(
            port,
            &[
                ("PAGECAST_NODE_ID", "pagecast-worker-0".to_string()),
                ("PAGECAST_WORKER_CAPACITY", "1".to_string()),
            ],
        ),
        &dir.join("worker.log"),
    );
    service_support::wait_for(
        &url,
        &first,
        "recording",
        Duration::from_secs(60),
        service_support::status_is("recording"),
    );
    assert_eq!(keda_reads(&mut redis_conn, &stream, &measure), 0);

    // Every slot busy and a second task waiting: KEDA reads one more worker wanted. Counting
    // the group's pending entries instead (a trigger with `consumerGroup`) would read none,
    // since pagecast acknowledges an entry when a worker takes it.
    let second = service_support::start(
        &url,
        json!({ "RecordURL": format!("{fixtures}/static.html"), "MaxDurationLimit": 2 }),
    );
    assert_eq!(
        service_support::describe(&url, &first)["Status"],
        "recording"
    );
    assert_eq!(keda_reads(&mut redis_conn, &stream, &measure), 1);
    assert_eq!(
        keda_reads(
            &mut redis_conn,
            &stream,
            &KedaMeasure::Pending("workers".into())
        ),
        0,
        "what a trigger with consumerGroup would have read"
    );
    // The worker takes the second task once the first one ends.
    service_support::ok(&url, "Stop", &first);
    service_support::wait_finished(&url, &first, Duration::from_secs(90));
    service_support::wait_finished(&url, &second, Duration::from_secs(90));
    assert_eq!(keda_reads(&mut redis_conn, &stream, &measure), 0);
    let _ = std::fs::remove_dir_all(&dir);
}
