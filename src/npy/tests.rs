//! Unit tests of the numpy files: round trips, headers, hostile files and archives.

use super::*;
use tract_hir::internal::tract_ndarray::arr2;
use tract_hir::internal::{f16, Tensor};

#[test]
fn round_trip_all_types() {
    let tensors = vec![
        Tensor::from(arr2(&[[1.5f32, -2.0], [3.25, 4.0]])),
        Tensor::from(arr2(&[[1.5f64, -2.0, 7.0]])),
        Tensor::from(arr2(&[[1i64], [-2]])),
        Tensor::from(arr2(&[[1i32, 2, 3]])),
        Tensor::from(arr2(&[[f16::from_f32(0.5), f16::from_f32(-1.0)]])),
        Tensor::from(arr2(&[[true, false]])),
        Tensor::from(arr2(&[[7u8, 8]])),
        tensor0(3.0f32),
    ];
    for t in tensors {
        let bytes = npy_bytes(&t).unwrap();
        assert_eq!(bytes.len() % 64, (t.len() * t.datum_type().size_of()) % 64);
        let back = parse_npy(&bytes, "t.npy").unwrap();
        assert_eq!(back, t);
    }
}

fn tensor0<T: tract_hir::internal::Datum>(v: T) -> Tensor {
    Tensor::from(tract_hir::internal::tract_ndarray::arr0(v))
}

fn npy_with_header(header: &str, data: &[u8]) -> Vec<u8> {
    let mut h = header.to_string();
    while !(10 + h.len() + 1).is_multiple_of(64) {
        h.push(' ');
    }
    h.push('\n');
    let mut out = MAGIC.to_vec();
    out.extend_from_slice(&[1, 0]);
    out.extend_from_slice(&(h.len() as u16).to_le_bytes());
    out.extend_from_slice(h.as_bytes());
    out.extend_from_slice(data);
    out
}

#[test]
fn fortran_order_and_big_endian() {
    // [[1, 2, 3], [4, 5, 6]] stored column-major: 1 4 2 5 3 6.
    let data: Vec<u8> = [1f32, 4., 2., 5., 3., 6.]
        .iter()
        .flat_map(|v| v.to_be_bytes())
        .collect();
    let bytes = npy_with_header(
        "{'descr': '>f4', 'fortran_order': True, 'shape': (2, 3), }",
        &data,
    );
    let t = parse_npy(&bytes, "f.npy").unwrap();
    assert_eq!(t, Tensor::from(arr2(&[[1f32, 2., 3.], [4., 5., 6.]])));
}

/// The file reader fills the tensor in place; a 3-D Fortran-order, big-endian file read
/// from disk must come out as numpy would load it.
#[test]
fn read_npy_fortran_3d_from_a_file() {
    let (d0, d1, d2) = (2, 3, 4);
    let mut stored = vec![0i32; d0 * d1 * d2];
    for i in 0..d0 {
        for j in 0..d1 {
            for k in 0..d2 {
                stored[i + d0 * j + d0 * d1 * k] = (100 * i + 10 * j + k) as i32;
            }
        }
    }
    let data: Vec<u8> = stored.iter().flat_map(|v| v.to_be_bytes()).collect();
    let bytes = npy_with_header(
        "{'descr': '>i4', 'fortran_order': True, 'shape': (2, 3, 4), }",
        &data,
    );
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("f.npy");
    std::fs::write(&path, &bytes).unwrap();
    let t = read_npy(&path).unwrap();
    let want =
        ndarray::Array3::from_shape_fn((d0, d1, d2), |(i, j, k)| (100 * i + 10 * j + k) as i32);
    assert_eq!(t, Tensor::from(want));
    assert_eq!(t, parse_npy(&bytes, "f.npy").unwrap());
}

