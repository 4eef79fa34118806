//! `list`, `info`, `predict`, `sys-info`: the zoo manager from the command line.
use clap::Args;
use dgzoo::zoo::filter::Filters;
use dgzoo::zoo::Zoo;
use serde_json::{json, Value};
use std::io::Write as _;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

/// Where to connect: the same three arguments as `dg_connect`.
#[derive(Args, Clone)]
pub struct Connect {
    /// Inference host: @local, @cloud, or an AI server address (host[:port], http://host:port).
    #[arg(long, env = "DGZOO_HOST", default_value = "@local")]
    pub host: String,
    /// Zoo: a local directory or model JSON, a cloud zoo URL, or "" for an AI server's own zoo.
    /// Defaults to the demo zoo shipped with dgzoo.
    #[arg(long, env = "DGZOO_ZOO_URL")]
    pub zoo: Option<String>,
    /// Cloud token.
    #[arg(long, env = "DGZOO_TOKEN", hide_env_values = true, default_value = "")]
    pub token: String,
}

impl Connect {
    pub fn open(&self) -> dgzoo::Result<Zoo> {
        self.open_with(&dgzoo::zoo::ConnectOptions::default())
    }

    /// `open` for a command that only loads a named model: no zoo check at connect (the
    /// load's own request reports a bad token or zoo), so a cached cloud model costs one request.
    pub fn open_for_load(&self) -> dgzoo::Result<Zoo> {
        self.open_with(&dgzoo::zoo::ConnectOptions { skip_zoo_check: true, ..Default::default() })
    }

    fn open_with(&self, opts: &dgzoo::zoo::ConnectOptions) -> dgzoo::Result<Zoo> {
        let zoo = match &self.zoo {
            Some(z) => z.clone(),
            None => demo_zoo(),
        };
        // The CLI's settings, read once per process.
        let opts = dgzoo::zoo::ConnectOptions { settings: Some(dgzoo::settings::Settings::process().clone()), ..opts.clone() };
        Zoo::connect_with(&self.host, &zoo, &self.token, &opts)
    }
}

/// The demo zoo: `$DGZOO_DEMO_ZOO` (cargo sets it to the checkout's `demo/zoo` for what it
/// runs, scripts/demo.sh too), else `demo/zoo` under the current directory. No build-machine
/// path is compiled in.
fn demo_zoo() -> String {
    dgzoo::settings::Settings::process().demo_zoo.as_ref().map_or_else(|| "demo/zoo".to_string(), |p| p.to_string_lossy().into_owned())
}

/// `cat.png` in the demo zoo's parent folder.
fn demo_image() -> String {
    let zoo = std::path::PathBuf::from(demo_zoo());
    zoo.parent().unwrap_or(std::path::Path::new(".")).join("cat.png").to_string_lossy().into_owned()
}

#[derive(Args)]
pub struct FilterArgs {
    /// Model family: substring of the name (or a regex anchored at the start with --regex).
    #[arg(long)]
    pub model_family: Option<String>,
    /// Treat --model-family as a regular expression.
    #[arg(long)]
    pub regex: bool,
    #[arg(long)]
    pub runtime: Vec<String>,
    #[arg(long)]
    pub device: Vec<String>,
    #[arg(long)]
    pub device_type: Vec<String>,
    #[arg(long)]
    pub precision: Vec<String>,
    #[arg(long)]
    pub pruned: Vec<String>,
    #[arg(long)]
    pub postprocess_type: Vec<String>,
}

impl FilterArgs {
    pub fn filters(&self) -> dgzoo::Result<Filters> {
        let mut f = serde_json::Map::new();
        if let Some(fam) = &self.model_family {
            f.insert("model_family".into(), if self.regex { json!({ "regex": fam }) } else { json!(fam) });
        }
        for (k, v) in [
            ("runtime", &self.runtime),
            ("device", &self.device),
            ("device_type", &self.device_type),
            ("precision", &self.precision),
            ("pruned", &self.pruned),
            ("postprocess_type", &self.postprocess_type),
        ] {
            if !v.is_empty() {
                f.insert(k.into(), json!(v));
            }
        }
        Filters::from_json(&Value::Object(f))
    }
}

#[derive(Args)]
pub struct ListArgs {
    #[command(flatten)]
    pub connect: Connect,
    #[command(flatten)]
    pub filter: FilterArgs,
    /// Print `{name: parameters}` instead of names.
    #[arg(long)]
    pub full: bool,
    /// Names as one JSON array (with --full the output is JSON anyway); errors as JSON.
    #[arg(long, env = "DGZOO_JSON", value_parser = clap::builder::BoolishValueParser::new())]
    pub json: bool,
}

pub fn list(a: ListArgs) -> dgzoo::Result<()> {
    let zoo = a.connect.open()?;
    let filters = a.filter.filters()?;
    if a.full {
        let m: serde_json::Map<String, Value> = zoo.list_full(&filters)?.into_iter().collect();
        println!("{}", serde_json::to_string_pretty(&m).unwrap_or_default());
    } else {
        let names = zoo.list_names(&filters)?;
        if a.json {
            println!("{}", Value::from(names));
        } else {
            for n in names {
                println!("{n}");
            }
        }
    }
    Ok(())
}

