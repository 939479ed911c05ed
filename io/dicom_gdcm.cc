// DICOM pixel data through GDCM (step 2 of io/dicom.h), behind a C interface.
//
// The bytes were checked by dicom_scan first (every length within the file, nesting bounded,
// sizes within the limits), so GDCM never allocates for a length the file does not hold.
// GDCM reads from memory through a read-only streambuf; its trace output is switched off
// once; every exception (std::bad_alloc included) is caught here and becomes an rb_error
// naming the file and the transfer syntax. Only the first frame is kept.
#include "dicom.h"
extern "C" {
#include "rb_log.h"
}

#include <gdcmAttribute.h>
#include <gdcmDataSet.h>
#include <gdcmGlobal.h>
#include <gdcmImage.h>
#include <gdcmImageReader.h>
#include <gdcmSequenceOfItems.h>
#include <gdcmTrace.h>

#include <cstdlib>
#include <cstring>
#include <istream>
#include <mutex>
#include <streambuf>
#include <string>

namespace {

// A read-only, seekable view of caller-owned bytes.
class membuf : public std::streambuf {
  public:
    membuf(const uint8_t *p, size_t n)
    {
        char *b = const_cast<char *>(reinterpret_cast<const char *>(p));
        setg(b, b, b + n);
    }

  protected:
    pos_type seekoff(off_type off, std::ios_base::seekdir dir,
                     std::ios_base::openmode which) override
    {
        if (!(which & std::ios_base::in))
            return pos_type(off_type(-1));
        off_type base = dir == std::ios_base::beg   ? 0
                        : dir == std::ios_base::cur ? gptr() - eback()
                                                    : egptr() - eback();
        off_type np = base + off;
        if (np < 0 || np > egptr() - eback())
            return pos_type(off_type(-1));
        setg(eback(), eback() + np, egptr());
        return pos_type(np);
    }
    pos_type seekpos(pos_type pos, std::ios_base::openmode which) override
    {
        return seekoff(off_type(pos), std::ios_base::beg, which);
    }
};

std::once_flag gdcm_once;

void gdcm_init()
{
    gdcm::Trace::SetDebug(false);
    gdcm::Trace::SetWarning(false);
    gdcm::Trace::SetError(false);
    gdcm::Global::GetInstance(); // dictionaries, built once before any thread reads
}

// The value of a tag as text (trailing padding removed), or "" when absent/empty.
std::string tag_text(const gdcm::DataSet &ds, uint16_t g, uint16_t e)
{
    gdcm::Tag t(g, e);
    if (!ds.FindDataElement(t))
        return std::string();
    const gdcm::DataElement &de = ds.GetDataElement(t);
    const gdcm::ByteValue *bv = de.GetByteValue();
    if (!bv || !bv->GetPointer())
        return std::string();
    std::string s(bv->GetPointer(), bv->GetLength());
    while (!s.empty() && (s.back() == ' ' || s.back() == '\0'))
        s.pop_back();
    size_t b = 0;
    while (b < s.size() && s[b] == ' ')
        b++;
    return s.substr(b);
}

// First value of a decimal string (DS/IS, values separated by '\'); 0 when none.
int first_number(const std::string &s, double *v)
{
    if (s.empty())
        return 0;
    const char *p = s.c_str();
    char *end;
    double d = std::strtod(p, &end);
    if (end == p)
        return 0;
    *v = d;
    return 1;
}

// US/SS value i of a binary element in the file's byte order.
int us_value(const gdcm::DataSet &ds, const gdcm::Tag &t, int i, int be, uint32_t *v)
{
    if (!ds.FindDataElement(t))
        return 0;
    const gdcm::ByteValue *bv = ds.GetDataElement(t).GetByteValue();
    if (!bv || bv->GetLength() < (uint32_t)(2 * i + 2))
        return 0;
    const uint8_t *b = reinterpret_cast<const uint8_t *>(bv->GetPointer()) + 2 * i;
    *v = be ? (uint32_t)(b[0] << 8 | b[1]) : (uint32_t)(b[1] << 8 | b[0]);
    return 1;
}

// The first item of the VOI LUT Sequence (0028,3010), when well formed.
void read_voi_lut(const gdcm::DataSet &ds, int be, dicom_pixels *px)
{
    gdcm::Tag seq(0x0028, 0x3010);
    if (!ds.FindDataElement(seq))
        return;
    gdcm::SmartPointer<gdcm::SequenceOfItems> sq = ds.GetDataElement(seq).GetValueAsSQ();
    if (!sq || sq->GetNumberOfItems() < 1)
        return;
    const gdcm::DataSet &it = sq->GetItem(1).GetNestedDataSet();
    uint32_t n, first, bits;
    gdcm::Tag desc(0x0028, 0x3002), data(0x0028, 0x3006);
    if (!us_value(it, desc, 0, be, &n) || !us_value(it, desc, 1, be, &first) ||
        !us_value(it, desc, 2, be, &bits))
        return;
    if (n == 0)
        n = 65536;
    if (bits < 8 || bits > 16 || !it.FindDataElement(data))
        return;
    const gdcm::ByteValue *bv = it.GetDataElement(data).GetByteValue();
    if (!bv || bv->GetLength() < 2 * n)
        return;
    px->voi_lut = static_cast<uint16_t *>(std::malloc(sizeof(uint16_t) * n));
    if (!px->voi_lut)
        return;
    const uint8_t *b = reinterpret_cast<const uint8_t *>(bv->GetPointer());
    for (uint32_t i = 0; i < n; i++)
        px->voi_lut[i] = be ? (uint16_t)(b[2 * i] << 8 | b[2 * i + 1])
                            : (uint16_t)(b[2 * i + 1] << 8 | b[2 * i]);
    // the first value mapped is US or SS as the pixel representation says
    px->voi_lut_first = px->pixel_representation && first >= 32768 ? (int64_t)first - 65536
                                                                    : (int64_t)first;
    px->voi_lut_bits = (int)bits;
    px->voi_lut_n = (int)n;
    px->has_voi_lut = 1;
}

// For its JPEG-family transfer syntaxes GDCM first tries the codec of the BitsAllocated
// sample size, and libjpeg prints that attempt's failure to stderr itself ("Unsupported JPEG
// data precision 12", twice per 12-bit JPEG file) before GDCM retries with the stream's
// precision; the error reaches radbatch through the return value anyway. While one of these
// files is read and decoded, stderr is silenced (radbatch's own lines still get through).
struct quiet_jpeg_codecs {
    bool on;
    explicit quiet_jpeg_codecs(const char *ts) : on(std::strncmp(ts, "1.2.840.10008.1.2.4.", 20) == 0)
    {
        if (on)
            rb_stderr_silence_begin();
    }
    ~quiet_jpeg_codecs()
    {
        if (on)
            rb_stderr_silence_end();
    }
};

int read_impl(const uint8_t *buf, size_t len, const dicom_header *h, dicom_pixels *px,
              const char *path, rb_error *err)
{
    const char *ts = h->transfer_syntax;
    quiet_jpeg_codecs quiet(ts);
    membuf mb(buf, len);
    std::istream is(&mb);
    gdcm::ImageReader reader;
    reader.SetStream(is);
    if (!reader.Read())
        return rb_fail(err, "the file is damaged; re-copy it from the archive",
                       "%s: GDCM cannot read this DICOM file (transfer syntax %s, %s)", path, ts,
                       dicom_ts_name(ts));
    const gdcm::Image &im = reader.GetImage();
    const gdcm::DataSet &ds = reader.GetFile().GetDataSet();
    const gdcm::PixelFormat &pf = im.GetPixelFormat();
    px->rows = (int)im.GetRows();
    px->columns = (int)im.GetColumns();
    px->samples = pf.GetSamplesPerPixel();
    px->bits_allocated = pf.GetBitsAllocated();
    px->bits_stored = pf.GetBitsStored();
    px->high_bit = pf.GetHighBit();
    px->pixel_representation = pf.GetPixelRepresentation();
    px->frames = im.GetNumberOfDimensions() > 2 ? (int)im.GetDimension(2) : 1;
    snprintf(px->transfer_syntax, sizeof px->transfer_syntax, "%s", ts);
    // GDCM's own view must agree with what dicom_scan checked against the limits
    if ((int64_t)px->rows != h->rows || (int64_t)px->columns != h->columns ||
        (px->samples != 1 && px->samples != 3) ||
        (px->bits_allocated != 8 && px->bits_allocated != 16) || px->frames < 1 ||
        (h->frames > 0 && px->frames != h->frames))
        return rb_fail(err, "the file is damaged",
                       "%s: inconsistent DICOM image module (Rows/Columns/SamplesPerPixel/"
                       "BitsAllocated/NumberOfFrames)",
                       path);
    if (px->bits_stored < 1 || px->bits_stored > px->bits_allocated)
        return rb_fail(err, "the file is damaged",
                       "%s: invalid DICOM BitsStored (0028,0101) = %d for BitsAllocated %d", path,
                       px->bits_stored, px->bits_allocated);

    unsigned long total = im.GetBufferLength();
    size_t frame = (size_t)px->rows * px->columns * px->samples * (px->bits_allocated / 8);
    if (total < frame || total / frame < (unsigned long)px->frames)
        return rb_fail(err, "the file is damaged",
                       "%s: DICOM pixel buffer of %lu bytes for %d frame(s) of %zu bytes", path,
                       total, px->frames, frame);
    // all frames (GDCM decodes them all); the first is at the start, kept without a copy
    px->data = static_cast<uint8_t *>(std::malloc(total));
    if (!px->data)
        return rb_fail(err, NULL, "%s: out of memory for DICOM pixel data of %lu bytes", path,
                       total);
    if (!im.GetBuffer(reinterpret_cast<char *>(px->data)))
        return rb_fail(err, "the file is damaged, or re-export it with another transfer syntax",
                       "%s: cannot decode DICOM pixel data (7FE0,0010) (transfer syntax %s, %s)",
                       path, ts, dicom_ts_name(ts));
    // after decoding: a JPEG codec may have turned YBR into RGB
    const char *pi = gdcm::PhotometricInterpretation::GetPIString(im.GetPhotometricInterpretation());
    snprintf(px->photometric, sizeof px->photometric, "%s", pi ? pi : "");
    for (size_t n = std::strlen(px->photometric); n > 0 && px->photometric[n - 1] == ' ';)
        px->photometric[--n] = 0;
    px->planar = (int)im.GetPlanarConfiguration();

    px->slope = 1;
    px->intercept = 0;
    double v;
    if (first_number(tag_text(ds, 0x0028, 0x1053), &v) && v != 0)
        px->slope = v;
    if (first_number(tag_text(ds, 0x0028, 0x1052), &v))
        px->intercept = v;
    double c, w;
    if (first_number(tag_text(ds, 0x0028, 0x1050), &c) &&
        first_number(tag_text(ds, 0x0028, 0x1051), &w) && w >= 1) {
        px->has_window = 1;
        px->window_center = c;
        px->window_width = w;
    }
    std::string fn = tag_text(ds, 0x0028, 0x1056);
    size_t bs = fn.find('\\');
    if (bs != std::string::npos)
        fn.resize(bs);
    for (char ch : fn) // a defined term: anything else is treated as LINEAR
        if (!((ch >= 'A' && ch <= 'Z') || ch == '_')) {
            fn.clear();
            break;
        }
    snprintf(px->voi_function, sizeof px->voi_function, "%s", fn.empty() ? "LINEAR" : fn.c_str());
    read_voi_lut(ds, h->big_endian, px);
    return 0;
}

} // namespace

