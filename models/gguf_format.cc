#include "models/gguf_format.h"

#include <algorithm>
#include <cstring>
#include <limits>
#include <set>

#include "absl/strings/str_cat.h"

namespace retort::models {
namespace {

constexpr char kMagic[4] = {'G', 'G', 'U', 'F'};

absl::Status Bad(absl::string_view what) {
  return absl::DataLossError(absl::StrCat("not a valid GGUF file: ", what));
}

bool MulOk(uint64_t a, uint64_t b, uint64_t* out) {
  if (a != 0 && b > std::numeric_limits<uint64_t>::max() / a) return false;
  *out = a * b;
  return true;
}

// Bytes of a scalar of `type`; 0 for strings and arrays, -1 for unknown.
int ScalarBytes(GgufValueType type) {
  switch (type) {
    case GgufValueType::kU8:
    case GgufValueType::kI8:
    case GgufValueType::kBool:
      return 1;
    case GgufValueType::kU16:
    case GgufValueType::kI16:
      return 2;
    case GgufValueType::kU32:
    case GgufValueType::kI32:
    case GgufValueType::kF32:
      return 4;
    case GgufValueType::kU64:
    case GgufValueType::kI64:
    case GgufValueType::kF64:
      return 8;
    case GgufValueType::kString:
    case GgufValueType::kArray:
      return 0;
  }
  return -1;
}

bool KnownTensorType(uint32_t t) { return t == 0 || t == 1 || t == 2 || t == 8 || t == 30; }

class Reader {
 public:
  explicit Reader(absl::string_view bytes) : bytes_(bytes) {}
  uint64_t pos() const { return pos_; }
  uint64_t left() const { return bytes_.size() - pos_; }

  absl::Status Raw(void* out, uint64_t n, absl::string_view what) {
    if (n > left()) {
      return Bad(absl::StrCat("truncated at byte ", pos_, " reading ", what, " (", n,
                              " bytes wanted, ", left(), " left)"));
    }
    std::memcpy(out, bytes_.data() + pos_, n);
    pos_ += n;
    return absl::OkStatus();
  }
  template <typename T>
  absl::Status Int(T* out, absl::string_view what) {
    return Raw(out, sizeof(T), what);
  }
  absl::Status String(std::string* out, absl::string_view what) {
    uint64_t n = 0;
    if (absl::Status s = Int(&n, what); !s.ok()) return s;
    if (n > left()) {
      return Bad(absl::StrCat(what, " claims ", n, " bytes but only ", left(), " are left"));
    }
    out->assign(bytes_.data() + pos_, n);
    pos_ += n;
    return absl::OkStatus();
  }

  absl::Status Value(GgufValueType type, GgufValue* out, bool in_array, absl::string_view key) {
    out->type = type;
    const int size = ScalarBytes(type);
    if (size < 0) {
      return Bad(absl::StrCat("metadata '", key, "' has unknown value type ",
                              static_cast<uint32_t>(type)));
    }
    switch (type) {
      case GgufValueType::kString:
        return String(&out->string, absl::StrCat("the string of '", key, "'"));
      case GgufValueType::kArray: {
        if (in_array) return Bad(absl::StrCat("metadata '", key, "' nests arrays"));
        uint32_t element = 0;
        uint64_t count = 0;
        if (absl::Status s = Int(&element, key); !s.ok()) return s;
        if (absl::Status s = Int(&count, key); !s.ok()) return s;
        out->array_type = static_cast<GgufValueType>(element);
        const int element_size = ScalarBytes(out->array_type);
        if (element_size < 0 || out->array_type == GgufValueType::kArray) {
          return Bad(absl::StrCat("metadata '", key, "' is an array of unknown type ", element));
        }
        // Every element takes at least one byte (a string its 8-byte length).
        const uint64_t least = out->array_type == GgufValueType::kString ? 8 : element_size;
        if (count > left() / least) {
          return Bad(absl::StrCat("metadata '", key, "' claims ", count,
                                  " elements, more than the file holds"));
        }
        if (count > kMaxGgufArrayElements - array_elements_) {
          return Bad(absl::StrCat("metadata arrays hold more than ", kMaxGgufArrayElements,
                                  " elements in all"));
        }
        array_elements_ += count;
        out->array.resize(count);
        for (uint64_t i = 0; i < count; ++i) {
          if (absl::Status s = Value(out->array_type, &out->array[i], true, key); !s.ok()) {
            return s;
          }
        }
        return absl::OkStatus();
      }
      case GgufValueType::kF32: {
        float v = 0;
        if (absl::Status s = Int(&v, key); !s.ok()) return s;
        out->real = v;
        return absl::OkStatus();
      }
      case GgufValueType::kF64:
        return Int(&out->real, key);
      default: {
        uint64_t raw = 0;
        if (absl::Status s = Raw(&raw, static_cast<uint64_t>(size), key); !s.ok()) return s;
        switch (type) {
          case GgufValueType::kI8:
            out->integer = static_cast<int8_t>(raw);
            break;
          case GgufValueType::kI16:
            out->integer = static_cast<int16_t>(raw);
            break;
          case GgufValueType::kI32:
            out->integer = static_cast<int32_t>(raw);
            break;
          default:
            out->integer = static_cast<int64_t>(raw);
            break;
        }
        return absl::OkStatus();
      }
    }
  }

