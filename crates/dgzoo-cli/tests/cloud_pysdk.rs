//! The real PySDK 1.5.0 against our hub: `degirum.connect(LOCAL, hub_url, token)` list / info /
//! load / predict (golden results), PySDK's native cache filled from our hub, and
//! `degirum download-zoo`. Also pins a dg-zoo-server incompatibility our hub avoids.
#[path = "../../../tests/support/cloud_common.rs"]
mod cloud_common;
use cloud_common::*;
use serde_json::Value;

const SCRIPT: &str = r#"
import sys, json, degirum as dg
url, tok = sys.argv[1], sys.argv[2]
out = {}
zoo = dg.connect(dg.LOCAL, url, tok)
# model_info and load_model before any listing: needs "model_labels" in .../info
out["info_checksum"] = zoo.model_info(sys.argv[3]).Checksum
m = zoo.load_model(sys.argv[3])
out["label_285"] = m.label_dictionary.get(285)
out["list"] = zoo.list_models()
res = {}
for name, img in [(sys.argv[3], "cat_224.jpg"), (sys.argv[4], "girls_256.jpg"), (sys.argv[5], "cat_224.jpg")]:
    mm = zoo.load_model(name)
    res[name + "/" + img] = mm.predict(sys.argv[6] + "/" + img).results
out["results"] = res
try:
    dg.connect(dg.LOCAL, url, "wrong-token")
    out["bad_token"] = None
except Exception as e:
    out["bad_token"] = str(e)
print("JSON" + json.dumps(out))
"#;

fn parse(stdout: &str) -> Value {
    let line = stdout.lines().find_map(|l| l.strip_prefix("JSON")).unwrap_or_else(|| panic!("no result line in: {stdout}"));
    serde_json::from_str(line).unwrap()
}

#[test]
fn pysdk_lists_loads_and_predicts_from_our_hub() {
    let Some(peer) = peer() else { return };
    let root = hub_root(&[EFF_F, EFF_ONNX, YOLO, BLAZE]);
    let hub = start_hub(root.path());
    let home = tempfile::tempdir().unwrap();
    let url = hub_url(&hub);
    let images = format!("{ZOO}/images");
    let (ok, out, err) = run_pysdk(&peer, home.path(), SCRIPT, &[&url, TOKEN, EFF_F, YOLO, EFF_ONNX, &images]);
    assert!(ok, "PySDK failed:\n{out}\n{err}");
    let v = parse(&out);
    let want_sum = serde_json::from_str::<Value>(&std::fs::read_to_string(format!("{ZOO}/{EFF_F}/{EFF_F}.json")).unwrap()).unwrap()["Checksum"].clone();
    assert_eq!(v["info_checksum"], want_sum);
    assert_eq!(v["label_285"], "Egyptian cat");
    let mut want_list = vec![EFF_F, EFF_ONNX, YOLO, BLAZE];
    want_list.sort();
    assert_eq!(v["list"], serde_json::json!(want_list));
    for (m, img) in [(EFF_F, "cat_224.jpg"), (YOLO, "girls_256.jpg"), (EFF_ONNX, "cat_224.jpg")] {
        assert_close(&v["results"][format!("{m}/{img}")], &golden(m, img), 1e-4, &format!("PySDK {m} {img}"));
    }
    assert_eq!(v["bad_token"], format!("Unable to connect to server {}: Token is not valid", hub.addr()));
    // PySDK's native runtime filled its own cache from our hub (cloud-api.md §4 layout).
    let cached = home
        .path()
        .join(".local/share/DeGirum/cloud_zoo_cache")
        .join(format!("127.0.0.1%3A{}.{ORG}.{ZOONAME}.{EFF_F}", hub.addr().port()))
        .join(format!("{EFF_F}.json"));
    assert!(cached.is_file(), "{} missing", cached.display());
}