#[test]
fn huge_shape_is_refused_before_allocating() {
    let bytes = npy_with_header(
        "{'descr': '<f4', 'fortran_order': False, 'shape': (1099511627776, 3), }",
        &[0u8; 48],
    );
    let err = parse_npy(&bytes, "big.npy").unwrap_err().to_string();
    assert!(err.contains("big.npy"), "{err}");
    assert!(err.contains("(1099511627776, 3)"), "{err}");
    assert!(err.contains("48 bytes"), "{err}");
    let overflow = npy_with_header(
        "{'descr': '<f8', 'fortran_order': False, 'shape': (18446744073709551615, 2), }",
        &[0u8; 16],
    );
    let err = parse_npy(&overflow, "o.npy").unwrap_err().to_string();
    assert!(err.contains("overflows"), "{err}");
}

#[test]
fn bad_headers_are_errors() {
    for bytes in [
        &b""[..],
        b"hello",
        b"\x93NUMPY\x01\x00\xff\x00{",
        b"\x93NUMPY\x09\x00\x10\x00{}",
        &npy_with_header(
            "{'descr': '<c8', 'fortran_order': False, 'shape': (1,), }",
            &[0; 8],
        ),
        &npy_with_header("{'descr': '<f4', 'shape': (1,), }", &[0; 4]),
        &npy_with_header(
            "{'descr': '<f4', 'fortran_order': False, 'shape': (-1,), }",
            &[0; 4],
        ),
        &npy_with_header(
            "{'descr': [('a', '<f4')], 'fortran_order': False, 'shape': (1,), }",
            &[0; 4],
        ),
        &npy_with_header(
            "{'descr': '<f4', 'fortran_order': False, 'shape': (1,)",
            &[0; 4],
        ),
        &npy_with_header(
            "{'descr': '|b1', 'fortran_order': False, 'shape': (1,), }",
            &[7],
        ),
    ] {
        assert!(
            parse_npy(bytes, "x.npy").is_err(),
            "{:?}",
            String::from_utf8_lossy(bytes)
        );
    }
}

#[test]
fn python2_long_suffix_and_empty_shape() {
    let bytes = npy_with_header(
        "{'descr': '<i8', 'fortran_order': False, 'shape': (2L,), }",
        &[0; 16],
    );
    assert_eq!(parse_npy(&bytes, "x.npy").unwrap().shape(), &[2]);
    let bytes = npy_with_header(
        "{'descr': '<i8', 'fortran_order': False, 'shape': (0, 3), }",
        &[],
    );
    assert_eq!(parse_npy(&bytes, "x.npy").unwrap().shape(), &[0, 3]);
}

