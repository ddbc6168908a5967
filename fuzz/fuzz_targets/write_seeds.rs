//! Write the seed inputs of every target to `seeds/<target>/` (run from `fuzz/`).

fn main() -> std::io::Result<()> {
    use xmppd_actors::fuzzing;
    for (target, seeds) in [
        ("stream_parser", fuzzing::stream_seeds()),
        ("stanza", fuzzing::stanza_seeds()),
        ("sasl", fuzzing::sasl_seeds()),
        ("record_layer", fuzzing::record_layer_seeds()),
    ] {
        let dir = std::path::Path::new("seeds").join(target);
        std::fs::create_dir_all(&dir)?;
        for (i, s) in seeds.iter().enumerate() {
            std::fs::write(dir.join(format!("seed-{i:02}")), s)?;
        }
        println!("{}: {} seeds", dir.display(), seeds.len());
    }
    Ok(())
}