#[test]
fn pysdk_download_zoo_from_our_hub() {
    let Some(peer) = peer() else { return };
    let root = hub_root(&[EFF_Q, BLAZE, YOLO]);
    let hub = start_hub(root.path());
    let home = tempfile::tempdir().unwrap();
    let dest = home.path().join("dl");
    let out = std::process::Command::new(peer.join("venv/bin/degirum"))
        .args(["download-zoo", "--url", &hub_url(&hub), "--token", TOKEN, "--path"])
        .arg(&dest)
        .args(["--runtime", "TFLITE", "--precision", "FLOAT"])
        .env("HOME", home.path())
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{stdout}\n{}", String::from_utf8_lossy(&out.stderr));
    assert!(stdout.contains("Downloaded 2 model(s)"), "{stdout}");
    for m in [BLAZE, YOLO] {
        for f in std::fs::read_dir(format!("{ZOO}/{m}")).unwrap().flatten() {
            let got = std::fs::read(dest.join(m).join(f.file_name())).unwrap();
            assert!(got == std::fs::read(f.path()).unwrap(), "{m}/{:?} differs", f.file_name());
        }
    }
    assert!(!dest.join(EFF_Q).exists(), "QUANT model filtered out");
}

/// Observed: PySDK 1.5.0 reads `model_labels` from `.../info`, dg-zoo-server 0.3.0 sends
/// `model_dictionary`, so `model_info`/`load_model` before `list_models` fail with KeyError
/// against dg-zoo-server. Our hub sends both keys (the test above passes on it).
#[test]
fn pysdk_model_info_first_fails_on_dg_zoo_server() {
    let Some(peer) = peer() else { return };
    let root = hub_root(&[BLAZE]);
    let (_server, port) = start_dg_zoo_server(&peer, root.path());
    let home = tempfile::tempdir().unwrap();
    let script = "import sys, degirum as dg\nz = dg.connect(dg.LOCAL, sys.argv[1], sys.argv[2])\ntry:\n    z.model_info(sys.argv[3])\n    print('OK')\nexcept KeyError as e:\n    print('KEYERROR', e)\n";
    let (ok, out, err) = run_pysdk(&peer, home.path(), script, &[&format!("http://127.0.0.1:{port}/{ORG}/{ZOONAME}"), TOKEN, BLAZE]);
    assert!(ok, "{out}\n{err}");
    assert_eq!(out.trim(), "KEYERROR 'model_labels'");
}

/// #13: resuming against a server that ignores `Range` (dg-zoo-server 0.3.0 answers 200 with
/// the whole archive): bytes kept from an interrupted download (here: not even the right ones)
/// are dropped and the archive is written from its first byte.
#[test]
fn resume_against_dg_zoo_server_falls_back_to_the_whole_archive() {
    let Some(peer) = peer() else { return };
    let root = hub_root(&[BLAZE]);
    let (_server, port) = start_dg_zoo_server(&peer, root.path());
    let url = format!("http://127.0.0.1:{port}/{ORG}/{ZOONAME}");
    let zoo = dgzoo::zoo::address::parse_cloud_url(&url).unwrap();
    let cdir = tempfile::tempdir().unwrap();
    let cache = dgzoo::cache::Cache::new(cache_cfg(cdir.path()));
    let partial = cache.zoo_dir(&zoo).unwrap().join(".partial");
    std::fs::create_dir_all(&partial).unwrap();
    let cfg: Value = serde_json::from_str(&std::fs::read_to_string(format!("{ZOO}/{BLAZE}/{BLAZE}.json")).unwrap()).unwrap();
    let kept = 300 * 1024;
    std::fs::write(partial.join(format!("{BLAZE}.dl-resume.zip")), vec![0x5a; kept]).unwrap();
    std::fs::write(partial.join(format!("{BLAZE}.dl-resume.json")), serde_json::json!({"etag": null, "checksum": cfg["Checksum"]}).to_string()).unwrap();
    let client = dgzoo::cloud::CloudClient::new(&zoo, TOKEN);
    let mut first = None;
    let held = cache.fetch(&client, BLAZE, &mut |got, _| {
        first.get_or_insert(got);
    });
    let held = held.unwrap_or_else(|e| panic!("{}", e.message));
    assert!(held.downloaded);
    assert!(first.unwrap() < kept as u64, "the 200 reply was written from the start");
    assert!(dgzoo::cache::verify_model_dir(&held.dir, BLAZE, cfg["Checksum"].as_str()).is_ok());
    assert!(std::fs::read_dir(&partial).unwrap().next().is_none(), "nothing left in .partial");
}
