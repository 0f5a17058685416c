// PNG (ISO/IEC 15948) encoding of 8-bit RGB rasters: one IHDR, one zlib IDAT
// with filter type 0 on every row, IEND.
#include <zlib.h>

#include "mmu/error.h"
#include "mmu/object_view.h"

namespace mmu {

namespace {

void put_u32(std::string* out, uint32_t v) {
  for (int shift = 24; shift >= 0; shift -= 8) out->push_back(static_cast<char>((v >> shift) & 0xff));
}

void put_chunk(std::string* out, const char type[4], const std::string& data) {
  put_u32(out, static_cast<uint32_t>(data.size()));
  const size_t start = out->size();
  out->append(type, 4);
  out->append(data);
  const uLong crc = crc32(0L, reinterpret_cast<const Bytef*>(out->data() + start), static_cast<uInt>(out->size() - start));
  put_u32(out, static_cast<uint32_t>(crc));
}

}  // namespace

std::string encode_png(const RgbImage& image) {
  if (image.width <= 0 || image.height <= 0 || image.rgb.size() != static_cast<size_t>(image.width * image.height * 3))
    throw InternalError("encode_png: the raster's size does not match its width and height");
  std::string raw;
  raw.reserve(static_cast<size_t>(image.height * (image.width * 3 + 1)));
  for (int64_t y = 0; y < image.height; ++y) {
    raw.push_back('\0');  // filter: none
    raw.append(reinterpret_cast<const char*>(&image.rgb[static_cast<size_t>(y * image.width * 3)]),
               static_cast<size_t>(image.width * 3));
  }
  // One deflate state per thread, reset per image: compress2 would allocate
  // and clear ~270 KB of state for each cutout, more work than the cutout's
  // own few KB. Run-length matches only (Z_RLE): sky noise has few longer
  // repeats, so on the demo's 160 px cutouts it is 30% faster than level 1's
  // string matching and 18% smaller (28.6 vs 35.0 KB); masked areas and
  // placeholders are runs.
  struct Deflater {
    z_stream z{};
    bool ready = deflateInit2(&z, 1, Z_DEFLATED, 15, 8, Z_RLE) == Z_OK;
    ~Deflater() {
      if (ready) deflateEnd(&z);
    }
  };
  thread_local Deflater deflater;
  z_stream& z = deflater.z;
  if (!deflater.ready || deflateReset(&z) != Z_OK) throw InternalError("encode_png: zlib could not start deflate");
  std::string packed(deflateBound(&z, static_cast<uLong>(raw.size())), '\0');
  z.next_in = reinterpret_cast<Bytef*>(&raw[0]);
  z.avail_in = static_cast<uInt>(raw.size());
  z.next_out = reinterpret_cast<Bytef*>(&packed[0]);
  z.avail_out = static_cast<uInt>(packed.size());
  if (deflate(&z, Z_FINISH) != Z_STREAM_END) throw InternalError("encode_png: zlib could not compress the image");
  packed.resize(z.total_out);

  std::string out("\x89PNG\r\n\x1a\n", 8);
  std::string header;
  put_u32(&header, static_cast<uint32_t>(image.width));
  put_u32(&header, static_cast<uint32_t>(image.height));
  header += std::string("\x08\x02\x00\x00\x00", 5);  // 8 bits, RGB, deflate, filter 0, no interlace
  put_chunk(&out, "IHDR", header);
  put_chunk(&out, "IDAT", packed);
  put_chunk(&out, "IEND", "");
  return out;
}

}  // namespace mmu
