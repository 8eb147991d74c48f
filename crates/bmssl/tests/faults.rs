//! Issue 11, library-level faults: failed writes name their path once and leave nothing behind,
//! decoding limits refuse huge images and zip bombs, a corrupt zip entry is named.

use bmssl::data::omniglot::{Omniglot, OmniglotOptions};
use std::io::Write;

fn zip_with(path: &std::path::Path, name: &str, bytes: &[u8]) {
    let mut w = zip::ZipWriter::new(std::fs::File::create(path).unwrap());
    let opts = zip::write::SimpleFileOptions::default()
        .compression_method(zip::CompressionMethod::Deflated);
    w.start_file(name, opts).unwrap();
    w.write_all(bytes).unwrap();
    w.finish().unwrap();
}

#[test]
fn a_write_into_a_missing_directory_fails_naming_the_path_with_the_os_error_once() {
    let t = tempfile::tempdir().unwrap();
    let path = t.path().join("gone").join("step-0000002.safetensors");
    let err = bmssl::io::write_atomic(&path, b"data").unwrap_err();
    let m = err.to_string();
    assert!(
        m.contains("gone/step-0000002.safetensors") && m.contains("os error 2"),
        "{m}"
    );
    // The OS error is in the message, not repeated as a source (the CLI prints the chain).
    assert!(std::error::Error::source(&err).is_none());
}

#[test]
fn a_failed_atomic_write_keeps_the_old_file_and_leaves_no_temporary() {
    let t = tempfile::tempdir().unwrap();
    let good = t.path().join("metrics.jsonl");
    bmssl::io::write_atomic(&good, b"old\n").unwrap();
    // The rename cannot replace a non-empty directory: the write fails after the data was written.
    let blocked = t.path().join("blocked");
    std::fs::create_dir_all(blocked.join("inside")).unwrap();
    let err = bmssl::io::write_atomic(&blocked, b"new")
        .unwrap_err()
        .to_string();
    assert!(err.contains("blocked"), "{err}");
    assert_eq!(std::fs::read(&good).unwrap(), b"old\n");
    let names: Vec<String> = std::fs::read_dir(t.path())
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    assert!(names.iter().all(|n| !n.contains(".tmp-")), "{names:?}");
}

/// A PNG claiming `w x h` grey pixels, valid CRCs, and a few bytes of data.
fn huge_png_header(w: u32, h: u32) -> Vec<u8> {
    let mut ihdr = b"IHDR".to_vec();
    ihdr.extend(w.to_be_bytes());
    ihdr.extend(h.to_be_bytes());
    ihdr.extend([8, 0, 0, 0, 0]);
    let mut png = b"\x89PNG\r\n\x1a\n".to_vec();
    png.extend(13u32.to_be_bytes());
    png.extend(&ihdr);
    png.extend(crc32fast::hash(&ihdr).to_be_bytes());
    for (kind, data) in [(&b"IDAT"[..], &b"\x78\x9c\x63\x00\x00"[..]), (b"IEND", b"")] {
        let chunk: Vec<u8> = kind.iter().chain(data).copied().collect();
        png.extend((data.len() as u32).to_be_bytes());
        png.extend(&chunk);
        png.extend(crc32fast::hash(&chunk).to_be_bytes());
    }
    png
}

#[test]
fn a_huge_png_in_a_zip_is_refused_naming_the_entry_and_the_limit() {
    let t = tempfile::tempdir().unwrap();
    zip_with(
        &t.path().join("images_background.zip"),
        "images_background/Latin/character01/huge.png",
        &huge_png_header(100_000, 20),
    );
    zip_with(
        &t.path().join("images_evaluation.zip"),
        "images_evaluation/Latin/character02/huge.png",
        &huge_png_header(20, 20),
    );
    let err = Omniglot::load(t.path(), &OmniglotOptions::default())
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("Latin/character01/huge.png")
            && err.contains(
                "100000x20 pixels is over the decoding limit (16384x16384 pixels, 512 MiB)"
            ),
        "{err}"
    );
}

#[test]
fn a_zip_bomb_entry_is_refused() {
    let t = tempfile::tempdir().unwrap();
    // 65 MiB of zeros deflate to ~64 KiB.
    zip_with(
        &t.path().join("images_background.zip"),
        "images_background/Latin/character01/bomb.png",
        &vec![0u8; 65 << 20],
    );
    let err = Omniglot::load(t.path(), &OmniglotOptions::default())
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("bomb.png") && err.contains("larger than 64 MiB; refusing it"),
        "{err}"
    );
}
