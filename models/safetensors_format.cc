#include "models/safetensors_format.h"

#include <algorithm>
#include <cstring>
#include <limits>

#include <nlohmann/json.hpp>

#include "absl/strings/str_cat.h"

namespace retort::models {
namespace {

struct DtypeInfo {
  SafetensorsDtype dtype;
  absl::string_view name;
  int size;
};

constexpr DtypeInfo kDtypes[] = {
    {SafetensorsDtype::kF64, "F64", 8}, {SafetensorsDtype::kF32, "F32", 4},
    {SafetensorsDtype::kF16, "F16", 2}, {SafetensorsDtype::kBF16, "BF16", 2},
    {SafetensorsDtype::kI64, "I64", 8}, {SafetensorsDtype::kI32, "I32", 4},
    {SafetensorsDtype::kI16, "I16", 2}, {SafetensorsDtype::kI8, "I8", 1},
    {SafetensorsDtype::kU8, "U8", 1},   {SafetensorsDtype::kBool, "BOOL", 1},
};

const DtypeInfo& Info(SafetensorsDtype dtype) {
  for (const DtypeInfo& info : kDtypes) {
    if (info.dtype == dtype) return info;
  }
  return kDtypes[1];
}

absl::Status Bad(absl::string_view what) {
  return absl::DataLossError(absl::StrCat("not a valid safetensors file: ", what));
}

// a * b, false on overflow of uint64.
bool MulOk(uint64_t a, uint64_t b, uint64_t* out) {
  if (a != 0 && b > std::numeric_limits<uint64_t>::max() / a) return false;
  *out = a * b;
  return true;
}

}  // namespace

absl::StatusOr<SafetensorsDtype> ParseSafetensorsDtype(absl::string_view name) {
  for (const DtypeInfo& info : kDtypes) {
    if (info.name == name) return info.dtype;
  }
  return absl::InvalidArgumentError(
      absl::StrCat("unknown safetensors dtype '", name,
                   "' (supported: F64, F32, F16, BF16, I64, I32, I16, I8, U8, BOOL)"));
}

absl::string_view SafetensorsDtypeName(SafetensorsDtype dtype) { return Info(dtype).name; }
int SafetensorsDtypeSize(SafetensorsDtype dtype) { return Info(dtype).size; }

absl::StatusOr<SafetensorsIndex> ParseSafetensorsHeader(absl::string_view prefix,
                                                        uint64_t file_size) {
  if (file_size < 8 || prefix.size() < 8) {
    return Bad(
        absl::StrCat("the file has ", file_size, " bytes, fewer than the 8-byte header length"));
  }
  uint64_t header_size = 0;
  for (int i = 7; i >= 0; --i) {
    header_size = (header_size << 8) | static_cast<unsigned char>(prefix[static_cast<size_t>(i)]);
  }
  if (header_size > kMaxSafetensorsHeaderBytes) {
    return Bad(absl::StrCat("the header length ", header_size, " exceeds the limit of ",
                            kMaxSafetensorsHeaderBytes, " bytes"));
  }
  if (header_size > file_size - 8) {
    return Bad(absl::StrCat("the header claims ", header_size, " bytes but the file has only ",
                            file_size - 8, " after the length (truncated?)"));
  }
  if (prefix.size() < 8 + header_size) {
    return absl::InvalidArgumentError("ParseSafetensorsHeader needs the whole header in prefix");
  }
  const nlohmann::json header =
      nlohmann::json::parse(prefix.substr(8, header_size), nullptr, /*allow_exceptions=*/false);
  if (!header.is_object()) return Bad("the header is not a JSON object");

  SafetensorsIndex index;
  index.data_start = 8 + header_size;
  const uint64_t data_size = file_size - index.data_start;
  for (auto it = header.begin(); it != header.end(); ++it) {
    const std::string& name = it.key();
    const nlohmann::json& value = it.value();
    if (name == "__metadata__") {
      if (!value.is_object()) return Bad("__metadata__ is not an object");
      for (auto m = value.begin(); m != value.end(); ++m) {
        if (!m.value().is_string()) {
          return Bad(absl::StrCat("__metadata__ value of '", m.key(), "' is not a string"));
        }
        index.metadata[m.key()] = m.value().get<std::string>();
      }
      continue;
    }
    const std::string where = absl::StrCat("tensor '", name, "': ");
    if (!value.is_object()) return Bad(where + "entry is not an object");
    if (!value.contains("dtype") || !value["dtype"].is_string()) {
      return Bad(where + "no dtype string");
    }
    SafetensorsEntry entry;
    entry.name = name;
    absl::StatusOr<SafetensorsDtype> dtype =
        ParseSafetensorsDtype(value["dtype"].get<std::string>());
    if (!dtype.ok()) return Bad(where + std::string(dtype.status().message()));
    entry.dtype = *dtype;
    if (!value.contains("shape") || !value["shape"].is_array())
      return Bad(where + "no shape array");
    uint64_t elements = 1;
    for (const nlohmann::json& d : value["shape"]) {
      if (!d.is_number_unsigned() && !(d.is_number_integer() && d.get<int64_t>() >= 0)) {
        return Bad(where + "shape has an entry that is not a non-negative integer");
      }
      const uint64_t extent = d.get<uint64_t>();
      if (extent > static_cast<uint64_t>(std::numeric_limits<int64_t>::max()) ||
          !MulOk(elements, extent, &elements)) {
        return Bad(where + "shape overflows");
      }
      entry.shape.push_back(static_cast<int64_t>(extent));
    }
    const nlohmann::json& offsets =
        value.contains("data_offsets") ? value["data_offsets"] : nlohmann::json();
    if (!offsets.is_array() || offsets.size() != 2 || !offsets[0].is_number_unsigned() ||
        !offsets[1].is_number_unsigned()) {
      return Bad(where + "data_offsets is not [begin, end] of non-negative integers");
    }
    entry.begin = offsets[0].get<uint64_t>();
    entry.end = offsets[1].get<uint64_t>();
    if (entry.begin > entry.end || entry.end > data_size) {
      return Bad(absl::StrCat(where, "data_offsets [", entry.begin, ", ", entry.end,
                              "] fall outside the ", data_size, " data bytes"));
    }
    uint64_t bytes = 0;
    if (!MulOk(elements, static_cast<uint64_t>(SafetensorsDtypeSize(entry.dtype)), &bytes) ||
        bytes != entry.end - entry.begin) {
      return Bad(absl::StrCat(where, "shape and dtype need ", bytes,
                              " bytes but data_offsets span ", entry.end - entry.begin));
    }
    index.tensors.push_back(std::move(entry));
  }
  std::sort(index.tensors.begin(), index.tensors.end(),
            [](const SafetensorsEntry& a, const SafetensorsEntry& b) {
              return a.begin != b.begin ? a.begin < b.begin : a.end < b.end;
            });
  uint64_t next = 0;
  for (const SafetensorsEntry& t : index.tensors) {
    if (t.begin != next) {
      return Bad(absl::StrCat(
          "tensor '", t.name, "' starts at byte ", t.begin, " of the data but ",
          t.begin < next ? "the previous tensor ends at " : "there is a hole from ", next));
    }
    next = t.end;
  }
  if (next != data_size) {
    return Bad(absl::StrCat("the tensors cover ", next, " data bytes but the file has ", data_size,
                            " (truncated, or trailing bytes)"));
  }
  return index;
}

absl::StatusOr<std::string> SerializeSafetensorsHeader(
    std::vector<SafetensorsEntry>& tensors, const std::map<std::string, std::string>& metadata) {
  nlohmann::ordered_json header = nlohmann::ordered_json::object();
  if (!metadata.empty()) header["__metadata__"] = metadata;
  uint64_t offset = 0;
  for (SafetensorsEntry& t : tensors) {
    if (t.name.empty() || t.name == "__metadata__" || header.contains(t.name)) {
      return absl::InvalidArgumentError(
          absl::StrCat("tensor name '", t.name, "' is empty, reserved or repeated"));
    }
    uint64_t elements = 1;
    for (int64_t d : t.shape) {
      if (d < 0 || !MulOk(elements, static_cast<uint64_t>(d), &elements)) {
        return absl::InvalidArgumentError(absl::StrCat("tensor '", t.name, "': bad shape"));
      }
    }
    t.begin = offset;
    t.end = offset + elements * static_cast<uint64_t>(SafetensorsDtypeSize(t.dtype));
    offset = t.end;
    header[t.name] = {{"dtype", SafetensorsDtypeName(t.dtype)},
                      {"shape", t.shape},
                      {"data_offsets", {t.begin, t.end}}};
  }
  std::string json = header.dump();
  json.append((8 - json.size() % 8) % 8, ' ');
  std::string out(8, '\0');
  uint64_t n = json.size();
  for (int i = 0; i < 8; ++i)
    out[static_cast<size_t>(i)] = static_cast<char>((n >> (8 * i)) & 0xff);
  return out + json;
}

}  // namespace retort::models