/// `np.savez(f, a=np.arange(3, dtype=np.int64), b=np.float32(2.5))` as numpy 2.4 writes it
/// (ZIP64 extra fields in the local headers).
const NUMPY_NPZ: &[u8] = b"\x50\x4b\x03\x04\x2d\x00\x00\x00\x00\x00\x00\x00\x21\x00\xf7\x40\x12\xea\xff\xff\xff\xff\xff\xff\
    \xff\xff\x05\x00\x14\x00\x61\x2e\x6e\x70\x79\x01\x00\x10\x00\x98\x00\x00\x00\x00\x00\x00\x00\x98\
    \x00\x00\x00\x00\x00\x00\x00\x93\x4e\x55\x4d\x50\x59\x01\x00\x76\x00\x7b\x27\x64\x65\x73\x63\x72\
    \x27\x3a\x20\x27\x3c\x69\x38\x27\x2c\x20\x27\x66\x6f\x72\x74\x72\x61\x6e\x5f\x6f\x72\x64\x65\x72\
    \x27\x3a\x20\x46\x61\x6c\x73\x65\x2c\x20\x27\x73\x68\x61\x70\x65\x27\x3a\x20\x28\x33\x2c\x29\x2c\
    \x20\x7d\x20\x20\x20\x20\x20\x20\x20\x20\x20\x20\x20\x20\x20\x20\x20\x20\x20\x20\x20\x20\x20\x20\
    \x20\x20\x20\x20\x20\x20\x20\x20\x20\x20\x20\x20\x20\x20\x20\x20\x20\x20\x20\x20\x20\x20\x20\x20\
    \x20\x20\x20\x20\x20\x20\x20\x20\x20\x20\x20\x20\x20\x20\x0a\x00\x00\x00\x00\x00\x00\x00\x00\x01\
    \x00\x00\x00\x00\x00\x00\x00\x02\x00\x00\x00\x00\x00\x00\x00\x50\x4b\x03\x04\x2d\x00\x00\x00\x00\
    \x00\x00\x00\x21\x00\x64\x8c\x22\xc3\xff\xff\xff\xff\xff\xff\xff\xff\x05\x00\x14\x00\x62\x2e\x6e\
    \x70\x79\x01\x00\x10\x00\x84\x00\x00\x00\x00\x00\x00\x00\x84\x00\x00\x00\x00\x00\x00\x00\x93\x4e\
    \x55\x4d\x50\x59\x01\x00\x76\x00\x7b\x27\x64\x65\x73\x63\x72\x27\x3a\x20\x27\x3c\x66\x34\x27\x2c\
    \x20\x27\x66\x6f\x72\x74\x72\x61\x6e\x5f\x6f\x72\x64\x65\x72\x27\x3a\x20\x46\x61\x6c\x73\x65\x2c\
    \x20\x27\x73\x68\x61\x70\x65\x27\x3a\x20\x28\x29\x2c\x20\x7d\x20\x20\x20\x20\x20\x20\x20\x20\x20\
    \x20\x20\x20\x20\x20\x20\x20\x20\x20\x20\x20\x20\x20\x20\x20\x20\x20\x20\x20\x20\x20\x20\x20\x20\
    \x20\x20\x20\x20\x20\x20\x20\x20\x20\x20\x20\x20\x20\x20\x20\x20\x20\x20\x20\x20\x20\x20\x20\x20\
    \x20\x20\x20\x20\x20\x0a\x00\x00\x20\x40\x50\x4b\x01\x02\x2d\x03\x2d\x00\x00\x00\x00\x00\x00\x00\
    \x21\x00\xf7\x40\x12\xea\x98\x00\x00\x00\x98\x00\x00\x00\x05\x00\x00\x00\x00\x00\x00\x00\x00\x00\
    \x00\x00\x80\x01\x00\x00\x00\x00\x61\x2e\x6e\x70\x79\x50\x4b\x01\x02\x2d\x03\x2d\x00\x00\x00\x00\
    \x00\x00\x00\x21\x00\x64\x8c\x22\xc3\x84\x00\x00\x00\x84\x00\x00\x00\x05\x00\x00\x00\x00\x00\x00\
    \x00\x00\x00\x00\x00\x80\x01\xcf\x00\x00\x00\x62\x2e\x6e\x70\x79\x50\x4b\x05\x06\x00\x00\x00\x00\
    \x02\x00\x02\x00\x66\x00\x00\x00\x8a\x01\x00\x00\x00\x00";

#[test]
fn numpy_written_npz() {
    let bytes = NUMPY_NPZ;
    let arrays = parse_npz(bytes, "n.npz").unwrap();
    let names: Vec<_> = arrays.iter().map(|(n, _)| n.as_str()).collect();
    assert_eq!(names, ["a", "b"]);
    assert_eq!(
        arrays[0].1,
        Tensor::from(tract_hir::internal::tract_ndarray::arr1(&[0i64, 1, 2]))
    );
    assert_eq!(arrays[1].1, tensor0(2.5f32));
}

#[test]
fn mutated_files_never_panic() {
    let npy = npy_bytes(&Tensor::from(arr2(&[[1.5f32, -2.0], [3.25, 4.0]]))).unwrap();
    for (bytes, npz) in [(NUMPY_NPZ, true), (&npy[..], false)] {
        for pos in 0..bytes.len() {
            for value in [0x00, 0x7F, 0xFF] {
                let mut m = bytes.to_vec();
                m[pos] = value;
                // Ok or Err, but never a panic or a huge allocation.
                let _ = if npz {
                    parse_npz(&m, "m.npz").map(|_| ())
                } else {
                    parse_npy(&m, "m.npy").map(|_| ())
                };
            }
        }
    }
}