#[derive(Args)]
pub struct InfoArgs {
    #[command(flatten)]
    pub connect: Connect,
    /// Model name.
    pub model: String,
    /// The output is JSON either way; errors as JSON too.
    #[arg(long, env = "DGZOO_JSON", value_parser = clap::builder::BoolishValueParser::new())]
    pub json: bool,
}

pub fn info(a: InfoArgs) -> dgzoo::Result<()> {
    let zoo = a.connect.open()?;
    println!("{}", serde_json::to_string_pretty(&zoo.model_info(&a.model)?).unwrap_or_default());
    Ok(())
}

#[derive(Args)]
pub struct PredictArgs {
    #[command(flatten)]
    pub connect: Connect,
    /// Model name (default: the only model of the zoo, or the first one listed).
    #[arg(long)]
    pub model: Option<String>,
    /// Model properties as a JSON object, e.g. '{"output_top_k": 3}'.
    #[arg(long)]
    pub props: Option<String>,
    /// Image files (JPEG, PNG, BMP) or folders of them. Default: the demo image shipped with dgzoo.
    pub images: Vec<String>,
    /// One JSON line per image on stdout (the default output); errors as JSON too.
    #[arg(long, env = "DGZOO_JSON", value_parser = clap::builder::BoolishValueParser::new())]
    pub json: bool,
    /// Write the results drawn on each image (PySDK's image_overlay): a file for one image
    /// (PNG if it ends in .png, else JPEG), a folder for several (each image's file name).
    #[arg(long)]
    pub overlay: Option<String>,
}

const IMAGE_EXTENSIONS: &[&str] = &["jpg", "jpeg", "png", "bmp"];

/// The files to run: each file as given, each folder's image files sorted by name.
fn expand_images(args: &[String]) -> Vec<String> {
    let mut out = Vec::new();
    for a in args {
        let p = std::path::Path::new(a);
        if p.is_dir() {
            let mut files: Vec<String> = std::fs::read_dir(p)
                .into_iter()
                .flatten()
                .flatten()
                .map(|e| e.path())
                .filter(|f| f.is_file() && f.extension().and_then(|x| x.to_str()).is_some_and(|x| IMAGE_EXTENSIONS.contains(&x.to_ascii_lowercase().as_str())))
                .map(|f| f.to_string_lossy().into_owned())
                .collect();
            files.sort();
            out.extend(files);
        } else {
            out.push(a.clone());
        }
    }
    out
}

fn overlay_format(path: &std::path::Path) -> dgzoo::overlay::Format {
    match path.extension().and_then(|x| x.to_str()).map(str::to_ascii_lowercase).as_deref() {
        Some("png") => dgzoo::overlay::Format::Png,
        _ => dgzoo::overlay::Format::Jpeg,
    }
}

