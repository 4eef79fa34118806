use dgzoo::inference::{predict, Input};
fn main() {
    let zoo = dgzoo::zoo::Zoo::connect("@local", "/work/shared/zoo/", "").unwrap();
    for name in std::env::args().skip(1) {
        let m = zoo.load_model(&name, &serde_json::json!({"measure_time": true})).unwrap();
        let img = std::fs::read("/work/shared/zoo/images/car_416.jpg").unwrap();
        for _ in 0..5 { predict(&m, &[Input::Bytes(&img)]).unwrap(); }
        let mut pre = vec![]; let mut inf = vec![]; let mut post = vec![]; let mut tot = vec![];
        for _ in 0..30 {
            let t = std::time::Instant::now();
            let r = predict(&m, &[Input::Bytes(&img)]).unwrap();
            tot.push(t.elapsed().as_secs_f64()*1000.0);
            let tm = r.timing.unwrap();
            pre.push(tm["CorePreprocessDuration_ms"].as_f64().unwrap()); inf.push(tm["CoreInferenceDuration_ms"].as_f64().unwrap()); post.push(tm["CorePostprocessDuration_ms"].as_f64().unwrap());
        }
        let med = |mut v: Vec<f64>| { v.sort_by(|a,b| a.partial_cmp(b).unwrap()); v[v.len()/2] };
        println!("{name}: total {:.2} pre {:.2} infer {:.2} post {:.2}", med(tot), med(pre), med(inf), med(post));
    }
}
