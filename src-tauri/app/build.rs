//! Build script: lets tauri-build read the shared `tauri.conf.json` at the repository root (not
//! beside this crate, where the Tauri CLI would look), check the icons and generate the app
//! context that `tauri::generate_context!` in `desktop.rs` embeds.

fn main() {
    // `tauri::include_image!` in `tray.rs` cannot tell cargo which file it read.
    for icon in ["tray.png", "tray-stopped.png", "tray-error.png"] {
        println!("cargo:rerun-if-changed=../../icons/{icon}");
    }
    // The path is relative to this crate, as is the one given to `generate_context!`.
    let attributes = tauri_build::Attributes::new().config_path("../../tauri.conf.json");
    if let Err(error) = tauri_build::try_build(attributes) {
        #[allow(clippy::print_stderr, reason = "cargo shows a build script's stderr")]
        {
            eprintln!("error: tauri-build failed: {error:#}");
        }
        std::process::exit(1);
    }
}