pub fn predict(a: PredictArgs) -> dgzoo::Result<()> {
    let zoo = if a.model.is_some() { a.connect.open_for_load()? } else { a.connect.open()? };
    let model_name = match a.model {
        Some(m) => m,
        None => zoo
            .list_names(&Filters::default())?
            .into_iter()
            .next()
            .ok_or_else(|| dgzoo::Error::not_found("the zoo has no model that can run on this system"))?,
    };
    let props = match &a.props {
        Some(p) => serde_json::from_str(p).map_err(|e| dgzoo::Error::invalid(format!("--props is not valid JSON: {e}")))?,
        None => Value::Null,
    };
    let pb = crate::progress::bar(&model_name);
    let model = zoo.load_model_with_progress(&model_name, &props, &mut crate::progress::callback(&pb));
    pb.finish_and_clear();
    let model = model?;
    // No image given: the demo image beside the demo zoo (demo/cat.png).
    let images = if a.images.is_empty() { vec![demo_image()] } else { expand_images(&a.images) };
    // Where each image's overlay goes.
    let overlay_dir = a.overlay.as_ref().filter(|_| images.len() > 1).map(std::path::PathBuf::from);
    if let Some(d) = &overlay_dir {
        std::fs::create_dir_all(d).map_err(|e| dgzoo::Error::io(format!("cannot create the overlay folder '{}': {e}", d.display())))?;
    }
    let overlay_path = |path: &str| -> Option<std::path::PathBuf> {
        match (&overlay_dir, &a.overlay) {
            (Some(d), _) => Some(d.join(std::path::Path::new(path).file_name().unwrap_or_default())),
            (None, Some(f)) => Some(std::path::PathBuf::from(f)),
            _ => None,
        }
    };
    // Frames in flight: path (and bytes, for the overlay) by id.
    type Pending = std::collections::HashMap<u64, (String, Option<Vec<u8>>)>;
    let pending: Arc<Mutex<Pending>> = Arc::default();
    let errors = Arc::new(AtomicUsize::new(0));
    let done = Arc::new(AtomicUsize::new(0));
    let started = std::time::Instant::now();
    {
        let (cb_pending, cb_errors, cb_done) = (pending.clone(), errors.clone(), done.clone());
        let (m, name) = (model.clone(), model_name.clone());
        let dir = overlay_dir.clone();
        let single = a.overlay.clone().filter(|_| dir.is_none());
        let predictor = dgzoo::pipeline::AsyncPredictor::new(
            model.clone(),
            0,
            Box::new(move |id, r| {
                let Some((path, bytes)) = cb_pending.lock().unwrap_or_else(|p| p.into_inner()).remove(&id) else { return };
                match r {
                    Ok(r) => {
                        cb_done.fetch_add(1, Ordering::SeqCst);
                        // Tensors (raw outputs, instance masks) written out: a line stands alone.
                        // `json!` would deep-copy the results (instance masks: every pixel) first.
                        let results = serde_json::to_string(&r.results_inline()).unwrap_or_else(|_| "[]".into());
                        let line = format!(r#"{{"image":{},"model":{},"results":{results}}}"#, Value::from(path.as_str()), Value::from(name.as_str()));
                        if let Err(e) = writeln!(std::io::stdout().lock(), "{line}") {
                            // The reader went away (`| head`): stop as a SIGPIPE'd tool does, quietly.
                            if e.kind() == std::io::ErrorKind::BrokenPipe {
                                std::process::exit(crate::exit::BROKEN_PIPE);
                            }
                            eprintln!("error: cannot write the results: {e}");
                        }
                        let out = match (&dir, &single) {
                            (Some(d), _) => Some(d.join(std::path::Path::new(&path).file_name().unwrap_or_default())),
                            (None, Some(f)) => Some(std::path::PathBuf::from(f)),
                            _ => None,
                        };
                        if let (Some(out), Some(bytes)) = (out, bytes) {
                            // With the result's tensors: a semantic class map may be one.
                            let written = dgzoo::image_ops::decode(&bytes)
                                .and_then(|frame| m.overlay_owned(frame, &r.results, &r.tensors))
                                .and_then(|drawn| dgzoo::overlay::encode(&drawn, overlay_format(&out)))
                                .and_then(|img| std::fs::write(&out, img).map_err(|e| dgzoo::Error::io(format!("cannot write '{}': {e}", out.display()))));
                            if let Err(e) = written {
                                cb_errors.fetch_add(1, Ordering::SeqCst);
                                eprintln!("error: {path}: overlay: {}", e.message);
                            }
                        }
                    }
                    Err(e) => {
                        cb_errors.fetch_add(1, Ordering::SeqCst);
                        eprintln!("error: {path}: {}", e.message);
                    }
                }
            }),
        )?;
        for (id, path) in images.iter().enumerate() {
            match std::fs::read(path) {
                Ok(bytes) => {
                    let keep = overlay_path(path).map(|_| bytes.clone());
                    pending.lock().unwrap_or_else(|p| p.into_inner()).insert(id as u64, (path.clone(), keep));
                    predictor.submit(id as u64, vec![dgzoo::pipeline::OwnedInput::Bytes(bytes)])?;
                }
                Err(e) => {
                    errors.fetch_add(1, Ordering::SeqCst);
                    eprintln!("error: {path}: cannot read: {e}");
                }
            }
        }
        predictor.wait();
    }
    let secs = started.elapsed().as_secs_f64();
    let (n, errs) = (done.load(Ordering::SeqCst), errors.load(Ordering::SeqCst));
    if images.len() > 1 || errs > 0 {
        eprintln!("{n} frames, {errs} errors, {:.1} fps", n as f64 / secs.max(1e-9));
    }
    if errs > 0 && n == 0 {
        return Err(dgzoo::Error::invalid(format!("no image could be processed ({errs} errors)")));
    }
    Ok(())
}

#[derive(Args)]
pub struct SysInfoArgs {
    #[command(flatten)]
    pub connect: Connect,
    /// Print JSON instead of YAML-like text (errors as JSON too).
    #[arg(long, env = "DGZOO_JSON", value_parser = clap::builder::BoolishValueParser::new())]
    pub json: bool,
}

pub fn sys_info(a: SysInfoArgs) -> dgzoo::Result<()> {
    let info = if a.connect.host == "@local" && a.connect.zoo.is_none() { dgzoo::zoo::local_system_info() } else { a.connect.open()?.system_info().clone() };
    if a.json {
        println!("{}", serde_json::to_string_pretty(&info).unwrap_or_default());
        return Ok(());
    }
    // The layout of `degirum sys-info` (YAML).
    println!("Devices:");
    for (dev, entries) in info["Devices"].as_object().into_iter().flatten() {
        println!("  {dev}:");
        for e in entries.as_array().into_iter().flatten() {
            let mut first = true;
            for (k, v) in e.as_object().into_iter().flatten() {
                let lead = if first { "  - " } else { "    " };
                first = false;
                let shown = match v {
                    Value::String(s) => s.clone(),
                    other => other.to_string(),
                };
                println!("  {lead}'{k}': {shown}");
            }
        }
    }
    println!("Software Version: {}", info["Software Version"].as_str().unwrap_or_default());
    for (rt, why) in dgzoo::runtime::load_errors() {
        eprintln!("note: runtime {rt} is not available: {why}");
    }
    Ok(())
}
