#include "data/idx_reader.h"

#include <zlib.h>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "common/file_util.h"
#include "common/status_macros.h"

namespace retort::data {
namespace {

constexpr uint8_t kUnsignedByteType = 0x08;
constexpr int kMaxDims = 4;
// Fashion-MNIST's largest file holds 47 M elements; refuse absurd headers
// before allocating.
constexpr int64_t kMaxElements = int64_t{1} << 32;

absl::StatusOr<std::string> Gunzip(const std::string& path, const std::string& compressed) {
  z_stream stream{};
  // 16 + MAX_WBITS: expect a gzip header.
  if (inflateInit2(&stream, 16 + MAX_WBITS) != Z_OK) {
    return absl::InternalError("zlib initialisation failed");
  }
  stream.next_in = reinterpret_cast<Bytef*>(const_cast<char*>(compressed.data()));
  stream.avail_in = static_cast<uInt>(compressed.size());
  std::string out;
  char buffer[1 << 16];
  int rc = Z_OK;
  while (rc != Z_STREAM_END) {
    stream.next_out = reinterpret_cast<Bytef*>(buffer);
    stream.avail_out = sizeof(buffer);
    rc = inflate(&stream, Z_NO_FLUSH);
    if (rc != Z_OK && rc != Z_STREAM_END) {
      inflateEnd(&stream);
      std::string why = rc == Z_BUF_ERROR ? "the compressed data ends early"
                                          : (stream.msg ? stream.msg : "corrupt data");
      return absl::DataLossError(
          absl::StrCat(path, ": not a valid gzip file (", why,
                       "); re-install it (apt-get install --reinstall dataset-fashion-mnist) "
                       "or point --data_dir at an intact copy"));
    }
    out.append(buffer, sizeof(buffer) - stream.avail_out);
  }
  inflateEnd(&stream);
  return out;
}

uint32_t BigEndian32(const std::string& bytes, size_t offset) {
  auto b = [&](size_t i) { return static_cast<uint32_t>(static_cast<uint8_t>(bytes[offset + i])); };
  return (b(0) << 24) | (b(1) << 16) | (b(2) << 8) | b(3);
}

}  // namespace

absl::StatusOr<IdxArray> ParseIdx(const std::string& name, const std::string& bytes) {
  if (bytes.size() < 4) {
    return absl::DataLossError(
        absl::StrCat(name, ": IDX header truncated (", bytes.size(), " bytes, need at least 4)"));
  }
  if (bytes[0] != 0 || bytes[1] != 0) {
    return absl::DataLossError(
        absl::StrCat(name,
                     ": bad IDX magic number (first two bytes must be zero); this is "
                     "not an IDX file"));
  }
  uint8_t type = static_cast<uint8_t>(bytes[2]);
  if (type != kUnsignedByteType) {
    return absl::InvalidArgumentError(absl::StrCat(name, ": IDX element type 0x", absl::Hex(type),
                                                   " is not supported (only 0x08, unsigned byte)"));
  }
  int num_dims = static_cast<uint8_t>(bytes[3]);
  if (num_dims < 1 || num_dims > kMaxDims) {
    return absl::DataLossError(absl::StrCat(name, ": IDX header declares ", num_dims,
                                            " dimensions (expected 1 to ", kMaxDims, ")"));
  }
  size_t header = 4 + 4 * static_cast<size_t>(num_dims);
  if (bytes.size() < header) {
    return absl::DataLossError(
        absl::StrCat(name, ": IDX header truncated (", bytes.size(), " bytes, need ", header, ")"));
  }
  IdxArray array;
  int64_t elements = 1;
  for (int d = 0; d < num_dims; ++d) {
    int64_t dim = BigEndian32(bytes, 4 + 4 * d);
    if (dim == 0) {
      return absl::DataLossError(absl::StrCat(name, ": dimension ", d, " is zero"));
    }
    array.dims.push_back(dim);
    if (dim > kMaxElements / elements) {
      return absl::DataLossError(absl::StrCat(name, ": IDX header declares more than ",
                                              kMaxElements, " elements; the header is corrupt"));
    }
    elements *= dim;
  }
  int64_t payload = static_cast<int64_t>(bytes.size() - header);
  if (payload != elements) {
    return absl::DataLossError(absl::StrCat(
        name, ": IDX data length ", payload, " bytes does not match the header (", elements,
        " elements); the file is ", payload < elements ? "truncated" : "followed by extra bytes"));
  }
  array.values.assign(bytes.begin() + static_cast<std::ptrdiff_t>(header), bytes.end());
  return array;
}

absl::StatusOr<IdxArray> ReadIdxFile(const std::string& path) {
  absl::StatusOr<std::string> raw = ReadFile(path);
  if (!raw.ok()) {
    if (absl::IsNotFound(raw.status())) {
      return absl::NotFoundError(
          absl::StrCat("data file ", path,
                       " does not exist; install it with `apt-get install dataset-fashion-mnist` "
                       "or set --data_dir"));
    }
    return raw.status();
  }
  if (absl::EndsWith(path, ".gz")) {
    RETORT_ASSIGN_OR_RETURN(std::string plain, Gunzip(path, *raw));
    return ParseIdx(path, plain);
  }
  return ParseIdx(path, *raw);
}

}  // namespace retort::data