#[test]
fn corrupt_npz_is_an_error() {
    let bytes = NUMPY_NPZ;
    let mut bad = bytes.to_vec();
    // Flip a data byte of the first member: the CRC check must catch it.
    let pos = bad.windows(6).position(|w| w == MAGIC).unwrap() + 130;
    bad[pos] ^= 0xFF;
    assert!(parse_npz(&bad, "n.npz").is_err());
    for cut in [0, 10, bytes.len() / 2, bytes.len() - 1] {
        assert!(parse_npz(&bytes[..cut], "n.npz").is_err());
    }
}

// --------------------------------------------------------------------------------------
// .npz archives written with the zip crate's writer

/// A ZIP archive of `members`, each stored or deflated.
fn zip_bytes(members: &[(&str, &[u8])], deflate: bool) -> Vec<u8> {
    use std::io::Write as _;
    let method = if deflate {
        ::zip::CompressionMethod::Deflated
    } else {
        ::zip::CompressionMethod::Stored
    };
    let options = ::zip::write::SimpleFileOptions::default().compression_method(method);
    let mut w = ::zip::ZipWriter::new(std::io::Cursor::new(Vec::new()));
    for (name, data) in members {
        w.start_file(*name, options).unwrap();
        w.write_all(data).unwrap();
    }
    w.finish().unwrap().into_inner()
}

fn sample() -> (Tensor, Tensor) {
    let a = Tensor::from(ndarray::Array2::from_shape_fn((64, 3), |(i, j)| {
        (i * 3 + j) as f32 * 0.5
    }));
    let b = Tensor::from(tract_hir::internal::tract_ndarray::arr1(&[1i64, -2, 3]));
    (a, b)
}

#[test]
fn stored_and_deflated_npz() {
    let (a, b) = sample();
    let (na, nb) = (npy_bytes(&a).unwrap(), npy_bytes(&b).unwrap());
    for deflate in [false, true] {
        let bytes = zip_bytes(&[("a.npy", &na), ("b", &nb)], deflate);
        if deflate {
            assert!(bytes.len() < na.len(), "the zeros-rich array compresses");
        }
        let arrays = parse_npz(&bytes, "x.npz").unwrap();
        assert_eq!(
            arrays,
            vec![("a".to_string(), a.clone()), ("b".into(), b.clone())]
        );
        // The file reader takes the same path.
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("x.npz");
        std::fs::write(&path, &bytes).unwrap();
        assert_eq!(read_npz(&path).unwrap(), arrays);
    }
}

/// Every occurrence of `sig` in `bytes` gets `value` written `at` bytes after it.
fn patch(bytes: &mut [u8], sig: u32, at: usize, value: &[u8]) {
    let sig = sig.to_le_bytes();
    let spots: Vec<usize> = (0..bytes.len() - 4)
        .filter(|&i| bytes[i..i + 4] == sig)
        .collect();
    assert!(!spots.is_empty());
    for i in spots {
        bytes[i + at..i + at + value.len()].copy_from_slice(value);
    }
}
const LOCAL: u32 = 0x0403_4b50;
const CENTRAL: u32 = 0x0201_4b50;

/// A member whose entry declares a small array but whose deflate stream inflates to a
/// megabyte more: refused once the declared size is read, naming archive and member.
#[test]
fn member_inflating_past_its_declared_size_is_refused() {
    let small = npy_bytes(&Tensor::from(ndarray::Array1::<f32>::zeros(16))).unwrap();
    let mut data = small.clone();
    data.extend(std::iter::repeat_n(0u8, 1 << 20));
    let mut bytes = zip_bytes(&[("x.npy", &data)], true);
    assert!(bytes.len() < 4096, "{}", bytes.len());
    let declared = (small.len() as u32).to_le_bytes();
    patch(&mut bytes, LOCAL, 22, &declared);
    patch(&mut bytes, CENTRAL, 24, &declared);
    let err = parse_npz(&bytes, "bomb.npz").unwrap_err().to_string();
    assert!(err.contains("bomb.npz/x.npy"), "{err}");
    // The zip crate's own size check, or ours one byte past the declared size.
    assert!(
        err.contains("larger than its declared") || err.contains("more data than"),
        "{err}"
    );
}

