//! `slipway-hook pre-receive|post-receive`, or installed under those names.

use slipway_hook::wire::Phase;

fn main() {
    let arg0 = std::env::args().next().unwrap_or_default();
    let name = std::path::Path::new(&arg0)
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let phase_word = if name == "pre-receive" || name == "post-receive" {
        name
    } else {
        std::env::args().nth(1).unwrap_or_default()
    };
    let phase = match phase_word.as_str() {
        "pre-receive" => Phase::PreReceive,
        "post-receive" => Phase::PostReceive,
        _ => {
            eprintln!("usage: slipway-hook pre-receive|post-receive (git runs this; you do not)");
            std::process::exit(2);
        }
    };
    std::process::exit(slipway_hook::client::run(phase));
}
