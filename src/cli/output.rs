//! The `--output` folder and the file names of the outputs in it.

use std::collections::HashSet;
use std::path::Path;

use anyhow::{bail, Result};

/// Creates the `--output` folder (and its parents) unless it exists; a path that exists as
/// anything but a folder is refused by name.
pub fn create_dir(dir: &Path) -> Result<()> {
    match std::fs::metadata(dir) {
        Ok(m) if m.is_dir() => return Ok(()),
        Ok(_) => bail!(
            "--output {}: exists and is not a folder (outputs are written into a folder, \
             one <output name>.npy each)",
            dir.display()
        ),
        Err(_) => {}
    }
    if let Err(e) = std::fs::create_dir_all(dir) {
        bail!("--output {}: cannot create the folder ({e})", dir.display());
    }
    Ok(())
}

/// A file-system-safe stem for each output name: `[A-Za-z0-9._-]` kept, anything else `_`,
/// collisions (also ones differing only in case) disambiguated with `_1`, `_2`, ...
pub fn safe_names<'a>(names: impl IntoIterator<Item = &'a str>) -> Vec<String> {
    let mut taken: HashSet<String> = HashSet::new();
    let mut out = vec![];
    for (i, name) in names.into_iter().enumerate() {
        let mut base: String = name
            .chars()
            .map(|c| {
                if c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-') {
                    c
                } else {
                    '_'
                }
            })
            .collect();
        if base.is_empty() || base.chars().all(|c| c == '.') {
            base = format!("output_{i}");
        }
        let mut candidate = base.clone();
        let mut k = 1;
        while taken.contains(&candidate.to_ascii_lowercase()) {
            candidate = format!("{base}_{k}");
            k += 1;
        }
        taken.insert(candidate.to_ascii_lowercase());
        out.push(candidate);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names() {
        assert_eq!(
            safe_names(["Y", "out/h:0", "out_h_0", "", "y", "..", "a b"]),
            [
                "Y",
                "out_h_0",
                "out_h_0_1",
                "output_3",
                "y_1",
                "output_5",
                "a_b"
            ]
        );
    }
}
