//! `list`, `info`, `predict`, `sys-info`: the zoo manager from the command line.
use clap::Args;
use dgzoo::zoo::filter::Filters;
use dgzoo::zoo::Zoo;
use serde_json::{json, Value};

/// Where to connect: the same three arguments as `dg_connect`.
#[derive(Args, Clone)]
pub struct Connect {
    /// Inference host: @local, @cloud, or an AI server address (host[:port], http://host:port).
    #[arg(long, default_value = "@local")]
    pub host: String,
    /// Zoo: a local directory or model JSON, a cloud zoo URL, or "" for an AI server's own zoo.
    /// Defaults to the demo zoo shipped with dgzoo.
    #[arg(long)]
    pub zoo: Option<String>,
    /// Cloud token.
    #[arg(long, default_value = "")]
    pub token: String,
}

impl Connect {
    pub fn open(&self) -> dgzoo::Result<Zoo> {
        let zoo = match &self.zoo {
            Some(z) => z.clone(),
            None => demo_zoo(),
        };
        Zoo::connect(&self.host, &zoo, &self.token)
    }
}

/// The demo zoo: `$DGZOO_DEMO_ZOO`, else `demo/zoo` of the source checkout this binary was built from.
fn demo_zoo() -> String {
    std::env::var("DGZOO_DEMO_ZOO").unwrap_or_else(|_| concat!(env!("CARGO_MANIFEST_DIR"), "/demo/zoo").to_string())
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
}

pub fn list(a: ListArgs) -> dgzoo::Result<()> {
    let zoo = a.connect.open()?;
    let filters = a.filter.filters()?;
    if a.full {
        let m: serde_json::Map<String, Value> = zoo.list_full(&filters).into_iter().collect();
        println!("{}", serde_json::to_string_pretty(&m).unwrap_or_default());
    } else {
        for n in zoo.list_names(&filters) {
            println!("{n}");
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
    /// Image files (JPEG, PNG, BMP). Default: the demo image shipped with dgzoo.
    pub images: Vec<String>,
}

pub fn predict(a: PredictArgs) -> dgzoo::Result<()> {
    let zoo = a.connect.open()?;
    let model_name = match a.model {
        Some(m) => m,
        None => zoo
            .list_names(&Filters::default())
            .into_iter()
            .next()
            .ok_or_else(|| dgzoo::Error::not_found("the zoo has no model that can run on this system"))?,
    };
    let props = match &a.props {
        Some(p) => serde_json::from_str(p).map_err(|e| dgzoo::Error::invalid(format!("--props is not valid JSON: {e}")))?,
        None => Value::Null,
    };
    let model = zoo.load_model(&model_name, &props)?;
    let images = if a.images.is_empty() { vec![concat!(env!("CARGO_MANIFEST_DIR"), "/demo/cat.png").to_string()] } else { a.images };
    for path in images {
        let bytes = std::fs::read(&path).map_err(|e| dgzoo::Error::io(format!("cannot read '{path}': {e}")))?;
        let r = dgzoo::inference::predict(&model, &[dgzoo::inference::Input::Bytes(&bytes)])?;
        println!("{}", json!({"model": model_name, "image": path, "results": r.results}));
    }
    Ok(())
}

#[derive(Args)]
pub struct SysInfoArgs {
    #[command(flatten)]
    pub connect: Connect,
    /// Print JSON instead of YAML-like text.
    #[arg(long)]
    pub json: bool,
}

pub fn sys_info(a: SysInfoArgs) -> dgzoo::Result<()> {
    let info = if a.connect.host == "@local" && a.connect.zoo.is_none() {
        dgzoo::zoo::local_system_info()
    } else {
        a.connect.open()?.system_info().clone()
    };
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
