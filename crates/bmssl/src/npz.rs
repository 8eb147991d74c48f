//! Reading NumPy `.npz` archives (a zip of `.npy` arrays), enough for the PyTorch reference's
//! golden files: little-endian `f8`, `f4`, `i8`, `i4` and `u1` arrays in C order.

use crate::{Error, Result};
use std::collections::BTreeMap;
use std::io::Read;
use std::path::Path;

/// One array: its shape and its values widened to f64 (integers and bytes are exact in f64).
#[derive(Clone, Debug, PartialEq)]
pub struct NpyArray {
    pub shape: Vec<usize>,
    pub data: Vec<f64>,
}

/// Reads every array of an `.npz` file, keyed by name without the `.npy` suffix.
pub fn read_npz(path: &Path) -> Result<BTreeMap<String, NpyArray>> {
    let file = std::fs::File::open(path).map_err(|e| Error::io(path, e))?;
    let mut zip = zip::ZipArchive::new(file)
        .map_err(|e| Error::corrupt(path, format!("not an npz (zip) archive: {e}")))?;
    let mut out = BTreeMap::new();
    for i in 0..zip.len() {
        let mut entry = zip
            .by_index(i)
            .map_err(|e| Error::corrupt(path, format!("zip entry {i}: {e}")))?;
        let name = entry.name().trim_end_matches(".npy").to_string();
        let mut bytes = Vec::with_capacity(entry.size() as usize);
        entry
            .read_to_end(&mut bytes)
            .map_err(|e| Error::corrupt(path, format!("{name}: {e}")))?;
        let arr = parse_npy(&bytes)
            .map_err(|reason| Error::corrupt(path, format!("array {name}: {reason}")))?;
        out.insert(name, arr);
    }
    Ok(out)
}

/// Parses one `.npy` blob.
pub fn parse_npy(bytes: &[u8]) -> std::result::Result<NpyArray, String> {
    if bytes.len() < 10 || &bytes[..6] != b"\x93NUMPY" {
        return Err("missing .npy magic".into());
    }
    let (header_len, start) = match bytes[6] {
        1 => (u16::from_le_bytes([bytes[8], bytes[9]]) as usize, 10),
        2 | 3 if bytes.len() >= 12 => (
            u32::from_le_bytes([bytes[8], bytes[9], bytes[10], bytes[11]]) as usize,
            12,
        ),
        v => return Err(format!("unsupported .npy version {v}")),
    };
    let header = bytes
        .get(start..start + header_len)
        .ok_or("truncated header")?;
    let header = std::str::from_utf8(header).map_err(|_| "header is not text")?;
    let field = |key: &str| -> std::result::Result<&str, String> {
        let at = header
            .find(&format!("'{key}'"))
            .ok_or(format!("header has no '{key}'"))?;
        Ok(header[at + key.len() + 2..]
            .trim_start()
            .trim_start_matches(':')
            .trim_start())
    };
    let descr = field("descr")?;
    let descr = descr
        .trim_start_matches('\'')
        .split('\'')
        .next()
        .unwrap_or("");
    if field("fortran_order")?.starts_with("True") {
        return Err("Fortran-ordered arrays are not supported".into());
    }
    let shape_text = field("shape")?;
    let shape_text = shape_text
        .trim_start_matches('(')
        .split(')')
        .next()
        .unwrap_or("");
    let shape = shape_text
        .split(',')
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .map(|s| {
            s.parse::<usize>()
                .map_err(|_| format!("bad shape entry {s:?}"))
        })
        .collect::<std::result::Result<Vec<_>, _>>()?;
    let count: usize = shape.iter().product();
    let body = &bytes[start + header_len..];
    let width = match descr {
        "<f8" | "<i8" => 8,
        "<f4" | "<i4" => 4,
        "|u1" | "|i1" | "|b1" => 1,
        other => return Err(format!("unsupported dtype {other}")),
    };
    if body.len() < count * width {
        return Err(format!(
            "truncated data: {} bytes for {count} values of {width} bytes",
            body.len()
        ));
    }
    let data = body[..count * width]
        .chunks_exact(width)
        .map(|c| match descr {
            "<f8" => f64::from_le_bytes(c.try_into().unwrap()),
            "<i8" => i64::from_le_bytes(c.try_into().unwrap()) as f64,
            "<f4" => f32::from_le_bytes(c.try_into().unwrap()) as f64,
            "<i4" => i32::from_le_bytes(c.try_into().unwrap()) as f64,
            "|i1" => c[0] as i8 as f64,
            _ => c[0] as f64,
        })
        .collect();
    Ok(NpyArray { shape, data })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn npy(descr: &str, shape: &str, body: &[u8]) -> Vec<u8> {
        let mut header =
            format!("{{'descr': '{descr}', 'fortran_order': False, 'shape': {shape}, }}");
        while (10 + header.len() + 1) % 64 != 0 {
            header.push(' ');
        }
        header.push('\n');
        let mut v = b"\x93NUMPY\x01\x00".to_vec();
        v.extend((header.len() as u16).to_le_bytes());
        v.extend(header.as_bytes());
        v.extend(body);
        v
    }

    #[test]
    fn reads_float_int_and_scalar_arrays() {
        let body: Vec<u8> = [1.5f64, -2.0]
            .iter()
            .flat_map(|v| v.to_le_bytes())
            .collect();
        assert_eq!(
            parse_npy(&npy("<f8", "(2,)", &body)).unwrap(),
            NpyArray {
                shape: vec![2],
                data: vec![1.5, -2.0]
            }
        );
        let body: Vec<u8> = [3i64, 4, 5, 6]
            .iter()
            .flat_map(|v| v.to_le_bytes())
            .collect();
        assert_eq!(
            parse_npy(&npy("<i8", "(2, 2)", &body)).unwrap().data,
            vec![3.0, 4.0, 5.0, 6.0]
        );
        let a = parse_npy(&npy("<f8", "()", &7.25f64.to_le_bytes())).unwrap();
        assert_eq!((a.shape.len(), a.data[0]), (0, 7.25));
    }

    #[test]
    fn truncated_or_foreign_data_is_an_error() {
        assert!(parse_npy(b"hello world").is_err());
        let body = 1.0f64.to_le_bytes();
        let err = parse_npy(&npy("<f8", "(3,)", &body)).unwrap_err();
        assert!(err.contains("truncated"), "{err}");
        assert!(parse_npy(&npy("<c16", "(1,)", &[0; 16]))
            .unwrap_err()
            .contains("dtype"));
    }
}
