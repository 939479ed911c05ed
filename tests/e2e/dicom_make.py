"""Make DICOM test files from a bundled sample JPEG, and the pixels each should decode to.

usage: dicom_make.py <sample.jpeg> <outdir>

Writes <outdir>/<name> (no extension, as PACS stores them) and <outdir>/<name>.expected.npy:
the 8-bit image radbatch must produce, computed from pydicom's decoding of the same file
(pixel_array, apply_modality_lut, apply_voi_lut / apply_windowing) and the mapping
docs/dicom.md documents (window output range -> 0..255, percentile window, MONOCHROME1
inverted). Compressed copies are made afterwards by dicom_decode.sh with dcmtk and GDCM.
"""
import sys

import numpy as np
from PIL import Image
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.pixels import apply_modality_lut, apply_voi_lut
from pydicom.sequence import Sequence
from pydicom.uid import ExplicitVRLittleEndian, ImplicitVRLittleEndian, generate_uid

src, out = sys.argv[1], sys.argv[2]
rgb = np.asarray(Image.open(src).convert("RGB"), dtype=np.uint8)
gray = np.asarray(Image.open(src).convert("L"), dtype=np.uint8)
H, W = gray.shape
yy, xx = np.mgrid[0:H, 0:W]
# a 12-bit "CR" image: the sample spread over 0..4095 plus a small deterministic texture
cr12 = (gray.astype(np.int32) * 16 + (xx + 3 * yy) % 16).astype(np.uint16)


def dataset(px, photometric, bits_stored, signed=False, ts=ExplicitVRLittleEndian, **tags):
    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = "1.2.840.10008.5.1.4.1.1.1.1"  # DX for presentation
    meta.MediaStorageSOPInstanceUID = generate_uid()
    meta.TransferSyntaxUID = ts
    ds = Dataset()
    ds.file_meta = meta
    ds.SOPClassUID = meta.MediaStorageSOPClassUID
    ds.SOPInstanceUID = meta.MediaStorageSOPInstanceUID
    ds.StudyInstanceUID = generate_uid()
    ds.SeriesInstanceUID = generate_uid()
    ds.Modality = "DX"
    ds.PatientID = "TEST"
    frames = px.shape[0] if px.ndim == 4 or (px.ndim == 3 and photometric.startswith("MONO")) else 1
    spp = 3 if not photometric.startswith("MONO") else 1
    ds.SamplesPerPixel = spp
    ds.PhotometricInterpretation = photometric
    ds.Rows, ds.Columns = H, W
    if frames > 1:
        ds.NumberOfFrames = frames
    if spp == 3:
        ds.PlanarConfiguration = tags.pop("PlanarConfiguration", 0)
    ds.BitsAllocated = 8 if px.dtype.itemsize == 1 else 16
    ds.BitsStored = bits_stored
    ds.HighBit = bits_stored - 1
    ds.PixelRepresentation = 1 if signed else 0
    for k, v in tags.items():
        setattr(ds, k, v)
    ds.PixelData = np.ascontiguousarray(px).tobytes()
    return ds


def to8(y, lo, hi):
    return np.clip(np.floor((y - lo) / (hi - lo) * 255.0 + 0.5), 0, 255).astype(np.uint8)