 private:
  absl::string_view bytes_;
  uint64_t pos_ = 0;
  uint64_t array_elements_ = 0;
};

class Writer {
 public:
  std::string& out() { return out_; }
  template <typename T>
  void Int(T v) {
    out_.append(reinterpret_cast<const char*>(&v), sizeof(T));
  }
  void String(const std::string& s) {
    Int<uint64_t>(s.size());
    out_.append(s);
  }
  void Value(const GgufValue& v, bool with_type) {
    if (with_type) Int<uint32_t>(static_cast<uint32_t>(v.type));
    switch (v.type) {
      case GgufValueType::kString:
        String(v.string);
        return;
      case GgufValueType::kArray:
        Int<uint32_t>(static_cast<uint32_t>(v.array_type));
        Int<uint64_t>(v.array.size());
        for (const GgufValue& e : v.array) Value(e, false);
        return;
      case GgufValueType::kF32:
        Int<float>(static_cast<float>(v.real));
        return;
      case GgufValueType::kF64:
        Int<double>(v.real);
        return;
      default: {
        const uint64_t raw = static_cast<uint64_t>(v.integer);
        out_.append(reinterpret_cast<const char*>(&raw), ScalarBytes(v.type));
        return;
      }
    }
  }
  void PadTo(uint64_t alignment) {
    out_.append((alignment - out_.size() % alignment) % alignment, '\0');
  }