/// Declared sizes no DEFLATE stream of that length can reach, sizes that disagree for a
/// stored member, compression methods numpy never writes: refused before decompressing.
#[test]
fn implausible_entries_are_refused_up_front() {
    let (a, _) = sample();
    let na = npy_bytes(&a).unwrap();
    let mut huge = zip_bytes(&[("a.npy", &na)], true);
    patch(&mut huge, LOCAL, 22, &0x7FFF_FFFFu32.to_le_bytes());
    patch(&mut huge, CENTRAL, 24, &0x7FFF_FFFFu32.to_le_bytes());
    let err = parse_npz(&huge, "huge.npz").unwrap_err().to_string();
    assert!(err.contains("huge.npz/a.npy"), "{err}");
    assert!(err.contains("more than DEFLATE can expand to"), "{err}");

    let mut stored = zip_bytes(&[("a.npy", &na)], false);
    patch(&mut stored, LOCAL, 22, &1u32.to_le_bytes());
    patch(&mut stored, CENTRAL, 24, &1u32.to_le_bytes());
    let err = parse_npz(&stored, "s.npz").unwrap_err().to_string();
    assert!(
        err.contains("s.npz/a.npy") && err.contains("sizes disagree"),
        "{err}"
    );

    let mut bzip = zip_bytes(&[("a.npy", &na)], true);
    patch(&mut bzip, LOCAL, 8, &12u16.to_le_bytes());
    patch(&mut bzip, CENTRAL, 10, &12u16.to_le_bytes());
    let err = parse_npz(&bzip, "b.npz").unwrap_err().to_string();
    assert!(
        err.contains("b.npz/a.npy") && err.contains("not supported"),
        "{err}"
    );
}

#[test]
fn duplicate_arrays_and_too_many_members_are_refused() {
    let (_, b) = sample();
    let nb = npy_bytes(&b).unwrap();
    let bytes = zip_bytes(&[("b.npy", &nb), ("b", &nb)], false);
    let err = parse_npz(&bytes, "d.npz").unwrap_err().to_string();
    assert!(err.contains("d.npz"), "{err}");
    assert!(err.contains("'b.npy' and 'b' both hold array 'b'"), "{err}");

    let names: Vec<String> = (0..=NPZ_MAX_MEMBERS).map(|i| format!("{i}")).collect();
    let members: Vec<(&str, &[u8])> = names.iter().map(|n| (n.as_str(), &[][..])).collect();
    let bytes = zip_bytes(&members, false);
    let err = parse_npz(&bytes, "many.npz").unwrap_err().to_string();
    assert!(
        err.contains("many.npz") && err.contains("10001 members"),
        "{err}"
    );
}

#[test]
fn corrupt_deflated_member_is_an_error() {
    let (a, _) = sample();
    let bytes = zip_bytes(&[("a.npy", &npy_bytes(&a).unwrap())], true);
    // Every byte of the deflate stream flipped in turn: an error (CRC, inflate or size),
    // or the same array, never a panic or another array.
    let start = 30 + "a.npy".len();
    let end = bytes
        .windows(4)
        .position(|w| w == CENTRAL.to_le_bytes())
        .unwrap();
    for pos in start..end {
        let mut bad = bytes.clone();
        bad[pos] ^= 0x55;
        match parse_npz(&bad, "c.npz") {
            Err(e) => assert!(e.to_string().contains("c.npz"), "{e}"),
            Ok(arrays) => assert_eq!(arrays[0].1, a, "byte {pos}"),
        }
    }
}