def expected(ds):
    a = ds.pixel_array
    if a.ndim == 3 and ds.SamplesPerPixel == 1:
        a = a[0]  # first frame
    if ds.SamplesPerPixel == 3:  # pydicom 3 gives YBR_FULL as RGB already
        return a.astype(np.uint8)
    m = apply_modality_lut(a, ds).astype(np.float64)
    if "WindowCenter" in ds:
        bs = ds.BitsStored
        if ds.PixelRepresentation:
            ymin, ymax = -(2 ** (bs - 1)), 2 ** (bs - 1) - 1
        else:
            ymin, ymax = 0, 2 ** bs - 1
        slope, icpt = float(ds.get("RescaleSlope", 1)), float(ds.get("RescaleIntercept", 0))
        ymin, ymax = ymin * slope + icpt, ymax * slope + icpt
        y = apply_voi_lut(m, ds, prefer_lut=False).astype(np.float64)  # VOI takes modality output
        e = to8(y, ymin, ymax)
    elif "VOILUTSequence" in ds:
        y = apply_voi_lut(m, ds).astype(np.float64)
        e = to8(y, 0, 2 ** ds.VOILUTSequence[0].LUTDescriptor[2] - 1)
    elif ds.BitsStored == 8 and ds.PixelRepresentation == 0 and "RescaleSlope" not in ds:
        e = a.astype(np.uint8)
    else:  # percentile window, nearest rank (docs/dicom.md)
        s = np.sort(m.ravel())
        n = s.size
        lo, hi = s[int(np.floor(0.005 * (n - 1)))], s[int(np.ceil(0.995 * (n - 1)))]
        e = to8(m, lo, hi) if hi > lo else np.zeros_like(m, dtype=np.uint8)
    if ds.PhotometricInterpretation == "MONOCHROME1":
        e = 255 - e
    return e


files = {}
files["mono2_u8"] = dataset(gray, "MONOCHROME2", 8)
files["cr12_window"] = dataset(cr12, "MONOCHROME2", 12, WindowCenter="2000", WindowWidth="3000")
files["cr12_implicit"] = dataset(cr12, "MONOCHROME2", 12, ts=ImplicitVRLittleEndian,
                                 WindowCenter="2000", WindowWidth="3000")
files["cr12_mono1_rescale"] = dataset(4095 - cr12, "MONOCHROME1", 12, RescaleSlope="2",
                                      RescaleIntercept="-1024", RescaleType="US")
files["cr12_percentile"] = dataset(cr12, "MONOCHROME2", 12)
s16 = (cr12.astype(np.int32) * 8 - 16000).astype(np.int16)
files["s16_window_exact"] = dataset(s16, "MONOCHROME2", 16, signed=True, RescaleSlope="1",
                                    RescaleIntercept="100", WindowCenter="0",
                                    WindowWidth="20000", VOILUTFunction="LINEAR_EXACT")
files["cr12_sigmoid"] = dataset(cr12, "MONOCHROME2", 12, WindowCenter="2048",
                                WindowWidth="2000", VOILUTFunction="SIGMOID")
# a VOI LUT: 4096 entries of 10 bits, a gamma curve
lut = Dataset()
lut.LUTDescriptor = [4096, 0, 10]
lut.add_new(0x00283006, "OW", np.array([round(1023 * (i / 4095) ** 0.6) for i in range(4096)],
                                       dtype="<u2").tobytes())
files["cr12_voilut"] = dataset(cr12, "MONOCHROME2", 12, VOILUTSequence=Sequence([lut]))
two = np.stack([cr12, 4095 - cr12])
files["multiframe"] = dataset(two, "MONOCHROME2", 12, WindowCenter="2000", WindowWidth="3000")
files["rgb"] = dataset(rgb, "RGB", 8)
files["rgb_planar"] = dataset(np.ascontiguousarray(rgb.transpose(2, 0, 1)), "RGB", 8,
                              PlanarConfiguration=1)
r, g, b = [rgb[..., i].astype(np.float64) for i in range(3)]
ybr = np.stack([0.299 * r + 0.587 * g + 0.114 * b,
                -0.168736 * r - 0.331264 * g + 0.5 * b + 128,
                0.5 * r - 0.418688 * g - 0.081312 * b + 128], axis=-1)
files["ybr_full"] = dataset(np.clip(np.round(ybr), 0, 255).astype(np.uint8), "YBR_FULL", 8)

for name, ds in files.items():
    path = f"{out}/{name}"
    ds.save_as(path, enforce_file_format=True)
    from pydicom import dcmread
    back = dcmread(path)
    np.save(path + ".expected.npy", expected(back))
print(" ".join(files))