 private:
  std::string out_;
};

// Bytes of a tensor of `dims` and `type`, or an error naming it.
absl::StatusOr<uint64_t> TensorBytes(const std::string& name, const std::vector<uint64_t>& dims,
                                     GgmlType type) {
  const uint64_t block = static_cast<uint64_t>(GgmlBlockElements(type));
  if (dims.empty() || dims.size() > 4) {
    return Bad(absl::StrCat("tensor '", name, "' has ", dims.size(), " dimensions (1 to 4)"));
  }
  if (dims[0] % block != 0) {
    return Bad(absl::StrCat("tensor '", name, "': rows of ", dims[0], " elements are not whole ",
                            GgmlTypeName(type), " blocks of ", block));
  }
  uint64_t rows = 1;
  for (size_t i = 1; i < dims.size(); ++i) {
    if (!MulOk(rows, dims[i], &rows)) return Bad(absl::StrCat("tensor '", name, "' is too large"));
  }
  uint64_t bytes = 0;
  if (!MulOk(dims[0] / block, static_cast<uint64_t>(GgmlBlockBytes(type)), &bytes) ||
      !MulOk(bytes, rows, &bytes)) {
    return Bad(absl::StrCat("tensor '", name, "' is too large"));
  }
  return bytes;
}

}  // namespace

GgufValue GgufValue::U32(uint32_t v) {
  GgufValue out;
  out.type = GgufValueType::kU32;
  out.integer = v;
  return out;
}
GgufValue GgufValue::I32(int32_t v) {
  GgufValue out;
  out.type = GgufValueType::kI32;
  out.integer = v;
  return out;
}
GgufValue GgufValue::F32(float v) {
  GgufValue out;
  out.type = GgufValueType::kF32;
  out.real = v;
  return out;
}
GgufValue GgufValue::Bool(bool v) {
  GgufValue out;
  out.type = GgufValueType::kBool;
  out.integer = v ? 1 : 0;
  return out;
}
GgufValue GgufValue::String(std::string v) {
  GgufValue out;
  out.type = GgufValueType::kString;
  out.string = std::move(v);
  return out;
}
GgufValue GgufValue::Strings(const std::vector<std::string>& v) {
  GgufValue out;
  out.type = GgufValueType::kArray;
  out.array_type = GgufValueType::kString;
  for (const std::string& s : v) out.array.push_back(String(s));
  return out;
}
GgufValue GgufValue::F32s(const std::vector<float>& v) {
  GgufValue out;
  out.type = GgufValueType::kArray;
  out.array_type = GgufValueType::kF32;
  for (float f : v) out.array.push_back(F32(f));
  return out;
}
GgufValue GgufValue::I32s(const std::vector<int32_t>& v) {
  GgufValue out;
  out.type = GgufValueType::kArray;
  out.array_type = GgufValueType::kI32;
  for (int32_t i : v) out.array.push_back(I32(i));
  return out;
}

absl::string_view GgmlTypeName(GgmlType type) {
  switch (type) {
    case GgmlType::kF32:
      return "F32";
    case GgmlType::kF16:
      return "F16";
    case GgmlType::kQ4_0:
      return "Q4_0";
    case GgmlType::kQ8_0:
      return "Q8_0";
    case GgmlType::kBF16:
      return "BF16";
  }
  return "?";
}

int64_t GgmlBlockElements(GgmlType type) {
  return type == GgmlType::kQ4_0 || type == GgmlType::kQ8_0 ? 32 : 1;
}

int64_t GgmlBlockBytes(GgmlType type) {
  switch (type) {
    case GgmlType::kF32:
      return 4;
    case GgmlType::kF16:
    case GgmlType::kBF16:
      return 2;
    case GgmlType::kQ4_0:
      return 18;
    case GgmlType::kQ8_0:
      return 34;
  }
  return 0;
}

uint64_t GgufTensorInfo::elements() const {
  uint64_t n = 1;
  for (uint64_t d : dims) n *= d;
  return n;
}

const GgufValue* GgufFile::Find(absl::string_view key) const {
  for (const auto& [k, v] : metadata) {
    if (k == key) return &v;
  }
  return nullptr;
}

absl::StatusOr<GgufFile> ParseGguf(absl::string_view bytes) {
  Reader r(bytes);
  char magic[4];
  if (absl::Status s = r.Raw(magic, 4, "the magic"); !s.ok()) return s;
  if (std::memcmp(magic, kMagic, 4) != 0) return Bad("it does not start with \"GGUF\"");
  GgufFile file;
  if (absl::Status s = r.Int(&file.version, "the version"); !s.ok()) return s;
  if (file.version != 2 && file.version != 3) {
    return Bad(absl::StrCat("version ", file.version, " (this reader takes 2 and 3)"));
  }
  uint64_t tensor_count = 0, metadata_count = 0;
  if (absl::Status s = r.Int(&tensor_count, "the tensor count"); !s.ok()) return s;
  if (absl::Status s = r.Int(&metadata_count, "the metadata count"); !s.ok()) return s;
  if (tensor_count > kMaxGgufTensors || metadata_count > kMaxGgufMetadata) {
    return Bad(absl::StrCat("it claims ", tensor_count, " tensors and ", metadata_count,
                            " metadata entries (at most ", kMaxGgufTensors, " each)"));
  }
  std::set<std::string> keys;
  for (uint64_t i = 0; i < metadata_count; ++i) {
    std::string key;
    uint32_t type = 0;
    if (absl::Status s = r.String(&key, absl::StrCat("metadata key ", i)); !s.ok()) return s;
    if (!keys.insert(key).second) return Bad(absl::StrCat("metadata key '", key, "' repeats"));
    if (absl::Status s = r.Int(&type, key); !s.ok()) return s;
    GgufValue value;
    if (absl::Status s = r.Value(static_cast<GgufValueType>(type), &value, false, key); !s.ok()) {
      return s;
    }
    if (key == "general.alignment") {
      if (value.type != GgufValueType::kU32 || value.integer <= 0 ||
          (value.integer & (value.integer - 1)) != 0) {
        return Bad("general.alignment must be a u32 power of two");
      }
      file.alignment = static_cast<uint64_t>(value.integer);
    }
    file.metadata.emplace_back(std::move(key), std::move(value));
  }
  std::set<std::string> names;
  for (uint64_t i = 0; i < tensor_count; ++i) {
    GgufTensorInfo info;
    uint32_t n_dims = 0, type = 0;
    if (absl::Status s = r.String(&info.name, absl::StrCat("tensor name ", i)); !s.ok()) return s;
    if (!names.insert(info.name).second) {
      return Bad(absl::StrCat("tensor '", info.name, "' appears twice"));
    }
    if (absl::Status s = r.Int(&n_dims, info.name); !s.ok()) return s;
    if (n_dims == 0 || n_dims > 4) {
      return Bad(absl::StrCat("tensor '", info.name, "' has ", n_dims, " dimensions (1 to 4)"));
    }
    info.dims.resize(n_dims);
    for (uint32_t d = 0; d < n_dims; ++d) {
      if (absl::Status s = r.Int(&info.dims[d], info.name); !s.ok()) return s;
    }
    if (absl::Status s = r.Int(&type, info.name); !s.ok()) return s;
    if (!KnownTensorType(type)) {
      return Bad(absl::StrCat("tensor '", info.name, "' has ggml type ", type,
                              ", which this reader does not take (F32, F16, BF16, Q8_0, Q4_0)"));
    }
    info.type = static_cast<GgmlType>(type);
    if (absl::Status s = r.Int(&info.offset, info.name); !s.ok()) return s;
    absl::StatusOr<uint64_t> size = TensorBytes(info.name, info.dims, info.type);
    if (!size.ok()) return size.status();
    info.bytes = *size;
    file.tensors.push_back(std::move(info));
  }
  file.data_start = (r.pos() + file.alignment - 1) / file.alignment * file.alignment;
  if (file.data_start > bytes.size()) {
    return Bad(absl::StrCat("the data region starts at byte ", file.data_start,
                            ", past the end of the ", bytes.size(), "-byte file"));
  }
  const uint64_t data_size = bytes.size() - file.data_start;
  std::vector<std::pair<uint64_t, uint64_t>> spans;
  for (const GgufTensorInfo& t : file.tensors) {
    if (t.offset % file.alignment != 0) {
      return Bad(absl::StrCat("tensor '", t.name, "' starts at offset ", t.offset,
                              ", not a multiple of the alignment ", file.alignment));
    }
    if (t.offset > data_size || t.bytes > data_size - t.offset) {
      return Bad(absl::StrCat("tensor '", t.name, "' (", t.bytes, " bytes at offset ", t.offset,
                              ") runs past the end of the data (", data_size, " bytes)"));
    }
    spans.emplace_back(t.offset, t.offset + t.bytes);
  }
  std::sort(spans.begin(), spans.end());
  for (size_t i = 1; i < spans.size(); ++i) {
    if (spans[i].first < spans[i - 1].second) return Bad("two tensors overlap");
  }
  return file;
}

absl::StatusOr<std::string> SerializeGguf(
    const std::vector<std::pair<std::string, GgufValue>>& metadata,
    const std::vector<GgufTensorBytes>& tensors, uint64_t alignment) {
  if (alignment == 0 || (alignment & (alignment - 1)) != 0) {
    return absl::InvalidArgumentError("the GGUF alignment must be a power of two");
  }
  std::set<std::string> names;
  std::vector<uint64_t> offsets;
  uint64_t offset = 0;
  for (const GgufTensorBytes& t : tensors) {
    if (!names.insert(t.name).second) {
      return absl::InvalidArgumentError(absl::StrCat("tensor '", t.name, "' given twice"));
    }
    absl::StatusOr<uint64_t> size = TensorBytes(t.name, t.dims, t.type);
    if (!size.ok()) return absl::InvalidArgumentError(size.status().message());
    if (*size != t.data.size()) {
      return absl::InvalidArgumentError(absl::StrCat("tensor '", t.name, "' has ", t.data.size(),
                                                     " bytes of data; its shape and ",
                                                     GgmlTypeName(t.type), " need ", *size));
    }
    offsets.push_back(offset);
    offset = (offset + *size + alignment - 1) / alignment * alignment;
  }
  Writer w;
  w.out().append(kMagic, 4);
  w.Int<uint32_t>(3);
  w.Int<uint64_t>(tensors.size());
  const bool write_alignment = alignment != 32;
  w.Int<uint64_t>(metadata.size() + (write_alignment ? 1 : 0));
  if (write_alignment) {
    w.String("general.alignment");
    w.Value(GgufValue::U32(static_cast<uint32_t>(alignment)), true);
  }
  for (const auto& [key, value] : metadata) {
    w.String(key);
    w.Value(value, true);
  }
  for (size_t i = 0; i < tensors.size(); ++i) {
    w.String(tensors[i].name);
    w.Int<uint32_t>(static_cast<uint32_t>(tensors[i].dims.size()));
    for (uint64_t d : tensors[i].dims) w.Int<uint64_t>(d);
    w.Int<uint32_t>(static_cast<uint32_t>(tensors[i].type));
    w.Int<uint64_t>(offsets[i]);
  }
  w.PadTo(alignment);
  for (const GgufTensorBytes& t : tensors) {
    w.out().append(t.data);
    w.PadTo(alignment);
  }
  return std::move(w.out());
}

}  // namespace retort::models
