//! Download progress bars (indicatif) on stderr, hidden when stderr is not a terminal.
use std::io::IsTerminal;

/// A byte-count bar labelled `label`; hidden (drawing nothing) unless stderr is a terminal.
pub fn bar(label: &str) -> indicatif::ProgressBar {
    if !std::io::stderr().is_terminal() {
        return indicatif::ProgressBar::hidden();
    }
    let pb = indicatif::ProgressBar::new(0);
    pb.set_style(style());
    pb.set_message(label.to_string());
    pb
}

/// The style every download bar uses.
pub fn style() -> indicatif::ProgressStyle {
    indicatif::ProgressStyle::with_template("{msg:50!} {bar:30} {bytes:>10}/{total_bytes:10}").unwrap_or_else(|_| indicatif::ProgressStyle::default_bar())
}

/// A `(received, total)` callback driving `pb`.
pub fn callback(pb: &indicatif::ProgressBar) -> impl FnMut(u64, u64) + '_ {
    move |got, total| {
        pb.set_length(total);
        pb.set_position(got);
    }
}
