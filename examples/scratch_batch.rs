use dgzoo::inference::{predict, Input};
use dgzoo::pipeline::{predict_batch, OwnedInput};
fn main() {
    let zoo = dgzoo::zoo::Zoo::connect("@local", "/work/shared/zoo/", "").unwrap();
    let img = std::fs::read("/work/shared/zoo/images/car_416.jpg").unwrap();
    for name in std::env::args().skip(1) {
        let m = zoo.load_model(&name, &serde_json::Value::Null).unwrap();
        for _ in 0..5 { predict(&m, &[Input::Bytes(&img)]).unwrap(); }
        let mut v: Vec<f64> = (0..30).map(|_| { let t = std::time::Instant::now(); predict(&m, &[Input::Bytes(&img)]).unwrap(); t.elapsed().as_secs_f64()*1000.0 }).collect();
        v.sort_by(|a,b| a.partial_cmp(b).unwrap());
        let frames: Vec<Vec<OwnedInput>> = (0..64).map(|_| vec![OwnedInput::Bytes(img.clone())]).collect();
        predict_batch(&m, frames.clone()).unwrap();
        let t = std::time::Instant::now();
        predict_batch(&m, frames).unwrap();
        println!("{name}: latency {:.2} ms, batch {:.1} fps", v[15], 64.0 / t.elapsed().as_secs_f64());
    }
}