extern "C" int dicom_gdcm_read(const uint8_t *buf, size_t len, const dicom_header *h,
                               dicom_pixels *px, const char *path, rb_error *err)
{
    std::memset(px, 0, sizeof *px);
    int rc;
    try {
        std::call_once(gdcm_once, gdcm_init);
        rc = read_impl(buf, len, h, px, path, err);
    } catch (const std::bad_alloc &) {
        rc = rb_fail(err, "free some memory or lower the image size limits",
                     "%s: out of memory decoding DICOM (transfer syntax %s, %s)", path,
                     h->transfer_syntax, dicom_ts_name(h->transfer_syntax));
    } catch (const std::exception &ex) {
        rc = rb_fail(err, "the file is damaged; re-copy it from the archive",
                     "%s: GDCM failed on this DICOM file (transfer syntax %s, %s): %s", path,
                     h->transfer_syntax, dicom_ts_name(h->transfer_syntax), ex.what());
    } catch (...) {
        rc = rb_fail(err, "the file is damaged; re-copy it from the archive",
                     "%s: GDCM failed on this DICOM file (transfer syntax %s, %s)", path,
                     h->transfer_syntax, dicom_ts_name(h->transfer_syntax));
    }
    if (rc < 0)
        dicom_pixels_free(px);
    return rc;
}
